package integration

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
)

// TestKanonCatchesUpAfterDowntime is issue 11, defect 5 on the real
// broker: an aggregates replica processes half of an hour's window, stops,
// and its successor comes back after a downtime longer than twice the idle
// close (its clock says two hours later) to a backlog of the other half.
// Before, the successor's first ticks restored the partitions and closed
// the window by the wall clock before reading the backlog, so every event
// of the backlog was late; now ticks act only on partitions that are idle
// and caught up. The ticks fire every 50 ms, so they certainly come before
// the first fetch. Want: 0 late events, and exactly the rows of an
// uninterrupted offline run.
func TestKanonCatchesUpAfterDowntime(t *testing.T) {
	r := newRig(t)
	const parts = 4
	r.cfg.Kanon.K, r.cfg.Kanon.Window, r.cfg.Kanon.AllowedLateness, r.cfg.Kanon.IdleClose = 11, time.Hour, 0, time.Minute
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Kanon.InputPartitions = parts
	analytics := wiring.CleanTopic(r.cfg, purpose.Analytics)
	// The merge stage runs throughout; the first stage goes down. The
	// downtime is simulated by the successor's clock two hours on; the
	// merge, which bounds progress by its own clock plus a skew, lives in
	// that time from the start (the first replica's bounds are earlier).
	merge, err := wiring.BuildKanonMerge(context.Background(), r.cfg, spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	merge.Processor.UseClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
	stopMerge := r.kreplica(merge.Processor, merge.Group, merge.Input, prometheus.NewRegistry())
	start := time.Now().Truncate(time.Hour) // one window, open until a minute past the hour
	evs := kstream(17, 8000, 300, parts, start, time.Millisecond*time.Duration(max(1, time.Since(start).Milliseconds())), 0)
	replica := func(clock func() time.Time, reg prometheus.Registerer) func() {
		a, err := wiring.BuildAggregates(context.Background(), r.cfg, spec, kanonmetrics.New(reg), slog.New(slog.NewJSONHandler(r.logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		rc := wiring.RunnerConfig(r.cfg, r.cfg.Names.KanonAggregatesGroup, analytics, slog.New(slog.NewJSONHandler(r.logs, nil)))
		rc.MaxPollRecords, rc.TickInterval, rc.IdleAfter, rc.Clock = 500, 50*time.Millisecond, 500*time.Millisecond, clock
		rn, err := runner.New(rc, a.Processor)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rn.Run(ctx); close(done) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	half := len(evs) / 2
	r.kproduce(kencode(t, analytics, "analytics", evs[:half]))
	regA := prometheus.NewRegistry()
	stopA := replica(time.Now, regA)
	r.waitGroup(r.cfg.Names.KanonAggregatesGroup, analytics, 2*time.Minute)
	time.Sleep(time.Second) // some idle ticks too: they must close nothing
	stopA()
	aggTopic := spec.Aggregates[0].TopicFrom(r.cfg.Names.AggTopicTemplate)
	if n := len(r.read(aggTopic)); n != 0 {
		t.Fatalf("%d rows published before the window could close", n)
	}
	// Downtime: the backlog piles up; the successor's clock is two hours on.
	r.kproduce(kencode(t, analytics, "analytics", evs[half:]))
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	regB := prometheus.NewRegistry()
	stopB := replica(later, regB)
	want := offlineAggregates(t, r, spec, analytics)
	waitUntil(t, "the successor publishes the window", time.Minute, func() bool { return len(r.read(aggTopic)) >= len(want) })
	stopB()
	r.waitMerged(spec, time.Minute)
	stopMerge()
	for name, reg := range map[string]*prometheus.Registry{"first": regA, "successor": regB} {
		snap, _ := metrics.Snapshot(reg)
		if late := snap["pipeline_kanon_events_total{outcome=late,output="+aggTopic+"}"]; late != 0 {
			t.Fatalf("the %s replica counted %v events of the backlog late", name, late)
		}
	}
	got := map[string]string{}
	for _, rec := range r.read(aggTopic) {
		got[string(rec.Key)] = string(rec.Value)
	}
	if len(got) != len(want) {
		t.Fatalf("the successor published %d rows, an uninterrupted run %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("row %s differs from the uninterrupted run", k)
		}
	}
	t.Logf("integration: backlog of %d events after downtime: 0 late, %d rows equal to an uninterrupted run", len(evs)-half, len(got))
}
