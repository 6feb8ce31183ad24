package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"

	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonrec"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// kevent is one synthetic clean event for the k-anonymity processors. The
// test keeps them as the ground truth of its independent checks.
type kevent struct {
	partition                            int32
	subject, age, country, gender, etype string
	postal, page                         string
	amount                               float64 // 0: none
	at                                   time.Time
}

const kanonCanary = "CANARY-KANON-7f3a"

var (
	kAges      = []string{"18-24", "25-34", "35-44", "45-54", "65+"}
	kCountries = []string{"VN", "SG", "DE", "US", "FR", "GB"}
	kGenders   = []string{"female", "male", "non_binary"}
	kTypes     = []string{"page_view", "search", "purchase", "login", "add_to_cart"}
	kPages     = []string{"https://shop.example.com/p/:id", "https://shop.example.com/search", "https://shop.example.com/cart",
		"https://shop.example.com/account/:id/orders"}
)

// kstream makes n events of a population, in event-time order, spread over
// span; subject s always lands on partition s%parts (clean topics are keyed
// by pseudonym). One "heavy" subject sends flood events into one cell.
func kstream(seed uint64, n, subjects, parts int, start time.Time, span time.Duration, flood int) []kevent {
	rng := rand.New(rand.NewPCG(seed, seed^99))
	var out []kevent
	for i := range n {
		s := rng.IntN(subjects)
		at := start.Add(time.Duration(int64(span) * int64(i) / int64(n)))
		out = append(out, kevent{partition: int32(s % parts), subject: fmt.Sprintf("%s-subject-%05d", kanonCanary, s),
			age: kAges[s%5], country: kCountries[(s/5)%6], gender: kGenders[s%3], etype: kTypes[rng.IntN(5)],
			postal: fmt.Sprintf("%02d", s%23), page: kPages[rng.IntN(len(kPages))], amount: float64(rng.IntN(3)*rng.IntN(40000)) / 100, at: at})
		if i%(n/max(flood, 1)+1) == 0 && flood > 0 {
			out = append(out, kevent{partition: 0, subject: kanonCanary + "-heavy", age: "65+", country: "GB", gender: "non_binary",
				etype: "purchase", postal: "99", page: kPages[0], amount: 99.5, at: at})
		}
	}
	return out
}

// kencode writes the events as clean records of a purpose, with the
// canary in free text and the pseudonym fields.
func kencode(t *testing.T, topic, pur string, evs []kevent) []*kgo.Record {
	t.Helper()
	sch, err := schemas.CleanSchemaJSON(pur)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := avrosingle.NewCodec(string(sch))
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		m := map[string]any{
			"subject_id_pseudonym": goavro.Union("string", e.subject),
			"event_id_pseudonym":   goavro.Union("string", fmt.Sprintf("%s-event-%d", kanonCanary, i)),
			"birth_date_age_band":  goavro.Union("string", e.age),
			"address_country":      goavro.Union("string", e.country),
			"gender":               goavro.Union("string", e.gender),
			"event_type":           goavro.Union("string", e.etype),
			"page_url_template":    goavro.Union("string", e.page),
			"message_redacted":     goavro.Union("string", kanonCanary+" free text"),
		}
		if e.amount > 0 {
			m["order_amount"], m["currency"] = goavro.Union("double", e.amount), goavro.Union("string", "USD")
		}
		if pur == "analytics" {
			m["event_time"] = goavro.Union("long.timestamp-millis", e.at)
		} else {
			m["event_time_hour"] = goavro.Union("long.timestamp-millis", e.at.Truncate(time.Hour))
			m["address_postal_code_prefix"] = goavro.Union("string", e.postal)
		}
		b, err := codec.SingleFromNative(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: topic, Partition: e.partition, Key: []byte(e.subject), Value: b}
	}
	return recs
}

// kproduce writes records to their explicit partitions.
func (r *rig) kproduce(recs []*kgo.Record) {
	r.t.Helper()
	cl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		r.t.Fatal(err)
	}
}

// kreplica runs one replica of a stateful processor until stop.
func (r *rig) kreplica(proc processors.Processor, group, input string, reg prometheus.Registerer) func() {
	debug := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.t.Helper()
	rc := wiring.RunnerConfig(r.cfg, group, input, debug)
	rc.MaxPollRecords, rc.IdleAfter, rc.Metrics = 700, 2*time.Second, runner.NewMetrics(reg)
	rn, err := runner.New(rc, proc)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rn.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(stop)
	return stop
}

