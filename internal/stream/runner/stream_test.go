package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/processors"
)

// streamer copies every input to "out" and marks each output final at
// once (Batch.Ready), so the runner produces it while the batch is still
// being processed. Its first batches go stale after producing, or fail
// halfway, as the switches say.
type streamer struct {
	stale, fail atomic.Int32 // batches still to go stale / to fail
	streamed    atomic.Int64 // outputs handed over while processing
}

func (s *streamer) Name() string                 { return "streamer" }
func (s *streamer) NewWorker() processors.Worker { return &streamWorker{s: s} }

type streamWorker struct {
	s     *streamer
	stale bool
}

func (w *streamWorker) Process(_ context.Context, in []processors.Record, out *processors.Batch) error {
	w.stale = w.s.stale.Add(-1) >= 0
	fail := w.s.fail.Add(-1) >= 0
	for i, r := range in {
		out.Add(i, "out", r.Key, r.Value)
		out.Ready()
		if fail && i == len(in)/2 {
			w.s.streamed.Add(int64(out.Streamed()))
			return errors.New("failing halfway, after streaming")
		}
	}
	w.s.streamed.Add(int64(out.Streamed()))
	return nil
}

func (w *streamWorker) Done(bool)     {}
func (w *streamWorker) Current() bool { return !w.stale }

// TestStreamedOutputsAreExactlyOnce: outputs produced while their batch is
// still processed belong to its transaction. The attack: a batch whose
// decisions go stale after its first outputs were produced, and a batch
// whose processing fails halfway, both after streaming; neither may leave
// a record visible to read_committed consumers, and every input is in the
// output exactly once when the batches are redone.
func TestStreamedOutputsAreExactlyOnce(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer cl.Close()
	const n = 3000
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprint(i))})
	}
	if err := kafkaio.ProduceAll(context.Background(), cl, recs); err != nil {
		t.Fatal(err)
	}
	s := &streamer{}
	s.stale.Store(2)
	s.fail.Store(1)
	r, err := New(Config{Conn: kafkaconn.Config{Brokers: brokers}, Group: "g", Input: "in", Workers: 2, MaxPollRecords: 1000,
		Log: slog.New(slog.DiscardHandler)}, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 60*time.Second, func() bool { return r.Committed() == n })
	if r.Aborted() < 2 {
		t.Fatalf("%d aborted batches: the stale ones were not aborted", r.Aborted())
	}
	if s.streamed.Load() < n/2 { // the tail of each batch (under StreamEvery) is produced after Process
		t.Fatalf("%d outputs streamed: the test did not stream", s.streamed.Load())
	}
	rd, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer rd.Close()
	seen := map[string]int{}
	total := 0
	deadline := time.Now().Add(30 * time.Second)
	for total < n && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		rd.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { seen[string(rec.Value)]++; total++ })
		pcancel()
	}
	pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
	rd.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { seen[string(rec.Value)]++; total++ })
	pcancel()
	if total != n || len(seen) != n {
		t.Fatalf("%d committed outputs of %d distinct inputs, want %d once each", total, len(seen), n)
	}
}
