package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/topology"
)

// KanonResult summarises the k-anonymity stage of the demo.
type KanonResult struct {
	AggregateTopic string `json:"aggregate_topic"`
	K              int    `json:"k"`
	// RowsReleased and Margins count the published aggregate rows;
	// CellsSuppressed the level-0 cells under k; EventsSuppressed the events
	// in no released row after roll-up.
	RowsReleased     int `json:"rows_released"`
	Margins          int `json:"margin_rows"`
	CellsSuppressed  int `json:"cells_suppressed"`
	EventsSuppressed int `json:"events_suppressed"`
	// MinSubjects is the smallest distinct-subject count of a published
	// row, read back from the topic.
	MinSubjects int64 `json:"min_subjects_per_row"`

	RecordTopic string `json:"record_topic"`
	CastleK     int    `json:"castle_k"`
	Delta       int    `json:"castle_delta"`
	// Released, Reused and Suppressed count records; Held are the last
	// records of each partition still waiting for delta more.
	Released   int     `json:"records_released"`
	Reused     int     `json:"records_reused"`
	Suppressed int     `json:"records_suppressed"`
	Held       int     `json:"records_held"`
	InfoLoss   float64 `json:"info_loss"`
}

// kanonTopics are the topics of the k-anonymity stage, for the in-process
// cluster.
func kanonTopics(cfg config.Config) []string {
	n := topology.DefaultNames()
	n.StateTemplate = cfg.Names.StateTopicTemplate
	var out []string
	for _, a := range n.Kanon.Aggregates {
		out = append(out, a.TopicFrom(cfg.Names.AggTopicTemplate))
	}
	out = append(out, n.Kanon.Records.TopicFrom(cfg.Names.KanonTopicTemplate))
	return append(out, n.State(topology.KanonAggregates), n.State(topology.KanonRecords), n.Partials(), n.State(topology.KanonMerge))
}

