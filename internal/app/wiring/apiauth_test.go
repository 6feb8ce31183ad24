package wiring

import (
	"context"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/testrig/testpki"
)

// TestConsentAPICommandOverTLSWithTokens: 'pipeline run consent-api' with
// a certificate and a principals file serves only TLS; a forged grant for
// another customer without a token, or with a read-only token, is refused
// and writes nothing; a grant with a write token is accepted and its
// record in the consent topic names the principal; a client certificate
// listed in the file authenticates as its principal.
func TestConsentAPICommandOverTLSWithTokens(t *testing.T) {
	cfg := testConfig(t)
	ca := testpki.New(t)
	server := ca.Server("api")
	crm := ca.Client("crm", pkix.Name{CommonName: "crm-sync", Organization: []string{"Acme"}})
	writer, we, _ := httpauth.NewToken("privacy-center", []httpauth.Scope{httpauth.ScopeConsentWrite}, time.Time{})
	reader, re, _ := httpauth.NewToken("dashboard", []httpauth.Scope{httpauth.ScopeConsentRead}, time.Time{})
	cfg.Consent.API = config.ConsentAPI{TLSCertFile: server.CertFile, TLSKeyFile: server.KeyFile, TLSClientCAFile: ca.File,
		Auth: "token,mtls", RateLimit: 50, RateBurst: 100,
		AuthFile: writePrincipals(t, httpauth.File{Tokens: []httpauth.TokenEntry{we, re},
			Certificates: []httpauth.CertificateEntry{{Subject: "CN=crm-sync,O=Acme", Principal: "crm", Scopes: []httpauth.Scope{httpauth.ScopeConsentWrite}}}})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := make(chan string, 1)
	var logs strings.Builder
	app, err := NewApp(ctx, CommandConsentAPI, cfg, AppOptions{Log: slog.New(slog.NewJSONHandler(&syncWriter{b: &logs}, nil)), Bound: bound})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	base := "https://" + <-bound
	if status(strings.Replace(base, "https:", "http:", 1)+"/healthz") == http.StatusOK {
		t.Fatal("the API answered plain HTTP")
	}
	call := func(token string, certs ...testpki.Leaf) (int, string) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(certs...)}, Timeout: 30 * time.Second}
		req, _ := http.NewRequest("PUT", base+"/v1/subjects/victim-canary-4417/consents/marketing",
			strings.NewReader(`{"state":"granted","jurisdiction":"gdpr","source":"web_form","policy_version":"v1"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(""); code != 401 {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := call(reader); code != 403 {
		t.Fatalf("read-only token: %d %s", code, body)
	}
	if code, body := call(writer); code != 202 {
		t.Fatalf("write token: %d %s", code, body)
	}
	if code, body := call("", crm); code != 202 {
		t.Fatalf("listed client certificate: %d %s", code, body)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ConsumeTopics(cfg.Names.ConsentTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var principals []string
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	for len(principals) < 4 && pctx.Err() == nil { // two changes, each with its subject-level companion
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { principals = append(principals, consentlog.PrincipalOf(r)) })
	}
	if strings.Join(principals, ",") != "privacy-center,privacy-center,crm,crm" {
		t.Fatalf("recorded principals %v (the refused requests must write nothing)", principals)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "victim-canary-4417") || strings.Contains(logs.String(), writer) {
		t.Fatalf("a subject id or a token reached the log:\n%s", logs.String())
	}
}
