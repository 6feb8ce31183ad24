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
