package castle

import (
	"testing"
)

// TestDropNeverReleasesTheSubject: an erased subject's held tuples are
// removed without a decision, and a cluster that would have reached k only
// with that subject does not release. The attack: an erasure arriving while
// the subject's record waits for its cluster to fill; releasing it later,
// even k-anonymised, would publish data about someone already erased.
func TestDropNeverReleasesTheSubject(t *testing.T) {
	f := newFixture(t, 3, 100, 100, 1)
	c, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []Output
	emit := func(o Output) { out = append(out, o) }
	push := func(ref int64, subj uint64) {
		t.Helper()
		if err := c.Push(f.tuple(raw{ref: ref, subj: subj, age: 30, inc: 100, cat: "a1", zip: "123", sex: "M"}), emit); err != nil {
			t.Fatal(err)
		}
	}
	push(1, 11)
	push(2, 22) // the subject to erase
	push(3, 22)
	var dropped []int64
	if n := c.Drop(22, func(ref int64) { dropped = append(dropped, ref) }); n != 2 || len(dropped) != 2 {
		t.Fatalf("Drop removed %d (%v), want the 2 held tuples of the subject", n, dropped)
	}
	if c.Drop(22, nil) != 0 || c.Drop(99, nil) != 0 {
		t.Fatal("a second Drop, or one for an unknown subject, removed something")
	}
	if got := c.Held(); got != 1 {
		t.Fatalf("held %d, want 1 (subject 11)", got)
	}
	// Subject 33 arrives: with 22 the cluster would have had 3 distinct
	// subjects (k); without it, only 2, so nothing is released.
	push(4, 33)
	for _, o := range out {
		if !o.Suppressed {
			t.Fatalf("a cluster was released with %d distinct subjects left after the erasure: %+v", 2, o)
		}
	}
	push(5, 44) // now k distinct subjects without the erased one
	c.Flush(emit)
	for _, o := range out {
		if o.Ref == 2 || o.Ref == 3 {
			t.Fatalf("an erased subject's tuple was decided: %+v", o)
		}
	}
	released := 0
	for _, o := range out {
		if !o.Suppressed {
			released++
		}
	}
	if released != 3 {
		t.Fatalf("released %d, want the 3 tuples of subjects 11, 33 and 44", released)
	}
	// The snapshot no longer names the subject: a restore with every
	// tuple offered holds only the others.
	if s := c.Stats(); s.In != 5 {
		t.Fatalf("stats in %d", s.In)
	}
}

// TestDropThenSnapshotForgetsTheSubject: after Drop, a snapshot restores
// without the subject's tuples even when the replay offers them.
func TestDropThenSnapshotForgetsTheSubject(t *testing.T) {
	f := newFixture(t, 3, 100, 100, 1)
	c, _ := New(f.cfg)
	tuples := map[int64]Tuple{}
	for i, subj := range []uint64{11, 22, 33} {
		tp := f.tuple(raw{ref: int64(i + 1), subj: subj, age: 30, inc: 100, cat: "a1", zip: "123", sex: "M"})
		tuples[tp.Ref] = tp
		if err := c.Push(tp, nil); err != nil {
			t.Fatal(err)
		}
	}
	// k=3 reached by the third push? Only when the delay constraint runs;
	// with delta 100 nothing is decided yet.
	if c.Held() != 3 {
		t.Fatalf("held %d", c.Held())
	}
	c.Drop(22, nil)
	snap := c.MarshalState()
	r, _ := New(f.cfg)
	if err := r.Restore(snap, func(ref int64) (Tuple, bool) { tp, ok := tuples[ref]; return tp, ok }); err != nil {
		t.Fatal(err)
	}
	for _, ref := range r.HeldRefs(nil) {
		if ref == 2 {
			t.Fatal("the restored state holds the erased subject's tuple")
		}
	}
	if r.Held() != 2 {
		t.Fatalf("restored held %d, want 2", r.Held())
	}
}
