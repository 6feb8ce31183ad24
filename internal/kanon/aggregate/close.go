package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/kanon/dp"
)

// group is a candidate row: level-0 cells regrouped at one level.
type group struct {
	vals    []string
	members []*cell
	events  int64
	sum     float64
	qsum    int64
}

// released is a released row with its members, for the margins.
type released struct {
	row     Row
	members []*cell
}

func compareVals(x, y []string) int { return slices.Compare(x, y) }

// distinct counts the distinct subjects of the members of gs: the largest
// number of distinct subjects within one identity domain (the top
// DomainBits bits of Event.Subject), a lower bound of the number of people
// when one person may appear in two domains.
func (a *closer) distinct(members []*cell) int64 {
	if len(members) == 1 {
		return largestDomain(a.domains, members[0].subj)
	}
	clear(a.scratch)
	for _, c := range members {
		for s := range c.subj {
			a.scratch[s] = struct{}{}
		}
	}
	return largestDomain(a.domains, a.scratch)
}

// largestDomain returns the largest number of subjects of set within one
// identity domain; counts is scratch space.
func largestDomain[V any](counts map[uint64]int64, set map[uint64]V) int64 {
	// Usually every subject shares one domain: one read-only pass.
	var first uint64
	mixed, seen := false, false
	for s := range set {
		d := s >> (64 - DomainBits)
		if !seen {
			first, seen = d, true
		} else if d != first {
			mixed = true
			break
		}
	}
	if !mixed {
		return int64(len(set))
	}
	clear(counts)
	var best int64
	for s := range set {
		d := s >> (64 - DomainBits)
		counts[d]++
		best = max(best, counts[d])
	}
	return best
}

// chargeWindow charges the window's DP queries: every measure at every
// level (delta with the subject counts, which drive selection).
func (a *closer) chargeWindow() error {
	for range a.levels {
		for m := range a.dp.measures {
			c := dp.Budget{Epsilon: a.dp.share.Epsilon}
			if m == 0 {
				c.Delta = a.dp.share.Delta
			}
			if err := a.acct.Charge(c); err != nil {
				return fmt.Errorf("aggregate: closing window: %w", err)
			}
		}
	}
	return nil
}

// regroup groups the cells at lattice level level, sorted by values.
func (a *closer) regroup(cells []*cell, level int) []*group {
	if level == 0 {
		gs := make([]*group, len(cells))
		for i, c := range cells {
			gs[i] = &group{vals: c.vals, members: []*cell{c}, events: c.events, sum: c.sum, qsum: c.qsum}
		}
		return gs
	}
	byKey := make(map[string]*group)
	var gs []*group
	var key []byte
	for _, c := range cells {
		vals := make([]string, len(c.vals))
		key = key[:0]
		for i, v := range c.vals {
			d := a.cfg.Dims[i]
			vals[i] = d.Gen.Generalize(v, min(level, d.Gen.Levels()-1))
			key = binary.AppendUvarint(key, uint64(len(vals[i])))
			key = append(key, vals[i]...)
		}
		g := byKey[string(key)]
		if g == nil {
			g = &group{vals: vals}
			byKey[string(key)] = g
			gs = append(gs, g)
		}
		g.members = append(g.members, c)
		g.events += c.events
		g.sum += c.sum
		g.qsum += c.qsum
	}
	slices.SortFunc(gs, func(x, y *group) int { return compareVals(x.vals, y.vals) })
	return gs
}

