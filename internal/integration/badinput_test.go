package integration

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
)

// startObserved runs a privacy replica the way 'pipeline run privacy' does
// (invalidation follower, output limits from the real topics, runner
// metrics, abort alerting) and returns it with its stop function.
func (r *rig) startObserved(ctx context.Context) (*runner.Runner, *runner.Metrics, func()) {
	r.t.Helper()
	rm := runner.NewMetrics(r.reg)
	rc := wiring.RunnerConfig(r.cfg, r.cfg.Names.GroupID, r.cfg.Names.RawTopic, slog.New(slog.NewJSONHandler(r.logs, nil)))
	rc.MaxPollRecords, rc.Metrics, rc.AbortAlertAfter = 2000, rm, 5
	rn, err := runner.New(rc, r.pp.Processor)
	if err != nil {
		r.t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	go consentredis.FollowInvalidations(rctx, r.pp.Store, r.pp.Cache, nil)
	go wiring.FollowLimits(rctx, r.adm, r.pp, 200*time.Millisecond, nil)
	done := make(chan struct{})
	go func() { rn.Run(rctx); close(done) }()
	stop := func() { cancel(); <-done }
	r.t.Cleanup(stop)
	return rn, rm, stop
}

// TestBadInputNeverStallsOnRealKafka is the bad-input run of issue 10 on
// the real broker: right after start (the consent cache was just fully
// invalidated) a poll made only of bad records, one non-Avro record per
// partition; a producer with an unknown fingerprint; every SPEC 6 kind of
// bad input; and a valid event with a 2 MiB field, zstd-compressed so the
// broker accepts it, larger than the quarantine topic takes. Good events
// flow around them. Every offset must end published, denied or
// quarantined, in bounded time, with no repeating abort and no stall; the
// big record is quarantined as a reference.
func TestBadInputNeverStallsOnRealKafka(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	// The quarantine topic takes less than the big record (its real
	// max.message.bytes decides, read by FollowLimits).
	const quarantineMax = 512 << 10
	if _, err := r.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes",
		Value: kadm.StringPtr(fmt.Sprint(quarantineMax))}}, r.cfg.Names.QuarantineTopic); err != nil {
		t.Fatal(err)
	}
	r.grantAll(ctx, 50, now)
	rn, rm, stop := r.startObserved(ctx)
	defer stop()
	waitUntil(t, "the replica owns partitions", time.Minute, func() bool { return rn.Assigned() > 0 })
	waitUntil(t, "the limits are read from the topics", time.Minute, func() bool {
		return r.pp.Processor.OutputLimits().Quarantine == quarantineMax
	})

	manual, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer manual.Close()
	produced := 0
	send := func(recs ...*kgo.Record) {
		t.Helper()
		if err := kafkaio.ProduceAll(ctx, manual, recs); err != nil {
			t.Fatal(err)
		}
		produced += len(recs)
	}
	// 1. A poll of only bad records right after start: one per partition.
	var onlyBad []*kgo.Record
	for p := int32(0); p < 4; p++ {
		onlyBad = append(onlyBad, &kgo.Record{Topic: r.cfg.Names.RawTopic, Partition: p, Value: []byte("not avro at all")})
	}
	t0 := time.Now()
	send(onlyBad...)
	r.waitCaughtUp(30 * time.Second)
	t.Logf("integration: the bad-only poll right after start committed in %s", time.Since(t0).Round(time.Millisecond))
	if rn.Batches() == 0 {
		t.Fatal("no transaction committed the bad-only poll")
	}

	// 2. A producer with an unknown fingerprint, 12 events.
	enc, _ := producer.NewEncoder()
	gen := synth.New(7, 50, now)
	var unknownFP []*kgo.Record
	for i := 0; i < 12; i++ {
		ev := gen.Event(i)
		b, err := enc.AppendEncoded(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		b[4] ^= 0x5a
		unknownFP = append(unknownFP, &kgo.Record{Topic: r.cfg.Names.RawTopic, Partition: int32(i % 4), Value: b})
	}
	send(unknownFP...)

	// 3. Every SPEC 6 kind, good events between them, and the big record.
	var mixed []*kgo.Record
	wantQuarantine := map[string]int{"not_avro": 4, "unknown_schema": 12}
	for i := 0; i < 14; i++ {
		b, reason := synth.Malformed(i, enc, now)
		wantQuarantine[reason]++
		mixed = append(mixed, &kgo.Record{Topic: r.cfg.Names.RawTopic, Partition: int32(i % 4), Value: b})
	}
	big := gen.EventFor(999, 3)
	big.Message = strings.Repeat("a long and very repetitive support message ", (2<<20)/43+1)
	bigVal, err := enc.AppendEncoded(nil, &big)
	if err != nil {
		t.Fatal(err)
	}
	wantQuarantine["oversized"]++
	mixed = append(mixed, &kgo.Record{Topic: r.cfg.Names.RawTopic, Partition: 1, Value: bigVal})
	for i := 0; i < 2000; i++ {
		ev := gen.Event(1000 + i)
		ev.Jurisdiction, ev.GPC = "gdpr", false
		b, err := enc.AppendEncoded(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		mixed = append(mixed, &kgo.Record{Topic: r.cfg.Names.RawTopic, Partition: int32(i % 4), Key: []byte(ev.SubjectID), Value: b})
	}
	start := time.Now()
	send(mixed...)
	r.waitCaughtUp(time.Minute)
	t.Logf("integration: %d bad-input records and 2000 good events processed in %s; %d transactions committed, %d aborted",
		produced-2000, time.Since(start).Round(time.Millisecond), rn.Batches(), rn.Aborted())

	// No stall, no silent abort loop.
	if n, reason := rn.AbortStreak(); n != 0 {
		t.Fatalf("abort streak of %d (%s) at the end", n, reason)
	}
	if rn.Aborted() > 3 {
		t.Fatalf("%d transactions aborted for %d records; the bad input made the runner loop", rn.Aborted(), produced)
	}
	if !rn.Ready() {
		t.Fatal("not ready after the bad-input run")
	}
	_ = rm
	// Every offset accounted for.
	tally, err := privacy.ReadTally(r.reg)
	if err != nil {
		t.Fatal(err)
	}
	if tally.EventsIn != produced {
		t.Fatalf("events_in %d, produced %d", tally.EventsIn, produced)
	}
	if err := tally.Check(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tally.Quarantined) != fmt.Sprint(wantQuarantine) {
		t.Fatalf("quarantined %v, want %v", tally.Quarantined, wantQuarantine)
	}
	for _, p := range purpose.All {
		if tally.Published[p.String()] != 2000 {
			t.Fatalf("%s: %d published, want the 2000 granted good events", p, tally.Published[p.String()])
		}
	}
	// The big record is a reference on the quarantine topic; the others keep their bytes.
	refs := 0
	for _, q := range r.read(r.cfg.Names.QuarantineTopic) {
		h := map[string]string{}
		for _, hd := range q.Headers {
			h[hd.Key] = string(hd.Value)
		}
		if h[privacy.HeaderQuarantineForm] == "reference" {
			refs++
			if len(q.Value) != 0 || h[privacy.HeaderSourceSize] != fmt.Sprint(len(bigVal)) || h[privacy.HeaderSourcePartition] != "1" ||
				h[privacy.HeaderQuarantineReason] != "oversized" || h[privacy.HeaderSourceTopic] != r.cfg.Names.RawTopic || h[privacy.HeaderSourceOffset] == "" {
				t.Fatalf("reference record: %d bytes, headers %v", len(q.Value), h)
			}
		} else if len(q.Value) == 0 {
			t.Fatalf("a small bad record lost its bytes: %v", h)
		}
	}
	if refs != 1 {
		t.Fatalf("%d reference records, want 1", refs)
	}
	if s := r.snapshot(); s["pipeline_quarantined_as_reference_total"] != 1 {
		t.Fatalf("quarantined_as_reference_total %v", s["pipeline_quarantined_as_reference_total"])
	}
}

// TestClaimedJurisdictionNeverLoosensOnRealKafka is defects 4 and 5 of
// issue 10 end to end, through the consent log and consent-sync: events
// that claim "ccpa" for subjects without a stored record, or whose record
// says gdpr, publish nothing; a subject whose stored record carries only
// the jurisdiction ccpa (a subject-level record, as a bulk import writes
// it) gets the opt-out default; a GPC signal recorded that way denies
// marketing and sharing, and each application is counted.
func TestClaimedJurisdictionNeverLoosensOnRealKafka(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now().Add(-time.Minute)
	profile := func(sub string, j consent.Jurisdiction, gpc consent.GPCValue) consentlog.Change {
		return consentlog.Change{SubjectID: sub, Purpose: consentlog.SubjectLevel, Jurisdiction: j, GPC: gpc,
			Source: consentlog.Import, PolicyVersion: consentlog.DefaultProfilePolicyVersion,
			Timestamp: now.Truncate(time.Millisecond), ReceiptID: consentlog.NewReceiptID()}
	}
	r.publishConsent(ctx,
		profile("subject-gdpr", consent.GDPR, consent.GPCNotGiven),
		profile("subject-ccpa-only", consent.CCPA, consent.GPCNotGiven),
		profile("subject-ccpa-gpc", consent.CCPA, consent.GPCOn))
	r.startSync(false)
	waitUntil(t, "consent-sync stored the three subject-level records", time.Minute, func() bool {
		out := make([]consent.Lookup, 3)
		err := r.pp.Store.Lookup(ctx, []string{"subject-gdpr", "subject-ccpa-only", "subject-ccpa-gpc"}, out)
		return err == nil && out[0].Found && out[1].Found && out[2].Found && out[2].Record.GPC
	})
	_, stop := r.start()
	defer stop()
	gen := synth.New(11, 10, now)
	var evs []producer.Event
	for i, sub := range []string{"subject-never-seen", "subject-gdpr", "subject-ccpa-only", "subject-ccpa-gpc"} {
		for k := 0; k < 25; k++ {
			ev := gen.EventFor(i*100+k, i)
			ev.SubjectID, ev.Jurisdiction, ev.GPC = sub, "ccpa", false
			evs = append(evs, ev)
		}
	}
	r.produce(ctx, evs)
	r.waitCaughtUp(time.Minute)
	counts := r.checkAccounting(len(evs))
	for _, p := range purpose.All {
		want := 25 // subject-ccpa-only
		if p != purpose.Marketing && p != purpose.ThirdPartySharing {
			want += 25 // subject-ccpa-gpc
		}
		if got := counts[wiring.CleanTopic(r.cfg, p)]; got != want {
			t.Errorf("%s: %d clean records, want %d (only subjects whose stored record says ccpa)", p, got, want)
		}
	}
	s := r.snapshot()
	if n := s["pipeline_denied_total{purpose=analytics,reason=unknown_subject}"]; n != 25 {
		t.Errorf("unknown_subject denials %v, want 25", n)
	}
	if n := s["pipeline_gpc_applied_total{purpose=marketing,source=record}"]; n != 25 {
		t.Errorf("gpc applied from the record %v, want 25", n)
	}
}
