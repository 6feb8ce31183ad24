package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/dp"
)

// benchEvents returns n events over 1000 cells and 20000 subjects.
func benchEvents(n int) []Event {
	cityVals := make([]string, 100)
	for i := range cityVals {
		cityVals[i] = fmt.Sprintf("C%02d%d", i/10, i%10)
	}
	ageVals := []string{"10", "20", "30", "40", "50", "60", "70", "80", "90", "95"}
	evs := make([]Event, n)
	x := uint64(12345)
	for i := range evs {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		evs[i] = Event{Time: int64(i), Subject: x % 20000, Dims: []string{cityVals[x%100], ageVals[(x>>8)%10]},
			Amount: float64(x % 1000), HasAmount: true, Ref: int64(i)}
	}
	return evs
}

func BenchmarkAdd(b *testing.B) {
	evs := benchEvents(1 << 16)
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		// One huge window: steady-state Add without closing.
		{"steady", Config{Window: 1000 * time.Hour, Dims: testDims, Rollup: true}},
		// Windows of 10k events closing with roll-up and margins.
		{"closing", Config{Window: 10 * time.Second, Dims: testDims, Rollup: true}},
		{"steady_dp", Config{Window: 1000 * time.Hour, Dims: testDims, Rollup: true,
			DP: &DPConfig{Epsilon: 1, Delta: 1e-6, MaxCellsPerSubject: 3, MaxEventsPerCell: 5, MaxAmount: 500, Source: dp.NewSeededSource(1)}}},
		{"closing_dp", Config{Window: 10 * time.Second, Dims: testDims, Rollup: true,
			DP: &DPConfig{Epsilon: 1, Delta: 1e-6, MaxCellsPerSubject: 3, MaxEventsPerCell: 5, MaxAmount: 500}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := mustNew(b, bc.cfg)
			// Warm up: the cells and subjects exist (steady state).
			for _, e := range evs {
				if _, err := a.Add(e, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i, base := 0, int64(len(evs))
			for b.Loop() {
				e := evs[i]
				e.Time += base
				e.Ref += base
				if _, err := a.Add(e, nil); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(evs) {
					i, base = 0, base+int64(len(evs))
				}
			}
		})
	}
}