// closeWindow computes and emits the rows of w and updates the stats.
func (a *closer) closeWindow(w *window, emit EmitFunc) error {
	if a.dp != nil && a.dp.periodEps > 0 && !a.periodAllows(w.start) {
		return a.refuseWindow(w, emit)
	}
	noise := a.dp
	if a.dp != nil {
		// One person may appear under one pseudonym per identity domain (a
		// key rotation), and contribution bounding counts pseudonyms: with
		// D domains in the window a person contributes up to D times the
		// bounds. The noise and the selection threshold of such a window
		// are those of D times the bounds, so a rotated person's loss stays
		// epsilon. A window whose D scales the bounds past what DP allows
		// is refused (counted in WindowsRefused, nothing released), never a
		// stall: retrying it would fail the same way.
		var err error
		if noise, err = a.dpFor(windowDomains(w)); err != nil {
			return a.refuseWindow(w, emit)
		}
		if err := a.chargeWindow(); err != nil {
			return err
		}
		if a.dp.periodEps > 0 {
			a.ledger = append(a.ledger, LedgerEntry{Start: w.start, Epsilon: a.dp.perWindow.Epsilon})
		}
	}
	pending := make([]*cell, 0, len(w.cells))
	for _, c := range w.cells {
		pending = append(pending, c)
	}
	slices.SortFunc(pending, func(x, y *cell) int { return compareVals(x.vals, y.vals) })

	k := int64(a.cfg.K)
	var rel []released
	for level := 0; level < a.levels && len(pending) > 0; level++ {
		var next []*cell
		for _, g := range a.regroup(pending, level) {
			n := a.distinct(g.members)
			row := Row{Level: level, Values: g.vals, MarginDim: -1, Events: g.events, Subjects: n, Sum: g.sum}
			ok := n >= k
			if ok && a.dp != nil {
				row.Noisy = true
				row.Subjects = noise.subj.Noise(n)
				ok = row.Subjects >= noise.threshold
				if ok {
					row.Events = noise.ev.Noise(g.events)
					row.Sum = 0
					if noise.sum != nil {
						row.Sum = float64(noise.sum.Noise(g.qsum)) * a.dp.unit
					}
				}
			}
			if ok {
				rel = append(rel, released{row: row, members: g.members})
				a.stats.RowsReleased[level]++
				if a.stats.MinReleasedSubjects == 0 || n < a.stats.MinReleasedSubjects {
					a.stats.MinReleasedSubjects = n
				}
				continue
			}
			if level == 0 {
				a.stats.CellsSuppressed++
				a.stats.EventsSuppressedL0 += g.events
			}
			next = append(next, g.members...)
		}
		pending = next // deterministic: groups and their members are in sorted order
	}
	for _, c := range pending {
		a.stats.EventsSuppressedFinal += c.events
	}

	rows := make([]Row, 0, len(rel)+1)
	for _, r := range rel {
		rows = append(rows, r.row)
	}
	if len(rel) > 0 {
		rows = a.appendMargins(rows, rel)
	}
	a.stats.WindowsClosed++
	if a.dp != nil {
		a.acct.CloseWindow()
		s := a.acct.Spent()
		a.stats.EpsilonSpent, a.stats.DeltaSpent = s.Total.Epsilon, s.Total.Delta
	}
	if emit != nil {
		emit(ClosedWindow{Start: w.start, End: w.end, Rows: rows})
	}
	return nil
}

// periodAllows reports whether releasing the window that starts at start
// keeps the period budget: the windows released in the Period before it
// (by event time, so replays and restarts decide alike) plus its own
// epsilon stay within DPConfig.PeriodEpsilon. It prunes ledger entries
// older than the period.
func (a *closer) periodAllows(start int64) bool {
	from := start - a.dp.periodMs
	keep := a.ledger[:0]
	spent := 0.0
	for _, e := range a.ledger {
		if e.Start > from {
			keep = append(keep, e)
			spent += e.Epsilon
		}
	}
	clear(a.ledger[len(keep):])
	a.ledger = keep
	return spent+a.dp.perWindow.Epsilon <= a.dp.periodEps*(1+1e-9)
}

// refuseWindow closes a window without releasing anything: the period
// budget is spent. Its cells and events count as suppressed, and the
// window as refused; nothing is charged.
func (a *closer) refuseWindow(w *window, emit EmitFunc) error {
	for _, c := range w.cells {
		a.stats.CellsSuppressed++
		a.stats.EventsSuppressedL0 += c.events
		a.stats.EventsSuppressedFinal += c.events
	}
	a.stats.WindowsClosed++
	a.stats.WindowsRefused++
	if emit != nil {
		emit(ClosedWindow{Start: w.start, End: w.end})
	}
	return nil
}

