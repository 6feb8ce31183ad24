package runner

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/processors"
)

// echo copies each input to "out", failing while fail is set.
type echo struct{ fail atomic.Bool }

func (e *echo) Name() string                 { return "echo" }
func (e *echo) Done(bool)                    {}
func (e *echo) Current() bool                { return true }
func (e *echo) NewWorker() processors.Worker { return e }
func (e *echo) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	if e.fail.Load() {
		return fmt.Errorf("not now")
	}
	for i, r := range in {
		out.Add(i, "out", r.Key, r.Value, processors.Header{Key: "from", Value: []byte(fmt.Sprint(r.Offset))})
	}
	return nil
}

func TestRunnerCommitsAfterOutputsAndResumes(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in", "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer cl.Close()
	var recs []*kgo.Record
	for i := 0; i < 1000; i++ {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte(fmt.Sprint(i % 17)), Value: []byte(fmt.Sprint(i))})
	}
	if err := kafkaio.ProduceAll(context.Background(), cl, recs); err != nil {
		t.Fatal(err)
	}
	p := &echo{}
	run := func(until func(*Runner) bool) *Runner {
		r, err := New(Config{Conn: kafkaconn.Config{Brokers: brokers}, Group: "g", Input: "in", MaxPollRecords: 100, Workers: 2}, p)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		deadline := time.Now().Add(20 * time.Second)
		for !until(r) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		return r
	}
	first := run(func(r *Runner) bool { return r.Committed() >= 300 })
	// A failing processor commits nothing.
	p.fail.Store(true)
	stuck := run(func(r *Runner) bool { time.Sleep(300 * time.Millisecond); return true })
	if stuck.Committed() != 0 {
		t.Fatal("committed while the processor failed")
	}
	p.fail.Store(false)
	second := run(func(r *Runner) bool { return first.Committed()+r.Committed() >= 1000 })
	if first.Committed()+second.Committed() != 1000 {
		t.Fatalf("committed %d + %d, want 1000 exactly", first.Committed(), second.Committed())
	}
	got, err := kafkaio.ReadAll(context.Background(), kafkaconn.Config{Brokers: brokers}, "out")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	if len(seen) != 1000 || len(got) != 1000 {
		t.Fatalf("out holds %d records, %d distinct; want 1000 and 1000", len(got), len(seen))
	}
}

// TestProducerLingerDefault: zero is 5ms, a negative linger is no wait, a
// positive one is kept.
func TestProducerLingerDefault(t *testing.T) {
	for give, want := range map[time.Duration]time.Duration{0: 5 * time.Millisecond, -1: -1, 20 * time.Millisecond: 20 * time.Millisecond} {
		r, err := New(Config{Conn: kafkaconn.Config{Brokers: []string{"localhost:9092"}}, Group: "g", Input: "in", ProducerLinger: give}, &echo{})
		if err != nil {
			t.Fatal(err)
		}
		if r.cfg.ProducerLinger != want {
			t.Fatalf("linger %v became %v, want %v", give, r.cfg.ProducerLinger, want)
		}
	}
}
