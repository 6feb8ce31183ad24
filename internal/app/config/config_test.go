package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
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
	c.HTTPAddr = "127.0.0.1:0"
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
	c := Config{RedisPassword: "pw", PseudonymKeys: `{"k":"v"}`, RedisAddr: "r:6379"}
	c.Kafka.Brokers = []string{"k1:9092"}
	r := c.Redacted()
	out := fmt.Sprintf("%+v", r)
	if strings.Contains(out, "RedisPassword:pw") || strings.Contains(out, `"v"`) || !strings.Contains(out, "[redacted]") {
		t.Fatalf("secrets printed: %s", out)
	}
	if !strings.Contains(out, "k1:9092") || r.RedisAddr != "r:6379" {
		t.Fatalf("settings lost: %s", out)
	}
	if c.RedisPassword != "pw" {
		t.Fatal("Redacted changed the original")
	}
}
