// Package statestore keeps the checkpoints of stateful processors in Kafka.
// A checkpoint of input partition p is written to partition p of the
// processor's compacted state topic, keyed by p, in the same transaction as
// the outputs and consumed offsets of the batch it follows (see
// processors.Checkpoint). Restoring reads the last committed checkpoint and
// replays the input records the state refers to, both with read_committed.
//
// It imports franz-go (kgo, kadm), kafkaconn and processors.
package statestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/processors"
)

// Store is a processors.StateStore backed by a state topic.
type Store struct {
	conn       kafkaconn.Config
	input      string
	topic      string
	stableWait time.Duration

	mu    sync.Mutex
	admin *kgo.Client // long-lived, for metadata and offsets; nil until used
}

// Option configures a Store.
type Option func(*Store)

// WithStableWait bounds how long Latest waits for an open transaction on the
// state partition (a previous owner's) to end (default 1 minute).
func WithStableWait(d time.Duration) Option { return func(s *Store) { s.stableWait = d } }

// New returns a store for the checkpoints of input topic input, kept in
// stateTopic. Every client the store opens is built from conn, so a secured
// cluster reaches restores as it reaches the runner's session.
func New(conn kafkaconn.Config, input, stateTopic string, opts ...Option) *Store {
	s := &Store{conn: conn, input: input, topic: stateTopic, stableWait: time.Minute}
	for _, o := range opts {
		o(s)
	}
	return s
}

// client returns a client with the store's connection options and extra.
func (s *Store) client(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := s.conn.NewClient(extra...)
	if err != nil {
		return nil, fmt.Errorf("statestore: client: %w", err)
	}
	return cl, nil
}

// adm returns the store's long-lived admin client, creating it on first use.
func (s *Store) adm() (*kadm.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		cl, err := s.client()
		if err != nil {
			return nil, err
		}
		s.admin = cl
	}
	return kadm.NewClient(s.admin), nil
}

// Close releases the store's long-lived client; the store opens a new one
// if it is used again.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
}

// Topic returns the state topic.
func (s *Store) Topic() string { return s.topic }

// Key returns the record key of partition p's checkpoints.
func Key(partition int32) []byte { return strconv.AppendInt(nil, int64(partition), 10) }

const (
	magic   = 'K'
	version = 1
)

// ErrCorrupt is returned for a checkpoint record that cannot be decoded.
var ErrCorrupt = errors.New("statestore: corrupt checkpoint")

// AppendEncode appends the record value of cp (its Partition is the key).
func AppendEncode(dst []byte, cp processors.Checkpoint) []byte {
	dst = append(dst, magic, version)
	dst = binary.AppendVarint(dst, cp.Next)
	dst = binary.AppendVarint(dst, cp.ReplayFrom)
	return append(dst, cp.State...)
}

