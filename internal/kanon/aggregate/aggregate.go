package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/dp"
)

// Event is one input event.
type Event struct {
	// Time is the event time in unix milliseconds.
	Time int64
	// Subject is a hash of the subject's pseudonym. A collision of two
	// subjects can only undercount distinct subjects, which is safe. Its
	// top DomainBits bits name an identity domain (e.g. the pseudonym key):
	// one person may appear once per domain, so a row's distinct-subject
	// count is the largest count within a single domain.
	Subject uint64
	// Dims are the values of the configured dimensions at level 0, in
	// config order.
	Dims []string
	// Amount is the amount summed into the rows when HasAmount is set.
	Amount float64
	// HasAmount reports whether Amount is present.
	HasAmount bool
	// Ref is the caller's input position (e.g. the Kafka offset); it must
	// increase along the input.
	Ref int64
	// MaxWatermark, when not zero, is the furthest this event may move the
	// watermark (unix ms): typically the time its record reached the log
	// plus a small skew. One event stamped far in the future then cannot
	// close the open windows and turn the on-time events after it into
	// late ones; it still joins its own (future) window.
	MaxWatermark int64
}

// Outcome is what [Aggregator.Add] did with an event.
type Outcome uint8

const (
	// Accepted means the event was added to its window.
	Accepted Outcome = iota
	// Late means the event's window was already closed; the event was
	// counted in [Stats].EventsLate and not added.
	Late
	// Bounded means the event was accepted but dropped by DP contribution
	// bounding (counted in [Stats].EventsBounded and EventsAccepted).
	Bounded
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Late:
		return "late"
	case Bounded:
		return "bounded"
	}
	return "unknown"
}

// DomainBits is the number of top bits of Event.Subject that name its
// identity domain.
const DomainBits = 16

// Star is the value of the dimensions a margin row does not break down.
const Star = "*"

// Row is one released row or margin of a window.
type Row struct {
	// Level is the lattice level of a released row (dimension i is
	// generalised to min(Level, Levels_i - 1)). For a one-dimensional
	// margin it is the level of the MarginDim value; for the grand total
	// it is -1.
	Level int
	// Values are the generalised dimension values in config order; Star
	// for dimensions a margin does not break down.
	Values []string
	// Margin flags margin rows.
	Margin bool
	// MarginDim is the dimension a margin breaks down, -1 for the grand
	// total (and for non-margin rows).
	MarginDim int
	// Events is the number of events (noisy under DP).
	Events int64
	// Subjects is the number of distinct subjects (noisy under DP; see the
	// package documentation for margins).
	Subjects int64
	// Sum is the sum of amounts (clamped and noisy under DP).
	Sum float64
	// Noisy reports that the figures carry DP noise.
	Noisy bool
}

// ClosedWindow is the output of one closed window: released rows, by
// level then values, followed by the margins; or, with [Config].Partials,
// the window's level-0 contributions.
type ClosedWindow struct {
	// Start and End bound the window [Start, End) in unix ms.
	Start, End int64
	// Rows are the released rows and margins.
	Rows []Row
	// Cells are the level-0 contributions, sorted by values, when the
	// aggregator publishes partial windows (Config.Partials); Rows is then
	// empty.
	Cells []PartialCell
}

// PartialCell is one shard's contribution to a level-0 cell of a window:
// what a [Merger] needs to release the cell exactly once over all shards.
type PartialCell struct {
	// Values are the level-0 dimension values in config order.
	Values []string
	// Events is the number of events (after DP contribution bounding).
	Events int64
	// Sum is the sum of amounts (without DP).
	Sum float64
	// QSum is the sum of clamped amounts in AmountUnit units (with DP).
	QSum int64
	// Subjects are the distinct subject ids of the cell, strictly
	// increasing (identity domain in the top DomainBits bits).
	Subjects []uint64
}

// EmitFunc receives each closed window, in window order. It may keep the
// ClosedWindow. A nil EmitFunc discards the rows (stats are kept).
type EmitFunc func(ClosedWindow)

// cell is a level-0 cell of a window.
type cell struct {
	vals   []string
	events int64
	sum    float64 // without DP
	qsum   int64   // with DP: clamped amounts in units
	subj   map[uint64]uint32
	parts  []shardSum // Merger: sums by shard until the window closes
}

// subjCells lists the cells a subject counts in within a window (DP).
type subjCells struct {
	first *cell
	more  []*cell
}

func (s *subjCells) has(c *cell) bool { return s.first == c || slices.Contains(s.more, c) }
func (s *subjCells) len() int {
	if s.first == nil {
		return 0
	}
	return 1 + len(s.more)
}

// window is an open window.
type window struct {
	start, end int64
	firstRef   int64
	cells      map[string]*cell
	subjects   map[uint64]subjCells // DP only
}

// noWatermark is the watermark before any event.
const noWatermark = math.MinInt64

// Aggregator aggregates the events of one shard. It is not safe for
// concurrent use.
type Aggregator struct {
	closer
	lateMs int64

	wm      int64 // max event time seen (or later Advance/Flush), noWatermark if none
	nextRef int64 // last Ref seen + 1
	open    []*window
	last    *window
	keyBuf  []byte

	fresh    bool // nothing added, advanced or restored yet
	replayOK bool // restored and nothing added since
}

