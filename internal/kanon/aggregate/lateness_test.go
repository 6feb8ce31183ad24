package aggregate

import (
	"testing"
	"time"
)

type flatGen struct{}

func (flatGen) Levels() int { return 2 }
func (flatGen) Generalize(v string, level int) string {
	if level > 0 {
		return "*"
	}
	return v
}

// TestRestoreUnderLowerLateness: a checkpoint taken with a long allowed
// lateness restores under a shorter one; the windows that are now past
// their lateness close on the next Advance instead of failing the restore.
func TestRestoreUnderLowerLateness(t *testing.T) {
	cfg := Config{K: 2, Window: time.Minute, AllowedLateness: 10 * time.Hour, Dims: []Dim{{Name: "d", Gen: flatGen{}}}}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := a.Add(Event{Time: int64(i) * 1000, Subject: uint64(i % 5), Dims: []string{"x"}, Ref: int64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	st, err := UnmarshalState(MarshalState(a.Checkpoint()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AllowedLateness = 0
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(st); err != nil {
		t.Fatalf("restore under a lower lateness: %v", err)
	}
	for i := range 20 {
		if _, err := b.Replay(Event{Time: int64(i) * 1000, Subject: uint64(i % 5), Dims: []string{"x"}, Ref: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var rows []Row
	if err := b.Advance(time.Hour.Milliseconds(), func(cw ClosedWindow) { rows = append(rows, cw.Rows...) }); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || rows[0].Events != 20 || rows[0].Subjects != 5 {
		t.Fatalf("rows after restore and advance: %+v", rows)
	}
}

// TestDomainsCountTheLargestOne: the same six people under two pseudonym
// keys (two identity domains) are twelve pseudonyms but at least six
// people: with k = 11 the cell stays suppressed; with seven more people in
// one domain it is released with 13 subjects.
func TestDomainsCountTheLargestOne(t *testing.T) {
	cfg := Config{K: 11, Window: time.Minute, Dims: []Dim{{Name: "d", Gen: flatGen{}}}}
	dom := func(d, s uint64) uint64 { return d<<(64-DomainBits) | s }
	run := func(extra int) []Row {
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ref := int64(0)
		add := func(subject uint64) {
			if _, err := a.Add(Event{Time: ref, Subject: subject, Dims: []string{"x"}, Ref: ref}, nil); err != nil {
				t.Fatal(err)
			}
			ref++
		}
		for s := range uint64(6) {
			add(dom(1, 100+s))
			add(dom(2, 900+s))
		}
		for s := range uint64(extra) {
			add(dom(2, 500+s))
		}
		var rows []Row
		if err := a.Flush(func(cw ClosedWindow) { rows = append(rows, cw.Rows...) }); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	if rows := run(0); len(rows) != 0 {
		t.Fatalf("12 pseudonyms of 6 people released: %+v", rows)
	}
	rows := run(7)
	if len(rows) == 0 || rows[0].Subjects != 13 {
		t.Fatalf("want one row of 13 subjects (the larger domain), got %+v", rows)
	}
}