// Decode decodes a checkpoint record value; State aliases b.
func Decode(partition int32, b []byte) (processors.Checkpoint, error) {
	if len(b) < 2 || b[0] != magic || b[1] != version {
		return processors.Checkpoint{}, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	b = b[2:]
	next, n := binary.Varint(b)
	if n <= 0 {
		return processors.Checkpoint{}, fmt.Errorf("%w: next offset", ErrCorrupt)
	}
	b = b[n:]
	from, n := binary.Varint(b)
	if n <= 0 {
		return processors.Checkpoint{}, fmt.Errorf("%w: replay offset", ErrCorrupt)
	}
	if next < 0 || from < 0 || from > next {
		return processors.Checkpoint{}, fmt.Errorf("%w: offsets out of range", ErrCorrupt)
	}
	return processors.Checkpoint{Partition: partition, Next: next, ReplayFrom: from, State: b[n:]}, nil
}

// CheckPartitions verifies that the state topic has at least as many
// partitions as the input topic, so every input partition owns one state
// partition and restores never wait on another replica's transactions.
func (s *Store) CheckPartitions(ctx context.Context) error {
	adm, err := s.adm()
	if err != nil {
		return err
	}
	td, err := adm.ListTopics(ctx, s.input, s.topic)
	if err != nil {
		return fmt.Errorf("statestore: list topics: %w", err)
	}
	in, st := td[s.input], td[s.topic]
	if in.Err != nil {
		return fmt.Errorf("statestore: input topic %s: %w", s.input, in.Err)
	}
	if st.Err != nil {
		return fmt.Errorf("statestore: state topic %s: %w (run 'pipeline topology apply')", s.topic, st.Err)
	}
	if len(st.Partitions) < len(in.Partitions) {
		return fmt.Errorf("statestore: state topic %s has %d partitions, fewer than the %d of %s", s.topic, len(st.Partitions), len(in.Partitions), s.input)
	}
	return nil
}

// Latest returns the last committed checkpoint of an input partition. It
// first waits until no transaction is open on the state partition, so a
// previous owner's last checkpoint is either visible or aborted.
func (s *Store) Latest(ctx context.Context, partition int32) (processors.Checkpoint, bool, error) {
	adm, err := s.adm()
	if err != nil {
		return processors.Checkpoint{}, false, err
	}
	start, end, err := s.stableRange(ctx, adm, partition)
	if err != nil || end <= start {
		return processors.Checkpoint{}, false, err
	}
	key := Key(partition)
	// Read backwards in growing steps until a checkpoint of ours shows up.
	for step := int64(16); ; step *= 8 {
		from := max(start, end-step)
		var last *kgo.Record
		err := s.readRange(ctx, s.topic, partition, from, end, func(r *kgo.Record) error {
			if string(r.Key) == string(key) {
				last = r
			}
			return nil
		})
		if err != nil {
			return processors.Checkpoint{}, false, err
		}
		if last != nil {
			cp, err := Decode(partition, last.Value)
			if err != nil {
				return processors.Checkpoint{}, false, fmt.Errorf("statestore: %s[%d]@%d: %w", s.topic, partition, last.Offset, err)
			}
			return cp, true, nil
		}
		if from == start {
			return processors.Checkpoint{}, false, nil
		}
	}
}

// stableRange waits until the state partition has no open transaction and
// returns its log start and end offsets.
func (s *Store) stableRange(ctx context.Context, adm *kadm.Client, partition int32) (int64, int64, error) {
	deadline := time.Now().Add(s.stableWait)
	for {
		starts, err := adm.ListStartOffsets(ctx, s.topic)
		if err != nil {
			return 0, 0, fmt.Errorf("statestore: start offsets: %w", err)
		}
		hwm, err := adm.ListEndOffsets(ctx, s.topic)
		if err != nil {
			return 0, 0, fmt.Errorf("statestore: end offsets: %w", err)
		}
		lso, err := adm.ListCommittedOffsets(ctx, s.topic)
		if err != nil {
			return 0, 0, fmt.Errorf("statestore: stable offsets: %w", err)
		}
		st, ok1 := starts.Lookup(s.topic, partition)
		h, ok2 := hwm.Lookup(s.topic, partition)
		l, ok3 := lso.Lookup(s.topic, partition)
		if !ok1 || !ok2 || !ok3 {
			return 0, 0, fmt.Errorf("statestore: %s has no partition %d (run 'pipeline topology apply')", s.topic, partition)
		}
		for _, o := range []kadm.ListedOffset{st, h, l} {
			if o.Err != nil {
				return 0, 0, fmt.Errorf("statestore: %s[%d]: %w", s.topic, partition, o.Err)
			}
		}
		if l.Offset >= h.Offset {
			return st.Offset, h.Offset, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("statestore: %s[%d] still has an open transaction after %s", s.topic, partition, s.stableWait)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Replay calls fn for every committed input record of the partition with an
// offset in [from, to). The record at offset to must exist (it is the first
// record of the batch being processed), so the read always ends.
func (s *Store) Replay(ctx context.Context, partition int32, from, to int64, fn func(processors.Record) error) error {
	if from >= to {
		return nil
	}
	return s.readRange(ctx, s.input, partition, from, to, func(r *kgo.Record) error {
		rec := processors.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
			Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, processors.Header{Key: h.Key, Value: h.Value})
		}
		return fn(rec)
	})
}

// readRange calls fn for the committed data records of one partition in
// [from, to). It stops at the first record (data or transaction marker) at
// offset to-1 or later; the caller guarantees one exists.
func (s *Store) readRange(ctx context.Context, topic string, partition int32, from, to int64, fn func(*kgo.Record) error) error {
	cl, err := s.client(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	idle := time.Now()
	for {
		if time.Since(idle) > 2*time.Minute {
			return fmt.Errorf("statestore: no progress reading %s[%d] up to offset %d", topic, partition, to)
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("statestore: fetch %s[%d]: %w", topic, partition, ferr)
		}
		done := false
		for _, r := range fs.Records() {
			idle = time.Now()
			if r.Offset >= to-1 {
				done = true
			}
			if r.Offset >= to || r.Attrs.IsControl() {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}
