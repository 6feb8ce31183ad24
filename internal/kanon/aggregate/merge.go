package aggregate

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// MaxShards bounds the number of shards a [Merger] merges.
const MaxShards = 1 << 16

// MaxPending bounds the windows a [Merger] holds pending: a partial that
// would open one more is refused ([ErrRefused]), so forged or runaway
// input cannot grow the state (and its checkpoint) without bound. At one
// window a minute it is almost three days of a lagging shard.
const MaxPending = 1 << 12

// ErrRefused is returned by [Merger.Check] and [Merger.Add] for a valid
// partial that would open a window beyond [MaxPending].
var ErrRefused = errors.New("aggregate: too many pending windows")

// ErrOtherConfig is wrapped by [Merger.Restore] for a well-formed state of
// another configuration (window size, K, levels): [Merger.RestoreHorizon]
// still applies it.
var ErrOtherConfig = errors.New("aggregate: merge state belongs to another configuration")

// shardSum is one shard's sum of amounts in a merged cell.
type shardSum struct {
	shard int32
	sum   float64
}

// Merger is the second stage of a two-stage release: it merges the partial
// windows that the aggregators of every shard publish (Config.Partials)
// and, once every shard has passed a window ([Merger.Progress]), releases
// it by exactly the rules of a single aggregator (suppression below K
// distinct subjects counted in the largest identity domain, roll-up,
// margins from released rows, DP and the period budget) over the union of
// the contributions. A cell split over shards is therefore released when
// it reaches K people in total, and once.
//
// Subject ids must be comparable across shards: the same person in the
// same identity domain must have the same id on every shard (the caller
// renumbers shard-local domains). Contribution bounding is the shards'
// (all events of a subject are on one shard).
//
// A Merger is not safe for concurrent use.
type Merger struct {
	closer
	progress []int64 // ClosedBefore per shard ([Merger.SetShards]); math.MinInt64 before its first report
	through  int64   // every window that starts before it is closed
	nextRef  int64
	pending  []*window // by start

	fresh, replayOK bool
}

// NewMerger returns a merger for cfg (Partials is ignored). It waits for
// one shard until [Merger.SetShards] says more.
func NewMerger(cfg Config) (*Merger, error) {
	cfg.Partials = false
	c, err := newCloser(cfg)
	if err != nil {
		return nil, err
	}
	return &Merger{closer: c, through: math.MinInt64, fresh: true, progress: []int64{math.MinInt64}}, nil
}

// Pending returns the number of windows waiting for a shard's progress.
func (m *Merger) Pending() int { return len(m.pending) }

// SetShards sets the number of shards the merger waits for: the input's
// real partition count, which the caller knows (never a count the input
// claims). Shards added wait from their first report on; shards beyond n
// (a count that was too high) are forgotten. It closes nothing: the next
// [Merger.Progress] does.
func (m *Merger) SetShards(n int32) error {
	if n < 1 || n > MaxShards {
		return fmt.Errorf("aggregate: %d shards out of range", n)
	}
	for len(m.progress) < int(n) {
		m.progress = append(m.progress, math.MinInt64)
	}
	m.progress = m.progress[:n]
	return nil
}

// Late reports whether a partial of the window at start would be late: the
// merger has already released every window before its horizon.
func (m *Merger) Late(start int64) bool { return start < m.through }

// Check validates a partial window without changing anything: the shard
// must be one the merger waits for, the window aligned, the cells well
// formed; a partial that would open a window beyond [MaxPending] returns
// [ErrRefused].
func (m *Merger) Check(shard int32, start int64, cells []PartialCell) error {
	if shard < 0 || int(shard) >= len(m.progress) {
		return fmt.Errorf("aggregate: shard %d of %d out of range", shard, len(m.progress))
	}
	if start < minTime || start > maxTime || windowStartOf(start, m.winMs) != start {
		return errors.New("aggregate: partial window is not aligned to the window size")
	}
	for i := range cells {
		c := &cells[i]
		if len(c.Values) != len(m.cfg.Dims) {
			return fmt.Errorf("aggregate: partial cell has %d dimension values, want %d", len(c.Values), len(m.cfg.Dims))
		}
		if c.Events < 0 || math.IsNaN(c.Sum) || math.IsInf(c.Sum, 0) {
			return errors.New("aggregate: partial cell has negative events or a non-finite sum")
		}
		for j := 1; j < len(c.Subjects); j++ {
			if c.Subjects[j] <= c.Subjects[j-1] {
				return errors.New("aggregate: partial cell subjects are not strictly increasing")
			}
		}
	}
	if start >= m.through && m.find(start) == nil && len(m.pending) >= MaxPending {
		return ErrRefused
	}
	return nil
}