// runKanon runs both k-anonymity processors over the clean topics the
// privacy stage filled: analytics -> k-anonymous aggregates, ai_training ->
// CASTLE. The synthetic events lie in the last hour; the aggregates' clock
// is moved three hours ahead so that idle windows close and publish now
// instead of at the wall-clock time.
func runKanon(ctx context.Context, cfg config.Config, log *slog.Logger, inAnalytics, inAI int) (KanonResult, error) {
	spec, err := kanonspec.Default()
	if err != nil {
		return KanonResult{}, err
	}
	cfg.Kanon.Window, cfg.Kanon.AllowedLateness, cfg.Kanon.IdleClose = 10*time.Minute, time.Hour, time.Minute
	cfg.Castle.Delta = 200
	cfg.Kanon.InputPartitions = demoPartitions
	reg := prometheus.NewRegistry()
	m := kanonmetrics.New(reg)
	agg, err := wiring.BuildAggregates(ctx, cfg, spec, m, log)
	if err != nil {
		return KanonResult{}, err
	}
	merge, err := wiring.BuildKanonMerge(ctx, cfg, spec, m, log)
	if err != nil {
		return KanonResult{}, err
	}
	anon, err := wiring.BuildAnonymize(ctx, cfg, spec, m, log)
	if err != nil {
		return KanonResult{}, err
	}
	clock := func() time.Time { return time.Now().Add(3 * time.Hour) }
	// The merge bounds progress by its own clock: the same one.
	merge.Processor.UseClock(clock)
	start := func(p processors.Processor, group, input string) (*runner.Runner, func() error, error) {
		rc := wiring.RunnerConfig(cfg, group, input, log)
		rc.TransactionalID, rc.TickInterval, rc.IdleAfter, rc.Clock = "demo-"+p.Name(), 200*time.Millisecond, 400*time.Millisecond, clock
		rn, err := runner.New(rc, p)
		if err != nil {
			return nil, nil, err
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rn.Run(rctx) }()
		return rn, func() error { cancel(); return <-done }, nil
	}
	aggRn, stopAgg, err := start(agg.Processor, agg.Group, agg.Input)
	if err != nil {
		return KanonResult{}, err
	}
	_, stopMerge, err := start(merge.Processor, merge.Group, merge.Input)
	if err != nil {
		stopAgg()
		return KanonResult{}, err
	}
	anonRn, stopAnon, err := start(anon.Processor, anon.Group, anon.Input)
	if err != nil {
		stopAgg()
		stopMerge()
		return KanonResult{}, err
	}
	waitErr := waitFor(ctx, aggRn, inAnalytics, 5*time.Minute)
	if waitErr == nil {
		waitErr = waitFor(ctx, anonRn, inAI, 5*time.Minute)
	}
	// Let ticks close the idle windows: wait until the rows stop changing.
	aggTopic := spec.Aggregates[0].TopicFrom(cfg.Names.AggTopicTemplate)
	for last, stable := -1, 0; waitErr == nil && stable < 3; {
		snap, err := metrics.Snapshot(reg)
		if err != nil {
			waitErr = err
			break
		}
		n := int(snap["pipeline_kanon_rows_total{kind=released,output="+aggTopic+"}"] + snap["pipeline_kanon_rows_total{kind=margin,output="+aggTopic+"}"])
		if n > 0 && n == last {
			stable++
		} else {
			stable = 0
		}
		last = n
		time.Sleep(300 * time.Millisecond)
	}
	errA, errM, errB := stopAgg(), stopMerge(), stopAnon()
	for _, err := range []error{waitErr, errA, errM, errB} {
		if err != nil {
			return KanonResult{}, err
		}
	}
	snap, err := metrics.Snapshot(reg)
	if err != nil {
		return KanonResult{}, err
	}
	recTopic := spec.Records.TopicFrom(cfg.Names.KanonTopicTemplate)
	res := KanonResult{AggregateTopic: aggTopic, K: cfg.Kanon.K, RecordTopic: recTopic, CastleK: cfg.Castle.K, Delta: cfg.Castle.Delta,
		RowsReleased:     int(snap["pipeline_kanon_rows_total{kind=released,output="+aggTopic+"}"]),
		Margins:          int(snap["pipeline_kanon_rows_total{kind=margin,output="+aggTopic+"}"]),
		CellsSuppressed:  int(snap["pipeline_kanon_rows_total{kind=suppressed,output="+aggTopic+"}"]),
		EventsSuppressed: int(snap["pipeline_kanon_suppressed_events_total{output="+aggTopic+"}"]),
		Released:         int(snap["pipeline_kanon_records_total{outcome=released,output="+recTopic+"}"]),
		Reused:           int(snap["pipeline_kanon_records_total{outcome=reused,output="+recTopic+"}"]),
		Suppressed:       int(snap["pipeline_kanon_records_total{outcome=suppressed,output="+recTopic+"}"]),
		InfoLoss:         snap["pipeline_kanon_info_loss{output="+recTopic+"}"],
	}
	res.Held = inAI - res.Released - res.Reused - res.Suppressed
	// Read back: every published row covers at least k distinct subjects,
	// and the topics hold what was counted.
	rows, err := kafkaio.ReadAll(ctx, cfg.Kafka, aggTopic)
	if err != nil {
		return res, err
	}
	codec, err := avrosingle.NewCodec(string(spec.Aggregates[0].AggregateSchemaJSON()))
	if err != nil {
		return res, err
	}
	res.MinSubjects = -1
	for _, r := range rows {
		native, _, err := codec.NativeFromFramed(r.Value)
		if err != nil {
			return res, fmt.Errorf("demo: aggregate row: %w", err)
		}
		s := native.(map[string]any)["subjects"].(int64)
		if res.MinSubjects < 0 || s < res.MinSubjects {
			res.MinSubjects = s
		}
	}
	if len(rows) != res.RowsReleased+res.Margins {
		return res, fmt.Errorf("demo: %s holds %d rows, %d were counted", aggTopic, len(rows), res.RowsReleased+res.Margins)
	}
	if len(rows) > 0 && res.MinSubjects < int64(res.K) {
		return res, fmt.Errorf("demo: a published row covers %d subjects, fewer than k=%d", res.MinSubjects, res.K)
	}
	recs, err := kafkaio.ReadAll(ctx, cfg.Kafka, recTopic)
	if err != nil {
		return res, err
	}
	if len(recs) != res.Released+res.Reused {
		return res, fmt.Errorf("demo: %s holds %d records, %d were counted", recTopic, len(recs), res.Released+res.Reused)
	}
	return res, nil
}

func printKanon(w io.Writer, r KanonResult) {
	fmt.Fprintf(w, "\nk-anonymous aggregates in %s (k=%d distinct subjects, 10-minute windows, roll-up on):\n", r.AggregateTopic, r.K)
	fmt.Fprintf(w, "  %d rows and %d margin rows published (smallest covers %d subjects); %d cells under k suppressed, %d events in no released row after roll-up\n",
		r.RowsReleased, r.Margins, r.MinSubjects, r.CellsSuppressed, r.EventsSuppressed)
	fmt.Fprintf(w, "record-level k-anonymisation (CASTLE, k=%d, delta=%d) in %s:\n", r.CastleK, r.Delta, r.RecordTopic)
	fmt.Fprintf(w, "  %d records released in new clusters, %d into reused clusters, %d outliers suppressed, %d still held (the last delta per partition); average information loss %.3f\n",
		r.Released, r.Reused, r.Suppressed, r.Held, r.InfoLoss)
}

// demoPartitions is the partition count of every topic of the in-process
// cluster (the aggregates' merge stage waits for each input partition).
const demoPartitions = 4
