package eval

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeAgeHierarchy(t *testing.T, dir string) {
	t.Helper()
	var b strings.Builder
	for a := 1; a <= 100; a++ {
		fmt.Fprintf(&b, "%d;%d-%d;%d-%d;*\n", a, a/5*5, a/5*5+4, a/10*10, a/10*10+9)
	}
	if err := os.WriteFile(filepath.Join(dir, "adult_hierarchy_age.csv"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRunReportsEveryK(t *testing.T) {
	dir := writeFixture(t, 3000, nil)
	writeAgeHierarchy(t, dir)
	rep, err := Run(dir, Options{Ks: []int{5, 25}, Delta: 500, Windows: []int{0, 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 3000 || len(rep.Results) != 2 || len(rep.QIs) != 10 {
		t.Fatalf("report: %+v", rep)
	}
	ds, err := LoadAdult(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Castle.MaxDelay > 500 || r.Castle.InfoLoss <= 0 || r.Castle.InfoLoss > 1 {
			t.Errorf("k=%d castle figures out of range: %+v", r.K, r.Castle)
		}
		// Independent recount of the whole-file share at level 0: records in
		// (age, sex, race, marital-status) cells of fewer than k rows (one
		// subject per row).
		cells := map[string]int{}
		key := func(rec Record) string {
			return fmt.Sprint(rec.Num[Age], ds.Hierarchies[Sex].Label(rec.Cat[Sex]), ds.Hierarchies[Race].Label(rec.Cat[Race]),
				ds.Hierarchies[MaritalStatus].Label(rec.Cat[MaritalStatus]))
		}
		for _, rec := range ds.Records {
			cells[key(rec)]++
		}
		small := 0
		for _, rec := range ds.Records {
			if cells[key(rec)] < r.K {
				small++
			}
		}
		want := float64(small) / float64(len(ds.Records))
		if got := r.Aggregates.Shares[0].SuppressedL0; got != want {
			t.Errorf("k=%d: suppressed share %v, independent recount %v", r.K, got, want)
		}
		if r.Aggregates.Shares[0].SuppressedRollup > r.Aggregates.Shares[0].SuppressedL0 {
			t.Errorf("k=%d: roll-up suppressed more than level 0", r.K)
		}
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	if _, err := Run(filepath.Join(t.TempDir(), "missing"), Options{}); err == nil {
		t.Error("a missing directory was accepted")
	}
	dir := writeFixture(t, 100, nil)
	writeAgeHierarchy(t, dir)
	if _, err := Run(dir, Options{Ks: []int{1}}); err == nil {
		t.Error("k=1 was accepted")
	}
	if _, err := Run(dir, Options{Dims: []string{"nope"}}); err == nil {
		t.Error("an unknown dimension was accepted")
	}
}
