package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// TestTopologyApplyRefusesIncompatibleChange: 'pipeline topology apply'
// against the real registry (Apicurio). The first apply registers every
// derived schema under its TopicNameStrategy subject and seeds the raw
// subject; a second one changes nothing; a field-policy change (a field
// dropped) is compatible and registered as a new version; a k-anonymity
// change that adds a required field to the aggregate rows (a new
// dimension) is refused by the registry under BACKWARD: the binary exits
// non-zero naming the subject, the added field and the registry's verdict,
// and registers nothing and creates no topic; the processor that writes
// the rows refuses to start with that spec, with the same verdict.
func TestTopologyApplyRefusesIncompatibleChange(t *testing.T) {
	brokers := kafkaBrokers(t)
	reg := registryClient(t)
	id := fmt.Sprintf("it-apply-%06x", rand.Uint32()&0xffffff)
	names := map[string]string{
		"PIPELINE_RAW_TOPIC": id + ".raw", "PIPELINE_CONSENT_TOPIC": id + ".consent", "PIPELINE_QUARANTINE_TOPIC": id + ".quarantine",
		"PIPELINE_CLEAN_TOPIC_TEMPLATE": id + ".clean.{purpose}", "PIPELINE_STATE_TOPIC_TEMPLATE": id + ".state.{processor}",
		"PIPELINE_AGG_TOPIC_TEMPLATE": id + ".agg.{purpose}.{name}", "PIPELINE_KANON_TOPIC_TEMPLATE": id + ".kanon.{purpose}",
	}
	for k, v := range names {
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rep, done, err := wiring.ApplySchemas(ctx, cfg)
	t.Logf("first apply:\n%s", rep)
	if err != nil || !done {
		t.Fatalf("first apply: %v (done %v)", err, done)
	}
	outs, err := wiring.OutputSchemas(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range append(outs, wiring.OutputSchema{Topic: cfg.Names.RawTopic}) {
		vs, err := reg.SubjectVersions(ctx, wireformat.TopicSubject(o.Topic))
		if err != nil || len(vs) != 1 {
			t.Fatalf("%s: versions %v %v, want one", wireformat.TopicSubject(o.Topic), vs, err)
		}
	}
	rep, _, err = wiring.ApplySchemas(ctx, cfg)
	if err != nil || strings.Count(rep.String(), "unchanged") != len(outs) {
		t.Fatalf("second apply is not a no-op: %v\n%s", err, rep)
	}

	// A field-policy change: analytics no longer keeps user_agent. The
	// derived schema loses a nullable field: BACKWARD-compatible.
	pol := map[string]any{}
	if err := json.Unmarshal(schemas.PolicyJSON(), &pol); err != nil {
		t.Fatal(err)
	}
	fields := pol["purposes"].(map[string]any)["analytics"].(map[string]any)["fields"].(map[string]any)
	if _, ok := fields["user_agent"]; !ok {
		t.Fatal("the checked-in policy keeps no user_agent for analytics; pick another field")
	}
	delete(fields, "user_agent")
	pol["version"] = "it-compatible"
	cfg.Privacy.PolicyFile = writeJSON(t, "policy.json", pol)
	rep, _, err = wiring.ApplySchemas(ctx, cfg)
	t.Logf("apply of the compatible policy change:\n%s", rep)
	analytics := wireformat.TopicSubject(strings.ReplaceAll(cfg.Names.CleanTopicTemplate, "{purpose}", "analytics"))
	if err != nil || !strings.Contains(rep.String(), "schema "+analytics+": registered") {
		t.Fatalf("compatible policy change: %v\n%s", err, rep)
	}
	if vs, err := reg.SubjectVersions(ctx, analytics); err != nil || len(vs) != 2 {
		t.Fatalf("%s after the compatible change: versions %v %v, want 2", analytics, vs, err)
	}

	// A k-anonymity change: the aggregate gains a dimension (currency).
	spec := map[string]any{}
	if err := json.Unmarshal(schemas.KanonJSON(), &spec); err != nil {
		t.Fatal(err)
	}
	agg := spec["aggregates"].([]any)[0].(map[string]any)
	agg["dimensions"] = append(agg["dimensions"].([]any), map[string]any{"field": "currency", "hierarchy": "currency"})
	specFile := writeJSON(t, "kanon.json", spec)

	bin := filepath.Join(t.TempDir(), "pipeline")
	build := exec.Command("go", "build", "-tags", "production", "-o", bin, "./cmd/pipeline")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pipeline: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin, "topology", "apply", "--partitions", "2", "--replication", "1")
	cmd.Env = append(os.Environ(), "PIPELINE_KANON_SPEC_FILE="+specFile, "PIPELINE_KAFKA_BROKERS="+strings.Join(brokers, ","),
		"PIPELINE_POLICY_FILE="+cfg.Privacy.PolicyFile)
	out, err := cmd.CombinedOutput()
	t.Logf("pipeline topology apply with the incompatible kanon.json:\n%s", out)
	if err == nil {
		t.Fatal("topology apply accepted a schema change the registry calls incompatible")
	}
	aggSubject := wireformat.TopicSubject(strings.NewReplacer("{purpose}", "analytics", "{name}", "events_by_segment").Replace(cfg.Names.AggTopicTemplate))
	for _, want := range []string{"REFUSED", aggSubject, "added: currency", "registry verdict:", "none registered"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("topology apply's output does not say %q", want)
		}
	}
	if vs, err := reg.SubjectVersions(ctx, aggSubject); err != nil || len(vs) != 1 {
		t.Errorf("%s after the refused change: versions %v %v, want still 1", aggSubject, vs, err)
	}
	// A processor started with the incompatible spec refuses to start, for
	// the same reason: registering its schema is refused.
	cfg.Names.KanonSpecFile = specFile
	spec2, err := wiring.LoadKanonSpec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wiring.BuildKanonMerge(ctx, cfg, spec2, nil, nil)
	t.Logf("the merge stage with the incompatible kanon.json: %v", err)
	if err == nil || !strings.Contains(err.Error(), aggSubject) || !strings.Contains(err.Error(), "added: currency") || !strings.Contains(err.Error(), "registry verdict:") {
		t.Errorf("the merge stage started with a schema the registry refuses, or did not say why: %v", err)
	}
	if vs, err := reg.SubjectVersions(ctx, aggSubject); err != nil || len(vs) != 1 {
		t.Errorf("%s after the refused start: versions %v %v, want still 1", aggSubject, vs, err)
	}

	cl, err := cfg.Kafka.NewAdmin()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := cl.ListTopics(ctx, cfg.Names.RawTopic)
	if err != nil {
		t.Fatal(err)
	}
	if td.Has(cfg.Names.RawTopic) {
		t.Errorf("the refused apply created %s: it must stop before touching Kafka", cfg.Names.RawTopic)
	}
}

// writeJSON writes v into a file in a test directory and returns its path.
func writeJSON(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
