package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/privacy-pipeline/pipeline/internal/kanon/dp"
)

// Stats are cumulative counters of an aggregator. They are exact operator
// metrics, not differentially private: do not publish them.
type Stats struct {
	// EventsAccepted counts events added to a window (including Bounded).
	EventsAccepted int64
	// EventsLate counts events whose window was already closed.
	EventsLate int64
	// EventsBounded counts accepted events dropped by DP contribution
	// bounding.
	EventsBounded int64
	// WindowsClosed counts closed windows.
	WindowsClosed int64
	// RowsReleased counts released rows per lattice level.
	RowsReleased []int64
	// MarginRows counts margin rows.
	MarginRows int64
	// CellsSuppressed counts level-0 cells that were not released.
	CellsSuppressed int64
	// EventsSuppressedL0 counts the events of those cells.
	EventsSuppressedL0 int64
	// EventsSuppressedFinal counts events in no released row after
	// roll-up (without roll-up, equal to EventsSuppressedL0).
	EventsSuppressedFinal int64
	// MinReleasedSubjects is the smallest true distinct-subject count of a
	// released row (0 before the first release).
	MinReleasedSubjects int64
	// EpsilonSpent and DeltaSpent sum the DP budget of closed windows:
	// the worst-case loss of a subject present in all of them.
	EpsilonSpent, DeltaSpent float64
	// WindowsRefused counts windows not released because the period
	// budget (DPConfig.PeriodEpsilon) was spent; their events are counted
	// in EventsSuppressedFinal.
	WindowsRefused int64
}

// LedgerEntry is one released window in the period-budget ledger.
type LedgerEntry struct {
	// Start is the window start (unix ms).
	Start int64
	// Epsilon is what the window spent per subject.
	Epsilon float64
}

// clone returns a deep copy of s.
func (s Stats) clone() Stats {
	s.RowsReleased = slices.Clone(s.RowsReleased)
	return s
}

// OpenWindow is an open window in a [State].
type OpenWindow struct {
	// Start is the window start (unix ms).
	Start int64
	// FirstRef is the Ref of its first accepted event.
	FirstRef int64
}

// State is a snapshot of an aggregator from which a restart rebuilds it
// by replaying its input from [State.ReplayFrom].
type State struct {
	// WindowMs and K identify the configuration the state belongs to.
	WindowMs int64
	// K is the effective K of the configuration.
	K int64
	// Watermark is the max event time seen (or a later Advance/Flush);
	// math.MinInt64 if none.
	Watermark int64
	// NextRef is the checkpoint position: the last Ref added plus one
	// (0 if none).
	NextRef int64
	// Open lists the open windows by start.
	Open []OpenWindow
	// Stats are the cumulative stats.
	Stats Stats
	// Ledger lists the released windows of the last period, by start,
	// when a period budget is set (DPConfig.PeriodEpsilon).
	Ledger []LedgerEntry
}

// ReplayFrom returns the smallest FirstRef of the open windows; ok is
// false when no window is open and there is nothing to replay.
func (s *State) ReplayFrom() (ref int64, ok bool) {
	for i, w := range s.Open {
		if i == 0 || w.FirstRef < ref {
			ref = w.FirstRef
		}
	}
	return ref, len(s.Open) > 0
}

// Checkpoint returns a snapshot of the aggregator. Call it between events;
// the checkpoint position is the NextRef of the state.
func (a *Aggregator) Checkpoint() State {
	s := State{
		WindowMs:  a.winMs,
		K:         int64(a.cfg.K),
		Watermark: a.wm,
		NextRef:   a.nextRef,
		Stats:     a.stats.clone(),
		Ledger:    slices.Clone(a.ledger),
	}
	for _, w := range a.open {
		s.Open = append(s.Open, OpenWindow{Start: w.start, FirstRef: w.firstRef})
	}
	return s
}

// ReplayFrom returns the replay start of the aggregator's current state
// (see [State.ReplayFrom]).
func (a *Aggregator) ReplayFrom() (ref int64, ok bool) {
	s := State{}
	for _, w := range a.open {
		s.Open = append(s.Open, OpenWindow{Start: w.start, FirstRef: w.firstRef})
	}
	return s.ReplayFrom()
}

// Stats returns a copy of the cumulative stats.
func (a *Aggregator) Stats() Stats { return a.stats.clone() }

