package wiring

import (
	"context"
	"encoding/base64"
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

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
)

// TestSecretsCanary is the canary test for secrets: a marker in every
// secret setting (the Kafka SASL password, the Redis password, the
// registry password, the inline pseudonym keyring, the consent API's log
// key and bearer tokens, a forged token) while every command runs, serves
// requests and stops, then while it fails on a wrong Kafka or Redis
// password; no marker appears in any log line, /metrics page, error or
// the printed configuration.
func TestSecretsCanary(t *testing.T) {
	const marker = "canarySecret"
	kafkaPassword, redisPassword, registryPassword := marker+"Kafka7c1", marker+"Redis7c1", marker+"Registry7c1"
	cfg := testConfig(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "pipeline", kafkaPassword))
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg.Kafka.SASLMechanism, cfg.Kafka.SASLUsername, cfg.Kafka.SASLPassword = "SCRAM-SHA-512", "pipeline", kafkaPassword
	mr := miniredis.RunT(t)
	mr.RequireUserAuth("pipeline", redisPassword)
	cfg.Redis.Addr, cfg.Redis.Username, cfg.Redis.PasswordFile = mr.Addr(), "pipeline", write("redis-password", redisPassword)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("pipeline:"+registryPassword))
	reg := srfake.New(srfake.WithAuth(basic))
	t.Cleanup(reg.Close)
	cfg.Schemas.Registry.URL, cfg.Schemas.Registry.Username, cfg.Schemas.Registry.Password = []string{reg.URL()}, "pipeline", registryPassword
	type key struct {
		Purpose string `json:"purpose"`
		ID      string `json:"id"`
		Secret  string `json:"secret"`
		Active  bool   `json:"active"`
	}
	var keyring struct {
		Keys []key `json:"keys"`
	}
	secrets := []string{kafkaPassword, redisPassword, registryPassword, basic}
	for i, p := range purpose.Names() {
		s := fmt.Sprintf("%sPseudonymKey%020d", marker, i) // base64 of 33 bytes
		keyring.Keys = append(keyring.Keys, key{Purpose: p, ID: p + "-canary", Secret: s, Active: true})
		secrets = append(secrets, s)
	}
	kb, _ := json.Marshal(keyring)
	cfg.Privacy.PseudonymKeysFile, cfg.Privacy.PseudonymKeys = "", string(kb)
	logKey := marker + "LogKey7c1"
	cfg.Consent.API.LogKeyFile = write("log-key", logKey)
	token, entry, err := httpauth.NewToken("privacy-center", []httpauth.Scope{httpauth.ScopeAdmin}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Consent.API.AuthFile = writePrincipals(t, httpauth.File{Tokens: []httpauth.TokenEntry{entry}})
	forged := "ppt_" + marker + "Forged7c1"
	secrets = append(secrets, logKey, token, forged)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	logs := &pipelinetest.SyncBuffer{}
	var texts []string
	run := func(command string, c config.Config, serve func(addr string)) error {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		bound := make(chan string, 1)
		log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("command", command)
		app, err := NewApp(ctx, command, c, AppOptions{Log: log, Bound: bound})
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx) }()
		select {
		case addr := <-bound:
			if serve != nil {
				serve(addr)
			}
		case err := <-done:
			return err
		}
		cancel()
		return <-done
	}
	get := func(url, token string) string {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, command := range Commands {
		err := run(command, cfg, func(addr string) {
			deadline := time.Now().Add(time.Minute)
			for status("http://"+addr+"/readyz") != http.StatusOK && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if command == CommandConsentAPI {
				for _, tok := range []string{token, forged, ""} {
					texts = append(texts, get("http://"+addr+"/v1/subjects/someone/consents", tok))
				}
			}
			texts = append(texts, get("http://"+addr+"/metrics", ""))
		})
		if err != nil {
			t.Fatalf("%s with the marker secrets: %v", command, err)
		}
	}
	if !strings.Contains(strings.Join(texts, ""), `pipeline_api_auth_refused_total{reason=`) {
		t.Fatal("the forged token was not refused and counted")
	}

	// Failing on a wrong password: the error and the log show neither.
	wrongKafka := cfg
	wrongKafka.Kafka.SASLPassword = "wrong" + kafkaPassword
	wrongRedis := cfg
	wrongRedis.Redis.PasswordFile = write("wrong-redis-password", "wrong"+redisPassword)
	for name, c := range map[string]config.Config{"a wrong Kafka password": wrongKafka, "a wrong Redis password": wrongRedis} {
		// The two that use both; each retries, logs and is stopped.
		for _, command := range []string{CommandPrivacy, CommandConsentSync} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := run(command, c, func(string) { <-ctx.Done() })
			cancel()
			t.Logf("%s, %s: %v", name, command, err)
			if err != nil {
				texts = append(texts, err.Error())
			}
		}
	}
	if !strings.Contains(logs.String(), "WRONGPASS") {
		t.Errorf("the wrong Redis password was not reported in the log")
	}
	texts = append(texts, logs.String(), strings.Join(cfg.Lines(), "\n"), fmt.Sprintf("%v %+v", cfg.Redacted(), cfg.Redacted()))
	all := strings.Join(texts, "\n")
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("a secret (%.16s...) appears in a log, a page, an error or the printed configuration", s)
		}
	}
	if strings.Contains(all, marker) {
		t.Errorf("the marker %q appears in a log, a page, an error or the printed configuration", marker)
	}
	t.Logf("%d secrets, %d commands: %d bytes of logs, pages, errors and configuration scanned", len(secrets), len(Commands), len(all))
}
