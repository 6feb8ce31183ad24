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
