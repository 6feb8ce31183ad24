package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/demo"
)

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), err
}

func TestDemoJSONAccounting(t *testing.T) {
	out, err := runCmd(t, "demo", "--events", "3000", "--subjects", "500", "--json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res demo.Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not the JSON result: %v", err)
	}
	if res.EventsIn != 3000 || len(res.Published) != purpose.Count || len(res.Denied) != purpose.Count {
		t.Fatalf("result %+v", res)
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.UnclassifiedDropped == 0 || len(res.Quarantined) == 0 {
		t.Fatalf("demo should show unclassified drops and quarantine: %+v", res)
	}
	k := res.Kanon
	if k.RowsReleased == 0 || k.MinSubjects < int64(k.K) || k.Released+k.Reused == 0 {
		t.Fatalf("k-anonymity stage: %+v", k)
	}
	if got := k.Released + k.Reused + k.Suppressed + k.Held; got != res.Published["ai_training"] {
		t.Errorf("CASTLE accounted for %d records of %d", got, res.Published["ai_training"])
	}
	for _, want := range []string{"published", "its clean form in clean.analytics.customer-events", "k-anonymous aggregates in agg.analytics.events_by_segment", "CASTLE"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if out, err := runCmd(t, "policy", "validate"); err != nil || !strings.Contains(out, "is valid") {
		t.Fatalf("checked-in policy: %v %s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version":"x","purposes":{"analytics":{"retention_days":1,"fields":{"email":{"action":"keep"}}}}}`), 0o644)
	_, err := runCmd(t, "policy", "validate", "--file", bad)
	if err == nil || !strings.Contains(err.Error(), "needs a stated reason") || !strings.Contains(err.Error(), "purpose marketing is missing") {
		t.Fatalf("want a clear error, got %v", err)
	}
}

func TestSchemasCheck(t *testing.T) {
	if out, err := runCmd(t, "schemas", "check", "--dir", "../../schemas"); err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestKeysGenerateNeverPrintsSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	out, err := runCmd(t, "keys", "generate", "--out", path, "--id", "2026-11")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := pseudonym.LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range purpose.Names() {
		k, ok := kr.Active(p)
		if !ok || k.ID != p+"-2026-11" {
			t.Fatalf("purpose %s: %v", p, k)
		}
		if strings.Contains(out, string(k.Secret)) {
			t.Fatal("secret printed")
		}
	}
	raw, _ := os.ReadFile(path)
	var doc struct{ Keys []struct{ Secret string } }
	json.Unmarshal(raw, &doc)
	for _, k := range doc.Keys {
		if strings.Contains(out, k.Secret) {
			t.Fatal("secret printed")
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if _, err := runCmd(t, "keys", "generate", "--out", path); err == nil {
		t.Fatal("overwrote an existing keyring")
	}
	if _, err := runCmd(t, "keys", "generate", "--out", path, "--keep-if-exists"); err != nil {
		t.Fatal(err)
	}
}

func TestTopologyDescribe(t *testing.T) {
	out, err := runCmd(t, "topology", "describe")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raw.customer-events", "compact", "flowchart LR", "proc_privacy"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run"}, {"demo", "--events", "0"}, {"topology"}} {
		if _, err := runCmd(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestDevToolsMovedOut(t *testing.T) {
	for _, c := range []string{"eval", "bench", "chaos"} {
		_, err := runCmd(t, c)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "pipeline-dev") {
			t.Errorf("%s: want a usage error naming pipeline-dev, got %v", c, err)
		}
	}
}

// TestConfigPrintRedactsSecrets: 'pipeline config print' shows every
// variable and no secret, the SASL and registry passwords and the inline
// keyring included.
func TestConfigPrintRedactsSecrets(t *testing.T) {
	const marker = "canary-config-print-4d1"
	for k, v := range map[string]string{
		"PIPELINE_REDIS_PASSWORD": marker, "PIPELINE_PSEUDONYM_KEYS": marker,
		"PIPELINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "PIPELINE_KAFKA_SASL_USERNAME": "u", "PIPELINE_KAFKA_SASL_PASSWORD": marker,
		"PIPELINE_SCHEMA_REGISTRY_USERNAME": "u", "PIPELINE_SCHEMA_REGISTRY_PASSWORD": marker,
	} {
		t.Setenv(k, v)
	}
	out, err := runCmd(t, "config", "print")
	if err != nil {
		t.Fatalf("config print: %v", err)
	}
	if strings.Contains(out, marker) {
		t.Fatalf("config print shows a secret:\n%s", out)
	}
	for _, want := range []string{"PIPELINE_KAFKA_SASL_PASSWORD=[redacted]", "PIPELINE_SCHEMA_REGISTRY_PASSWORD=[redacted]", "PIPELINE_REDIS_PASSWORD=[redacted]", "PIPELINE_KAFKA_SASL_USERNAME=u"} {
		if !strings.Contains(out, want) {
			t.Errorf("config print lacks %s", want)
		}
	}
}
