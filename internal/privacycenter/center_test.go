package privacycenter

import (
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/privacycenter/link"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestapi"
	"github.com/privacy-pipeline/pipeline/internal/ropa"
)

// fakeAPI stands in for the consent and requests API (their own tests and
// the browser test on real services cover them): it keeps a subject's
// state in memory and records every call with the subject it names.
type fakeAPI struct {
	mu    sync.Mutex
	calls []call
	state map[string]*consentapi.State
	reqs  map[string]requests.Request
}

type call struct {
	Method, Subject, Route, SecGPC string
	Body                           map[string]any
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{state: map[string]*consentapi.State{}, reqs: map[string]requests.Request{}}
}

func (f *fakeAPI) handler() http.Handler {
	mux := http.NewServeMux()
	rec := func(r *http.Request, route string) map[string]any {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		f.mu.Lock()
		f.calls = append(f.calls, call{Method: r.Method, Subject: r.PathValue("subject"), Route: route, SecGPC: r.Header.Get("Sec-GPC"), Body: body})
		f.mu.Unlock()
		return body
	}
	js := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/subjects/{subject}/consents", func(w http.ResponseWriter, r *http.Request) {
		rec(r, "consents")
		f.mu.Lock()
		defer f.mu.Unlock()
		st, ok := f.state[r.PathValue("subject")]
		if !ok {
			js(w, 404, map[string]string{"error": "no consent recorded for this subject"})
			return
		}
		js(w, 200, st)
	})
	mux.HandleFunc("GET /v1/subjects/{subject}/consents/history", func(w http.ResponseWriter, r *http.Request) {
		rec(r, "history")
		js(w, 200, consentapi.History{Changes: []consent.HistoryEntry{{Purpose: "marketing", State: "granted", Source: "web_form", Timestamp: "2026-12-01T10:00:00Z"}}})
	})
	mux.HandleFunc("GET /v1/subjects/{subject}/requests", func(w http.ResponseWriter, r *http.Request) {
		rec(r, "requests")
		f.mu.Lock()
		defer f.mu.Unlock()
		var l requestapi.List
		for _, q := range f.reqs {
			if q.Subject == r.PathValue("subject") {
				l.Requests = append(l.Requests, q)
			}
		}
		js(w, 200, l)
	})
	mux.HandleFunc("GET /v1/requests", func(w http.ResponseWriter, r *http.Request) {
		rec(r, "due")
		f.mu.Lock()
		defer f.mu.Unlock()
		var l requestapi.List
		for _, q := range f.reqs {
			l.Requests = append(l.Requests, q)
		}
		js(w, 200, l)
	})
	mux.HandleFunc("GET /v1/requests/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec(r, "request")
		f.mu.Lock()
		defer f.mu.Unlock()
		q, ok := f.reqs[r.PathValue("id")]
		if !ok {
			js(w, 404, map[string]string{"error": "no such request"})
			return
		}
		js(w, 200, requestapi.Filed{Request: q})
	})
	mux.HandleFunc("GET /v1/requests/{id}/export", func(w http.ResponseWriter, r *http.Request) {
		rec(r, "export")
		js(w, 200, map[string]string{"subject_id": f.reqs[r.PathValue("id")].Subject})
	})
	change := func(route, state string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			rec(r, route)
			f.mu.Lock()
			defer f.mu.Unlock()
			sub := r.PathValue("subject")
			st := f.state[sub]
			if st == nil {
				st = &consentapi.State{SubjectID: sub, Jurisdiction: "unknown", Purposes: map[string]consentapi.PurposeState{}}
				f.state[sub] = st
			}
			st.Version++
			if state != "" {
				st.Purposes[r.PathValue("purpose")] = consentapi.PurposeState{State: state, UpdatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
			} else {
				st.GPC = true
			}
			js(w, 202, map[string]string{"receipt_id": "r"})
		}
	}
	mux.HandleFunc("PUT /v1/subjects/{subject}/consents/{purpose}", change("grant", "granted"))
	mux.HandleFunc("POST /v1/subjects/{subject}/consents/{purpose}/withdraw", change("withdraw", "withdrawn"))
	mux.HandleFunc("PUT /v1/subjects/{subject}/profile", change("profile", ""))
	mux.HandleFunc("POST /v1/subjects/{subject}/requests", func(w http.ResponseWriter, r *http.Request) {
		body := rec(r, "file")
		q, _ := requests.New(requests.NewID(), requests.Kind(body["kind"].(string)), r.PathValue("subject"), requests.GDPR, "api", "privacy-center", true, time.Now())
		f.mu.Lock()
		f.reqs[q.ID] = q
		f.mu.Unlock()
		js(w, 202, requestapi.Filed{Request: q})
	})
	return mux
}

