package wiring

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

// TestTopologyRetentionFollowsThePolicy (attack: the policy promises 90
// days for third-party sharing while its topic keeps records for the
// one clean default): the configured policy's retention_days reach each
// purpose's topics, and a changed policy file changes them.
func TestTopologyRetentionFollowsThePolicy(t *testing.T) {
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	top, err := Topology(cfg, topology.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"clean.third_party_sharing.customer-events": "7776000000",  // 90 days
		"clean.ai_training.kanon":                   "63072000000", // 730 days
		"agg.analytics.events_by_segment":           "34128000000", // 395 days
	} {
		tp, ok := top.Topic(name)
		if !ok || tp.Configs["retention.ms"] != want {
			t.Errorf("%s: retention.ms %q, want %s", name, tp.Configs["retention.ms"], want)
		}
	}
	changed := strings.Replace(string(schemas.PolicyJSON()), `"retention_days": 90`, `"retention_days": 30`, 1)
	file := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Privacy.PolicyFile = file
	top, err = Topology(cfg, topology.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tp, _ := top.Topic("clean.third_party_sharing.customer-events"); tp.Configs["retention.ms"] != "2592000000" {
		t.Errorf("changed policy: retention.ms %q, want 30 days", tp.Configs["retention.ms"])
	}
}
