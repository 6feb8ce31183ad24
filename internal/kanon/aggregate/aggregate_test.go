package aggregate

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/dp"
)

func TestRandomStreamsChecked(t *testing.T) {
	for _, tc := range []struct {
		k      int
		rollup bool
		late   time.Duration
		subj   int
	}{
		{5, false, 0, 40}, {5, true, 0, 40}, {3, true, 50 * time.Millisecond, 20},
		{11, true, 100 * time.Millisecond, 200}, {0, true, 0, 500}, {1, false, 0, 10},
	} {
		t.Run(fmt.Sprintf("k%d_rollup%v_late%v", tc.k, tc.rollup, tc.late), func(t *testing.T) {
			for seed := range uint64(5) {
				cfg := Config{K: tc.k, Window: 200 * time.Millisecond, AllowedLateness: tc.late, Dims: testDims, Rollup: tc.rollup}
				evs := genEvents(seed, 3000, tc.subj, 2000)
				a := mustNew(t, cfg)
				out := run(t, a, evs)
				c := newChecker(cfg)
				c.check(t, evs, out)
				c.checkStats(t, a.Stats())
				st := a.Stats()
				if !tc.rollup && st.EventsSuppressedFinal != st.EventsSuppressedL0 {
					t.Fatalf("without roll-up final %d != L0 %d", st.EventsSuppressedFinal, st.EventsSuppressedL0)
				}
				if st.WindowsClosed != int64(len(out)) || st.EventsLate == 0 && tc.late == 0 {
					t.Fatalf("stats %+v for %d windows", st, len(out))
				}
			}
		})
	}
}

func TestAdversarialHeavySubject(t *testing.T) {
	for _, rollup := range []bool{false, true} {
		cfg := Config{K: 5, Window: time.Hour, Dims: testDims, Rollup: rollup}
		a := mustNew(t, cfg)
		var evs []Event
		ref := int64(0)
		add := func(subj uint64, city string, n int) {
			for range n {
				evs = append(evs, Event{Time: ref, Subject: subj, Dims: []string{city, "20"}, Ref: ref})
				ref++
			}
		}
		add(666, "HN1", 5000) // one subject floods the cell
		add(1, "HN1", 1)
		add(2, "HN1", 2)
		add(3, "HN2", 1) // rolls up to HN with 4 subjects: still < 5
		out := run(t, a, evs)
		c := newChecker(cfg)
		c.check(t, evs, out)
		c.checkStats(t, a.Stats())
		for _, w := range out {
			if len(w.Rows) != 0 {
				t.Fatalf("rollup=%v: released %+v", rollup, w.Rows)
			}
		}
		st := a.Stats()
		if st.EventsSuppressedFinal != int64(len(evs)) || st.CellsSuppressed != 2 {
			t.Fatalf("rollup=%v: stats %+v", rollup, st)
		}
	}
}

func TestHeavySubjectNextToReleasedCell(t *testing.T) {
	// A released neighbour must not drag the small cell up with it.
	cfg := Config{K: 3, Window: time.Hour, Dims: testDims, Rollup: true}
	var evs []Event
	for i := range 3 {
		evs = append(evs, Event{Time: int64(i), Subject: uint64(10 + i), Dims: []string{"HN1", "20"}, Ref: int64(i)})
	}
	for i := range 2000 {
		evs = append(evs, Event{Time: int64(10 + i), Subject: 99, Dims: []string{"HN2", "20"}, Ref: int64(10 + i)})
	}
	a := mustNew(t, cfg)
	out := run(t, a, evs)
	c := newChecker(cfg)
	c.check(t, evs, out)
	c.checkStats(t, a.Stats())
	for _, r := range out[0].Rows {
		if r.Events > 3 {
			t.Fatalf("heavy subject's events released: %+v", r)
		}
	}
}

