package runner

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/processors"
)

// flaky is a processor whose batches are never current, or whose outputs
// are too big for any broker, while the switches are set.
type flaky struct {
	stale, huge atomic.Bool
	processed   atomic.Int64
}

func (f *flaky) Name() string                 { return "flaky" }
func (f *flaky) Done(bool)                    {}
func (f *flaky) Current() bool                { return !f.stale.Load() }
func (f *flaky) NewWorker() processors.Worker { return f }
func (f *flaky) Process(_ context.Context, in []processors.Record, out *processors.Batch) error {
	f.processed.Add(int64(len(in)))
	for i, r := range in {
		v := r.Value
		if f.huge.Load() {
			v = bytes.Repeat([]byte("x"), MaxRecordBytes+1)
		}
		out.Add(i, "out", r.Key, v)
	}
	return nil
}

// TestRepeatingAbortsAreSurfaced is defect 3 of issue 10: a batch that
// cannot commit for a reason that repeats (a decision that is always stale,
// an output the broker always refuses) is surfaced - a warning with the
// reason, Ready false, the consecutive-aborts gauge, aborts counted by
// reason - and all of it clears once a transaction commits.
func TestRepeatingAbortsAreSurfaced(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		set          func(*flaky, bool)
	}{
		{"stale", AbortStaleConsent, func(f *flaky, b bool) { f.stale.Store(b) }},
		{"too large", AbortProduce, func(f *flaky, b bool) { f.huge.Store(b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()
			cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
			defer cl.Close()
			if err := kafkaio.ProduceAll(context.Background(), cl, []*kgo.Record{{Topic: "in", Value: []byte("a")}, {Topic: "in", Value: []byte("b")}}); err != nil {
				t.Fatal(err)
			}
			f := &flaky{}
			tc.set(f, true)
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			logs := &pipelinetest.SyncBuffer{}
			r, err := New(Config{Conn: kafkaconn.Config{Brokers: brokers}, Group: "g", Input: "in", Workers: 1, AbortAlertAfter: 3, Metrics: m,
				Log: slog.New(slog.NewJSONHandler(logs, nil))}, f)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			// The streak, the gauge and the warning are set one after the
			// other: wait for all three (a busy CPU can run a check between).
			waitFor(t, 60*time.Second, func() bool {
				n, _ := r.AbortStreak()
				return n >= 3 && value(m.ConsecutiveAborts) >= 3 && strings.Contains(logs.String(), "transactions keep aborting for the same reason")
			})
			n, reason := r.AbortStreak()
			if reason != tc.reason {
				t.Fatalf("streak of %d for %q, want %q", n, reason, tc.reason)
			}
			if r.Ready() {
				t.Fatal("ready while every transaction aborts")
			}
			if g := value(m.ConsecutiveAborts); g < 3 {
				t.Fatalf("consecutive aborts gauge %v", g)
			}
			if v := value(m.Aborts.WithLabelValues(tc.reason)); v < 3 {
				t.Fatalf("aborts{reason=%s} = %v", tc.reason, v)
			}
			if !strings.Contains(logs.String(), "transactions keep aborting for the same reason") || !strings.Contains(logs.String(), tc.reason) {
				t.Fatalf("no warning naming the reason in the log:\n%s", logs.String())
			}
			if r.Committed() != 0 {
				t.Fatal("committed while every transaction aborts")
			}
			tc.set(f, false)
			waitFor(t, 60*time.Second, func() bool { return r.Committed() == 2 && r.Ready() })
			if g := value(m.ConsecutiveAborts); g != 0 {
				t.Fatalf("consecutive aborts gauge %v after a commit", g)
			}
		})
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// TestTicksActOnlyOnIdleCaughtUpPartitions is issue 11, defect 5 at the
// runner: time-driven work may act on a partition only once it is idle and
// caught up, so a backlog is read before the wall clock closes anything;
// one idle far longer than IdleAfter counts even if its offsets look
// behind (an aborted transaction at its tail is never delivered).
func TestTicksActOnlyOnIdleCaughtUpPartitions(t *testing.T) {
	idle := map[int32]time.Duration{0: 2 * time.Second, 1: 2 * time.Second, 2: 2 * time.Second, 3: time.Minute, 4: 2 * time.Second}
	lags := map[int32]int64{0: 0, 1: 1, 2: 500, 3: 500}
	got := eligible(idle, 30*time.Second, func(p int32) (int64, bool) {
		l, ok := lags[p]
		return l, ok
	})
	want := []int32{0, 1, 3} // 2 is behind; 4's lag is unknown
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("eligible %v, want %v", got, want)
	}
}
