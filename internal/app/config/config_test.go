package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
)

// TestEachCommandHasItsOwnOpsPort is issue 10's new-user friction: with
// PIPELINE_HTTP_ADDR unset, the processes of one host must not collide.
func TestEachCommandHasItsOwnOpsPort(t *testing.T) {
	var c Config
	seen := map[string]string{}
	for _, cmd := range []string{"privacy", "consent-sync", "kanon", "kanon-records"} {
		a := c.OpsAddr(cmd)
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both default to %s", cmd, other, a)
		}
		seen[a] = cmd
	}
	if seen[":8080"] != "" {
		t.Fatal("an ops port collides with the consent API's :8080")
	}
	c.Ops.HTTPAddr = "127.0.0.1:0"
	if c.OpsAddr("kanon") != "127.0.0.1:0" {
		t.Fatal("PIPELINE_HTTP_ADDR does not win")
	}
}

// TestKafkaConnectionFromEnv: the nested connection keeps the variable
// name and default it had as a top-level field.
func TestKafkaConnectionFromEnv(t *testing.T) {
	t.Setenv("PIPELINE_KAFKA_BROKERS", "")
	os.Unsetenv("PIPELINE_KAFKA_BROKERS")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Kafka.Brokers, []string{"localhost:9092"}) || c.Kafka.Extra != nil {
		t.Fatalf("default connection %+v", c.Kafka)
	}
	t.Setenv("PIPELINE_KAFKA_BROKERS", "k1:9092,k2:19092")
	if c, err = Load(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Kafka.Brokers, []string{"k1:9092", "k2:19092"}) {
		t.Fatalf("brokers %v", c.Kafka.Brokers)
	}
	t.Setenv("PIPELINE_KAFKA_BROKERS", "k1:9092,,k2:19092")
	if _, err = Load(); err == nil || !strings.Contains(err.Error(), "PIPELINE_KAFKA_BROKERS") {
		t.Fatalf("an empty broker entry: %v", err)
	}
	if !slices.Contains(EnvVars(), "PIPELINE_KAFKA_BROKERS") || slices.Contains(EnvVars(), "PIPELINE_KAFKA_EXTRA") {
		t.Fatalf("EnvVars %v", EnvVars())
	}
}

// TestRedacted: secrets are replaced, everything else, the connection
// included, is kept; the original is not changed.
func TestRedacted(t *testing.T) {
	c := Config{Redis: Redis{Password: "pw", Addr: "r:6379"}, Privacy: Privacy{PseudonymKeys: `{"k":"v"}`}}
	c.Kafka.Brokers = []string{"k1:9092"}
	r := c.Redacted()
	out := fmt.Sprintf("%+v", r)
	if strings.Contains(out, "Password:pw") || strings.Contains(out, `"v"`) || !strings.Contains(out, "[redacted]") {
		t.Fatalf("secrets printed: %s", out)
	}
	if !strings.Contains(out, "k1:9092") || r.Redis.Addr != "r:6379" {
		t.Fatalf("settings lost: %s", out)
	}
	if c.Redis.Password != "pw" {
		t.Fatal("Redacted changed the original")
	}
}

// TestACommandFailsOnlyOnItsOwnSettings is the issue-12 defect: a bad
// PIPELINE_CASTLE_* value stopped 'run consent-api'. Each command loads
// only its sections; the one that owns the bad value still refuses it.
func TestACommandFailsOnlyOnItsOwnSettings(t *testing.T) {
	t.Setenv("PIPELINE_CASTLE_K", "not-a-number")
	t.Setenv("PIPELINE_KANON_K", "1")
	consentAPI := []Section{SectionKafka, SectionRedis, SectionConsent}
	if _, err := Load(consentAPI...); err != nil {
		t.Fatalf("consent-api refused another command's settings: %v", err)
	}
	if _, err := Load(SectionKafka, SectionRunner, SectionCastle); err == nil || !strings.Contains(err.Error(), "CASTLE_K") {
		t.Fatalf("kanon-records accepted a bad PIPELINE_CASTLE_K: %v", err)
	}
	if _, err := Load(SectionKafka, SectionRunner, SectionKanon); err == nil || !strings.Contains(err.Error(), "KANON_K") {
		t.Fatalf("kanon accepted PIPELINE_KANON_K=1: %v", err)
	}
	if _, err := Load(); err == nil {
		t.Fatal("loading everything accepted both")
	}
}

// TestSectionsReadTheSameVariables: loading by sections reads exactly
// what one parse of the whole struct reads, so no variable changed its
// name in the split.
func TestSectionsReadTheSameVariables(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw") // validated: it must exist
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	set := map[string]string{
		"PIPELINE_RAW_TOPIC": "r", "PIPELINE_KAFKA_BROKERS": "k:1", "PIPELINE_REDIS_ADDR": "x:2",
		"PIPELINE_REDIS_PASSWORD_FILE": pw, "PIPELINE_WORKERS": "3", "PIPELINE_POLICY_FILE": "/p",
		"PIPELINE_CONSENT_CACHE_TTL": "1s", "PIPELINE_CONSENT_API_ADDR": ":1", "PIPELINE_KANON_K": "7",
		"PIPELINE_KANON_DP_MAX_CELLS_PER_SUBJECT": "2", "PIPELINE_CASTLE_DELTA": "99", "PIPELINE_CASTLE_GROUP": "g",
		"PIPELINE_LOG_LEVEL": "debug", "PIPELINE_HTTP_ADDR": ":2", "PIPELINE_KANON_SPEC_FILE": "/k",
	}
	for k, v := range set {
		t.Setenv(k, v)
	}
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var whole Config
	if err := env.ParseWithOptions(&whole, envOptions()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", whole) {
		t.Fatalf("by sections %+v\nwhole      %+v", got, whole)
	}
	if got.Names.RawTopic != "r" || got.Runner.Workers != 3 || got.Consent.APIAddr != ":1" || got.Kanon.DPMaxCells != 2 ||
		got.Castle.Delta != 99 || got.Names.CastleGroup != "g" || got.Redis.PasswordFile != pw || got.Ops.LogLevel != "debug" {
		t.Fatalf("a variable was not read: %+v", got)
	}
}

// TestProducerLinger: the runner's linger defaults to 5ms, 0 is accepted
// (no wait) and a negative or huge value is refused.
func TestProducerLinger(t *testing.T) {
	c, err := Load(SectionRunner)
	if err != nil || c.Runner.ProducerLinger != 5*time.Millisecond {
		t.Fatalf("default linger %v, %v", c.Runner.ProducerLinger, err)
	}
	t.Setenv("PIPELINE_PRODUCER_LINGER", "0s")
	if c, err := Load(SectionRunner); err != nil || c.Runner.ProducerLinger != 0 {
		t.Fatalf("linger 0: %v, %v", c.Runner.ProducerLinger, err)
	}
	for _, bad := range []string{"-1ms", "2s"} {
		t.Setenv("PIPELINE_PRODUCER_LINGER", bad)
		if _, err := Load(SectionRunner); err == nil || !strings.Contains(err.Error(), "PRODUCER_LINGER") {
			t.Fatalf("linger %s accepted: %v", bad, err)
		}
	}
}
