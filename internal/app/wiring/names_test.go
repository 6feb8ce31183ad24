package wiring

import (
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/topology"
)

// TestNamesFollowTheConfiguration: the topology (and so topology describe
// and apply) takes every topic and group name from the configuration, not
// from its own defaults.
func TestNamesFollowTheConfiguration(t *testing.T) {
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Names.GroupID, cfg.Names.ConsentSyncGroup, cfg.Names.KanonAggregatesGroup, cfg.Names.KanonMergeGroup, cfg.Names.CastleGroup = "g-privacy", "g-sync", "g-agg", "g-merge", "g-rec"
	cfg.Names.RawTopic, cfg.Names.StateTopicTemplate, cfg.Names.KeySyncGroup, cfg.Names.KeysTopic = "raw.x", "st.{processor}", "g-keys", "keys.x"
	cfg.Names.RequestsGroup, cfg.Names.RequestsTopic = "g-requests", "requests.x"
	n, err := Names(cfg)
	if err != nil {
		t.Fatal(err)
	}
	topo := topology.Default(n, topology.Options{Partitions: 3, Replication: 1})
	want := map[string]string{"privacy": "g-privacy", "consent-sync": "g-sync", "key-sync": "g-keys", "requests": "g-requests", topology.KanonAggregates: "g-agg",
		topology.KanonMerge: "g-merge", topology.KanonRecords: "g-rec"}
	for _, p := range topo.Processors {
		if want[p.Name] != p.Group {
			t.Errorf("%s: group %q, want %q", p.Name, p.Group, want[p.Name])
		}
		delete(want, p.Name)
	}
	if len(want) != 0 {
		t.Errorf("processors missing from the topology: %v", want)
	}
	for _, name := range []string{"raw.x", "keys.x", "requests.x", "st.kanon-merge", "st.kanon-partials"} {
		if _, ok := topo.Topic(name); !ok {
			t.Errorf("topic %s not declared", name)
		}
	}
}

// TestDefaultsAreTheTopologys: the configuration's defaults (documented as
// the PIPELINE_* defaults) map to exactly topology.DefaultNames, the one
// place the SPEC names are written.
func TestDefaultsAreTheTopologys(t *testing.T) {
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Names(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := topology.DefaultNames()
	got.Kanon, want.Kanon = nil, nil
	if got != want {
		t.Errorf("configured defaults %+v\nare not the topology's %+v", got, want)
	}
}