func (r *rig) waitGroup(group, topic string, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := r.groupCaughtUp(ctx, group, topic)
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("group %s did not catch up on %s within %s (last error %v)", group, topic, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKanonOnRealKafka runs both k-anonymity processors against the real
// broker while replicas are added and removed, then checks, from the
// test's own ground truth: every aggregate row covers >= k distinct
// subjects; the rows equal an uninterrupted offline run (nothing lost or
// duplicated by the rebalances and restores); every anonymised record sits
// in a group of >= k distinct subjects with identical generalised
// quasi-identifiers, none twice; and no canary reached an output, a log or
// a metric.
func TestKanonOnRealKafka(t *testing.T) {
	r := newRig(t)
	const parts, kAgg, kRec = 4, 11, 10
	r.cfg.Kanon.K, r.cfg.Kanon.Window, r.cfg.Kanon.AllowedLateness = kAgg, time.Minute, 10*time.Second
	// Windows close on event time only (the closers below). The events are
	// an hour old, so with the wall-clock close on, an idle tick between
	// two phases (a slow rebalance on a busy CPU) would close windows
	// before the next phase's events for them arrive: the rows would
	// depend on CPU speed. TestIdlePartitionsCloseOnANewOwner tests that.
	r.cfg.Kanon.IdleClose = 0
	r.cfg.Kanon.InputPartitions = parts
	r.cfg.Castle.K, r.cfg.Castle.Delta, r.cfg.Castle.Seed = kRec, 300, 7
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	analytics, aiTraining := wiring.CleanTopic(r.cfg, purpose.Analytics), wiring.CleanTopic(r.cfg, purpose.AITraining)
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	aggEvents := kstream(1, 12000, 600, parts, start, 8*time.Minute, 3000)
	// One event per partition far later closes every window.
	for p := range int32(parts) {
		aggEvents = append(aggEvents, kevent{partition: p, subject: fmt.Sprintf("%s-closer-%d", kanonCanary, p), age: "18-24", country: "VN",
			gender: "female", etype: "login", page: kPages[0], at: start.Add(20 * time.Minute)})
	}
	recEvents := kstream(2, 9000, 400, parts, start, 6*time.Hour, 2000)
	aggRecs, recRecs := kencode(t, analytics, "analytics", aggEvents), kencode(t, aiTraining, "ai_training", recEvents)

	reg := prometheus.NewRegistry()
	km := kanonmetrics.New(reg)
	log := slog.New(slog.NewJSONHandler(r.logs, nil))
	// Each replica is its own process in production: build the processors
	// per replica (they hold per-replica state through their workers).
	replica := func(which string) func() {
		var proc processors.Processor
		var input, group string
		if which == "agg" {
			// Both stages, as 'pipeline run kanon' runs them.
			return r.kanonAggregates(spec, km, log)
		} else {
			a, err := wiring.BuildAnonymize(context.Background(), r.cfg, spec, km, log)
			if err != nil {
				t.Fatal(err)
			}
			proc, input, group = a.Processor, a.Input, a.Group
		}
		return r.kreplica(proc, group, input, prometheus.NewRegistry())
	}
	third := func(recs []*kgo.Record, i int) []*kgo.Record {
		n := len(recs)
		return recs[n*i/3 : n*(i+1)/3]
	}
	// Phase 1: one replica each.
	stopAggA, stopRecA := replica("agg"), replica("rec")
	r.kproduce(slices.Concat(third(aggRecs, 0), third(recRecs, 0)))
	r.waitGroup(r.cfg.Names.KanonAggregatesGroup, analytics, 2*time.Minute)
	r.waitGroup(r.cfg.Names.CastleGroup, aiTraining, 2*time.Minute)
	// Phase 2: scale out to two replicas (rebalance: partitions move and are
	// restored from their checkpoints on the new owner).
	stopAggB, stopRecB := replica("agg"), replica("rec")
	r.kproduce(slices.Concat(third(aggRecs, 1), third(recRecs, 1)))
	r.waitGroup(r.cfg.Names.KanonAggregatesGroup, analytics, 2*time.Minute)
	r.waitGroup(r.cfg.Names.CastleGroup, aiTraining, 2*time.Minute)
	// Phase 3: the first replicas leave; the second ones restore their
	// partitions.
	stopAggA()
	stopRecA()
	r.kproduce(slices.Concat(third(aggRecs, 2), third(recRecs, 2)))
	r.waitGroup(r.cfg.Names.KanonAggregatesGroup, analytics, 2*time.Minute)
	r.waitGroup(r.cfg.Names.CastleGroup, aiTraining, 2*time.Minute)
	r.waitMerged(spec, 2*time.Minute)
	stopAggB()
	stopRecB()

	aggTopic := spec.Aggregates[0].TopicFrom(r.cfg.Names.AggTopicTemplate)
	kanonTopic := spec.Records.TopicFrom(r.cfg.Names.KanonTopicTemplate)
	rows := r.read(aggTopic)
	anon := r.read(kanonTopic)
	t.Logf("%d aggregate rows, %d anonymised records of %d", len(rows), len(anon), len(recEvents))
	if len(rows) == 0 || len(anon) == 0 {
		t.Fatal("nothing published")
	}
	// A standard client reads both k-anonymous outputs: confluent-kafka's
	// AvroDeserializer (examples/python/consumer.py), read_committed, the
	// writer schemas fetched by id from the registry.
	read := readAllWithPythonConsumer(t, max(len(rows), len(anon))+5, aggTopic, kanonTopic)
	for _, out := range []struct {
		topic string
		n     int
		k     int
		count string
	}{{aggTopic, len(rows), kAgg, "subjects"}, {kanonTopic, len(anon), kRec, "k"}} {
		got := read[out.topic]
		if len(got) != out.n {
			t.Fatalf("%s: the Python consumer read %d records, franz-go %d", out.topic, len(got), out.n)
		}
		for _, rec := range got {
			if v, ok := rec.Value[out.count].(float64); !ok || int(v) < out.k {
				t.Fatalf("%s: record read by the Python consumer has %s=%v, want >= %d: %v", out.topic, out.count, rec.Value[out.count], out.k, rec.Value)
			}
		}
	}

	// Canary: nothing sensitive in any output, checkpoint, log or metric.
	states := r.read(r.cfg.Names.StateTopicTemplate[:strings.Index(r.cfg.Names.StateTopicTemplate, "{")]+"kanon-aggregates",
		r.cfg.Names.StateTopicTemplate[:strings.Index(r.cfg.Names.StateTopicTemplate, "{")]+"kanon-records",
		r.cfg.Names.StateTopicTemplate[:strings.Index(r.cfg.Names.StateTopicTemplate, "{")]+"kanon-merge", wiring.PartialsTopic(r.cfg))
	if len(states) == 0 {
		t.Fatal("no checkpoints written")
	}
	for _, rec := range slices.Concat(rows, anon, states) {
		if bytes.Contains(rec.Value, []byte(kanonCanary)) || bytes.Contains(rec.Key, []byte(kanonCanary)) {
			t.Fatalf("canary in %s", rec.Topic)
		}
	}
	if bytes.Contains(r.logs.Bytes(), []byte(kanonCanary)) {
		t.Fatal("canary in the logs")
	}
	if text := pipelinetest.MetricsText(t, reg); strings.Contains(text, kanonCanary) {
		t.Fatal("canary in the metrics")
	}

	checkAggregateRows(t, spec, kAgg, aggEvents, rows)
	// Exactly once: the rows equal an uninterrupted offline run of both
	// stages over the same input.
	want := offlineAggregates(t, r, spec, analytics)
	got := map[string]string{}
	for _, rec := range rows {
		if _, dup := got[string(rec.Key)]; dup {
			t.Fatalf("row %s published twice", rec.Key)
		}
		got[string(rec.Key)] = string(rec.Value)
	}
	if len(got) != len(want) {
		t.Errorf("published %d rows, an uninterrupted run publishes %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("row %s differs from the uninterrupted run", k)
			break
		}
	}
	checkAnonymised(t, r, spec, kRec, anon)

	snap, err := metrics.Snapshot(reg)
	if err != nil {
		t.Fatal(err)
	}
	if v := snap["pipeline_kanon_min_subjects{output="+aggTopic+"}"]; v < kAgg {
		t.Errorf("min subjects metric %v < k", v)
	}
	for _, proc := range []string{"kanon-aggregates", "kanon-merge", "kanon-records"} {
		if snap["pipeline_kanon_restores_total{processor="+proc+"}"] == 0 {
			t.Errorf("%s: no partition was restored from a checkpoint; the rebalances did not exercise recovery", proc)
		}
	}
	released := snap["pipeline_kanon_records_total{outcome=released,output="+kanonTopic+"}"] +
		snap["pipeline_kanon_records_total{outcome=reused,output="+kanonTopic+"}"]
	if int(released) != len(anon) {
		t.Errorf("metrics say %v records released, the topic holds %d", released, len(anon))
	}
	if v := snap["pipeline_kanon_rows_total{kind=released,output="+aggTopic+"}"] + snap["pipeline_kanon_rows_total{kind=margin,output="+aggTopic+"}"]; int(v) != len(rows) {
		t.Errorf("metrics say %v rows released, the topic holds %d", v, len(rows))
	}
}

// checkAggregateRows recounts, from the ground truth, the distinct subjects
// whose events match each released row (its window and generalised
// values): at least k for every row and margin.
func checkAggregateRows(t *testing.T, spec *kanonspec.Spec, k int, evs []kevent, rows []*kgo.Record) {
	t.Helper()
	agg := spec.Aggregates[0]
	codec, err := avrosingle.NewCodec(string(agg.AggregateSchemaJSON()))
	if err != nil {
		t.Fatal(err)
	}
	type gen interface {
		Generalize(string, int) string
		Levels() int
	}
	var gens []gen
	for _, d := range agg.Dimensions {
		h, err := spec.Build(d.Hierarchy)
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, h)
	}
	for _, rec := range rows {
		native, _, err := codec.NativeFromFramed(rec.Value)
		if err != nil {
			t.Fatalf("row does not decode with its published schema: %v", err)
		}
		row := native.(map[string]any)
		start, end := row["window_start"].(time.Time), row["window_end"].(time.Time)
		vals := []string{row["birth_date_age_band"].(string), row["address_country"].(string), row["gender"].(string), row["event_type"].(string)}
		subjects := map[string]bool{}
		for _, e := range evs {
			if e.at.Before(start) || !e.at.Before(end) {
				continue
			}
			ev := []string{e.age, e.country, e.gender, e.etype}
			match := true
			for i, v := range vals {
				if v == "*" {
					continue
				}
				found := false
				for l := range gens[i].Levels() {
					if gens[i].Generalize(ev[i], l) == v {
						found = true
					}
				}
				match = match && found
			}
			if match {
				subjects[e.subject] = true
			}
		}
		if len(subjects) < k || row["subjects"].(int64) < int64(k) {
			t.Errorf("row %s: %d distinct subjects in the input match it (published %d), k=%d", rec.Key, len(subjects), row["subjects"], k)
		}
		// The heavy subject's events never fill a cell alone: its cell is
		// released only where (merged over every partition) at least k
		// distinct people, the heavy one counted once, are in it.
		if strings.Contains(string(rec.Key), "65+/GB/non_binary/purchase") && len(subjects) < k {
			t.Errorf("the heavy subject's cell was released without k distinct people: %s (%d)", rec.Key, len(subjects))
		}
	}
}

// offlineAggregates runs both aggregates stages over the input as read
// back from Kafka, with no restart, and closes every window.
func offlineAggregates(t *testing.T, r *rig, spec *kanonspec.Spec, input string) map[string]string {
	t.Helper()
	recs := r.read(input)
	in := make([]processors.Record, 0, len(recs))
	for _, rec := range recs {
		pr := processors.Record{Topic: rec.Topic, Partition: rec.Partition,
			Offset: rec.Offset, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp}
		for _, h := range rec.Headers {
			pr.Headers = append(pr.Headers, processors.Header{Key: h.Key, Value: h.Value})
		}
		in = append(in, pr)
	}
	cfg := r.cfg
	if cfg.Kanon.IdleClose <= 0 {
		cfg.Kanon.IdleClose = time.Millisecond
	}
	tp, _ := r.topo.Topic(input)
	out, err := wiring.OfflineAggregates(context.Background(), cfg, spec, in, tp.Partitions, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kanonAggregates runs one replica of both aggregates stages until the
// returned stop.
func (r *rig) kanonAggregates(spec *kanonspec.Spec, km *kanonmetrics.Metrics, log *slog.Logger) func() {
	r.t.Helper()
	a, err := wiring.BuildAggregates(context.Background(), r.cfg, spec, km, log)
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := wiring.BuildKanonMerge(context.Background(), r.cfg, spec, km, log)
	if err != nil {
		r.t.Fatal(err)
	}
	stop1 := r.kreplica(a.Processor, a.Group, a.Input, prometheus.NewRegistry())
	stop2 := r.kreplica(m.Processor, m.Group, m.Input, prometheus.NewRegistry())
	return func() { stop1(); stop2() }
}

// waitMerged waits until the merge stage has committed everything the
// first stage published (the partials topic is written in transactions:
// its end may lie one commit marker past the last record) and the rows
// stopped changing.
func (r *rig) waitMerged(spec *kanonspec.Spec, timeout time.Duration) {
	r.t.Helper()
	partials, rows := wiring.PartialsTopic(r.cfg), spec.Aggregates[0].TopicFrom(r.cfg.Names.AggTopicTemplate)
	deadline := time.Now().Add(timeout)
	var last int64 = -1
	for stable := 0; stable < 3; {
		if time.Now().After(deadline) {
			r.t.Fatalf("the merge stage did not catch up on %s within %s", partials, timeout)
		}
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err1 := r.adm.ListEndOffsets(ctx, partials, rows)
		committed, err2 := r.adm.FetchOffsets(ctx, r.cfg.Names.KanonMergeGroup)
		cancel()
		if err1 != nil || err2 != nil {
			continue
		}
		ok := true
		var n int64
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic == rows {
				n += o.Offset
				return
			}
			c, found := committed.Lookup(o.Topic, o.Partition)
			if o.Offset > 0 && (!found || c.At < o.Offset-1) {
				ok = false
			}
		})
		if ok && n == last {
			stable++
		} else {
			stable = 0
		}
		last = n
	}
}

// checkAnonymised audits the record-level output (kanonrec.AuditRun)
// against an uninterrupted Offline run over the clean input as read back,
// run with the same seed: the same records, none twice, none foreign
// (exactly once); every cluster a reader can tell apart holds at least k
// distinct subjects, counted through the offline run's lineage; and a
// reader who holds the clean topic links at most 1/k of the released
// records to exactly one clean record (SPEC 3.6).
func checkAnonymised(t *testing.T, r *rig, spec *kanonspec.Spec, k int, recs []*kgo.Record) {
	t.Helper()
	var in []processors.Record
	for _, rec := range r.read(wiring.CleanTopic(r.cfg, purpose.AITraining)) {
		in = append(in, processors.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
			Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp})
	}
	published := make([][]byte, len(recs))
	for i, rec := range recs {
		published[i] = rec.Value
	}
	ref, err := wiring.BuildAnonymize(context.Background(), r.cfg, spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	audit, err := kanonrec.AuditRun(context.Background(), ref.Processor, in, published)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("record-level audit: %s", audit)
	if !audit.OK(k) {
		t.Errorf("record-level audit failed: %s", audit)
	}
}

// TestIdlePartitionsCloseOnANewOwner: a replica that takes over partitions
// that receive no more records restores them on a tick and closes their
// windows; the rows equal an uninterrupted run's.
func TestIdlePartitionsCloseOnANewOwner(t *testing.T) {
	r := newRig(t)
	const parts = 4
	r.cfg.Kanon.K, r.cfg.Kanon.Window, r.cfg.Kanon.AllowedLateness, r.cfg.Kanon.IdleClose = 11, time.Minute, 10*time.Hour, 0
	r.cfg.Kanon.InputPartitions = parts
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	// The merge stage runs throughout; only the first stage changes owner.
	merge, err := wiring.BuildKanonMerge(context.Background(), r.cfg, spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopMerge := r.kreplica(merge.Processor, merge.Group, merge.Input, prometheus.NewRegistry())
	analytics := wiring.CleanTopic(r.cfg, purpose.Analytics)
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	r.kproduce(kencode(t, analytics, "analytics", kstream(5, 6000, 400, parts, start, 5*time.Minute, 0)))
	build := func() processors.Processor {
		a, err := wiring.BuildAggregates(context.Background(), r.cfg, spec, nil, slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		if err != nil {
			t.Fatal(err)
		}
		return a.Processor
	}
	// The first owner consumes everything; with a 10 h lateness and no idle
	// close, no window closes.
	stop := r.kreplica(build(), r.cfg.Names.KanonAggregatesGroup, analytics, prometheus.NewRegistry())
	r.waitGroup(r.cfg.Names.KanonAggregatesGroup, analytics, 2*time.Minute)
	stop()
	aggTopic := spec.Aggregates[0].TopicFrom(r.cfg.Names.AggTopicTemplate)
	if n := len(r.read(aggTopic)); n != 0 {
		t.Fatalf("%d rows published before any window could close", n)
	}
	// The new owner gets no record; its ticks restore the partitions and
	// close every window by the wall clock.
	r.cfg.Kanon.IdleClose, r.cfg.Kanon.AllowedLateness = time.Millisecond, 0
	stop = r.kreplica(build(), r.cfg.Names.KanonAggregatesGroup, analytics, prometheus.NewRegistry())
	want := offlineAggregates(t, r, spec, analytics)
	var rows []*kgo.Record
	waitUntil(t, "the new owner publishes the idle windows", 20*time.Second, func() bool {
		rows = r.read(aggTopic)
		return len(rows) >= len(want)
	})
	stop()
	r.waitMerged(spec, time.Minute)
	stopMerge()
	got := map[string]string{}
	for _, rec := range r.read(aggTopic) {
		got[string(rec.Key)] = string(rec.Value)
	}
	if len(got) != len(want) {
		t.Fatalf("new owner published %d rows, an uninterrupted run %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("row %s differs", k)
		}
	}
}