// Restore loads s into a new aggregator (one that has seen nothing). The
// open windows start empty; fill them with [Aggregator.Replay].
func (a *Aggregator) Restore(s State) error {
	if !a.fresh {
		return errors.New("aggregate: restore needs a new aggregator")
	}
	if s.WindowMs != a.winMs || s.K != int64(a.cfg.K) {
		return errors.New("aggregate: state belongs to another configuration")
	}
	if err := s.validate(); err != nil {
		return err
	}
	if len(s.Stats.RowsReleased) > a.levels {
		return errors.New("aggregate: state has more levels than the configuration")
	}
	if s.Watermark != noWatermark && (s.Watermark < minTime || s.Watermark > maxTime+2*maxDuration.Milliseconds()) {
		return errors.New("aggregate: state watermark out of range")
	}
	for i, w := range s.Open {
		if w.Start < minTime-a.winMs || w.Start > maxTime || a.windowStart(w.Start) != w.Start {
			return fmt.Errorf("aggregate: open window %d is not aligned to the window size", i)
		}
		if i > 0 && w.Start <= s.Open[i-1].Start {
			return errors.New("aggregate: open windows are not sorted")
		}
		// A window the current lateness would already have closed is kept:
		// the lateness may have been lowered since the checkpoint, and the
		// next Advance or Add closes and publishes it.
		if s.Watermark == noWatermark || w.Start > s.Watermark {
			return fmt.Errorf("aggregate: open window %d is inconsistent with the watermark", i)
		}
		if w.FirstRef >= s.NextRef {
			return fmt.Errorf("aggregate: open window %d starts after the checkpoint position", i)
		}
	}
	if a.acct != nil {
		if err := a.acct.Restore(s.Stats.WindowsClosed-s.Stats.WindowsRefused, budgetOf(s.Stats)); err != nil {
			return fmt.Errorf("aggregate: %w", err)
		}
	}
	for i, e := range s.Ledger {
		if !(e.Epsilon >= 0) || math.IsInf(e.Epsilon, 0) || (i > 0 && e.Start <= s.Ledger[i-1].Start) {
			return errors.New("aggregate: state has an invalid budget ledger")
		}
	}
	a.wm, a.nextRef = s.Watermark, s.NextRef
	a.stats = s.Stats.clone()
	a.ledger = slices.Clone(s.Ledger)
	if n := a.levels - len(a.stats.RowsReleased); n > 0 {
		a.stats.RowsReleased = append(a.stats.RowsReleased, make([]int64, n)...)
	}
	a.open, a.last = nil, nil
	for _, w := range s.Open {
		a.openWindow(w.Start, w.FirstRef)
	}
	a.fresh, a.replayOK = false, true
	return nil
}

// Replay re-adds an input event with Ref in [ReplayFrom, checkpoint
// position) after [Aggregator.Restore], in input order. It adds the event
// only if its window is one of the snapshot's open windows (and the event
// is not before that window's first event), applying the same
// contribution bounding as Add; it never emits, never counts lateness and
// leaves the stats alone. It reports whether the event was added. Replay
// is refused once Add, Advance or Flush has been called.
func (a *Aggregator) Replay(e Event) (bool, error) {
	if !a.replayOK {
		return false, errors.New("aggregate: replay is only allowed after Restore and before new events")
	}
	if err := a.check(&e); err != nil {
		return false, err
	}
	if e.Ref >= a.nextRef {
		return false, errors.New("aggregate: replayed event is at or past the checkpoint position")
	}
	w := a.find(a.windowStart(e.Time))
	if w == nil || e.Ref < w.firstRef {
		return false, nil
	}
	return a.addTo(w, &e) == Accepted, nil
}

// validate checks the invariants a decoded state must satisfy.
func (s *State) validate() error {
	if s.WindowMs < 1 || s.WindowMs > maxDuration.Milliseconds() || s.K < 1 || s.K > math.MaxInt32 {
		return errors.New("aggregate: state has an invalid configuration")
	}
	st := &s.Stats
	for _, v := range []int64{st.EventsAccepted, st.EventsLate, st.EventsBounded, st.WindowsClosed,
		st.MarginRows, st.CellsSuppressed, st.EventsSuppressedL0, st.EventsSuppressedFinal, st.MinReleasedSubjects, st.WindowsRefused} {
		if v < 0 {
			return errors.New("aggregate: state has a negative counter")
		}
	}
	for _, v := range st.RowsReleased {
		if v < 0 {
			return errors.New("aggregate: state has a negative counter")
		}
	}
	for _, f := range []float64{st.EpsilonSpent, st.DeltaSpent} {
		if !(f >= 0) || math.IsInf(f, 0) {
			return errors.New("aggregate: state has an invalid privacy budget")
		}
	}
	if len(st.RowsReleased) > maxStateLevels || len(s.Open) > maxStateWindows {
		return errors.New("aggregate: state too large")
	}
	return nil
}

const (
	stateMagic      = "KAG2"
	stateMagicV1    = "KAG1" // before the period budget: no refused count, no ledger
	maxLedger       = 1 << 20
	maxStateLevels  = 1 << 16
	maxStateWindows = 1 << 20
)

