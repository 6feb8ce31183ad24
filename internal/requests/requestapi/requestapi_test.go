package requestapi

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

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
)

type fixture struct {
	srv            *httptest.Server
	store          *requestredis.Store
	cl             *kgo.Client
	writer, reader string
	erased         map[string]bool
	now            time.Time
}

type ledger map[string]bool

func (l ledger) Erased(_ context.Context, subs []string) ([]bool, error) {
	out := make([]bool, len(subs))
	for i, s := range subs {
		out[i] = l[s]
	}
	return out, nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "privacy.requests"), kfake.SeedTopics(1, "privacy.audit"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("privacy.requests"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	writer, we, _ := httpauth.NewToken("privacy-center", []httpauth.Scope{httpauth.ScopeRequestsRead, httpauth.ScopeRequestsWrite}, time.Time{})
	reader, re, _ := httpauth.NewToken("dashboard", []httpauth.Scope{httpauth.ScopeRequestsRead}, time.Time{})
	file := filepath.Join(t.TempDir(), "principals.json")
	b, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{we, re}})
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	guard, err := httpauth.New(httpauth.Config{Mode: httpauth.Mode{Token: true}, File: file})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: requestredis.New(rdb, ""), cl: cl, writer: writer, reader: reader, erased: map[string]bool{},
		now: time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)}
	s, err := New(Config{Producer: cl, Topic: "privacy.requests", Store: f.store, Guard: guard, Ledger: ledger(f.erased),
		AuditTopic: "privacy.audit", Mark: func(string) string { return "er1.AAAAAAAAAAAAAAAAAAAAAA" },
		Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode, v
}

// logged returns the records on privacy.requests.
func (f *fixture) logged(t *testing.T) []requests.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out []requests.Request
	for ctx.Err() == nil {
		f.cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			q, err := requests.Parse(r.Value)
			if err != nil || string(r.Key) != q.ID {
				t.Fatalf("a logged record is not a request keyed by its id: %v", err)
			}
			out = append(out, q)
		})
	}
	return out
}

// TestFileReplayAndDuplicate: an erasure is filed (202, deadline one
// calendar month), logged once; the same idempotency key again is a
// replay (200, the same request); the same key for another subject is a
// conflict (409); without a key, a second erasure for the subject while
// the first is open answers the open one.
func TestFileReplayAndDuplicate(t *testing.T) {
	f := newFixture(t)
	code, v := f.do(t, f.writer, "POST", "/v1/subjects/alice/erasure", `{"id":"ticket-1","verified":true}`)
	if code != 202 || v["id"] != "rq_c_ticket-1" || v["status"] != "verified" || v["principal"] != "privacy-center" ||
		int64(v["deadline_ms"].(float64)) != time.Date(2027, 1, 3, 6, 0, 0, 0, time.UTC).UnixMilli() {
		t.Fatalf("%d %v", code, v)
	}
	code, v = f.do(t, f.writer, "POST", "/v1/subjects/alice/erasure", `{"id":"ticket-1","verified":true}`)
	if code != 200 || v["replay"] != true || v["id"] != "rq_c_ticket-1" {
		t.Fatalf("replay: %d %v", code, v)
	}
	code, v = f.do(t, f.writer, "POST", "/v1/subjects/mallory/erasure", `{"id":"ticket-1"}`)
	if code != 409 || strings.Contains(v["error"].(string), "mallory") {
		t.Fatalf("conflict: %d %v", code, v)
	}
	code, v = f.do(t, f.writer, "POST", "/v1/subjects/alice/erasure", ``)
	if code != 200 || v["duplicate"] != true || v["id"] != "rq_c_ticket-1" {
		t.Fatalf("duplicate: %d %v", code, v)
	}
	logged := f.logged(t)
	if len(logged) != 2 || logged[0].ID != "rq_c_ticket-1" || logged[0].Subject != "alice" { // filed, and the replay's re-log
		t.Fatalf("logged %+v", logged)
	}
}

// TestRefusedRequests: no token, a forged token, a read-only token filing,
// a malformed body, an unknown kind, an oversized subject and a subject
// the ledger says is erased are each refused with their own status, and
// nothing is filed or logged.
func TestRefusedRequests(t *testing.T) {
	f := newFixture(t)
	f.erased["gone"] = true
	for _, c := range []struct {
		token, path, body string
		code              int
		want              string
	}{
		{"", "/v1/subjects/a/erasure", ``, 401, ""},
		{"ppt_" + strings.Repeat("A", 43), "/v1/subjects/a/erasure", ``, 401, ""},
		{f.reader, "/v1/subjects/a/erasure", ``, 403, ""},
		{f.writer, "/v1/subjects/a/erasure", `{"kind":`, 400, "JSON"},
		{f.writer, "/v1/subjects/a/requests", `{"kind":"forget-me"}`, 400, "kind"},
		{f.writer, "/v1/subjects/a/export", `{"kind":"erasure"}`, 400, "route"},
		{f.writer, "/v1/subjects/" + strings.Repeat("x", 300) + "/erasure", ``, 400, "longer"},
		{f.writer, "/v1/subjects/gone/export", ``, 409, "erased"},
		{f.writer, "/v1/subjects/a/requests", `{"exercise":"sale:opt-out","drp.version":"1.0"}`, 400, "consent choice"},
	} {
		code, v := f.do(t, c.token, "POST", c.path, c.body)
		if code != c.code || c.want != "" && !strings.Contains(strings.ToLower(v["error"].(string)), strings.ToLower(c.want)) {
			t.Errorf("%s %s: %d %v, want %d %q", c.path, c.body, code, v, c.code, c.want)
		}
		if e, _ := v["error"].(string); strings.Contains(e, "gone") {
			t.Errorf("the error echoes the subject: %q", e)
		}
	}
	if got := f.logged(t); len(got) != 0 {
		t.Fatalf("refused requests were logged: %+v", got)
	}
	if open, _ := f.store.Due(context.Background(), f.now, -1, 0); len(open) != 0 {
		t.Fatalf("refused requests were filed: %+v", open)
	}
}

