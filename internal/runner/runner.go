// Package runner moves records between Kafka and a processor: it consumes a
// topic in a consumer group, splits each poll across workers by partition,
// produces every output, and commits the consumed offsets only after all
// outputs of the batch are acknowledged (at least once; a record is never
// committed before its outputs are durable).
//
// This package and topology are the only ones that import franz-go.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/processors"
)

// Config configures a Runner.
type Config struct {
	// Brokers are the seed brokers.
	Brokers []string
	// Group is the consumer group id.
	Group string
	// Input is the topic to consume.
	Input string
	// Workers is the number of parallel workers (default GOMAXPROCS).
	Workers int
	// MaxPollRecords bounds one batch (default 5000).
	MaxPollRecords int
	// ClientID names the client in broker logs.
	ClientID string
	// Log receives operational messages (never record contents).
	Log *slog.Logger
	// ExtraOpts are appended to the kgo options (tests, tuning).
	ExtraOpts []kgo.Opt
	// StopGrace bounds how long, after ctx ends, the in-flight batch may
	// take to finish producing and committing (default 15s). A batch still
	// waiting for a consent decision is abandoned at once instead: nothing
	// of it was produced, and it is re-read after restart.
	StopGrace time.Duration
}

// Runner runs one processor against Kafka.
type Runner struct {
	cfg       Config
	proc      processors.Processor
	running   atomic.Bool
	batches   atomic.Uint64
	committed atomic.Uint64
}

// New returns a runner.
func New(cfg Config, proc processors.Processor) (*Runner, error) {
	if len(cfg.Brokers) == 0 || cfg.Group == "" || cfg.Input == "" {
		return nil, errors.New("runner: Brokers, Group and Input are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 5000
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "privacy-pipeline-" + proc.Name()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 15 * time.Second
	}
	return &Runner{cfg: cfg, proc: proc}, nil
}

// Running reports whether the runner is connected and consuming.
func (r *Runner) Running() bool { return r.running.Load() }

// Batches returns the number of batches committed so far.
func (r *Runner) Batches() uint64 { return r.batches.Load() }

// Committed returns the number of input records whose outputs were all
// acknowledged and whose offsets were committed.
func (r *Runner) Committed() uint64 { return r.committed.Load() }

// Run consumes until ctx ends. A failed produce or commit restarts the
// session from the last committed offsets (outputs may then repeat: at
// least once); Run returns only when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	workers := make([]processors.Worker, r.cfg.Workers)
	for i := range workers {
		workers[i] = r.proc.NewWorker()
	}
	backoff := 100 * time.Millisecond
	for {
		err := r.session(ctx, workers)
		r.running.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		r.cfg.Log.Warn("runner session ended; restarting from committed offsets", "processor", r.proc.Name(), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (r *Runner) session(ctx context.Context, workers []processors.Worker) error {
	opts := []kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ClientID(r.cfg.ClientID),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Input),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
	opts = append(opts, r.cfg.ExtraOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("runner: client: %w", err)
	}
	defer func() {
		// With BlockRebalanceOnPoll, leaving the group waits for the
		// rebalance we hold since the last poll: release it first.
		cl.AllowRebalance()
		cl.Close()
	}()
	r.running.Store(true)

	// Producing and committing use wctx, which outlives ctx by StopGrace so
	// that a stopping runner finishes the batch it holds.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.StopGrace)
		defer t.Stop()
		select {
		case <-t.C:
			wcancel()
		case <-wctx.Done():
		}
	})
	defer stopGrace()

	n := len(workers)
	buckets := make([][]processors.Record, n)
	batches := make([]processors.Batch, n)
	var kr []kgo.Record
	var hdrs []kgo.RecordHeader
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fetches := cl.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil && fetches.NumRecords() == 0 {
			return ctx.Err()
		}
		if fetches.IsClientClosed() {
			return errors.New("runner: client closed")
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.cfg.Log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			cl.AllowRebalance()
			continue
		}
		// Split by partition so each partition's order is kept by one worker.
		for i := range buckets {
			buckets[i] = buckets[i][:0]
			batches[i].Reset()
		}
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			b := int(ftp.Partition) % n
			for _, rec := range ftp.Records {
				buckets[b] = append(buckets[b], toRecord(rec))
			}
		})
		if err := r.processAll(ctx, workers, buckets, batches); err != nil {
			return err
		}
		// Produce every output, then wait for all acknowledgements.
		total, nh := 0, 0
		for i := range batches {
			total += batches[i].Len()
			for _, o := range batches[i].Outputs {
				nh += len(o.Headers)
			}
		}
		if cap(kr) < total {
			kr = make([]kgo.Record, total)
		}
		if cap(hdrs) < nh {
			hdrs = make([]kgo.RecordHeader, nh)
		}
		kr, hdrs = kr[:total], hdrs[:nh]
		var wg sync.WaitGroup
		var produceErr atomic.Pointer[error]
		k, h := 0, 0
		wg.Add(total)
		for i := range batches {
			for _, o := range batches[i].Outputs {
				hs := hdrs[h : h+len(o.Headers) : h+len(o.Headers)]
				for j, oh := range o.Headers {
					hs[j] = kgo.RecordHeader{Key: oh.Key, Value: oh.Value}
				}
				h += len(o.Headers)
				kr[k] = kgo.Record{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: hs}
				cl.Produce(wctx, &kr[k], func(_ *kgo.Record, err error) {
					if err != nil {
						produceErr.CompareAndSwap(nil, &err)
					}
					wg.Done()
				})
				k++
			}
		}
		wg.Wait()
		clear(kr) // drop references to batch memory
		if p := produceErr.Load(); p != nil {
			return fmt.Errorf("runner: produce: %w", *p)
		}
		if err := cl.CommitUncommittedOffsets(wctx); err != nil {
			return fmt.Errorf("runner: commit: %w", err)
		}
		r.batches.Add(1)
		r.committed.Add(uint64(fetches.NumRecords()))
		cl.AllowRebalance()
	}
}

func (r *Runner) processAll(ctx context.Context, workers []processors.Worker, buckets [][]processors.Record, batches []processors.Batch) error {
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i := range workers {
		if len(buckets[i]) == 0 {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = workers[i].Process(ctx, buckets[i], &batches[i])
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func toRecord(rec *kgo.Record) processors.Record {
	return processors.Record{
		Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp,
	}
}
