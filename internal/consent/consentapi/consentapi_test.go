package consentapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentstring"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/schemas"
)

type env struct {
	srv     *httptest.Server
	brokers []string
	store   *consentredis.RedisStore
}

func newEnv(t *testing.T, ledger ...Ledger) *env {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "privacy.consent"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(consentlog.Partitioner()))
	t.Cleanup(cl.Close)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	store := consentredis.NewRedisStore(rdb)
	open, err := httpauth.New(httpauth.Config{}) // authentication has its own tests (internal/httpauth)
	if err != nil {
		t.Fatal(err)
	}
	strs, err := consentstring.Load(schemas.ConsentStringsJSON())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Producer: cl, Topic: "privacy.consent", Store: store, Guard: open, ConsentStrings: strs}
	if len(ledger) > 0 {
		cfg.Ledger = ledger[0]
	}
	api, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{srv: srv, brokers: c.ListenAddrs(), store: store}
}

func (e *env) do(t *testing.T, method, path, ctype, body string, header ...string) (int, string) {
	t.Helper()
	return pipelinetest.Request(t, method, e.srv.URL+path, ctype, body, header...)
}

func (e *env) written(t *testing.T) []consentlog.Change {
	recs, err := kafkaio.ReadAll(context.Background(), kafkaconn.Config{Brokers: e.brokers}, "privacy.consent")
	if err != nil {
		t.Fatal(err)
	}
	var out []consentlog.Change
	for _, r := range recs {
		c, err := consentlog.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != string(c.Key()) {
			t.Fatalf("key %q", r.Key)
		}
		out = append(out, c)
	}
	return out
}

func TestBadInputWritesNothing(t *testing.T) {
	e := newEnv(t)
	good := `{"state":"granted","jurisdiction":"gdpr","source":"web_form","policy_version":"v1"}`
	long := url.PathEscape(strings.Repeat("x", 300))
	cases := []struct{ method, path, body, want string }{
		{"PUT", "/v1/subjects/c1/consents/telepathy", good, "unknown purpose"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"maybe","source":"web_form","policy_version":"v1"}`, "unknown consent state"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","jurisdiction":"mars","source":"web_form","policy_version":"v1"}`, "unknown jurisdiction"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","source":"fax","policy_version":"v1"}`, "unknown source"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","source":"web_form"}`, "policy_version"},
		{"PUT", "/v1/subjects/%20/consents/analytics", good, "subject id is empty"},
		{"PUT", "/v1/subjects/" + long + "/consents/analytics", good, "longer than 256"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":`, "malformed JSON"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","colour":"red","source":"web_form","policy_version":"v1"}`, "malformed JSON"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","source":"web_form","policy_version":"v1","timestamp":"yesterday"}`, "RFC 3339"},
		{"POST", "/v1/subjects/c1/consents/analytics/withdraw", `{"state":"granted"}`, "withdraw takes no state"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","source":"web_form","policy_version":"v1","gpc":"yes"}`, "malformed JSON"},
		{"PUT", "/v1/subjects/c1/consents/analytics", `{"state":"granted","source":"gpc_signal","policy_version":"v1","gpc":false}`, "gpc must be true"},
		{"PUT", "/v1/subjects/c1/profile", `{"source":"import"}`, "needs a jurisdiction other than unknown, or a gpc value"},
		{"PUT", "/v1/subjects/c1/profile", `{"jurisdiction":"unknown","source":"import"}`, "needs a jurisdiction"},
		{"PUT", "/v1/subjects/c1/profile", `{"jurisdiction":"mars","source":"import"}`, "unknown jurisdiction"},
		{"PUT", "/v1/subjects/c1/profile", `{"jurisdiction":"ccpa"}`, "unknown source"},
		{"PUT", "/v1/subjects/c1/profile", `{"jurisdiction":"ccpa","source":"import","state":"granted"}`, "malformed JSON"},
		{"PUT", "/v1/subjects/c1/profile", `{"jurisdiction":"ccpa","source":"import","purpose":"analytics"}`, "malformed JSON"},
		{"PUT", "/v1/subjects/c1/profile", ``, "malformed JSON"},
		{"PUT", "/v1/subjects/%20/profile", `{"jurisdiction":"ccpa","source":"import"}`, "subject id is empty"},
		{"PUT", "/v1/subjects/c1/profile", `{"gpc":false,"source":"gpc_signal"}`, "gpc must be true"},
		{"PUT", "/v1/subjects/c1/profile", `{"gpc":true,"source":"import","timestamp":"2999-01-01T00:00:00Z"}`, "not in the future"},
	}
	for _, c := range cases {
		code, body := e.do(t, c.method, c.path, "application/json", c.body)
		if code < 400 || code >= 500 || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s (want 4xx with %q)", c.method, c.path, c.body, code, body, c.want)
		}
	}
	if code, _ := e.do(t, "POST", "/v1/consents/import", "application/pdf", "x"); code != http.StatusUnsupportedMediaType {
		t.Errorf("import of a PDF: %d", code)
	}
	// A body that turns GPC off contradicts the browser's Sec-GPC: 1.
	if code, body := e.do(t, "PUT", "/v1/subjects/c1/profile", "application/json", `{"gpc":false,"source":"web_form"}`, "Sec-GPC", "1"); code != http.StatusBadRequest || !strings.Contains(body, "Sec-GPC") {
		t.Errorf("gpc false with Sec-GPC: 1: %d %s", code, body)
	}
	// The subject is never echoed.
	if _, body := e.do(t, "PUT", "/v1/subjects/secret-subject-7/profile", "application/json", `{"source":"import"}`); strings.Contains(body, "secret-subject-7") {
		t.Errorf("error echoes the subject: %s", body)
	}
	if w := e.written(t); len(w) != 0 {
		t.Fatalf("bad input wrote %d changes", len(w))
	}
}

