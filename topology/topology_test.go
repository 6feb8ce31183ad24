package topology

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDefaultTopologyValid(t *testing.T) {
	top := Default(DefaultNames(), Options{})
	if err := top.Validate(); err != nil {
		t.Fatal(err)
	}
	c, _ := top.Topic("privacy.consent")
	if c.Configs["cleanup.policy"] != "compact" {
		t.Error("consent topic must be compacted")
	}
	r, _ := top.Topic("raw.customer-events")
	if r.Configs["retention.ms"] != "86400000" || !r.Restricted {
		t.Errorf("raw topic: %+v", r)
	}
	q, _ := top.Topic("quarantine.customer-events")
	if !q.Restricted {
		t.Error("quarantine must be restricted")
	}
	if !strings.Contains(top.Mermaid(), "proc_privacy --> clean_ai_training_customer_events") {
		t.Error(top.Mermaid())
	}
}

func TestValidateRejects(t *testing.T) {
	top := Default(DefaultNames(), Options{})
	top.Topics = append(top.Topics, top.Topics[0])
	top.Processors[0].Outputs = append(top.Processors[0].Outputs, "nowhere")
	err := top.Validate()
	if err == nil || !strings.Contains(err.Error(), "declared twice") || !strings.Contains(err.Error(), "undeclared topic nowhere") {
		t.Fatalf("got %v", err)
	}
}

// TestPartialsTopicHasOneFixedPartition (attack: growing
// the topology's partition count moves an aggregate's key to another partials
// partition, where the merge starts a fresh state: old windows never
// complete, new ones release subsets, the DP ledger restarts): the
// partials topic has one partition whatever the option says, and Apply
// never adds partitions to it.
func TestPartialsTopicHasOneFixedPartition(t *testing.T) {
	for _, parts := range []int32{0, 1, 12, 48} {
		n := DefaultNames()
		top := Default(n, Options{Partitions: parts})
		tp, ok := top.Topic(n.Partials())
		if !ok {
			t.Fatal("no partials topic")
		}
		if tp.Partitions != 1 || !tp.FixedPartitions {
			t.Fatalf("partitions option %d: partials topic %+v", parts, tp)
		}
		for _, have := range []int32{1, 3} {
			grow, drift := partitionChange(tp, have)
			if grow {
				t.Fatalf("apply would change the partials topic's %d partitions", have)
			}
			if (have != 1) != (drift != "") {
				t.Fatalf("have %d: drift %q", have, drift)
			}
		}
	}
	// Other topics still grow.
	if grow, _ := partitionChange(Topic{Partitions: 12}, 6); !grow {
		t.Fatal("an ordinary topic no longer grows")
	}
}

// TestPurposeTopicsFollowTheirPurposesRetention (attack: one retention for
// every clean topic keeps a 90-day purpose's records as long as the
// longest purpose's, past what the record of processing promises; a
// k-anonymity output derived from a purpose outlives it): each purpose's
// clean topic, and the aggregate and record-level outputs derived from
// it, keep records exactly the purpose's retention; a purpose without a
// value, or with a non-positive one, gets the default, never unlimited.
func TestPurposeTopicsFollowTheirPurposesRetention(t *testing.T) {
	day := 24 * time.Hour
	n := DefaultNames()
	top := Default(n, Options{PurposeRetention: map[string]time.Duration{
		"analytics": 395 * day, "ai_training": 730 * day, "marketing": 365 * day, "personalization": -day,
	}})
	want := map[string]time.Duration{
		"clean.analytics.customer-events":           395 * day,
		"agg.analytics.events_by_segment":           395 * day,
		"clean.ai_training.customer-events":         730 * day,
		"clean.ai_training.kanon":                   730 * day,
		"clean.marketing.customer-events":           365 * day,
		"clean.personalization.customer-events":     30 * day, // non-positive: the default
		"clean.third_party_sharing.customer-events": 30 * day, // not given: the default
	}
	for name, d := range want {
		tp, ok := top.Topic(name)
		if !ok {
			t.Fatalf("no topic %s", name)
		}
		if got := tp.Configs["retention.ms"]; got != strconv.FormatInt(d.Milliseconds(), 10) {
			t.Errorf("%s: retention.ms %s, want %d (%v)", name, got, d.Milliseconds(), d)
		}
	}
	// Every topic of a purpose is covered by the table above: no derived
	// topic was left on another retention.
	for _, tp := range top.Topics {
		if tp.Purpose != "" {
			if _, ok := want[tp.Name]; !ok {
				t.Errorf("purpose topic %s not checked", tp.Name)
			}
		}
	}
	// CleanRetention still sets the default for callers without a policy.
	top = Default(n, Options{CleanRetention: 7 * day})
	if tp, _ := top.Topic("clean.marketing.customer-events"); tp.Configs["retention.ms"] != strconv.FormatInt((7*day).Milliseconds(), 10) {
		t.Errorf("CleanRetention ignored: %v", tp.Configs)
	}
}