// closer releases closed windows: suppression below K, roll-up, margins
// and DP. [Aggregator] (one shard) and [Merger] (the partial windows of
// every shard) share it, so both release by exactly the same rules.
type closer struct {
	cfg    Config
	levels int
	winMs  int64
	dp     *dpPlan
	acct   *dp.Accountant
	// scaled are the DP mechanisms of windows whose subjects come from
	// several identity domains, by domain count (see closeWindow).
	scaled map[int]*dpPlan
	// ledger lists the released windows of the last period (period budget).
	ledger []LedgerEntry

	scratch map[uint64]struct{}
	domains map[uint64]int64 // distinct subjects per identity domain (scratch)
	stats   Stats
}

// newCloser validates cfg and builds the closing machinery.
func newCloser(cfg Config) (closer, error) {
	cfg, levels, err := cfg.normalize()
	if err != nil {
		return closer{}, err
	}
	c := closer{
		cfg:     cfg,
		levels:  levels,
		winMs:   cfg.Window.Milliseconds(),
		scratch: make(map[uint64]struct{}),
		domains: make(map[uint64]int64),
	}
	c.stats.RowsReleased = make([]int64, levels)
	if cfg.DP != nil {
		if c.dp, err = newDPPlan(cfg.DP, levels); err != nil {
			return closer{}, err
		}
		if c.acct, err = dp.NewAccountant(c.dp.perWindow); err != nil {
			return closer{}, fmt.Errorf("aggregate: %w", err)
		}
	}
	return c, nil
}

// New returns an aggregator for cfg.
func New(cfg Config) (*Aggregator, error) {
	c, err := newCloser(cfg)
	if err != nil {
		return nil, err
	}
	a := &Aggregator{
		closer: c,
		lateMs: c.cfg.AllowedLateness.Milliseconds(),
		wm:     noWatermark,
		fresh:  true,
	}
	if c.cfg.AllowedLateness%time.Millisecond != 0 {
		a.lateMs++ // round up: keep windows open at least as long as asked
	}
	return a, nil
}

// Levels returns the number of lattice levels walked (1 without roll-up).
func (a *Aggregator) Levels() int { return a.levels }

// K returns the effective K.
func (a *Aggregator) K() int { return a.cfg.K }

// SelectionThreshold returns the DP selection threshold on noisy subject
// counts, or 0 when DP is off.
func (a *Aggregator) SelectionThreshold() int64 {
	if a.dp == nil {
		return 0
	}
	return a.dp.threshold
}

// check validates an event without revealing its content in errors.
func (a *Aggregator) check(e *Event) error {
	if len(e.Dims) != len(a.cfg.Dims) {
		return fmt.Errorf("aggregate: event has %d dimension values, want %d", len(e.Dims), len(a.cfg.Dims))
	}
	if e.Time < minTime || e.Time > maxTime {
		return errors.New("aggregate: event time out of range")
	}
	if e.HasAmount && (math.IsNaN(e.Amount) || math.IsInf(e.Amount, 0)) {
		return errors.New("aggregate: event amount is not finite")
	}
	return nil
}

// windowStart returns the start of the window holding t.
func (a *Aggregator) windowStart(t int64) int64 { return windowStartOf(t, a.winMs) }

// closed reports whether the window starting at start is closed.
func (a *Aggregator) closed(start int64) bool {
	return a.wm != noWatermark && start+a.winMs+a.lateMs <= a.wm
}

// find returns the open window starting at start, or nil.
func (a *Aggregator) find(start int64) *window {
	if a.last != nil && a.last.start == start {
		return a.last
	}
	for _, w := range a.open {
		if w.start == start {
			a.last = w
			return w
		}
	}
	return nil
}

// openWindow adds an empty open window, keeping a.open sorted.
func (a *Aggregator) openWindow(start, firstRef int64) *window {
	w := &window{start: start, end: start + a.winMs, firstRef: firstRef, cells: make(map[string]*cell)}
	if a.dp != nil {
		w.subjects = make(map[uint64]subjCells)
	}
	i, _ := slices.BinarySearchFunc(a.open, start, cmpStart)
	a.open = slices.Insert(a.open, i, w)
	a.last = w
	return w
}

// Add adds an event. If the event moves the watermark, the windows it
// closes are emitted before Add returns. A late event is counted and
// returns Late. An invalid event (wrong number of dimension values, time
// out of range, non-finite amount) returns an error and changes nothing.
func (a *Aggregator) Add(e Event, emit EmitFunc) (Outcome, error) {
	if err := a.check(&e); err != nil {
		return 0, err
	}
	a.fresh, a.replayOK = false, false
	if e.Ref >= a.nextRef {
		a.nextRef = e.Ref + 1
	}
	start := a.windowStart(e.Time)
	if a.closed(start) {
		a.stats.EventsLate++
		return Late, nil
	}
	w := a.find(start)
	if w == nil {
		w = a.openWindow(start, e.Ref)
	}
	out := a.addTo(w, &e)
	a.stats.EventsAccepted++
	if out == Bounded {
		a.stats.EventsBounded++
	}
	adv := e.Time
	if e.MaxWatermark != 0 && adv > e.MaxWatermark {
		adv = e.MaxWatermark
	}
	if adv > a.wm {
		a.wm = adv
		if err := a.closeUpTo(emit); err != nil {
			return out, err
		}
	}
	return out, nil
}

