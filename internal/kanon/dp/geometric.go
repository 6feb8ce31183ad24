package dp

import (
	"errors"
	"fmt"
	"math"
)

// maxGeometric bounds one geometric draw so that the difference of two
// draws and its sum with a count cannot overflow int64. It is reached
// only when alpha is extremely close to 1.
const maxGeometric = 1 << 61

// Geometric is the two-sided geometric mechanism (discrete Laplace) for a
// given epsilon and L1 sensitivity. It is not safe for concurrent use
// unless its source is.
type Geometric struct {
	lnAlpha float64 // ln alpha = -epsilon/sensitivity (< 0)
	alpha   float64
	src     Source
}

// NewGeometric returns the mechanism with alpha = exp(-epsilon/sensitivity)
// drawing from src ([CryptoSource] when src is nil). epsilon and
// sensitivity must be positive and finite.
func NewGeometric(epsilon, sensitivity float64, src Source) (*Geometric, error) {
	if !(epsilon > 0) || math.IsInf(epsilon, 0) {
		return nil, errors.New("dp: epsilon must be positive and finite")
	}
	if !(sensitivity > 0) || math.IsInf(sensitivity, 0) {
		return nil, errors.New("dp: sensitivity must be positive and finite")
	}
	if src == nil {
		src = CryptoSource{}
	}
	ln := -epsilon / sensitivity
	return &Geometric{lnAlpha: ln, alpha: math.Exp(ln), src: src}, nil
}

// Alpha returns alpha = exp(-epsilon/sensitivity).
func (g *Geometric) Alpha() float64 { return g.alpha }

// Variance returns the variance of the noise, 2 alpha / (1-alpha)^2.
func (g *Geometric) Variance() float64 {
	return 2 * g.alpha / ((1 - g.alpha) * (1 - g.alpha))
}

// Sample draws one noise value Z with P(Z = z) ∝ alpha^|z|.
func (g *Geometric) Sample() int64 {
	return g.oneSided() - g.oneSided()
}

// Noise returns v + Z, saturating instead of overflowing.
func (g *Geometric) Noise(v int64) int64 {
	z := g.Sample()
	s := v + z
	switch {
	case z > 0 && s < v:
		return math.MaxInt64
	case z < 0 && s > v:
		return math.MinInt64
	}
	return s
}

// oneSided draws G with P(G = k) = (1-alpha) alpha^k by inverse CDF.
func (g *Geometric) oneSided() int64 {
	if g.alpha == 0 { // epsilon/sensitivity so large that exp underflows
		return 0
	}
	r := math.Floor(math.Log(uniform(g.src)) / g.lnAlpha)
	if !(r < maxGeometric) {
		return maxGeometric
	}
	return int64(r)
}

// TailProbability returns P(Z >= m) = alpha^m / (1+alpha) for m >= 0 (and
// 1 - P(Z >= 1-m) for m < 0, by symmetry).
func (g *Geometric) TailProbability(m int64) float64 {
	if m < 0 {
		return 1 - math.Exp(float64(1-m)*g.lnAlpha)/(1+g.alpha)
	}
	return math.Exp(float64(m)*g.lnAlpha) / (1 + g.alpha)
}

// SelectionThreshold returns the smallest T such that a cell with a true
// count of 1, noised by the geometric mechanism with the given epsilon and
// sensitivity l0, satisfies P(1 + Z >= T) <= delta/l0 (see the package
// documentation for the formula). epsilon must be positive and finite,
// delta in (0, 1) and l0 >= 1.
func SelectionThreshold(epsilon, delta float64, l0 int) (int64, error) {
	if !(delta > 0 && delta < 1) {
		return 0, errors.New("dp: delta must be in (0, 1)")
	}
	if l0 < 1 {
		return 0, errors.New("dp: L0 must be at least 1")
	}
	g, err := NewGeometric(epsilon, float64(l0), nil)
	if err != nil {
		return 0, fmt.Errorf("dp: selection threshold: %w", err)
	}
	if g.alpha == 0 {
		return 1, nil // no noise: a count of 1 is only ever reported as 1
	}
	target := math.Log(delta / float64(l0)) // compare in log space
	logTail := func(m float64) float64 { return m*g.lnAlpha - math.Log1p(g.alpha) }
	m := math.Ceil((target + math.Log1p(g.alpha)) / g.lnAlpha)
	if m < 0 || math.IsNaN(m) {
		m = 0
	}
	if m > maxGeometric {
		return 0, errors.New("dp: selection threshold out of range")
	}
	// Correct float rounding so that m is exactly the smallest solution.
	for logTail(m) > target {
		m++
	}
	for m > 0 && logTail(m-1) <= target {
		m--
	}
	return 1 + int64(m), nil
}
