package wiring

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/topology"
)

// testConfig points every section at an in-process cluster (with opts)
// and Redis, with the default names (topics created on the cluster).
func testConfig(t *testing.T, opts ...kfake.Opt) config.Config {
	t.Helper()
	names := topology.DefaultNames()
	topics := []string{names.Raw, names.Consent, names.Quarantine, names.Keys, names.Audit, names.Partials(), names.Requests, names.Erasures}
	for _, p := range purpose.All {
		topics = append(topics, names.Clean(p))
	}
	for _, a := range names.Kanon.Aggregates {
		topics = append(topics, a.TopicFrom(names.AggTemplate))
	}
	topics = append(topics, names.Kanon.Records.TopicFrom(names.KanonTemplate))
	for _, p := range []string{topology.KanonAggregates, topology.KanonMerge, topology.KanonRecords} {
		topics = append(topics, names.State(p))
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topics...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	mr := miniredis.RunT(t)
	for _, k := range []string{"PIPELINE_KAFKA_BROKERS", "PIPELINE_REDIS_ADDR", "PIPELINE_HTTP_ADDR", "PIPELINE_CONSENT_API_ADDR"} {
		t.Setenv(k, "")
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = c.ListenAddrs()
	cfg.Redis.Addr = mr.Addr()
	cfg.Ops.HTTPAddr = "127.0.0.1:0"
	cfg.Consent.APIAddr = "127.0.0.1:0"
	cfg.Consent.RequireLoaded = false
	sreg := srfake.New() // the outputs' schemas are registered at start
	t.Cleanup(sreg.Close)
	cfg.Schemas.WireFormat = "confluent"
	cfg.Schemas.Registry.URL = []string{sreg.URL()}
	kr, err := pseudonym.GenerateKeyring(purpose.Names(), "test")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Privacy.PseudonymKeysFile = filepath.Join(t.TempDir(), "keys.json")
	if err := pseudonym.WriteKeyringFile(cfg.Privacy.PseudonymKeysFile, kr); err != nil {
		t.Fatal(err)
	}
	// The erasure ledger (pipeline run requests needs it; privacy and the
	// consent API check it).
	cfg.Keys.ErasureKeyFile = filepath.Join(t.TempDir(), "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(cfg.Keys.ErasureKeyFile); err != nil {
		t.Fatal(err)
	}
	// The consent API authenticates by default: one admin token.
	_, e, err := httpauth.NewToken("test-admin", []httpauth.Scope{httpauth.ScopeAdmin}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Consent.API.AuthFile = writePrincipals(t, httpauth.File{Tokens: []httpauth.TokenEntry{e}})
	return cfg
}

func writePrincipals(t *testing.T, f httpauth.File) string {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "principals.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestEveryCommandStartsServesAndStops: each 'pipeline run' command,
// assembled by NewApp, serves its endpoints, becomes ready on a working
// cluster and Redis, and returns nil on SIGTERM (ctx) after its services
// stopped. The deadlines are backstops, not timing assertions.
func TestEveryCommandStartsServesAndStops(t *testing.T) {
	for _, command := range Commands {
		t.Run(command, func(t *testing.T) {
			cfg := testConfig(t)
			var logs strings.Builder
			w := &syncWriter{b: &logs}
			addr, stop := startReady(t, command, cfg, slog.New(slog.NewJSONHandler(w, nil)))
			if status("http://"+addr+"/metrics") != http.StatusOK || status("http://"+addr+"/healthz") != http.StatusOK {
				t.Fatal("the operational endpoints are not served")
			}
			if err := stop(); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if !strings.Contains(logs.String(), " started\"") || (command != CommandConsentSync && command != CommandConsentAPI && !strings.Contains(logs.String(), " stopped\"")) {
				t.Errorf("start and stop lines missing: %s", logs.String())
			}
		})
	}
}

// TestAssemblyErrorsCloseAndReport: an unknown command, or the privacy
// processor without pseudonym keys, is refused at assembly with a clear
// error (nothing starts half-built).
func TestAssemblyErrorsCloseAndReport(t *testing.T) {
	if _, err := NewApp(context.Background(), "frobnicate", config.Config{}, AppOptions{}); err == nil {
		t.Fatal("an unknown command was assembled")
	}
	cfg := testConfig(t)
	cfg.Privacy.PseudonymKeysFile = ""
	if _, err := NewApp(context.Background(), CommandPrivacy, cfg, AppOptions{}); err == nil || !strings.Contains(err.Error(), "PIPELINE_PSEUDONYM_KEYS_FILE") {
		t.Fatalf("privacy without keys: %v", err)
	}
	// A policy that encrypts needs the key-encryption key.
	cfg = testConfig(t)
	cfg.Privacy.PolicyFile, _, _ = pipelinetest.EncryptingPolicy(t)
	if _, err := NewApp(context.Background(), CommandPrivacy, cfg, AppOptions{}); err == nil || !strings.Contains(err.Error(), "PIPELINE_KEK_FILE") {
		t.Fatalf("an encrypting policy without a key-encryption key: %v", err)
	}
}

// TestSectionsOfEachCommand: a command validates only what it reads; the
// consent API never loads the k-anonymity settings.
func TestSectionsOfEachCommand(t *testing.T) {
	for _, c := range Commands {
		secs := Sections(c)
		if len(secs) == 0 || len(secs) == len(config.AllSections) {
			t.Errorf("%s loads %v", c, secs)
		}
	}
	for _, s := range Sections(CommandConsentAPI) {
		if s == config.SectionKanon || s == config.SectionCastle || s == config.SectionPrivacy {
			t.Errorf("consent-api loads section %d", s)
		}
	}
}

// syncWriter serialises writes of several goroutines' log lines.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestConfluentNeedsARegistry: the default wire format without a registry
// stops the start with a message naming both ways out.
func TestConfluentNeedsARegistry(t *testing.T) {
	for _, command := range []string{CommandPrivacy, CommandKanon, CommandKanonRecords} {
		cfg := testConfig(t)
		cfg.Schemas.Registry.URL = nil
		_, err := NewApp(context.Background(), command, cfg, AppOptions{})
		if err == nil || !strings.Contains(err.Error(), "PIPELINE_SCHEMA_REGISTRY_URL") || !strings.Contains(err.Error(), "PIPELINE_WIRE_FORMAT=single-object") {
			t.Errorf("%s without a registry: %v", command, err)
		}
	}
}

// TestPrivacyCommandWithDataKeys: with a policy that encrypts and its
// key-encryption key, 'pipeline run privacy' assembles its data key store
// and becomes ready.
func TestPrivacyCommandWithDataKeys(t *testing.T) {
	cfg := testConfig(t)
	cfg.Privacy.PolicyFile, cfg.Keys.KEKFile, _ = pipelinetest.EncryptingPolicy(t)
	_, stop := startReady(t, CommandPrivacy, cfg, slog.New(slog.DiscardHandler))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// startReady starts a command and waits until /readyz answers 200 (a
// backstop deadline, not a timing assertion); stop ends it and returns
// Run's error.
func startReady(t *testing.T, command string, cfg config.Config, log *slog.Logger) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bound := make(chan string, 1)
	app, err := NewApp(ctx, command, cfg, AppOptions{Log: log, Bound: bound})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	addr = <-bound
	deadline := time.Now().Add(60 * time.Second)
	for status("http://"+addr+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready", command)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !app.Ready() {
		t.Fatal("App.Ready disagrees with /readyz")
	}
	return addr, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("the command did not stop after SIGTERM")
		}
	}
}

// TestKeySettingsReachTheCommandsThatUseThem (the bug it names: a command
// loads only its sections, so a setting in a section it does not load is
// silently its default): the data key prefix, the key-encryption key and
// the erasure ledger's key reach privacy, consent-sync (the key sync) and
// consent-api (the ledger check) as set.
func TestKeySettingsReachTheCommandsThatUseThem(t *testing.T) {
	t.Setenv("PIPELINE_DATA_KEY_PREFIX", "x:dk:")
	t.Setenv("PIPELINE_KEK_FILE", "/secrets/kek.json")
	t.Setenv("PIPELINE_ERASURE_KEY_FILE", "/secrets/ledger.key")
	for _, c := range []string{CommandPrivacy, CommandConsentSync, CommandConsentAPI} {
		cfg, err := config.Load(Sections(c)...)
		if err != nil {
			t.Fatal(err)
		}
		if k := cfg.Keys; k.DataKeyPrefix != "x:dk:" || k.KEKFile != "/secrets/kek.json" || k.ErasureKeyFile != "/secrets/ledger.key" {
			t.Errorf("%s sees %+v", c, k)
		}
	}
}
