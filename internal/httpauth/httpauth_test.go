package httpauth

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/testpki"
)

type fixture struct {
	srv     *httptest.Server
	file    string
	logs    *pipelinetest.SyncBuffer
	metrics *Metrics
	reg     *prometheus.Registry
	now     time.Time
	// reached counts requests that reached a handler.
	reached map[string]int
	mu      sync.Mutex
}

func writeFile(t *testing.T, path string, f File) {
	t.Helper()
	b, _ := json.Marshal(f)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, f File, cfg Config) *fixture {
	t.Helper()
	fx := &fixture{file: filepath.Join(t.TempDir(), "principals.json"), logs: &pipelinetest.SyncBuffer{}, reg: prometheus.NewRegistry(),
		now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC), reached: map[string]int{}}
	writeFile(t, fx.file, f)
	fx.metrics = NewMetrics(fx.reg)
	if cfg.Mode.None() {
		cfg.Mode = Mode{Token: true}
	}
	cfg.File, cfg.Log, cfg.Metrics = fx.file, slog.New(slog.NewJSONHandler(fx.logs, nil)), fx.metrics
	cfg.Now = func() time.Time { return fx.now }
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	handle := func(pattern string, s Scope) {
		mux.Handle(pattern, g.Route(pattern, s, func(w http.ResponseWriter, r *http.Request) {
			p, _ := PrincipalFrom(r.Context())
			fx.mu.Lock()
			fx.reached[pattern]++
			fx.mu.Unlock()
			_, _ = io.WriteString(w, p.Name)
		}))
	}
	handle("GET /v1/subjects/{subject}/consents", ScopeConsentRead)
	handle("PUT /v1/subjects/{subject}/consents/{purpose}", ScopeConsentWrite)
	handle("POST /v1/consents/import", ScopeConsentImport)
	fx.srv = httptest.NewServer(mux)
	t.Cleanup(fx.srv.Close)
	return fx
}