// TestDRPShapeAndLifecycle: a Data Rights Protocol request is answered in
// its shape (open, expected_by 45 days on), stays unverified until the
// privacy team verifies it, can be extended once with a reason, and is
// listed by --due-within.
func TestDRPShapeAndLifecycle(t *testing.T) {
	f := newFixture(t)
	code, v := f.do(t, f.writer, "POST", "/v1/subjects/bob/requests",
		`{"drp.version":"1.0","exercise":"access","regime":"ccpa","agent-request-id":"ag-9","email":"bob@example.com"}`)
	if code != 202 || v["request_id"] != "rq_c_drp-ag-9" || v["status"] != "open" || v["expected_by"] != "2027-01-17T06:00:00Z" {
		t.Fatalf("%d %v", code, v)
	}
	id := "rq_c_drp-ag-9"
	if code, v = f.do(t, f.writer, "GET", "/v1/requests/"+id+"/export", ""); code != 409 || v["reason"] != "not_ready" {
		t.Fatalf("download before done: %d %v", code, v)
	}
	if code, v = f.do(t, f.writer, "POST", "/v1/requests/"+id+"/verify", ""); code != 200 || v["status"] != "verified" || v["updated_by"] != "privacy-center" {
		t.Fatalf("verify: %d %v", code, v)
	}
	if code, _ = f.do(t, f.writer, "POST", "/v1/requests/"+id+"/verify", ""); code != 409 {
		t.Fatalf("verify twice: %d", code)
	}
	if code, _ = f.do(t, f.writer, "POST", "/v1/requests/"+id+"/extend", `{}`); code != 400 {
		t.Fatalf("extend without a reason: %d", code)
	}
	if code, v = f.do(t, f.writer, "POST", "/v1/requests/"+id+"/extend", `{"reason":"records in 3 archives"}`); code != 200 || v["status"] != "extended" {
		t.Fatalf("extend: %d %v", code, v)
	}
	if code, v = f.do(t, f.reader, "GET", "/v1/requests?due_within=50d", ""); code != 200 || len(v["requests"].([]any)) != 0 {
		t.Fatalf("due within 50d after a 45-day extension: %d %v", code, v)
	}
	if code, v = f.do(t, f.reader, "GET", "/v1/requests?due_within=100d", ""); code != 200 || len(v["requests"].([]any)) != 1 {
		t.Fatalf("due within 100d: %d %v", code, v)
	}
	if code, v = f.do(t, f.reader, "GET", "/v1/requests/"+id+"?shape=drp", ""); code != 200 || v["status"] != "in_progress" {
		t.Fatalf("get drp: %d %v", code, v)
	}
	if code, _ = f.do(t, f.reader, "GET", "/v1/requests?due_within=soon", ""); code != 400 {
		t.Fatalf("bad due_within: %d", code)
	}
	if code, _ = f.do(t, f.reader, "GET", "/v1/requests/../../etc", ""); code == 200 {
		t.Fatal("a path id was accepted")
	}
	if code, v = f.do(t, f.writer, "POST", "/v1/requests/"+id+"/refuse", `{"reason":"identity not verifiable"}`); code != 200 || v["status"] != "refused" {
		t.Fatalf("refuse: %d %v", code, v)
	}
	if n := len(f.logged(t)); n != 4 { // filed, verified, extended, refused
		t.Fatalf("%d records logged", n)
	}
}

// TestChangesAreAudited: filing and each change write an audit record
// with the principal, the subject only as its mark, and the reason of a
// refusal only as a code (its text may quote the subject).
func TestChangesAreAudited(t *testing.T) {
	f := newFixture(t)
	f.do(t, f.writer, "POST", "/v1/subjects/zoe-CANARY/export", `{"id":"a1"}`)
	f.do(t, f.writer, "POST", "/v1/requests/rq_c_a1/refuse", `{"reason":"zoe-CANARY asked twice"}`)
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cl.OptValue(kgo.SeedBrokers).([]string)...), kgo.ConsumeTopics("privacy.audit"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var got []string
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if strings.Contains(string(r.Value), "CANARY") {
				t.Fatalf("an audit record holds the subject: %s", r.Value)
			}
			a, err := audit.Decode(r.Value)
			if err != nil || a.Kind != audit.KindRequest || a.Principal != "privacy-center" {
				t.Fatalf("%v %+v", err, a)
			}
			got = append(got, a.Request.Status+"/"+a.Request.Reason)
		})
	}
	if strings.Join(got, ",") != "received/,refused/stated" {
		t.Fatalf("audited %v", got)
	}
}
