package shard

import (
	"context"
	"testing"

	"github.com/privacy-pipeline/pipeline/processors"
)

type store struct {
	cps    map[int32]processors.Checkpoint
	input  []processors.Record
	loads  int
	replay int
}

func (s *store) Latest(_ context.Context, p int32) (processors.Checkpoint, bool, error) {
	s.loads++
	cp, ok := s.cps[p]
	return cp, ok, nil
}

func (s *store) Replay(_ context.Context, _ int32, from, to int64, fn func(processors.Record) error) error {
	for _, r := range s.input {
		if r.Offset >= from && r.Offset < to {
			s.replay++
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// counter state: the sum of offsets seen, restored from "checkpoint" bytes.
func loader(_ context.Context, _ int32, cp processors.Checkpoint, ok bool, replay func(func(processors.Record) error) error) (int64, error) {
	if !ok {
		return 0, nil
	}
	n := int64(len(cp.State))
	err := replay(func(r processors.Record) error { n += r.Offset; return nil })
	return n, err
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	st := &store{cps: map[int32]processors.Checkpoint{}}
	s := New(st, loader)
	rec := func(p int32, off int64) processors.Record { return processors.Record{Partition: p, Offset: off} }
	if _, err := s.Get(ctx, rec(1, 10)); err != nil || st.loads != 1 {
		t.Fatalf("first record loads: %v, loads %d", err, st.loads)
	}
	if _, err := s.Get(ctx, rec(1, 11)); err != nil || st.loads != 1 {
		t.Fatalf("loaded shard reused: loads %d", st.loads)
	}
	var touched []int32
	s.Touched(func(p int32, next int64, _ *int64) {
		touched = append(touched, p)
		if next != 12 {
			t.Errorf("next %d, want 12", next)
		}
	})
	if len(touched) != 1 {
		t.Fatalf("touched %v", touched)
	}
	s.Done(false) // aborted: the shard is dropped
	if s.Len() != 0 {
		t.Fatal("an aborted batch's shard survived")
	}
	// A checkpoint exists now: the next load restores it and replays.
	st.cps[1] = processors.Checkpoint{Partition: 1, Next: 12, ReplayFrom: 10, State: []byte("abc")}
	st.input = []processors.Record{rec(1, 10), rec(1, 11)}
	v, err := s.Get(ctx, rec(1, 12))
	if err != nil || *v != 3+10+11 || st.replay != 2 {
		t.Fatalf("restored %v (err %v, replayed %d)", *v, err, st.replay)
	}
	s.Done(true)
	// Rewind (offset before next): reload.
	if _, err := s.Get(ctx, rec(1, 5)); err != nil || st.loads != 3 {
		t.Fatalf("a rewind must reload: loads %d", st.loads)
	}
	// A checkpoint ahead of the input is ignored and counted.
	if s.Resets != 1 {
		t.Errorf("resets %d, want 1 (checkpoint next 12 > offset 5)", s.Resets)
	}
	s.Done(true)
	s.Forget(processors.AllPartitions)
	if s.Len() != 0 {
		t.Fatal("Forget(All) kept shards")
	}
	// Ensure restores an idle partition; Touch marks it for a checkpoint.
	if err := s.Ensure(ctx, 1); err != nil || s.Len() != 1 {
		t.Fatalf("ensure: %v, %d shards", err, s.Len())
	}
	if err := s.Ensure(ctx, 2); err != nil || s.Len() != 1 {
		t.Fatalf("ensure without checkpoint must not create a shard: %v, %d", err, s.Len())
	}
	loads := st.loads
	if err := s.Ensure(ctx, 2); err != nil || st.loads != loads {
		t.Fatalf("a partition known to have no checkpoint is looked up again (loads %d -> %d)", loads, st.loads)
	}
	s.Touch(1)
	n := 0
	s.Touched(func(p int32, next int64, _ *int64) {
		n++
		if next != 12 {
			t.Errorf("ensured shard's next %d, want the checkpoint's 12", next)
		}
	})
	if n != 1 {
		t.Fatalf("touched %d shards", n)
	}
}

// TestOpenCreatesAFreshShard: Open gives a partition without a checkpoint
// a fresh state (Ensure leaves it unloaded), restores one with a
// checkpoint, and the fresh state's checkpoint position is 0.
func TestOpenCreatesAFreshShard(t *testing.T) {
	ctx := context.Background()
	st := &store{cps: map[int32]processors.Checkpoint{2: {Partition: 2, Next: 5, ReplayFrom: 5, State: []byte("abc")}}}
	s := New(st, loader)
	if err := s.Ensure(ctx, 1); err != nil || s.Len() != 0 {
		t.Fatalf("Ensure loaded a partition without a checkpoint: %v", err)
	}
	if err := s.Open(ctx, 1); err != nil || s.Len() != 1 {
		t.Fatalf("Open: %v, %d shards", err, s.Len())
	}
	if err := s.Open(ctx, 2); err != nil || s.Len() != 2 {
		t.Fatalf("Open with a checkpoint: %v", err)
	}
	s.Touch(1)
	s.Touch(2)
	got := map[int32][2]int64{}
	s.Touched(func(p int32, next int64, v *int64) { got[p] = [2]int64{next, *v} })
	if got[1] != [2]int64{0, 0} || got[2] != [2]int64{5, 3} {
		t.Fatalf("touched %v", got)
	}
	// A record after the fresh state continues it.
	if v, err := s.Get(ctx, processors.Record{Partition: 1, Offset: 0}); err != nil || *v != 0 {
		t.Fatalf("Get after Open: %v", err)
	}
}
