package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/internal/testrig/testpki"
	"github.com/privacy-pipeline/pipeline/topology"
)

// securedApp is one 'pipeline run' command started by the test.
type securedApp struct {
	name, addr string
	done       chan error
}

// TestCommandsOverSASLSSLAndRedisTLS runs the pipeline's commands as an
// operator deploys them on a secured cluster, all at once, on the real
// broker and redis-server: consent-api (TLS listener, bearer tokens),
// consent-sync, privacy, kanon and kanon-records, each connecting to
// Kafka over SASL_SSL (SCRAM-SHA-512) with only the ACLs 'topology apply
// --acls' derives, and to Redis over TLS as the ACL user. Consent granted
// through the API reaches Redis and decides what the privacy processor
// publishes; the k-anonymity processors consume and commit their inputs;
// an analytics consumer principal reads the clean topics. The API refuses
// a missing, an expired and an unknown token (401) and a token without
// the scope (403), and writes nothing for them; every accepted change
// records its principal. Then the canary for secrets: no password, token,
// key or subject id appears in any command's log, in any /metrics page or
// in the printed configuration.
func TestCommandsOverSASLSSLAndRedisTLS(t *testing.T) {
	sasl, consumer, mtls := secured(t, "sasl"), secured(t, "consumer"), secured(t, "mtls")
	rc := redisTLS(t)
	r := newRig(t)
	commands := []string{wiring.CommandConsentSync, wiring.CommandConsentAPI, wiring.CommandPrivacy, wiring.CommandKanon, wiring.CommandKanonRecords, wiring.CommandRequests}
	procs := map[string]string{}
	for _, c := range commands {
		procs[c] = processorPrincipal
	}
	dashboards := r.cfg.Names.GroupID + "-dashboards"
	r.grantACLs(topology.ACLSpec{Processors: procs, Producers: []string{producerPrincipal},
		Consumers: []topology.ACLConsumer{{Principal: consumerPrincipal, Purposes: purpose.Names(), Groups: []string{dashboards}}}})

	dir := t.TempDir()
	ca := testpki.New(t)
	server := ca.Server("consent-api")
	writer, we, _ := httpauth.NewToken("privacy-center", []httpauth.Scope{httpauth.ScopeConsentWrite, httpauth.ScopeConsentRead,
		httpauth.ScopeRequestsWrite, httpauth.ScopeRequestsRead}, time.Time{})
	reader, re, _ := httpauth.NewToken("dashboard", []httpauth.Scope{httpauth.ScopeConsentRead}, time.Time{})
	expired, ee, _ := httpauth.NewToken("contractor", []httpauth.Scope{httpauth.ScopeAdmin}, time.Now().Add(-time.Hour))
	unknown, _, _ := httpauth.NewToken("nobody", []httpauth.Scope{httpauth.ScopeAdmin}, time.Time{})
	principals, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{we, re, ee}})
	logKey := "canary-secret-log-key-" + fmt.Sprint(time.Now().UnixNano())
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := r.cfg
	cfg.Kafka, cfg.Redis = sasl, rc
	cfg.Ops.HTTPAddr, cfg.Consent.APIAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Consent.API = config.ConsentAPI{TLSCertFile: server.CertFile, TLSKeyFile: server.KeyFile, Auth: "token",
		AuthFile: write("principals.json", string(principals)), LogKeyFile: write("log-key", logKey), RateLimit: 500, RateBurst: 500}
	cfg.Privacy.PseudonymKeysFile = filepath.Join(dir, "keys.json")
	if err := pseudonym.WriteKeyringFile(cfg.Privacy.PseudonymKeysFile, r.keys); err != nil {
		t.Fatal(err)
	}
	// The erasure ledger (privacy, consent-api, requests) and the KEK
	// (requests: the exports decrypt with it).
	cfg.Keys.ErasureKeyFile, cfg.Keys.KEKFile = filepath.Join(dir, "ledger.key"), filepath.Join(dir, "kek.json")
	if err := erasure.GenerateLedgerKeyFile(cfg.Keys.ErasureKeyFile); err != nil {
		t.Fatal(err)
	}
	if err := subjectkey.GenerateKEKFile(cfg.Keys.KEKFile); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	logs := &pipelinetest.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() { // the commands' warnings and errors, to see why
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
					t.Log(l)
				}
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var apps []securedApp
	for _, c := range commands {
		bound := make(chan string, 1)
		app, err := wiring.NewApp(ctx, c, cfg, wiring.AppOptions{Bound: bound,
			Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("command", c)})
		if err != nil {
			t.Fatalf("%s over SASL_SSL and Redis TLS: %v", c, err)
		}
		a := securedApp{name: c, done: make(chan error, 1)}
		go func() { a.done <- app.Run(ctx) }()
		select {
		case a.addr = <-bound:
		case err := <-a.done:
			t.Fatalf("%s stopped at start: %v", c, err)
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s did not listen within 2 minutes", c)
		}
		apps = append(apps, a)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for _, a := range apps {
			if err := <-a.done; err != nil {
				t.Errorf("%s: %v", a.name, err)
			}
		}
	}
	defer stop()
	api := "https://" + apps[1].addr
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}, Timeout: 30 * time.Second}
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, api+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const subjects = 12
	grant := `{"state":"granted","jurisdiction":"gdpr","source":"web_form","policy_version":"it"}`
	for name, tc := range map[string]struct {
		token string
		want  int
	}{"no token": {"", 401}, "expired token": {expired, 401}, "unknown token": {unknown, 401}, "read-only token": {reader, 403}} {
		if code, body := call("PUT", "/v1/subjects/"+synth.SubjectID(0)+"/consents/analytics", tc.token, grant); code != tc.want {
			t.Fatalf("%s: %d %s, want %d", name, code, body, tc.want)
		}
	}
	for i := range subjects {
		for _, p := range purpose.All {
			if code, body := call("PUT", "/v1/subjects/"+synth.SubjectID(i)+"/consents/"+p.String(), writer, grant); code != http.StatusAccepted {
				t.Fatalf("grant %s: %d %s", p, code, body)
			}
		}
	}
	// consent-sync applies them to Redis (over TLS); the history records
	// who made each change.
	waitUntil(t, "the consent granted through the API in Redis", time.Minute, func() bool {
		code, body := call("GET", "/v1/subjects/"+synth.SubjectID(subjects-1)+"/consents/history", reader, "")
		return code == 200 && strings.Count(body, `"changed_by":"privacy-center"`) == len(purpose.All)
	})
	consentRecords := len(r.read(r.consentTopic()))

	// Events from the producer principal over mutual TLS.
	produced := r.produceAs(ctx, mtls, 61, subjects, 120)
	r.waitCaughtUp(2 * time.Minute)
	analytics, aiTraining := wiring.CleanTopic(cfg, purpose.Analytics), wiring.CleanTopic(cfg, purpose.AITraining)
	n, err := consumeAs(ctx, consumer, dashboards+"-it", analytics, produced)
	if err != nil || n != produced {
		t.Fatalf("the analytics consumer read %d of %d events (all consented through the API): %v", n, produced, err)
	}
	r.waitConsumed(cfg.Names.KanonAggregatesGroup, analytics, 2*time.Minute)
	r.waitConsumed(cfg.Names.CastleGroup, aiTraining, 2*time.Minute)

	// An erasure request for subject 0, carried out by 'pipeline run
	// requests' under its principal's ACLs (its transaction on the key,
	// consent and erasures topics, the request log).
	code, body := call("POST", "/v1/subjects/"+synth.SubjectID(0)+"/erasure", writer, `{"id":"sasl-1","verified":true}`)
	if code != http.StatusAccepted {
		t.Fatalf("erasure request: %d %s", code, body)
	}
	var done struct {
		Status string           `json:"status"`
		Result map[string]int64 `json:"result"`
	}
	waitUntil(t, "the erasure request done over SASL_SSL", 2*time.Minute, func() bool {
		code, body := call("GET", "/v1/requests/rq_c_sasl-1", writer, "")
		return code == 200 && json.Unmarshal([]byte(body), &done) == nil && done.Status == "done"
	})
	consentRecords += int(done.Result["consent_keys"]) // the erasure's tombstones

	var pages []string
	for _, a := range apps {
		url := "http://" + a.addr + "/metrics"
		cl := http.DefaultClient
		if a.name == wiring.CommandConsentAPI {
			url, cl = api+"/metrics", hc
		}
		resp, err := cl.Get(url)
		if err != nil {
			t.Fatalf("%s /metrics: %v", a.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pages = append(pages, string(b))
	}
	stop()
	if got := len(r.read(r.consentTopic())); got != consentRecords || got == 0 {
		t.Fatalf("consent topic holds %d records, %d after the accepted changes", got, consentRecords)
	}
	api401 := strings.Contains(strings.Join(pages, ""), `pipeline_api_requests_total{code="401"`)
	if !api401 {
		t.Error("the refused requests are not counted in pipeline_api_requests_total")
	}

	// The canary for secrets (and subject ids in the API's log).
	saslPassword, _ := os.ReadFile(sasl.SASLPasswordFile)
	redisPassword, _ := os.ReadFile(rc.PasswordFile)
	serverKey, _ := os.ReadFile(server.KeyFile)
	secrets := map[string]string{
		"the Kafka SASL password": strings.TrimSpace(string(saslPassword)), "the Redis password": strings.TrimSpace(string(redisPassword)),
		"a bearer token": writer, "the read-only token": reader, "the expired token": expired, "the unknown token": unknown,
		"the log key": logKey, "the API's TLS key": pemBody(string(serverKey)),
	}
	for i := range subjects {
		secrets["subject id "+fmt.Sprint(i)] = `"` + synth.SubjectID(i) + `"`
	}
	var keyring struct {
		Keys []struct{ ID, Secret string }
	}
	ledgerKey, _ := os.ReadFile(cfg.Keys.ErasureKeyFile)
	secrets["the erasure ledger key"] = strings.TrimSpace(string(ledgerKey))
	kek, _ := os.ReadFile(cfg.Keys.KEKFile)
	var kekSet struct {
		Key []struct {
			KeyData struct{ Value string } `json:"keyData"`
		} `json:"key"`
	}
	if err := json.Unmarshal(kek, &kekSet); err != nil || len(kekSet.Key) == 0 || kekSet.Key[0].KeyData.Value == "" {
		t.Fatalf("reading back the KEK file: %v", err)
	}
	secrets["the key-encryption key"] = kekSet.Key[0].KeyData.Value
	kb, _ := os.ReadFile(cfg.Privacy.PseudonymKeysFile)
	if err := json.Unmarshal(kb, &keyring); err != nil || len(keyring.Keys) == 0 {
		t.Fatalf("reading back the keyring file: %v", err)
	}
	for _, k := range keyring.Keys {
		secrets["the pseudonym key "+k.ID] = k.Secret
	}
	texts := map[string]string{"the logs": logs.String(), "the metrics": strings.Join(pages, "\n"),
		"config print": strings.Join(cfg.Lines(), "\n"), "%+v of the configuration": fmt.Sprintf("%+v", cfg.Redacted())}
	for what, secret := range secrets {
		if len(secret) < 8 {
			t.Fatalf("%s is too short to scan for", what)
		}
		for where, text := range texts {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %s", what, where)
			}
		}
	}
	t.Logf("%d commands over SASL_SSL and Redis TLS; %d secrets and subject ids scanned for in %d bytes of logs, %d of metrics",
		len(apps), len(secrets), len(logs.String()), len(strings.Join(pages, "")))
}

// waitConsumed waits until group has committed past every record of a
// topic that a transactional producer wrote (its end offset is one past
// the last commit marker, which a consumer need not commit past).
func (r *rig) waitConsumed(group, topic string, timeout time.Duration) {
	r.t.Helper()
	next := map[int32]int64{}
	for _, rec := range r.read(topic) {
		next[rec.Partition] = max(next[rec.Partition], rec.Offset+1)
	}
	if len(next) == 0 {
		r.t.Fatalf("%s is empty", topic)
	}
	waitUntil(r.t, "group "+group+" consuming "+topic, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		committed, err := r.adm.FetchOffsets(ctx, group)
		if err != nil {
			return false
		}
		for p, o := range next {
			if c, ok := committed.Lookup(topic, p); !ok || c.At < o {
				return false
			}
		}
		return true
	})
}

// pemBody is the base64 of a PEM block's first line of data: what would
// show if the key leaked.
func pemBody(p string) string {
	lines := strings.Split(p, "\n")
	if len(lines) < 2 {
		return p
	}
	return lines[1]
}
