package consentredis

import (
	"context"
	"errors"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

func TestRedisStoreOneRoundTrip(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisStore(rdb, WithKeyPrefix("t:"))
	ctx := context.Background()
	var r consent.Record
	r.Apply(purpose.Analytics, consent.Granted, consent.CCPA, 10)
	if err := s.PutMany(ctx, []string{"a", "b"}, []consent.Record{r, r}); err != nil {
		t.Fatal(err)
	}
	mr.Set("t:corrupt", "garbage")
	out0 := make([]consent.Lookup, 1)
	if err := s.Lookup(ctx, []string{"a"}, out0); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("lookup before MarkLoaded: %v", err)
	}
	if err := s.MarkLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	out := make([]consent.Lookup, 4)
	// Warm the connection (go-redis sends HELLO and CLIENT SETINFO on a new one).
	if err := s.Lookup(ctx, []string{"a"}, out); err != nil {
		t.Fatal(err)
	}
	before := mr.CommandCount()
	if err := s.Lookup(ctx, []string{"a", "missing", "corrupt", "b"}, out); err != nil {
		t.Fatal(err)
	}
	if n := mr.CommandCount() - before; n != 1 {
		t.Fatalf("%d Redis commands for one batch, want 1", n)
	}
	if !out[0].Found || out[0].Record != r || out[1].Found || !out[2].Corrupt || !out[3].Found {
		t.Fatalf("lookups %+v", out)
	}
}

func TestFlushedStoreIsNotLoaded(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisStore(rdb)
	ctx := context.Background()
	s.MarkLoaded(ctx)
	out := make([]consent.Lookup, 1)
	if err := s.Lookup(ctx, []string{"x"}, out); err != nil {
		t.Fatal(err)
	}
	mr.FlushAll()
	if err := s.Lookup(ctx, []string{"x"}, out); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("after FLUSHALL: %v (an empty store must not look like unknown subjects)", err)
	}
	if s.MarkerKey() == s.Key("loaded") || s.MarkerKey() == s.Key("") {
		t.Fatal("marker collides with a subject key")
	}
}

func TestRedisStoreReadsBothVersions(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisStore(rdb, WithRequireLoaded(false))
	ctx := context.Background()
	mr.Set(s.Key("old"), "1|ccpa|1|42|g:42|-:0|-:0|-:0|-:0")
	var profile consent.Record
	profile.ApplyProfile(consent.CCPA, consent.GPCOn, 43)
	if err := s.Put(ctx, "new", &profile); err != nil {
		t.Fatal(err)
	}
	if v, _ := mr.Get(s.Key("new")); v != "2|ccpa|43|1|43|43|-:0|-:0|-:0|-:0|-:0" {
		t.Fatalf("stored %q", v)
	}
	out := make([]consent.Lookup, 2)
	if err := s.Lookup(ctx, []string{"old", "new"}, out); err != nil {
		t.Fatal(err)
	}
	if !out[0].Found || out[0].Corrupt || out[0].Record.Jurisdiction != consent.CCPA || !out[0].Record.GPC || out[0].Record.Purposes[purpose.Analytics].State != consent.Granted {
		t.Fatalf("v1 record: %+v", out[0])
	}
	if !out[1].Found || out[1].Record != profile {
		t.Fatalf("jurisdiction-only record: %+v", out[1])
	}
}

func TestHistorySkipsUnreadableEntries(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisStore(rdb)
	ctx := context.Background()
	if h, err := s.History(ctx, "nobody"); err != nil || h == nil || len(h) != 0 {
		t.Fatalf("empty history: %#v %v (want an empty, non-nil list: the API writes [])", h, err)
	}
	if s.HistoryKey("s1") != "pp:consent-history:s1" {
		t.Fatalf("history key %q", s.HistoryKey("s1"))
	}
	mr.Lpush(s.HistoryKey("s1"), `{"receipt_id":"r1","subject_id":"s1","jurisdiction":"ccpa","source":"gpc_signal","policy_version":"unspecified","timestamp":"t","gpc":true}`)
	mr.Lpush(s.HistoryKey("s1"), `not json`)
	mr.Lpush(s.HistoryKey("s1"), `{"receipt_id":"r2","subject_id":"s1","purpose":"marketing","state":"denied","jurisdiction":"gdpr","source":"web_form","policy_version":"v1","timestamp":"t"}`)
	h, err := s.History(ctx, "s1")
	if err != nil || len(h) != 2 || h[0].ReceiptID != "r2" || h[0].State != "denied" || h[1].GPC != "true" {
		t.Fatalf("history %+v %v", h, err)
	}
	mr.Close()
	if _, err := s.History(ctx, "s1"); err == nil {
		t.Fatal("error swallowed")
	}
}
