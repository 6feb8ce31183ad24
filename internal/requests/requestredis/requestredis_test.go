package requestredis

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/requests"
)

func store(t *testing.T) (*Store, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, ""), mr
}

var t0 = time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)

func filed(t *testing.T, id, subject string, kind requests.Kind, reg requests.Regime, at time.Time) requests.Request {
	t.Helper()
	r, err := requests.New(id, kind, subject, reg, "api", "ops", true, at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCreateOnceAndReplays: an id is filed once; filing it again returns
// the stored request (a replay), and a replay naming another subject is
// told apart (a conflict); nothing is overwritten either way.
func TestCreateOnceAndReplays(t *testing.T) {
	s, _ := store(t)
	ctx := context.Background()
	r := filed(t, "rq_c_t1", "alice", requests.Erasure, requests.GDPR, t0)
	if ok, _, err := s.Create(ctx, r); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ok, old, err := s.Create(ctx, r)
	if ok || err != nil || !old.Same(r) {
		t.Fatalf("replay: %v %v %+v", ok, err, old)
	}
	forged := filed(t, "rq_c_t1", "mallory", requests.Erasure, requests.GDPR, t0)
	ok, old, err = s.Create(ctx, forged)
	if ok || err != nil || old.Same(forged) || old.Subject != "alice" {
		t.Fatalf("conflict: %v %v %+v", ok, err, old)
	}
	if got, _ := s.BySubject(ctx, "mallory"); len(got) != 0 {
		t.Fatal("the conflicting filing was indexed")
	}
}

// TestUpdateIsCompareAndSet: of two writers that read one version, one
// wins and the other gets ErrStale; finished requests leave the open set.
func TestUpdateIsCompareAndSet(t *testing.T) {
	s, _ := store(t)
	ctx := context.Background()
	r := filed(t, requests.NewID(), "bob", requests.Access, requests.CCPA, t0)
	s.Create(ctx, r)
	var wins, stale int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next, _ := r.Start("w", t0)
			err := s.Update(ctx, next, r.Version)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrStale):
				stale++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || stale != 7 {
		t.Fatalf("%d wins, %d stale", wins, stale)
	}
	cur, _ := s.Get(ctx, r.ID)
	done, _ := cur.Finish("w", nil, t0)
	if err := s.Update(ctx, done, cur.Version); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Due(ctx, t0, -1, 0); len(due) != 0 {
		t.Fatalf("a finished request is still open: %+v", due)
	}
	if err := s.Update(ctx, filed(t, "rq_c_nope", "x", requests.Access, requests.GDPR, t0), 1); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

// TestDueWithin lists open requests by deadline.
func TestDueWithin(t *testing.T) {
	s, _ := store(t)
	ctx := context.Background()
	s.Create(ctx, filed(t, "rq_c_d13", "c", requests.Erasure, requests.VNDecree13, t0))             // 3 days
	s.Create(ctx, filed(t, "rq_c_gdpr", "c", requests.Erasure, requests.GDPR, t0))                  // 31 days
	s.Create(ctx, filed(t, "rq_c_old", "c", requests.Access, requests.CCPA, t0.AddDate(0, 0, -44))) // 1 day
	due, err := s.Due(ctx, t0, 7*24*time.Hour, 0)
	if err != nil || len(due) != 2 || due[0].ID != "rq_c_old" || due[1].ID != "rq_c_d13" {
		t.Fatalf("%v %+v", err, due)
	}
	all, _ := s.Due(ctx, t0, -1, 0)
	if len(all) != 3 {
		t.Fatalf("%d open", len(all))
	}
}

// TestForgetSubject: after an erasure no request names the subject, its
// exports are gone, and a writer holding the old version cannot put the
// raw id back.
func TestForgetSubject(t *testing.T) {
	s, mr := store(t)
	ctx := context.Background()
	a := filed(t, "rq_c_a", "carol-CANARY", requests.Access, requests.GDPR, t0)
	e := filed(t, "rq_c_e", "carol-CANARY", requests.Erasure, requests.GDPR, t0)
	s.Create(ctx, a)
	s.Create(ctx, e)
	s.PutExport(ctx, a.ID, []byte(`{"subject":"carol-CANARY"}`), time.Hour)
	got, err := s.ForgetSubject(ctx, "carol-CANARY", "er1.AAAAAAAAAAAAAAAAAAAAAA")
	if err != nil || len(got) != 2 {
		t.Fatal(err, got)
	}
	next, _ := a.Start("w", t0)
	if err := s.Update(ctx, next, a.Version); !errors.Is(err, ErrStale) {
		t.Fatalf("a stale writer restored the raw id: %v", err)
	}
	for _, k := range mr.Keys() {
		v, _ := mr.Get(k)
		if strings.Contains(k+v, "CANARY") {
			t.Fatalf("%s still names the subject", k)
		}
	}
	if _, err := s.Export(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