// windowStartOf returns the start of the window of size winMs holding t.
func windowStartOf(t, winMs int64) int64 {
	s := t / winMs * winMs
	if s > t {
		s -= winMs
	}
	return s
}

// Add merges one shard's partial window (its cells, as in
// [ClosedWindow].Cells, possibly split over several calls) at input
// position ref, which must increase along the input. A partial of a
// window the merger already closed is Late: counted in Stats.EventsLate
// and dropped. Input that [Merger.Check] rejects returns its error
// (invalid, or [ErrRefused]) and changes nothing.
func (m *Merger) Add(shard int32, start int64, cells []PartialCell, ref int64) (Outcome, error) {
	if err := m.Check(shard, start, cells); err != nil {
		return 0, err
	}
	m.fresh, m.replayOK = false, false
	m.nextRef = max(m.nextRef, ref+1)
	var events int64
	for i := range cells {
		events = satAdd(events, cells[i].Events)
	}
	if start < m.through {
		m.stats.EventsLate = satAdd(m.stats.EventsLate, events)
		return Late, nil
	}
	w := m.find(start)
	if w == nil {
		w = m.openPending(start, ref)
	}
	m.addTo(w, shard, cells)
	m.stats.EventsAccepted = satAdd(m.stats.EventsAccepted, events)
	return Accepted, nil
}

// Replay re-adds a partial at input position ref in [ReplayFrom,
// checkpoint position) after [Merger.Restore], in input order: only if its
// window is pending and ref is not before the window's first partial. It
// never closes, never counts lateness, leaves the stats alone and reports
// whether it added the partial.
func (m *Merger) Replay(shard int32, start int64, cells []PartialCell, ref int64) (bool, error) {
	if !m.replayOK {
		return false, errors.New("aggregate: replay is only allowed after Restore and before new input")
	}
	if ref >= m.nextRef {
		return false, errors.New("aggregate: replayed partial is at or past the checkpoint position")
	}
	w := m.find(start)
	if w == nil || ref < w.firstRef {
		return false, nil
	}
	if err := m.Check(shard, start, cells); err != nil {
		return false, err
	}
	m.addTo(w, shard, cells)
	return true, nil
}

// Progress records that shard (one of those [Merger.SetShards] set) has
// closed every window before closedBefore ([Aggregator.ClosedBefore]), at
// input position ref; it then closes, in order, every pending window that
// all shards have passed and emits its rows. Progress never goes back: an
// older report changes nothing. A shard out of range returns an error and
// changes nothing.
func (m *Merger) Progress(shard int32, closedBefore, ref int64, emit EmitFunc) error {
	if shard < 0 || int(shard) >= len(m.progress) {
		return fmt.Errorf("aggregate: shard %d of %d out of range", shard, len(m.progress))
	}
	m.fresh, m.replayOK = false, false
	m.nextRef = max(m.nextRef, ref+1)
	m.progress[shard] = max(m.progress[shard], closedBefore)
	t := slices.Min(m.progress)
	if t <= m.through {
		return nil
	}
	n := 0
	for n < len(m.pending) && m.pending[n].start < t {
		w := m.pending[n]
		finishSums(w)
		if err := m.closeWindow(w, emit); err != nil {
			m.pending = m.pending[n:]
			return err
		}
		m.pending[n] = nil
		n++
	}
	m.pending = m.pending[n:]
	if len(m.pending) == 0 {
		m.pending = nil
	}
	m.through = t
	return nil
}

// finishSums sets each cell's sum from its shards' sums, added in shard
// order so the result does not depend on the order partials arrived in.
func finishSums(w *window) {
	for _, c := range w.cells {
		slices.SortStableFunc(c.parts, func(x, y shardSum) int { return int(x.shard) - int(y.shard) })
		c.sum = 0
		for _, p := range c.parts {
			c.sum += p.sum
		}
		c.parts = nil
	}
}

func (m *Merger) find(start int64) *window {
	i, ok := slices.BinarySearchFunc(m.pending, start, cmpStart)
	if !ok {
		return nil
	}
	return m.pending[i]
}

// cmpStart orders windows by start, for binary searches.
func cmpStart(w *window, s int64) int { return cmp.Compare(w.start, s) }

func (m *Merger) openPending(start, firstRef int64) *window {
	w := &window{start: start, end: start + m.winMs, firstRef: firstRef, cells: make(map[string]*cell)}
	i, _ := slices.BinarySearchFunc(m.pending, start, cmpStart)
	m.pending = slices.Insert(m.pending, i, w)
	return w
}