// windowDomains returns the number of identity domains among a window's
// subjects (1 for an empty window). Every subject of a window is in one of
// its cells (contribution bounding admits a subject with its first cell).
func windowDomains(w *window) int {
	seen := map[uint64]bool{}
	for _, c := range w.cells {
		for s := range c.subj {
			seen[s>>(64-DomainBits)] = true
		}
	}
	return max(1, len(seen))
}

// dpFor returns the DP mechanisms for a window with d identity domains:
// the configured ones for d = 1, otherwise ones whose sensitivities and
// selection threshold are those of d times the contribution bounds
// (bounding itself still applies per pseudonym).
func (a *closer) dpFor(d int) (*dpPlan, error) {
	if d <= 1 {
		return a.dp, nil
	}
	if p, ok := a.scaled[d]; ok {
		return p, nil
	}
	c := *a.cfg.DP
	c.MaxCellsPerSubject = a.dp.l0 * d
	c.MaxEventsPerCell = a.dp.linf
	p, err := newDPPlan(&c, a.levels)
	if err != nil {
		return nil, fmt.Errorf("aggregate: DP for %d identity domains: %w", d, err)
	}
	if a.scaled == nil {
		a.scaled = map[int]*dpPlan{}
	}
	a.scaled[d] = p
	return p, nil
}

// marginAcc accumulates one margin row.
type marginAcc struct {
	row Row
}

func (m *marginAcc) add(r *released) {
	m.row.Events = satAdd(m.row.Events, r.row.Events)
	m.row.Sum += r.row.Sum
	// A margin's subjects are the sum of its released rows' subjects: an
	// upper bound of its people (a person in two rows counts twice) that
	// the rows already tell. The exact union would not be: the union minus
	// a row is the number of people in the other rows but not that one, a
	// group that can be smaller than k (issue 11: rows of 15 and 19 under
	// a union of 23 showed that 4 and 8 people did one thing and not the
	// other).
	m.row.Subjects = satAdd(m.row.Subjects, r.row.Subjects)
}

// appendMargins appends the margins of the released rows rel: the grand
// total, then per dimension one row per value as it appears in rel.
func (a *closer) appendMargins(rows []Row, rel []released) []Row {
	noisy := a.dp != nil
	star := func() []string {
		v := make([]string, len(a.cfg.Dims))
		for i := range v {
			v[i] = Star
		}
		return v
	}
	finish := func(m *marginAcc) Row {
		a.stats.MarginRows++
		return m.row
	}
	total := marginAcc{row: Row{Level: -1, Values: star(), Margin: true, MarginDim: -1, Noisy: noisy}}
	for i := range rel {
		total.add(&rel[i])
	}
	rows = append(rows, finish(&total))

	type dimKey struct {
		level int
		value string
	}
	for d := range a.cfg.Dims {
		top := a.cfg.Dims[d].Gen.Levels() - 1
		byVal := make(map[dimKey]*marginAcc)
		var keys []dimKey
		for i := range rel {
			r := &rel[i]
			k := dimKey{min(r.row.Level, top), r.row.Values[d]}
			m := byVal[k]
			if m == nil {
				vals := star()
				vals[d] = k.value
				m = &marginAcc{row: Row{Level: k.level, Values: vals, Margin: true, MarginDim: d, Noisy: noisy}}
				byVal[k] = m
				keys = append(keys, k)
			}
			m.add(r)
		}
		slices.SortFunc(keys, func(x, y dimKey) int {
			if x.level != y.level {
				return x.level - y.level
			}
			return strings.Compare(x.value, y.value)
		})
		for _, k := range keys {
			rows = append(rows, finish(byVal[k]))
		}
	}
	return rows
}

// satAdd adds without overflowing.
func satAdd(x, y int64) int64 {
	s := x + y
	switch {
	case y > 0 && s < x:
		return math.MaxInt64
	case y < 0 && s > x:
		return math.MinInt64
	}
	return s
}
