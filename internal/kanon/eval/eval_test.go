package eval

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/kanon/castle"
	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
)

// adultDir is where the tests look for the UCI Adult data: the directory
// in PIPELINE_ADULT_DIR, else ../shared/data/adult next to the repository,
// else /work/shared/data/adult (the layout of the build machines).
var adultDir = func() string {
	if d := os.Getenv("PIPELINE_ADULT_DIR"); d != "" {
		return d
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; filepath.Dir(dir) != dir; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				cand := filepath.Join(filepath.Dir(dir), "shared", "data", "adult")
				if _, err := os.Stat(cand); err == nil {
					return cand
				}
				break
			}
		}
	}
	return "/work/shared/data/adult"
}()

// writeFixture writes a small synthetic Adult-shaped data directory.
func writeFixture(t *testing.T, rows int, mutate func(i int, fields []string)) string {
	t.Helper()
	dir := t.TempDir()
	hier := map[string]string{
		"workclass":      "Private;Non-Government;*\nState-gov;Government;*\nLocal-gov;Government;*\n",
		"education":      "Bachelors;Higher;*\nHS-grad;Secondary;*\nMasters;Higher;*\n",
		"marital-status": "Married-civ-spouse;present;*\nDivorced;absent;*\nNever-married;absent;*\n",
		"occupation":     "Tech-support;Technical;*\nSales;Other;*\nCraft-repair;Technical;*\n",
		"race":           "White;*\nBlack;*\n",
		"sex":            "Male;*\nFemale;*\n",
		"native-country": "United-States;North America;*\nMexico;North America;*\nIndia;Asia;*\n",
	}
	for name, body := range hier {
		if err := os.WriteFile(filepath.Join(dir, "adult_hierarchy_"+name+".csv"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	b.WriteString(strings.Join(adultHeader, ",") + "\n")
	wc := []string{"Private", "State-gov", "Local-gov"}
	ed := []string{"Bachelors", "HS-grad", "Masters"}
	ms := []string{"Married-civ-spouse", "Divorced", "Never-married"}
	oc := []string{"Tech-support", "Sales", "Craft-repair"}
	nc := []string{"United-States", "Mexico", "India"}
	for i := range rows {
		f := []string{
			fmt.Sprint(20 + i%50), wc[i%3], fmt.Sprint(10000 + i*37%5000), ed[i%3], fmt.Sprint(9 + i%7),
			ms[i/3%3], oc[i/2%3], "Husband", []string{"White", "Black"}[i%2], []string{"Male", "Female"}[i/5%2],
			fmt.Sprint(i % 3 * 1000), "0", fmt.Sprint(30 + i%20), nc[i/7%3], []string{"<=50K", ">50K"}[i/4%2],
		}
		if mutate != nil {
			mutate(i, f)
		}
		b.WriteString(strings.Join(f, ",") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, AdultFile), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSyntheticFixture(t *testing.T) {
	dir := writeFixture(t, 600, func(i int, f []string) {
		switch {
		case i%50 == 0:
			f[6] = "?"
		case i%60 == 1:
			f[13] = "united states" // spelling differs from the hierarchy
		}
	})
	ds, err := LoadAdult(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Dropped != 12 || len(ds.Records) != 588 {
		t.Fatalf("dropped %d kept %d", ds.Dropped, len(ds.Records))
	}
	if len(ds.Aliases) != 1 || !strings.Contains(ds.Aliases[0], "united states") {
		t.Fatalf("aliases %v", ds.Aliases)
	}
	for _, numericOnly := range []bool{false, true} {
		res, err := Castle(ds, CastleOptions{K: 5, Delta: 100, Beta: 10, Seed: 1, NumericOnly: numericOnly})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("numericOnly=%v %v", numericOnly, res)
		if res.Released+res.Suppressed != res.Records || res.AvgInfoLoss <= 0 || res.AvgInfoLoss > 1 || res.MaxDelay > 100 {
			t.Fatalf("result %+v", res)
		}
		if res.AvgInfoLoss < res.AvgInfoLossReleased {
			t.Fatal("suppressed records must count as loss 1")
		}
		want := 10
		if numericOnly {
			want = 6
		}
		if len(res.QIs) != want {
			t.Fatalf("QIs %v", res.QIs)
		}
	}
	if _, err := Castle(ds, CastleOptions{K: 0, Delta: 10, Beta: 5}); err == nil {
		t.Fatal("bad K accepted")
	}
}

func TestLoadAdultErrors(t *testing.T) {
	if _, err := LoadAdult(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
	dir := writeFixture(t, 10, func(i int, f []string) {
		if i == 3 {
			f[3] = "Kindergarten"
		}
	})
	_, err := LoadAdult(dir)
	if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "line 5") || !strings.Contains(err.Error(), "Kindergarten") {
		t.Fatalf("unknown value: %v", err)
	}
	dir = writeFixture(t, 10, func(i int, f []string) {
		if i == 2 {
			f[0] = "old"
		}
	})
	if _, err := LoadAdult(dir); !errors.Is(err, ErrData) {
		t.Fatalf("bad number: %v", err)
	}
	dir = writeFixture(t, 3, nil)
	os.Remove(filepath.Join(dir, "adult_hierarchy_race.csv"))
	if _, err := LoadAdult(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing hierarchy: %v", err)
	}
}

func FuzzAdultCSV(f *testing.F) {
	f.Add([]byte(strings.Join(adultHeader, ",") + "\n39,Private,77516,Bachelors,13,Divorced,Sales,Husband,White,Male,0,0,40,India,<=50K\n"))
	f.Add([]byte(strings.Join(adultHeader, ",") + "\n?,?\n"))
	tr, _ := hierarchy.ParseARX(strings.NewReader("Private;*\nBachelors;*\nDivorced;*\nSales;*\nWhite;*\nMale;*\nIndia;*\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds := &Dataset{}
		index := make([]map[string]hierarchy.Node, numCategorical)
		for i := range ds.Hierarchies {
			ds.Hierarchies[i] = tr
			index[i] = map[string]hierarchy.Node{}
		}
		if err := ds.read(strings.NewReader(string(data)), "fuzz", index); err != nil {
			return
		}
		if len(ds.Records) == 0 {
			t.Fatal("success without records")
		}
	})
}

// paper holds the reference figures of Cao et al. read off their plots
// (delta 10,000, beta 50).
var paper = map[bool]map[int]float64{
	false: {20: 0.18, 50: 0.27, 100: 0.35, 200: 0.39},
	true:  {50: 0.13, 100: 0.175, 200: 0.245, 400: 0.325},
}

// TestAdultPaperFigures checks CASTLE on the real Adult data against the
// paper's figures (delta 10,000, beta 50). With the default split
// (castle.SplitGreedy) the average information loss (suppressed records
// counted as 1.0) must match or beat the figures read off the paper's
// plots at k = 20, 50, 100 with 10 QIs and k = 50, 100 with the 6 numeric
// QIs; the paper's own split (castle.SplitKNN) measures 10-20% above them
// and must stay within 25% (a regression check). Suppression must stay
// under 1%. Skipped only when the data is absent.
func TestAdultPaperFigures(t *testing.T) {
	if _, err := os.Stat(adultDir); err != nil {
		t.Skipf("Adult data directory %s absent (%v); the synthetic fixture test still runs", adultDir, err)
	}
	ds, err := LoadAdult(adultDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Records) != 30162 || ds.Dropped != 2399 {
		t.Fatalf("records %d dropped %d, want 30162 and 2399", len(ds.Records), ds.Dropped)
	}
	if len(ds.Aliases) > 0 {
		t.Logf("spelling differences: %v", ds.Aliases)
	}
	for _, c := range []struct {
		numericOnly bool
		k           int
		split       castle.SplitMethod
		tolerance   float64 // allowed ratio to the paper's figure
	}{
		{false, 20, castle.SplitDefault, 1},
		{false, 50, castle.SplitDefault, 1},
		{false, 100, castle.SplitDefault, 1},
		{true, 50, castle.SplitDefault, 1},
		{true, 100, castle.SplitDefault, 1},
		{false, 50, castle.SplitKNN, 1.25},
		{true, 100, castle.SplitKNN, 1.25},
	} {
		res, err := Castle(ds, CastleOptions{K: c.k, Delta: 10000, Beta: 50, Seed: 1, NumericOnly: c.numericOnly, Split: c.split})
		if err != nil {
			t.Fatal(err)
		}
		ref := paper[c.numericOnly][c.k]
		t.Logf("numericOnly=%v k=%d split=%v: %v (paper %.3f)", c.numericOnly, c.k, c.split, res, ref)
		if res.AvgInfoLoss > ref*c.tolerance {
			t.Errorf("numericOnly=%v k=%d split=%v: info loss %.4f above %.2f x the paper's %.3f", c.numericOnly, c.k, c.split, res.AvgInfoLoss, c.tolerance, ref)
		}
		if res.Suppressed*100 > res.Records {
			t.Errorf("suppressed %d of %d", res.Suppressed, res.Records)
		}
		if res.MaxDelay > 10000 {
			t.Errorf("max delay %d > delta", res.MaxDelay)
		}
	}
}

// TestAdultTable prints the full comparison table, for the default split
// (castle.SplitGreedy) and the paper's (castle.SplitKNN). It runs only
// with KANON_EVAL_TABLE=1:
//
//	KANON_EVAL_TABLE=1 go test -count=1 -run TestAdultTable -v ./internal/kanon/eval/
func TestAdultTable(t *testing.T) {
	if os.Getenv("KANON_EVAL_TABLE") != "1" {
		t.Skip("set KANON_EVAL_TABLE=1 to print the evaluation table")
	}
	ds, err := LoadAdult(adultDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%-8s %5s %8s | %8s %8s %6s %9s | %8s %8s %6s %9s", "", "", "", "greedy", "(default)", "", "", "knn", "(paper)", "", "")
	t.Logf("%-8s %5s %8s | %8s %8s %6s %9s | %8s %8s %6s %9s", "QIs", "k", "paper", "IL", "IL-rel", "supp", "rec/s", "IL", "IL-rel", "supp", "rec/s")
	for _, numericOnly := range []bool{false, true} {
		for _, k := range []int{5, 10, 20, 25, 50, 100, 200, 400} {
			if numericOnly && k == 5 {
				t.Log("")
			}
			var rs [2]CastleResult
			for i, sm := range []castle.SplitMethod{castle.SplitDefault, castle.SplitKNN} {
				rs[i], err = Castle(ds, CastleOptions{K: k, Delta: 10000, Beta: 50, Seed: 1, NumericOnly: numericOnly, Split: sm})
				if err != nil {
					t.Fatal(err)
				}
				if rs[i].MaxDelay > 10000 {
					t.Errorf("max delay %d", rs[i].MaxDelay)
				}
			}
			name := "10 QIs"
			if numericOnly {
				name = "6 num"
			}
			ref := "-"
			if v, ok := paper[numericOnly][k]; ok {
				ref = fmt.Sprintf("%.3f", v)
			}
			t.Logf("%-8s %5d %8s | %8.4f %8.4f %6d %9.0f | %8.4f %8.4f %6d %9.0f", name, k, ref,
				rs[0].AvgInfoLoss, rs[0].AvgInfoLossReleased, rs[0].Suppressed, rs[0].RecordsPerSec,
				rs[1].AvgInfoLoss, rs[1].AvgInfoLossReleased, rs[1].Suppressed, rs[1].RecordsPerSec)
		}
	}
	// Sensitivity to the choice of the 4 categorical QIs (not used to
	// pick DefaultCategorical; see its doc comment).
	for _, cs := range [][]int{
		{Education, MaritalStatus, Occupation, NativeCountry},
		{Workclass, Education, MaritalStatus, Occupation},
		{Race, Sex, MaritalStatus, NativeCountry},
	} {
		var names []string
		for _, ci := range cs {
			names = append(names, CategoricalNames[ci])
		}
		line := fmt.Sprintf("%v:", names)
		for _, k := range []int{20, 50, 100, 200} {
			res, err := Castle(ds, CastleOptions{K: k, Delta: 10000, Beta: 50, Seed: 1, Categorical: cs})
			if err != nil {
				t.Fatal(err)
			}
			line += fmt.Sprintf(" k=%d %.4f", k, res.AvgInfoLoss)
		}
		t.Log(line)
	}
}
