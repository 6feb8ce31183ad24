package privacy_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/topology"
)

func auditOn(c *config.Config) { c.Names.AuditTopic = topology.DefaultNames().Audit }

// auditOutput returns the one audit record of a processed batch, checked:
// its topic, key, header and input index, and the strict decoder.
func auditOutput(t testing.TB, out *processors.Batch, n int) (audit.Record, []byte) {
	t.Helper()
	var found []processors.Output
	for _, o := range out.Outputs {
		if o.Topic == topology.DefaultNames().Audit {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d audit records for one batch, want 1", len(found))
	}
	o := found[0]
	if string(o.Key) != privacy.Name || o.Input != n-1 || len(o.Headers) != 1 || o.Headers[0].Key != processors.HeaderProcessor {
		t.Fatalf("audit output key %q input %d (of %d) headers %v", o.Key, o.Input, n, o.Headers)
	}
	rec, err := audit.Decode(o.Value)
	if err != nil {
		t.Fatalf("the audit record does not decode: %v\n%s", err, o.Value)
	}
	if rec.Kind != audit.KindBatch || rec.Processor != privacy.Name || rec.Principal != "" {
		t.Fatalf("audit record %+v", rec)
	}
	return rec, o.Value
}

// TestAuditSummarisesEachBatch (attacks: an audit summary that disagrees
// with what was published, or that carries the subject - its raw id, a
// pseudonym of it or a field value - to a topic meant for auditors): a
// batch of a canary subject (granted everything), a subject who withdrew
// marketing, an unknown subject and malformed records, over two input
// partitions, has one audit record whose counts equal the clean outputs
// and the committed metrics, per purpose and reason, with the input
// ranges, the policy version and the consent versions decided on, and
// none of the canary's markers or pseudonyms.
func TestAuditSummarisesEachBatch(t *testing.T) {
	h := newHarnessWith(t, singleObject, auditOn)
	const canary = "canary-audit-subject-77"
	v1, v2 := h.now.Add(-time.Hour).UnixMilli(), h.now.Add(-time.Minute).UnixMilli()
	var all, withdrew consent.Record
	for _, p := range purpose.All {
		all.Apply(p, consent.Granted, consent.GDPR, v1)
		withdrew.Apply(p, consent.Granted, consent.GDPR, v1)
	}
	withdrew.Apply(purpose.Marketing, consent.Withdrawn, consent.GDPR, v2)
	ctx := context.Background()
	if err := h.pp.Store.PutMany(ctx, []string{canary, "subject-withdrew"}, []consent.Record{all, withdrew}); err != nil {
		t.Fatal(err)
	}
	var recs []processors.Record
	var markers []pipelinetest.Marker
	add := func(r processors.Record, part int32, off int64) {
		r.Partition, r.Offset = part, off
		recs = append(recs, r)
	}
	for i := range 6 {
		ev, m := pipelinetest.CanaryEvent(i, canary, h.now)
		markers = append(markers, m...)
		add(h.record(t, ev), 2, int64(40+i))
	}
	gen := synth.New(5, 10, h.now)
	for i := range 4 {
		ev := gen.Event(i)
		ev.SubjectID = []string{"subject-withdrew", "subject-unknown"}[i%2]
		add(h.record(t, producer.Event(ev)), 5, int64(900+i))
	}
	for i := range 3 {
		b, _ := synth.Malformed(i, h.enc, h.now)
		add(processors.Record{Topic: "raw.customer-events", Value: b}, 5, int64(904+i))
	}
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	if err := w.Process(ctx, recs, &out); err != nil {
		t.Fatal(err)
	}
	w.Done(true)
	rec, raw := auditOutput(t, &out, len(recs))
	b := rec.Batch
	if len(b.Inputs) != 2 || b.Inputs[0].Topic != "raw.customer-events" || b.Inputs[0].Partition != 2 ||
		b.Inputs[0].Offsets[0] != 40 || b.Inputs[0].Offsets[1] != 45 || b.Inputs[1].Partition != 5 || b.Inputs[1].Offsets[0] != 900 || b.Inputs[1].Offsets[1] != 906 {
		t.Fatalf("inputs %+v", b.Inputs)
	}
	if b.Events != len(recs) || b.PolicyVersion != h.pp.Policy.Version {
		t.Fatalf("events %d policy %q", b.Events, b.PolicyVersion)
	}
	if v := b.ConsentVersions; v == nil || v.Min != v1 || v.Max != v2 {
		t.Fatalf("consent versions %+v, want [%d, %d]", v, v1, v2)
	}
	tally, err := privacy.ReadTally(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	quarantined := 0
	for reason, n := range b.Quarantined {
		quarantined += n
		if tally.Quarantined[reason] != n {
			t.Errorf("quarantined %s: audit %d, metrics %d", reason, n, tally.Quarantined[reason])
		}
	}
	if quarantined != 3 || len(b.Quarantined) != len(tally.Quarantined) {
		t.Errorf("quarantined %v, metrics %v", b.Quarantined, tally.Quarantined)
	}
	published := map[string]int{}
	for _, o := range out.Outputs {
		if p, ok := topicPurpose(o.Topic); ok {
			published[p.String()]++
		}
	}
	for _, p := range purpose.Names() {
		pc, ok := b.Purposes[p]
		if !ok {
			t.Fatalf("no counts for %s", p)
		}
		denied := 0
		for reason, n := range pc.Denied {
			denied += n
			if tally.Denied[p][reason] != n {
				t.Errorf("%s denied %s: audit %d, metrics %d", p, reason, n, tally.Denied[p][reason])
			}
		}
		if pc.Published != published[p] || pc.Published != tally.Published[p] || len(pc.Denied) != len(tally.Denied[p]) {
			t.Errorf("%s: audit published %d denied %v; topic %d, metrics %d %v", p, pc.Published, pc.Denied, published[p], tally.Published[p], tally.Denied[p])
		}
		if pc.Published+denied != b.Events-quarantined {
			t.Errorf("%s: published %d + denied %d != events %d - quarantined %d", p, pc.Published, denied, b.Events, quarantined)
		}
	}
	if b.Purposes["marketing"].Denied["withdrawn"] != 2 || b.Purposes["analytics"].Denied["unknown_subject"] != 2 {
		t.Errorf("reasons %+v", b.Purposes)
	}
	if found := pipelinetest.Find(raw, markers); len(found) > 0 {
		t.Fatalf("the audit record carries %v: %s", found, raw)
	}
	for _, p := range purpose.All {
		k, _ := h.pp.Keys.Active(p.String())
		for _, s := range []string{canary, "subject-withdrew", "subject-unknown"} {
			if ps := pseudonym.New(k).Append(nil, "subject_id", s); bytes.Contains(raw, ps) || bytes.Contains(raw, []byte(s)) {
				t.Fatalf("the audit record names %s (or its %s pseudonym)", s, p)
			}
		}
	}
}

// TestAuditOffWritesNothing: without an audit topic the processor adds
// no record (a configuration that names none).
func TestAuditOffWritesNothing(t *testing.T) {
	h := newHarness(t)
	out := h.process(t, h.record(t, synth.New(1, 3, h.now).Event(0)))
	for _, o := range out.Outputs {
		if o.Topic == topology.DefaultNames().Audit {
			t.Fatal("an audit record with no audit topic configured")
		}
	}
}

// staleOnce wraps the privacy processor: its workers' first few batches
// look outdated (a consent change raced them), so the runner aborts their
// transaction after producing and redoes them.
type staleOnce struct {
	processors.Processor
	stale atomic.Int32
}

func (s *staleOnce) NewWorker() processors.Worker {
	return &staleWorker{Worker: s.Processor.NewWorker(), s: s}
}

type staleWorker struct {
	processors.Worker
	s *staleOnce
}

func (w *staleWorker) Current() bool {
	if w.s.stale.Add(-1) >= 0 {
		return false
	}
	return w.Worker.Current()
}

// TestAbortedBatchLeavesNoAuditRecord (attack: an auditor counting the
// decisions of a batch that was never published, or counting a redone
// batch twice): on kfake with the exactly-once runner, the first
// transaction is aborted after its outputs (the audit record among them)
// were produced; read_committed sees exactly one audit record per
// committed batch and their counts add up to what the clean topics hold
// and the metrics say, while read_uncommitted shows the aborted record
// was written.
func TestAbortedBatchLeavesNoAuditRecord(t *testing.T) {
	n := topology.DefaultNames()
	topics := []string{n.Raw, n.Quarantine, n.Audit}
	for _, p := range purpose.All {
		topics = append(topics, n.Clean(p))
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	cfg, _ := config.Load()
	cfg.Kafka, cfg.Schemas = conn, singleObject
	keys, _ := pseudonym.GenerateKeyring(purpose.Names(), "test")
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pp, err := wiring.BuildPrivacy(ctx, cfg, wiring.Deps{Redis: rdb, Registry: reg, Keys: keys, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var subs []string
	var crs []consent.Record
	for i := range 20 {
		if r, ok := synth.Consent(i, now); ok {
			subs, crs = append(subs, synth.SubjectID(i)), append(crs, r)
		}
	}
	if err := pp.Store.PutMany(ctx, subs, crs); err != nil {
		t.Fatal(err)
	}
	pp.Store.MarkLoaded(ctx)
	enc, _ := producer.NewEncoder()
	gen := synth.New(3, 20, now)
	var in []*kgo.Record
	for i := range 300 {
		ev := gen.Event(i)
		r, err := enc.Record(n.Raw, &ev)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, r)
	}
	cl, _ := conn.NewClient()
	defer cl.Close()
	if err := kafkaio.ProduceAll(ctx, cl, in); err != nil {
		t.Fatal(err)
	}
	proc := &staleOnce{Processor: pp.Processor}
	proc.stale.Store(4) // three redos before producing, then stale after it: one abort
	rc := wiring.RunnerConfig(cfg, cfg.Names.GroupID, n.Raw, slog.New(slog.DiscardHandler))
	rc.Workers = 1
	rn, err := runner.New(rc, proc)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rn.Run(rctx); close(done) }()
	for rn.Committed() < uint64(len(in)) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if rn.Committed() != uint64(len(in)) {
		t.Fatalf("committed %d of %d", rn.Committed(), len(in))
	}
	committed, err := kafkaio.ReadAll(ctx, conn, n.Audit)
	if err != nil {
		t.Fatal(err)
	}
	uncl, _ := conn.NewClient(kgo.ConsumeTopics(n.Audit), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	defer uncl.Close()
	var uncommitted int
	for uncommitted <= len(committed) && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		uncommitted += uncl.PollFetches(pctx).NumRecords()
		pcancel()
	}
	if uncommitted <= len(committed) {
		t.Fatalf("read_uncommitted sees %d audit records, read_committed %d: the abort wrote none, the test proves nothing", uncommitted, len(committed))
	}
	events := 0
	published := map[string]int{}
	for _, r := range committed {
		rec, err := audit.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		events += rec.Batch.Events
		for p, pc := range rec.Batch.Purposes {
			published[p] += pc.Published
		}
	}
	tally, _ := privacy.ReadTally(reg)
	if events != len(in) || tally.EventsIn != len(in) {
		t.Fatalf("committed audit records count %d events, metrics %d, produced %d", events, tally.EventsIn, len(in))
	}
	clean, err := kafkaio.ReadAll(ctx, conn, topics[3:]...)
	if err != nil {
		t.Fatal(err)
	}
	onTopic := map[string]int{}
	for _, r := range clean {
		for _, p := range purpose.All {
			if r.Topic == n.Clean(p) {
				onTopic[p.String()]++
			}
		}
	}
	for _, p := range purpose.Names() {
		if published[p] != tally.Published[p] || published[p] != onTopic[p] {
			t.Errorf("%s: audit says %d published, metrics %d, topic holds %d", p, published[p], tally.Published[p], onTopic[p])
		}
	}
	t.Logf("%d committed audit records (%d written, the aborted included) for %d events", len(committed), uncommitted, events)
}