func TestLateness(t *testing.T) {
	cfg := Config{K: 1, Window: 10 * time.Millisecond, AllowedLateness: 5 * time.Millisecond, Dims: testDims}
	a := mustNew(t, cfg)
	var got []ClosedWindow
	emit := func(w ClosedWindow) { got = append(got, w) }
	ev := func(tm int64) Event { return Event{Time: tm, Subject: 1, Dims: []string{"HN1", "20"}, Ref: tm} }
	steps := []struct {
		t    int64
		want Outcome
		wins int
	}{
		{3, Accepted, 0},
		{14, Accepted, 0}, // window [0,10) closes at 15
		{9, Accepted, 0},  // still within lateness
		{15, Accepted, 1}, // closes [0,10)
		{2, Late, 1},
		{12, Accepted, 1}, // [10,20) open until 25
		{40, Accepted, 2},
		{19, Late, 2},
	}
	for i, s := range steps {
		out, err := a.Add(ev(s.t), emit)
		if err != nil {
			t.Fatal(err)
		}
		if out != s.want || len(got) != s.wins {
			t.Fatalf("step %d (t=%d): %v with %d windows, want %v with %d", i, s.t, out, len(got), s.want, s.wins)
		}
	}
	if st := a.Stats(); st.EventsLate != 2 || st.EventsAccepted != 6 {
		t.Fatalf("stats %+v", st)
	}
	if got[0].Rows[0].Events != 2 || got[1].Rows[0].Events != 3 {
		t.Fatalf("windows %+v", got)
	}
	if Late.String() != "late" || Outcome(9).String() != "unknown" {
		t.Fatal("Outcome.String")
	}
}

