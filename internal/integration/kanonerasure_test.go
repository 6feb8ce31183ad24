package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonrec"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
)

// TestKanonErasureOnRealKafka: the record-level k-anonymity processor,
// with the erasure notices topic as its co-partitioned second input, on
// the real broker. A subject's records wait in their clusters (delta is
// larger than the input of phase one); the erasure plan's notices - one
// per purpose pseudonym, keyed and partitioned as the erasure executor
// publishes them - are published; then enough records of other subjects
// arrive to decide every waiting record, plus one more record of the
// erased subject (the clean topic lagging behind the erasure). Its three
// held records are dropped, never released (pipeline_kanon_erasure_*), the
// late record is kept out, the notices of the other purposes change
// nothing, and no pseudonym reaches the output. It checks on the real
// partitioners that a notice lands on the partition number of its
// subject's clean records.
func TestKanonErasureOnRealKafka(t *testing.T) {
	r := newRig(t)
	r.cfg.Castle.K, r.cfg.Castle.Delta, r.cfg.Castle.Seed, r.cfg.Castle.MaxDelay = 3, 200, 7, 0
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	km := kanonmetrics.New(reg)
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rec, err := wiring.BuildAnonymize(ctx, r.cfg, spec, km, log)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Notices != r.cfg.Names.ErasuresTopic {
		t.Fatalf("the processor reads notices from %q, want %q", rec.Notices, r.cfg.Names.ErasuresTopic)
	}
	rc := wiring.RunnerConfig(r.cfg, rec.Group, rec.Input, log)
	rc.Notices, rc.MaxPollRecords, rc.Metrics = rec.Notices, 300, runner.NewMetrics(prometheus.NewRegistry())
	rn, err := runner.New(rc, rec.Processor)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rn.Run(rctx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	key, ok := r.keys.Active("ai_training")
	if !ok {
		t.Fatal("no ai_training pseudonym key")
	}
	ps := func(subject string) string {
		return string(pseudonym.New(key).Append(nil, "subject_id", subject))
	}
	// Clean records as the privacy processor writes them: keyed by the
	// pseudonym, the default partitioner, the key id header.
	clean := func(subjects []string) []*kgo.Record {
		var evs []kevent
		for i, s := range subjects {
			evs = append(evs, kevent{subject: ps(s), age: kAges[i%5], country: kCountries[i%6], gender: kGenders[i%3],
				etype: kTypes[i%5], postal: fmt.Sprintf("%02d", i%23), page: kPages[i%len(kPages)], at: time.Now().Add(-time.Hour)})
		}
		recs := kencode(t, rec.Input, "ai_training", evs)
		for _, kr := range recs {
			kr.Partition = 0
			kr.Headers = []kgo.RecordHeader{{Key: processors.HeaderKeyID, Value: []byte(key.ID)}}
		}
		return recs
	}
	produce := func(p kgo.Partitioner, recs []*kgo.Record) {
		t.Helper()
		cl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(p))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
			t.Fatal(err)
		}
	}
	const erased = "it-erased-subject"
	var phaseA []string
	for i := range 40 {
		phaseA = append(phaseA, fmt.Sprintf("it-subject-%03d", i))
	}
	phaseA = append(phaseA, erased, erased, erased)
	produce(kgo.StickyKeyPartitioner(nil), clean(phaseA))
	r.waitGroup(rec.Group, rec.Input, 2*time.Minute)

	lk := make([]byte, erasure.LedgerKeyLen)
	_, _ = rand.Read(lk)
	ledger, err := erasure.NewLedger(lk)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := erasure.PlanFor(erased, r.keys, ledger)
	if err != nil {
		t.Fatal(err)
	}
	var notices []*kgo.Record
	for _, n := range plan.Notices {
		v, _ := json.Marshal(erasure.NoticeRecord{Notice: n, ErasedMS: time.Now().UnixMilli(), Request: "it-req"})
		notices = append(notices, &kgo.Record{Topic: rec.Notices, Key: []byte(n.Pseudonym), Value: v})
	}
	notices = append(notices, &kgo.Record{Topic: rec.Notices, Key: []byte("x"), Value: []byte("not a notice")})
	produce(erasure.Partitioner(r.cfg.Names.ConsentTopic), notices)
	r.waitGroup(rec.Group, rec.Notices, 2*time.Minute)
	// The metrics follow the commit the group offsets show: poll them.
	metricIs := func(c prometheus.Collector, want float64) float64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := testutil.ToFloat64(c)
			if got == want || time.Now().After(deadline) {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := metricIs(km.ErasureNotices.WithLabelValues(kanonrec.Name, "applied"), 1); got != 1 {
		t.Fatalf("applied notices %v, want 1 (the ai_training pseudonym's, on its subject's partition)", got)
	}
	if got := metricIs(km.ErasureDropped.WithLabelValues(kanonrec.Name, "held_records"), 3); got != 3 {
		t.Fatalf("held records dropped %v, want the subject's 3", got)
	}

	var phaseB []string
	for i := range 1200 {
		phaseB = append(phaseB, fmt.Sprintf("it-subject-%03d", 40+i%300))
	}
	phaseB = append(phaseB, erased)
	produce(kgo.StickyKeyPartitioner(nil), clean(phaseB))
	r.waitGroup(rec.Group, rec.Input, 2*time.Minute)

	if got := metricIs(km.ErasureDropped.WithLabelValues(kanonrec.Name, "late_records"), 1); got != 1 {
		t.Errorf("late records kept out %v, want 1", got)
	}
	for label, want := range map[string]float64{"applied": 1, "not_applicable": float64(len(plan.Notices) - 1), "malformed": 1, "unknown": 0} {
		if got := metricIs(km.ErasureNotices.WithLabelValues(kanonrec.Name, label), want); got != want {
			t.Errorf("%s notices %v, want %v", label, got, want)
		}
	}
	// Every phase-one record but the erased subject's was decided: the
	// delay passed them all.
	out := rec.Processor.Topic()
	published := r.read(out)
	var released float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		released = testutil.ToFloat64(km.Records.WithLabelValues(out, "released")) + testutil.ToFloat64(km.Records.WithLabelValues(out, "reused"))
		if released == float64(len(published)) || time.Now().After(deadline) {
			break
		}
	}
	suppressed := testutil.ToFloat64(km.Records.WithLabelValues(out, "suppressed"))
	if released == 0 || float64(len(published)) != released {
		t.Fatalf("%d records on %s, metrics say %v released", len(published), out, released)
	}
	inputs := float64(len(phaseA) + len(phaseB))
	if released+suppressed > inputs-4 {
		t.Fatalf("released %v + suppressed %v > %v inputs without the erased subject's 4", released, suppressed, inputs-4)
	}
	for _, o := range published {
		if strings.Contains(string(o.Value), ps(erased)) || strings.Contains(string(o.Value), kanonCanary) {
			t.Fatal("a pseudonym or free text reached the k-anonymous topic")
		}
	}
}