func (f *fakeAPI) callsOf(route string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.Route == route {
			out = append(out, c)
		}
	}
	return out
}

type env struct {
	key             tink.AEAD
	srv             *httptest.Server
	api             *fakeAPI
	center          *Server
	sealer, foreign *link.Sealer
	reg             *prometheus.Registry
	admin, reader   string
	file            string // the principals file
}

func newKey(t *testing.T) tink.AEAD {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newSealer(t *testing.T, a tink.AEAD, opts ...link.Option) *link.Sealer {
	t.Helper()
	s, err := link.New(a, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sealerWith is a sealer of the env's key with other options.
func (e *env) sealerWith(t *testing.T, opts ...link.Option) *link.Sealer {
	return newSealer(t, e.key, opts...)
}

func record(t *testing.T) ropa.Record {
	t.Helper()
	in, err := ropa.Default()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ropa.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func newEnv(t *testing.T, metricsURLs ...string) *env {
	t.Helper()
	admin, ae, _ := httpauth.NewToken("privacy-officer", []httpauth.Scope{httpauth.ScopeAdmin}, time.Time{})
	reader, re, _ := httpauth.NewToken("crm", []httpauth.Scope{httpauth.ScopeConsentRead, httpauth.ScopeLinksWrite}, time.Time{})
	b, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{ae, re}})
	file := filepath.Join(t.TempDir(), "principals.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	guard, err := httpauth.New(httpauth.Config{Mode: httpauth.Mode{Token: true}, File: file})
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	e := &env{key: key, api: newFakeAPI(), sealer: newSealer(t, key), foreign: newSealer(t, newKey(t)), reg: prometheus.NewRegistry(), admin: admin, reader: reader}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	e.file = file
	e.center, err = New(Config{Sealer: e.sealer, API: e.api.handler(), Record: record(t), Guard: guard, MetricsURLs: metricsURLs,
		Sessions:   NewSessions(rdb, "pp:pc:"),
		Registerer: e.reg, SettleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/privacy/", e.center.Handler())
	e.center.RegisterLinks(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a client with cookies that does not follow redirects.
func (e *env) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) get(t *testing.T, c *http.Client, path string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

func (e *env) post(t *testing.T, c *http.Client, path string, form url.Values, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// signIn opens a link for subject and returns the browser holding the
// session.
func (e *env) signIn(t *testing.T, subject string) *http.Client {
	t.Helper()
	tok, err := e.sealer.Mint(subject, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := e.browser(t)
	if code, _, h := e.open(t, c, tok, ""); code != http.StatusSeeOther || h.Get("Location") != "/privacy/" {
		t.Fatalf("open: %d to %q", code, h.Get("Location"))
	}
	return c
}

// open follows a link as a browser does: the landing page, then its
// button.
func (e *env) open(t *testing.T, c *http.Client, tok, lang string) (int, string, http.Header) {
	t.Helper()
	code, body, h := e.get(t, c, "/privacy/open?t="+url.QueryEscape(tok))
	if code != http.StatusOK || !strings.Contains(body, `id="continue"`) {
		return code, body, h
	}
	return e.post(t, c, "/privacy/open", url.Values{"t": {tok}, "lang": {lang}})
}

// TestLinkRefusals names the attacks on the way in: no token, garbage, a
// token sealed by another key (another deployment, or a forger), one of
// the right key that expired, one issued in the future and one that claims
// a longer life than allowed; each is refused with a page that says why,
// counted by reason, and nothing reaches the API.
func TestLinkRefusals(t *testing.T) {
	e := newEnv(t)
	foreign, _ := e.foreign.Mint("canary-subject-a", time.Minute)
	past, _ := e.sealerWith(t, link.WithClock(func() time.Time { return time.Now().Add(-time.Hour) })).Mint("canary-subject-a", time.Minute)
	future, _ := e.sealerWith(t, link.WithClock(func() time.Time { return time.Now().Add(time.Hour) })).Mint("canary-subject-a", time.Minute)
	long, _ := e.sealerWith(t, link.WithMaxTTL(24*time.Hour)).Mint("canary-subject-a", 2*time.Hour)
	for _, tc := range []struct {
		name, path string
		code       int
		reason     string
	}{
		{"missing on open", "/privacy/open", 401, RefusedMissing},
		{"missing cookie", "/privacy/", 401, RefusedMissing},
		{"garbage", "/privacy/open?t=not-a-token", 403, RefusedMalformed},
		{"another key", "/privacy/open?t=" + url.QueryEscape(foreign), 403, RefusedForged},
		{"expired", "/privacy/open?t=" + url.QueryEscape(past), 401, RefusedExpired},
		{"future", "/privacy/open?t=" + url.QueryEscape(future), 401, RefusedFuture},
		{"too long", "/privacy/open?t=" + url.QueryEscape(long), 401, RefusedTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.center.refused.WithLabelValues(tc.reason))
			code, body, h := e.get(t, e.browser(t), tc.path)
			if code != tc.code || !strings.Contains(body, `data-reason="`+tc.reason+`"`) {
				t.Fatalf("%d, want %d with reason %s:\n%.400s", code, tc.code, tc.reason, body)
			}
			if strings.Contains(body, "canary-subject") || h.Get("Set-Cookie") != "" {
				t.Fatal("the refusal names the subject or opens a session")
			}
			if testutil.ToFloat64(e.center.refused.WithLabelValues(tc.reason)) != before+1 {
				t.Fatal("not counted")
			}
		})
	}
	if n := len(e.api.calls); n != 0 {
		t.Fatalf("refused requests reached the API %d times", n)
	}
}

// TestSubjectComesOnlyFromTheToken: a customer signed in as A tries to act
// on B (B's id in the form, the query and the path of the API they might
// guess); every API call names A.
func TestSubjectComesOnlyFromTheToken(t *testing.T) {
	e := newEnv(t)
	c := e.signIn(t, "canary-subject-a")
	if code, body, _ := e.get(t, c, "/privacy/?subject=canary-subject-b"); code != 200 || !strings.Contains(body, `id="switch-marketing"`) {
		t.Fatalf("page: %d %.300s", code, body)
	}
	code, _, h := e.post(t, c, "/privacy/consents/marketing?subject=canary-subject-b", url.Values{"state": {"granted"}, "subject_id": {"canary-subject-b"}})
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/privacy/?m=granted") {
		t.Fatalf("grant: %d %s", code, h.Get("Location"))
	}
	e.post(t, c, "/privacy/consents/marketing", url.Values{"state": {"withdrawn"}})
	e.post(t, c, "/privacy/export", url.Values{"subject": {"canary-subject-b"}})
	if code, _, _ := e.post(t, c, "/privacy/consents/not_a_purpose", url.Values{"state": {"granted"}}); code != 400 {
		t.Fatalf("an unknown purpose: %d", code)
	}
	if code, _, _ := e.post(t, c, "/privacy/consents/marketing", url.Values{"state": {"maybe"}}); code != 400 {
		t.Fatalf("an unknown choice: %d", code)
	}
	e.api.mu.Lock()
	defer e.api.mu.Unlock()
	if len(e.api.calls) < 6 {
		t.Fatalf("%d API calls", len(e.api.calls))
	}
	for _, c := range e.api.calls {
		if c.Subject != "" && c.Subject != "canary-subject-a" {
			t.Fatalf("an API call for %q: %+v", c.Subject, c)
		}
	}
	st := e.api.state["canary-subject-a"]
	if st == nil || st.Purposes["marketing"].State != "withdrawn" {
		t.Fatalf("state %+v", st)
	}
}

// TestChoicesCarryThePolicyAndTheSource: a switch is a web_form change
// under the policy version in force, keeping the subject's jurisdiction.
func TestChoicesCarryThePolicyAndTheSource(t *testing.T) {
	e := newEnv(t)
	e.api.state["canary-subject-a"] = &consentapi.State{Jurisdiction: "vn_decree13", Purposes: map[string]consentapi.PurposeState{}}
	c := e.signIn(t, "canary-subject-a")
	e.post(t, c, "/privacy/consents/analytics", url.Values{"state": {"granted"}})
	got := e.api.callsOf("grant")
	if len(got) != 1 || got[0].Body["source"] != "web_form" || got[0].Body["jurisdiction"] != "vn_decree13" || got[0].Body["policy_version"] != record(t).PolicyVersion {
		t.Fatalf("%+v", got)
	}
}

// TestCrossSitePostsRefused: a page elsewhere that posts to the center
// with the customer's cookie (cross-site request forgery) is refused
// before anything is changed.
func TestCrossSitePostsRefused(t *testing.T) {
	e := newEnv(t)
	c := e.signIn(t, "canary-subject-a")
	for _, h := range [][]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}} {
		code, _, _ := e.post(t, c, "/privacy/consents/marketing", url.Values{"state": {"granted"}}, h...)
		if code != http.StatusForbidden {
			t.Fatalf("%v: %d", h, code)
		}
		if code, _, _ := e.post(t, c, "/privacy/erasure", url.Values{"confirm": {"yes"}}, h...); code != http.StatusForbidden {
			t.Fatalf("%v erasure: %d", h, code)
		}
	}
	if n := len(e.api.callsOf("grant")) + len(e.api.callsOf("file")); n != 0 {
		t.Fatalf("%d changes made", n)
	}
}

// TestGPCSignalRecorded: a browser sending "Sec-GPC: 1" has the signal
// recorded once the page opens (source gpc_signal), sees it said, and the
// header goes with its changes (the API records it with them).
func TestGPCSignalRecorded(t *testing.T) {
	e := newEnv(t)
	c := e.signIn(t, "canary-subject-a")
	code, body, _ := e.get(t, c, "/privacy/", "Sec-GPC", "1")
	if code != 200 || !strings.Contains(body, `id="gpc-status"`) {
		t.Fatalf("%d %.300s", code, body)
	}
	p := e.api.callsOf("profile")
	if len(p) != 1 || p[0].Body["source"] != "gpc_signal" || p[0].Body["gpc"] != true {
		t.Fatalf("profile calls %+v", p)
	}
	e.get(t, c, "/privacy/", "Sec-GPC", "1") // recorded already: not again
	if n := len(e.api.callsOf("profile")); n != 1 {
		t.Fatalf("the signal was recorded %d times", n)
	}
	e.post(t, c, "/privacy/consents/marketing", url.Values{"state": {"withdrawn"}}, "Sec-GPC", "1")
	if w := e.api.callsOf("withdraw"); len(w) != 1 || w[0].SecGPC != "1" {
		t.Fatalf("withdraw calls %+v", w)
	}
	if code, body, _ := e.get(t, e.signIn(t, "canary-subject-b"), "/privacy/"); code != 200 || strings.Contains(body, `id="gpc-status"`) {
		t.Fatal("no header, yet the page says GPC")
	}
}

// TestAnotherSubjectsExportIsNotFound: a customer who learns another
// customer's request id (a link for another customer, reused ids) gets
// 404, the same as an id that does not exist, and it is counted.
func TestAnotherSubjectsExportIsNotFound(t *testing.T) {
	e := newEnv(t)
	b := e.signIn(t, "canary-subject-b")
	e.post(t, b, "/privacy/export", nil)
	var id string
	for k := range e.api.reqs {
		id = k
	}
	q := e.api.reqs[id]
	q.Status, q.ExportExpiresMS = requests.Done, time.Now().Add(time.Hour).UnixMilli()
	e.api.reqs[id] = q
	if code, body, h := e.get(t, b, "/privacy/requests/"+id+"/export"); code != 200 || !strings.Contains(h.Get("Content-Disposition"), "attachment") || !strings.Contains(body, "canary-subject-b") {
		t.Fatalf("own export: %d %s", code, h)
	}
	a := e.signIn(t, "canary-subject-a")
	before := testutil.ToFloat64(e.center.refused.WithLabelValues(RefusedForeign))
	if code, body, _ := e.get(t, a, "/privacy/requests/"+id+"/export"); code != 404 || strings.Contains(body, "canary-subject-b") {
		t.Fatalf("another's export: %d %s", code, body)
	}
	if testutil.ToFloat64(e.center.refused.WithLabelValues(RefusedForeign)) != before+1 {
		t.Fatal("not counted")
	}
	if code, _, _ := e.get(t, a, "/privacy/requests/rq_nope/export"); code != 404 {
		t.Fatalf("an unknown id: %d", code)
	}
}

// TestErasureNeedsConfirmation: the erasure form without its box ticked
// files nothing.
func TestErasureNeedsConfirmation(t *testing.T) {
	e := newEnv(t)
	c := e.signIn(t, "canary-subject-a")
	if _, _, h := e.post(t, c, "/privacy/erasure", nil); !strings.Contains(h.Get("Location"), "p=confirm") {
		t.Fatalf("to %s", h.Get("Location"))
	}
	if n := len(e.api.callsOf("file")); n != 0 {
		t.Fatal("filed without confirmation")
	}
	e.post(t, c, "/privacy/erasure", url.Values{"confirm": {"yes"}})
	f := e.api.callsOf("file")
	if len(f) != 1 || f[0].Body["kind"] != "erasure" || f[0].Body["verified"] != true {
		t.Fatalf("%+v", f)
	}
	_, body, _ := e.get(t, c, "/privacy/")
	if !strings.Contains(body, `class="deadline"`) {
		t.Fatal("the page does not show the request's deadline")
	}
}

// TestBadTokenFloodRefused: an address presenting forged tokens in a flood
// is refused before its tokens are looked at, even a good one.
func TestBadTokenFloodRefused(t *testing.T) {
	e := newEnv(t)
	forged, _ := e.foreign.Mint("canary-subject-a", time.Minute)
	c := e.browser(t)
	codes := map[int]int{}
	for range 40 {
		code, _, _ := e.get(t, c, "/privacy/open?t="+url.QueryEscape(forged))
		codes[code]++
	}
	if codes[http.StatusTooManyRequests] == 0 {
		t.Fatalf("never refused as a flood: %v", codes)
	}
	// A customer behind the same address (a proxy, a NAT) is not locked out.
	good, _ := e.sealer.Mint("canary-subject-a", time.Minute)
	if code, _, _ := e.open(t, c, good, ""); code != http.StatusSeeOther {
		t.Fatalf("a good token from the flooding address: %d", code)
	}
	if code, _, h := e.get(t, c, "/privacy/open?t="+url.QueryEscape(forged)); code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("a forgery after the flood: %d", code)
	}
}

// TestLinksAreSpentAndSessionsEnd names the replays: a link opened a
// second time (read from a proxy log, a history, a shoulder), a session
// cookie after signing out, and a landing page prefetched by a mail
// scanner (a GET spends nothing). The cookie is a random id, never the
// token.
func TestLinksAreSpentAndSessionsEnd(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.sealer.Mint("canary-subject-a", 10*time.Minute)
	scanner := e.browser(t)
	for range 3 {
		if code, _, h := e.get(t, scanner, "/privacy/open?t="+url.QueryEscape(tok)); code != 200 || h.Get("Set-Cookie") != "" {
			t.Fatalf("the landing: %d, cookie %q", code, h.Get("Set-Cookie"))
		}
	}
	c := e.browser(t)
	code, _, h := e.open(t, c, tok, "")
	if code != http.StatusSeeOther || strings.Contains(h.Get("Set-Cookie"), tok) {
		t.Fatalf("open: %d, cookie %q", code, h.Get("Set-Cookie"))
	}
	if code, body, _ := e.open(t, e.browser(t), tok, ""); code != 401 || !strings.Contains(body, `data-reason="used"`) {
		t.Fatalf("the link again: %d %.200s", code, body)
	}
	u, _ := url.Parse(e.srv.URL + "/privacy/")
	cookies := c.Jar.Cookies(u)
	if code, _, _ := e.get(t, c, "/privacy/"); code != 200 {
		t.Fatalf("the session: %d", code)
	}
	e.post(t, c, "/privacy/logout", nil)
	replay := e.browser(t)
	replay.Jar.SetCookies(u, cookies)
	if code, body, _ := e.get(t, replay, "/privacy/"); code != 401 || !strings.Contains(body, `data-reason="session_ended"`) {
		t.Fatalf("the cookie after signing out: %d %.200s", code, body)
	}
	// A post that is not a small URL-encoded form is refused.
	req, _ := http.NewRequest("POST", e.srv.URL+"/privacy/admin/login", strings.NewReader("--x\r\n"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("a multipart post: %v %v", res, err)
	}
	if code, _, _ := e.post(t, e.browser(t), "/privacy/admin/login", url.Values{"token": {strings.Repeat("x", 10<<10)}}); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a large form: %d", code)
	}
}

// TestPagesAreLocalisedAndLocked: English and Vietnamese, the chosen
// language kept, and the security headers on every page.
func TestPagesAreLocalisedAndLocked(t *testing.T) {
	e := newEnv(t)
	c := e.signIn(t, "canary-subject-a")
	_, body, h := e.get(t, c, "/privacy/?lang=vi")
	if !strings.Contains(body, `<html lang="vi">`) || !strings.Contains(body, "Quyền riêng tư của bạn") || !strings.Contains(body, "Tiếp thị") {
		t.Fatalf("%.500s", body)
	}
	if _, body, _ = e.get(t, c, "/privacy/"); !strings.Contains(body, `<html lang="vi">`) {
		t.Fatal("the chosen language was not kept")
	}
	if _, body, _ = e.get(t, c, "/privacy/", "Accept-Language", "vi"); !strings.Contains(body, "Huấn luyện mô hình AI") {
		t.Fatal("no Vietnamese purpose title")
	}
	_, body, _ = e.get(t, e.signIn(t, "canary-subject-b"), "/privacy/", "Accept-Language", "fr-FR, en;q=0.5")
	if !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "Direct marketing campaigns by e-mail.") {
		t.Fatal("English page, or the policy's description, missing")
	}
	for _, k := range []string{"Content-Security-Policy", "Referrer-Policy", "X-Frame-Options", "Cache-Control"} {
		if h.Get(k) == "" {
			t.Fatalf("no %s", k)
		}
	}
	if strings.Contains(body, "<script") {
		t.Fatal("the page has a script")
	}
}

// TestCataloguesAreComplete: every text has every language, and every
// purpose, field, action and generalisation of the checked-in policy, and
// every request kind, status and consent source, has its words.
func TestCataloguesAreComplete(t *testing.T) {
	for _, l := range Languages {
		for k := range catalogue["en"] {
			if _, ok := catalogue[l][k]; !ok {
				t.Errorf("%s lacks %q", l, k)
			}
		}
		for k := range catalogue[l] {
			if _, ok := catalogue["en"][k]; !ok && !strings.HasPrefix(k, "purpose_desc.") {
				t.Errorf("%s has %q, English does not", l, k)
			}
		}
	}
	rec := record(t)
	for _, l := range Languages {
		for _, p := range rec.Purposes {
			keys := []string{"purpose." + p.Name, "basis." + p.LegalBasis}
			if l != "en" {
				keys = append(keys, "purpose_desc."+p.Name)
			}
			for _, f := range p.Fields {
				keys = append(keys, "field."+f.Field)
				if f.Action != "drop" {
					keys = append(keys, "action."+f.Action)
				}
				if f.Action == "generalize" {
					if h := how(l, f); h == msg(l, "action.generalize") {
						t.Errorf("%s: %s's generalisation (%s) has no words", l, f.Field, f.Output)
					}
				}
			}
			for _, k := range keys {
				if _, ok := catalogue[l][k]; !ok {
					t.Errorf("%s lacks %q", l, k)
				}
			}
		}
		for _, k := range []requests.Kind{requests.Access, requests.Portability, requests.Erasure} {
			if _, ok := catalogue[l]["kind."+string(k)]; !ok {
				t.Errorf("%s lacks kind %s", l, k)
			}
		}
		for _, s := range []requests.Status{requests.Received, requests.Verified, requests.InProgress, requests.Extended, requests.Done, requests.Refused} {
			if _, ok := catalogue[l]["status."+string(s)]; !ok {
				t.Errorf("%s lacks status %s", l, s)
			}
		}
		for _, k := range []string{"via_tcf", "via_gpp", "effect_gpc", "effect_default", "gpc_on", "gpc_recorded"} { // keys built at run time
			if _, ok := catalogue[l][k]; !ok {
				t.Errorf("%s lacks %s", l, k)
			}
		}
		for _, s := range []string{"web_form", "mobile_app", "support_agent", "gpc_signal", "import"} {
			if _, ok := catalogue[l]["source."+s]; !ok {
				t.Errorf("%s lacks source %s", l, s)
			}
		}
	}
}

// TestLinksRoute: the company's login mints a link with links:write; the
// link opens a session for that subject; a caller without the scope, a
// lifetime above the maximum and a bad subject are refused.
func TestLinksRoute(t *testing.T) {
	e := newEnv(t)
	mint := func(tok, body string) (int, Link) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/privacy-center/links", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var l Link
		_ = json.NewDecoder(res.Body).Decode(&l)
		return res.StatusCode, l
	}
	code, l := mint(e.reader, `{"subject_id":"canary-subject-a","ttl":"5m","lang":"vi"}`)
	if code != 201 || !strings.HasPrefix(l.URL, "/privacy/open?t=") || strings.Contains(l.URL, "canary-subject") {
		t.Fatalf("%d %+v", code, l)
	}
	c := e.browser(t)
	lu, _ := url.Parse(l.URL)
	if code, _, h := e.open(t, c, lu.Query().Get("t"), lu.Query().Get("lang")); code != 303 || h.Get("Location") != "/privacy/?lang=vi" {
		t.Fatalf("open: %d %s", code, h.Get("Location"))
	}
	e.get(t, c, "/privacy/")
	if got := e.api.callsOf("consents"); len(got) == 0 || got[0].Subject != "canary-subject-a" {
		t.Fatalf("%+v", got)
	}
	if code, _ := mint("pp_not-a-token", `{"subject_id":"x"}`); code != 401 {
		t.Fatalf("unknown token: %d", code)
	}
	if code, _ := mint(e.reader, `{"subject_id":"canary-subject-a","ttl":"2h"}`); code != 400 {
		t.Fatalf("too long: %d", code)
	}
	if code, _ := mint(e.reader, `{"subject_id":"bell\u0007"}`); code != 400 {
		t.Fatalf("bad subject: %d", code)
	}
	if code, _ := mint(e.reader, `{"subject_id":"a","extra":1}`); code != 400 {
		t.Fatalf("unknown field: %d", code)
	}
}

// TestOperatorView: the admin scope is needed (no cookie: to the login;
// a token without admin: refused with a clear message); signed in, the
// view shows the counts the metrics endpoints say, summed over replicas,
// and an endpoint that does not answer is named.
func TestOperatorView(t *testing.T) {
	metrics := func(published, denied string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "# TYPE pipeline_published_total counter\npipeline_published_total{purpose=\"marketing\"} "+published+"\n"+
				"# TYPE pipeline_denied_total counter\npipeline_denied_total{purpose=\"marketing\",reason=\"withdrawn\"} "+denied+"\n"+
				"# TYPE pipeline_quarantined_total counter\npipeline_quarantined_total{reason=\"undecodable\"} 3\n"+
				"# TYPE pipeline_kanon_suppressed_events_total counter\npipeline_kanon_suppressed_events_total{output=\"events_by_segment\"} 4\n"+
				"# TYPE pipeline_requests_done_total counter\npipeline_requests_done_total{kind=\"erasure\",regime=\"gdpr\"} 2\n")
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := metrics("10", "5"), metrics("7", "1")
	e := newEnv(t, a.URL, b.URL, "http://127.0.0.1:1/metrics")
	c := e.browser(t)
	if code, _, h := e.get(t, c, "/privacy/admin/"); code != 303 || h.Get("Location") != "/privacy/admin/login" {
		t.Fatalf("no cookie: %d %s", code, h.Get("Location"))
	}
	if code, body, _ := e.post(t, c, "/privacy/admin/login", url.Values{"token": {e.reader}}); code != 403 || !strings.Contains(body, "admin scope") {
		t.Fatalf("a token without admin: %d", code)
	}
	if code, _, _ := e.post(t, c, "/privacy/admin/login", url.Values{"token": {"pp_forged"}}); code != 401 {
		t.Fatalf("a forged token: %d", code)
	}
	if code, _, _ := e.post(t, c, "/privacy/admin/login", url.Values{"token": {e.admin}}); code != 303 {
		t.Fatalf("admin login: %d", code)
	}
	code, body, _ := e.get(t, c, "/privacy/admin/")
	if code != 200 {
		t.Fatalf("%d %.300s", code, body)
	}
	for _, want := range []string{`<td class="published">17</td>`, `<td class="denied">6</td>`, `data-reason="undecodable"><th scope="row">undecodable</th><td>6</td>`,
		`<strong id="erasures-done">4</strong>`, `id="policy-version">` + record(t).PolicyVersion, "127.0.0.1:1/metrics: <strong", "Signed in as privacy-officer"} {
		if !strings.Contains(body, want) {
			t.Errorf("the view lacks %q", want)
		}
	}
	if code, _, _ := e.get(t, c, "/privacy/admin/ropa.json"); code != 200 {
		t.Fatalf("ropa.json: %d", code)
	}
	// The cookie is no credential: it is not the token, and revoking the
	// token in the principals file ends the session.
	u, _ := url.Parse(e.srv.URL + "/privacy/admin/")
	for _, ck := range c.Jar.Cookies(u) {
		if strings.Contains(ck.Value, e.admin) {
			t.Fatal("the operator cookie holds the token")
		}
	}
	_, re, _ := httpauth.NewToken("crm", []httpauth.Scope{httpauth.ScopeConsentRead}, time.Time{})
	pf, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{re}}) // the admin token revoked
	if err := os.WriteFile(e.file, pf, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		code, body, _ := e.get(t, c, "/privacy/admin/")
		return code == 401 && strings.Contains(body, "session ended")
	})
	// A customer session is not an operator.
	cust := e.signIn(t, "canary-subject-a")
	if code, _, _ := e.get(t, cust, "/privacy/admin/"); code != 303 {
		t.Fatalf("a customer on the operator view: %d", code)
	}
}

