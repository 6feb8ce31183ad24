package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

// TestApplySetsRetentionPerPurpose, on the real broker (attack: a
// deployment created its clean topics with one retention for all
// purposes, then the policy shortens third-party sharing to 30 days, and
// the topic keeps records for the old period because apply only creates
// topics): 'topology apply' as the command runs it (wiring.Topology from
// the configured policy) sets each purpose's clean topic and the
// k-anonymity outputs derived from it to the purpose's retention_days on
// topics that already exist, reports each change, and a re-apply after a
// policy change updates exactly the changed purpose's topic; a third
// apply changes nothing.
func TestApplySetsRetentionPerPurpose(t *testing.T) {
	brokers, _ := services(t)
	id := fmt.Sprintf("it-retention-%06x", rand.Uint32()&0xffffff)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = brokers
	cfg.Names.RawTopic, cfg.Names.CleanTopicTemplate, cfg.Names.QuarantineTopic = id+".raw", id+".clean.{purpose}", id+".quarantine"
	cfg.Names.StateTopicTemplate, cfg.Names.AggTopicTemplate, cfg.Names.KanonTopicTemplate = id+".state.{processor}", id+".agg.{purpose}.{name}", id+".kanon.{purpose}"
	cfg.Names.ConsentTopic, cfg.Names.KeysTopic, cfg.Names.ErasuresTopic = id+".consent", id+".keys", id+".erasures"
	cfg.Names.RequestsTopic, cfg.Names.AuditTopic = id+".requests", id+".audit"
	cl, err := cfg.Kafka.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// declared is the topology the command applies.
	declared := func(o topology.Options) topology.Topology {
		t.Helper()
		o.Partitions, o.Replication = 1, 1
		top, err := wiring.Topology(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		return top
	}
	apply := func(top topology.Topology) topology.Report {
		t.Helper()
		rep, err := topology.Apply(ctx, adm, top)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	day := int64(24 * time.Hour / time.Millisecond)
	retention := func(topics ...string) map[string]int64 {
		t.Helper()
		out := map[string]int64{}
		configs, err := adm.DescribeTopicConfigs(ctx, topics...)
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range configs {
			if rc.Err != nil {
				t.Fatalf("%s: %v", rc.Name, rc.Err)
			}
			for _, c := range rc.Configs {
				if c.Key == "retention.ms" && c.Value != nil {
					out[rc.Name], _ = strconv.ParseInt(*c.Value, 10, 64)
				}
			}
		}
		return out
	}
	clean := func(p string) string { return id + ".clean." + p }
	want := map[string]int64{ // the checked-in policy's retention_days
		clean("analytics"): 395 * day, id + ".agg.analytics.events_by_segment": 395 * day,
		clean("ai_training"): 730 * day, id + ".kanon.ai_training": 730 * day,
		clean("marketing"): 365 * day, clean("personalization"): 180 * day, clean("third_party_sharing"): 90 * day,
	}
	var purposeTopics []string
	for name := range want {
		purposeTopics = append(purposeTopics, name)
	}

	// 1. An existing deployment: every purpose topic on one retention.
	legacy := declared(topology.Options{PurposeRetention: map[string]time.Duration{}, CleanRetention: 30 * 24 * time.Hour})
	t.Cleanup(func() {
		var names []string
		for _, tp := range legacy.Topics {
			names = append(names, tp.Name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm.DeleteTopics(ctx, names...)
	})
	apply(legacy)
	for name, got := range retention(purposeTopics...) {
		if got != 30*day {
			t.Fatalf("legacy %s: retention.ms %d", name, got)
		}
	}

	// 2. Apply with the policy: each existing purpose topic is altered
	// to its purpose's retention, and the report says so.
	rep := apply(declared(topology.Options{}))
	changed := map[string]string{}
	for _, c := range rep.Changed {
		changed[c.Topic] = c.What
	}
	for name, ms := range want {
		if !strings.Contains(changed[name], fmt.Sprintf(`retention.ms "%d" -> "%d"`, 30*day, ms)) {
			t.Errorf("%s: change reported %q, want retention.ms -> %d", name, changed[name], ms)
		}
	}
	if len(rep.Created) != 0 || len(changed) != len(want) {
		t.Errorf("apply created %v and changed %v; want only the %d purpose topics changed", rep.Created, rep.Changed, len(want))
	}
	got := retention(purposeTopics...)
	for name, ms := range want {
		if got[name] != ms {
			t.Errorf("%s: broker has retention.ms %d, want %d", name, got[name], ms)
		}
	}

	// 3. The policy shortens third-party sharing to 30 days: a re-apply
	// updates that purpose's existing topic, and only it.
	pol := strings.Replace(string(schemas.PolicyJSON()), `"retention_days": 90`, `"retention_days": 30`, 1)
	file := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(file, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Privacy.PolicyFile = file
	rep = apply(declared(topology.Options{}))
	if len(rep.Changed) != 1 || rep.Changed[0].Topic != clean("third_party_sharing") ||
		!strings.Contains(rep.Changed[0].What, fmt.Sprintf(`retention.ms "%d" -> "%d"`, 90*day, 30*day)) {
		t.Fatalf("after the policy change: changed %v, want only %s to 30 days", rep.Changed, clean("third_party_sharing"))
	}
	if got := retention(clean("third_party_sharing"))[clean("third_party_sharing")]; got != 30*day {
		t.Fatalf("broker has retention.ms %d for third-party sharing, want %d", got, 30*day)
	}

	// 4. Nothing left to do.
	if rep = apply(declared(topology.Options{})); !rep.NothingChanged() {
		t.Fatalf("a third apply changed %v", rep.Changed)
	}
}