func TestAdvanceAndFlush(t *testing.T) {
	cfg := Config{K: 1, Window: 10 * time.Millisecond, AllowedLateness: 5 * time.Millisecond, Dims: testDims}
	a := mustNew(t, cfg)
	var got []ClosedWindow
	emit := func(w ClosedWindow) { got = append(got, w) }
	for _, tm := range []int64{1, 11, 14} {
		if _, err := a.Add(Event{Time: tm, Subject: 1, Dims: []string{"HN1", "20"}, Ref: tm}, emit); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 0 {
		t.Fatalf("closed early: %d", len(got))
	}
	if err := a.Advance(14, emit); err != nil || len(got) != 0 {
		t.Fatalf("Advance(14): %v, %d", err, len(got))
	}
	if err := a.Advance(15, emit); err != nil || len(got) != 1 {
		t.Fatalf("Advance(15): %v, %d", err, len(got))
	}
	if err := a.Advance(3, emit); err != nil || len(got) != 1 { // watermark never moves back
		t.Fatalf("Advance(3): %v, %d", err, len(got))
	}
	if err := a.Flush(emit); err != nil || len(got) != 2 || got[1].Start != 10 {
		t.Fatalf("Flush: %v, %+v", err, got)
	}
	if out, _ := a.Add(Event{Time: 19, Subject: 1, Dims: []string{"HN1", "20"}, Ref: 99}, emit); out != Late {
		t.Fatalf("event in a flushed window: %v", out)
	}
	if _, ok := a.ReplayFrom(); ok {
		t.Fatal("open windows after Flush")
	}
}

func TestRollupRecovers(t *testing.T) {
	cfg := Config{K: 5, Window: time.Hour, Dims: testDims, Rollup: true}
	a := mustNew(t, cfg)
	var evs []Event
	// HN1, HN2, HN3 x age 20: 3 subjects each (9 in HN); SG1: 2 subjects.
	s := uint64(0)
	for _, city := range []string{"HN1", "HN2", "HN3", "SG1"} {
		n := 3
		if city == "SG1" {
			n = 2
		}
		for range n {
			evs = append(evs, Event{Time: int64(len(evs)), Subject: s, Dims: []string{city, "20"}, Amount: 1, HasAmount: true, Ref: int64(len(evs))})
			s++
		}
	}
	out := run(t, a, evs)
	c := newChecker(cfg)
	c.check(t, evs, out)
	c.checkStats(t, a.Stats())
	rows := out[0].Rows
	if rows[0].Margin || rows[0].Level != 1 || !reflect.DeepEqual(rows[0].Values, []string{"HN", "*"}) || rows[0].Subjects != 9 {
		t.Fatalf("rows %+v", rows)
	}
	// SG1 (2 subjects) stays below K even at the top... unless merged
	// with what is left: at level 2 only SG1 remains, 2 < 5.
	st := a.Stats()
	if st.EventsSuppressedL0 != 11 || st.EventsSuppressedFinal != 2 || st.RowsReleased[1] != 1 || st.CellsSuppressed != 4 {
		t.Fatalf("stats %+v", st)
	}
	// Without roll-up nothing is released.
	cfg.Rollup = false
	b := mustNew(t, cfg)
	for _, w := range run(t, b, evs) {
		if len(w.Rows) != 0 {
			t.Fatalf("released without roll-up: %+v", w.Rows)
		}
	}
}

func TestMarginsOnlyFromReleasedRows(t *testing.T) {
	cfg := Config{K: 3, Window: time.Hour, Dims: testDims}
	var evs []Event
	addN := func(city, age string, subjects int, base uint64) {
		for i := range subjects {
			evs = append(evs, Event{Time: int64(len(evs)), Subject: base + uint64(i), Dims: []string{city, age}, Amount: 10, HasAmount: true, Ref: int64(len(evs))})
		}
	}
	addN("HN1", "20", 4, 0)
	addN("HN1", "30", 3, 100)
	addN("HN1", "40", 1, 200) // suppressed
	a := mustNew(t, cfg)
	out := run(t, a, evs)
	c := newChecker(cfg)
	c.check(t, evs, out)
	var total *Row
	for i, r := range out[0].Rows {
		if r.Margin && r.MarginDim == -1 {
			total = &out[0].Rows[i]
		}
		if r.Margin && r.MarginDim == 0 && r.Values[0] == "HN1" && r.Events != 7 {
			t.Fatalf("city margin includes suppressed cell: %+v", r)
		}
	}
	if total == nil || total.Events != 7 || total.Subjects != 7 || total.Sum != 70 {
		t.Fatalf("grand total %+v", total)
	}
}

func TestNoDims(t *testing.T) {
	cfg := Config{K: 2, Window: time.Hour, Rollup: true}
	a := mustNew(t, cfg)
	evs := []Event{{Time: 1, Subject: 1}, {Time: 2, Subject: 2, Ref: 1}}
	out := run(t, a, evs)
	if len(out) != 1 || len(out[0].Rows) != 2 || out[0].Rows[0].Subjects != 2 {
		t.Fatalf("%+v", out)
	}
}

func TestNegativeTimes(t *testing.T) {
	cfg := Config{K: 1, Window: 10 * time.Millisecond, Dims: testDims}
	a := mustNew(t, cfg)
	evs := []Event{{Time: -15, Subject: 1, Dims: []string{"a", "b"}}, {Time: -1, Subject: 1, Dims: []string{"a", "b"}, Ref: 1}}
	out := run(t, a, evs)
	if len(out) != 2 || out[0].Start != -20 || out[1].Start != -10 {
		t.Fatalf("%+v", out)
	}
}

func TestInvalid(t *testing.T) {
	for i, cfg := range []Config{
		{Window: 0, Dims: testDims},
		{Window: time.Microsecond, Dims: testDims},
		{Window: 1500 * time.Microsecond, Dims: testDims},
		{Window: time.Second, K: -1},
		{Window: time.Second, AllowedLateness: -1},
		{Window: time.Second, Dims: []Dim{{Name: "x"}}},
		{Window: time.Second, Dims: []Dim{{Name: "x", Gen: truncGen{0}}}},
		{Window: time.Second, DP: &DPConfig{Epsilon: 0, Delta: 1e-5}},
		{Window: time.Second, DP: &DPConfig{Epsilon: 1, Delta: 0}},
		{Window: time.Second, DP: &DPConfig{Epsilon: 1, Delta: 1}},
		{Window: time.Second, DP: &DPConfig{Epsilon: 1, Delta: 1e-5, MaxAmount: -1}},
		{Window: time.Second, DP: &DPConfig{Epsilon: 1, Delta: 1e-5, MaxCellsPerSubject: -1}},
		{Window: time.Second, DP: &DPConfig{Epsilon: 1, Delta: 1e-5, AmountUnit: math.NaN()}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	a := mustNew(t, Config{Window: time.Second, Dims: testDims})
	secret := "alice@example.com"
	for _, e := range []Event{
		{Dims: []string{secret}},
		{Dims: []string{secret, "x"}, Time: math.MaxInt64},
		{Dims: []string{secret, "x"}, Amount: math.Inf(1), HasAmount: true},
	} {
		_, err := a.Add(e, nil)
		if err == nil {
			t.Fatalf("event %+v accepted", e)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error leaks a value: %v", err)
		}
	}
	if st := a.Stats(); st.EventsAccepted != 0 {
		t.Fatalf("invalid events counted: %+v", st)
	}
	if _, err := a.Replay(Event{Dims: []string{"a", "b"}}); err == nil {
		t.Fatal("replay without restore accepted")
	}
}

// zeroSource makes every geometric draw cancel: Z = G - G = 0.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 1 << 62 }

func dpConfig(src dp.Source) *DPConfig {
	return &DPConfig{Epsilon: 300, Delta: 1e-5, MaxCellsPerSubject: 2, MaxEventsPerCell: 3, MaxAmount: 50, AmountUnit: 0.1, Source: src}
}

func TestDPChecked(t *testing.T) {
	for _, rollup := range []bool{false, true} {
		cfg := Config{K: 5, Window: 200 * time.Millisecond, AllowedLateness: 20 * time.Millisecond, Dims: testDims, Rollup: rollup,
			DP: &DPConfig{Epsilon: 30, Delta: 1e-5, MaxCellsPerSubject: 2, MaxEventsPerCell: 2, MaxAmount: 50, Source: dp.NewSeededSource(9)}}
		a := mustNew(t, cfg)
		evs := genEvents(7, 5000, 60, 2000)
		out := run(t, a, evs)
		c := newChecker(cfg)
		c.check(t, evs, out)
		c.checkStats(t, a.Stats())
		st := a.Stats()
		if st.EventsBounded == 0 {
			t.Fatal("no event bounded")
		}
		if math.Abs(st.EpsilonSpent-30*float64(st.WindowsClosed)) > 1e-9 || math.Abs(st.DeltaSpent-1e-5*float64(st.WindowsClosed)) > 1e-15 {
			t.Fatalf("spent %v/%v for %d windows", st.EpsilonSpent, st.DeltaSpent, st.WindowsClosed)
		}
		released := 0
		for _, w := range out {
			for _, r := range w.Rows {
				if !r.Noisy {
					t.Fatalf("row without noise flag %+v", r)
				}
				if !r.Margin {
					released++
					if r.Subjects < a.SelectionThreshold() {
						t.Fatalf("row below the DP threshold: %+v", r)
					}
				}
			}
		}
		if released == 0 {
			t.Fatal("nothing released")
		}
	}
}

func TestDPZeroNoiseMatchesBoundedCounts(t *testing.T) {
	cfg := Config{K: 3, Window: time.Hour, Dims: testDims, Rollup: true, DP: dpConfig(zeroSource{})}
	a := mustNew(t, cfg)
	if a.SelectionThreshold() > 3 {
		t.Fatalf("threshold %d too high for this test", a.SelectionThreshold())
	}
	var evs []Event
	for i := range 30 {
		evs = append(evs, Event{Time: int64(i), Subject: uint64(i % 6), Dims: []string{cities[i%2], "20"}, Amount: 123.456, HasAmount: true, Ref: int64(i)})
	}
	out := run(t, a, evs)
	// Subjects 0..5 alternate HN1/HN2 by parity: each subject touches one
	// cell, 5 events of it, bounded to 3.
	for _, r := range out[0].Rows[:2] {
		if r.Subjects != 3 || r.Events != 9 || math.Abs(r.Sum-9*50) > 1e-9 {
			t.Fatalf("row %+v", r)
		}
	}
	c := newChecker(cfg)
	c.check(t, evs, out)
	c.checkStats(t, a.Stats())
}

func TestSuppressionShares(t *testing.T) {
	var recs []Record
	for i := range 1000 {
		recs = append(recs, Record{Subject: uint64(i % 97), Dims: []string{cities[i%len(cities)], ages[(i/7)%len(ages)]}})
	}
	for _, win := range []int{0, 100} {
		res, err := SuppressionShares(testDims, recs, []int{1, 5, 20, 200}, win)
		if err != nil {
			t.Fatal(err)
		}
		prev := -1.0
		for _, r := range res {
			if r.Records != 1000 || r.SuppressedRollup > r.SuppressedL0 || r.SuppressedL0 < prev {
				t.Fatalf("win %d: %+v", win, r)
			}
			prev = r.SuppressedL0
		}
		if res[0].SuppressedL0 != 0 || res[3].SuppressedRollup != 1 {
			t.Fatalf("win %d: %+v", win, res)
		}
	}
	if _, err := SuppressionShares(testDims, recs, []int{0}, 0); err == nil {
		t.Fatal("k=0 accepted")
	}
	if _, err := SuppressionShares(testDims, []Record{{Dims: []string{"x"}}}, []int{2}, 0); err == nil {
		t.Fatal("bad record accepted")
	}
	if res, err := SuppressionShares(testDims, nil, []int{2}, 0); err != nil || res[0].SuppressedL0 != 0 {
		t.Fatalf("empty input: %v %+v", err, res)
	}
}

func TestUnmarshalStateRejectsGarbage(t *testing.T) {
	a := mustNew(t, Config{K: 3, Window: 100 * time.Millisecond, AllowedLateness: 10 * time.Millisecond, Dims: testDims, Rollup: true})
	run(t, a, genEvents(1, 200, 10, 450)[:150])
	good := MarshalState(a.Checkpoint())
	if _, err := UnmarshalState(good); err != nil {
		t.Fatal(err)
	}
	for i := range good {
		if _, err := UnmarshalState(good[:i]); err == nil {
			t.Fatalf("truncated state (%d bytes) accepted", i)
		}
	}
	for _, b := range [][]byte{nil, []byte("KAG1"), []byte("XXXX\x00"), append(slices.Clone(good), 0)} {
		if _, err := UnmarshalState(b); err == nil {
			t.Fatalf("garbage %q accepted", b)
		}
	}
	// Negative counter.
	s, _ := UnmarshalState(good)
	s.Stats.EventsLate = -1
	if _, err := UnmarshalState(MarshalState(s)); err == nil {
		t.Fatal("negative counter accepted")
	}
	s.Stats.EventsLate = 0
	s.Stats.EpsilonSpent = math.NaN()
	if _, err := UnmarshalState(MarshalState(s)); err == nil {
		t.Fatal("NaN budget accepted")
	}
}

func TestRestoreRejectsMismatch(t *testing.T) {
	cfg := Config{K: 3, Window: 100 * time.Millisecond, Dims: testDims}
	a := mustNew(t, cfg)
	for _, e := range genEvents(1, 50, 10, 300) {
		if _, err := a.Add(e, nil); err != nil {
			t.Fatal(err)
		}
	}
	st := a.Checkpoint()
	if err := a.Restore(st); err == nil {
		t.Fatal("restore into a used aggregator accepted")
	}
	other := cfg
	other.K = 4
	if err := mustNew(t, other).Restore(st); err == nil {
		t.Fatal("restore with another K accepted")
	}
	bad := st
	bad.Open = []OpenWindow{{Start: 7, FirstRef: 0}}
	if err := mustNew(t, cfg).Restore(bad); err == nil {
		t.Fatal("misaligned window accepted")
	}
	bad.Open = []OpenWindow{{Start: st.Watermark + 1000, FirstRef: 0}}
	if err := mustNew(t, cfg).Restore(bad); err == nil {
		t.Fatal("window after the watermark accepted")
	}
	b := mustNew(t, cfg)
	if err := b.Restore(st); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Replay(Event{Time: 0, Dims: []string{"a", "b"}, Ref: st.NextRef}); err == nil {
		t.Fatal("replay past the checkpoint accepted")
	}
	if err := b.Advance(0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Replay(Event{Time: 0, Dims: []string{"a", "b"}}); err == nil {
		t.Fatal("replay after Advance accepted")
	}
}

// TestDPScalesWithIdentityDomains is issue 11, defect 6: contribution
// bounds apply per pseudonym, and a person has one pseudonym per key while
// a key is rotated, so a window with subjects of D domains gets the noise
// and the selection threshold of D times the bounds; one with a single
// domain keeps the configured ones.
func TestDPScalesWithIdentityDomains(t *testing.T) {
	dpc := &DPConfig{Epsilon: 1, Delta: 1e-6, MaxCellsPerSubject: 2, MaxEventsPerCell: 3, MaxAmount: 50, AmountUnit: 0.1, Source: dp.NewSeededSource(1)}
	a := mustNew(t, Config{K: 5, Window: time.Second, Dims: testDims, DP: dpc})
	one, err := a.dpFor(1)
	if err != nil || one != a.dp {
		t.Fatalf("one domain must use the configured mechanisms: %v", err)
	}
	two, err := a.dpFor(2)
	if err != nil {
		t.Fatal(err)
	}
	if !(two.subj.Alpha() > one.subj.Alpha() && two.ev.Alpha() > one.ev.Alpha() && two.threshold > one.threshold) {
		t.Fatalf("two domains: alpha %v/%v, threshold %d; one domain: %v/%v, %d",
			two.subj.Alpha(), two.ev.Alpha(), two.threshold, one.subj.Alpha(), one.ev.Alpha(), one.threshold)
	}
	if two.l0 != 2*one.l0 || two.linf != one.linf {
		t.Fatalf("two domains: bounds %d/%d, want %d/%d", two.l0, two.linf, 2*one.l0, one.linf)
	}
	w := &window{cells: map[string]*cell{"a": {subj: map[uint64]uint32{1: 1, 2: 1}}, "b": {subj: map[uint64]uint32{1<<48 | 1: 1}}}}
	if n := windowDomains(w); n != 2 {
		t.Fatalf("windowDomains = %d, want 2", n)
	}
}

// TestPeriodBudgetRefusesOnceSpent is issue 11, defect 7: with a budget of
// 3 epsilon per period of 10 windows and 1 epsilon per window, a subject
// present in every window may lose at most 3 epsilon in any 10 windows:
// windows beyond that are refused (nothing published, counted), the ledger
// survives a checkpoint and restore, and the budget comes back as the
// period slides.
func TestPeriodBudgetRefusesOnceSpent(t *testing.T) {
	dpc := &DPConfig{Epsilon: 1, Delta: 1e-6, PeriodEpsilon: 3, Period: 10 * time.Second, Source: dp.NewSeededSource(3)}
	cfg := Config{K: 2, Window: time.Second, Dims: []Dim{{Name: "city", Gen: truncGen{1}}}, DP: dpc}
	var evs []Event
	for w := range 25 { // 25 windows, the same 40 people in each
		for s := range 40 {
			evs = append(evs, Event{Time: int64(w)*1000 + int64(s), Subject: uint64(s), Dims: []string{"HN"}, Ref: int64(len(evs))})
		}
	}
	released := map[int64]bool{}
	emit := func(cw ClosedWindow) {
		if len(cw.Rows) > 0 {
			released[cw.Start] = true
		}
	}
	a := mustNew(t, cfg)
	half := len(evs) / 2
	for _, e := range evs[:half] {
		if _, err := a.Add(e, emit); err != nil {
			t.Fatal(err)
		}
	}
	// Restart mid-stream: the ledger is in the checkpoint.
	st, err := UnmarshalState(MarshalState(a.Checkpoint()))
	if err != nil {
		t.Fatal(err)
	}
	b := mustNew(t, cfg)
	if err := b.Restore(st); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs[:half] {
		if e.Ref >= st.NextRef {
			break
		}
		if _, err := b.Replay(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range evs[half:] {
		if _, err := b.Add(e, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(emit); err != nil {
		t.Fatal(err)
	}
	for start := int64(-9000); start <= 25000; start += 1000 {
		n := 0
		for w := start; w < start+10000; w += 1000 {
			if released[w] {
				n++
			}
		}
		if n > 3 {
			t.Fatalf("%d windows released in the 10 s from %d: a subject in all of them spent %d epsilon > 3", n, start, n)
		}
	}
	stats := b.Stats()
	if len(released) == 0 || stats.WindowsRefused == 0 || int64(len(released))+stats.WindowsRefused != 25 {
		t.Fatalf("%d windows released, %d refused, want 25 in all with some of each", len(released), stats.WindowsRefused)
	}
	if stats.EpsilonSpent > float64(len(released))+1e-9 {
		t.Fatalf("epsilon %v charged for %d released windows", stats.EpsilonSpent, len(released))
	}
	if !released[0] || !released[10000] {
		t.Fatalf("the budget did not come back as the period slid: released %v", released)
	}
}
