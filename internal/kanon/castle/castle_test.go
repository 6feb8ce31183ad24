package castle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
)

const testARX = `a1;a;*
a2;a;*
a3;a;*
b1;b;*
b2;b;*
c1;c;*
c2;c;*
c3;c;*
`

type fixture struct {
	tree  *hierarchy.Tree
	trunc *hierarchy.Truncation
	flat  *hierarchy.Flat
	cfg   Config
}

func newFixture(t testing.TB, k, delta, beta, l int) *fixture {
	t.Helper()
	tree, err := hierarchy.ParseARX(strings.NewReader(testARX))
	if err != nil {
		t.Fatal(err)
	}
	trunc, err := hierarchy.NewTruncation(3, 10)
	if err != nil {
		t.Fatal(err)
	}
	flat, err := hierarchy.NewFlat(2)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{tree: tree, trunc: trunc, flat: flat, cfg: Config{
		K: k, Delta: delta, Beta: beta, Mu: 100, L: l, MaxReuse: 1000, Seed: 7,
		QIs: []QI{
			{Name: "age", Kind: Numeric, Min: 0, Max: 100},
			{Name: "cat", Kind: Categorical, Hierarchy: tree},
			{Name: "income", Kind: Numeric, Min: 0, Max: 1000},
			{Name: "zip", Kind: Categorical, Hierarchy: trunc},
			{Name: "sex", Kind: Categorical, Hierarchy: flat},
		},
	}}
}

// raw is an input record with string categorical values, so a second
// fixture (with fresh dynamic hierarchies) can re-map it.
type raw struct {
	ref        int64
	subj, sens uint64
	age, inc   float64
	cat, zip   string
	sex        string
}

func (f *fixture) tuple(r raw) Tuple {
	c, ok1 := f.tree.Lookup(r.cat)
	z, ok2 := f.trunc.Lookup(r.zip)
	s, ok3 := f.flat.Lookup(r.sex)
	if !ok1 || !ok2 || !ok3 {
		panic(fmt.Sprintf("fixture lookup %+v", r))
	}
	return Tuple{Ref: r.ref, Subject: r.subj, Sensitive: r.sens, Num: []float64{r.age, r.inc}, Cat: []hierarchy.Node{c, z, s}}
}

var cats = []string{"a1", "a2", "a3", "b1", "b2", "c1", "c2", "c3"}

func genStream(n int, nSubj uint64, seed uint64) []raw {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]raw, n)
	for i := range out {
		out[i] = raw{
			ref:  int64(1000 + i),
			subj: rng.Uint64N(nSubj),
			sens: rng.Uint64N(4),
			age:  float64(18 + rng.IntN(60)),
			inc:  math.Round(rng.NormFloat64()*100 + 400),
			cat:  cats[rng.IntN(len(cats))],
			zip:  fmt.Sprintf("%03d", rng.IntN(40)*7%1000),
			sex:  []string{"M", "F"}[rng.IntN(2)],
		}
	}
	return out
}

// run pushes the stream and flushes, returning all outputs.
func run(t testing.TB, f *fixture, in []raw) []Output {
	t.Helper()
	c, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var outs []Output
	emit := func(o Output) { outs = append(outs, o) }
	for _, r := range in {
		if err := c.Push(f.tuple(r), emit); err != nil {
			t.Fatal(err)
		}
	}
	c.Flush(emit)
	return outs
}