// TestPageSaysWhatIsInEffect: the page shows what the processor decides,
// not only the stored choice: a grant of marketing held off by the GPC
// signal says so, an opt-out jurisdiction's unset purpose is in use (its
// switch on, to object), a withdrawal is off, an opt-in region's unset
// purpose is off; the history is newest first.
func TestPageSaysWhatIsInEffect(t *testing.T) {
	e := newEnv(t)
	e.api.state["canary-subject-a"] = &consentapi.State{Jurisdiction: "ccpa", GPC: true, Purposes: map[string]consentapi.PurposeState{
		"marketing": {State: "granted"}, "analytics": {State: "withdrawn"}}}
	e.api.state["canary-subject-b"] = &consentapi.State{Jurisdiction: "gdpr", Purposes: map[string]consentapi.PurposeState{}}
	_, body, _ := e.get(t, e.signIn(t, "canary-subject-a"), "/privacy/")
	for _, want := range []string{
		`id="switch-marketing" aria-checked="true"`, `id="effect-marketing">` + template.HTMLEscapeString(msg("en", "effect_gpc")),
		`id="switch-analytics" aria-checked="false"`,
		`id="switch-personalization" aria-checked="true"`, `id="effect-personalization"`,
		`id="switch-third_party_sharing" aria-checked="false"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("subject a's page lacks %s", want)
		}
	}
	if strings.Contains(body, `id="effect-analytics"`) {
		t.Error("a withdrawal needs no explanation")
	}
	_, body, _ = e.get(t, e.signIn(t, "canary-subject-b"), "/privacy/")
	if !strings.Contains(body, `id="switch-personalization" aria-checked="false"`) || strings.Contains(body, `class="effect"`) {
		t.Error("an opt-in region's unset purpose is not off")
	}
}

// FuzzPickLang: any query, cookie and Accept-Language header picks one of
// the page languages.
func FuzzPickLang(f *testing.F) {
	f.Add("vi", "en", "fr-FR, vi;q=0.8")
	f.Add("", "", "")
	f.Add("xx", "vi\x00", ",,;;q=,")
	f.Fuzz(func(t *testing.T, q, cookie, accept string) {
		r := httptest.NewRequest("GET", "/privacy/", nil)
		r.URL.RawQuery = url.Values{"lang": {q}}.Encode()
		r.Header.Set("Accept-Language", accept)
		r.AddCookie(&http.Cookie{Name: langCookie, Value: url.QueryEscape(cookie)})
		if l, _ := pickLang(r); !known(l) {
			t.Fatalf("picked %q", l)
		}
	})
}

// TestEveryTextUsedExists: every key the templates ({{t ... "key"}}) and
// the code (msg(lang, "key")) name, and every key built from a prefix
// ("done_", "problem_", "via_"), is in every catalogue: a missing one would
// show the key to the customer.
func TestEveryTextUsedExists(t *testing.T) {
	var keys []string
	tmpl := regexp.MustCompile(`\{\{t \$?\.Lang "([^"]+)"\}\}`)
	code := regexp.MustCompile(`msg\((?:lang|ss\.Lang|l), "([^"]+)"\)`)
	files, _ := filepath.Glob("templates/*.html")
	gofiles, _ := filepath.Glob("*.go")
	for _, f := range append(files, gofiles...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []*regexp.Regexp{tmpl, code} {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				keys = append(keys, m[1])
			}
		}
	}
	for _, k := range []string{"granted", "withdrawn", "export", "erasure"} {
		keys = append(keys, "done_"+k)
	}
	for _, k := range []string{"retry", "erased", "confirm"} {
		keys = append(keys, "problem_"+k)
	}
	if len(keys) < 40 {
		t.Fatalf("found only %d keys: the patterns no longer match the code", len(keys))
	}
	for _, l := range Languages {
		for _, k := range keys {
			if _, ok := catalogue[l][k]; !ok {
				t.Errorf("%s lacks %q", l, k)
			}
		}
	}
}

// waitFor polls cond for up to 5 s (the guard re-reads the principals file
// at most once a second).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 5 s")
}
