package dp

import (
	"math"
	"testing"
)

func TestGeometricDistribution(t *testing.T) {
	for _, tc := range []struct{ eps, sens float64 }{{1, 1}, {0.5, 1}, {1, 3}, {2, 1}} {
		g, err := NewGeometric(tc.eps, tc.sens, NewSeededSource(42))
		if err != nil {
			t.Fatal(err)
		}
		a := g.Alpha()
		if want := math.Exp(-tc.eps / tc.sens); math.Abs(a-want) > 1e-15 {
			t.Fatalf("alpha %v, want %v", a, want)
		}
		const n = 400000
		counts := map[int64]int{}
		var sum, sumSq float64
		for range n {
			z := g.Sample()
			counts[z]++
			sum += float64(z)
			sumSq += float64(z) * float64(z)
		}
		mean := sum / n
		variance := sumSq/n - mean*mean
		wantVar := 2 * a / ((1 - a) * (1 - a))
		if math.Abs(wantVar-g.Variance()) > 1e-9*wantVar {
			t.Fatalf("Variance() %v, want %v", g.Variance(), wantVar)
		}
		sd := math.Sqrt(wantVar)
		if math.Abs(mean) > 5*sd/math.Sqrt(n) {
			t.Errorf("eps=%v sens=%v: mean %v too far from 0", tc.eps, tc.sens, mean)
		}
		if math.Abs(variance-wantVar)/wantVar > 0.03 {
			t.Errorf("eps=%v sens=%v: variance %v, want %v", tc.eps, tc.sens, variance, wantVar)
		}
		// PMF and symmetry for small |z|: P(Z=z) = (1-a)/(1+a) a^|z|.
		for z := int64(-3); z <= 3; z++ {
			p := (1 - a) / (1 + a) * math.Pow(a, math.Abs(float64(z)))
			got := float64(counts[z]) / n
			se := math.Sqrt(p * (1 - p) / n)
			if math.Abs(got-p) > 5*se {
				t.Errorf("eps=%v sens=%v: P(Z=%d)=%v, want %v", tc.eps, tc.sens, z, got, p)
			}
		}
		for z := int64(1); z <= 3; z++ {
			c1, c2 := float64(counts[z]), float64(counts[-z])
			if math.Abs(c1-c2) > 5*math.Sqrt(c1+c2) {
				t.Errorf("eps=%v: asymmetric at %d: %v vs %v", tc.eps, z, c1, c2)
			}
		}
	}
}

func TestGeometricDeterministic(t *testing.T) {
	g1, _ := NewGeometric(1, 1, NewSeededSource(7))
	g2, _ := NewGeometric(1, 1, NewSeededSource(7))
	for range 1000 {
		if g1.Sample() != g2.Sample() {
			t.Fatal("seeded sources diverge")
		}
	}
}

func TestGeometricCrypto(t *testing.T) {
	g, err := NewGeometric(1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	nonZero := 0
	for range 1000 {
		if g.Sample() != 0 {
			nonZero++
		}
	}
	if nonZero == 0 {
		t.Fatal("crypto source gives no noise")
	}
}

func TestGeometricExtremes(t *testing.T) {
	g, err := NewGeometric(1e6, 1, NewSeededSource(1)) // alpha underflows to 0
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if z := g.Sample(); z != 0 {
			t.Fatalf("noise %d with alpha 0", z)
		}
	}
	g, _ = NewGeometric(1e-300, 1, NewSeededSource(1)) // alpha ~ 1
	for range 100 {
		if z := g.Sample(); z > maxGeometric || z < -maxGeometric {
			t.Fatalf("noise %d out of range", z)
		}
	}
	if v := g.Noise(math.MaxInt64); v < 0 {
		t.Fatalf("Noise overflowed: %d", v)
	}
	for _, tc := range []struct{ eps, sens float64 }{{0, 1}, {-1, 1}, {math.Inf(1), 1}, {math.NaN(), 1}, {1, 0}, {1, math.NaN()}} {
		if _, err := NewGeometric(tc.eps, tc.sens, nil); err == nil {
			t.Errorf("NewGeometric(%v, %v) accepted", tc.eps, tc.sens)
		}
	}
}

