package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLinesNameEveryVariable: the printed configuration has exactly the
// variables Load reads, in order.
func TestLinesNameEveryVariable(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range c.Lines() {
		k, _, _ := strings.Cut(l, "=")
		keys = append(keys, k)
	}
	if want := EnvVars(); !slices.Equal(keys, want) {
		t.Fatalf("printed %v\nwant    %v", keys, want)
	}
}

// TestSecretsNeverPrinted is the canary test for secrets: a marker in every
// secret setting (the inline passwords and keyring) appears nowhere in the
// printed configuration or in %v / %+v of the configuration after
// Redacted; every setting whose name says it is a secret is covered.
func TestSecretsNeverPrinted(t *testing.T) {
	const marker = "canary-secret-5b9e"
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte(marker+"-file"), 0o600)
	secrets := map[string]string{}
	for _, v := range EnvVars() {
		if (strings.HasSuffix(v, "PASSWORD") || strings.HasSuffix(v, "_KEYS") || strings.HasSuffix(v, "_TOKEN")) && !strings.HasSuffix(v, "_FILE") {
			secrets[v] = marker + "-" + v
		}
	}
	for _, want := range []string{"PIPELINE_REDIS_PASSWORD", "PIPELINE_PSEUDONYM_KEYS", "PIPELINE_KAFKA_SASL_PASSWORD", "PIPELINE_SCHEMA_REGISTRY_PASSWORD"} {
		if _, ok := secrets[want]; !ok {
			t.Fatalf("%s is not among the secrets found by name: %v", want, secrets)
		}
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("PIPELINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("PIPELINE_KAFKA_SASL_USERNAME", "pipeline")
	t.Setenv("PIPELINE_SCHEMA_REGISTRY_USERNAME", "pipeline")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	printed := strings.Join(c.Lines(), "\n")
	for _, text := range []string{printed, fmt.Sprintf("%v\n%+v", c.Redacted(), c.Redacted())} {
		if strings.Contains(text, marker) {
			t.Fatalf("a secret was printed:\n%s", text)
		}
	}
	for k := range secrets {
		if !strings.Contains(printed, k+"=[redacted]") {
			t.Errorf("%s is not shown as redacted", k)
		}
	}
}
