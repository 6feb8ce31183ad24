package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
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

// TestKeysKEKNewAndRotate: 'keys kek new' writes a 0600 key-encryption
// key and prints no key material; it never overwrites one; 'rotate' adds a
// primary that the processor loads.
func TestKeysKEKNewAndRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	out, err := runCmd(t, "keys", "kek", "new", "--out", path)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	var doc struct {
		Key []struct{ KeyData struct{ Value string } }
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Key) != 1 || doc.Key[0].KeyData.Value == "" {
		t.Fatalf("not a Tink keyset with one key: %v", err)
	}
	if strings.Contains(out, doc.Key[0].KeyData.Value) {
		t.Fatal("key material printed")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if _, err := runCmd(t, "keys", "kek", "new", "--out", path); err == nil {
		t.Fatal("overwrote a key-encryption key")
	}
	if _, err := runCmd(t, "keys", "kek", "new", "--out", path, "--keep-if-exists"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, "keys", "kek", "rotate", "--out", path); err != nil || !strings.Contains(out, "primary") {
		t.Fatalf("rotate: %s %v", out, err)
	}
	k, err := subjectkey.LoadKEKFile(path)
	if err != nil || !strings.Contains(k.String(), "keys: 2") {
		t.Fatalf("after rotate: %v %v", k, err)
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

// TestTopologyACLs: 'topology describe --acls' prints the derived ACLs
// without a cluster; 'topology apply --acls' creates them after the
// topics on kfake, a second apply changes nothing, and an ACL someone gave
// an unnamed principal on raw is drift that fails the command; a bad ACL
// file stops the apply before anything changes.
func TestTopologyACLs(t *testing.T) {
	const file = "../../deploy/acls.example.json"
	out, err := runCmd(t, "topology", "describe", "--acls", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ALLOW User:pipeline-privacy READ TOPIC raw.customer-events (literal)\n",
		"ALLOW User:analytics-team READ TOPIC clean.analytics.customer-events (literal)\n",
		"ALLOW User:pipeline-kanon WRITE TRANSACTIONAL_ID privacy-pipeline-kanon-merge (prefixed)\n",
		"# admin User:pipeline-admin",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe --acls lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "User:analytics-team READ TOPIC raw.") {
		t.Fatal("a consumer reads raw")
	}

	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	t.Setenv("PIPELINE_KAFKA_BROKERS", strings.Join(c.ListenAddrs(), ","))
	t.Setenv("PIPELINE_WIRE_FORMAT", "single-object") // no registry here
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"processors":{"privacy":"pipeline-privacy"}}`), 0o644)
	if _, err := runCmd(t, "topology", "apply", "--replication", "1", "--acls", bad); err == nil || !strings.Contains(err.Error(), "is not User:<name>") {
		t.Fatalf("bad ACL file: %v", err)
	}
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if topics, err := adm.ListTopics(context.Background()); err != nil || len(topics) != 0 {
		t.Fatalf("a bad ACL file still created topics: %v %v", topics.Names(), err)
	}

	apply := func() (string, error) {
		return runCmd(t, "topology", "apply", "--partitions", "1", "--replication", "1", "--acls", file)
	}
	if out, err = apply(); err != nil || !strings.Contains(out, "created   ALLOW User:pipeline-privacy READ TOPIC raw.customer-events (literal)") {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	if out, err = apply(); err != nil || !regexp.MustCompile(`nothing changed: \d+ topics`).MatchString(out) || !regexp.MustCompile(`nothing changed: \d+ ACLs`).MatchString(out) {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	if _, err := adm.CreateACLs(context.Background(), kadm.NewACLs().Allow("User:intern").Topics("raw.customer-events").Operations(kadm.OpRead)); err != nil {
		t.Fatal(err)
	}
	out, err = apply()
	if err == nil || !strings.Contains(err.Error(), "1 ACLs are drift") || !strings.Contains(out, "DRIFT     ALLOW User:intern READ TOPIC raw.customer-events (literal)") {
		t.Fatalf("drift: %v\n%s", err, out)
	}
}

// TestAPITokenNewAndRevoke: a new token goes only to its 0600 file (never
// to stdout), its SHA-256 into the principals file, and revoke removes it.
func TestAPITokenNewAndRevoke(t *testing.T) {
	dir := t.TempDir()
	pf, tf := filepath.Join(dir, "principals.json"), filepath.Join(dir, "crm.token")
	out, err := runCmd(t, "api-token", "new", "--principals", pf, "--principal", "crm", "--scopes", "consent:read,consent:write", "--out", tf, "--expires", "720h")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(tf)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	if fi, _ := os.Stat(tf); fi.Mode().Perm() != 0o600 || strings.Contains(out, token) {
		t.Fatalf("token file mode %v, printed: %q", fi.Mode().Perm(), out)
	}
	f, err := httpauth.ReadFile(pf, false)
	if err != nil || len(f.Tokens) != 1 || f.Tokens[0].SHA256 != httpauth.HashToken(token) || f.Tokens[0].Expires == "" {
		t.Fatalf("principals file %+v %v", f, err)
	}
	if b, _ := os.ReadFile(pf); strings.Contains(string(b), token) {
		t.Fatal("the principals file holds the token itself")
	}
	if _, err := runCmd(t, "api-token", "new", "--principals", pf, "--principal", "crm", "--scopes", "consent:read", "--out", tf); err == nil {
		t.Fatal("an existing token file was overwritten")
	}
	if _, err := runCmd(t, "api-token", "new", "--principals", pf, "--principal", "x", "--scopes", "consent:delete", "--out", filepath.Join(dir, "x")); err == nil {
		t.Fatal("an unknown scope was accepted")
	}
	if _, err := runCmd(t, "api-token", "revoke", "--principals", pf, "--principal", "crm"); err != nil {
		t.Fatal(err)
	}
	if f, _ := httpauth.ReadFile(pf, false); len(f.Tokens) != 0 {
		t.Fatalf("revoked token kept: %+v", f)
	}
}

// TestKeysLedgerNewAndEraseRefusals: 'keys ledger new' writes a 0600 key
// and never replaces it; 'erase' without a subject is a usage error, and
// without PIPELINE_ERASURE_KEY_FILE it says what is missing.
func TestKeysLedgerNewAndEraseRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.key")
	if _, err := runCmd(t, "keys", "ledger", "new", "--out", path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if _, err := runCmd(t, "keys", "ledger", "new", "--out", path); err == nil {
		t.Fatal("replaced a ledger key")
	}
	var u usageError
	if _, err := runCmd(t, "erase"); !errors.As(err, &u) {
		t.Fatalf("erase without --subject: %v", err)
	}
	t.Setenv("PIPELINE_ERASURE_KEY_FILE", "")
	if _, err := runCmd(t, "erase", "--subject", "someone"); err == nil || !strings.Contains(err.Error(), "PIPELINE_ERASURE_KEY_FILE") {
		t.Fatalf("erase without a ledger key: %v", err)
	}
}

// TestRopa: 'pipeline ropa' prints the checked-in record in both formats
// ('--check' passes on docs/ropa.md and docs/ropa.json), names the
// controller and transfers it is given, and (attack: the record is built
// in an environment that holds the pseudonym keys, the Kafka, Redis and
// registry passwords) never prints a secret of the configuration.
func TestRopa(t *testing.T) {
	for _, args := range [][]string{{"ropa", "--check", "../../docs/ropa.md"}, {"ropa", "--format", "json", "--check", "../../docs/ropa.json"}} {
		if out, err := runCmd(t, args...); err != nil || !strings.Contains(out, "up to date") {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	const marker = "canary-ropa-secret-7f3"
	for k, v := range map[string]string{
		"PIPELINE_REDIS_PASSWORD": marker, "PIPELINE_PSEUDONYM_KEYS": marker,
		"PIPELINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "PIPELINE_KAFKA_SASL_USERNAME": "u", "PIPELINE_KAFKA_SASL_PASSWORD": marker,
		"PIPELINE_SCHEMA_REGISTRY_USERNAME": "u", "PIPELINE_SCHEMA_REGISTRY_PASSWORD": marker,
	} {
		t.Setenv(k, v)
	}
	for _, format := range []string{"md", "json"} {
		out, err := runCmd(t, "ropa", "--format", format, "--controller", "Example Ltd", "--contact", "privacy@example.test",
			"--transfer", "US: standard contractual clauses", "--acls", "../../deploy/acls.example.json")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, marker) {
			t.Fatalf("%s: the record shows a secret", format)
		}
		for _, want := range []string{"Example Ltd", "privacy@example.test", "US: standard contractual clauses", "User:analytics-team"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: record lacks %q", format, want)
			}
		}
		if format == "json" && !json.Valid([]byte(out)) {
			t.Error("--format json is not JSON")
		}
	}
	if _, err := runCmd(t, "ropa", "--format", "pdf"); err == nil {
		t.Error("--format pdf accepted")
	}
	stale := filepath.Join(t.TempDir(), "ropa.md")
	os.WriteFile(stale, []byte("# old record\n"), 0o644)
	if _, err := runCmd(t, "ropa", "--check", stale); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("a stale file passed --check: %v", err)
	}
}
