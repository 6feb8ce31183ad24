package aggregate

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/dp"
)

// DefaultK is the number of distinct subjects a released row must cover
// when [Config].K is 0.
const DefaultK = 11

// maxDuration bounds Window and AllowedLateness (100 years) so that window
// arithmetic on event times in [minTime, maxTime] cannot overflow.
const maxDuration = 100 * 365 * 24 * time.Hour

// Event times must lie in [minTime, maxTime] (unix ms); that is hundreds
// of millions of years either side of 1970.
const (
	minTime = math.MinInt64 / 4
	maxTime = math.MaxInt64 / 4
)

// Generalizer generalises the values of one dimension. Level 0 is the
// value as is; level Levels()-1 is the top, "*".
type Generalizer interface {
	// Levels returns the number of levels (at least 1).
	Levels() int
	// Generalize returns value generalised to level (0 <= level < Levels()).
	Generalize(value string, level int) string
}

// Dim is one dimension of the aggregates.
type Dim struct {
	// Name names the dimension.
	Name string
	// Gen generalises its values.
	Gen Generalizer
}

// DPConfig turns on differential privacy (see the package documentation
// for the mechanism, sensitivities and the budget split).
type DPConfig struct {
	// Epsilon is the privacy budget of one window (> 0).
	Epsilon float64
	// Delta is the probability budget of row selection per window, in
	// (0, 1).
	Delta float64
	// MaxCellsPerSubject (L0) bounds the level-0 cells a subject counts in
	// per window; 0 means 1.
	MaxCellsPerSubject int
	// MaxEventsPerCell (Linf) bounds the events a subject counts with in
	// one cell per window; 0 means 1.
	MaxEventsPerCell int
	// MaxAmount clamps each amount to [-MaxAmount, MaxAmount]. 0 disables
	// the sum measure (released sums are 0 and the budget is split among
	// events and subjects only).
	MaxAmount float64
	// AmountUnit is the granularity of noisy sums: clamped amounts are
	// rounded to multiples of it and noise is added in these units; 0
	// means 1.
	AmountUnit float64
	// Source supplies the randomness; nil means crypto/rand. Inject a
	// deterministic source only in tests.
	Source dp.Source
	// PeriodEpsilon caps the budget a subject may spend in any Period of
	// event time (a lifetime budget per period): a subject present in
	// every window of a period spends the sum of their epsilons, so once
	// the windows already released in the Period before a window (kept in
	// a ledger in the checkpointed state) and the window's own epsilon
	// exceed it, the window is refused: none of its rows is published, and
	// it is counted (Stats.WindowsRefused). 0 disables the cap.
	PeriodEpsilon float64
	// Period is the span of the budget (default 30 days when
	// PeriodEpsilon > 0).
	Period time.Duration
}

// Config configures an [Aggregator].
type Config struct {
	// K is the minimum number of distinct subjects per released row; 0
	// means DefaultK.
	K int
	// Window is the tumbling window size (at least 1ms, whole
	// milliseconds).
	Window time.Duration
	// AllowedLateness keeps a window open that long past its end.
	AllowedLateness time.Duration
	// Dims are the dimensions, in the order of [Event].Dims.
	Dims []Dim
	// Rollup regroups suppressed cells at coarser levels.
	Rollup bool
	// DP, when not nil, turns on differential privacy.
	DP *DPConfig
	// Partials makes an [Aggregator] the first stage of a two-stage
	// release: a closing window is not released but handed to the
	// EmitFunc as its level-0 contributions ([ClosedWindow].Cells), after
	// contribution bounding, for a [Merger] that sees every shard to
	// release. A [Merger] ignores it.
	Partials bool
}

// dpPlan is a validated DPConfig with its derived parameters.
type dpPlan struct {
	l0, linf      int
	maxAmount     float64
	unit          float64
	measures      int
	share         dp.Budget // per (measure, level)
	threshold     int64
	subj, ev, sum *dp.Geometric
	perWindow     dp.Budget
	periodEps     float64 // 0: no period budget
	periodMs      int64
}

