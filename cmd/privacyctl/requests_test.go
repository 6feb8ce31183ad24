package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestapi"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
)

// requestsAPI serves the real requests API (kfake, miniredis, no
// authentication): privacyctl is tested against the contract itself.
func requestsAPI(t *testing.T) (*httptest.Server, *requestredis.Store) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "privacy.requests"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	guard, err := httpauth.New(httpauth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := requestredis.New(rdb, "")
	s, err := requestapi.New(requestapi.Config{Producer: cl, Topic: "privacy.requests", Store: store, Guard: guard})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, store
}

// TestEraseListExtendRefuse: privacyctl files an erasure (a replay with
// the same --id is told), lists it by --due-within, extends it with a
// reason and refuses another, printing ids, statuses and deadlines but
// never the subject id.
func TestEraseListExtendRefuse(t *testing.T) {
	srv, _ := requestsAPI(t)
	code, out, errs := api(t, srv, "erase", "subject-CANARY", "--regime", "ccpa", "--id", "t-1")
	if code != 0 || !strings.Contains(out, "rq_c_t-1") || !strings.Contains(out, "erasure") || !strings.Contains(out, "45.0 days left") {
		t.Fatalf("%d %q %q", code, out, errs)
	}
	if _, out, _ = api(t, srv, "erase", "subject-CANARY", "--regime", "ccpa", "--id", "t-1"); !strings.Contains(out, "already filed") {
		t.Fatalf("replay: %q", out)
	}
	if code, out, errs = api(t, srv, "requests", "list", "--due-within", "7d"); code != 0 || !strings.Contains(out, "no requests") {
		t.Fatalf("due within 7d: %d %q %q", code, out, errs)
	}
	if code, out, _ = api(t, srv, "requests", "list", "--due-within", "46d"); code != 0 || !strings.Contains(out, "rq_c_t-1") {
		t.Fatalf("due within 46d: %d %q", code, out)
	}
	if code, out, _ = api(t, srv, "requests", "extend", "rq_c_t-1", "--reason", "three archives to search"); code != 0 || !strings.Contains(out, "extended") || !strings.Contains(out, "90.0 days left") {
		t.Fatalf("extend: %d %q", code, out)
	}
	if code, _, errs = api(t, srv, "requests", "extend", "rq_c_t-1", "--reason", "again"); code != 1 || !strings.Contains(errs, "once") {
		t.Fatalf("extend twice: %d %q", code, errs)
	}
	if code, out, _ = api(t, srv, "requests", "refuse", "rq_c_t-1", "--reason", "identity not verifiable"); code != 0 || !strings.Contains(out, "refused") {
		t.Fatalf("refuse: %d %q", code, out)
	}
	if code, out, _ = api(t, srv, "--json", "requests", "list", "--subject", "subject-CANARY"); code != 0 || !strings.Contains(out, `"status":"refused"`) {
		t.Fatalf("list --subject --json: %d %q", code, out)
	}
	for _, c := range [][]string{
		{"erase"}, {"erase", "a", "b"}, {"erase", "a", "--regime", "mars"}, {"erase", "a", "--kind", "access"},
		{"requests", "forget"}, {"requests", "show", "../x"}, {"requests", "refuse", "rq_c_t-1"},
		{"export", "a", "--out", "f"}, {"requests", "list", "--due-within", "soon"},
	} {
		if code, _, _ := api(t, srv, c...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (nothing sent)", c, code, exitUsage)
		}
	}
}

// TestExportWaitAndDownload: privacyctl export --wait follows the request
// until the requests service finishes it (simulated here on the store),
// then writes the document 0600.
func TestExportWaitAndDownload(t *testing.T) {
	srv, store := requestsAPI(t)
	go func() {
		ctx := context.Background()
		for {
			time.Sleep(100 * time.Millisecond)
			rs, _ := store.BySubject(ctx, "erin")
			if len(rs) == 1 {
				r := rs[0]
				started, _ := r.Start("test", time.Now())
				done, _ := started.Finish("test", map[string]int64{"records": 2}, time.Now())
				store.PutExport(ctx, r.ID, []byte(`{"v":1,"subject_id":"erin","records":[]}`), time.Minute)
				if err := store.Update(ctx, done, r.Version); err == nil {
					return
				}
			}
		}
	}()
	file := filepath.Join(t.TempDir(), "export.json")
	code, out, errs := api(t, srv, "--timeout", "10s", "export", "erin", "--verified", "--wait", "--out", file)
	if code != 0 || !strings.Contains(out, "done") || !strings.Contains(out, "written to") {
		t.Fatalf("%d %q %q", code, out, errs)
	}
	b, err := os.ReadFile(file)
	var doc map[string]any
	if err != nil || json.Unmarshal(b, &doc) != nil || doc["subject_id"] != "erin" {
		t.Fatalf("%v %s", err, b)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Fatalf("the export is %v, want 0600", st.Mode().Perm())
	}
}
