package aggregate

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// truncGen generalises by dropping one trailing character per level; the
// top level is "*".
type truncGen struct{ levels int }

func (g truncGen) Levels() int { return g.levels }
func (g truncGen) Generalize(v string, level int) string {
	if level >= g.levels-1 {
		return Star
	}
	return v[:max(0, len(v)-level)]
}

// testDims: "city" (3 levels: "HN1" -> "HN" -> "*") and "age" (2 levels).
var testDims = []Dim{{Name: "city", Gen: truncGen{3}}, {Name: "age", Gen: truncGen{2}}}

var cities = []string{"HN1", "HN2", "HN3", "SG1", "SG2", "DN1"}
var ages = []string{"20", "30", "40"}

// genEvents returns n events with times increasing with some disorder.
func genEvents(seed uint64, n, subjects int, spanMs int64) []Event {
	r := rand.New(rand.NewPCG(seed, 1))
	evs := make([]Event, n)
	for i := range evs {
		t := int64(i)*spanMs/int64(n) - r.Int64N(spanMs/20+1)
		evs[i] = Event{
			Time:      t,
			Subject:   uint64(r.IntN(subjects)),
			Dims:      []string{cities[r.IntN(len(cities))], ages[r.IntN(len(ages))]},
			Amount:    math.Round(r.Float64()*1000) / 10,
			HasAmount: r.IntN(4) != 0,
			Ref:       int64(i),
		}
		if r.IntN(7) == 0 { // popular cell
			evs[i].Dims = []string{"HN1", "20"}
		}
	}
	return evs
}