// addTo merges cells into w: events and quantised sums add, subjects
// unite, sums are kept per shard.
func (m *Merger) addTo(w *window, shard int32, cells []PartialCell) {
	var key []byte
	for i := range cells {
		pc := &cells[i]
		key = key[:0]
		for _, v := range pc.Values {
			key = binary.AppendUvarint(key, uint64(len(v)))
			key = append(key, v...)
		}
		c := w.cells[string(key)]
		if c == nil {
			c = &cell{vals: slices.Clone(pc.Values), subj: make(map[uint64]uint32, len(pc.Subjects))}
			w.cells[string(key)] = c
		}
		c.events = satAdd(c.events, pc.Events)
		c.qsum = satAdd(c.qsum, pc.QSum)
		if pc.Sum != 0 {
			if n := len(c.parts); n > 0 && c.parts[n-1].shard == shard {
				c.parts[n-1].sum += pc.Sum
			} else {
				c.parts = append(c.parts, shardSum{shard: shard, sum: pc.Sum})
			}
		}
		for _, s := range pc.Subjects {
			c.subj[s] = 1 // a set here: the merge does no contribution bounding
		}
	}
}

// MergeState is a snapshot of a merger from which a restart rebuilds it by
// replaying its input from [MergeState.ReplayFrom].
type MergeState struct {
	// WindowMs and K identify the configuration.
	WindowMs, K int64
	// NextRef is the checkpoint position: the last ref seen plus one.
	NextRef int64
	// Through is the bound below which every window is closed.
	Through int64
	// Progress is each shard's last ClosedBefore (math.MinInt64: none yet).
	Progress []int64
	// Pending lists the pending windows by start, with the ref of their
	// first partial.
	Pending []OpenWindow
	// Stats are the cumulative stats.
	Stats Stats
	// Ledger is the period-budget ledger.
	Ledger []LedgerEntry
}

// Checkpoint returns a snapshot of the merger.
func (m *Merger) Checkpoint() MergeState {
	s := MergeState{WindowMs: m.winMs, K: int64(m.cfg.K), NextRef: m.nextRef, Through: m.through,
		Progress: slices.Clone(m.progress), Stats: m.stats.clone(), Ledger: slices.Clone(m.ledger)}
	if len(m.pending) > 0 {
		s.Pending = m.openWindows()
	}
	return s
}

// ReplayFrom returns the replay start of the merger's current state: the
// smallest first ref of its pending windows; ok is false when none is
// pending (see [State.ReplayFrom]).
func (m *Merger) ReplayFrom() (int64, bool) {
	s := State{Open: m.openWindows()}
	return s.ReplayFrom()
}

func (m *Merger) openWindows() []OpenWindow {
	out := make([]OpenWindow, 0, len(m.pending))
	for _, w := range m.pending {
		out = append(out, OpenWindow{Start: w.start, FirstRef: w.firstRef})
	}
	return out
}

// Stats returns a copy of the cumulative stats.
func (m *Merger) Stats() Stats { return m.stats.clone() }

// Restore loads s into a new merger; refill its pending windows with
// [Merger.Replay]. A well-formed state of another configuration returns an
// error wrapping [ErrOtherConfig] and changes nothing.
func (m *Merger) Restore(s MergeState) error {
	if !m.fresh {
		return errors.New("aggregate: restore needs a new merger")
	}
	if err := s.validate(); err != nil {
		return err
	}
	if s.WindowMs != m.winMs || s.K != int64(m.cfg.K) || len(s.Stats.RowsReleased) > m.levels {
		return ErrOtherConfig
	}
	for i, w := range s.Pending {
		if w.Start < minTime || w.Start > maxTime || windowStartOf(w.Start, m.winMs) != w.Start {
			return fmt.Errorf("aggregate: pending window %d is not aligned to the window size", i)
		}
		if (i > 0 && w.Start <= s.Pending[i-1].Start) || w.Start < s.Through || w.FirstRef >= s.NextRef {
			return fmt.Errorf("aggregate: pending window %d is inconsistent", i)
		}
	}
	if m.acct != nil {
		if err := m.acct.Restore(s.Stats.WindowsClosed-s.Stats.WindowsRefused, budgetOf(s.Stats)); err != nil {
			return fmt.Errorf("aggregate: %w", err)
		}
	}
	m.nextRef, m.through = s.NextRef, s.Through
	if len(s.Progress) > 0 {
		m.progress = slices.Clone(s.Progress)
	}
	m.stats = s.Stats.clone()
	m.ledger = slices.Clone(s.Ledger)
	if n := m.levels - len(m.stats.RowsReleased); n > 0 {
		m.stats.RowsReleased = append(m.stats.RowsReleased, make([]int64, n)...)
	}
	m.pending = nil
	for _, w := range s.Pending {
		m.openPending(w.Start, w.FirstRef)
	}
	m.fresh, m.replayOK = false, true
	return nil
}