// normalize validates cfg and fills in defaults. levels is the number of
// lattice levels the aggregator walks.
func (cfg Config) normalize() (Config, int, error) {
	if cfg.K == 0 {
		cfg.K = DefaultK
	}
	if cfg.K < 1 {
		return cfg, 0, errors.New("aggregate: K must be at least 1")
	}
	if cfg.Window < time.Millisecond || cfg.Window > maxDuration || cfg.Window%time.Millisecond != 0 {
		return cfg, 0, errors.New("aggregate: window must be a whole number of milliseconds between 1ms and 100 years")
	}
	if cfg.AllowedLateness < 0 || cfg.AllowedLateness > maxDuration {
		return cfg, 0, errors.New("aggregate: allowed lateness must be between 0 and 100 years")
	}
	top := 0
	dims := make([]Dim, len(cfg.Dims))
	for i, d := range cfg.Dims {
		if d.Gen == nil {
			return cfg, 0, fmt.Errorf("aggregate: dimension %d has no generalizer", i)
		}
		n := d.Gen.Levels()
		if n < 1 || n > 1<<16 {
			return cfg, 0, fmt.Errorf("aggregate: dimension %d: levels must be between 1 and 65536", i)
		}
		top = max(top, n-1)
		dims[i] = d
	}
	cfg.Dims = dims
	levels := 1
	if cfg.Rollup {
		levels = top + 1
	}
	if cfg.DP != nil {
		c := *cfg.DP
		cfg.DP = &c
	}
	return cfg, levels, nil
}

// newDPPlan validates c and derives the mechanisms for levels levels.
func newDPPlan(c *DPConfig, levels int) (*dpPlan, error) {
	p := &dpPlan{l0: c.MaxCellsPerSubject, linf: c.MaxEventsPerCell, maxAmount: c.MaxAmount, unit: c.AmountUnit}
	if p.l0 == 0 {
		p.l0 = 1
	}
	if p.linf == 0 {
		p.linf = 1
	}
	if p.unit == 0 {
		p.unit = 1
	}
	if p.l0 < 1 || p.linf < 1 || p.l0 > 1<<20 || p.linf > 1<<20 {
		return nil, errors.New("aggregate: DP contribution bounds must be between 1 and 2^20")
	}
	if !(p.maxAmount >= 0) || math.IsInf(p.maxAmount, 0) || !(p.unit > 0) || math.IsInf(p.unit, 0) {
		return nil, errors.New("aggregate: DP max amount must be >= 0 and amount unit > 0, both finite")
	}
	if !(c.Delta > 0) {
		return nil, errors.New("aggregate: DP delta must be in (0, 1)")
	}
	p.perWindow = dp.Budget{Epsilon: c.Epsilon, Delta: c.Delta}
	if c.PeriodEpsilon < 0 || math.IsNaN(c.PeriodEpsilon) || math.IsInf(c.PeriodEpsilon, 0) || c.Period < 0 {
		return nil, errors.New("aggregate: DP period budget must be >= 0 and finite, and the period not negative")
	}
	if c.PeriodEpsilon > 0 {
		if c.PeriodEpsilon < c.Epsilon {
			return nil, errors.New("aggregate: DP period budget is smaller than one window's: no window could ever be released")
		}
		p.periodEps, p.periodMs = c.PeriodEpsilon, c.Period.Milliseconds()
		if p.periodMs == 0 {
			p.periodMs = (30 * 24 * time.Hour).Milliseconds()
		}
	}
	p.measures = 2
	if p.maxAmount > 0 {
		p.measures = 3
	}
	var err error
	if p.share, err = p.perWindow.Split(p.measures, levels); err != nil {
		return nil, fmt.Errorf("aggregate: DP budget: %w", err)
	}
	if p.threshold, err = dp.SelectionThreshold(p.share.Epsilon, p.share.Delta, p.l0); err != nil {
		return nil, fmt.Errorf("aggregate: DP threshold: %w", err)
	}
	src := c.Source
	if src == nil {
		src = dp.CryptoSource{}
	}
	l0, linf := float64(p.l0), float64(p.linf)
	if p.subj, err = dp.NewGeometric(p.share.Epsilon, l0, src); err != nil {
		return nil, fmt.Errorf("aggregate: DP subjects: %w", err)
	}
	if p.ev, err = dp.NewGeometric(p.share.Epsilon, l0*linf, src); err != nil {
		return nil, fmt.Errorf("aggregate: DP events: %w", err)
	}
	if p.measures == 3 {
		units := math.Ceil(p.maxAmount / p.unit)
		if units > 1<<40 {
			return nil, errors.New("aggregate: DP max amount too large for its unit")
		}
		if p.sum, err = dp.NewGeometric(p.share.Epsilon, l0*linf*units, src); err != nil {
			return nil, fmt.Errorf("aggregate: DP sum: %w", err)
		}
	}
	return p, nil
}

// quantize clamps an amount and rounds it to units.
func (p *dpPlan) quantize(a float64) int64 {
	if math.IsNaN(a) {
		return 0
	}
	a = math.Max(-p.maxAmount, math.Min(p.maxAmount, a))
	return int64(math.Round(a / p.unit))
}
