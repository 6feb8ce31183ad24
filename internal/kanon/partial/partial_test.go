package partial

import (
	"errors"
	"reflect"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
)

func cells(n int) []aggregate.PartialCell {
	subj := make([]uint64, n)
	for i := range subj {
		subj[i] = 1<<48 | uint64(i*7919+3)
	}
	return []aggregate.PartialCell{
		{Values: []string{"18-24", "VN"}, Events: 3, Sum: 12.5, QSum: 7, Subjects: []uint64{1, 5, 1 << 63}},
		{Values: []string{"65+", "*"}, Events: int64(n), Sum: -1, Subjects: subj},
	}
}

func TestRoundTrip(t *testing.T) {
	keys := []KeyID{{Domain: 0}, {Domain: 1, ID: "analytics-2026-07"}}
	var got []Record
	if _, err := EncodeCells("events_by_segment", 3, 12, 60000, keys, cells(10), 1<<20, func(b []byte) {
		r, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}); err != nil {
		t.Fatal(err)
	}
	want := Record{Kind: KindCells, Aggregate: "events_by_segment", Partition: 3, Partitions: 12, Start: 60000, KeyIDs: keys, Cells: cells(10)}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	p, err := Decode(AppendProgress(nil, "a", 2, 4, -5))
	if err != nil || !reflect.DeepEqual(p, Record{Kind: KindProgress, Aggregate: "a", Partition: 2, Partitions: 4, ClosedBefore: -5}) {
		t.Fatalf("progress %+v %v", p, err)
	}
}

// TestSplitsLargeCells: a cell with more subjects than a record holds is
// split; the parts unite to the cell, its events and sums counted once.
func TestSplitsLargeCells(t *testing.T) {
	in := cells(5000)
	var subj []uint64
	var events int64
	var sum float64
	records := 0
	if _, err := EncodeCells("a", 0, 1, 0, nil, in, 4096, func(b []byte) {
		if len(b) > 4096 {
			t.Fatalf("record of %d bytes", len(b))
		}
		records++
		r, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range r.Cells {
			if c.Values[0] == "65+" {
				subj = append(subj, c.Subjects...)
				events += c.Events
				sum += c.Sum
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if records < 5 || !reflect.DeepEqual(subj, in[1].Subjects) || events != 5000 || sum != -1 {
		t.Fatalf("%d records, %d subjects, %d events, sum %v", records, len(subj), events, sum)
	}
	if _, err := EncodeCells("a", 0, 1, 0, nil, in, 40, func([]byte) {}); err == nil {
		t.Fatal("a limit below one cell was accepted")
	}
}

// TestOversizedCellIsSkipped (attack: one cell with dimension values
// longer than a record made the first stage fail the same batch forever):
// the cell is skipped and reported, the others are encoded.
func TestOversizedCellIsSkipped(t *testing.T) {
	in := cells(3)
	in[1].Values = []string{string(make([]byte, 3000)), "x"}
	var got []aggregate.PartialCell
	skipped, err := EncodeCells("a", 0, 1, 0, nil, in, 2048, func(b []byte) {
		r, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Cells...)
	})
	if err != nil || !reflect.DeepEqual(skipped, []int{1}) || len(got) != 1 {
		t.Fatalf("skipped %v, err %v, %d cells encoded", skipped, err, len(got))
	}
}

func TestRejectsMalformed(t *testing.T) {
	var good []byte
	EncodeCells("a", 1, 2, 0, nil, cells(3), 1<<20, func(b []byte) { good = append([]byte(nil), b...) })
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     []byte("XXXX"),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"partition": AppendProgress(nil, "a", 5, 4, 0),
		"no name":   AppendProgress(nil, "", 0, 1, 0),
	} {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	EncodeCells("events_by_segment", 1, 4, 60000, []KeyID{{Domain: 1, ID: "k"}}, cells(4), 1<<20, func(b []byte) { f.Add(append([]byte(nil), b...)) })
	f.Add(AppendProgress(nil, "a", 0, 1, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		// What decodes re-encodes to something that decodes the same.
		var again []byte
		if r.Kind == KindProgress {
			again = AppendProgress(nil, r.Aggregate, r.Partition, r.Partitions, r.ClosedBefore)
		} else {
			if _, err := EncodeCells(r.Aggregate, r.Partition, r.Partitions, r.Start, r.KeyIDs, r.Cells, 1<<30, func(b []byte) { again = append([]byte(nil), b...) }); err != nil {
				t.Fatal(err)
			}
			if len(r.Cells) == 0 {
				return
			}
		}
		r2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoded record decodes differently: %v", err)
		}
	})
}
