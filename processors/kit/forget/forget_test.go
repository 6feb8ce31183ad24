package forget

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	n, err := Decode([]byte(`{"purpose":"analytics","key_id":"k1","pseudonym":"ps","data_key":"dk1.x","erased_ms":5,"request":"r"}`))
	if err != nil || n != (Notice{Purpose: "analytics", KeyID: "k1", Pseudonym: "ps"}) {
		t.Fatalf("%+v %v", n, err)
	}
	for name, in := range map[string]string{
		"empty":        ``,
		"not json":     `pseudonym=x`,
		"array":        `["analytics","ps"]`,
		"no purpose":   `{"pseudonym":"ps"}`,
		"no pseudonym": `{"purpose":"analytics"}`,
		"long":         `{"purpose":"analytics","pseudonym":"` + strings.Repeat("x", MaxPseudonymLen+1) + `"}`,
		"long key":     `{"purpose":"analytics","key_id":"` + strings.Repeat("k", 256) + `","pseudonym":"ps"}`,
		"huge":         strings.Repeat(" ", MaxNoticeBytes+1),
		"wrong type":   `{"purpose":1,"pseudonym":"ps"}`,
	} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrNotice) {
			t.Errorf("%s: %v, want ErrNotice", name, err)
		}
	}
}

func TestSetRoundTripAndPrune(t *testing.T) {
	var s Set
	if s.Has(1) || s.Len() != 0 {
		t.Fatal("empty set")
	}
	s.Add(Hash([]byte("a")), 1000, 10)
	s.Add(Hash([]byte("b")), 5000, 10)
	s.Add(Hash([]byte("a")), 500, 5) // keeps the later values
	b := s.AppendEncode([]byte("x"))
	got, rest, err := DecodeSet(append(b[1:], 'z'))
	if err != nil || !bytes.Equal(rest, []byte("z")) || got.Len() != 2 || !got.Has(Hash([]byte("a"))) {
		t.Fatalf("%v %q %d", err, rest, got.Len())
	}
	now := 1000 + int64(time.Hour/time.Millisecond) + 1
	// A replay from 10 on can no longer meet a record of "a"; but one of
	// its records was kept out at 20, so a replay from 15 still could.
	got.KeptOut(Hash([]byte("a")), 20)
	if n := got.Prune(now, time.Hour, 15); n != 0 {
		t.Fatalf("pruned %d while a replay could still offer a kept-out record", n)
	}
	if n := got.Prune(now, time.Hour, 21); n != 1 || got.Has(Hash([]byte("a"))) || !got.Has(Hash([]byte("b"))) {
		t.Fatalf("pruned %d", n)
	}
}

// TestSetIsBounded: a flood of notices (forged or not) fills the set up
// to MaxEntries and no further; Add reports it.
func TestSetIsBounded(t *testing.T) {
	var s Set
	for i := range MaxEntries {
		if !s.Add(uint64(i), 1, 0) {
			t.Fatalf("full at %d", i)
		}
	}
	if s.Add(1<<40, 1, 0) || s.Len() != MaxEntries {
		t.Fatal("the set grew past MaxEntries")
	}
	if !s.Add(3, 2, 0) {
		t.Fatal("an existing entry could not be refreshed")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"purpose":"analytics","key_id":"k1","pseudonym":"ps"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrNotice) {
				t.Fatalf("error not wrapping ErrNotice: %v", err)
			}
			return
		}
		if n.Purpose == "" || n.Pseudonym == "" || len(n.Pseudonym) > MaxPseudonymLen {
			t.Fatalf("accepted %+v", n)
		}
	})
}

func FuzzDecodeSet(f *testing.F) {
	var s Set
	s.Add(1, 2, 3)
	s.Add(7, -3, 0)
	f.Add(s.AppendEncode(nil))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, rest, err := DecodeSet(b)
		if err != nil {
			return
		}
		again := got.AppendEncode(nil)
		if !bytes.Equal(again, b[:len(b)-len(rest)]) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b[:len(b)-len(rest)])
		}
	})
}