// check is the independent checker: it does not use Castle's counters.
// Every input is decided exactly once; every released tuple's values lie
// in its generalisation; grouping releases by exact generalisation, every
// group has >= k distinct subjects (and >= l distinct sensitive values).
func check(t *testing.T, f *fixture, in []raw, outs []Output, k, l int) (released, suppressed, reused int) {
	t.Helper()
	byRef := make(map[int64]raw, len(in))
	for _, r := range in {
		byRef[r.ref] = r
	}
	seen := make(map[int64]bool, len(in))
	type group struct{ subj, sens map[uint64]bool }
	groups := map[string]*group{}
	hs := []hierarchy.Hierarchy{f.tree, f.trunc, f.flat}
	for _, o := range outs {
		r, ok := byRef[o.Ref]
		if !ok {
			t.Fatalf("output for unknown ref %d", o.Ref)
		}
		if seen[o.Ref] {
			t.Fatalf("ref %d decided twice", o.Ref)
		}
		seen[o.Ref] = true
		if o.Delay < 0 || o.Delay > int64(f.cfg.Delta) {
			t.Fatalf("ref %d delay %d outside [0,%d]", o.Ref, o.Delay, f.cfg.Delta)
		}
		if o.Suppressed {
			suppressed++
			if o.Gen != nil {
				t.Fatalf("suppressed ref %d has a generalisation", o.Ref)
			}
			continue
		}
		released++
		if o.Reused {
			reused++
		}
		g := o.Gen
		if r.age < g.Lo[0] || r.age > g.Hi[0] || r.inc < g.Lo[1] || r.inc > g.Hi[1] {
			t.Fatalf("ref %d numeric values outside %v-%v", o.Ref, g.Lo, g.Hi)
		}
		tu := f.tuple(r)
		for j, h := range hs {
			if !hierarchy.Covers(h, g.Cat[j], tu.Cat[j]) {
				t.Fatalf("ref %d categorical %d not covered", o.Ref, j)
			}
		}
		key := fmt.Sprint(g.Lo, g.Hi, g.Cat)
		gr := groups[key]
		if gr == nil {
			gr = &group{map[uint64]bool{}, map[uint64]bool{}}
			groups[key] = gr
		}
		gr.subj[r.subj] = true
		gr.sens[r.sens] = true
	}
	if len(seen) != len(in) {
		t.Fatalf("%d of %d tuples decided", len(seen), len(in))
	}
	for key, gr := range groups {
		if len(gr.subj) < k {
			t.Fatalf("group %s has %d distinct subjects < k=%d", key, len(gr.subj), k)
		}
		if l > 1 && len(gr.sens) < l {
			t.Fatalf("group %s has %d distinct sensitive values < l=%d", key, len(gr.sens), l)
		}
	}
	return
}

// splits is the configuration matrix of split methods every property
// test runs under.
var splits = []SplitMethod{SplitDefault, SplitKNN, SplitGreedy}

func TestKAnonymityRandom(t *testing.T) {
	for _, sm := range splits {
		for _, tc := range []struct{ k, delta, beta int }{{2, 10, 5}, {5, 50, 10}, {10, 200, 20}, {25, 500, 50}, {3, 0, 3}, {1, 30, 5}} {
			t.Run(fmt.Sprintf("%v_k%d_d%d_b%d", sm, tc.k, tc.delta, tc.beta), func(t *testing.T) {
				f := newFixture(t, tc.k, tc.delta, tc.beta, 0)
				f.cfg.Split = sm
				in := genStream(3000, 1500, uint64(tc.k))
				outs := run(t, f, in)
				rel, sup, reu := check(t, f, in, outs, tc.k, 0)
				t.Logf("released %d suppressed %d reused %d", rel, sup, reu)
				if tc.delta >= 50 && rel < len(in)/2 {
					t.Errorf("only %d of %d released", rel, len(in))
				}
			})
		}
	}
}

// TestSplitSubjects splits big clusters whose subjects send many tuples
// each (few subjects, long delay), under every split method.
func TestSplitSubjects(t *testing.T) {
	for _, sm := range splits {
		for _, l := range []int{0, 2} {
			f := newFixture(t, 4, 400, 3, l)
			f.cfg.Split = sm
			in := genStream(4000, 30, 17)
			outs := run(t, f, in)
			rel, sup, _ := check(t, f, in, outs, 4, l)
			t.Logf("%v l=%d: released %d suppressed %d", sm, l, rel, sup)
			if rel < len(in)/2 {
				t.Errorf("%v l=%d: only %d of %d released", sm, l, rel, len(in))
			}
		}
	}
}

func TestAdversarialHeavySubject(t *testing.T) {
	for _, sm := range splits {
		t.Run(sm.String(), func(t *testing.T) { testAdversarialHeavySubject(t, sm) })
	}
}

func testAdversarialHeavySubject(t *testing.T, sm SplitMethod) {
	const k = 5
	f := newFixture(t, k, 100, 10, 0)
	f.cfg.Split = sm
	in := genStream(5000, 1, 3)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range in {
		in[i].subj = 42 // one subject sends nearly everything
		if rng.IntN(50) == 0 {
			in[i].subj = 1000 + rng.Uint64N(8) // a few others
		}
	}
	outs := run(t, f, in)
	rel, sup, _ := check(t, f, in, outs, k, 0)
	t.Logf("released %d suppressed %d", rel, sup)
	// Only 9 subjects exist; k=5 needs 5 distinct subjects per group.
	if rel == 0 {
		t.Log("nothing released (acceptable)")
	}
	// A stream of a single subject must release nothing.
	only := genStream(2000, 1, 4)
	outs = run(t, f, only)
	rel, sup, _ = check(t, f, only, outs, k, 0)
	if rel != 0 || sup != len(only) {
		t.Fatalf("single subject: released %d suppressed %d", rel, sup)
	}
}

