package consentapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/kafkaio"
)

type env struct {
	srv     *httptest.Server
	brokers []string
	store   *consent.RedisStore
}

func newEnv(t *testing.T) *env {
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
	store := consent.NewRedisStore(rdb)
	api, err := New(Config{Producer: cl, Topic: "privacy.consent", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{srv: srv, brokers: c.ListenAddrs(), store: store}
}

func (e *env) do(t *testing.T, method, path, ctype, body string) (int, string) {
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) written(t *testing.T) []consentlog.Change {
	recs, err := kafkaio.ReadAll(context.Background(), e.brokers, "privacy.consent")
	if err != nil {
		t.Fatal(err)
	}
	var out []consentlog.Change
	for _, r := range recs {
		c, err := consentlog.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != string(consentlog.Key(c.SubjectID, c.Purpose)) {
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
	if len(w) != 3 {
		t.Fatalf("wrote %d changes, want 3", len(w))
	}
	// Reads come from Redis, written by the sync.
	s, _ := consentsync.New(consentsync.Config{Brokers: e.brokers, Topic: "privacy.consent", Group: "g", Store: e.store})
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
	code, body = e.do(t, "GET", "/v1/subjects/"+url.PathEscape("cust/42 ü")+"/consents/history", "", "")
	var h History
	if code != 200 || json.Unmarshal([]byte(body), &h) != nil || len(h.Changes) != 1 || h.Changes[0].Source != "mobile_app" {
		t.Fatalf("history: %d %s", code, body)
	}
	_ = time.Now
}