func TestSetWithdrawImportGetHistory(t *testing.T) {
	e := newEnv(t)
	code, body := e.do(t, "PUT", "/v1/subjects/"+url.PathEscape("cust/42 ü")+"/consents/marketing", "application/json",
		`{"state":"granted","jurisdiction":"ccpa","source":"mobile_app","policy_version":"v1"}`)
	var rc Receipt
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &rc) != nil || rc.SubjectID != "cust/42 ü" || rc.ReceiptID == "" {
		t.Fatalf("set: %d %s", code, body)
	}
	if code, body = e.do(t, "POST", "/v1/subjects/c2/consents/analytics/withdraw", "", ""); code != http.StatusAccepted {
		t.Fatalf("withdraw: %d %s", code, body)
	}
	csv := "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp\nc3,analytics,granted,pdpa,import,v1,\nc4,nope,granted,pdpa,import,v1,\n"
	code, body = e.do(t, "POST", "/v1/consents/import", "text/csv", csv)
	var ir ImportResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ir) != nil || ir.Accepted != 1 || ir.Rejected != 1 || ir.Errors[0].Line != 3 {
		t.Fatalf("import: %d %s", code, body)
	}
	w := e.written(t)
	if len(w) != 5 {
		// the set and the import line carry a jurisdiction: each is
		// followed by its subject-level companion
		t.Fatalf("wrote %d changes, want 5", len(w))
	}
	// Reads come from Redis, written by the sync.
	s, _ := consentsync.New(consentsync.Config{Kafka: kafkaconn.Config{Brokers: e.brokers}, Topic: "privacy.consent", Group: "g", Store: e.store})
	if _, err := s.Apply(context.Background(), w, nil); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.do(t, "GET", "/v1/subjects/c2/consents", "", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("read before the store is loaded: %d, want 503", code)
	}
	e.store.MarkLoaded(context.Background())
	code, body = e.do(t, "GET", "/v1/subjects/c2/consents", "", "")
	var st State
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Purposes["analytics"].State != "withdrawn" || st.Purposes["marketing"].State != "unset" {
		t.Fatalf("get: %d %s", code, body)
	}
	if code, _ = e.do(t, "GET", "/v1/subjects/nobody/consents", "", ""); code != http.StatusNotFound {
		t.Fatalf("unknown subject: %d", code)
	}
	if st.GPC || st.GPCUpdatedAt != "" || st.Jurisdiction != "unknown" {
		t.Fatalf("get: %s", body)
	}
	code, body = e.do(t, "GET", "/v1/subjects/"+url.PathEscape("cust/42 ü")+"/consents/history", "", "")
	var h History
	if code != 200 || json.Unmarshal([]byte(body), &h) != nil || len(h.Changes) != 1 || h.Changes[0].Source != "mobile_app" {
		t.Fatalf("history: %d %s", code, body)
	}
}

// sync applies everything written so far to Redis and marks it loaded.
func (e *env) sync(t *testing.T) {
	t.Helper()
	s, _ := consentsync.New(consentsync.Config{Kafka: kafkaconn.Config{Brokers: e.brokers}, Topic: "privacy.consent", Group: "g", Store: e.store})
	if _, err := s.Apply(context.Background(), e.written(t), nil); err != nil {
		t.Fatal(err)
	}
	e.store.MarkLoaded(context.Background())
}