func TestLDiversity(t *testing.T) {
	for _, sm := range splits {
		t.Run(sm.String(), func(t *testing.T) { testLDiversity(t, sm) })
	}
}

func testLDiversity(t *testing.T, sm SplitMethod) {
	for _, l := range []int{2, 3} {
		f := newFixture(t, 5, 100, 10, l)
		f.cfg.Split = sm
		in := genStream(4000, 2000, 11)
		rng := rand.New(rand.NewPCG(5, 5))
		for i := range in {
			// Skewed sensitive values.
			in[i].sens = 0
			if rng.IntN(5) == 0 {
				in[i].sens = 1 + rng.Uint64N(3)
			}
		}
		outs := run(t, f, in)
		rel, sup, _ := check(t, f, in, outs, 5, l)
		t.Logf("l=%d released %d suppressed %d", l, rel, sup)
		if rel == 0 {
			t.Fatal("nothing released")
		}
	}
}

func TestOutlierSuppressed(t *testing.T) {
	f := newFixture(t, 5, 40, 10, 0)
	in := genStream(400, 400, 21)
	for i := range in {
		in[i].subj = uint64(i)
		in[i].inc = 400 + float64(i%7)
		in[i].age = 40 + float64(i%5)
		in[i].cat, in[i].zip, in[i].sex = "a1", "100", "M"
	}
	out := &in[200]
	out.inc, out.age, out.cat, out.zip, out.sex = 1000, 99, "c3", "999", "F"
	outs := run(t, f, in)
	check(t, f, in, outs, 5, 0)
	for _, o := range outs {
		if o.Ref == out.ref {
			if !o.Suppressed {
				t.Fatalf("outlier released: %+v gen %+v", o, *o.Gen)
			}
			return
		}
	}
	t.Fatal("outlier not decided")
}

func TestDelayBound(t *testing.T) {
	for _, sm := range splits {
		t.Run(sm.String(), func(t *testing.T) { testDelayBound(t, sm) })
	}
}

