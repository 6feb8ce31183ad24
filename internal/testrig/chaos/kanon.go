package chaos

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonrec"
)

// The k-anonymity parameters of the chaos run. Windows stay open during
// the run (a long allowed lateness, no idle close), so every kill and
// rebalance has to carry their state; a final replica then closes them by
// the wall clock, and the rows must equal an uninterrupted offline run.
const (
	chaosK        = 11
	chaosWindow   = 10 * time.Minute
	chaosLateness = 10 * time.Hour
	chaosCastleK  = 10
	chaosDelta    = 500
	// chaosCastleSeed makes CASTLE's reuse choice reproducible, so the
	// offline run is the record-level reference.
	chaosCastleSeed = 20261201
)

// KanonResult is the verification of the k-anonymity processors.
type KanonResult struct {
	// Rows is the number of aggregate rows published; Expected the number
	// an uninterrupted offline run over the same input publishes. Missing,
	// Duplicated and Different compare them row by row.
	Rows       int `json:"aggregate_rows"`
	Expected   int `json:"aggregate_rows_expected"`
	Missing    int `json:"aggregate_rows_missing"`
	Duplicated int `json:"aggregate_rows_duplicated"`
	Different  int `json:"aggregate_rows_different"`
	// UnderK counts rows or record groups with fewer than k distinct
	// subjects (recounted from the input).
	UnderK int `json:"under_k"`
	// Records is the number of anonymised records published, of Input
	// ai_training records; RecordsExpected the number an uninterrupted
	// offline run with the same seed releases. RecordsExtra counts
	// published records that run did not release (duplicated or foreign),
	// RecordsMissing the converse. Groups is the number of clusters a
	// reader can tell apart; LinkedUnique the released records a reader of
	// the clean topic joins to exactly one clean record (kanonrec.Linkage;
	// at most 1/k of Records).
	Records         int `json:"records"`
	Input           int `json:"records_input"`
	RecordsExpected int `json:"records_expected"`
	RecordsExtra    int `json:"records_extra"`
	RecordsMissing  int `json:"records_missing"`
	Groups          int `json:"record_groups"`
	LinkedUnique    int `json:"records_linked_unique"`
}

// OK reports whether the k-anonymity outputs are exactly once and k-anonymous.
func (k KanonResult) OK() bool {
	return k.Missing == 0 && k.Duplicated == 0 && k.Different == 0 && k.UnderK == 0 &&
		k.RecordsExtra == 0 && k.RecordsMissing == 0 && k.LinkedUnique*chaosCastleK <= k.Records && k.Rows > 0 && k.Records > 0
}

func (r *run) kanonEnv() []string {
	if r.opt.NoKanon {
		return nil
	}
	return []string{
		"PIPELINE_STATE_TOPIC_TEMPLATE=" + r.cfg.Names.StateTopicTemplate, "PIPELINE_AGG_TOPIC_TEMPLATE=" + r.cfg.Names.AggTopicTemplate,
		"PIPELINE_KANON_TOPIC_TEMPLATE=" + r.cfg.Names.KanonTopicTemplate,
		"PIPELINE_KANON_AGGREGATES_GROUP=" + r.cfg.Names.KanonAggregatesGroup, "PIPELINE_CASTLE_GROUP=" + r.cfg.Names.CastleGroup,
		"PIPELINE_KANON_MERGE_GROUP=" + r.cfg.Names.KanonMergeGroup,
		"PIPELINE_KANON_K=" + strconv.Itoa(chaosK), "PIPELINE_KANON_WINDOW=" + chaosWindow.String(),
		"PIPELINE_KANON_ALLOWED_LATENESS=" + chaosLateness.String(), "PIPELINE_KANON_IDLE_CLOSE=0s",
		"PIPELINE_CASTLE_K=" + strconv.Itoa(chaosCastleK), "PIPELINE_CASTLE_DELTA=" + strconv.Itoa(chaosDelta),
		"PIPELINE_CASTLE_SEED=" + strconv.Itoa(chaosCastleSeed),
		// The kanon processors read the run's erasure notices topic,
		// co-partitioned with its clean topics (setup creates both).
		"PIPELINE_ERASURES_TOPIC=" + r.id + ".erasures",
	}
}

func procName(key int) string {
	switch key / 100 {
	case kindKanon:
		return "kanon"
	case kindKanonRecords:
		return "kanon-records"
	}
	return "privacy"
}

// kanonInputs are the clean topics the k-anonymity processors read.
func (r *run) kanonInputs() (analytics, ai string) {
	return wiring.CleanTopic(r.cfg, purpose.Analytics), wiring.CleanTopic(r.cfg, purpose.AITraining)
}

