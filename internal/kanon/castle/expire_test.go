package castle

import "testing"

// TestExpire: expiring the oldest held tuples early (a time bound) decides
// exactly those, in order, and keeps every guarantee the checker verifies.
func TestExpire(t *testing.T) {
	for _, sm := range []SplitMethod{SplitKNN, SplitGreedy} {
		f := newFixture(t, 5, 400, 20, 1)
		f.cfg.Split = sm
		c, err := New(f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		in := genStream(3000, 200, 11)
		var outs []Output
		emit := func(o Output) { outs = append(outs, o) }
		decided := map[int64]bool{}
		for i, r := range in {
			if err := c.Push(f.tuple(r), emit); err != nil {
				t.Fatal(err)
			}
			if i%250 == 249 {
				// Everything that arrived more than 50 tuples ago expires.
				limit := r.ref - 50
				c.Expire(func(ref int64) bool { return ref < limit }, emit)
				for _, o := range outs {
					decided[o.Ref] = true
				}
				for _, held := range c.HeldRefs(nil) {
					if held < limit {
						t.Fatalf("%v: tuple %d older than the bound is still held", sm, held)
					}
				}
			}
		}
		c.Flush(emit)
		check(t, f, in, outs, 5, 1)
		if n := c.Expire(func(int64) bool { return true }, emit); n != 0 {
			t.Errorf("%v: expired %d tuples after a flush", sm, n)
		}
	}
}
