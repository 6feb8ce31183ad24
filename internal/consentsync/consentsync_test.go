package consentsync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/purpose"
)

func change(sub string, p purpose.Purpose, st consent.State, at time.Time) consentlog.Change {
	return consentlog.Change{SubjectID: sub, Purpose: p, State: st, Jurisdiction: consent.GDPR, Source: consentlog.WebForm,
		PolicyVersion: "v1", Timestamp: at, ReceiptID: consentlog.NewReceiptID()}
}

func TestApplyKeepsNewestPerPurposeAndAnnounces(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consent.NewRedisStore(rdb)
	s, err := New(Config{Brokers: []string{"unused:1"}, Topic: "t", Group: "g", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, store.InvalidationChannel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	newer := change("c1", purpose.Analytics, consent.Withdrawn, t0.Add(time.Minute))
	older := change("c1", purpose.Analytics, consent.Granted, t0)
	other := change("c1", purpose.Marketing, consent.Granted, t0)
	n, err := s.Apply(ctx, []consentlog.Change{newer, older, other, newer}, nil)
	if err != nil || n != 2 {
		t.Fatalf("applied %d (%v), want 2: newer and other; the older and the duplicate are stale", n, err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "c1" {
		t.Fatalf("invalidation %v %v", msg, err)
	}
	store.MarkLoaded(ctx)
	out := make([]consent.Lookup, 1)
	if err := store.Lookup(ctx, []string{"c1"}, out); err != nil {
		t.Fatal(err)
	}
	r := out[0].Record
	if r.Purposes[purpose.Analytics].State != consent.Withdrawn || r.Purposes[purpose.Marketing].State != consent.Granted ||
		r.Jurisdiction != consent.GDPR || r.Version != newer.Timestamp.UnixMilli() {
		t.Fatalf("stored %+v", r)
	}
	// Replaying everything in another order converges to the same state.
	n, _ = s.Apply(ctx, []consentlog.Change{other, older, newer}, nil)
	if n != 0 {
		t.Fatalf("replay applied %d changes", n)
	}
	hist, _ := rdb.LRange(ctx, store.HistoryKey("c1"), 0, -1).Result()
	if len(hist) != 2 || !strings.Contains(hist[0], `"purpose":"marketing"`) {
		t.Fatalf("history %v", hist)
	}
}

func TestApplyRepairsACorruptRecord(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consent.NewRedisStore(rdb, consent.WithRequireLoaded(false))
	s, _ := New(Config{Brokers: []string{"x:1"}, Topic: "t", Group: "g", Store: store})
	mr.Set(store.Key("c9"), "garbage")
	if n, err := s.Apply(context.Background(), []consentlog.Change{change("c9", purpose.AITraining, consent.Denied, time.Now())}, nil); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	out := make([]consent.Lookup, 1)
	store.Lookup(context.Background(), []string{"c9"}, out)
	if out[0].Corrupt || out[0].Record.Purposes[purpose.AITraining].State != consent.Denied {
		t.Fatalf("%+v", out[0])
	}
}
