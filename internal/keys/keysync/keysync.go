// Package keysync materialises the key topic (privacy.keys, the source of
// truth of the per-subject data keys) into the Redis cache
// (internal/keys/keyredis), as consent-sync does for consent: a key record
// is stored as logged (so the processors stop writing it again), a
// tombstone shreds the key. When the cache lost its data (no loaded
// marker) it rebuilds it from the whole topic before the processors may
// create a key again. It holds no key-encryption key: it moves wrapped
// bytes only.
package keysync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
)

// Metrics are the key sync's counters.
type Metrics struct {
	// Stored counts key records stored (or confirmed) as logged.
	Stored prometheus.Counter
	// Kept counts key records not stored: the id is shredded, or Redis
	// holds another key under it.
	Kept prometheus.Counter
	// Shredded counts tombstones applied.
	Shredded prometheus.Counter
	// Rejected counts records that are not wrapped keys.
	Rejected prometheus.Counter
	// Rebuilds counts full rebuilds from the topic.
	Rebuilds prometheus.Counter
	// Ledger counts erasure ledger records applied.
	Ledger prometheus.Counter
	// Heartbeats counts heartbeat records written (one per partition per
	// round); HeartbeatFailures counts rounds that failed (retried at the
	// next interval).
	Heartbeats, HeartbeatFailures prometheus.Counter
}

// NewMetrics creates and registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "key_sync", Name: name, Help: help})
	}
	m := &Metrics{
		Stored:            c("stored_total", "Data key records from the key topic stored in Redis as logged."),
		Kept:              c("kept_total", "Data key records not stored: the key is shredded, or Redis holds another key under its id."),
		Shredded:          c("shredded_total", "Tombstones of the key topic applied: the key is shredded in Redis."),
		Rejected:          c("rejected_total", "Key topic records that are not wrapped data keys (skipped, counted)."),
		Rebuilds:          c("rebuilds_total", "Full rebuilds of the data key cache from the key topic."),
		Ledger:            c("ledger_total", "Erasure ledger records of the key topic applied (the subject's mark set in Redis)."),
		Heartbeats:        c("heartbeats_total", "Heartbeat tombstones written to the key topic (one per partition per round): they roll quiet partitions' segments so shredded keys get compacted away."),
		HeartbeatFailures: c("heartbeat_failures_total", "Heartbeat rounds that failed to write to every partition of the key topic (retried at the next interval)."),
	}
	reg.MustRegister(m.Stored, m.Kept, m.Shredded, m.Rejected, m.Rebuilds, m.Ledger, m.Heartbeats, m.HeartbeatFailures)
	return m
}

// Config configures a Syncer.
type Config struct {
	Kafka   kafkaconn.Config
	Topic   string
	Group   string
	Store   *keyredis.Store
	Log     *slog.Logger
	Metrics *Metrics
	// Heartbeat is how often a heartbeat tombstone is written to every
	// partition of the topic (PIPELINE_KEY_HEARTBEAT_INTERVAL); 0 writes
	// none.
	Heartbeat time.Duration
}

// HeartbeatKey is the record key of the heartbeats on the key topic. It
// is neither a data key id (dk1.) nor a ledger mark, so no reader takes
// it for one; the key sync skips it.
const HeartbeatKey = "pp-heartbeat"

// Syncer follows the key topic into Redis.
type Syncer struct {
	cfg   Config
	ready atomic.Bool
}

