package hierarchy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const eduCSV = `Bachelors;Undergraduate;Higher education;*
Some-college;Undergraduate;Higher education;*
11th;High School;Secondary education;*
HS-grad;High School;Secondary education;*
Masters;Graduate;Higher education;*
Preschool;Primary School;Primary education;*
`

func mustParse(t *testing.T, s string) *Tree {
	t.Helper()
	tr, err := ParseARX(strings.NewReader(s))
	if err != nil {
		t.Fatalf("ParseARX: %v", err)
	}
	return tr
}

func TestTreeBasics(t *testing.T) {
	tr := mustParse(t, eduCSV)
	if tr.Levels() != 4 || tr.TotalLeaves() != 6 {
		t.Fatalf("levels %d leaves %d", tr.Levels(), tr.TotalLeaves())
	}
	b, _ := tr.Lookup("Bachelors")
	s, _ := tr.Lookup("Some-college")
	m, _ := tr.Lookup("Masters")
	h, _ := tr.Lookup("HS-grad")
	if _, ok := tr.Lookup("nope"); ok {
		t.Fatal("unknown value found")
	}
	if l := tr.LCA(b, s); tr.Label(l) != "Undergraduate" || tr.Leaves(l) != 2 || tr.Level(l) != 1 || tr.Depth(l) != 2 {
		t.Fatalf("LCA(b,s) = %q leaves %d", tr.Label(l), tr.Leaves(l))
	}
	if l := tr.LCA(b, m); tr.Label(l) != "Higher education" || tr.Leaves(l) != 3 {
		t.Fatalf("LCA(b,m) = %q", tr.Label(l))
	}
	if l := tr.LCA(b, h); l != tr.RootNode() || tr.Label(l) != "*" {
		t.Fatalf("LCA(b,h) = %q", tr.Label(l))
	}
	if tr.LCA(b, b) != b || NCP(tr, b) != 0 || NCP(tr, tr.RootNode()) != 1 {
		t.Fatal("leaf NCP")
	}
	if got := NCP(tr, tr.LCA(b, s)); got != 0.2 {
		t.Fatalf("NCP = %v", got)
	}
	if tr.Parent(tr.RootNode()) != NoNode || tr.LCA(b, 999) != NoNode || tr.LCA(-1, b) != NoNode {
		t.Fatal("invalid nodes")
	}
	if !Covers(tr, tr.LCA(b, s), b) || Covers(tr, b, tr.LCA(b, s)) {
		t.Fatal("Covers")
	}
	for _, c := range []struct {
		v    string
		lv   int
		want string
	}{
		{"Masters", 0, "Masters"}, {"Masters", 1, "Graduate"}, {"Masters", 2, "Higher education"},
		{"Masters", 3, "*"}, {"Masters", 9, "*"}, {"zzz", 0, "zzz"}, {"zzz", 1, "*"},
	} {
		if got := tr.Generalize(c.v, c.lv); got != c.want {
			t.Errorf("Generalize(%q,%d) = %q, want %q", c.v, c.lv, got, c.want)
		}
	}
	if n, ok := tr.NodeAt("High School", 1); !ok || tr.Leaves(n) != 2 {
		t.Fatal("NodeAt")
	}
	if got := len(tr.Values()); got != 6 {
		t.Fatalf("Values %d", got)
	}
}

func TestParseARXErrors(t *testing.T) {
	cases := map[string]string{
		"depth":     "a;x;*\nb;*\n",
		"root":      "a;x;*\nb;y;ALL\n",
		"parent":    "a;x;g;*\nb;x;h;*\n",
		"duplicate": "a;x;*\na;x;*\n",
		"empty":     "a;;*\n",
		"single":    "a\n",
		"none":      "\n\n",
	}
	for name, in := range cases {
		_, err := ParseARX(strings.NewReader(in))
		if err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: err = %v, want ErrSyntax", name, err)
			continue
		}
		if name != "none" && !strings.Contains(err.Error(), "line 2") && !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%s: no line number in %v", name, err)
		}
	}
	// CRLF, BOM, blank lines and spaces are fine.
	tr := mustParse(t, "\xef\xbb\xbfa ; x;*\r\n\r\nb;x ;*\r\n")
	if _, ok := tr.Lookup("a"); !ok || tr.TotalLeaves() != 2 {
		t.Fatal("lenient parse")
	}
	if _, err := LoadARX(filepath.Join(t.TempDir(), "missing.csv")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadARX missing: %v", err)
	}
}