func TestTailProbability(t *testing.T) {
	g, _ := NewGeometric(0.7, 1, nil)
	a := g.Alpha()
	pmf := func(z int64) float64 { return (1 - a) / (1 + a) * math.Pow(a, math.Abs(float64(z))) }
	for _, m := range []int64{-5, -1, 0, 1, 4} {
		var want float64
		for z := m; z < m+2000; z++ {
			want += pmf(z)
		}
		if got := g.TailProbability(m); math.Abs(got-want) > 1e-12 {
			t.Errorf("P(Z>=%d)=%v, want %v", m, got, want)
		}
	}
}

func TestSelectionThreshold(t *testing.T) {
	for _, tc := range []struct {
		eps, delta float64
		l0         int
	}{{1, 1e-5, 1}, {0.1, 1e-6, 1}, {1, 1e-5, 3}, {0.5, 1e-9, 10}, {3, 0.4, 1}, {50, 1e-5, 1}} {
		T, err := SelectionThreshold(tc.eps, tc.delta, tc.l0)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := NewGeometric(tc.eps, float64(tc.l0), nil)
		bound := tc.delta / float64(tc.l0)
		// P(1+Z >= T) = P(Z >= T-1) <= delta/L0, and T-1 would not do.
		if p := g.TailProbability(T - 1); p > bound*(1+1e-12) {
			t.Errorf("%+v: T=%d releases with probability %v > %v", tc, T, p, bound)
		}
		if T > 1 {
			if p := g.TailProbability(T - 2); p <= bound {
				t.Errorf("%+v: T=%d is not minimal (%v)", tc, T, p)
			}
		}
		// Formula from the package documentation.
		a := g.Alpha()
		f := 1 + math.Max(0, math.Ceil(math.Log(float64(tc.l0)/(tc.delta*(1+a)))/(tc.eps/float64(tc.l0))))
		if math.Abs(f-float64(T)) > 1 {
			t.Errorf("%+v: T=%d, formula %v", tc, T, f)
		}
	}
	// Empirical check with a generous delta.
	T, _ := SelectionThreshold(1, 0.05, 1)
	g, _ := NewGeometric(1, 1, NewSeededSource(3))
	hits := 0
	const n = 200000
	for range n {
		if g.Noise(1) >= T {
			hits++
		}
	}
	if p := float64(hits) / n; p > 0.05+5*math.Sqrt(0.05*0.95/n) {
		t.Errorf("empirical release rate %v > delta", p)
	}
	for _, bad := range []struct {
		eps, delta float64
		l0         int
	}{{1, 0, 1}, {1, 1, 1}, {0, 0.1, 1}, {1, 0.1, 0}, {1, math.NaN(), 1}} {
		if _, err := SelectionThreshold(bad.eps, bad.delta, bad.l0); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestAccountant(t *testing.T) {
	per := Budget{Epsilon: 1, Delta: 1e-5}
	a, err := NewAccountant(per)
	if err != nil {
		t.Fatal(err)
	}
	share, err := per.Split(3, 7)
	if err != nil {
		t.Fatal(err)
	}
	for w := range 5 {
		for range 7 {
			for m := range 3 {
				c := Budget{Epsilon: share.Epsilon}
				if m == 0 {
					c.Delta = share.Delta
				}
				if err := a.Charge(c); err != nil {
					t.Fatalf("window %d: %v", w, err)
				}
			}
		}
		if err := a.Charge(Budget{Epsilon: 1e-3}); err == nil {
			t.Fatal("overspend accepted")
		}
		a.CloseWindow()
	}
	s := a.Spent()
	if s.Windows != 5 || math.Abs(s.Total.Epsilon-5) > 1e-9 || math.Abs(s.Total.Delta-5e-5) > 1e-15 || s.Current != (Budget{}) {
		t.Fatalf("spent %+v", s)
	}
	b, _ := NewAccountant(per)
	if err := b.Restore(s.Windows, s.Total); err != nil {
		t.Fatal(err)
	}
	if b.Spent() != s {
		t.Fatalf("restored %+v, want %+v", b.Spent(), s)
	}
	if err := b.Restore(-1, Budget{}); err == nil {
		t.Fatal("negative windows accepted")
	}
	if _, err := NewAccountant(Budget{}); err == nil {
		t.Fatal("zero budget accepted")
	}
	if _, err := per.Split(0, 1); err == nil {
		t.Fatal("zero measures accepted")
	}
}
