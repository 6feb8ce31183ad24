package keyredis

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
)

func rig(t *testing.T) (*miniredis.Miniredis, subjectkey.KMS) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek.json")
	if err := subjectkey.GenerateKEKFile(path); err != nil {
		t.Fatal(err)
	}
	kms, err := subjectkey.LoadKEKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return miniredis.RunT(t), kms
}

func store(t *testing.T, mr *miniredis.Miniredis, kms subjectkey.KMS) *Store {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s, err := New(Config{Redis: rdb, KMS: kms})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkLoaded(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dk1.analytics.k1.subject%03d", i)
	}
	return out
}

// TestReplicasRaceForNewKeys: eight replicas (each its own Store and
// connection) ask for the same 50 new keys at once; every key is created
// exactly once, and every replica gets the winner's key (equal tokens).
func TestReplicasRaceForNewKeys(t *testing.T) {
	mr, kms := rig(t)
	want := ids(50)
	const replicas = 8
	results := make([]subjectkey.Lookup, replicas)
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		s := store(t, mr, kms)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Get(context.Background(), want, &results[i])
		}()
	}
	wg.Wait()
	created := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		created += r.Created
	}
	if created != len(want) {
		t.Fatalf("%d keys created for %d ids by %d racing replicas", created, len(want), replicas)
	}
	for j := range want {
		tok, _ := results[0].Keys[j].Tokenize([]byte("v"), "f")
		for i := 1; i < replicas; i++ {
			if other, _ := results[i].Keys[j].Tokenize([]byte("v"), "f"); other != tok {
				t.Fatalf("replica %d holds another key for %s", i, want[j])
			}
		}
	}
}

// TestUnloggedUntilTheTopicHasIt: a new key is returned as unlogged (to be
// written to privacy.keys) by every Get until Put confirms it; then it is
// logged, served from memory, and not returned again.
func TestUnloggedUntilTheTopicHasIt(t *testing.T) {
	mr, kms := rig(t)
	s := store(t, mr, kms)
	ctx := context.Background()
	want := ids(3)
	var r subjectkey.Lookup
	for range 2 {
		if err := s.Get(ctx, want, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Unlogged) != 3 {
			t.Fatalf("%d unlogged keys, want 3 until the key topic has them", len(r.Unlogged))
		}
	}
	for _, w := range r.Unlogged {
		if ok, err := s.Put(ctx, w); err != nil || !ok {
			t.Fatalf("put: %v %v", ok, err)
		}
	}
	if err := s.Get(ctx, want, &r); err != nil || len(r.Unlogged) != 0 || r.Fetched != 3 {
		t.Fatalf("after Put: %d unlogged, %d fetched: %v", len(r.Unlogged), r.Fetched, err)
	}
	if err := s.Get(ctx, want, &r); err != nil || r.Hits != 3 || r.Fetched != 0 {
		t.Fatalf("the logged keys are not served from memory: %d hits, %d fetched", r.Hits, r.Fetched)
	}
	if st, _ := s.State(ctx, want[0]); st != "logged" {
		t.Fatalf("state %s", st)
	}
}

// TestShreddedIsNeverRecreated: after Shred, Get returns no key for the id
// (in this process at once, in another one from Redis), creates none,
// and a replayed key record from the topic does not bring it back.
func TestShreddedIsNeverRecreated(t *testing.T) {
	mr, kms := rig(t)
	s, other := store(t, mr, kms), store(t, mr, kms)
	ctx := context.Background()
	want := ids(2)
	var r subjectkey.Lookup
	if err := s.Get(ctx, want, &r); err != nil {
		t.Fatal(err)
	}
	old := r.Unlogged[0]
	for _, w := range r.Unlogged {
		s.Put(ctx, w)
	}
	s.Get(ctx, want, &r) // cached now
	if err := s.Shred(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, other} {
		if err := st.Get(ctx, want, &r); err != nil {
			t.Fatal(err)
		}
		if !r.Shredded[0] || r.Keys[0] != nil || r.Created != 0 || r.Shredded[1] || r.Keys[1] == nil {
			t.Fatalf("after shred: shredded %v, key %v, created %d", r.Shredded, r.Keys[0], r.Created)
		}
	}
	if ok, _ := s.Put(ctx, old); ok {
		t.Fatal("a replayed key record revived a shredded key")
	}
	if v, _ := mr.Get(DefaultPrefix + want[0]); v != "x" {
		t.Fatalf("Redis still holds %d bytes for the shredded key", len(v))
	}
}

