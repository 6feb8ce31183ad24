package statestore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/privacy-pipeline/pipeline/processors"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cp := processors.Checkpoint{Partition: 3, Next: 1 << 40, ReplayFrom: 12345, State: []byte("state bytes")}
	got, err := Decode(3, AppendEncode(nil, cp))
	if err != nil {
		t.Fatal(err)
	}
	if got.Partition != 3 || got.Next != cp.Next || got.ReplayFrom != cp.ReplayFrom || !bytes.Equal(got.State, cp.State) {
		t.Fatalf("round trip: %+v", got)
	}
	if string(Key(12)) != "12" {
		t.Fatalf("key %q", Key(12))
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {'K'}, {'X', 1, 0, 0}, {'K', 2, 0, 0}, {'K', 1}, {'K', 1, 0x80},
		AppendEncode(nil, processors.Checkpoint{Next: 5, ReplayFrom: 6}), // replay after next
		{'K', 1, 1, 0}, // next -1 (zigzag)
	} {
		if _, err := Decode(0, b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%x: want ErrCorrupt, got %v", b, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendEncode(nil, processors.Checkpoint{Next: 10, ReplayFrom: 3, State: []byte{1, 2, 3}}))
	f.Add([]byte{'K', 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := Decode(1, b)
		if err != nil {
			return
		}
		if cp.ReplayFrom > cp.Next || cp.Next < 0 || cp.ReplayFrom < 0 {
			t.Fatalf("accepted inconsistent offsets %+v", cp)
		}
		again, err := Decode(1, AppendEncode(nil, cp))
		if err != nil || again.Next != cp.Next || again.ReplayFrom != cp.ReplayFrom || !bytes.Equal(again.State, cp.State) {
			t.Fatalf("re-encoding changed the checkpoint: %v", err)
		}
	})
}
