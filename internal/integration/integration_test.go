package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/topology"
)

// TestServicesAreReal prints what the suite runs against, and checks that it
// is a real Apache Kafka broker and a real redis-server.
func TestServicesAreReal(t *testing.T) {
	brokers, raddr := services(t)
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vs, err := r.adm.ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	guess := ""
	vs.Each(func(v kadm.BrokerApiVersions) { guess = v.VersionGuess() })
	info, err := r.rdb.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	redisVersion := ""
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			redisVersion = v
		}
	}
	if redisVersion == "" {
		t.Fatal("not a redis-server: INFO has no redis_version")
	}
	t.Logf("integration: Apache Kafka %s (broker API guess %s) at %v; redis-server %s at %s",
		os.Getenv("PIPELINE_TEST_KAFKA_VERSION"), guess, brokers, redisVersion, raddr)
}

func TestTopologyApplyIsIdempotent(t *testing.T) {
	r := newRig(t) // newRig applied the topology once
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := topology.Apply(ctx, r.adm, r.topo)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.NothingChanged() || len(rep.Drift) != 0 || len(rep.Unchanged) != len(r.topo.Topics) {
		t.Fatalf("second apply changed something:\n%s", rep)
	}
	if !strings.Contains(rep.String(), "nothing changed") {
		t.Fatalf("report does not say so: %s", rep)
	}
	// Drift it can fix (a config) and drift it cannot (more partitions).
	raw := r.cfg.Names.RawTopic
	if _, err := r.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")}}, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := r.adm.UpdatePartitions(ctx, 6, raw); err != nil {
		t.Fatal(err)
	}
	rep, err = topology.Apply(ctx, r.adm, r.topo)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changed) != 1 || !strings.Contains(rep.Changed[0].What, "retention.ms") || len(rep.Drift) != 1 || !strings.Contains(rep.Drift[0].What, "6 partitions") {
		t.Fatalf("drift not handled:\n%s", rep)
	}
	t.Logf("apply after drift:\n%s", rep)
}

