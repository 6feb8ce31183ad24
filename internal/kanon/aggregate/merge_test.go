package aggregate

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"
)

// pipe is a two-stage run: one Partials aggregator per shard feeding one
// merger, as the two processors do over the partials topic.
type pipe struct {
	t      testing.TB
	shards []*Aggregator
	m      *Merger
	ref    int64
	out    []ClosedWindow
	// log is the merger's input, for replays: partials and progress.
	log []logged
}

type logged struct {
	ref      int64
	shard    int32
	start    int64
	cells    []PartialCell
	progress bool
	before   int64
}

func newPipe(t testing.TB, cfg Config, shards int) *pipe {
	t.Helper()
	p := &pipe{t: t}
	pc := cfg
	pc.Partials = true
	for range shards {
		p.shards = append(p.shards, mustNew(t, pc))
	}
	m, err := NewMerger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetShards(int32(shards)); err != nil {
		t.Fatal(err)
	}
	p.m = m
	return p
}

func (p *pipe) emit(w ClosedWindow) { p.out = append(p.out, w) }

// partial forwards a shard's closed windows to the merger.
func (p *pipe) partial(shard int32) EmitFunc {
	return func(w ClosedWindow) {
		if len(w.Rows) != 0 {
			p.t.Fatal("a Partials aggregator released rows")
		}
		p.log = append(p.log, logged{ref: p.ref, shard: shard, start: w.Start, cells: w.Cells})
		if _, err := p.m.Add(shard, w.Start, w.Cells, p.ref); err != nil {
			p.t.Fatal(err)
		}
		p.ref++
	}
}

func (p *pipe) progress(shard int32) {
	b := p.shards[shard].ClosedBefore()
	p.log = append(p.log, logged{ref: p.ref, shard: shard, progress: true, before: b})
	if err := p.m.Progress(shard, b, p.ref, p.emit); err != nil {
		p.t.Fatal(err)
	}
	p.ref++
}

func (p *pipe) add(e Event, shard int32) {
	if _, err := p.shards[shard].Add(e, p.partial(shard)); err != nil {
		p.t.Fatal(err)
	}
	p.progress(shard)
}

// finish advances every shard past every window (an idle shard by the
// clock) and reports its progress.
func (p *pipe) finish() {
	for s, a := range p.shards {
		if err := a.Advance(maxTime, p.partial(int32(s))); err != nil {
			p.t.Fatal(err)
		}
		p.progress(int32(s))
	}
}

func shardOf(e Event, n int) int32 { return int32((e.Subject * 0x9E3779B97F4A7C15 >> 33) % uint64(n)) }

// TestMergeReleasesACellSplitOverShards: 4 + 4 + 3 people of one cell on
// three shards at k = 11 are released once, with 11 subjects; per shard
// the cell would be suppressed everywhere.
func TestMergeReleasesACellSplitOverShards(t *testing.T) {
	cfg := Config{K: 11, Window: time.Second, Dims: testDims}
	p := newPipe(t, cfg, 3)
	subj := uint64(0)
	for s, n := range []int{4, 4, 3} {
		for range n {
			subj++
			p.add(Event{Time: 100, Subject: subj, Dims: []string{"HN1", "20"}, Ref: int64(subj)}, int32(s))
		}
	}
	if len(p.out) != 0 {
		t.Fatal("released before every shard passed the window")
	}
	p.finish()
	var rows []Row
	for _, w := range p.out {
		rows = append(rows, w.Rows...)
	}
	released := 0
	for _, r := range rows {
		if !r.Margin {
			released++
			if r.Subjects != 11 || r.Events != 11 || r.Level != 0 {
				t.Fatalf("row %+v, want 11 subjects and events at level 0", r)
			}
		}
	}
	if released != 1 || len(p.out) != 1 {
		t.Fatalf("%d rows in %d windows, want one row once", released, len(p.out))
	}
	// Per shard (the old behaviour) nothing reaches k.
	for _, a := range p.shards {
		if st := a.Stats(); st.WindowsClosed != 1 || st.EventsAccepted > 4 {
			t.Fatalf("shard stats %+v", st)
		}
	}
}

