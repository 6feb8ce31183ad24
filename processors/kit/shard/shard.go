// Package shard keeps a stateful worker's state per input partition (a
// shard) and its lifecycle under exactly-once processing: a shard is loaded
// from its last committed checkpoint (plus a replay of the input records the
// state refers to) the first time a record of its partition arrives, is
// dropped when its partition is revoked or its batch's transaction aborts,
// and is checkpointed after every batch that touched it.
//
// It imports only the standard library and processors.
package shard

import (
	"context"
	"fmt"

	"github.com/privacy-pipeline/pipeline/processors"
)

// Loader builds a shard's state: from scratch when ok is false, else from
// the checkpoint cp, calling replay to receive the input records in
// [cp.ReplayFrom, cp.Next).
type Loader[S any] func(ctx context.Context, partition int32, cp processors.Checkpoint, ok bool,
	replay func(fn func(processors.Record) error) error) (S, error)

// Shards holds the loaded shards of one worker. It is not safe for
// concurrent use (a worker is never used concurrently).
type Shards[S any] struct {
	store   processors.StateStore
	load    Loader[S]
	shards  map[int32]*entry[S]
	none    map[int32]bool // owned partitions known to have no checkpoint
	touched []int32
	// Resets counts checkpoints that were ahead of the input (offsets were
	// reset by hand) and were therefore ignored.
	Resets int
}

type entry[S any] struct {
	state S
	next  int64
	dirty bool
}

// New returns an empty set of shards.
func New[S any](store processors.StateStore, load Loader[S]) *Shards[S] {
	return &Shards[S]{store: store, load: load, shards: map[int32]*entry[S]{}, none: map[int32]bool{}}
}

// Get returns the state of rec's partition, loading it if needed, and
// marks the shard as touched by the current batch. Call it for every record
// in order.
func (s *Shards[S]) Get(ctx context.Context, rec processors.Record) (*S, error) {
	delete(s.none, rec.Partition)
	e, ok := s.shards[rec.Partition]
	if !ok || rec.Offset < e.next {
		// Unknown, or the input rewound (an abort the worker missed):
		// rebuild from the committed checkpoint.
		var err error
		if e, err = s.loadShard(ctx, rec); err != nil {
			return nil, err
		}
		s.shards[rec.Partition] = e
	}
	if !e.dirty {
		e.dirty = true
		s.touched = append(s.touched, rec.Partition)
	}
	e.next = rec.Offset + 1
	return &e.state, nil
}

func (s *Shards[S]) loadShard(ctx context.Context, rec processors.Record) (*entry[S], error) {
	cp, ok, err := s.store.Latest(ctx, rec.Partition)
	if err != nil {
		return nil, fmt.Errorf("shard %d: checkpoint: %w", rec.Partition, err)
	}
	if ok && cp.Next > rec.Offset {
		// The checkpoint is ahead of the consumed offset: the group's
		// offsets were moved back by hand. Start from scratch.
		ok = false
		s.Resets++
	}
	replay := func(fn func(processors.Record) error) error {
		return s.store.Replay(ctx, rec.Partition, cp.ReplayFrom, cp.Next, fn)
	}
	st, err := s.load(ctx, rec.Partition, cp, ok, replay)
	if err != nil {
		return nil, fmt.Errorf("shard %d: restore: %w", rec.Partition, err)
	}
	return &entry[S]{state: st, next: rec.Offset}, nil
}

// Ensure loads the shard of a partition that has not seen a record yet
// (for time-driven work on an idle partition): from its last committed
// checkpoint, or nothing if it has none.
func (s *Shards[S]) Ensure(ctx context.Context, partition int32) error {
	if _, ok := s.shards[partition]; ok || s.none[partition] {
		return nil
	}
	cp, ok, err := s.store.Latest(ctx, partition)
	if err != nil {
		return fmt.Errorf("shard %d: checkpoint: %w", partition, err)
	}
	if !ok {
		// Nothing to act on until a record arrives; while this replica
		// owns the partition nobody else can write a checkpoint for it.
		s.none[partition] = true
		return nil
	}
	replay := func(fn func(processors.Record) error) error {
		return s.store.Replay(ctx, partition, cp.ReplayFrom, cp.Next, fn)
	}
	st, err := s.load(ctx, partition, cp, true, replay)
	if err != nil {
		return fmt.Errorf("shard %d: restore: %w", partition, err)
	}
	s.shards[partition] = &entry[S]{state: st, next: cp.Next}
	return nil
}

