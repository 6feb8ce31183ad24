// Package metrics defines the Prometheus metrics of the pipeline. Metrics
// are registered on a registry passed in (never the global one), and labels
// carry only bounded, non-personal values: purposes, reason codes, processor
// names. Never a subject id, a field value or a key.
//
// Each processor owns its metrics (processors/privacy the privacy
// processor's, processors/kit/kanonmetrics the k-anonymity processors',
// internal/stream/runner the runner's); this package only reads a registry
// back (Snapshot). It imports prometheus/client_golang only.
package metrics

import (
	"fmt"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "pipeline"

// Snapshot reads every counter of a registry as "name{label=value,...}" ->
// value, for reports and tests.
func Snapshot(g prometheus.Gatherer) (map[string]float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: gather: %w", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + labelString(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out, nil
}

func labelString(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(parts)
	s := "{"
	for i, p := range parts {
		if i > 0 {
			s += ","
		}
		s += p
	}
	return s + "}"
}
