package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonagg"
	"github.com/privacy-pipeline/pipeline/processors/kanonmerge"
	"github.com/privacy-pipeline/pipeline/processors/kanonrec"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/topology"
)

// LoadKanonSpec reads the configured k-anonymity specification, or the
// checked-in schemas/kanon.json.
func LoadKanonSpec(cfg config.Config) (*kanonspec.Spec, error) {
	if cfg.Names.KanonSpecFile == "" {
		return kanonspec.Default()
	}
	b, err := os.ReadFile(cfg.Names.KanonSpecFile)
	if err != nil {
		return nil, fmt.Errorf("wiring: kanon spec: %w", err)
	}
	return kanonspec.Parse(b)
}

// Names maps the configuration to the topology's names: the one place the
// PIPELINE_*_TOPIC*, PIPELINE_*_GROUP and kanon spec settings become topic
// and group names (topology describe and apply, the tools, the demo and
// the test rigs all start from it).
func Names(cfg config.Config) (topology.Names, error) {
	n := names(cfg)
	spec, err := LoadKanonSpec(cfg)
	if err != nil {
		return n, err
	}
	n.Kanon = spec
	return n, nil
}

// names is Names without the kanon spec (no file read): the topics and
// groups only.
func names(cfg config.Config) topology.Names {
	n := topology.DefaultNames()
	n.Kanon = nil
	c := cfg.Names
	n.Raw, n.Consent, n.Quarantine, n.CleanTemplate, n.Keys = c.RawTopic, c.ConsentTopic, c.QuarantineTopic, c.CleanTopicTemplate, c.KeysTopic
	n.Erasures, n.Requests = c.ErasuresTopic, c.RequestsTopic
	n.Audit = c.AuditTopic
	n.StateTemplate, n.AggTemplate, n.KanonTemplate = c.StateTopicTemplate, c.AggTopicTemplate, c.KanonTopicTemplate
	n.Groups = topology.Groups{Privacy: c.GroupID, ConsentSync: c.ConsentSyncGroup, KeySync: c.KeySyncGroup, Requests: c.RequestsGroup,
		KanonAggregates: c.KanonAggregatesGroup, KanonMerge: c.KanonMergeGroup, KanonRecords: c.CastleGroup}
	return n
}

// CleanTopic returns the configured clean topic of a purpose (the
// topology's template expansion).
func CleanTopic(cfg config.Config, p purpose.Purpose) string { return names(cfg).Clean(p) }

// Stateful is an assembled stateful processor with its input topic.
type Stateful[P any] struct {
	Processor P
	Input     string
	Group     string
	// Notices is the erasure notices topic the runner consumes with Input
	// (runner.Config.Notices), empty for a processor that reads none.
	Notices string
}

func cleanInput(cfg config.Config, purposeName string) (string, error) {
	p, err := purpose.Parse(purposeName)
	if err != nil {
		return "", err
	}
	return CleanTopic(cfg, p), nil
}

func stateTopic(cfg config.Config, processor string) string { return names(cfg).State(processor) }