// TestCanaryAndAccounting runs the privacy processor on a real broker and
// Redis with canary events, synthetic traffic and malformed records; no
// marker may appear in any clean topic (except fields the policy keeps),
// quarantine header or key, audit, key or erasure topic, log line or
// metric, and every input is accounted for.
func TestCanaryAndAccounting(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	var subs []string
	var recs []consent.Record
	for i := 0; i < 400; i++ {
		if rec, ok := synth.Consent(i, now); ok {
			subs, recs = append(subs, synth.SubjectID(i)), append(recs, rec)
		}
	}
	var all consent.Record
	for _, p := range purpose.All {
		all.Apply(p, consent.Granted, consent.GDPR, now.Add(-time.Minute).UnixMilli())
	}
	const canarySubject = "canary-subject-it-zq"
	subs, recs = append(subs, canarySubject), append(recs, all)
	if err := r.pp.Store.PutMany(ctx, subs, recs); err != nil {
		t.Fatal(err)
	}
	var evs []producer.Event
	var markers []pipelinetest.Marker
	for i := 0; i < 20; i++ {
		ev, m := pipelinetest.CanaryEvent(100+i, canarySubject, now)
		evs, markers = append(evs, ev), append(markers, m...)
	}
	gen := synth.New(21, 400, now)
	for i := 0; i < 5000; i++ {
		evs = append(evs, gen.Event(i))
	}
	var bad [][]byte
	for i := 0; i < 14; i++ {
		b, _ := synth.Malformed(i, r.enc, now)
		bad = append(bad, b)
	}
	// A canary that is quarantined (far-future timestamp): its headers must not leak.
	qev, qm := pipelinetest.CanaryEvent(999, canarySubject, now.Add(72*time.Hour))
	n := producer.Event(qev)
	qb, _ := r.enc.AppendNative(nil, n.Native(nil))
	bad = append(bad, qb)
	markers = append(markers, qm...)

	_, stop := r.start()
	r.produce(ctx, evs, bad...)
	r.waitCaughtUp(2 * time.Minute)
	stop()
	r.checkAccounting(len(evs) + len(bad))

	kept := map[string]map[string]bool{}
	for _, p := range purpose.All {
		kept[wiring.CleanTopic(r.cfg, p)] = map[string]bool{}
		for path, rule := range r.pp.Policy.Purposes[p.String()].Fields {
			if rule.Action == policy.Keep {
				kept[wiring.CleanTopic(r.cfg, p)][path] = true
			}
		}
	}
	leaks := 0
	scan := func(rec *kgo.Record, withValue bool) {
		b := append([]byte{}, rec.Key...)
		if withValue {
			b = append(b, rec.Value...)
		}
		for _, h := range rec.Headers {
			b = append(b, h.Key...)
			b = append(b, h.Value...)
		}
		for _, m := range pipelinetest.Find(b, markers) {
			if !withValue || !kept[rec.Topic][m.Field] {
				leaks++
				t.Errorf("marker of %s leaked into %s", m.Field, rec.Topic)
			}
		}
	}
	for _, rec := range r.read(r.cleanTopics()...) {
		scan(rec, true)
	}
	quarantined := r.read(r.cfg.Names.QuarantineTopic)
	if len(quarantined) != len(bad) {
		t.Fatalf("quarantine holds %d records, %d were bad", len(quarantined), len(bad))
	}
	for _, rec := range quarantined {
		// The value is the original raw record (restricted topic, nothing
		// lost); key and headers are visible to operators and must be clean.
		scan(rec, false)
	}
	// The pipeline's own topics that the processor writes or could write
	// (audit summaries, data keys, erasure notices) hold no marker at all.
	audits := 0
	for _, rec := range r.read(r.cfg.Names.AuditTopic, r.cfg.Names.KeysTopic, r.cfg.Names.ErasuresTopic) {
		if rec.Topic == r.cfg.Names.AuditTopic {
			audits++
		}
		scan(rec, true)
	}
	if audits == 0 {
		t.Error("no audit record: the scan of privacy.audit proved nothing")
	}
	if found := pipelinetest.Find(r.logs.Bytes(), markers); len(found) > 0 {
		t.Errorf("logs leak %v", found)
	}
	body := pipelinetest.MetricsText(t, r.reg)
	if found := pipelinetest.Find([]byte(body), markers); len(found) > 0 {
		t.Errorf("metrics leak %v", found)
	}
	t.Logf("canary: %d markers scanned in %d clean topics, quarantine, audit (%d records), keys, erasures, logs and metrics: %d leaks", len(markers), purpose.Count, audits, leaks)
}

