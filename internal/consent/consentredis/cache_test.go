package consentredis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/consent"
)

type fakeStore struct {
	calls int
	data  map[string]consent.Record
	err   error
}

func (f *fakeStore) Lookup(_ context.Context, subs []string, out []consent.Lookup) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	for i, s := range subs {
		r, ok := f.data[s]
		out[i] = consent.Lookup{Record: r, Found: ok}
	}
	return nil
}
func (f *fakeStore) Put(_ context.Context, s string, r *consent.Record) error {
	f.data[s] = *r
	return nil
}

func TestCacheOneRoundTripAndTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	st := &fakeStore{data: map[string]consent.Record{"a": {Version: 1}}}
	c := NewCache(st, WithTTL(time.Second), WithClock(func() time.Time { return now }))
	out := make([]consent.Lookup, 3)
	s, err := c.Lookup(context.Background(), []string{"a", "b", "c"}, out)
	if err != nil || st.calls != 1 || s.Misses != 3 || !out[0].Found || out[1].Found {
		t.Fatalf("first lookup: %+v %v calls=%d out=%+v", s, err, st.calls, out)
	}
	s, _ = c.Lookup(context.Background(), []string{"a", "b", "c"}, out)
	if st.calls != 1 || s.Hits != 3 {
		t.Fatalf("second lookup should hit (negative entries too): %+v calls=%d", s, st.calls)
	}
	now = now.Add(2 * time.Second)
	st.data["b"] = consent.Record{Version: 2}
	s, _ = c.Lookup(context.Background(), []string{"a", "b"}, out)
	if st.calls != 2 || s.Misses != 2 || !out[1].Found {
		t.Fatalf("expired entries must be refetched: %+v calls=%d", s, st.calls)
	}
	c.Invalidate("a")
	st.data["a"] = consent.Record{Version: 9}
	c.Lookup(context.Background(), []string{"a"}, out)
	if out[0].Record.Version != 9 {
		t.Fatal("invalidate did not drop the entry")
	}
}

func TestCacheStoreErrorCachesNothing(t *testing.T) {
	st := &fakeStore{data: map[string]consent.Record{}, err: errors.New("down")}
	c := NewCache(st)
	out := make([]consent.Lookup, 1)
	if _, err := c.Lookup(context.Background(), []string{"x"}, out); err == nil {
		t.Fatal("error swallowed")
	}
	if c.Len() != 0 {
		t.Fatal("cached an entry without an answer")
	}
}

func TestCacheBounded(t *testing.T) {
	st := &fakeStore{data: map[string]consent.Record{}}
	c := NewCache(st, WithMaxEntries(160))
	out := make([]consent.Lookup, 1)
	for i := 0; i < 5000; i++ {
		c.Lookup(context.Background(), []string{string(rune('a'+i%26)) + time.Duration(i).String()}, out)
	}
	if n := c.Len(); n > 160 {
		t.Fatalf("cache holds %d entries, bound 160", n)
	}
}