// aggregatesConfig is the aggregates' configuration, shared by both
// stages.
func aggregatesConfig(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, m *kanonmetrics.Metrics, log *slog.Logger) (kanonagg.Config, error) {
	if len(spec.Aggregates) == 0 {
		return kanonagg.Config{}, fmt.Errorf("wiring: %s declares no aggregate", spec.Version)
	}
	sch, err := Schemas(ctx, cfg, m.WriterSchemaMetrics())
	if err != nil {
		return kanonagg.Config{}, err
	}
	in, err := cleanInput(cfg, spec.Aggregates[0].Purpose)
	if err != nil {
		return kanonagg.Config{}, err
	}
	sch.InputSubject = wireformat.TopicSubject(in)
	var dp *aggregate.DPConfig
	if cfg.Kanon.DPEpsilon > 0 {
		dp = &aggregate.DPConfig{Epsilon: cfg.Kanon.DPEpsilon, Delta: cfg.Kanon.DPDelta,
			MaxCellsPerSubject: cfg.Kanon.DPMaxCells, MaxEventsPerCell: cfg.Kanon.DPMaxEventsCell, MaxAmount: cfg.Kanon.DPMaxAmount,
			PeriodEpsilon: cfg.Kanon.DPPeriodEpsilon, Period: cfg.Kanon.DPPeriod}
	}
	return kanonagg.Config{Aggregates: spec.Aggregates, Spec: spec, K: cfg.Kanon.K,
		Window: cfg.Kanon.Window, AllowedLateness: cfg.Kanon.AllowedLateness, Rollup: cfg.Kanon.Rollup, IdleClose: cfg.Kanon.IdleClose, WatermarkSkew: cfg.Kanon.WatermarkSkew, DP: dp,
		TopicTemplate: cfg.Names.AggTopicTemplate, StateTopic: stateTopic(cfg, topology.KanonAggregates),
		PartialsTopic: PartialsTopic(cfg), Partitions: int32(cfg.Kanon.InputPartitions), PartialMaxBytes: cfg.Kanon.PartialMaxBytes,
		Metrics: m, Log: log, Schemas: sch, NoticesTopic: cfg.Names.ErasuresTopic}, nil
}

// PartialsTopic returns the internal topic between the aggregates' two
// stages.
func PartialsTopic(cfg config.Config) string {
	return names(cfg).Partials()
}

// BuildAggregates assembles the k-anonymous aggregates' first stage: it
// publishes partial windows to PartialsTopic (BuildKanonMerge releases
// them). cfg.Kanon.InputPartitions should be the input's partition count
// (InputPartitions). m may be shared with BuildAnonymize and
// BuildKanonMerge (register it once with metrics.NewKanon).
func BuildAggregates(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, m *kanonmetrics.Metrics, log *slog.Logger) (*Stateful[*kanonagg.Processor], error) {
	ac, err := aggregatesConfig(ctx, cfg, spec, m, log)
	if err != nil {
		return nil, err
	}
	p, err := kanonagg.New(ac)
	if err != nil {
		return nil, err
	}
	in, err := cleanInput(cfg, spec.Aggregates[0].Purpose)
	if err != nil {
		return nil, err
	}
	return &Stateful[*kanonagg.Processor]{Processor: p, Input: in, Group: cfg.Names.KanonAggregatesGroup, Notices: cfg.Names.ErasuresTopic}, nil
}

// BuildKanonMerge assembles the aggregates' merge stage: it reads
// PartialsTopic and publishes the rows to agg.<purpose>.<name>. It waits
// for the real partition count of the first stage's input, read from the
// broker (InputPartitions) on its first batch and again when a record
// names a partition beyond it; never PIPELINE_KANON_INPUT_PARTITIONS or a
// count a record claims.
func BuildKanonMerge(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, m *kanonmetrics.Metrics, log *slog.Logger) (*Stateful[*kanonmerge.Processor], error) {
	return buildKanonMerge(ctx, cfg, spec, m, log, func(ctx context.Context) (int32, error) {
		n, err := InputPartitions(ctx, cfg, spec)
		return int32(n), err
	})
}

func buildKanonMerge(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, m *kanonmetrics.Metrics, log *slog.Logger, partitions func(context.Context) (int32, error)) (*Stateful[*kanonmerge.Processor], error) {
	ac, err := aggregatesConfig(ctx, cfg, spec, nil, log)
	if err != nil {
		return nil, err
	}
	p, err := kanonmerge.New(kanonmerge.Config{Release: ac, StateTopic: stateTopic(cfg, topology.KanonMerge), InputPartitions: partitions,
		DiscardUnreadableState: cfg.Kanon.MergeDiscardState, Metrics: m, Log: log})
	if err != nil {
		return nil, err
	}
	return &Stateful[*kanonmerge.Processor]{Processor: p, Input: PartialsTopic(cfg), Group: cfg.Names.KanonMergeGroup}, nil
}