// Open is Ensure for time-driven work that must act on a partition even
// before its first record (an idle, empty input partition reporting its
// progress): a partition without a checkpoint gets a fresh state, as if
// its first record were at offset 0, which the next checkpoint records.
func (s *Shards[S]) Open(ctx context.Context, partition int32) error {
	if err := s.Ensure(ctx, partition); err != nil {
		return err
	}
	if _, ok := s.shards[partition]; ok {
		return nil
	}
	st, err := s.load(ctx, partition, processors.Checkpoint{Partition: partition}, false,
		func(func(processors.Record) error) error { return nil })
	if err != nil {
		return fmt.Errorf("shard %d: fresh state: %w", partition, err)
	}
	delete(s.none, partition)
	s.shards[partition] = &entry[S]{state: st}
	return nil
}

// Touched calls fn for every shard the current batch touched, with the
// offset after its last record (the checkpoint's Next).
func (s *Shards[S]) Touched(fn func(partition int32, next int64, state *S)) {
	for _, p := range s.touched {
		if e, ok := s.shards[p]; ok {
			fn(p, e.next, &e.state)
		}
	}
}

// Done ends the batch: if it was not committed, the shards it touched are
// dropped and will be restored from their committed checkpoints.
func (s *Shards[S]) Done(committed bool) {
	for _, p := range s.touched {
		if e, ok := s.shards[p]; ok {
			e.dirty = false
			if !committed {
				delete(s.shards, p)
			}
		}
	}
	s.touched = s.touched[:0]
}

// Forget drops a shard (processors.AllPartitions: every shard).
func (s *Shards[S]) Forget(partition int32) {
	if partition == processors.AllPartitions {
		clear(s.shards)
		clear(s.none)
		s.touched = s.touched[:0]
		return
	}
	delete(s.shards, partition)
	delete(s.none, partition)
}

// Len returns the number of loaded shards.
func (s *Shards[S]) Len() int { return len(s.shards) }

// Lookup returns the loaded shard of a partition, if any.
func (s *Shards[S]) Lookup(partition int32) (*S, bool) {
	e, ok := s.shards[partition]
	if !ok {
		return nil, false
	}
	return &e.state, true
}

// Next returns the offset after the last record of a loaded shard (the
// next checkpoint's Next), ok false if it is not loaded.
func (s *Shards[S]) Next(partition int32) (int64, bool) {
	e, ok := s.shards[partition]
	if !ok {
		return 0, false
	}
	return e.next, true
}

// Each calls fn for every loaded shard. It does not mark them touched: call
// Touch for those whose state fn changed.
func (s *Shards[S]) Each(fn func(partition int32, state *S) error) error {
	for p, e := range s.shards {
		if err := fn(p, &e.state); err != nil {
			return err
		}
	}
	return nil
}

// Touch marks a loaded shard as touched by the current batch, so its
// checkpoint is written (used when time, not a record, changed its state).
func (s *Shards[S]) Touch(partition int32) {
	if e, ok := s.shards[partition]; ok && !e.dirty {
		e.dirty = true
		s.touched = append(s.touched, partition)
	}
}

// EmptyStore is a processors.StateStore with no checkpoints: a worker that
// uses it always starts from scratch (offline runs, reference computations).
type EmptyStore struct{}

// Latest implements processors.StateStore: there is never a checkpoint.
func (EmptyStore) Latest(context.Context, int32) (processors.Checkpoint, bool, error) {
	return processors.Checkpoint{}, false, nil
}

// Replay implements processors.StateStore: there is nothing to replay.
func (EmptyStore) Replay(context.Context, int32, int64, int64, func(processors.Record) error) error {
	return nil
}