// run feeds evs to a and flushes, returning the closed windows.
func run(t testing.TB, a *Aggregator, evs []Event) []ClosedWindow {
	t.Helper()
	var out []ClosedWindow
	emit := func(w ClosedWindow) { out = append(out, w) }
	for _, e := range evs {
		if _, err := a.Add(e, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(emit); err != nil {
		t.Fatal(err)
	}
	return out
}

// checker recounts released rows from the raw events without trusting
// the aggregator.
type checker struct {
	k          int
	win, late  int64
	dims       []Dim
	l0, linf   int // > 0 under DP
	exact      bool
	suppL0     int64
	suppFinal  int64
	kept       int64
	late_      int64
	minSubject int64
}

func (c *checker) gen(e Event, level int) string {
	vals := make([]string, len(e.Dims))
	for i, v := range e.Dims {
		vals[i] = c.dims[i].Gen.Generalize(v, min(level, c.dims[i].Gen.Levels()-1))
	}
	return strings.Join(vals, "\x00")
}

func floorDiv(t, w int64) int64 {
	s := t / w * w
	if s > t {
		s -= w
	}
	return s
}

// check verifies every window of out against evs.
func (c *checker) check(t *testing.T, evs []Event, out []ClosedWindow) {
	t.Helper()
	// 1. Lateness and DP bounding, independently simulated.
	wm := int64(math.MinInt64)
	byWin := map[int64][]Event{}
	type sc struct {
		w int64
		s uint64
	}
	cellsOf := map[sc][]string{}
	perCell := map[string]int{}
	for _, e := range evs {
		start := floorDiv(e.Time, c.win)
		if wm != math.MinInt64 && start+c.win+c.late <= wm {
			c.late_++
			continue
		}
		wm = max(wm, e.Time)
		if c.l0 > 0 {
			key := c.gen(e, 0)
			cs := cellsOf[sc{start, e.Subject}]
			if !slices.Contains(cs, key) {
				if len(cs) >= c.l0 {
					continue
				}
				cellsOf[sc{start, e.Subject}] = append(cs, key)
			}
			pk := fmt.Sprint(start, "|", e.Subject, "|", key)
			if perCell[pk] >= c.linf {
				continue
			}
			perCell[pk]++
		}
		c.kept++
		byWin[start] = append(byWin[start], e)
	}
	seen := map[int64]bool{}
	for _, w := range out {
		if seen[w.Start] || w.End != w.Start+c.win {
			t.Fatalf("window %d emitted twice or with a wrong end", w.Start)
		}
		seen[w.Start] = true
		c.checkWindow(t, byWin[w.Start], w)
	}
	for s, es := range byWin {
		if !seen[s] {
			t.Fatalf("window %d with %d events never emitted", s, len(es))
		}
	}
}

func (c *checker) checkWindow(t *testing.T, evs []Event, w ClosedWindow) {
	t.Helper()
	assigned := make([]int, len(evs)) // row index + 1
	var rows []Row
	released0 := map[string]bool{}
	rowSubjects := map[int]map[uint64]bool{}
	for ri, r := range w.Rows {
		if r.Margin {
			continue
		}
		rows = append(rows, r)
		key := strings.Join(r.Values, "\x00")
		subj := map[uint64]bool{}
		var n int64
		var sum float64
		for i, e := range evs {
			if assigned[i] == 0 && c.gen(e, r.Level) == key {
				assigned[i] = ri + 1
				subj[e.Subject] = true
				n++
				if e.HasAmount {
					sum += e.Amount
				}
			}
		}
		if len(subj) < c.k {
			t.Fatalf("window %d: row %v at level %d covers %d distinct subjects < K=%d", w.Start, r.Values, r.Level, len(subj), c.k)
		}
		if c.minSubject == 0 || int64(len(subj)) < c.minSubject {
			c.minSubject = int64(len(subj))
		}
		if c.exact && (r.Events != n || r.Subjects != int64(len(subj)) || math.Abs(r.Sum-sum) > 1e-6*(1+math.Abs(sum))) {
			t.Fatalf("window %d: row %v level %d = (%d, %d, %v), recount (%d, %d, %v)", w.Start, r.Values, r.Level, r.Events, r.Subjects, r.Sum, n, len(subj), sum)
		}
		if r.Level == 0 {
			released0[key] = true
		}
		rowSubjects[ri] = subj
	}
	for i, e := range evs {
		if !released0[c.gen(e, 0)] {
			c.suppL0++
		}
		if assigned[i] == 0 {
			c.suppFinal++
		}
	}
	// Margins: recomputed from the released rows only.
	type mk struct {
		dim, level int
		value      string
	}
	type agg struct {
		events, subjects int64
		sum              float64
		subj             map[uint64]bool
	}
	want := map[mk]*agg{}
	var order []mk
	add := func(k mk, ri int, r Row) {
		a := want[k]
		if a == nil {
			a = &agg{subj: map[uint64]bool{}}
			want[k] = a
			order = append(order, k)
		}
		a.events += r.Events
		a.subjects += r.Subjects
		a.sum += r.Sum
		for s := range rowSubjects[ri] {
			a.subj[s] = true
		}
	}
	for ri, r := range w.Rows {
		if r.Margin {
			continue
		}
		add(mk{-1, -1, ""}, ri, r)
		for d := range c.dims {
			add(mk{d, min(r.Level, c.dims[d].Gen.Levels()-1), r.Values[d]}, ri, r)
		}
	}
	c.checkDifferencing(t, w, rowSubjects)
	got := 0
	for _, r := range w.Rows {
		if !r.Margin {
			continue
		}
		got++
		k := mk{r.MarginDim, r.Level, ""}
		if r.MarginDim >= 0 {
			k.value = r.Values[r.MarginDim]
		}
		for d, v := range r.Values {
			if d != r.MarginDim && v != Star {
				t.Fatalf("margin %v breaks down dimension %d", r.Values, d)
			}
		}
		a := want[k]
		if a == nil {
			t.Fatalf("window %d: margin %+v not derived from released rows", w.Start, k)
		}
		if len(a.subj) < c.k {
			t.Fatalf("window %d: margin %+v covers %d < K subjects", w.Start, k, len(a.subj))
		}
		// A margin's subjects are the sum of its rows' (an upper bound of
		// its people that differencing cannot sharpen), exact or noisy.
		wantSubj := a.subjects
		if r.Events != a.events || r.Subjects != wantSubj || math.Abs(r.Sum-a.sum) > 1e-6*(1+math.Abs(a.sum)) {
			t.Fatalf("window %d: margin %+v = (%d, %d, %v), want (%d, %d, %v)", w.Start, k, r.Events, r.Subjects, r.Sum, a.events, wantSubj, a.sum)
		}
	}
	if got != len(order) {
		t.Fatalf("window %d: %d margins, want %d", w.Start, got, len(order))
	}
}

// checkStats compares the aggregator's stats with the checker's recount.
func (c *checker) checkStats(t *testing.T, st Stats) {
	t.Helper()
	if st.EventsLate != c.late_ || st.EventsAccepted-st.EventsBounded != c.kept {
		t.Fatalf("stats late=%d accepted=%d bounded=%d, checker late=%d kept=%d", st.EventsLate, st.EventsAccepted, st.EventsBounded, c.late_, c.kept)
	}
	if st.EventsSuppressedL0 != c.suppL0 || st.EventsSuppressedFinal != c.suppFinal {
		t.Fatalf("stats suppressed L0=%d final=%d, checker %d %d", st.EventsSuppressedL0, st.EventsSuppressedFinal, c.suppL0, c.suppFinal)
	}
	if st.MinReleasedSubjects != c.minSubject {
		t.Fatalf("stats min subjects %d, checker %d", st.MinReleasedSubjects, c.minSubject)
	}
}

func newChecker(cfg Config) *checker {
	c := &checker{k: cfg.K, win: cfg.Window.Milliseconds(), late: cfg.AllowedLateness.Milliseconds(), dims: cfg.Dims, exact: cfg.DP == nil}
	if c.k == 0 {
		c.k = DefaultK
	}
	if cfg.DP != nil {
		c.l0, c.linf = max(1, cfg.DP.MaxCellsPerSubject), max(1, cfg.DP.MaxEventsPerCell)
	}
	return c
}

func mustNew(t testing.TB, cfg Config) *Aggregator {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkDifferencing is the differencing attack of issue 11 (defect 2): for
// every published figure F of a window (released rows, roll-ups and
// margins) and every one or two figures G1, G2 nested in it on disjoint
// rows, a reader subtracts their subject counts, events and sums. The
// people that remain, P(F) minus P(G1) and P(G2), recounted from the ground
// truth, must not be a group 0 < n < k whose size the subtraction reveals;
// the events and sums of the rows that remain must cover 0 or at least k
// people.
func (c *checker) checkDifferencing(t *testing.T, w ClosedWindow, rowSubjects map[int]map[uint64]bool) {
	t.Helper()
	idx := map[uint64]int{} // subject -> bit
	for _, subj := range rowSubjects {
		for s := range subj {
			if _, ok := idx[s]; !ok {
				idx[s] = len(idx)
			}
		}
	}
	var rowIdx []int // row bit -> index in w.Rows
	rowBit := map[int]int{}
	for ri, r := range w.Rows {
		if !r.Margin {
			rowBit[ri] = len(rowIdx)
			rowIdx = append(rowIdx, ri)
		}
	}
	peopleOf := func(rows bitset) bitset {
		p := newBitset(len(idx))
		for b, ri := range rowIdx {
			if rows.has(b) {
				for s := range rowSubjects[ri] {
					p.set(idx[s])
				}
			}
		}
		return p
	}
	type figure struct {
		name     string
		rows     bitset
		subjects int64
		people   bitset
	}
	var figs []figure
	for ri, r := range w.Rows {
		if r.Margin {
			continue
		}
		rows := newBitset(len(rowIdx))
		rows.set(rowBit[ri])
		figs = append(figs, figure{fmt.Sprintf("row %v@%d", r.Values, r.Level), rows, r.Subjects, peopleOf(rows)})
	}
	for _, m := range w.Rows {
		if !m.Margin {
			continue
		}
		rows := newBitset(len(rowIdx))
		for b, ri := range rowIdx {
			r := w.Rows[ri]
			if m.MarginDim < 0 || (min(r.Level, c.dims[m.MarginDim].Gen.Levels()-1) == m.Level && r.Values[m.MarginDim] == m.Values[m.MarginDim]) {
				rows.set(b)
			}
		}
		figs = append(figs, figure{fmt.Sprintf("margin %v@%d", m.Values, m.Level), rows, m.Subjects, peopleOf(rows)})
	}
	k := c.k
	check := func(f figure, gs ...figure) {
		rest, restRows := f.people.clone(), f.rows.clone()
		sub := int64(0)
		for _, g := range gs {
			sub += g.subjects
			rest.andNot(g.people)
			restRows.andNot(g.rows)
		}
		if n := rest.count(); n > 0 && n < k && f.subjects-sub == int64(n) {
			var names []string
			for _, g := range gs {
				names = append(names, g.name)
			}
			t.Fatalf("window %d: %s minus %v isolates %d < k=%d people", w.Start, f.name, names, n, k)
		}
		if n := peopleOf(restRows).count(); n > 0 && n < k {
			t.Fatalf("window %d: the events and sums left by subtracting from %s cover %d < k people", w.Start, f.name, n)
		}
	}
	for i, f := range figs {
		for j, g := range figs {
			if i == j || !g.rows.strictlyIn(f.rows) {
				continue
			}
			check(f, g)
			for h := j + 1; h < len(figs); h++ {
				if g2 := figs[h]; h != i && g2.rows.strictlyIn(f.rows) && g.rows.disjoint(g2.rows) {
					check(f, g, g2)
				}
			}
		}
	}
}

// bitset is a small fixed-size set of bits.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) clone() bitset  { return append(bitset(nil), b...) }
func (b bitset) andNot(o bitset) {
	for i := range b {
		b[i] &^= o[i]
	}
}
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}
func (b bitset) disjoint(o bitset) bool {
	for i := range b {
		if b[i]&o[i] != 0 {
			return false
		}
	}
	return true
}

// strictlyIn reports whether b is a proper subset of o.
func (b bitset) strictlyIn(o bitset) bool {
	eq := true
	for i := range b {
		if b[i]&^o[i] != 0 {
			return false
		}
		eq = eq && b[i] == o[i]
	}
	return !eq
}