// kanonCaughtUp waits until both k-anonymity groups committed past the
// last record of every partition of their input.
func (r *run) kanonCaughtUp(ctx context.Context) error {
	analytics, ai := r.kanonInputs()
	last := map[string]map[int32]int64{}
	err := kafkaio.Scan(ctx, r.cfg.Kafka, func(rec *kgo.Record) {
		if last[rec.Topic] == nil {
			last[rec.Topic] = map[int32]int64{}
		}
		last[rec.Topic][rec.Partition] = rec.Offset
	}, analytics, ai)
	if err != nil {
		return err
	}
	for _, g := range []struct{ group, topic string }{{r.cfg.Names.KanonAggregatesGroup, analytics}, {r.cfg.Names.CastleGroup, ai}} {
		for {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("chaos: %s did not catch up: %w", g.group, err)
			}
			offs, err := r.adm.FetchOffsets(ctx, g.group)
			done := err == nil
			for p, off := range last[g.topic] {
				o, ok := offs.Lookup(g.topic, p)
				if !done || !ok || o.At <= off {
					done = false
					break
				}
			}
			if done {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		r.logf("%s committed all of %s", g.group, g.topic)
	}
	return nil
}

// flushWindows runs one more aggregates replica that closes every window by
// the wall clock, and stops it once the aggregate topic stops growing.
func (r *run) flushWindows(ctx context.Context, aggTopic string) error {
	if err := r.startProc(100*kindKanon+99, "PIPELINE_KANON_ALLOWED_LATENESS=0s", "PIPELINE_KANON_IDLE_CLOSE=1ms", "PIPELINE_TICK_IDLE_AFTER=1s"); err != nil {
		return err
	}
	defer r.signal(100*kindKanon+99, syscall.SIGTERM)
	var prev int64 = -1
	for stable := 0; stable < 5; {
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Second)
		ends, err := r.adm.ListEndOffsets(ctx, aggTopic)
		if err != nil {
			continue
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		if n > 0 && n == prev {
			stable++
		} else {
			stable = 0
		}
		prev = n
	}
	return nil
}

// verifyKanon checks the k-anonymity outputs: the aggregate rows equal an
// uninterrupted offline run over the same clean input (so no window state
// was lost or double counted by the kills), every row and record group
// covers k distinct subjects, and no anonymised record was published twice.
func (r *run) verifyKanon(ctx context.Context) (*KanonResult, error) {
	spec, err := kanonspec.Default()
	if err != nil {
		return nil, err
	}
	aggTopic := spec.Aggregates[0].TopicFrom(r.cfg.Names.AggTopicTemplate)
	if err := r.flushWindows(ctx, aggTopic); err != nil {
		return nil, err
	}
	analytics, ai := r.kanonInputs()
	res := &KanonResult{}

	// Aggregates against the offline run.
	want, err := r.offlineAggregates(ctx, analytics)
	if err != nil {
		return nil, err
	}
	res.Expected = len(want)
	got := map[string]string{}
	codec, err := avrosingle.NewCodec(string(spec.Aggregates[0].AggregateSchemaJSON()))
	if err != nil {
		return nil, err
	}
	err = kafkaio.Scan(ctx, r.cfg.Kafka, func(rec *kgo.Record) {
		res.Rows++
		if _, dup := got[string(rec.Key)]; dup {
			res.Duplicated++
		}
		got[string(rec.Key)] = string(rec.Value)
		if native, _, err := codec.NativeFromFramed(rec.Value); err != nil || native.(map[string]any)["subjects"].(int64) < chaosK {
			res.UnderK++
		}
	}, aggTopic)
	if err != nil {
		return nil, err
	}
	for k, v := range want {
		switch g, ok := got[k]; {
		case !ok:
			res.Missing++
		case g != v:
			res.Different++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			res.Different++
		}
	}

	// Records: audit against an uninterrupted offline run (same seed).
	recs, err := kafkaio.ReadAll(ctx, r.cfg.Kafka, ai)
	if err != nil {
		return nil, err
	}
	in := make([]processors.Record, 0, len(recs))
	for _, rec := range recs {
		pr := processors.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp}
		for _, h := range rec.Headers {
			pr.Headers = append(pr.Headers, processors.Header{Key: h.Key, Value: h.Value})
		}
		in = append(in, pr)
	}
	res.Input = len(in)
	out, err := kafkaio.ReadAll(ctx, r.cfg.Kafka, spec.Records.TopicFrom(r.cfg.Names.KanonTopicTemplate))
	if err != nil {
		return nil, err
	}
	published := make([][]byte, len(out))
	for i, rec := range out {
		published[i] = rec.Value
	}
	cfg := r.cfg
	cfg.Castle.K, cfg.Castle.Delta, cfg.Castle.Seed = chaosCastleK, chaosDelta, chaosCastleSeed
	a, err := wiring.BuildAnonymize(ctx, cfg, spec, nil, nil)
	if err != nil {
		return nil, err
	}
	audit, err := kanonrec.AuditRun(ctx, a.Processor, in, published)
	if err != nil {
		return nil, err
	}
	res.Records, res.RecordsExpected, res.RecordsExtra, res.RecordsMissing = audit.Published, audit.Expected, audit.Extra, audit.Missing
	res.Groups, res.UnderK, res.LinkedUnique = audit.Groups, res.UnderK+audit.UnderK, audit.Linkage.Unique
	r.logf("verified k-anonymity: %+v; record-level audit: %s", *res, audit)
	return res, nil
}

// offlineAggregates runs both aggregates stages (first per partition,
// then the merge) over the clean input, as read back, without restarts,
// and closes every window on every partition.
func (r *run) offlineAggregates(ctx context.Context, input string) (map[string]string, error) {
	recs, err := kafkaio.ReadAll(ctx, r.cfg.Kafka, input)
	if err != nil {
		return nil, err
	}
	in := make([]processors.Record, 0, len(recs))
	for _, rec := range recs {
		pr := processors.Record{Topic: rec.Topic, Partition: rec.Partition,
			Offset: rec.Offset, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp}
		for _, h := range rec.Headers {
			pr.Headers = append(pr.Headers, processors.Header{Key: h.Key, Value: h.Value})
		}
		in = append(in, pr)
	}
	td, err := r.adm.ListTopics(ctx, input)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	cfg := r.cfg
	cfg.Kanon.K, cfg.Kanon.Window, cfg.Kanon.AllowedLateness, cfg.Kanon.IdleClose = chaosK, chaosWindow, chaosLateness, time.Millisecond
	spec, err := kanonspec.Default()
	if err != nil {
		return nil, err
	}
	// The final replica closes every window (they all ended hours ago);
	// a tick a day ahead does the same here.
	return wiring.OfflineAggregates(ctx, cfg, spec, in, int32(len(td[input].Partitions)), time.Now().Add(24*time.Hour))
}