// addTo adds e to w, applying DP contribution bounding.
func (a *Aggregator) addTo(w *window, e *Event) Outcome {
	buf := a.keyBuf[:0]
	for _, v := range e.Dims {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	a.keyBuf = buf
	c := w.cells[string(buf)]
	if a.dp != nil {
		sc := w.subjects[e.Subject]
		if c == nil || !sc.has(c) {
			if sc.len() >= a.dp.l0 {
				return Bounded
			}
			if c == nil {
				c = a.newCell(w, e)
			}
			if sc.first == nil {
				sc.first = c
			} else {
				sc.more = append(sc.more, c)
			}
			w.subjects[e.Subject] = sc
		}
		n := c.subj[e.Subject]
		if n >= uint32(a.dp.linf) {
			return Bounded
		}
		c.subj[e.Subject] = n + 1
		c.events++
		if e.HasAmount && a.dp.measures == 3 {
			c.qsum += a.dp.quantize(e.Amount)
		}
		return Accepted
	}
	if c == nil {
		c = a.newCell(w, e)
	}
	if n := c.subj[e.Subject]; n < math.MaxUint32 {
		c.subj[e.Subject] = n + 1
	}
	c.events++
	if e.HasAmount {
		c.sum += e.Amount
	}
	return Accepted
}

func (a *Aggregator) newCell(w *window, e *Event) *cell {
	c := &cell{vals: slices.Clone(e.Dims), subj: make(map[uint64]uint32, 4)}
	w.cells[string(a.keyBuf)] = c
	return c
}

// Contributions returns the number of events of subject in the open
// windows (after DP contribution bounding), 0 if it has none: what
// dropping the subject would remove. Closed windows are not counted: they
// were emitted.
func (a *Aggregator) Contributions(subject uint64) int64 {
	var n int64
	for _, w := range a.open {
		for _, c := range w.cells {
			n += int64(c.subj[subject])
		}
	}
	return n
}

// Advance moves the watermark to nowMs (if later) and emits the windows
// that closes; use it to close windows on an idle shard.
func (a *Aggregator) Advance(nowMs int64, emit EmitFunc) error {
	a.fresh, a.replayOK = false, false
	if nowMs > a.wm {
		a.wm = nowMs
	}
	return a.closeUpTo(emit)
}

// Flush closes and emits every open window (end of a bounded input). The
// watermark moves past the last window, so later events for any window
// up to it are late.
func (a *Aggregator) Flush(emit EmitFunc) error {
	a.fresh, a.replayOK = false, false
	if n := len(a.open); n > 0 {
		a.wm = max(a.wm, a.open[n-1].end+a.lateMs)
	}
	return a.closeUpTo(emit)
}

// closeUpTo closes the open windows the watermark has passed.
func (a *Aggregator) closeUpTo(emit EmitFunc) error {
	for len(a.open) > 0 && a.closed(a.open[0].start) {
		w := a.open[0]
		if a.cfg.Partials {
			a.emitPartial(w, emit)
		} else if err := a.closeWindow(w, emit); err != nil {
			return err
		}
		a.open[0] = nil
		a.open = a.open[1:]
		if a.last == w {
			a.last = nil
		}
	}
	if len(a.open) == 0 {
		a.open = nil
	}
	return nil
}

// emitPartial hands a closing window's level-0 contributions to emit
// (Config.Partials) instead of releasing it.
func (a *Aggregator) emitPartial(w *window, emit EmitFunc) {
	cells := make([]PartialCell, 0, len(w.cells))
	for _, c := range w.cells {
		subj := make([]uint64, 0, len(c.subj))
		for s := range c.subj {
			subj = append(subj, s)
		}
		slices.Sort(subj)
		cells = append(cells, PartialCell{Values: c.vals, Events: c.events, Sum: c.sum, QSum: c.qsum, Subjects: subj})
	}
	slices.SortFunc(cells, func(x, y PartialCell) int { return compareVals(x.Values, y.Values) })
	a.stats.WindowsClosed++
	if emit != nil {
		emit(ClosedWindow{Start: w.start, End: w.end, Cells: cells})
	}
}

// ClosedBefore returns the progress of the shard: every window that starts
// before it is closed (emitted, or never opened and now never accepted:
// its events would be late), so a [Merger] may close it once every shard
// has passed it. It is math.MinInt64 before the first event or Advance.
func (a *Aggregator) ClosedBefore() int64 {
	if a.wm == noWatermark {
		return math.MinInt64
	}
	// Window s is closed iff s + win + late <= wm.
	b := a.windowStart(a.wm-a.winMs-a.lateMs) + a.winMs
	if len(a.open) > 0 && a.open[0].start < b {
		b = a.open[0].start // restored past its lateness, closes at the next Add or Advance
	}
	return b
}
