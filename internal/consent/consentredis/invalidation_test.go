package consentredis

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/consent"
)

func TestInvalidationChannelAndFormat(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisStore(rdb)
	ctx := context.Background()
	ps := s.SubscribeInvalidations(ctx)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishInvalidation(ctx, []string{"a", "b c"}); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != "pp:consent-invalidate" || msg.Payload != "a\nb c" {
		t.Fatalf("published %q on %q", msg.Payload, msg.Channel)
	}
	if got := ParseInvalidation(msg.Payload); !slices.Equal(got, []string{"a", "b c"}) {
		t.Fatalf("parsed %q", got)
	}
	if got := ParseInvalidation(""); got != nil {
		t.Fatalf("empty payload parsed as %q", got)
	}
}

func TestFollowInvalidationsDropsAnnouncedSubjects(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisStore(rdb, WithKeyPrefix("t:"))
	c := NewCache(&fakeStore{data: map[string]consent.Record{}}, WithTTL(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { FollowInvalidations(ctx, s, c, nil); close(done) }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	// The subscription drops everything (InvalidateAll bumps the generation).
	wait("subscription never confirmed", func() bool { return c.Generation() > 0 })
	g := c.Generation()
	if err := s.PublishInvalidation(ctx, []string{"x", "y"}); err != nil {
		t.Fatal(err)
	}
	wait("announcement never applied", func() bool { return c.Generation() >= g+2 })
	if !c.InvalidatedSince(g, []string{"y"}) || c.InvalidatedSince(c.Generation(), []string{"x"}) {
		t.Fatal("announced subjects not invalidated after g")
	}
	cancel()
	<-done
}
