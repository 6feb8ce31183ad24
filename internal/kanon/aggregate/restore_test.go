package aggregate

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// dumpOpen renders the pre-noise state of the open windows canonically.
func dumpOpen(a *Aggregator) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "wm=%d next=%d\n", a.wm, a.nextRef)
	for _, w := range a.open {
		fmt.Fprintf(&sb, "window %d first=%d\n", w.start, w.firstRef)
		var cells []string
		for _, c := range w.cells {
			subj := make([]string, 0, len(c.subj))
			for s, n := range c.subj {
				subj = append(subj, fmt.Sprintf("%d:%d", s, n))
			}
			slices.Sort(subj)
			cells = append(cells, fmt.Sprintf("  %q ev=%d sum=%v q=%d %v", c.vals, c.events, c.sum, c.qsum, subj))
		}
		slices.Sort(cells)
		sb.WriteString(strings.Join(cells, "\n"))
		var subs []string
		for s, sc := range w.subjects {
			cs := []string{strings.Join(sc.first.vals, ",")}
			for _, c := range sc.more {
				cs = append(cs, strings.Join(c.vals, ","))
			}
			subs = append(subs, fmt.Sprintf("%d->%v", s, cs))
		}
		slices.Sort(subs)
		fmt.Fprintf(&sb, "\n  bounds %v\n", subs)
	}
	return sb.String()
}

// reseedSource is a deterministic source both instances can be reset to.
type reseedSource struct{ *rand.PCG }

func TestRestoreEqualsOriginal(t *testing.T) {
	dpCfg := func() *DPConfig {
		c := dpConfig(reseedSource{rand.NewPCG(1, 2)})
		c.Epsilon = 40
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  func() Config
	}{
		{"plain", func() Config {
			return Config{K: 4, Window: 150 * time.Millisecond, AllowedLateness: 40 * time.Millisecond, Dims: testDims}
		}},
		{"rollup", func() Config {
			return Config{K: 6, Window: 150 * time.Millisecond, AllowedLateness: 40 * time.Millisecond, Dims: testDims, Rollup: true}
		}},
		{"dp_rollup", func() Config {
			return Config{K: 4, Window: 150 * time.Millisecond, AllowedLateness: 40 * time.Millisecond, Dims: testDims, Rollup: true, DP: dpCfg()}
		}},
		{"dp_zero_noise", func() Config {
			return Config{K: 4, Window: 150 * time.Millisecond, Dims: testDims, Rollup: true, DP: dpConfig(zeroSource{})}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := genEvents(11, 3000, 40, 3000)
			for _, p := range []int{0, 1, 77, 500, 1234, 2001, 2999, 3000} {
				origCfg, restCfg := tc.cfg(), tc.cfg()
				orig := mustNew(t, origCfg)
				collect := func(dst *[]ClosedWindow) EmitFunc { return func(w ClosedWindow) { *dst = append(*dst, w) } }
				var before, after, restored []ClosedWindow
				for _, e := range evs[:p] {
					if _, err := orig.Add(e, collect(&before)); err != nil {
						t.Fatal(err)
					}
				}
				blob := MarshalState(orig.Checkpoint())
				origDump := dumpOpen(orig)

				rest := mustNew(t, restCfg)
				st, err := UnmarshalState(blob)
				if err != nil {
					t.Fatal(err)
				}
				if err := rest.Restore(st); err != nil {
					t.Fatal(err)
				}
				if from, ok := st.ReplayFrom(); ok {
					if r2, ok2 := rest.ReplayFrom(); !ok2 || r2 != from {
						t.Fatalf("ReplayFrom %d/%v vs %d", r2, ok2, from)
					}
					for _, e := range evs[from:p] {
						if _, err := rest.Replay(e); err != nil {
							t.Fatal(err)
						}
					}
				}
				if got := dumpOpen(rest); got != origDump {
					t.Fatalf("p=%d: pre-noise state differs:\n%s\nwant\n%s", p, got, origDump)
				}
				// Align the randomness of both instances from here on.
				for _, c := range []Config{origCfg, restCfg} {
					if s, ok := sourceOf(c.DP).(reseedSource); ok {
						s.Seed(5, 6)
					}
				}
				for _, e := range evs[p:] {
					if _, err := orig.Add(e, collect(&after)); err != nil {
						t.Fatal(err)
					}
					if _, err := rest.Add(e, collect(&restored)); err != nil {
						t.Fatal(err)
					}
				}
				if err := orig.Flush(collect(&after)); err != nil {
					t.Fatal(err)
				}
				if err := rest.Flush(collect(&restored)); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(after, restored) {
					t.Fatalf("p=%d: restored output differs (%d vs %d windows)", p, len(restored), len(after))
				}
				if !reflect.DeepEqual(orig.Stats(), rest.Stats()) {
					t.Fatalf("p=%d: stats differ:\n%+v\n%+v", p, rest.Stats(), orig.Stats())
				}
				if st := orig.Stats(); origCfg.Rollup && p == 0 && slices.Max(st.RowsReleased[1:]) == 0 {
					t.Fatalf("no roll-up release in the test stream: %+v", st)
				}
				if rows := countRows(after); rows == 0 && p < 2000 {
					t.Fatalf("p=%d: nothing released after the checkpoint", p)
				}
			}
		})
	}
}

// sourceOf returns the configured source (nil-safe) for tests.
func sourceOf(c *DPConfig) any {
	if c == nil {
		return nil
	}
	return c.Source
}

func FuzzUnmarshalState(f *testing.F) {
	a, _ := New(Config{K: 3, Window: 100 * time.Millisecond, AllowedLateness: 10 * time.Millisecond, Dims: testDims, Rollup: true})
	for i, e := range genEvents(1, 300, 10, 900) {
		_, _ = a.Add(e, nil)
		if i%60 == 0 {
			f.Add(MarshalState(a.Checkpoint()))
		}
	}
	f.Add(MarshalState(State{}))
	f.Add([]byte("KAG1"))
	f.Add([]byte("KAG1\x02\x06\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalState(b)
		if err != nil {
			return
		}
		s2, err := UnmarshalState(MarshalState(s))
		if err != nil {
			t.Fatalf("re-encoded state rejected: %v", err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip differs: %+v vs %+v", s, s2)
		}
		// Restoring a decoded state must not panic, whatever it holds.
		b2, err := New(Config{K: int(s.K), Window: time.Duration(s.WindowMs) * time.Millisecond, AllowedLateness: 10 * time.Millisecond, Dims: testDims, Rollup: true})
		if err != nil {
			return
		}
		if err := b2.Restore(s); err != nil {
			return
		}
		if from, ok := s.ReplayFrom(); ok {
			_, _ = b2.Replay(Event{Time: s.Open[0].Start, Dims: []string{"HN1", "20"}, Ref: from})
		}
		_, _ = b2.Add(Event{Time: s.Watermark, Dims: []string{"HN1", "20"}, Ref: s.NextRef}, nil)
		_ = b2.Flush(nil)
	})
}

func countRows(ws []ClosedWindow) (n int) {
	for _, w := range ws {
		n += len(w.Rows)
	}
	return n
}
