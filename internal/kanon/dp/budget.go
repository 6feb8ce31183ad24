package dp

import (
	"errors"
	"fmt"
	"math"
)

// budgetSlack is the relative tolerance for float rounding when charges
// that split a budget are added back up.
const budgetSlack = 1e-9

// Budget is an (epsilon, delta) privacy budget.
type Budget struct {
	// Epsilon is the privacy-loss bound (> 0).
	Epsilon float64
	// Delta is the probability of exceeding it (in [0, 1)).
	Delta float64
}

// Validate reports whether b is a usable budget.
func (b Budget) Validate() error {
	if !(b.Epsilon > 0) || math.IsInf(b.Epsilon, 0) {
		return errors.New("dp: budget epsilon must be positive and finite")
	}
	if !(b.Delta >= 0 && b.Delta < 1) {
		return errors.New("dp: budget delta must be in [0, 1)")
	}
	return nil
}

// Split divides a per-window budget among the noisy queries of one window
// under sequential composition: measures noisy measures at each of levels
// roll-up levels. Every (measure, level) query gets epsilon/(measures *
// levels); the delta is spent only by row selection, once per level, so
// each level gets delta/levels.
func (b Budget) Split(measures, levels int) (perQuery Budget, err error) {
	if err := b.Validate(); err != nil {
		return Budget{}, err
	}
	if measures < 1 || levels < 1 {
		return Budget{}, errors.New("dp: split needs at least one measure and one level")
	}
	return Budget{
		Epsilon: b.Epsilon / float64(measures*levels),
		Delta:   b.Delta / float64(levels),
	}, nil
}

// Spent is what an [Accountant] has charged.
type Spent struct {
	// PerWindow is the budget of one window.
	PerWindow Budget
	// Windows is the number of completed windows.
	Windows int64
	// Current is what the window in progress has spent so far.
	Current Budget
	// Total is the sum over completed windows: the worst-case loss of a
	// subject present in every one of them (a subject present in W
	// windows spends W * PerWindow).
	Total Budget
}

// Accountant charges noisy queries against a per-window budget (basic
// sequential composition within a window, summed over windows for a
// subject present in several). It is not safe for concurrent use.
type Accountant struct {
	perWindow Budget
	current   Budget
	total     Budget
	windows   int64
}

// NewAccountant returns an accountant with the given budget per window.
func NewAccountant(perWindow Budget) (*Accountant, error) {
	if err := perWindow.Validate(); err != nil {
		return nil, fmt.Errorf("dp: accountant: %w", err)
	}
	return &Accountant{perWindow: perWindow}, nil
}

// Charge records a query of cost c in the current window. It fails,
// recording nothing, if the window's budget would be exceeded.
func (a *Accountant) Charge(c Budget) error {
	if !(c.Epsilon >= 0) || !(c.Delta >= 0) || math.IsInf(c.Epsilon, 0) {
		return errors.New("dp: charge must be non-negative and finite")
	}
	eps, delta := a.current.Epsilon+c.Epsilon, a.current.Delta+c.Delta
	if eps > a.perWindow.Epsilon*(1+budgetSlack) || delta > a.perWindow.Delta*(1+budgetSlack) {
		return errors.New("dp: window budget exceeded")
	}
	a.current = Budget{Epsilon: eps, Delta: delta}
	return nil
}

// CloseWindow completes the current window: its charges are added to the
// total and the next window starts with nothing spent.
func (a *Accountant) CloseWindow() {
	a.total.Epsilon += a.current.Epsilon
	a.total.Delta += a.current.Delta
	a.windows++
	a.current = Budget{}
}

// Spent returns what has been charged.
func (a *Accountant) Spent() Spent {
	return Spent{PerWindow: a.perWindow, Windows: a.windows, Current: a.current, Total: a.total}
}

// Restore sets the completed windows and their total, e.g. from a
// checkpoint; the current window starts empty.
func (a *Accountant) Restore(windows int64, total Budget) error {
	if windows < 0 || !(total.Epsilon >= 0) || !(total.Delta >= 0) ||
		math.IsInf(total.Epsilon, 0) || math.IsInf(total.Delta, 0) {
		return errors.New("dp: invalid accountant state")
	}
	a.windows, a.total, a.current = windows, total, Budget{}
	return nil
}