// TestMergeCountsAPersonOnceAcrossKeyDomains: people present under two
// key ids (identity domains 1 and 2), whose two pseudonyms live on two
// shards, count once: 8 such people stay suppressed at k = 11 (16
// pseudonyms), 11 are released with 11 subjects.
func TestMergeCountsAPersonOnceAcrossKeyDomains(t *testing.T) {
	for _, tc := range []struct {
		people int
		want   int64 // released subjects, 0: suppressed
	}{{8, 0}, {11, 11}} {
		cfg := Config{K: 11, Window: time.Second, Dims: testDims}
		p := newPipe(t, cfg, 2)
		for i := range tc.people {
			for dom := uint64(1); dom <= 2; dom++ {
				id := dom<<(64-DomainBits) | uint64(1000+i)
				p.add(Event{Time: 5, Subject: id, Dims: []string{"SG1", "30"}}, int32(dom-1))
			}
		}
		p.finish()
		var got int64
		for _, w := range p.out {
			for _, r := range w.Rows {
				if !r.Margin {
					got = max(got, r.Subjects)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%d people under two key ids: released subjects %d, want %d", tc.people, got, tc.want)
		}
	}
}

// TestMergeWaitsForEveryShard: a window closes only when every shard has
// passed it, including a shard that never had an event (it reports by
// the clock, as an idle partition's tick does) and shards the merger
// only learns of from the shard count.
func TestMergeWaitsForEveryShard(t *testing.T) {
	cfg := Config{K: 2, Window: time.Second, Dims: testDims}
	p := newPipe(t, cfg, 3)
	for i := range uint64(4) {
		p.add(Event{Time: 10, Subject: i, Dims: []string{"HN1", "20"}}, int32(i%2))
	}
	// Shards 0 and 1 move past window 0; shard 2 has said nothing.
	p.add(Event{Time: 5000, Subject: 1, Dims: []string{"HN1", "20"}}, 0)
	p.add(Event{Time: 5000, Subject: 2, Dims: []string{"HN1", "20"}}, 1)
	if len(p.out) != 0 || p.m.Pending() != 1 || len(p.m.Checkpoint().Progress) != 3 {
		t.Fatalf("closed %d windows with a silent shard (pending %d, shards %d)", len(p.out), p.m.Pending(), len(p.m.Checkpoint().Progress))
	}
	// The idle, empty shard 2 reports by the clock.
	if err := p.shards[2].Advance(3000, p.partial(2)); err != nil {
		t.Fatal(err)
	}
	p.progress(2)
	if len(p.out) != 1 || p.out[0].Start != 0 || p.m.Pending() != 0 {
		t.Fatalf("after every shard passed window 0: %d windows out, %d pending", len(p.out), p.m.Pending())
	}
	// A partial of a closed window (a shard that started afresh) is late.
	if out, err := p.m.Add(0, 0, []PartialCell{{Values: []string{"HN1", "20"}, Events: 3, Subjects: []uint64{7}}}, p.ref); err != nil || out != Late {
		t.Fatalf("late partial: %v %v", out, err)
	}
	p.ref++
	if p.m.Stats().EventsLate != 3 {
		t.Fatal("late partial not counted")
	}
	// Shards 0 and 1 close window 5000; a fourth shard appears (partitions
	// were added): the merger waits for it too.
	for s := range int32(3) {
		if err := p.shards[s].Advance(9000, p.partial(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.m.SetShards(4); err != nil {
		t.Fatal(err)
	}
	for s := range int32(3) {
		b := p.shards[s].ClosedBefore()
		if err := p.m.Progress(s, b, p.ref, p.emit); err != nil {
			t.Fatal(err)
		}
		p.ref++
	}
	if len(p.m.Checkpoint().Progress) != 4 || p.m.Pending() != 1 {
		t.Fatalf("shards %d, pending %d: closed a window before the new shard reported", len(p.m.Checkpoint().Progress), p.m.Pending())
	}
	if err := p.m.Progress(3, 9000, p.ref, p.emit); err != nil {
		t.Fatal(err)
	}
	if p.m.Pending() != 0 || len(p.out) != 2 || p.out[1].Start != 5000 {
		t.Fatalf("pending %d, windows out %d", p.m.Pending(), len(p.out))
	}
}

// mergeCfg has a lateness beyond genEvents' disorder, so no event is late
// on any shard or on one shard over everything: the runs are comparable.
func mergeCfg(dp *DPConfig) Config {
	return Config{K: 5, Window: 50 * time.Millisecond, AllowedLateness: 60 * time.Millisecond, Dims: testDims, Rollup: true, DP: dp}
}

// TestMergeEqualsOneShardOverEverything: over 12 shards the merged release
// equals a single aggregator's over all events (rows, roll-ups and
// margins; events and subjects exactly, sums up to rounding), passes the
// independent checker and the differencing attack, while per-shard
// release suppresses cells of k people or more.
func TestMergeEqualsOneShardOverEverything(t *testing.T) {
	const shards = 12
	cfg := mergeCfg(nil)
	evs := genEvents(7, 6000, 150, 1000)
	whole := run(t, mustNew(t, cfg), evs)

	p := newPipe(t, cfg, shards)
	for _, e := range evs {
		p.add(e, shardOf(e, shards))
	}
	p.finish()
	newChecker(cfg).check(t, evs, p.out)
	if len(p.out) != len(whole) {
		t.Fatalf("merged %d windows, whole-file %d", len(p.out), len(whole))
	}
	for i := range whole {
		if !sameRows(whole[i].Rows, p.out[i].Rows) {
			t.Fatalf("window %d: merged rows differ from the whole-file run\n%v\n%v", whole[i].Start, p.out[i].Rows, whole[i].Rows)
		}
	}
	st, wst := p.m.Stats(), func() Stats {
		a := mustNew(t, cfg)
		run(t, a, evs)
		return a.Stats()
	}()
	if !reflect.DeepEqual(st.RowsReleased, wst.RowsReleased) || st.CellsSuppressed != wst.CellsSuppressed || st.EventsSuppressedFinal != wst.EventsSuppressedFinal {
		t.Fatalf("merged stats %+v, whole-file %+v", st, wst)
	}
}

func sameRows(x, y []Row) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		a, b := x[i], y[i]
		if a.Level != b.Level || a.Margin != b.Margin || a.MarginDim != b.MarginDim || a.Events != b.Events ||
			a.Subjects != b.Subjects || fmt.Sprint(a.Values) != fmt.Sprint(b.Values) || math.Abs(a.Sum-b.Sum) > 1e-6*max(1, math.Abs(b.Sum)) {
			return false
		}
	}
	return true
}

// TestMergeRestoreMidWindowEqualsUninterrupted: a merger restored from its
// checkpoint at any point, refilled by replaying its input from
// ReplayFrom, releases exactly what the uninterrupted one does.
func TestMergeRestoreMidWindowEqualsUninterrupted(t *testing.T) {
	cfg := mergeCfg(nil)
	evs := genEvents(9, 3000, 120, 600)
	p := newPipe(t, cfg, 4)
	for _, e := range evs {
		p.add(e, shardOf(e, 4))
	}
	p.finish()
	want := p.out
	for _, cut := range []int{1, len(p.log) / 3, len(p.log) / 2, len(p.log) - 3} {
		m, err := NewMerger(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = m.SetShards(4)
		var got []ClosedWindow
		emit := func(w ClosedWindow) { got = append(got, w) }
		feed := func(m *Merger, l logged) {
			var err error
			if l.progress {
				err = m.Progress(l.shard, l.before, l.ref, emit)
			} else {
				_, err = m.Add(l.shard, l.start, l.cells, l.ref)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range p.log[:cut] {
			feed(m, l)
		}
		b := MarshalMergeState(m.Checkpoint())
		s, err := UnmarshalMergeState(b)
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewMerger(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Restore(s); err != nil {
			t.Fatal(err)
		}
		from, ok := r.ReplayFrom()
		if !ok {
			from = s.NextRef
		}
		for _, l := range p.log {
			if l.ref >= from && l.ref < s.NextRef && !l.progress {
				if _, err := r.Replay(l.shard, l.start, l.cells, l.ref); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, l := range p.log[cut:] {
			feed(r, l)
		}
		if len(got) != len(want) {
			t.Fatalf("cut %d: %d windows, uninterrupted %d", cut, len(got), len(want))
		}
		for i := range want {
			if !sameRows(got[i].Rows, want[i].Rows) {
				t.Fatalf("cut %d: window %d differs after restore", cut, want[i].Start)
			}
		}
		if !reflect.DeepEqual(r.Stats(), m.Stats()) && cut == len(p.log) {
			t.Fatal("stats differ")
		}
	}
}

// TestMergeDPChargesPerWindow: under DP the merger charges the budget once
// per merged window (not once per shard) and keeps the period ledger.
func TestMergeDPChargesPerWindow(t *testing.T) {
	dpc := &DPConfig{Epsilon: 1, Delta: 1e-6, MaxCellsPerSubject: 2, MaxEventsPerCell: 3, MaxAmount: 50, AmountUnit: 0.1}
	cfg := mergeCfg(dpc)
	evs := genEvents(11, 3000, 150, 500)
	p := newPipe(t, cfg, 6)
	for _, e := range evs {
		p.add(e, shardOf(e, 6))
	}
	p.finish()
	st := p.m.Stats()
	if st.WindowsClosed != int64(len(p.out)) || math.Abs(st.EpsilonSpent-float64(st.WindowsClosed)) > 1e-9 {
		t.Fatalf("closed %d windows, spent %v epsilon", st.WindowsClosed, st.EpsilonSpent)
	}
	for _, a := range p.shards {
		if a.Stats().EpsilonSpent != 0 {
			t.Fatal("a Partials shard spent budget")
		}
	}
	var bounded int64
	for _, a := range p.shards {
		bounded += a.Stats().EventsBounded
	}
	if bounded == 0 {
		t.Fatal("no contribution bounding on the shards")
	}
	for _, w := range p.out {
		for _, r := range w.Rows {
			if !r.Noisy {
				t.Fatal("a DP row without noise")
			}
		}
	}
}

// TestMergeRejectsInvalidPartials: bad input changes nothing.
func TestMergeRejectsInvalidPartials(t *testing.T) {
	m, err := NewMerger(Config{K: 2, Window: time.Second, Dims: testDims})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]PartialCell{
		{{Values: []string{"x"}}},
		{{Values: []string{"x", "y"}, Events: -1}},
		{{Values: []string{"x", "y"}, Sum: math.NaN()}},
		{{Values: []string{"x", "y"}, Subjects: []uint64{3, 2}}},
	} {
		if _, err := m.Add(0, 0, c, 1); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if _, err := m.Add(0, 7, nil, 1); err == nil {
		t.Error("accepted an unaligned window")
	}
	if m.Pending() != 0 {
		t.Fatal("invalid input changed the state")
	}
}

func FuzzUnmarshalMergeState(f *testing.F) {
	m, _ := NewMerger(mergeCfg(nil))
	_ = m.SetShards(2)
	m.Add(1, 0, []PartialCell{{Values: []string{"HN1", "20"}, Events: 1, Subjects: []uint64{1}}}, 3)
	m.Progress(0, 0, 4, nil)
	f.Add(MarshalMergeState(m.Checkpoint()))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalMergeState(b)
		if err != nil {
			return
		}
		r, _ := NewMerger(mergeCfg(nil))
		_ = r.Restore(s)
		if s2, err := UnmarshalMergeState(MarshalMergeState(s)); err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func mergeCell(subjects ...uint64) []PartialCell {
	return []PartialCell{{Values: []string{"HN1", "20"}, Events: int64(len(subjects)), Subjects: subjects}}
}

// TestMergeRefusesWindowsBeyondThePendingBound (attack: far-future or
// runaway aligned windows grow the state without bound): a partial that
// would open a window beyond MaxPending is refused, changes nothing, and
// the windows already pending still merge and release.
func TestMergeRefusesWindowsBeyondThePendingBound(t *testing.T) {
	m, err := NewMerger(Config{K: 1, Window: time.Second, Dims: testDims})
	if err != nil {
		t.Fatal(err)
	}
	ref := int64(0)
	for i := range int64(MaxPending) {
		if _, err := m.Add(0, i*1000, mergeCell(1), ref); err != nil {
			t.Fatal(err)
		}
		ref++
	}
	if _, err := m.Add(0, MaxPending*1000, mergeCell(1), ref); !errors.Is(err, ErrRefused) {
		t.Fatalf("window beyond the bound: %v", err)
	}
	if m.Pending() != MaxPending {
		t.Fatalf("pending %d", m.Pending())
	}
	// A pending window still takes partials.
	if o, err := m.Add(0, 0, mergeCell(2), ref); err != nil || o != Accepted {
		t.Fatalf("partial of a pending window: %v %v", o, err)
	}
	var out []ClosedWindow
	if err := m.Progress(0, 5000, ref+1, func(w ClosedWindow) { out = append(out, w) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != 5 || m.Pending() != MaxPending-5 {
		t.Fatalf("released %d windows, %d pending", len(out), m.Pending())
	}
}

// TestMergeRejectsProgressOfUnknownShards (attack: a forged progress
// record naming partition 65534 grows the progress table and stalls every
// window): a shard beyond SetShards' count is an error and changes
// nothing; a count that was too high is undone by SetShards.
func TestMergeRejectsProgressOfUnknownShards(t *testing.T) {
	m, _ := NewMerger(Config{K: 1, Window: time.Second, Dims: testDims})
	if err := m.SetShards(2); err != nil {
		t.Fatal(err)
	}
	if err := m.Progress(MaxShards-2, 0, 0, nil); err == nil {
		t.Fatal("accepted progress of shard 65534")
	}
	if _, err := m.Add(5, 0, mergeCell(1), 0); err == nil {
		t.Fatal("accepted a partial of shard 5")
	}
	if n := len(m.Checkpoint().Progress); n != 2 {
		t.Fatalf("%d shards after forged records", n)
	}
	_ = m.SetShards(3)
	if _, err := m.Add(0, 0, mergeCell(1), 1); err != nil {
		t.Fatal(err)
	}
	_ = m.SetShards(2) // the third was a mistake
	var out []ClosedWindow
	for s := range int32(2) {
		if err := m.Progress(s, 1000, int64(2+s), func(w ClosedWindow) { out = append(out, w) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != 1 {
		t.Fatalf("released %d windows after the count was lowered", len(out))
	}
}

// TestMergeHorizonSurvivesAConfigChange (attack: a reset by a K or window
// change lets a late partial reopen and re-release an already released
// window, and restarts the DP period budget): the horizon and the ledger
// survive; a partial of a window before the horizon is late.
func TestMergeHorizonSurvivesAConfigChange(t *testing.T) {
	dpc := &DPConfig{Epsilon: 1, Delta: 1e-5, PeriodEpsilon: 10, Period: time.Hour}
	m, _ := NewMerger(Config{K: 1, Window: time.Second, Dims: testDims, DP: dpc})
	for i := range int64(3) {
		if _, err := m.Add(0, i*1000, mergeCell(1, 2, 3), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Progress(0, 2000, 3, func(ClosedWindow) {}); err != nil {
		t.Fatal(err)
	}
	s, err := UnmarshalMergeState(MarshalMergeState(m.Checkpoint()))
	if err != nil {
		t.Fatal(err)
	}
	// K and the window change.
	r, _ := NewMerger(Config{K: 2, Window: 3 * time.Second, Dims: testDims, DP: dpc})
	if err := r.Restore(s); !errors.Is(err, ErrOtherConfig) {
		t.Fatalf("restore of another configuration: %v", err)
	}
	r, _ = NewMerger(Config{K: 2, Window: 3 * time.Second, Dims: testDims, DP: dpc})
	if err := r.RestoreHorizon(s); err != nil {
		t.Fatal(err)
	}
	if o, err := r.Add(0, 0, mergeCell(1, 2, 3, 4), 10); err != nil || o != Late {
		t.Fatalf("a partial of the released window 0 under the new configuration: %v %v", o, err)
	}
	cp := r.Checkpoint()
	if len(cp.Ledger) != len(s.Ledger) || len(cp.Ledger) == 0 || cp.Stats.EpsilonSpent != s.Stats.EpsilonSpent {
		t.Fatalf("ledger %v, spent %v: want %v, %v", cp.Ledger, cp.Stats.EpsilonSpent, s.Ledger, s.Stats.EpsilonSpent)
	}
	if o, err := r.Add(0, 3000, mergeCell(1, 2), 11); err != nil || o != Accepted {
		t.Fatalf("a window after the horizon: %v %v", o, err)
	}
}

// TestMergeRefusesAWindowWhoseDPCannotScale: a window with so many
// identity domains that the scaled DP bounds are out of range is refused
// (counted), not an error that stalls the merge forever.
func TestMergeRefusesAWindowWhoseDPCannotScale(t *testing.T) {
	m, _ := NewMerger(Config{K: 1, Window: time.Second, Dims: testDims,
		DP: &DPConfig{Epsilon: 1, Delta: 1e-5, MaxCellsPerSubject: 1 << 19}})
	if _, err := m.Add(0, 0, mergeCell(1, 1<<48|1, 2<<48|1), 0); err != nil {
		t.Fatal(err)
	}
	var out []ClosedWindow
	if err := m.Progress(0, 1000, 1, func(w ClosedWindow) { out = append(out, w) }); err != nil {
		t.Fatalf("progress failed: %v", err)
	}
	if st := m.Stats(); st.WindowsRefused != 1 || len(out) != 1 || len(out[0].Rows) != 0 || m.Pending() != 0 {
		t.Fatalf("stats %+v, out %+v", st, out)
	}
}