// RestoreHorizon loads into a new merger what must survive a change of
// configuration (window size, K, levels) from a state that [Merger.Restore]
// refused with [ErrOtherConfig]: the release horizon (no window that starts
// before it is ever released again, so a late partial cannot re-release a
// cell under a new configuration) and the DP period ledger with its spent
// budget. The pending windows, the shards' progress and the counters start
// afresh: their partials are dropped (counted late when they come again).
func (m *Merger) RestoreHorizon(s MergeState) error {
	if !m.fresh {
		return errors.New("aggregate: restore needs a new merger")
	}
	if err := s.validate(); err != nil {
		return err
	}
	if m.acct != nil {
		if err := m.acct.Restore(s.Stats.WindowsClosed-s.Stats.WindowsRefused, budgetOf(s.Stats)); err != nil {
			return fmt.Errorf("aggregate: %w", err)
		}
	}
	// Every released window of the old configuration started before
	// s.Through: a new window that starts before it would hold some of
	// their events again. The horizon is the first new window start at or
	// after it.
	through := s.Through
	if through > minTime {
		through = min(through, maxTime)
		if st := windowStartOf(through, m.winMs); st != through {
			through = st + m.winMs
		}
	}
	m.nextRef, m.through = s.NextRef, through
	m.ledger = slices.Clone(s.Ledger)
	m.stats = Stats{EpsilonSpent: s.Stats.EpsilonSpent, DeltaSpent: s.Stats.DeltaSpent,
		WindowsClosed: s.Stats.WindowsClosed, WindowsRefused: s.Stats.WindowsRefused, RowsReleased: make([]int64, m.levels)}
	m.fresh, m.replayOK = false, false
	return nil
}

func (s *MergeState) validate() error {
	st := State{WindowMs: s.WindowMs, K: s.K, Stats: s.Stats, Open: s.Pending}
	if err := st.validate(); err != nil {
		return err
	}
	if len(s.Progress) > MaxShards {
		return errors.New("aggregate: merge state has too many shards")
	}
	for i, e := range s.Ledger {
		if !(e.Epsilon >= 0) || math.IsInf(e.Epsilon, 0) || (i > 0 && e.Start <= s.Ledger[i-1].Start) {
			return errors.New("aggregate: merge state has an invalid budget ledger")
		}
	}
	return nil
}

const mergeMagic = "KMG1"

// MarshalMergeState encodes s: the magic "KMG1", then varints (window ms,
// K, next ref, through, shard count and each shard's progress, pending
// count and each start and first ref, the stats counters, the per-level
// row counts), the budgets as little-endian float64 bits, the refused
// count and the ledger, as in [MarshalState].
func MarshalMergeState(s MergeState) []byte {
	b := make([]byte, 0, 64+10*len(s.Progress)+16*len(s.Pending))
	b = append(b, mergeMagic...)
	for _, v := range []int64{s.WindowMs, s.K, s.NextRef, s.Through} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Progress)))
	for _, v := range s.Progress {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Pending)))
	for _, w := range s.Pending {
		b = binary.AppendVarint(b, w.Start)
		b = binary.AppendVarint(b, w.FirstRef)
	}
	return appendStatsLedger(b, &s.Stats, s.Ledger)
}

// UnmarshalMergeState decodes a state encoded by [MarshalMergeState],
// rejecting truncated, trailing, malformed or inconsistent input.
func UnmarshalMergeState(b []byte) (MergeState, error) {
	if len(b) < len(mergeMagic) || string(b[:len(mergeMagic)]) != mergeMagic {
		return MergeState{}, errors.New("aggregate: not a merge state")
	}
	r := &stateReader{b: b[len(mergeMagic):]}
	var s MergeState
	s.WindowMs, s.K, s.NextRef, s.Through = r.varint(), r.varint(), r.varint(), r.varint()
	if n := r.count(MaxShards, 1); n > 0 {
		s.Progress = make([]int64, n)
		for i := range s.Progress {
			s.Progress[i] = r.varint()
		}
	}
	if n := r.count(maxStateWindows, 2); n > 0 {
		s.Pending = make([]OpenWindow, n)
		for i := range s.Pending {
			s.Pending[i] = OpenWindow{Start: r.varint(), FirstRef: r.varint()}
		}
	}
	s.Ledger = readStatsLedger(r, &s.Stats)
	if r.err != nil {
		return MergeState{}, fmt.Errorf("aggregate: decoding merge state: %w", r.err)
	}
	if len(r.b) != 0 {
		return MergeState{}, errors.New("aggregate: trailing bytes after merge state")
	}
	if err := s.validate(); err != nil {
		return MergeState{}, fmt.Errorf("aggregate: decoding merge state: %w", err)
	}
	return s, nil
}