// InputPartitions returns the partition count of the aggregates' clean
// input topic, read from the broker.
func InputPartitions(ctx context.Context, cfg config.Config, spec *kanonspec.Spec) (int, error) {
	if len(spec.Aggregates) == 0 {
		return 0, fmt.Errorf("wiring: %s declares no aggregate", spec.Version)
	}
	in, err := cleanInput(cfg, spec.Aggregates[0].Purpose)
	if err != nil {
		return 0, err
	}
	adm, err := cfg.Kafka.NewAdmin()
	if err != nil {
		return 0, fmt.Errorf("wiring: %w", err)
	}
	defer adm.Close()
	td, err := adm.ListTopics(ctx, in)
	if err != nil {
		return 0, fmt.Errorf("wiring: list %s: %w", in, err)
	}
	t, ok := td[in]
	if !ok || t.Err != nil {
		return 0, fmt.Errorf("wiring: topic %s: %w", in, errors.Join(t.Err, errors.New("not found (run 'pipeline topology apply')")))
	}
	return len(t.Partitions), nil
}

// OfflineAggregates runs both aggregates stages over a bounded clean input
// without Kafka or restarts (kanonmerge.RunOffline), closing every window
// at now on all partitions in [0, partitions), and returns the rows by key
// (the reference of the integration and chaos tests). cfg.Kanon.IdleClose
// must be positive.
func OfflineAggregates(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, in []processors.Record, partitions int32, now time.Time) (map[string]string, error) {
	cfg.Kanon.InputPartitions = int(partitions)
	first, err := BuildAggregates(ctx, cfg, spec, nil, nil)
	if err != nil {
		return nil, err
	}
	merge, err := buildKanonMerge(ctx, cfg, spec, nil, nil, func(context.Context) (int32, error) { return partitions, nil })
	if err != nil {
		return nil, err
	}
	rows, _, err := kanonmerge.RunOffline(ctx, first.Processor, merge.Processor, in, partitions, now)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(rows))
	for _, o := range rows {
		out[string(o.Key)] = string(o.Value)
	}
	return out, nil
}

// BuildAnonymize assembles the record-level k-anonymisation processor; ctx
// bounds the registration of its output schema.
func BuildAnonymize(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, m *kanonmetrics.Metrics, log *slog.Logger) (*Stateful[*kanonrec.Processor], error) {
	if spec.Records == nil {
		return nil, fmt.Errorf("wiring: %s declares no record-level stream", spec.Version)
	}
	if cfg.Castle.Seed != 0 && log != nil {
		log.Warn("PIPELINE_CASTLE_SEED is set: cluster reuse is predictable; use it for verification runs only", "processor", kanonrec.Name)
	}
	sch, err := Schemas(ctx, cfg, m.WriterSchemaMetrics())
	if err != nil {
		return nil, err
	}
	in, err := cleanInput(cfg, spec.Records.Purpose)
	if err != nil {
		return nil, err
	}
	sch.InputSubject = wireformat.TopicSubject(in)
	p, err := kanonrec.New(kanonrec.Config{Schemas: sch, Records: *spec.Records, Spec: spec, K: cfg.Castle.K, Delta: cfg.Castle.Delta,
		Beta: cfg.Castle.Beta, Mu: cfg.Castle.Mu, L: cfg.Castle.L, MaxReuse: cfg.Castle.MaxReuse, MaxDelay: cfg.Castle.MaxDelay, Seed: cfg.Castle.Seed,
		Topic: spec.Records.TopicFrom(cfg.Names.KanonTopicTemplate), StateTopic: stateTopic(cfg, topology.KanonRecords), Metrics: m, Log: log,
		NoticesTopic: cfg.Names.ErasuresTopic})
	if err != nil {
		return nil, err
	}
	return &Stateful[*kanonrec.Processor]{Processor: p, Input: in, Group: cfg.Names.CastleGroup, Notices: cfg.Names.ErasuresTopic}, nil
}