// MarshalState encodes s in a compact binary form: the magic "KAG2", then
// varints (window ms, K, watermark, next ref, open-window count, each
// start and first ref, the stats counters, the per-level row counts), the
// two budgets as little-endian float64 bits, the refused-window count and
// the period-budget ledger (count, then start varint and epsilon bits per
// entry). UnmarshalState also reads "KAG1" states, which end after the
// budgets.
func MarshalState(s State) []byte {
	b := make([]byte, 0, 64+16*len(s.Open)+4*len(s.Stats.RowsReleased))
	b = append(b, stateMagic...)
	b = binary.AppendVarint(b, s.WindowMs)
	b = binary.AppendVarint(b, s.K)
	b = binary.AppendVarint(b, s.Watermark)
	b = binary.AppendVarint(b, s.NextRef)
	b = binary.AppendUvarint(b, uint64(len(s.Open)))
	for _, w := range s.Open {
		b = binary.AppendVarint(b, w.Start)
		b = binary.AppendVarint(b, w.FirstRef)
	}
	return appendStatsLedger(b, &s.Stats, s.Ledger)
}

// appendStatsLedger appends the stats and the ledger as MarshalState does.
func appendStatsLedger(b []byte, st *Stats, ledger []LedgerEntry) []byte {
	for _, v := range []int64{st.EventsAccepted, st.EventsLate, st.EventsBounded, st.WindowsClosed,
		st.MarginRows, st.CellsSuppressed, st.EventsSuppressedL0, st.EventsSuppressedFinal, st.MinReleasedSubjects} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(st.RowsReleased)))
	for _, v := range st.RowsReleased {
		b = binary.AppendVarint(b, v)
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(st.EpsilonSpent))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(st.DeltaSpent))
	b = binary.AppendVarint(b, st.WindowsRefused)
	b = binary.AppendUvarint(b, uint64(len(ledger)))
	for _, e := range ledger {
		b = binary.AppendVarint(b, e.Start)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Epsilon))
	}
	return b
}

// readStatsLedger reads what appendStatsLedger wrote.
func readStatsLedger(r *stateReader, st *Stats) []LedgerEntry {
	readStatsV1(r, st)
	st.WindowsRefused = r.varint()
	var ledger []LedgerEntry
	if n := r.count(maxLedger, 9); n > 0 {
		ledger = make([]LedgerEntry, n)
		for i := range ledger {
			ledger[i] = LedgerEntry{Start: r.varint(), Epsilon: r.float()}
		}
	}
	return ledger
}

// readStatsV1 reads the stats up to the budgets.
func readStatsV1(r *stateReader, st *Stats) {
	for _, p := range []*int64{&st.EventsAccepted, &st.EventsLate, &st.EventsBounded, &st.WindowsClosed,
		&st.MarginRows, &st.CellsSuppressed, &st.EventsSuppressedL0, &st.EventsSuppressedFinal, &st.MinReleasedSubjects} {
		*p = r.varint()
	}
	if n := r.count(maxStateLevels, 1); n > 0 {
		st.RowsReleased = make([]int64, n)
		for i := range st.RowsReleased {
			st.RowsReleased[i] = r.varint()
		}
	}
	st.EpsilonSpent = r.float()
	st.DeltaSpent = r.float()
}

// budgetOf returns the budget spent according to the stats.
func budgetOf(st Stats) dp.Budget { return dp.Budget{Epsilon: st.EpsilonSpent, Delta: st.DeltaSpent} }

// stateReader decodes varints, remembering the first error.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("aggregate: state truncated or malformed")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) count(limit, minBytes int) int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("aggregate: state truncated or malformed")
		return 0
	}
	r.b = r.b[n:]
	if v > uint64(limit) || v*uint64(minBytes) > uint64(len(r.b)) {
		r.err = errors.New("aggregate: state count out of range")
		return 0
	}
	return int(v)
}

func (r *stateReader) float() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errors.New("aggregate: state truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// UnmarshalState decodes a state encoded by [MarshalState]. It rejects
// truncated, trailing, malformed or inconsistent input with an error.
func UnmarshalState(b []byte) (State, error) {
	if len(b) < len(stateMagic) || (string(b[:len(stateMagic)]) != stateMagic && string(b[:len(stateMagicV1)]) != stateMagicV1) {
		return State{}, errors.New("aggregate: not an aggregator state")
	}
	v1 := string(b[:len(stateMagicV1)]) == stateMagicV1
	r := &stateReader{b: b[len(stateMagic):]}
	var s State
	s.WindowMs = r.varint()
	s.K = r.varint()
	s.Watermark = r.varint()
	s.NextRef = r.varint()
	if n := r.count(maxStateWindows, 2); n > 0 {
		s.Open = make([]OpenWindow, n)
		for i := range s.Open {
			s.Open[i] = OpenWindow{Start: r.varint(), FirstRef: r.varint()}
		}
	}
	if v1 {
		readStatsV1(r, &s.Stats)
	} else {
		s.Ledger = readStatsLedger(r, &s.Stats)
	}
	if r.err != nil {
		return State{}, fmt.Errorf("aggregate: decoding state: %w", r.err)
	}
	if len(r.b) != 0 {
		return State{}, errors.New("aggregate: trailing bytes after state")
	}
	if err := s.validate(); err != nil {
		return State{}, fmt.Errorf("aggregate: decoding state: %w", err)
	}
	return s, nil
}