func (e *env) state(t *testing.T, subject string) State {
	t.Helper()
	code, body := e.do(t, "GET", "/v1/subjects/"+url.PathEscape(subject)+"/consents", "", "")
	var st State
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("get %s: %d %s", subject, code, body)
	}
	return st
}

func TestProfileAndGPC(t *testing.T) {
	e := newEnv(t)
	ts := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	// A jurisdiction alone.
	code, body := e.do(t, "PUT", "/v1/subjects/ca-1/profile", "application/json", `{"jurisdiction":"ccpa","source":"import","timestamp":"`+ts.Format(time.RFC3339Nano)+`"}`)
	var pr ProfileReceipt
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &pr) != nil || pr.Jurisdiction != "ccpa" || pr.GPC != nil || pr.GPCSignalReceiptID != "" || pr.ReceiptID == "" {
		t.Fatalf("profile: %d %s", code, body)
	}
	// A GPC signal alone: source gpc_signal implies gpc true.
	code, body = e.do(t, "PUT", "/v1/subjects/ca-2/profile", "application/json", `{"source":"gpc_signal"}`)
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &pr) != nil || pr.GPC == nil || !*pr.GPC || pr.Jurisdiction != "unknown" {
		t.Fatalf("gpc profile: %d %s", code, body)
	}
	// A choice with gpc, and the Sec-GPC header on a choice without it.
	code, body = e.do(t, "PUT", "/v1/subjects/ca-3/consents/analytics", "application/json", `{"state":"granted","jurisdiction":"ccpa","source":"web_form","policy_version":"v1","gpc":true}`)
	var rc Receipt
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &rc) != nil || rc.GPC == nil || !*rc.GPC {
		t.Fatalf("set with gpc: %d %s", code, body)
	}
	code, body = e.do(t, "POST", "/v1/subjects/ca-4/consents/marketing/withdraw", "", "", "Sec-GPC", "1")
	rc = Receipt{}
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &rc) != nil || rc.GPC != nil || rc.GPCSignalReceiptID == "" || rc.GPCSignalReceiptID == rc.ReceiptID {
		t.Fatalf("withdraw with Sec-GPC: %d %s", code, body)
	}
	// Sec-GPC other than 1 records nothing more.
	code, body = e.do(t, "PUT", "/v1/subjects/ca-5/profile", "application/json", `{"jurisdiction":"gdpr","source":"web_form"}`, "Sec-GPC", "0")
	if code != http.StatusAccepted || strings.Contains(body, "gpc_signal_receipt_id") {
		t.Fatalf("Sec-GPC: 0: %d %s", code, body)
	}
	w := e.written(t)
	var keys []string
	for _, c := range w {
		keys = append(keys, string(c.Key()))
		if c.Source == consentlog.GPCSignal && (c.GPC != consent.GPCOn || !c.IsSubjectLevel()) {
			t.Errorf("gpc signal %+v", c)
		}
	}
	slices.Sort(keys)
	want := []string{"ca-1/jurisdiction", "ca-2/gpc", "ca-3/analytics", "ca-3/profile", "ca-4/gpc", "ca-4/marketing", "ca-5/jurisdiction"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	e.sync(t)
	// A subject with only a subject-level record is found.
	st := e.state(t, "ca-1")
	if st.Jurisdiction != "ccpa" || st.JurisdictionUpdatedAt != ts.Format(time.RFC3339Nano) || st.GPC || st.Purposes["analytics"].State != "unset" {
		t.Fatalf("ca-1 %+v", st)
	}
	if st := e.state(t, "ca-2"); !st.GPC || st.GPCUpdatedAt == "" || st.Jurisdiction != "unknown" {
		t.Fatalf("ca-2 %+v", st)
	}
	if st := e.state(t, "ca-3"); !st.GPC || st.Jurisdiction != "ccpa" || st.Purposes["analytics"].State != "granted" {
		t.Fatalf("ca-3 %+v", st)
	}
	if st := e.state(t, "ca-4"); !st.GPC || st.Purposes["marketing"].State != "withdrawn" {
		t.Fatalf("ca-4 %+v", st)
	}
	// GPC off, newer, clears the signal.
	if code, body := e.do(t, "PUT", "/v1/subjects/ca-2/profile", "application/json", `{"gpc":false,"source":"web_form"}`); code != http.StatusAccepted {
		t.Fatalf("gpc off: %d %s", code, body)
	}
	e.sync(t)
	if st := e.state(t, "ca-2"); st.GPC || st.GPCUpdatedAt == "" {
		t.Fatalf("ca-2 after off %+v", st)
	}
	code, body = e.do(t, "GET", "/v1/subjects/ca-2/consents/history", "", "")
	var h History
	if code != 200 || json.Unmarshal([]byte(body), &h) != nil || len(h.Changes) != 2 || h.Changes[0].GPC != "false" || h.Changes[1].GPC != "true" || h.Changes[0].Purpose != "" {
		t.Fatalf("history: %d %s", code, body)
	}
	if !strings.Contains(body, `"gpc":false`) || strings.Contains(body, `"purpose"`) || strings.Contains(body, `"state"`) {
		t.Fatalf("history JSON: %s", body)
	}
}