// TestKanonAggregatesErasureOnRealKafka: the aggregates' first stage with
// the notices topic on the real broker. A subject's events sit in an open
// window when its erasure notices arrive; the window forgets its events
// (pipeline_kanon_erasure_dropped_total{what="window_events"}), its later
// event is kept out, the other purposes' notices change nothing.
func TestKanonAggregatesErasureOnRealKafka(t *testing.T) {
	r := newRig(t)
	r.cfg.Kanon.K, r.cfg.Kanon.Window, r.cfg.Kanon.AllowedLateness, r.cfg.Kanon.IdleClose = 3, time.Hour, time.Minute, 0
	r.cfg.Kanon.InputPartitions = 4
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	km := kanonmetrics.New(prometheus.NewRegistry())
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	first, err := wiring.BuildAggregates(ctx, r.cfg, spec, km, log)
	if err != nil {
		t.Fatal(err)
	}
	rc := wiring.RunnerConfig(r.cfg, first.Group, first.Input, log)
	rc.Notices, rc.Metrics = first.Notices, runner.NewMetrics(prometheus.NewRegistry())
	rn, err := runner.New(rc, first.Processor)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rn.Run(rctx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	key, _ := r.keys.Active("analytics")
	ps := func(s string) string { return string(pseudonym.New(key).Append(nil, "subject_id", s)) }
	// An hour-long window that started a minute ago stays open.
	at := time.Now().Add(-time.Minute)
	clean := func(subjects []string) []*kgo.Record {
		var evs []kevent
		for i, s := range subjects {
			evs = append(evs, kevent{subject: ps(s), age: kAges[i%5], country: kCountries[i%6], gender: kGenders[i%3],
				etype: kTypes[i%5], page: kPages[0], at: at})
		}
		recs := kencode(t, first.Input, "analytics", evs)
		for _, kr := range recs {
			kr.Partition = 0
			kr.Headers = []kgo.RecordHeader{{Key: processors.HeaderKeyID, Value: []byte(key.ID)}}
		}
		return recs
	}
	produce := func(p kgo.Partitioner, recs []*kgo.Record) {
		t.Helper()
		cl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(p))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
			t.Fatal(err)
		}
	}
	metricIs := func(c prometheus.Collector, want float64) float64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := testutil.ToFloat64(c)
			if got == want || time.Now().After(deadline) {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	const erased = "it-erased-subject"
	var subjects []string
	for i := range 60 {
		subjects = append(subjects, fmt.Sprintf("it-subject-%03d", i))
	}
	subjects = append(subjects, erased, erased, erased, erased)
	produce(kgo.StickyKeyPartitioner(nil), clean(subjects))
	r.waitGroup(first.Group, first.Input, 2*time.Minute)

	lk := make([]byte, erasure.LedgerKeyLen)
	_, _ = rand.Read(lk)
	ledger, _ := erasure.NewLedger(lk)
	plan, err := erasure.PlanFor(erased, r.keys, ledger)
	if err != nil {
		t.Fatal(err)
	}
	var notices []*kgo.Record
	for _, n := range plan.Notices {
		v, _ := json.Marshal(erasure.NoticeRecord{Notice: n, ErasedMS: time.Now().UnixMilli()})
		notices = append(notices, &kgo.Record{Topic: first.Notices, Key: []byte(n.Pseudonym), Value: v})
	}
	produce(erasure.Partitioner(r.cfg.Names.ConsentTopic), notices)
	r.waitGroup(first.Group, first.Notices, 2*time.Minute)
	if got := metricIs(km.ErasureNotices.WithLabelValues("kanon-aggregates", "applied"), 1); got != 1 {
		t.Fatalf("applied notices %v, want 1", got)
	}
	if got := metricIs(km.ErasureDropped.WithLabelValues("kanon-aggregates", "window_events"), 4); got != 4 {
		t.Fatalf("window events dropped %v, want the subject's 4", got)
	}
	produce(kgo.StickyKeyPartitioner(nil), clean([]string{erased, "it-subject-001"}))
	r.waitGroup(first.Group, first.Input, 2*time.Minute)
	if got := metricIs(km.ErasureDropped.WithLabelValues("kanon-aggregates", "late_records"), 1); got != 1 {
		t.Fatalf("late records kept out %v, want 1", got)
	}
	if got := metricIs(km.ErasureNotices.WithLabelValues("kanon-aggregates", "not_applicable"), float64(len(plan.Notices)-1)); got != float64(len(plan.Notices)-1) {
		t.Fatalf("not applicable notices %v, want %d", got, len(plan.Notices)-1)
	}
}