// TestSwappedValueRefused: a wrapped key copied under another id in Redis
// (an attacker with Redis access, or a key-id collision) is refused, not
// used to encrypt the other subject's fields.
func TestSwappedValueRefused(t *testing.T) {
	mr, kms := rig(t)
	s := store(t, mr, kms)
	ctx := context.Background()
	var r subjectkey.Lookup
	if err := s.Get(ctx, []string{"dk1.analytics.k1.victim"}, &r); err != nil {
		t.Fatal(err)
	}
	v, _ := mr.Get(DefaultPrefix + "dk1.analytics.k1.victim")
	mr.Set(DefaultPrefix+"dk1.analytics.k1.attacker", v)
	err := store(t, mr, kms).Get(ctx, []string{"dk1.analytics.k1.attacker"}, &r)
	if err == nil || !strings.Contains(err.Error(), "holds the wrapped key of") {
		t.Fatalf("a swapped value: %v", err)
	}
}

// TestUnreachableRedisIsAnError: no key is invented when Redis cannot
// answer (the processor pauses, as for consent).
func TestUnreachableRedisIsAnError(t *testing.T) {
	mr, kms := rig(t)
	s := store(t, mr, kms)
	mr.Close()
	var r subjectkey.Lookup
	if err := s.Get(context.Background(), ids(1), &r); err == nil {
		t.Fatal("a key without Redis")
	}
}

// TestCacheTTL: a key cached in one process is fetched again after the
// TTL, so another process's shred is seen.
func TestCacheTTL(t *testing.T) {
	mr, kms := rig(t)
	now := time.Now()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s, _ := New(Config{Redis: rdb, KMS: kms, CacheTTL: time.Minute, Now: func() time.Time { return now }})
	s.MarkLoaded(context.Background())
	ctx := context.Background()
	var r subjectkey.Lookup
	s.Get(ctx, ids(1), &r)
	s.Put(ctx, r.Unlogged[0])
	s.Get(ctx, ids(1), &r)
	store(t, mr, kms).Shred(ctx, ids(1)...)
	if s.Get(ctx, ids(1), &r); r.Shredded[0] {
		t.Fatal("the cache was not used within its TTL")
	}
	now = now.Add(2 * time.Minute)
	if s.Get(ctx, ids(1), &r); !r.Shredded[0] {
		t.Fatal("another process's shred unseen after the TTL")
	}
}

// TestNoKeyWithoutTheLoadedMarker: a flushed Redis (no loaded marker) is
// refused, not answered with new keys: a second key under a subject's
// name would replace the first on the compacted topic and make its
// ciphertexts unreadable.
func TestNoKeyWithoutTheLoadedMarker(t *testing.T) {
	mr, kms := rig(t)
	s := store(t, mr, kms)
	ctx := context.Background()
	var r subjectkey.Lookup
	if err := s.Get(ctx, ids(2), &r); err != nil {
		t.Fatal(err)
	}
	mr.FlushAll()
	fresh := store(t, mr, kms) // sets the marker: flush again below
	mr.FlushAll()
	for _, st := range []*Store{s, fresh} {
		if err := st.Get(ctx, ids(3), &r); !errors.Is(err, ErrNotLoaded) {
			t.Fatalf("after a flush: %v", err)
		}
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Fatalf("keys created in a flushed Redis: %v", keys)
	}
}
