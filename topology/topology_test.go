package topology

import (
	"strings"
	"testing"
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
