package wiring

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/privacy-pipeline/pipeline/internal/config"
	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/purpose"
	"github.com/privacy-pipeline/pipeline/processors/aggregates"
	"github.com/privacy-pipeline/pipeline/processors/anonymize"
	"github.com/privacy-pipeline/pipeline/topology"
)

// LoadKanonSpec reads the configured k-anonymity specification, or the
// checked-in schemas/kanon.json.
func LoadKanonSpec(cfg config.Config) (*kanonspec.Spec, error) {
	if cfg.KanonSpecFile == "" {
		return kanonspec.Default()
	}
	b, err := os.ReadFile(cfg.KanonSpecFile)
	if err != nil {
		return nil, fmt.Errorf("wiring: kanon spec: %w", err)
	}
	return kanonspec.Parse(b)
}

// Stateful is an assembled stateful processor with its input topic.
type Stateful[P any] struct {
	Processor P
	Input     string
	Group     string
}

func cleanInput(cfg config.Config, purposeName string) (string, error) {
	p, err := purpose.Parse(purposeName)
	if err != nil {
		return "", err
	}
	return cfg.CleanTopic(p), nil
}

func stateTopic(cfg config.Config, processor string) string {
	n := topology.Names{StateTemplate: cfg.StateTopicTemplate}
	return n.State(processor)
}

// BuildAggregates assembles the k-anonymous aggregates processor. m may be
// shared with BuildAnonymize (register it once with metrics.NewKanon).
func BuildAggregates(cfg config.Config, spec *kanonspec.Spec, m *metrics.Kanon, log *slog.Logger) (*Stateful[*aggregates.Processor], error) {
	if len(spec.Aggregates) == 0 {
		return nil, fmt.Errorf("wiring: %s declares no aggregate", spec.Version)
	}
	var dp *aggregate.DPConfig
	if cfg.KanonDPEpsilon > 0 {
		dp = &aggregate.DPConfig{Epsilon: cfg.KanonDPEpsilon, Delta: cfg.KanonDPDelta,
			MaxCellsPerSubject: cfg.KanonDPMaxCells, MaxEventsPerCell: cfg.KanonDPMaxEventsCell, MaxAmount: cfg.KanonDPMaxAmount,
			PeriodEpsilon: cfg.KanonDPPeriodEpsilon, Period: cfg.KanonDPPeriod}
	}
	p, err := aggregates.New(aggregates.Config{Aggregates: spec.Aggregates, Spec: spec, K: cfg.KanonK,
		Window: cfg.KanonWindow, AllowedLateness: cfg.KanonAllowedLateness, Rollup: cfg.KanonRollup, IdleClose: cfg.KanonIdleClose, WatermarkSkew: cfg.KanonWatermarkSkew, DP: dp,
		TopicTemplate: cfg.AggTopicTemplate, StateTopic: stateTopic(cfg, topology.KanonAggregates), Metrics: m, Log: log})
	if err != nil {
		return nil, err
	}
	in, err := cleanInput(cfg, spec.Aggregates[0].Purpose)
	if err != nil {
		return nil, err
	}
	return &Stateful[*aggregates.Processor]{Processor: p, Input: in, Group: cfg.KanonAggregatesGroup}, nil
}

// BuildAnonymize assembles the record-level k-anonymisation processor.
func BuildAnonymize(cfg config.Config, spec *kanonspec.Spec, m *metrics.Kanon, log *slog.Logger) (*Stateful[*anonymize.Processor], error) {
	if spec.Records == nil {
		return nil, fmt.Errorf("wiring: %s declares no record-level stream", spec.Version)
	}
	if cfg.CastleSeed != 0 && log != nil {
		log.Warn("PIPELINE_CASTLE_SEED is set: cluster reuse is predictable; use it for verification runs only", "processor", anonymize.Name)
	}
	p, err := anonymize.New(anonymize.Config{Records: *spec.Records, Spec: spec, K: cfg.CastleK, Delta: cfg.CastleDelta,
		Beta: cfg.CastleBeta, Mu: cfg.CastleMu, L: cfg.CastleL, MaxReuse: cfg.CastleMaxReuse, MaxDelay: cfg.CastleMaxDelay, Seed: cfg.CastleSeed,
		Topic: spec.Records.TopicFrom(cfg.KanonTopicTemplate), StateTopic: stateTopic(cfg, topology.KanonRecords), Metrics: m, Log: log})
	if err != nil {
		return nil, err
	}
	in, err := cleanInput(cfg, spec.Records.Purpose)
	if err != nil {
		return nil, err
	}
	return &Stateful[*anonymize.Processor]{Processor: p, Input: in, Group: cfg.CastleGroup}, nil
}