// TestConsentChangeTakesEffect withdraws consent in Redis mid-run: after the
// cache TTL, no later event of that subject reaches that purpose.
func TestConsentChangeTakesEffect(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	const sub = "subject-withdraws"
	var rec consent.Record
	for _, p := range purpose.All {
		rec.Apply(p, consent.Granted, consent.GDPR, now.Add(-time.Hour).UnixMilli())
	}
	if err := r.pp.Store.Put(ctx, sub, &rec); err != nil {
		t.Fatal(err)
	}
	_, stop := r.start()
	defer stop()
	gen := synth.New(3, 10, now)
	batch := func(tag string, n int) []producer.Event {
		var evs []producer.Event
		for i := 0; i < n; i++ {
			ev := gen.EventFor(i, 1)
			ev.SubjectID, ev.Jurisdiction, ev.EventID = sub, "gdpr", tag+"-"+ev.EventID
			evs = append(evs, ev)
		}
		return evs
	}
	r.produce(ctx, batch("before", 50))
	r.waitCaughtUp(time.Minute)
	rec.Apply(purpose.Marketing, consent.Withdrawn, consent.GDPR, time.Now().UnixMilli())
	if err := r.pp.Store.Put(ctx, sub, &rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(r.cfg.Consent.CacheTTL + 100*time.Millisecond)
	r.produce(ctx, batch("after", 50))
	r.waitCaughtUp(time.Minute)
	counts := map[string]int{}
	for _, p := range purpose.All {
		for _, rec := range r.read(wiring.CleanTopic(r.cfg, p)) {
			counts[p.String()]++
			for _, h := range rec.Headers {
				if h.Key == processors.HeaderConsentBasis && string(h.Value) != "granted" {
					t.Errorf("%s published on basis %s", p, h.Value)
				}
			}
		}
	}
	if counts["marketing"] != 50 || counts["analytics"] != 100 {
		t.Fatalf("after withdrawal marketing must stop: %v", counts)
	}
	s := r.snapshot()
	if s["pipeline_denied_total{purpose=marketing,reason=withdrawn}"] != 50 {
		t.Fatalf("withdrawn denials %v", s["pipeline_denied_total{purpose=marketing,reason=withdrawn}"])
	}
}

// TestRedisStoppedMidRun stops the real redis-server while events flow: the
// processor pauses (not ready, nothing committed or published without a
// decision), and resumes when Redis is back, losing nothing.
func TestRedisStoppedMidRun(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	seed := func() {
		var subs []string
		var recs []consent.Record
		for i := 0; i < 200; i++ {
			if rec, ok := synth.Consent(i, now); ok {
				subs, recs = append(subs, synth.SubjectID(i)), append(recs, rec)
			}
		}
		if err := r.pp.Store.PutMany(ctx, subs, recs); err != nil {
			t.Fatal(err)
		}
		if err := r.pp.Store.MarkLoaded(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seed()
	rn, stop := r.start()
	defer stop()
	gen := synth.New(8, 200, now)
	var first, second []producer.Event
	for i := 0; i < 2000; i++ {
		first = append(first, gen.Event(i))
		second = append(second, gen.Event(10000+i))
	}
	r.produce(ctx, first)
	r.waitCaughtUp(time.Minute)
	before := r.read(r.cleanTopics()...)

	servicesCmd(t, "stop", "redis")
	restarted := false
	defer func() {
		if !restarted {
			servicesCmd(t, "start", "redis")
		}
	}()
	r.pp.Cache.InvalidateAll() // no cached answers: every decision needs Redis
	committedBefore := rn.Committed()
	r.produce(ctx, second)
	deadline := time.Now().Add(10 * time.Second)
	for r.pp.Processor.Ready() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if r.pp.Processor.Ready() {
		t.Fatal("processor still ready with Redis down")
	}
	time.Sleep(2 * time.Second)
	if got := len(r.read(r.cleanTopics()...)); got != len(before) {
		t.Fatalf("%d records published while Redis was down", got-len(before))
	}
	if rn.Committed() != committedBefore {
		t.Fatal("offsets committed while Redis was down")
	}
	if s := r.snapshot(); s["pipeline_consent_store_errors_total"] == 0 || s["pipeline_consent_paused"] != 1 {
		t.Fatalf("pause not visible in metrics: errors %v paused %v", s["pipeline_consent_store_errors_total"], s["pipeline_consent_paused"])
	}
	servicesCmd(t, "start", "redis")
	restarted = true
	// Redis came back empty (no persistence): without the loaded marker the
	// processor stays paused rather than treat everyone as unknown.
	time.Sleep(time.Second)
	if r.pp.Processor.Ready() || rn.Committed() != committedBefore {
		t.Fatal("processed against an empty consent store")
	}
	if got := len(r.read(r.cleanTopics()...)); got != len(before) {
		t.Fatalf("%d records published against an empty consent store", got-len(before))
	}
	seed() // restore consent and the marker (consent-sync --rebuild in production)
	r.waitCaughtUp(2 * time.Minute)
	if !r.pp.Processor.Ready() {
		t.Fatal("not ready after Redis returned")
	}
	r.checkAccounting(len(first) + len(second))
}

// TestProcessorRestartResumes stops a replica mid-run and starts another:
// it resumes from the committed offsets and every input is accounted for,
// with no clean record lost or duplicated.
func TestProcessorRestartResumes(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	r.grantAll(ctx, 100, now)
	gen := synth.New(4, 100, now)
	var evs []producer.Event
	for i := 0; i < 20000; i++ {
		ev := gen.Event(i)
		ev.Jurisdiction, ev.GPC = "gdpr", false
		evs = append(evs, ev)
	}
	r.produce(ctx, evs)
	rn1, stop1 := r.start()
	deadline := time.Now().Add(time.Minute)
	for rn1.Committed() < 3000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop1() // mid-run
	mid := rn1.Committed()
	if mid == 0 || mid >= uint64(len(evs)) {
		t.Fatalf("stopped at %d of %d: not mid-run", mid, len(evs))
	}
	_, stop2 := r.start()
	r.waitCaughtUp(2 * time.Minute)
	stop2()
	t.Logf("first replica committed %d of %d events before it stopped", mid, len(evs))
	key, _ := r.keys.Active(purpose.Analytics.String())
	_ = pseudonym.New(key)
	seen := map[string]int{}
	for _, rec := range r.read(wiring.CleanTopic(r.cfg, purpose.Analytics)) {
		seen[string(rec.Value[10:])]++
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	if len(seen) != len(evs) || dups != 0 {
		t.Fatalf("analytics: %d distinct records for %d events, %d duplicates", len(seen), len(evs), dups)
	}
	r.checkAccounting(len(evs))
}

// TestScaleOutAndIn runs two replicas, then stops one: readiness follows
// assignment, the survivor takes every partition, and every input is
// published exactly once.
func TestScaleOutAndIn(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	r.grantAll(ctx, 100, now)
	a, stopA := r.start()
	b, stopB := r.start()
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting: %s (assigned a=%d b=%d)", what, a.Assigned(), b.Assigned())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("both replicas own partitions", func() bool { return a.Ready() && b.Ready() && a.Assigned()+b.Assigned() == 4 })
	gen := synth.New(6, 100, now)
	var evs []producer.Event
	for i := 0; i < 10000; i++ {
		ev := gen.Event(i)
		ev.Jurisdiction, ev.GPC = "gdpr", false
		evs = append(evs, ev)
	}
	r.produce(ctx, evs[:5000])
	stopB() // scale in: B ends its transaction and leaves the group
	waitFor("the survivor owns every partition", func() bool { return a.Assigned() == 4 && !b.Ready() })
	r.produce(ctx, evs[5000:])
	r.waitCaughtUp(2 * time.Minute)
	stopA()
	seen := map[string]int{}
	for _, rec := range r.read(wiring.CleanTopic(r.cfg, purpose.Analytics)) {
		seen[string(rec.Value)]++
	}
	if len(seen) != len(evs) {
		t.Fatalf("analytics holds %d distinct records for %d events", len(seen), len(evs))
	}
	for _, n := range seen {
		if n != 1 {
			t.Fatal("duplicate clean record")
		}
	}
	r.checkAccounting(len(evs))
}

// grantAll stores explicit consent for every purpose for subjects 0..n-1.
func (r *rig) grantAll(ctx context.Context, n int, now time.Time) {
	r.t.Helper()
	var all consent.Record
	for _, p := range purpose.All {
		all.Apply(p, consent.Granted, consent.GDPR, now.Add(-time.Minute).UnixMilli())
	}
	subs := make([]string, n)
	recs := make([]consent.Record, n)
	for i := range subs {
		subs[i], recs[i] = synth.SubjectID(i), all
	}
	if err := r.pp.Store.PutMany(ctx, subs, recs); err != nil {
		r.t.Fatal(err)
	}
}
