package kanonagg

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
)

// TestOneFutureEventDoesNotCloseWindows is issue 11, defect 4: in a stream
// of on-time events, one event stamped 59 minutes ahead (inside the allowed
// future skew of the raw input) must not move the watermark past the open
// windows; before, it closed them and every on-time event after it was
// late (counted, lost). The watermark may advance at most to a record's log
// time plus the skew.
func TestOneFutureEventDoesNotCloseWindows(t *testing.T) {
	for _, tc := range []struct {
		name     string
		skew     time.Duration
		wantLate bool
	}{
		{"bounded by the log time", 5 * time.Second, false},
		{"control: unbounded watermark", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
			var evs []event
			var logTimes []time.Time
			for i := range 240 { // four one-minute windows, an event per second
				at := start.Add(time.Duration(i) * time.Second)
				evs = append(evs, event{subject: fmt.Sprintf("person-%d", i%30), time: at.UnixMilli(),
					age: "25-34", country: "VN", gender: "female", etype: "page_view"})
				logTimes = append(logTimes, at)
				if i == 20 { // the outlier, written at the same moment
					evs = append(evs, event{subject: "person-x", time: at.Add(59 * time.Minute).UnixMilli(),
						age: "25-34", country: "VN", gender: "female", etype: "page_view"})
					logTimes = append(logTimes, at)
				}
			}
			recs := records(encodeAll(t, evs))
			for i := range recs {
				recs[i].Timestamp = logTimes[i]
			}
			spec, _ := kanonspec.Default()
			reg := prometheus.NewRegistry()
			store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
			p, err := New(Config{Aggregates: spec.Aggregates, Spec: spec, K: 11, Window: time.Minute, AllowedLateness: 10 * time.Second,
				Rollup: true, StateTopic: "state", WatermarkSkew: tc.skew, Metrics: kanonmetrics.New(reg)})
			if err != nil {
				t.Fatal(err)
			}
			p.UseStore(store)
			rows := run(t, p.NewWorker(), store, recs, 50, aggCodec(t))
			snap, _ := metrics.Snapshot(reg)
			out := p.Topics()[0]
			late := snap["pipeline_kanon_events_total{outcome=late,output="+out+"}"]
			if tc.wantLate {
				if late == 0 {
					t.Fatal("control: without the bound the outlier should have made on-time events late")
				}
				return
			}
			if late != 0 {
				t.Fatalf("%v on-time events counted late after one future event", late)
			}
			if c := snap["pipeline_kanon_watermark_capped_total{output="+out+"}"]; c != 1 {
				t.Fatalf("watermark_capped %v, want the one outlier", c)
			}
			if len(rows) == 0 {
				t.Fatal("no window closed at all")
			}
		})
	}
}
