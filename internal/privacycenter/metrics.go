package privacycenter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The metric families the operator view reads (their owners: the privacy
// processor, processors/kit/kanonmetrics, requests/fulfil).
const (
	metricPublished   = "pipeline_published_total"
	metricDenied      = "pipeline_denied_total"
	metricQuarantined = "pipeline_quarantined_total"
	metricKSuppressed = "pipeline_kanon_suppressed_events_total"
	metricKRecords    = "pipeline_kanon_records_total"
	metricDone        = "pipeline_requests_done_total"
)

// maxScrape bounds one scraped page.
const maxScrape = 8 << 20

// counts are the operator view's live figures, summed over every scraped
// endpoint.
type counts struct {
	// Published[purpose], Denied[purpose][reason].
	Published map[string]float64
	Denied    map[string]map[string]float64
	// Quarantined[reason].
	Quarantined map[string]float64
	// KSuppressed[output]: events in no released row (aggregates) or
	// records suppressed (record-level).
	KSuppressed map[string]float64
	// ErasuresDone[regime].
	ErasuresDone map[string]float64
	// Sources: each endpoint and whether it answered.
	Sources []source
}

// source is one scraped endpoint.
type source struct {
	URL   string
	Error string
}

// denyReasons are the Denied reasons with a count above zero, sorted
// (the processor exports every reason from the start).
func (c counts) denyReasons() []string {
	set := map[string]bool{}
	for _, m := range c.Denied {
		for r, v := range m {
			if v > 0 {
				set[r] = true
			}
		}
	}
	return sortedKeys(set)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// scrape reads every endpoint concurrently and sums the families.
func scrape(ctx context.Context, hc *http.Client, urls []string) counts {
	c := counts{Published: map[string]float64{}, Denied: map[string]map[string]float64{}, Quarantined: map[string]float64{},
		KSuppressed: map[string]float64{}, ErasuresDone: map[string]float64{}, Sources: make([]source, len(urls))}
	fams := make([]map[string]*dto.MetricFamily, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		c.Sources[i].URL = u
		wg.Go(func() {
			f, err := scrapeOne(ctx, hc, u)
			if err != nil {
				c.Sources[i].Error = err.Error()
				return
			}
			fams[i] = f
		})
	}
	wg.Wait()
	for _, f := range fams {
		add(f, metricPublished, func(l map[string]string, v float64) { c.Published[l["purpose"]] += v })
		add(f, metricDenied, func(l map[string]string, v float64) {
			if c.Denied[l["purpose"]] == nil {
				c.Denied[l["purpose"]] = map[string]float64{}
			}
			c.Denied[l["purpose"]][l["reason"]] += v
		})
		add(f, metricQuarantined, func(l map[string]string, v float64) { c.Quarantined[l["reason"]] += v })
		add(f, metricKSuppressed, func(l map[string]string, v float64) { c.KSuppressed[l["output"]] += v })
		add(f, metricKRecords, func(l map[string]string, v float64) {
			if l["outcome"] == "suppressed" {
				c.KSuppressed[l["output"]] += v
			}
		})
		add(f, metricDone, func(l map[string]string, v float64) {
			if l["kind"] == "erasure" {
				c.ErasuresDone[l["regime"]] += v
			}
		})
	}
	return c
}

func scrapeOne(ctx context.Context, hc *http.Client, u string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("unreachable: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxScrape+1))
	if err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	if len(body) > maxScrape {
		return nil, fmt.Errorf("larger than %d bytes: not read, rather than undercounted", maxScrape)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("not Prometheus text: %w", err)
	}
	return f, nil
}

// add calls fn with each sample of the counter family name.
func add(fams map[string]*dto.MetricFamily, name string, fn func(labels map[string]string, v float64)) {
	f := fams[name]
	if f == nil {
		return
	}
	for _, m := range f.GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		v := m.GetCounter().GetValue()
		if m.GetCounter() == nil {
			v = m.GetUntyped().GetValue()
		}
		fn(l, v)
	}
}
