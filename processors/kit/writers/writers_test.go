package writers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/processors"
)

type fakeRegistry struct {
	mu      sync.Mutex
	schemas map[uint32]string
	down    bool
	calls   map[uint32]int
}

func (f *fakeRegistry) SchemaByID(_ context.Context, id uint32) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[id]++
	if f.down {
		return nil, errors.New("dial tcp: connection refused")
	}
	s, ok := f.schemas[id]
	if !ok {
		return nil, fmt.Errorf("id %d: %w", id, wireformat.ErrUnknownID)
	}
	return []byte(s), nil
}

func (f *fakeRegistry) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

type fakeDecoder struct {
	mu    sync.Mutex
	known map[uint32]bool
}

func (d *fakeDecoder) KnownID(id uint32) bool { d.mu.Lock(); defer d.mu.Unlock(); return d.known[id] }
func (d *fakeDecoder) RegisterID(id uint32, s []byte) (uint64, error) {
	if string(s) != "good" {
		return 0, errors.New("writer schema lacks required field subject_id")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.known[id] = true
	return 1, nil
}

func records(ids ...uint32) []processors.Record {
	out := make([]processors.Record, len(ids))
	for i, id := range ids {
		out[i].Value = append(wireformat.AppendConfluent(nil, id), 1, 2, 3)
	}
	return out
}

func setup(t *testing.T) (*fakeRegistry, *fakeDecoder, *Writers, *Metrics, *time.Time) {
	reg := &fakeRegistry{schemas: map[uint32]string{1: "good", 2: "bad"}, calls: map[uint32]int{}}
	dec := &fakeDecoder{known: map[uint32]bool{}}
	m := NewMetrics(prometheus.NewRegistry(), "test")
	now := time.Unix(1e9, 0)
	w := New(Config{Resolver: reg, Decoder: dec, Metrics: m, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond,
		Now: func() time.Time { return now }})
	return reg, dec, w, m, &now
}

// TestRegistersOncePerID: a known id is never looked up again; single-object
// and unframed records are not looked up at all.
func TestRegistersOncePerID(t *testing.T) {
	reg, dec, w, m, _ := setup(t)
	in := append(records(1, 1, 1), processors.Record{Value: wireformat.AppendSingleObject(nil, 9)}, processors.Record{Value: []byte("junk")})
	for range 3 {
		if err := w.Prepare(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if !dec.KnownID(1) || reg.total() != 1 {
		t.Fatalf("known %v, lookups %d, want one", dec.KnownID(1), reg.total())
	}
	if got := testutil.ToFloat64(m.Lookups.WithLabelValues(OutcomeRegistered)); got != 1 {
		t.Fatalf("registered %v", got)
	}
}

// TestFloodOfUnknownIDs is the attack: a poll in which every record names
// a different id the registry does not have. Each id costs at most one
// lookup, at most MaxLookups per batch; nothing waits; once refused an id
// is not looked up again until RetryAfter has passed.
func TestFloodOfUnknownIDs(t *testing.T) {
	reg, dec, w, m, now := setup(t)
	ids := make([]uint32, 1000)
	for i := range ids {
		ids[i] = uint32(1000 + i)
	}
	in := records(ids...)
	if err := w.Prepare(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if reg.total() != 64 {
		t.Fatalf("first batch: %d lookups, want the budget of 64", reg.total())
	}
	for range 20 {
		if err := w.Prepare(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if reg.total() != 1000 {
		t.Fatalf("after 21 batches: %d lookups, want one per id (1000)", reg.total())
	}
	for id, n := range reg.calls {
		if n != 1 {
			t.Fatalf("id %d looked up %d times", id, n)
		}
	}
	if dec.KnownID(1000) || w.Waiting() {
		t.Fatal("an unknown id became known, or Prepare waited")
	}
	if u, o := testutil.ToFloat64(m.Lookups.WithLabelValues(OutcomeUnknown)), testutil.ToFloat64(m.Lookups.WithLabelValues(OutcomeOverBudget)); u != 1000 || o == 0 {
		t.Fatalf("unknown %v over_budget %v", u, o)
	}
	*now = now.Add(2 * time.Minute)
	if err := w.Prepare(context.Background(), records(1000)); err != nil || reg.calls[1000] != 2 {
		t.Fatalf("after RetryAfter: %v, %d lookups of id 1000, want 2", err, reg.calls[1000])
	}
}

// TestRefusedSchema: a schema the decoder cannot use (another topic's) is
// refused once and counted.
func TestRefusedSchema(t *testing.T) {
	reg, dec, w, m, _ := setup(t)
	for range 3 {
		if err := w.Prepare(context.Background(), records(2)); err != nil {
			t.Fatal(err)
		}
	}
	if dec.KnownID(2) || reg.calls[2] != 1 || testutil.ToFloat64(m.Lookups.WithLabelValues(OutcomeRefused)) != 1 {
		t.Fatalf("refused schema: known %v, lookups %d", dec.KnownID(2), reg.calls[2])
	}
}

// TestRegistryDownWaits: while the registry cannot answer, the batch waits
// (Waiting, counted) instead of calling its records bad; it goes on when
// the registry answers, and gives up only with its context.
func TestRegistryDownWaits(t *testing.T) {
	reg, dec, w, m, _ := setup(t)
	reg.down = true
	done := make(chan error, 1)
	go func() { done <- w.Prepare(context.Background(), records(1)) }()
	deadline := time.Now().Add(5 * time.Second)
	for !w.Waiting() || testutil.ToFloat64(m.Lookups.WithLabelValues(OutcomeError)) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Prepare did not wait for the registry")
		}
		time.Sleep(time.Millisecond)
	}
	reg.mu.Lock()
	reg.down = false
	reg.mu.Unlock()
	if err := <-done; err != nil || !dec.KnownID(1) || w.Waiting() {
		t.Fatalf("after the registry came back: %v, known %v, waiting %v", err, dec.KnownID(1), w.Waiting())
	}
	if testutil.ToFloat64(m.Waiting) != 0 {
		t.Fatal("waiting gauge still set")
	}

	reg.mu.Lock()
	reg.down = true
	reg.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Prepare(ctx, records(5)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Prepare with the registry down and the context ending: %v", err)
	}
}

// TestNoResolver: without a registry nothing is looked up.
func TestNoResolver(t *testing.T) {
	w := New(Config{Decoder: &fakeDecoder{known: map[uint32]bool{}}})
	if err := w.Prepare(context.Background(), records(1)); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedIsBounded: the refused set never grows past MaxRefused.
func TestRefusedIsBounded(t *testing.T) {
	reg := &fakeRegistry{schemas: map[uint32]string{}, calls: map[uint32]int{}}
	now := time.Unix(1e9, 0)
	w := New(Config{Resolver: reg, Decoder: &fakeDecoder{known: map[uint32]bool{}}, MaxRefused: 100, MaxLookups: 1000,
		Now: func() time.Time { now = now.Add(time.Millisecond); return now }})
	ids := make([]uint32, 1000)
	for i := range ids {
		ids[i] = uint32(i + 10)
	}
	if err := w.Prepare(context.Background(), records(ids...)); err != nil {
		t.Fatal(err)
	}
	if n := len(w.refused); n > 100 {
		t.Fatalf("%d refused ids remembered, bound 100", n)
	}
}