func TestAdultHierarchies(t *testing.T) {
	files, _ := filepath.Glob("/work/shared/data/adult/adult_hierarchy_*.csv")
	if len(files) == 0 {
		t.Skip("Adult hierarchies not present at /work/shared/data/adult")
	}
	for _, f := range files {
		tr, err := LoadARX(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if tr.Label(tr.RootNode()) != "*" {
			t.Errorf("%s: root %q", f, tr.Label(tr.RootNode()))
		}
	}
}

func TestTruncation(t *testing.T) {
	tr, err := NewTruncation(5, 10)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := tr.Lookup("75001")
	b, _ := tr.Lookup("75017")
	c, _ := tr.Lookup("13001")
	if !ok {
		t.Fatal("lookup")
	}
	if _, ok := tr.Lookup("7500"); ok {
		t.Fatal("short value found")
	}
	l := tr.LCA(a, b)
	if tr.Label(l) != "750" || tr.Leaves(l) != 100 || tr.Level(l) != 2 || tr.Depth(l) != 3 {
		t.Fatalf("LCA = %q leaves %d", tr.Label(l), tr.Leaves(l))
	}
	if tr.LCA(a, c) != tr.RootNode() || tr.TotalLeaves() != 100000 || tr.Levels() != 6 {
		t.Fatal("root")
	}
	if got := NCP(tr, l); got != 99.0/99999 {
		t.Fatalf("NCP %v", got)
	}
	if tr.Generalize("75001", 2) != "750" || tr.Generalize("75001", 5) != "*" || tr.Generalize("x", 1) != "*" {
		t.Fatal("Generalize")
	}
	if n, ok := tr.NodeAt("75", 3); !ok || tr.Label(tr.Parent(a)) != "7500" || tr.Parent(tr.Parent(tr.Parent(a))) != n {
		t.Fatal("NodeAt/Parent")
	}
	if _, err := NewTruncation(0, 10); err == nil {
		t.Fatal("length 0 accepted")
	}
	if _, err := NewTruncation(3, 1); err == nil {
		t.Fatal("alphabet 1 accepted")
	}
	// Saturation.
	big, _ := NewTruncation(40, 32)
	if big.TotalLeaves() <= 0 {
		t.Fatal("saturation")
	}
}

func TestTruncationConcurrent(t *testing.T) {
	tr, _ := NewTruncation(4, 10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				v := string([]byte{byte('0' + (i+g)%10), byte('0' + i/10%10), byte('0' + i/100%10), byte('0' + g)})
				n, ok := tr.Lookup(v)
				if !ok {
					t.Error("lookup failed")
					return
				}
				_ = tr.LCA(n, 1)
				_ = tr.Leaves(n)
				_ = tr.Label(n)
			}
		}()
	}
	wg.Wait()
}

func TestFlat(t *testing.T) {
	f, err := NewFlat(2)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := f.Lookup("M")
	w, _ := f.Lookup("F")
	if _, ok := f.Lookup("X"); ok {
		t.Fatal("domain overflow accepted")
	}
	if m2, _ := f.Lookup("M"); m2 != m {
		t.Fatal("not interned")
	}
	if f.LCA(m, m) != m || f.LCA(m, w) != f.RootNode() || f.Leaves(f.RootNode()) != 2 || NCP(f, f.RootNode()) != 1 || NCP(f, m) != 0 {
		t.Fatal("flat LCA/leaves")
	}
	if f.Generalize("M", 1) != "*" || f.Generalize("M", 0) != "M" || f.Levels() != 2 {
		t.Fatal("Generalize")
	}
	if f.LCA(m, 77) != NoNode || f.Parent(m) != 0 || f.Parent(0) != NoNode {
		t.Fatal("invalid")
	}
	if _, err := NewFlat(0); err == nil {
		t.Fatal("domain 0 accepted")
	}
}

func TestLCANoAlloc(t *testing.T) {
	tr := mustParse(t, eduCSV)
	b, _ := tr.Lookup("Bachelors")
	h, _ := tr.Lookup("HS-grad")
	tc, _ := NewTruncation(5, 10)
	x, _ := tc.Lookup("12345")
	y, _ := tc.Lookup("12399")
	var hs []Hierarchy = []Hierarchy{tr, tc}
	allocs := testing.AllocsPerRun(100, func() {
		_ = hs[0].Leaves(hs[0].LCA(b, h))
		_ = hs[1].Leaves(hs[1].LCA(x, y))
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
}

func FuzzParseARX(f *testing.F) {
	f.Add([]byte(eduCSV))
	f.Add([]byte("a;x;*\nb;*\n"))
	f.Add([]byte("a;x;g;*\nb;x;h;*\n"))
	f.Add([]byte("\xef\xbb\xbfa;*\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseARX(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		// Invariants of a valid tree.
		root := tr.RootNode()
		if tr.Leaves(root) != tr.TotalLeaves() || tr.TotalLeaves() < 1 {
			t.Fatal("root leaves")
		}
		for _, v := range tr.Values() {
			n, ok := tr.Lookup(v)
			if !ok || tr.Level(n) != 0 || tr.Leaves(n) != 1 {
				t.Fatalf("leaf %q", v)
			}
			if tr.LCA(n, root) != root || tr.Generalize(v, tr.Levels()-1) != tr.Label(root) {
				t.Fatal("root LCA")
			}
			a := n
			for range tr.Levels() - 1 {
				a = tr.Parent(a)
			}
			if a != root {
				t.Fatal("path does not end at root")
			}
		}
	})
}