func TestImportSubjectLevelRows(t *testing.T) {
	e := newEnv(t)
	csv := "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp,gpc\n" +
		"ca-1,,,ccpa,import,,,\n" +
		"ca-2,,,ccpa,import,,,true\n" +
		"ca-3,marketing,denied,,import,v1,,1\n" +
		"ca-4,,,,import,,,\n"
	code, body := e.do(t, "POST", "/v1/consents/import", "text/csv", csv)
	var ir ImportResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ir) != nil || ir.Accepted != 3 || ir.Rejected != 1 || ir.Errors[0].Line != 5 {
		t.Fatalf("import: %d %s", code, body)
	}
	jsonl := `{"subject_id":"ca-5","jurisdiction":"ccpa","source":"import","gpc":false}` + "\n"
	if code, body := e.do(t, "POST", "/v1/consents/import", "application/x-ndjson", jsonl); code != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("import jsonl: %d %s", code, body)
	}
	e.sync(t)
	for sub, want := range map[string]struct {
		jur string
		gpc bool
	}{"ca-1": {"ccpa", false}, "ca-2": {"ccpa", true}, "ca-3": {"unknown", true}, "ca-5": {"ccpa", false}} {
		if st := e.state(t, sub); st.Jurisdiction != want.jur || st.GPC != want.gpc {
			t.Errorf("%s: %+v", sub, st)
		}
	}
}

// erasedLedger says the listed subjects were erased.
type erasedLedger map[string]bool

func (l erasedLedger) Erased(_ context.Context, subjects []string) ([]bool, error) {
	out := make([]bool, len(subjects))
	for i, s := range subjects {
		out[i] = l[s]
	}
	return out, nil
}

// TestErasedSubjectsChangesRefused (attack: a grant racing or following an
// erasure): a set, a withdrawal or a profile for an erased subject gets 409
// with reason erased and writes nothing; an import drops and counts its
// rows and records the others.
func TestErasedSubjectsChangesRefused(t *testing.T) {
	e := newEnv(t, erasedLedger{"gone-1": true})
	body := `{"state":"granted","jurisdiction":"gdpr","source":"web_form","policy_version":"v1"}`
	for _, path := range []string{"/v1/subjects/gone-1/consents/marketing", "/v1/subjects/gone-1/profile"} {
		b := body
		if strings.HasSuffix(path, "profile") {
			b = `{"jurisdiction":"gdpr","source":"web_form","policy_version":"v1"}`
		}
		if code, resp := e.do(t, "PUT", path, "application/json", b); code != 409 || !strings.Contains(resp, "erased") {
			t.Fatalf("PUT %s: %d %s", path, code, resp)
		}
	}
	if code, resp := e.do(t, "POST", "/v1/subjects/gone-1/consents/marketing/withdraw", "application/json", `{}`); code != 409 {
		t.Fatalf("withdraw: %d %s", code, resp)
	}
	if n := len(e.written(t)); n != 0 {
		t.Fatalf("%d changes written for an erased subject", n)
	}
	csv := "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp\n" +
		"gone-1,analytics,granted,gdpr,import,v1,\nkept-1,analytics,granted,gdpr,import,v1,\n"
	code, resp := e.do(t, "POST", "/v1/consents/import", "text/csv", csv)
	if code != 200 || !strings.Contains(resp, `"erased":1`) || !strings.Contains(resp, `"accepted":1`) {
		t.Fatalf("import: %d %s", code, resp)
	}
	for _, c := range e.written(t) {
		if c.SubjectID == "gone-1" {
			t.Fatal("an imported change of an erased subject was written")
		}
	}
}