func testDelayBound(t *testing.T, sm SplitMethod) {
	const delta = 30
	f := newFixture(t, 4, delta, 8, 0)
	f.cfg.Split = sm
	in := genStream(2000, 800, 33)
	c, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	arrival := map[int64]int64{}
	for p, r := range in {
		arrival[r.ref] = int64(p)
		err := c.Push(f.tuple(r), func(o Output) {
			if d := int64(p) - arrival[o.Ref]; d != o.Delay || d > delta {
				t.Fatalf("ref %d released at %d, arrival %d, reported delay %d", o.Ref, p, arrival[o.Ref], o.Delay)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		// After Push(p) nothing that arrived at or before p-delta is held.
		for _, ref := range c.HeldRefs(nil) {
			if arrival[ref] <= int64(p-delta) {
				t.Fatalf("ref %d (arrival %d) still held at %d", ref, arrival[ref], p)
			}
		}
		if m, ok := c.MinHeldRef(); ok {
			if refs := c.HeldRefs(nil); slices.Min(refs) != m {
				t.Fatal("MinHeldRef")
			}
		}
	}
	c.Flush(nil)
	if _, ok := c.MinHeldRef(); ok || c.Held() != 0 {
		t.Fatal("tuples held after Flush")
	}
	if st := c.Stats(); st.MaxDelay > delta || st.Released+st.Suppressed != st.In {
		t.Fatalf("stats %+v", st)
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, 5, 100, 10, 0)
	in := genStream(3000, 3000, 2)
	c, _ := New(f.cfg)
	var rel, sup, reu int64
	var il float64
	emit := func(o Output) {
		switch {
		case o.Suppressed:
			sup++
		default:
			rel++
			il += o.Gen.InfoLoss
			if o.Reused {
				reu++
			}
		}
	}
	for _, r := range in {
		_ = c.Push(f.tuple(r), emit)
	}
	c.Flush(emit)
	st := c.Stats()
	if st.In != int64(len(in)) || st.Released != rel || st.Suppressed != sup || st.Reused != reu || math.Abs(st.InfoLossSum-il) > 1e-9 {
		t.Fatalf("stats %+v vs %d %d %d %v", st, rel, sup, reu, il)
	}
	if st.ClustersPublished == 0 || c.Tau() <= 0 {
		t.Fatalf("no clusters published: %+v", st)
	}
}

func TestConfigValidation(t *testing.T) {
	f := newFixture(t, 5, 10, 5, 0)
	good := f.cfg
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	mods := map[string]func(*Config){
		"k0":       func(c *Config) { c.K = 0 },
		"delta":    func(c *Config) { c.Delta = -1 },
		"beta":     func(c *Config) { c.Beta = 0 },
		"mu":       func(c *Config) { c.Mu = 0 },
		"l":        func(c *Config) { c.L = -1 },
		"reuse":    func(c *Config) { c.MaxReuse = -1 },
		"noqi":     func(c *Config) { c.QIs = nil },
		"domain":   func(c *Config) { c.QIs = []QI{{Kind: Numeric, Min: 5, Max: 5}} },
		"nan":      func(c *Config) { c.QIs = []QI{{Kind: Numeric, Min: math.NaN(), Max: 5}} },
		"nohier":   func(c *Config) { c.QIs = []QI{{Kind: Categorical}} },
		"nokind":   func(c *Config) { c.QIs = []QI{{Name: "x"}} },
		"hugeDelt": func(c *Config) { c.Delta = MaxDelta + 1 },
		"split":    func(c *Config) { c.Split = SplitGreedy + 1 },
	}
	for name, mod := range mods {
		cfg := good
		mod(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestBadTuple(t *testing.T) {
	f := newFixture(t, 5, 10, 5, 0)
	c, _ := New(f.cfg)
	good := f.tuple(genStream(1, 1, 1)[0])
	bad := []Tuple{
		{Num: []float64{1}, Cat: good.Cat},
		{Num: []float64{math.NaN(), 1}, Cat: good.Cat},
		{Num: []float64{math.Inf(1), 1}, Cat: good.Cat},
		{Num: good.Num, Cat: []hierarchy.Node{0, 0}},
		{Num: good.Num, Cat: []hierarchy.Node{999, good.Cat[1], good.Cat[2]}},
		{Num: good.Num, Cat: []hierarchy.Node{-1, good.Cat[1], good.Cat[2]}},
	}
	for i, b := range bad {
		if err := c.Push(b, nil); !errors.Is(err, ErrTuple) {
			t.Errorf("bad tuple %d: err = %v", i, err)
		}
	}
	if c.Position() != 0 {
		t.Fatal("bad tuple consumed a position")
	}
	// Values outside the domain extend it.
	ext := good
	ext.Num = []float64{-50, 5000}
	if err := c.Push(ext, nil); err != nil {
		t.Fatal(err)
	}
	c.Flush(nil)
}

func TestDomainExtension(t *testing.T) {
	f := newFixture(t, 3, 20, 5, 0)
	in := genStream(500, 500, 8)
	for i := range in {
		if i%50 == 0 {
			in[i].inc = 3000 + float64(i)
			in[i].age = -float64(i)
		}
	}
	outs := run(t, f, in)
	check(t, f, in, outs, 3, 0)
}

type rec struct {
	ref          int64
	cid          uint64
	reused, supp bool
	delay        int64
	lo, hi       []float64
	cat          []string
	il           float64
}

func record(h []hierarchy.Hierarchy, o Output) rec {
	r := rec{ref: o.Ref, cid: o.ClusterID, reused: o.Reused, supp: o.Suppressed, delay: o.Delay}
	if o.Gen != nil {
		r.lo, r.hi, r.il = o.Gen.Lo, o.Gen.Hi, o.Gen.InfoLoss
		for j, n := range o.Gen.Cat {
			r.cat = append(r.cat, fmt.Sprintf("%d:%s", h[j].Level(n), h[j].Label(n)))
		}
	}
	return r
}

// TestRestoreEquivalence snapshots an instance at several points,
// restores into a new instance built over FRESH hierarchies (so dynamic
// node ids differ) and checks that both produce identical outputs for the
// rest of the stream.
func TestRestoreEquivalence(t *testing.T) {
	for _, sm := range splits {
		t.Run(sm.String(), func(t *testing.T) { testRestoreEquivalence(t, sm) })
	}
}

func testRestoreEquivalence(t *testing.T, sm SplitMethod) {
	for _, l := range []int{0, 2} {
		in := genStream(4000, 1200, 77)
		for _, cut := range []int{0, 1, 57, 333, 1500, 3999} {
			f1 := newFixture(t, 6, 120, 12, l)
			f1.cfg.MaxReuse = 50
			f1.cfg.Split = sm
			c1, err := New(f1.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range in[:cut] {
				_ = c1.Push(f1.tuple(r), nil)
			}
			state := c1.MarshalState()
			// A fresh fixture interns zip codes in another order.
			f2 := newFixture(t, 6, 120, 12, l)
			f2.cfg.MaxReuse = 50
			f2.cfg.Split = sm
			for i := len(in) - 1; i >= 0; i-- {
				f2.trunc.Lookup(in[i].zip)
			}
			c2, _ := New(f2.cfg)
			byRef := map[int64]raw{}
			for _, r := range in {
				byRef[r.ref] = r
			}
			err = c2.Restore(state, func(ref int64) (Tuple, bool) {
				r, ok := byRef[ref]
				if !ok {
					return Tuple{}, false
				}
				return f2.tuple(r), true
			})
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			if !bytes.Equal(c2.MarshalState(), state) {
				t.Fatalf("cut %d: re-marshalled state differs", cut)
			}
			h1 := []hierarchy.Hierarchy{f1.tree, f1.trunc, f1.flat}
			h2 := []hierarchy.Hierarchy{f2.tree, f2.trunc, f2.flat}
			var o1, o2 []rec
			for _, r := range in[cut:] {
				_ = c1.Push(f1.tuple(r), func(o Output) { o1 = append(o1, record(h1, o)) })
				_ = c2.Push(f2.tuple(r), func(o Output) { o2 = append(o2, record(h2, o)) })
			}
			c1.Flush(func(o Output) { o1 = append(o1, record(h1, o)) })
			c2.Flush(func(o Output) { o2 = append(o2, record(h2, o)) })
			if len(o1) != len(o2) {
				t.Fatalf("l=%d cut %d: %d vs %d outputs", l, cut, len(o1), len(o2))
			}
			for i := range o1 {
				if fmt.Sprint(o1[i]) != fmt.Sprint(o2[i]) {
					t.Fatalf("l=%d cut %d: output %d differs:\n%+v\n%+v", l, cut, i, o1[i], o2[i])
				}
			}
			if c1.Stats() != c2.Stats() {
				t.Fatalf("stats differ: %+v vs %+v", c1.Stats(), c2.Stats())
			}
		}
	}
}

func TestRestoreErrors(t *testing.T) {
	f := newFixture(t, 5, 50, 10, 0)
	c, _ := New(f.cfg)
	in := genStream(300, 300, 1)
	byRef := map[int64]raw{}
	for _, r := range in {
		byRef[r.ref] = r
		_ = c.Push(f.tuple(r), nil)
	}
	state := c.MarshalState()
	lookup := func(ref int64) (Tuple, bool) {
		r, ok := byRef[ref]
		if !ok {
			return Tuple{}, false
		}
		return f.tuple(r), true
	}
	c2, _ := New(f.cfg)
	if err := c2.Restore(state, lookup); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("hello world, this is not a snapshot"),
		"truncated": state[:len(state)/2],
		"flipped":   append(append([]byte(nil), state[:20]...), append([]byte{state[20] ^ 1}, state[21:]...)...),
	} {
		if err := c2.Restore(s, lookup); !errors.Is(err, ErrState) {
			t.Errorf("%s: err = %v", name, err)
		}
		if c2.Position() != 0 || c2.Held() != 0 {
			t.Errorf("%s: not reset after failed restore", name)
		}
	}
	other := f.cfg
	other.K = 6
	c3, _ := New(other)
	if err := c3.Restore(state, lookup); !errors.Is(err, ErrState) {
		t.Errorf("other config: %v", err)
	}
	// The default split is SplitGreedy: a snapshot taken with it restores
	// under an explicit SplitGreedy, not under SplitKNN.
	other = f.cfg
	other.Split = SplitGreedy
	c4, _ := New(other)
	if err := c4.Restore(state, lookup); err != nil {
		t.Errorf("explicit SplitGreedy: %v", err)
	}
	other.Split = SplitKNN
	c4, _ = New(other)
	if err := c4.Restore(state, lookup); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "Split") {
		t.Errorf("other split: %v", err)
	}
	// A version-1 snapshot (before Config.Split) is rejected clearly.
	v1 := append([]byte(nil), state...)
	v1[len(stateMagic)] = 1
	if err := c2.Restore(fixCRC(v1), lookup); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("version 1: %v", err)
	}
	if err := c2.Restore(state, func(int64) (Tuple, bool) { return Tuple{}, false }); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing lookup: %v", err)
	}
	if err := c2.Restore(state, func(ref int64) (Tuple, bool) {
		tu, ok := lookup(ref)
		tu.Subject++
		return tu, ok
	}); err == nil {
		t.Error("subject mismatch accepted")
	}
}

func TestPushAllocs(t *testing.T) {
	for _, sm := range splits {
		t.Run(sm.String(), func(t *testing.T) { testPushAllocs(t, sm) })
	}
}

func testPushAllocs(t *testing.T, sm SplitMethod) {
	f := newFixture(t, 10, 500, 20, 0)
	f.cfg.Split = sm
	in := genStream(20000, 20000, 3)
	tuples := make([]Tuple, len(in))
	for i, r := range in {
		tuples[i] = f.tuple(r)
	}
	c, _ := New(f.cfg)
	for _, tu := range tuples[:10000] {
		_ = c.Push(tu, nil)
	}
	i := 10000
	allocs := testing.AllocsPerRun(5000, func() {
		_ = c.Push(tuples[i], nil)
		i++
	})
	// Only the shared Generalization of each published cluster (4 small
	// allocations per cluster of ~k tuples) remains.
	if allocs > 1 {
		t.Fatalf("%.2f allocations per Push", allocs)
	}
	t.Logf("%.3f allocs per Push", allocs)
}

// fixCRC recomputes the trailing checksum so the fuzzer reaches the
// decoder proper.
func fixCRC(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	out := append([]byte(nil), b[:len(b)-4]...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

func FuzzRestore(f *testing.F) {
	fx := newFixture(f, 3, 20, 4, 2)
	fx.cfg.MaxReuse = 5
	in := genStream(200, 60, 5)
	byRef := map[int64]raw{}
	for _, r := range in {
		byRef[r.ref] = r
	}
	for _, sm := range splits {
		cfg := fx.cfg
		cfg.Split = sm
		c, _ := New(cfg)
		for i, r := range in {
			_ = c.Push(fx.tuple(r), nil)
			if i%37 == 0 {
				f.Add(uint8(sm), c.MarshalState())
			}
		}
		f.Add(uint8(sm), c.MarshalState())
	}
	f.Add(uint8(0), []byte("CSTL\x01"))
	f.Add(uint8(0), []byte("CSTL\x02"))
	lookup := func(ref int64) (Tuple, bool) {
		r, ok := byRef[ref]
		if !ok {
			return Tuple{}, false
		}
		return fx.tuple(r), true
	}
	f.Fuzz(func(t *testing.T, sm uint8, data []byte) {
		cfg := fx.cfg
		cfg.Split = splits[int(sm)%len(splits)]
		c, _ := New(cfg)
		for _, d := range [][]byte{data, fixCRC(data)} {
			if err := c.Restore(d, lookup); err != nil {
				continue
			}
			// A restored instance must keep working.
			for _, r := range in[:50] {
				if err := c.Push(fx.tuple(r), nil); err != nil {
					t.Fatal(err)
				}
			}
			c.Flush(nil)
			if c.Held() != 0 {
				t.Fatal("held after flush")
			}
		}
	})
}

func BenchmarkPush(b *testing.B) {
	for _, sm := range []SplitMethod{SplitKNN, SplitGreedy} {
		for _, k := range []int{10, 100} {
			benchmarkPush(b, sm, k)
		}
	}
}

func benchmarkPush(b *testing.B, sm SplitMethod, k int) {
	b.Run(fmt.Sprintf("%v_k%d_delta10000_beta50", sm, k), func(b *testing.B) {
		f := newFixture(b, k, 10000, 50, 0)
		f.cfg.Split = sm
		in := genStream(1<<15, 1<<15, 1)
		tuples := make([]Tuple, len(in))
		for i, r := range in {
			tuples[i] = f.tuple(r)
		}
		c, _ := New(f.cfg)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			_ = c.Push(tuples[i&(len(tuples)-1)], nil)
		}
	})
}