// New returns a Syncer.
func New(cfg Config) (*Syncer, error) {
	if cfg.Topic == "" || cfg.Group == "" || cfg.Store == nil {
		return nil, errors.New("keysync: Topic, Group and Store are required")
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, fmt.Errorf("keysync: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Syncer{cfg: cfg}, nil
}

// Ready reports whether the cache is loaded and followed.
func (s *Syncer) Ready() bool { return s.ready.Load() }

// Run rebuilds the cache when it is not loaded, then follows the topic
// until ctx ends; errors are logged and retried.
func (s *Syncer) Run(ctx context.Context) error {
	if s.cfg.Heartbeat > 0 {
		hctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.heartbeats(hctx) }()
		defer func() { stop(); <-done }()
	}
	for ctx.Err() == nil {
		loaded, err := s.cfg.Store.Loaded(ctx)
		if err == nil && !loaded {
			err = s.Rebuild(ctx)
		}
		if err == nil {
			err = s.follow(ctx)
		}
		if ctx.Err() != nil {
			break
		}
		s.ready.Store(false)
		s.cfg.Log.Warn("key sync interrupted; resuming", "err", err)
		sleep(ctx, time.Second)
	}
	s.ready.Store(false)
	return nil
}

// Rebuild applies the whole key topic to Redis, then sets the loaded
// marker.
func (s *Syncer) Rebuild(ctx context.Context) error {
	var applyErr error
	err := kafkaio.Scan(ctx, s.cfg.Kafka, func(r *kgo.Record) {
		if applyErr == nil {
			applyErr = s.apply(ctx, r)
		}
	}, s.cfg.Topic)
	if err = errors.Join(err, applyErr); err != nil {
		return fmt.Errorf("keysync: rebuild: %w", err)
	}
	s.cfg.Metrics.Rebuilds.Inc()
	s.cfg.Log.Info("data key cache rebuilt from the key topic", "topic", s.cfg.Topic)
	return s.cfg.Store.MarkLoaded(ctx)
}

// errLost is the marker gone while following (Redis flushed).
var errLost = errors.New("keysync: the data key cache lost its data")

func (s *Syncer) follow(ctx context.Context) error {
	cl, err := s.cfg.Kafka.NewClient(kgo.ConsumerGroup(s.cfg.Group), kgo.ConsumeTopics(s.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.DisableAutoCommit())
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("keysync: fetch %s: %w", fe.Topic, fe.Err)
			}
		}
		var applyErr error
		fs.EachRecord(func(r *kgo.Record) {
			if applyErr == nil {
				applyErr = s.apply(ctx, r)
			}
		})
		if applyErr != nil {
			return applyErr // uncommitted: applied again after the retry
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("keysync: commit: %w", err)
		}
		loaded, err := s.cfg.Store.Loaded(ctx)
		if err != nil {
			return err
		}
		if !loaded {
			return errLost
		}
		s.ready.Store(true)
	}
	return nil
}

// apply stores one key record or applies one tombstone. A record that is
// not a wrapped key, or whose id differs from its record key, is counted
// and skipped (it cannot be applied however often it is retried).
func (s *Syncer) apply(ctx context.Context, r *kgo.Record) error {
	id := string(r.Key)
	if id == HeartbeatKey {
		return nil // a heartbeat: nothing to apply
	}
	if r.Value == nil {
		if err := s.cfg.Store.Shred(ctx, id); err != nil {
			return err
		}
		s.cfg.Metrics.Shredded.Inc()
		return nil
	}
	if subjectkey.IsLedgerKey(id) {
		// An erasure ledger record: the mark is kept as a shredded id, so
		// the data keys' lookups see it and no key is made for the subject.
		if err := s.cfg.Store.Shred(ctx, id); err != nil {
			return err
		}
		s.cfg.Metrics.Ledger.Inc()
		return nil
	}
	w, err := subjectkey.ParseWrapped(r.Value)
	if err != nil || w.ID != id {
		s.cfg.Metrics.Rejected.Inc()
		s.cfg.Log.Warn("key topic record is not a wrapped data key; skipped", "partition", r.Partition, "offset", r.Offset)
		return nil
	}
	stored, err := s.cfg.Store.Put(ctx, w)
	if err != nil {
		return err
	}
	if stored {
		s.cfg.Metrics.Stored.Inc()
	} else {
		s.cfg.Metrics.Kept.Inc()
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// heartbeats writes a heartbeat round every Heartbeat until ctx ends.
func (s *Syncer) heartbeats(ctx context.Context) {
	cl, err := s.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		s.cfg.Metrics.HeartbeatFailures.Inc()
		s.cfg.Log.Warn("key topic heartbeats: no client; none written", "err", err)
		return
	}
	defer cl.Close()
	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	for {
		if err := Beat(ctx, cl, s.cfg.Topic, s.cfg.Metrics); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("key topic heartbeat failed; retried at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Beat writes one heartbeat round: a tombstone under HeartbeatKey to
// every partition of topic, with cl (built with kgo.ManualPartitioner),
// counted in m.
func Beat(ctx context.Context, cl *kgo.Client, topic string, m *Metrics) error {
	tds, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		err = tds.Error()
	}
	if err != nil {
		m.HeartbeatFailures.Inc()
		return fmt.Errorf("keysync: heartbeat: %w", err)
	}
	var recs []*kgo.Record
	for _, p := range tds[topic].Partitions.Numbers() {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(HeartbeatKey)})
	}
	res := cl.ProduceSync(ctx, recs...)
	for _, r := range res {
		if r.Err == nil {
			m.Heartbeats.Inc()
		}
	}
	if err := res.FirstErr(); err != nil {
		m.HeartbeatFailures.Inc()
		return fmt.Errorf("keysync: heartbeat: %w", err)
	}
	return nil
}