func (fx *fixture) do(t *testing.T, method, path, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, fx.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (fx *fixture) writes() int {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.reached["PUT /v1/subjects/{subject}/consents/{purpose}"]
}

func mustToken(t *testing.T, principal string, scopes ...Scope) (string, TokenEntry) {
	t.Helper()
	tok, e, err := NewToken(principal, scopes, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return tok, e
}

// TestForgedRequestsAreRefused: a request with no token, a malformed
// header, a forged token (right shape, never issued), an expired token and
// a read-only token trying to change consent are each refused with their
// own clear status and message, and none reaches the handler that writes.
func TestForgedRequestsAreRefused(t *testing.T) {
	reader, re := mustToken(t, "dashboard", ScopeConsentRead)
	writer, we := mustToken(t, "privacy-center", ScopeConsentRead, ScopeConsentWrite)
	old, oe := mustToken(t, "old-crm", ScopeConsentWrite)
	oe.Expires = "2026-12-01T00:00:00Z"
	forged, _ := mustToken(t, "privacy-center", ScopeAdmin) // never put in the file
	fx := newFixture(t, File{Tokens: []TokenEntry{re, we, oe}}, Config{})
	put := "/v1/subjects/alice-canary-7781/consents/marketing"
	for _, c := range []struct {
		name, token, auth string
		code              int
		msg, reason       string
	}{
		{"no credentials", "", "", 401, "authentication required", ReasonMissing},
		{"basic auth", "", "Basic YWxpY2U6cGFzc3dvcmQ=", 401, "must be \\\"Bearer <token>\\\"", ReasonMalformed},
		{"forged token", forged, "", 401, "not valid", ReasonUnknown},
		{"expired token", old, "", 401, "expired at 2026-12-01T00:00:00Z", ReasonExpired},
		{"read-only token writes", reader, "", 403, "needs the scope consent:write", ReasonScope},
	} {
		req, _ := http.NewRequest("PUT", fx.srv.URL+put, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := fx.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.msg) {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, b)
		}
		if c.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
		if c.code == 403 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `insufficient_scope`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
		if got := testutil.ToFloat64(fx.metrics.refused.WithLabelValues(c.reason)); got != 1 {
			t.Errorf("%s: refused{reason=%s} = %v", c.name, c.reason, got)
		}
	}
	if n := fx.writes(); n != 0 {
		t.Fatalf("%d refused writes reached the handler", n)
	}
	if code, _, body := fx.do(t, "PUT", put, writer); code != 200 || body != "privacy-center" {
		t.Fatalf("the writer: %d %s", code, body)
	}
	if code, _, _ := fx.do(t, "GET", "/v1/subjects/alice-canary-7781/consents", reader); code != 200 {
		t.Fatalf("the reader reading: %d", code)
	}
	if code, _, _ := fx.do(t, "POST", "/v1/consents/import", writer); code != 403 {
		t.Fatalf("consent:write imports: %d (import needs consent:import)", code)
	}
	if got := testutil.ToFloat64(fx.metrics.requests.WithLabelValues("PUT /v1/subjects/{subject}/consents/{purpose}", "401")); got != 4 {
		t.Errorf("requests{route=PUT..., code=401} = %v", got)
	}
	// The access log names routes and principals, never the subject id.
	logs := string(fx.logs.Bytes())
	if strings.Contains(logs, "alice-canary-7781") || strings.Contains(logs, reader) || strings.Contains(logs, writer) {
		t.Fatalf("the access log holds a subject id or a token:\n%s", logs)
	}
	if !strings.Contains(logs, `"subject_hash":"`) || !strings.Contains(logs, `"principal":"privacy-center"`) {
		t.Fatalf("the access log lacks the subject hash or the principal:\n%s", logs)
	}
}

// TestTokenRotationWithoutRestart: a token added to the file works, and a
// revoked one stops working, within the reload interval and without a
// restart; a broken file keeps the previous principals in force.
func TestTokenRotationWithoutRestart(t *testing.T) {
	first, fe := mustToken(t, "crm", ScopeConsentRead)
	second, se := mustToken(t, "crm", ScopeConsentRead)
	fx := newFixture(t, File{Tokens: []TokenEntry{fe}}, Config{})
	get := "/v1/subjects/s1/consents"
	if code, _, _ := fx.do(t, "GET", get, first); code != 200 {
		t.Fatalf("first token: %d", code)
	}
	writeFile(t, fx.file, File{Tokens: []TokenEntry{fe, se}}) // rotation step 1: both valid
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _, _ := fx.do(t, "GET", get, second); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the added token was not picked up")
		}
		time.Sleep(200 * time.Millisecond)
	}
	writeFile(t, fx.file, File{Tokens: []TokenEntry{se}}) // step 2: revoke the first
	for {
		code, _, _ := fx.do(t, "GET", get, first)
		if code == 401 {
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("the revoked token still works")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := os.WriteFile(fx.file, []byte(`{"tokens":[{"principal":"x"`), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if code, _, _ := fx.do(t, "GET", get, second); code != 200 {
		t.Fatalf("a broken file revoked everyone: %d", code)
	}
	if testutil.ToFloat64(fx.metrics.reloads.WithLabelValues("error")) < 1 {
		t.Fatal("the failed reload was not counted")
	}
}

// TestFloodOfForgedTokens: an address sending forged tokens is cut off
// with 429 after the failure burst, and a legitimate principal from
// another address is not; a principal over its own rate gets 429 with
// Retry-After and nothing reaches the handler past the limit.
func TestFloodOfForgedTokens(t *testing.T) {
	good, ge := mustToken(t, "privacy-center", ScopeConsentWrite)
	fx := newFixture(t, File{Tokens: []TokenEntry{ge}}, Config{Mode: Mode{Token: true}, Rate: 1, Burst: 5, FailureRate: 0.01, FailureBurst: 10})
	put := "/v1/subjects/s1/consents/analytics"
	codes := map[int]int{}
	for range 200 {
		forged, _ := mustToken(t, "x", ScopeAdmin)
		code, _, _ := fx.do(t, "PUT", put, forged)
		codes[code]++
	}
	if codes[401] != 10 || codes[429] != 190 {
		t.Fatalf("forged flood: %v (want 10 x 401 then 429)", codes)
	}
	// The flood came from 127.0.0.1: the same address is now cut off even
	// with a good token, which is the point (it cannot keep guessing).
	if code, h, _ := fx.do(t, "PUT", put, good); code != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("flooding address with a good token: %d", code)
	}
	// A principal's own rate, on a fresh guard.
	fx = newFixture(t, File{Tokens: []TokenEntry{ge}}, Config{Mode: Mode{Token: true}, Rate: 0.01, Burst: 5})
	codes = map[int]int{}
	for range 20 {
		code, _, _ := fx.do(t, "PUT", put, good)
		codes[code]++
	}
	if codes[200] != 5 || codes[429] != 15 || fx.writes() != 5 {
		t.Fatalf("principal rate: %v, %d writes", codes, fx.writes())
	}
}

func TestParseFileRefusesBadEntries(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for name, body := range map[string]string{
		"unknown field":   `{"tokens":[],"users":[]}`,
		"plain token":     `{"tokens":[{"principal":"a","scopes":["admin"],"sha256":"ppt_abc"}]}`,
		"unknown scope":   `{"tokens":[{"principal":"a","scopes":["consent:delete"],"sha256":"` + h + `"}]}`,
		"no scopes":       `{"tokens":[{"principal":"a","scopes":[],"sha256":"` + h + `"}]}`,
		"no principal":    `{"tokens":[{"principal":"","scopes":["admin"],"sha256":"` + h + `"}]}`,
		"bad expiry":      `{"tokens":[{"principal":"a","scopes":["admin"],"sha256":"` + h + `","expires":"tomorrow"}]}`,
		"duplicate hash":  `{"tokens":[{"principal":"a","scopes":["admin"],"sha256":"` + h + `"},{"principal":"b","scopes":["admin"],"sha256":"` + h + `"}]}`,
		"duplicate cert":  `{"certificates":[{"subject":"CN=a","scopes":["admin"]},{"subject":"CN=a","scopes":["admin"]}]}`,
		"negative rate":   `{"certificates":[{"subject":"CN=a","scopes":["admin"],"rate":-1}]}`,
		"trailing object": `{"tokens":[{"principal":"a","scopes":["admin"],"sha256":"` + h + `","extra":1}]}`,
	} {
		if _, err := ParseFile([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseFile([]byte(`{"tokens":[{"principal":"a","scopes":["consent:*"],"sha256":"` + h + `","expires":"2027-01-01T00:00:00Z","rate":5}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Mode: Mode{Token: true}}); err == nil || !strings.Contains(err.Error(), "PIPELINE_CONSENT_API_AUTH_FILE") {
		t.Fatalf("token mode without a file: %v", err)
	}
	for _, s := range []string{"token", "mtls", "token,mtls", "none"} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "basic", "none,token"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestScopes(t *testing.T) {
	p := Principal{Scopes: []Scope{"consent:*"}}
	if !p.Allows(ScopeConsentWrite) || !p.Allows(ScopeConsentImport) || p.Allows(ScopeRequestsRead) || p.Allows(ScopeAdmin) {
		t.Fatal("consent:*")
	}
	if a := (Principal{Scopes: []Scope{ScopeAdmin}}); !a.Allows(ScopeRequestsWrite) {
		t.Fatal("admin")
	}
	if r := (Principal{Scopes: []Scope{ScopeConsentRead}}); r.Allows(ScopeConsentWrite) {
		t.Fatal("read allows write")
	}
}

// TestMutualTLSPrincipals: a client certificate the CA signed and the file
// lists is its principal; a trusted certificate the file does not list
// gets 403; no certificate gets 401.
func TestMutualTLSPrincipals(t *testing.T) {
	ca := testpki.New(t)
	server := ca.Server("server")
	crm := ca.Client("crm", pkix.Name{CommonName: "crm-sync", Organization: []string{"Acme"}})
	unknown := ca.Client("intern", pkix.Name{CommonName: "intern-laptop"})
	fx := newFixture(t, File{Certificates: []CertificateEntry{{Subject: "CN=crm-sync,O=Acme", Principal: "crm", Scopes: []Scope{ScopeConsentRead}}}},
		Config{Mode: Mode{MTLS: true}})
	fx.srv.Close()
	srv := httptest.NewUnstartedServer(fx.srv.Config.Handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{server.TLS}, ClientCAs: ca.Pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	get := func(certs ...testpki.Leaf) (int, string) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(certs...)}}
		resp, err := cl.Get(srv.URL + "/v1/subjects/s1/consents")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(crm); code != 200 || body != "crm" {
		t.Fatalf("listed certificate: %d %s", code, body)
	}
	if code, body := get(unknown); code != 403 || !strings.Contains(body, "not a principal") {
		t.Fatalf("unlisted certificate: %d %s", code, body)
	}
	if code, body := get(); code != 401 || !strings.Contains(body, "client certificate") {
		t.Fatalf("no certificate: %d %s", code, body)
	}
}
