package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/testpki"
)

// The contract's values, written out independently of validate.go.
var (
	contractPurposes      = []string{"analytics", "personalization", "ai_training", "marketing", "third_party_sharing"}
	contractStates        = []string{"granted", "denied", "withdrawn"}
	contractJurisdictions = []string{"gdpr", "uk_gdpr", "pdpa", "vn_decree13", "ccpa", "unknown"}
	contractSources       = []string{"web_form", "mobile_app", "support_agent", "gpc_signal", "import"}
)

// recorded is one request the fake API received.
type recorded struct {
	Method      string
	EscapedPath string // as sent on the wire
	Subject     string // the {subject} path value, unescaped by the mux
	Purpose     string
	ContentType string
	Body        []byte
}

// fakeAPI is a minimal in-memory implementation of the consent API
// contract that records every request.
type fakeAPI struct {
	mu      sync.Mutex
	reqs    []recorded
	changes map[string][]map[string]string // subject → changes, oldest first
	nextID  int
	// override, when set, answers every request instead of the contract.
	override http.HandlerFunc
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	t.Helper()
	f := &fakeAPI{changes: map[string][]map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/subjects/{subject}/consents/{purpose}", f.set)
	mux.HandleFunc("POST /v1/subjects/{subject}/consents/{purpose}/withdraw", f.withdraw)
	mux.HandleFunc("PUT /v1/subjects/{subject}/profile", f.profile)
	mux.HandleFunc("GET /v1/subjects/{subject}/consents", f.get)
	mux.HandleFunc("GET /v1/subjects/{subject}/consents/history", f.history)
	mux.HandleFunc("POST /v1/consents/import", f.importBulk)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := recorded{Method: r.Method, EscapedPath: r.URL.EscapedPath(), ContentType: r.Header.Get("Content-Type"), Body: body}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		idx := len(f.reqs) - 1
		override := f.override
		f.mu.Unlock()
		if override != nil {
			override(w, r)
			return
		}
		mux.ServeHTTP(&pathRecorder{ResponseWriter: w, f: f, idx: idx}, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// pathRecorder lets a handler store the mux's path values (see note) in
// the record of its request.
type pathRecorder struct {
	http.ResponseWriter
	f   *fakeAPI
	idx int
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// note stores the path values of request r in its record.
func note(w http.ResponseWriter, r *http.Request) {
	if pr, ok := w.(*pathRecorder); ok {
		pr.f.mu.Lock()
		pr.f.reqs[pr.idx].Subject = r.PathValue("subject")
		pr.f.reqs[pr.idx].Purpose = r.PathValue("purpose")
		pr.f.mu.Unlock()
	}
}

func writeJSONResp(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSONResp(w, code, map[string]string{"error": msg})
}

// checkChange validates one change as the contract says; it returns the
// change with its defaults filled in. A change without purpose and state
// is a subject-level change (a profile).
func checkChange(in map[string]string) (map[string]string, error) {
	s := in["subject_id"]
	if s == "" || len(s) > 256 || !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return nil, errors.New("invalid subject id")
	}
	if in["jurisdiction"] == "" {
		in["jurisdiction"] = "unknown"
	}
	if !slices.Contains([]string{"", "true", "false"}, in["gpc"]) {
		return nil, errors.New("gpc must be true or false")
	}
	if in["source"] == "gpc_signal" {
		if in["gpc"] == "false" {
			return nil, errors.New("source gpc_signal: gpc must be true")
		}
		in["gpc"] = "true"
	}
	profile := in["purpose"] == "" && in["state"] == ""
	if profile {
		if in["jurisdiction"] == "unknown" && in["gpc"] == "" {
			return nil, errors.New("a profile needs a jurisdiction or a gpc value")
		}
		if in["policy_version"] == "" {
			in["policy_version"] = "unspecified"
		}
	} else if !slices.Contains(contractPurposes, in["purpose"]) {
		return nil, fmt.Errorf("unknown purpose %q", in["purpose"])
	} else if !slices.Contains(contractStates, in["state"]) {
		return nil, fmt.Errorf("unknown state %q", in["state"])
	}
	if !slices.Contains(contractJurisdictions, in["jurisdiction"]) {
		return nil, fmt.Errorf("unknown jurisdiction %q", in["jurisdiction"])
	}
	if !slices.Contains(contractSources, in["source"]) {
		return nil, fmt.Errorf("unknown source %q", in["source"])
	}
	if pv := in["policy_version"]; pv == "" || len(pv) > 64 {
		return nil, errors.New("policy_version must be 1-64 bytes")
	}
	out := maps(in)
	if out["timestamp"] == "" {
		out["timestamp"] = time.Now().UTC().Format(time.RFC3339)
	} else if _, err := time.Parse(time.RFC3339, out["timestamp"]); err != nil {
		return nil, errors.New("timestamp is not RFC 3339")
	}
	return out, nil
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// record stores an accepted change and answers 202 with its receipt.
func (f *fakeAPI) record(w http.ResponseWriter, c map[string]string) {
	f.mu.Lock()
	f.nextID++
	c["receipt_id"] = fmt.Sprintf("rcpt-%d", f.nextID)
	f.changes[c["subject_id"]] = append(f.changes[c["subject_id"]], c)
	f.mu.Unlock()
	answer := map[string]any{"receipt_id": c["receipt_id"], "subject_id": c["subject_id"], "accepted_at": "2026-01-02T03:04:05Z"}
	if c["purpose"] == "" {
		answer["jurisdiction"] = c["jurisdiction"]
	} else {
		answer["purpose"], answer["state"] = c["purpose"], c["state"]
	}
	if c["gpc"] != "" {
		answer["gpc"] = c["gpc"] == "true"
	}
	writeJSONResp(w, http.StatusAccepted, answer)
}

// boolText is the text of an optional JSON boolean: "", "true" or "false".
func boolText(b *bool) string {
	if b == nil {
		return ""
	}
	return fmt.Sprint(*b)
}

type setBody struct {
	State         string `json:"state"`
	Jurisdiction  string `json:"jurisdiction"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp"`
	GPC           *bool  `json:"gpc"`
}

func (f *fakeAPI) set(w http.ResponseWriter, r *http.Request) {
	note(w, r)
	var b setBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		fail(w, http.StatusBadRequest, "malformed JSON body")
		return
	}
	if b.State == "" {
		fail(w, http.StatusBadRequest, "state is required")
		return
	}
	c, err := checkChange(map[string]string{"subject_id": r.PathValue("subject"), "purpose": r.PathValue("purpose"),
		"state": b.State, "jurisdiction": b.Jurisdiction, "source": b.Source, "policy_version": b.PolicyVersion, "timestamp": b.Timestamp,
		"gpc": boolText(b.GPC)})
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	f.record(w, c)
}

func (f *fakeAPI) profile(w http.ResponseWriter, r *http.Request) {
	note(w, r)
	var b struct {
		Jurisdiction  string `json:"jurisdiction"`
		GPC           *bool  `json:"gpc"`
		Source        string `json:"source"`
		PolicyVersion string `json:"policy_version"`
		Timestamp     string `json:"timestamp"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		fail(w, http.StatusBadRequest, "malformed JSON body")
		return
	}
	c, err := checkChange(map[string]string{"subject_id": r.PathValue("subject"), "jurisdiction": b.Jurisdiction, "source": b.Source,
		"policy_version": b.PolicyVersion, "timestamp": b.Timestamp, "gpc": boolText(b.GPC)})
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	f.record(w, c)
}

func (f *fakeAPI) withdraw(w http.ResponseWriter, r *http.Request) {
	note(w, r)
	var b struct {
		Source        string `json:"source"`
		Jurisdiction  string `json:"jurisdiction"`
		PolicyVersion string `json:"policy_version"`
		GPC           *bool  `json:"gpc"`
	}
	body, _ := io.ReadAll(r.Body)
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			fail(w, http.StatusBadRequest, "malformed JSON body")
			return
		}
	}
	c := map[string]string{"subject_id": r.PathValue("subject"), "purpose": r.PathValue("purpose"), "state": "withdrawn",
		"jurisdiction": cmp(b.Jurisdiction, "unknown"), "source": cmp(b.Source, "web_form"), "policy_version": cmp(b.PolicyVersion, "withdrawal"),
		"gpc": boolText(b.GPC)}
	c, err := checkChange(c)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	f.record(w, c)
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (f *fakeAPI) get(w http.ResponseWriter, r *http.Request) {
	note(w, r)
	sub := r.PathValue("subject")
	f.mu.Lock()
	changes := slices.Clone(f.changes[sub])
	f.mu.Unlock()
	if len(changes) == 0 {
		fail(w, http.StatusNotFound, "no consent recorded for this subject")
		return
	}
	type ps struct {
		State     string `json:"state"`
		UpdatedAt string `json:"updated_at"`
	}
	out := struct {
		SubjectID             string        `json:"subject_id"`
		Jurisdiction          string        `json:"jurisdiction"`
		JurisdictionUpdatedAt string        `json:"jurisdiction_updated_at"`
		GPC                   bool          `json:"gpc"`
		GPCUpdatedAt          string        `json:"gpc_updated_at"`
		Version               int64         `json:"version"`
		Purposes              map[string]ps `json:"purposes"`
	}{SubjectID: sub, Jurisdiction: "unknown", Purposes: map[string]ps{}}
	for _, p := range contractPurposes {
		out.Purposes[p] = ps{State: "unset"}
	}
	for _, c := range changes {
		if c["purpose"] != "" {
			out.Purposes[c["purpose"]] = ps{State: c["state"], UpdatedAt: c["timestamp"]}
		}
		if c["jurisdiction"] != "unknown" {
			out.Jurisdiction, out.JurisdictionUpdatedAt = c["jurisdiction"], c["timestamp"]
		}
		if c["gpc"] != "" {
			out.GPC, out.GPCUpdatedAt = c["gpc"] == "true", c["timestamp"]
		}
		ts, _ := time.Parse(time.RFC3339, c["timestamp"])
		out.Version = max(out.Version, ts.UnixMilli())
	}
	writeJSONResp(w, http.StatusOK, out)
}

func (f *fakeAPI) history(w http.ResponseWriter, r *http.Request) {
	note(w, r)
	sub := r.PathValue("subject")
	f.mu.Lock()
	changes := slices.Clone(f.changes[sub])
	f.mu.Unlock()
	slices.Reverse(changes)
	entries := []map[string]any{}
	for _, c := range changes {
		e := map[string]any{}
		for k, v := range c {
			if v != "" || (k != "purpose" && k != "state" && k != "gpc") {
				e[k] = v
			}
		}
		if c["gpc"] != "" {
			e["gpc"] = c["gpc"] == "true"
		}
		entries = append(entries, e)
	}
	writeJSONResp(w, http.StatusOK, map[string]any{"subject_id": sub, "changes": entries})
}

var csvHeader = "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp"

var csvHeaderGPC = csvHeader + ",gpc"

func (f *fakeAPI) importBulk(w http.ResponseWriter, r *http.Request) {
	type lineErr struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	}
	var ok []map[string]string
	errs := []lineErr{}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "text/csv":
		cr := csv.NewReader(r.Body)
		cr.FieldsPerRecord = -1
		head, err := cr.Read()
		if err != nil || (strings.Join(head, ",") != csvHeader && strings.Join(head, ",") != csvHeaderGPC) {
			fail(w, http.StatusBadRequest, "CSV header must be "+csvHeader+"[,gpc]")
			return
		}
		fields := head
		for line := 2; ; line++ {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil || len(rec) != len(fields) {
				errs = append(errs, lineErr{line, fmt.Sprintf("want %d fields", len(fields))})
				continue
			}
			in := map[string]string{}
			for i, k := range fields {
				in[k] = rec[i]
			}
			c, err := checkChange(in)
			if err != nil {
				errs = append(errs, lineErr{line, err.Error()})
				continue
			}
			ok = append(ok, c)
		}
	case "application/x-ndjson":
		sc := bufio.NewScanner(r.Body)
		for line := 1; sc.Scan(); line++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var raw map[string]any
			if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
				errs = append(errs, lineErr{line, "not a JSON object"})
				continue
			}
			in := map[string]string{}
			for k, v := range raw {
				if v != nil {
					in[k] = fmt.Sprint(v)
				}
			}
			c, err := checkChange(in)
			if err != nil {
				errs = append(errs, lineErr{line, err.Error()})
				continue
			}
			ok = append(ok, c)
		}
	default:
		fail(w, http.StatusUnsupportedMediaType, "import takes text/csv or application/x-ndjson")
		return
	}
	for _, c := range ok {
		f.mu.Lock()
		f.changes[c["subject_id"]] = append(f.changes[c["subject_id"]], c)
		f.mu.Unlock()
	}
	writeJSONResp(w, http.StatusOK, map[string]any{"accepted": len(ok), "rejected": len(errs), "errors": errs})
}

// runCLI runs privacyctl with the given environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// api runs privacyctl against srv.
func api(t *testing.T, srv *httptest.Server, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, nil, append([]string{"--api", srv.URL}, args...)...)
}

func decodeBodyMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("request body is not a JSON object: %v: %s", err, b)
	}
	return m
}

const oddSubject = "cust/42 ü"
const oddSubjectEscaped = "cust%2F42%20%C3%BC"

func TestSet(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := api(t, srv, "consent", "set", oddSubject, "analytics", "granted",
		"--jurisdiction", "gdpr", "--source=mobile_app", "--policy-version", "v3", "--timestamp", "2026-01-02T03:04:05+07:00")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "PUT" || r.EscapedPath != "/v1/subjects/"+oddSubjectEscaped+"/consents/analytics" {
		t.Fatalf("request %s %s", r.Method, r.EscapedPath)
	}
	if r.Subject != oddSubject || r.Purpose != "analytics" {
		t.Fatalf("server saw subject %q purpose %q", r.Subject, r.Purpose)
	}
	if r.ContentType != "application/json" {
		t.Fatalf("content type %q", r.ContentType)
	}
	want := map[string]any{"state": "granted", "jurisdiction": "gdpr", "source": "mobile_app",
		"policy_version": "v3", "timestamp": "2026-01-02T03:04:05+07:00"}
	if got := decodeBodyMap(t, r.Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	for _, s := range []string{"accepted", `"cust/42 ü"`, "analytics", "granted", "rcpt-1"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q: %s", s, out)
		}
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("set should print one line, got %q", out)
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || fmt.Sprint(v) != fmt.Sprint(w) {
			return false
		}
	}
	return true
}

func TestSetDefaults(t *testing.T) {
	f, srv := newFakeAPI(t)
	// Flags may come before the command, too.
	code, _, errOut := runCLI(t, nil, "--api", srv.URL+"/", "consent", "set", "c1", "marketing", "denied")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := f.requests()[0]
	if r.EscapedPath != "/v1/subjects/c1/consents/marketing" {
		t.Fatalf("path %s", r.EscapedPath)
	}
	want := map[string]any{"state": "denied", "jurisdiction": "unknown", "source": "web_form", "policy_version": "cli"}
	if got := decodeBodyMap(t, r.Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v (no timestamp: the API's now)", got, want)
	}
}

func TestSetJSON(t *testing.T) {
	_, srv := newFakeAPI(t)
	code, out, _ := api(t, srv, "--json", "consent", "set", "c1", "ai_training", "withdrawn")
	if code != exitOK {
		t.Fatal(code)
	}
	var rc receipt
	if err := json.Unmarshal([]byte(out), &rc); err != nil || rc.ReceiptID != "rcpt-1" || rc.State != "withdrawn" || rc.Purpose != "ai_training" {
		t.Fatalf("--json output %q: %v", out, err)
	}
}

func TestWithdraw(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := api(t, srv, "consent", "withdraw", oddSubject, "third_party_sharing", "--source", "support_agent")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := f.requests()[0]
	if r.Method != "POST" || r.EscapedPath != "/v1/subjects/"+oddSubjectEscaped+"/consents/third_party_sharing/withdraw" {
		t.Fatalf("request %s %s", r.Method, r.EscapedPath)
	}
	if r.Subject != oddSubject {
		t.Fatalf("server saw subject %q", r.Subject)
	}
	// No jurisdiction unless given: the API keeps the subject's.
	want := map[string]any{"source": "support_agent", "policy_version": "cli"}
	if got := decodeBodyMap(t, r.Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	if !strings.Contains(out, "withdrawn") || strings.Count(out, "\n") != 1 {
		t.Fatalf("output %q", out)
	}

	code, _, _ = api(t, srv, "consent", "withdraw", "c2", "analytics", "--jurisdiction", "ccpa", "--policy-version", "p9")
	if code != exitOK {
		t.Fatal(code)
	}
	want = map[string]any{"source": "web_form", "policy_version": "p9", "jurisdiction": "ccpa"}
	if got := decodeBodyMap(t, f.requests()[1].Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
}

func TestGet(t *testing.T) {
	f, srv := newFakeAPI(t)
	if code, _, e := api(t, srv, "consent", "set", oddSubject, "analytics", "granted", "--jurisdiction", "pdpa", "--timestamp", "2026-01-02T03:04:05Z"); code != 0 {
		t.Fatal(e)
	}
	code, out, errOut := api(t, srv, "consent", "get", oddSubject)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := f.requests()[1]
	if r.Method != "GET" || r.EscapedPath != "/v1/subjects/"+oddSubjectEscaped+"/consents" || r.Subject != oddSubject {
		t.Fatalf("request %s %s (%q)", r.Method, r.EscapedPath, r.Subject)
	}
	if len(r.Body) != 0 {
		t.Fatalf("GET with a body: %q", r.Body)
	}
	lines := strings.Split(out, "\n")
	for _, s := range []string{"jurisdiction: pdpa", "1767323045000 (2026-01-02T03:04:05Z)", "PURPOSE", "STATE", "UPDATED"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	// One row per purpose, in canonical order.
	var rows []string
	for _, l := range lines {
		if fs := strings.Fields(l); len(fs) == 3 && slices.Contains(contractPurposes, fs[0]) {
			rows = append(rows, fs[0]+" "+fs[1]+" "+fs[2])
		}
	}
	want := []string{"analytics granted 2026-01-02T03:04:05Z", "personalization unset -", "ai_training unset -", "marketing unset -", "third_party_sharing unset -"}
	if !slices.Equal(rows, want) {
		t.Fatalf("rows %q, want %q\n%s", rows, want, out)
	}

	// --json prints the answer as is.
	code, out, _ = api(t, srv, "consent", "get", oddSubject, "--json")
	var sc subjectConsent
	if code != 0 || json.Unmarshal([]byte(out), &sc) != nil || sc.SubjectID != oddSubject || len(sc.Purposes) != 5 {
		t.Fatalf("--json: %d %q", code, out)
	}
}

func TestGetNotFound(t *testing.T) {
	_, srv := newFakeAPI(t)
	code, out, errOut := api(t, srv, "consent", "get", "nobody")
	if code != exitFailed || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "no consent recorded for this subject") || !strings.Contains(errOut, "404") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestHistory(t *testing.T) {
	f, srv := newFakeAPI(t)
	api(t, srv, "consent", "set", oddSubject, "analytics", "granted", "--timestamp", "2026-01-01T00:00:00Z")
	api(t, srv, "consent", "set", oddSubject, "marketing", "denied", "--jurisdiction", "uk_gdpr", "--timestamp", "2026-01-02T00:00:00Z")
	code, out, errOut := api(t, srv, "consent", "history", oddSubject)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := f.requests()[2]
	if r.Method != "GET" || r.EscapedPath != "/v1/subjects/"+oddSubjectEscaped+"/consents/history" || r.Subject != oddSubject {
		t.Fatalf("request %s %s (%q)", r.Method, r.EscapedPath, r.Subject)
	}
	for _, s := range []string{"2 change(s)", "TIMESTAMP", "PURPOSE", "STATE", "JURISDICTION", "SOURCE", "RECEIPT", "uk_gdpr", "rcpt-1", "rcpt-2"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if i, j := strings.Index(out, "marketing"), strings.Index(out, "analytics"); i < 0 || j < 0 || i > j {
		t.Errorf("newest first expected:\n%s", out)
	}

	code, out, _ = api(t, srv, "consent", "history", "nobody")
	if code != exitOK || !strings.Contains(out, "no consent changes recorded") {
		t.Fatalf("empty history: %d %q", code, out)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportCSVWithBadLine(t *testing.T) {
	f, srv := newFakeAPI(t)
	content := csvHeader + "\n" +
		"c1,analytics,granted,gdpr,import,v1,2026-01-01T00:00:00Z\n" +
		"c2,astrology,granted,gdpr,import,v1,\n" +
		"\"cust/42 ü\",marketing,denied,ccpa,web_form,v1,\n"
	file := writeFile(t, "consents.csv", content)
	code, out, errOut := api(t, srv, "consent", "import", file)
	if code != exitRejected {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitRejected, errOut)
	}
	r := f.requests()[0]
	if r.Method != "POST" || r.EscapedPath != "/v1/consents/import" || r.ContentType != "text/csv" {
		t.Fatalf("request %s %s %q", r.Method, r.EscapedPath, r.ContentType)
	}
	if string(r.Body) != content {
		t.Fatalf("the file was not sent as is: %q", r.Body)
	}
	for _, s := range []string{"2 accepted, 1 rejected", `line 3: unknown purpose "astrology"`} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if !strings.Contains(errOut, "1 of 3 line(s) rejected") {
		t.Errorf("stderr %q", errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.changes["c1"]) != 1 || len(f.changes[oddSubject]) != 1 || len(f.changes["c2"]) != 0 {
		t.Fatalf("stored %v", f.changes)
	}
}

func TestImportJSONLines(t *testing.T) {
	f, srv := newFakeAPI(t)
	content := `{"subject_id":"c1","purpose":"analytics","state":"granted","jurisdiction":"gdpr","source":"import","policy_version":"v1","timestamp":""}` + "\n"
	for _, name := range []string{"c.jsonl", "c.NDJSON"} {
		file := writeFile(t, name, content)
		code, out, errOut := api(t, srv, "consent", "import", file)
		if code != exitOK || !strings.Contains(out, "1 accepted, 0 rejected") {
			t.Fatalf("%s: exit %d %q %q", name, code, out, errOut)
		}
	}
	// --format overrides the extension.
	file := writeFile(t, "export.txt", content)
	code, out, _ := api(t, srv, "consent", "import", "--format", "jsonl", file, "--json")
	var res importResult
	if code != exitOK || json.Unmarshal([]byte(out), &res) != nil || res.Accepted != 1 {
		t.Fatalf("exit %d %q", code, out)
	}
	for _, r := range f.requests() {
		if r.ContentType != "application/x-ndjson" || string(r.Body) != content {
			t.Fatalf("request %q %q", r.ContentType, r.Body)
		}
	}
}

func TestImportLocalErrors(t *testing.T) {
	f, srv := newFakeAPI(t)
	dir := t.TempDir()
	cases := map[string][]string{
		"cannot tell the format": {writeFile(t, "c.txt", "x\n")},
		"unknown --format":       {writeFile(t, "c.csv", "x\n"), "--format", "xml"},
		"cannot open":            {filepath.Join(dir, "missing.csv")},
		"is empty":               {writeFile(t, "empty.csv", "")},
		"not a regular file":     {dir + "/.csv"},
	}
	os.Mkdir(dir+"/.csv", 0o700)
	for want, args := range cases {
		code, _, errOut := api(t, srv, append([]string{"consent", "import"}, args...)...)
		if code != exitUsage || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", args, code, errOut, want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestLocalValidationSendsNothing(t *testing.T) {
	f, srv := newFakeAPI(t)
	long := strings.Repeat("x", 300)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"consent", "set", "c1", "astrology", "granted"}, `unknown purpose "astrology"`},
		{[]string{"consent", "set", "c1", "analytics", "maybe"}, `unknown state "maybe"`},
		{[]string{"consent", "set", "c1", "analytics", "unset"}, `unknown state "unset"`},
		{[]string{"consent", "set", "c1", "Analytics", "granted"}, `unknown purpose "Analytics"`},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--jurisdiction", "eu"}, `unknown jurisdiction "eu"`},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--source", "fax"}, `unknown source "fax"`},
		{[]string{"consent", "set", "", "analytics", "granted"}, "subject id is empty"},
		{[]string{"consent", "set", "   ", "analytics", "granted"}, "subject id is empty"},
		{[]string{"consent", "set", long, "analytics", "granted"}, "subject id is 300 bytes long; the limit is 256"},
		{[]string{"consent", "set", "a\x1b[31mb", "analytics", "granted"}, "control character"},
		{[]string{"consent", "set", "a\xffb", "analytics", "granted"}, "not valid UTF-8"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--timestamp", "yesterday"}, `timestamp "yesterday" is not RFC 3339`},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--timestamp", "2026-01-02 03:04:05"}, "is not RFC 3339"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--timestamp", ""}, "is not RFC 3339"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--policy-version", ""}, "policy version is empty"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--policy-version", strings.Repeat("v", 65)}, "65 bytes long; the limit is 64"},
		{[]string{"consent", "withdraw", "c1", "astrology"}, `unknown purpose "astrology"`},
		{[]string{"consent", "withdraw", "c1", "analytics", "--jurisdiction", "mars"}, `unknown jurisdiction "mars"`},
		{[]string{"consent", "withdraw", "", "analytics"}, "subject id is empty"},
		{[]string{"consent", "get", ""}, "subject id is empty"},
		{[]string{"consent", "get", long}, "300 bytes long"},
		{[]string{"consent", "history", long}, "300 bytes long"},
		{[]string{"consent", "set", "c1", "analytics"}, "consent set needs SUBJECT PURPOSE STATE"},
		{[]string{"consent", "get", "a", "b"}, "consent get needs SUBJECT"},
		{[]string{"consent", "get", "c1", "--source", "web_form"}, "consent get does not take --source"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--colour"}, `unknown flag "--colour"`},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--source"}, "flag --source needs a value"},
		{[]string{"consent", "erase", "c1"}, `unknown consent command "erase"`},
		{[]string{"consents"}, `unknown command "consents"`},
		{[]string{"consent"}, "consent needs a command"},
		{[]string{}, "no command"},
		{[]string{"consent", "get", "c1", "--timeout", "soon"}, "--timeout"},
		{[]string{"consent", "get", "c1", "--api", "localhost:8080"}, "not an absolute http(s) URL"},
		{[]string{"consent", "get", "c1", "--api", "ftp://x"}, "not an absolute http(s) URL"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--gpc", "yes"}, `--gpc "yes" is not true or false`},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--gpc"}, "flag --gpc needs a value"},
		{[]string{"consent", "set", "c1", "analytics", "granted", "--source", "gpc_signal", "--gpc", "false"}, "--gpc false contradicts it"},
		{[]string{"consent", "withdraw", "c1", "analytics", "--gpc", "on"}, `--gpc "on" is not true or false`},
		{[]string{"consent", "profile", "c1"}, "consent profile needs --jurisdiction J (other than unknown), --gpc true|false, or --source gpc_signal"},
		{[]string{"consent", "profile", "c1", "--jurisdiction", "unknown"}, "consent profile needs --jurisdiction"},
		{[]string{"consent", "profile", "c1", "--jurisdiction", "mars"}, `unknown jurisdiction "mars"`},
		{[]string{"consent", "profile", "c1", "--gpc", "maybe"}, "is not true or false"},
		{[]string{"consent", "profile", "c1", "--gpc", "false", "--source", "gpc_signal"}, "--gpc false contradicts it"},
		{[]string{"consent", "profile", "", "--jurisdiction", "ccpa"}, "subject id is empty"},
		{[]string{"consent", "profile", "c1", "--jurisdiction", "ccpa", "--timestamp", "now"}, "is not RFC 3339"},
		{[]string{"consent", "profile", "c1", "--jurisdiction", "ccpa", "--policy-version", ""}, "policy version is empty"},
		{[]string{"consent", "profile", "c1", "analytics", "--jurisdiction", "ccpa"}, "consent profile needs SUBJECT"},
		{[]string{"consent", "profile", "c1", "--jurisdiction", "ccpa", "--format", "csv"}, "consent profile does not take --format"},
		{[]string{"consent", "get", "c1", "--gpc", "true"}, "consent get does not take --gpc"},
	}
	for _, tc := range cases {
		code, out, errOut := api(t, srv, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
		if strings.ContainsRune(errOut, '\x1b') {
			t.Errorf("%q: stderr carries a raw escape character", tc.args)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests sent for invalid input", n)
	}
}

func TestSubjectLimits(t *testing.T) {
	f, srv := newFakeAPI(t)
	// 256 bytes is the limit, inclusive; a multi-byte rune counts its bytes.
	limit := strings.Repeat("ü", 128)
	if code, _, e := api(t, srv, "consent", "get", limit); code != exitFailed || !strings.Contains(e, "404") {
		t.Fatalf("256-byte subject: exit %d %s", code, e)
	}
	if code, _, e := api(t, srv, "consent", "get", limit+"x"); code != exitUsage || !strings.Contains(e, "257 bytes") {
		t.Fatalf("257-byte subject: exit %d %s", code, e)
	}
	// A subject starting with "-" after "--"; dot segments are escaped so no
	// client, proxy or mux resolves them.
	for subject, path := range map[string]string{
		"-x":     "/v1/subjects/-x/consents",
		"..":     "/v1/subjects/%2E%2E/consents",
		".":      "/v1/subjects/%2E/consents",
		"a?b#c%": "/v1/subjects/a%3Fb%23c%25/consents",
	} {
		n := len(f.requests())
		if code, _, e := api(t, srv, "consent", "get", "--", subject); code != exitFailed || !strings.Contains(e, "no consent recorded") {
			t.Fatalf("%q: exit %d %s", subject, code, e)
		}
		r := f.requests()[n]
		if r.EscapedPath != path || r.Subject != subject {
			t.Fatalf("%q: path %s, server saw %q", subject, r.EscapedPath, r.Subject)
		}
	}
}

func TestServerError(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.override = func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusBadRequest, "policy_version v7 is not a published notice")
	}
	code, out, errOut := api(t, srv, "consent", "set", "c1", "analytics", "granted", "--policy-version", "v7", "--jurisdiction", "gdpr")
	if code != exitFailed || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "400 Bad Request: policy_version v7 is not a published notice") {
		t.Fatalf("stderr %q", errOut)
	}
	// The request body is not echoed.
	for _, s := range []string{`"state"`, `"jurisdiction"`, "gdpr", "{"} {
		if strings.Contains(errOut, s) {
			t.Errorf("stderr echoes the request (%q): %q", s, errOut)
		}
	}

	// A 5xx without the error shape, and a message with terminal escapes.
	f.override = func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream exploded", http.StatusBadGateway)
	}
	code, _, errOut = api(t, srv, "consent", "get", "c1")
	if code != exitFailed || !strings.Contains(errOut, "502 Bad Gateway (no error message)") {
		t.Fatalf("exit %d %q", code, errOut)
	}
	f.override = func(w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusServiceUnavailable, "retry\x1b[2J later")
	}
	code, _, errOut = api(t, srv, "consent", "history", "c1")
	if code != exitFailed || strings.ContainsRune(errOut, '\x1b') || !strings.Contains(errOut, "503") {
		t.Fatalf("exit %d %q", code, errOut)
	}

	// A 2xx that is not the contract's JSON.
	f.override = func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "<html>ok</html>")
	}
	code, _, errOut = api(t, srv, "consent", "set", "c1", "analytics", "granted")
	if code != exitFailed || !strings.Contains(errOut, "not JSON") {
		t.Fatalf("exit %d %q", code, errOut)
	}
	f.override = func(w http.ResponseWriter, _ *http.Request) {
		writeJSONResp(w, http.StatusOK, []int{1})
	}
	code, _, errOut = api(t, srv, "consent", "get", "c1")
	if code != exitFailed || !strings.Contains(errOut, "unexpected shape") {
		t.Fatalf("exit %d %q", code, errOut)
	}

	// A redirect is not followed (it would turn the PUT into a GET).
	f.override = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
	}
	n := len(f.requests())
	code, _, errOut = api(t, srv, "consent", "set", "c1", "analytics", "granted")
	if code != exitFailed || !strings.Contains(errOut, "301") || len(f.requests()) != n+1 {
		t.Fatalf("exit %d %q, %d requests", code, errOut, len(f.requests())-n)
	}
}

func TestNetworkError(t *testing.T) {
	_, srv := newFakeAPI(t)
	url := srv.URL
	srv.Close()
	withPassword := strings.Replace(url, "http://", "http://ops:s3cret@", 1)
	code, out, errOut := runCLI(t, nil, "consent", "set", "c1", "analytics", "granted", "--api", withPassword)
	if code != exitFailed || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "cannot reach the consent API at http://ops:xxxxx@") {
		t.Fatalf("stderr %q", errOut)
	}
	if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "/v1/") {
		t.Fatalf("stderr shows a password or the request URL: %q", errOut)
	}
}

func TestTimeout(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.override = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	code, _, errOut := api(t, srv, "consent", "get", "c1", "--timeout", "100ms")
	if code != exitFailed || !strings.Contains(errOut, "did not answer within 100ms") {
		t.Fatalf("exit %d %q", code, errOut)
	}
}

func TestAPIURLResolution(t *testing.T) {
	f, srv := newFakeAPI(t)
	env := map[string]string{envAPIURL: srv.URL}
	if code, _, e := runCLI(t, env, "consent", "get", "c1"); code != exitFailed || !strings.Contains(e, "404") {
		t.Fatalf("from env: exit %d %s", code, e)
	}
	if len(f.requests()) != 1 {
		t.Fatal("the env URL was not used")
	}
	// --api wins over the environment.
	env[envAPIURL] = "http://127.0.0.1:1"
	if code, _, e := runCLI(t, env, "--api", srv.URL, "consent", "get", "c1"); code != exitFailed || !strings.Contains(e, "404") {
		t.Fatalf("--api: exit %d %s", code, e)
	}
	// Neither: the default.
	p, _ := parseArgs([]string{"consent", "get", "c1"})
	c, err := clientFor(p, func(string) string { return "" })
	if err != nil || c.base.String() != defaultAPIURL || c.http.Timeout != defaultTimeout {
		t.Fatalf("default: %v %v", c, err)
	}
	// A path prefix (behind a gateway) is kept.
	prefixed := httptest.NewServer(http.StripPrefix("/consent", srv.Config.Handler))
	defer prefixed.Close()
	n := len(f.requests())
	if code, _, e := runCLI(t, nil, "--api", prefixed.URL+"/consent/", "consent", "get", oddSubject); code != exitFailed || !strings.Contains(e, "404") {
		t.Fatalf("prefix: exit %d %s", code, e)
	}
	if r := f.requests()[n]; r.Subject != oddSubject || r.EscapedPath != "/v1/subjects/"+oddSubjectEscaped+"/consents" {
		t.Fatalf("prefix: %s %q", r.EscapedPath, r.Subject)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"consent", "set", "--help"}} {
		code, out, _ := runCLI(t, nil, args...)
		if code != exitOK || out != usage {
			t.Fatalf("%v: exit %d %q", args, code, out)
		}
	}
	code, out, errOut := runCLI(t, nil)
	if code != exitUsage || out != "" || !strings.Contains(errOut, usage) {
		t.Fatalf("no args: exit %d", code)
	}
	for _, v := range slices.Concat(contractPurposes, contractStates, contractJurisdictions, contractSources) {
		if !strings.Contains(usage, v) {
			t.Errorf("usage does not list %q", v)
		}
	}
}

// TestValuesMatchContract keeps the client's lists equal to the contract
// and to the pipeline's own packages.
func TestValuesMatchContract(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"purposes", purposes, contractPurposes},
		{"states", states, contractStates},
		{"jurisdictions", jurisdictions, contractJurisdictions},
		{"sources", sources, contractSources},
		{"purpose package", purpose.Names(), contractPurposes},
		{"consent jurisdictions", sorted(consent.JurisdictionNames()), sorted(contractJurisdictions)},
		{"consent states", []string{consent.Granted.String(), consent.Denied.String(), consent.Withdrawn.String()}, contractStates},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestProfile(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := api(t, srv, "consent", "profile", oddSubject, "--jurisdiction", "ccpa", "--source", "import", "--timestamp", "2026-01-02T03:04:05Z")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := f.requests()[0]
	if r.Method != "PUT" || r.EscapedPath != "/v1/subjects/"+oddSubjectEscaped+"/profile" || r.Subject != oddSubject || r.ContentType != "application/json" {
		t.Fatalf("request %s %s (%q)", r.Method, r.EscapedPath, r.Subject)
	}
	// Only what was given is sent: no gpc, no policy version (the API's default).
	want := map[string]any{"jurisdiction": "ccpa", "source": "import", "timestamp": "2026-01-02T03:04:05Z"}
	if got := decodeBodyMap(t, r.Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	if !strings.Contains(out, "accepted: subject \"cust/42 ü\" jurisdiction ccpa gpc -") || strings.Count(out, "\n") != 1 {
		t.Fatalf("output %q", out)
	}

	// A GPC signal alone; gpc_signal implies true on the API side.
	if code, out, errOut = api(t, srv, "consent", "profile", "c2", "--source", "gpc_signal"); code != exitOK || !strings.Contains(out, "gpc true") {
		t.Fatalf("gpc_signal: exit %d %q %q", code, out, errOut)
	}
	if got := decodeBodyMap(t, f.requests()[1].Body); !mapsEqual(got, map[string]any{"source": "gpc_signal"}) {
		t.Fatalf("body %v", got)
	}
	if code, _, errOut = api(t, srv, "consent", "profile", "c2", "--gpc=false", "--policy-version", "p2"); code != exitOK {
		t.Fatalf("gpc false: exit %d %s", code, errOut)
	}
	if got := decodeBodyMap(t, f.requests()[2].Body); !mapsEqual(got, map[string]any{"gpc": false, "source": "web_form", "policy_version": "p2"}) {
		t.Fatalf("body %v", got)
	}
	// --json prints the answer as is.
	code, out, _ = api(t, srv, "--json", "consent", "profile", "c3", "--jurisdiction", "gdpr", "--gpc", "1")
	var pr profileReceipt
	if code != exitOK || json.Unmarshal([]byte(out), &pr) != nil || pr.Jurisdiction != "gdpr" || pr.GPC == nil || !*pr.GPC {
		t.Fatalf("--json: %d %q", code, out)
	}

	// get shows the profile; history shows it without purpose and state.
	code, out, _ = api(t, srv, "consent", "get", "c2")
	if code != exitOK || !strings.Contains(out, "gpc:          false (recorded ") || !strings.Contains(out, "jurisdiction: unknown\n") {
		t.Fatalf("get: %d\n%s", code, out)
	}
	code, out, _ = api(t, srv, "consent", "history", "c2")
	if code != exitOK || !strings.Contains(out, "GPC") || !strings.Contains(out, "gpc_signal") {
		t.Fatalf("history: %d\n%s", code, out)
	}
	var gpcs []string
	for _, l := range strings.Split(out, "\n") {
		if fs := strings.Fields(l); len(fs) == 8 && fs[1] == "-" && fs[2] == "-" {
			gpcs = append(gpcs, fs[4])
		}
	}
	if !slices.Equal(gpcs, []string{"false", "true"}) {
		t.Fatalf("history GPC column %q:\n%s", gpcs, out)
	}
}

func TestGPCFlagOnSetAndWithdraw(t *testing.T) {
	f, srv := newFakeAPI(t)
	code, out, errOut := api(t, srv, "consent", "set", "c1", "marketing", "denied", "--jurisdiction", "ccpa", "--gpc", "true")
	if code != exitOK || !strings.Contains(out, "state denied gpc true") {
		t.Fatalf("set: exit %d %q %q", code, out, errOut)
	}
	want := map[string]any{"state": "denied", "jurisdiction": "ccpa", "source": "web_form", "policy_version": "cli", "gpc": true}
	if got := decodeBodyMap(t, f.requests()[0].Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	if code, _, errOut = api(t, srv, "consent", "withdraw", "c1", "analytics", "--gpc", "false"); code != exitOK {
		t.Fatalf("withdraw: exit %d %s", code, errOut)
	}
	want = map[string]any{"source": "web_form", "policy_version": "cli", "gpc": false}
	if got := decodeBodyMap(t, f.requests()[1].Body); !mapsEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	// Without --gpc nothing is sent about it.
	api(t, srv, "consent", "set", "c1", "analytics", "granted")
	if got := decodeBodyMap(t, f.requests()[2].Body); got["gpc"] != nil {
		t.Fatalf("gpc sent without --gpc: %v", got)
	}
	code, out, _ = api(t, srv, "consent", "get", "c1")
	if code != exitOK || !strings.Contains(out, "gpc:          false (recorded ") {
		t.Fatalf("get:\n%s", out)
	}
}

func TestImportSubjectLevelRows(t *testing.T) {
	f, srv := newFakeAPI(t)
	content := csvHeaderGPC + "\n" +
		"c1,,,ccpa,import,,,\n" +
		"c2,,,ccpa,import,,,true\n" +
		"c3,,,,import,,,\n"
	file := writeFile(t, "profiles.csv", content)
	code, out, _ := api(t, srv, "consent", "import", file)
	if code != exitRejected || !strings.Contains(out, "2 accepted, 1 rejected") || !strings.Contains(out, "line 4:") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if r := f.requests()[0]; string(r.Body) != content {
		t.Fatalf("the file was not sent as is: %q", r.Body)
	}
}

// TestTokenAndTLSFlags: --token-file sends the bearer token, --ca trusts
// the API's private CA, --cert/--key present a client certificate; without
// the token the API's 401 message is shown and the exit code says failed.
func TestTokenAndTLSFlags(t *testing.T) {
	ca := testpki.New(t)
	server := ca.Server("api")
	client := ca.Client("ctl", pkix.Name{CommonName: "privacyctl"})
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "ops.token")
	if err := os.WriteFile(tokFile, []byte("ppt_canary-token-5521\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, plain := newFakeAPI(t)
	plain.Close()
	f.override = nil
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer ppt_canary-token-5521" || len(r.TLS.PeerCertificates) == 0 {
			writeJSONResp(w, http.StatusUnauthorized, map[string]any{"error": "authentication required: send a bearer token"})
			return
		}
		plain.Config.Handler.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{server.TLS}, ClientCAs: ca.Pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tlsArgs := []string{"--api", srv.URL, "--ca", ca.File, "--cert", client.CertFile, "--key", client.KeyFile}
	code, out, errOut := runCLI(t, nil, append(tlsArgs, "--token-file", tokFile, "consent", "set", "c1", "analytics", "granted", "--jurisdiction", "gdpr")...)
	if code != 0 {
		t.Fatalf("with token and certificate: exit %d %q %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, nil, append(tlsArgs, "consent", "get", "c1")...)
	if code != exitFailed || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "authentication required") {
		t.Fatalf("without token: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "--api", srv.URL, "--token-file", tokFile, "consent", "get", "c1")
	if code == 0 || strings.Contains(errOut, "canary-token") {
		t.Fatalf("untrusted CA: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "--api", srv.URL, "--token-file", filepath.Join(dir, "missing"), "consent", "get", "c1")
	if code == 0 || !strings.Contains(errOut, "--token-file") {
		t.Fatalf("missing token file: exit %d %q", code, errOut)
	}
}
