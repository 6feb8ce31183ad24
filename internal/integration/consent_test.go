package integration

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/purpose"
	"github.com/privacy-pipeline/pipeline/internal/synth"
	"github.com/privacy-pipeline/pipeline/internal/wiring"
	"github.com/privacy-pipeline/pipeline/producer"
)

func (r *rig) consentTopic() string { return r.topo.Topics[1].Name }

// publishConsent writes changes to the rig's consent topic, as the API does.
func (r *rig) publishConsent(ctx context.Context, changes ...consentlog.Change) {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cfg.KafkaBrokers...), kgo.RecordPartitioner(consentlog.Partitioner()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range changes {
		v, err := consentlog.Encode(&changes[i])
		if err != nil {
			r.t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: r.consentTopic(), Key: consentlog.Key(changes[i].SubjectID, changes[i].Purpose), Value: v})
	}
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		r.t.Fatal(err)
	}
}

// startSync runs a consent sync for the rig until the test ends.
func (r *rig) startSync(rebuild bool) *consentsync.Syncer {
	s, err := consentsync.New(consentsync.Config{Brokers: r.cfg.KafkaBrokers, Topic: r.consentTopic(), Group: r.cfg.GroupID + ".sync", Store: r.pp.Store})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, rebuild); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
	return s
}

func ch(sub string, p purpose.Purpose, st consent.State, j consent.Jurisdiction, at time.Time) consentlog.Change {
	return consentlog.Change{SubjectID: sub, Purpose: p, State: st, Jurisdiction: j, Source: consentlog.WebForm,
		PolicyVersion: "it", Timestamp: at.Truncate(time.Millisecond), ReceiptID: consentlog.NewReceiptID()}
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsentSyncOrderingUnderReplays writes changes out of order and
// duplicated to the consent topic: Redis ends with the newest per purpose,
// and a rebuild from the topic gives the same state.
func TestConsentSyncOrderingUnderReplays(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	newest := ch("s1", purpose.Analytics, consent.Withdrawn, consent.GDPR, t0.Add(2*time.Minute))
	middle := ch("s1", purpose.Analytics, consent.Denied, consent.GDPR, t0.Add(time.Minute))
	oldest := ch("s1", purpose.Analytics, consent.Granted, consent.GDPR, t0)
	other := ch("s1", purpose.Marketing, consent.Granted, consent.GDPR, t0)
	r.publishConsent(ctx, newest, oldest, other, middle, newest, oldest)
	s := r.startSync(true)
	waitUntil(t, "sync applied", 30*time.Second, func() bool { return s.Ready() && s.Applied() >= 2 })
	check := func(when string) {
		out := make([]consent.Lookup, 1)
		if err := r.pp.Store.Lookup(ctx, []string{"s1"}, out); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		p := out[0].Record.Purposes
		if p[purpose.Analytics].State != consent.Withdrawn || p[purpose.Marketing].State != consent.Granted {
			t.Fatalf("%s: analytics %s marketing %s", when, p[purpose.Analytics].State, p[purpose.Marketing].State)
		}
	}
	time.Sleep(500 * time.Millisecond)
	check("after sync")
	if s.Applied() != 2 {
		t.Fatalf("applied %d changes, want 2 (the rest are older or duplicates)", s.Applied())
	}
	// Replay the whole topic (rebuild) after more duplicates arrived.
	r.publishConsent(ctx, middle, oldest)
	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	check("after rebuild")
}

// TestFlushAllDuringRunRebuilds flushes Redis while events flow: the
// processors pause (no loaded marker), consent-sync rebuilds from the topic,
// and no record is published in between without a decision on the real
// consent: subjects who withdrew under CCPA (an empty store would allow
// them by default) never appear, granted GDPR subjects (an empty store
// would deny them) all do, exactly once.
func TestFlushAllDuringRunRebuilds(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	var changes []consentlog.Change
	for i := 0; i < 100; i++ {
		for _, p := range purpose.All {
			if i%2 == 0 {
				changes = append(changes, ch(synth.SubjectID(i), p, consent.Granted, consent.GDPR, now.Add(-time.Hour)))
			} else {
				changes = append(changes, ch(synth.SubjectID(i), p, consent.Withdrawn, consent.CCPA, now.Add(-time.Hour)))
			}
		}
	}
	r.pp.Store.Client().Del(ctx, r.pp.Store.MarkerKey())
	r.publishConsent(ctx, changes...)
	s := r.startSync(false) // no marker: it rebuilds by itself
	waitUntil(t, "initial load", 30*time.Second, s.Ready)
	_, stop := r.start()
	defer stop()
	gen := synth.New(5, 100, now)
	var evs []producer.Event
	produce := func(n int) {
		var batch []producer.Event
		for i := 0; i < n; i++ {
			ev := gen.Event(len(evs) + i)
			ev.GPC = false
			if ev.Jurisdiction = "gdpr"; (ev.SubjectID[len(ev.SubjectID)-1]-'0')%2 == 1 {
				ev.Jurisdiction = "ccpa"
			}
			batch = append(batch, ev)
		}
		evs = append(evs, batch...)
		r.produce(ctx, batch)
	}
	produce(3000)
	r.waitCaughtUp(time.Minute)
	if err := r.pp.Store.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	produce(3000) // flows while Redis is empty and being rebuilt
	waitUntil(t, "rebuild after FLUSHALL", 30*time.Second, func() bool {
		n, _ := r.pp.Store.Client().Exists(ctx, r.pp.Store.MarkerKey()).Result()
		return n == 1
	})
	produce(3000)
	r.waitCaughtUp(2 * time.Minute)
	key, _ := r.keys.Active(purpose.Analytics.String())
	ps := pseudonym.New(key)
	granted := map[string]bool{}
	for i := 0; i < 100; i += 2 {
		granted[string(ps.Append(nil, "subject_id", synth.SubjectID(i)))] = true
	}
	wantPub := 0
	for _, ev := range evs {
		if granted[string(ps.Append(nil, "subject_id", ev.SubjectID))] {
			wantPub++
		}
	}
	recs := r.read(r.cfg.CleanTopic(purpose.Analytics))
	seen := map[string]bool{}
	for _, rec := range recs {
		if !granted[string(rec.Key)] {
			t.Fatal("published an event of a subject who withdrew: decided without the real consent")
		}
		if seen[string(rec.Value)] {
			t.Fatal("duplicate")
		}
		seen[string(rec.Value)] = true
	}
	if len(recs) != wantPub {
		t.Fatalf("published %d analytics records, want %d (every granted subject's event)", len(recs), wantPub)
	}
	r.checkAccounting(len(evs))
}

// TestInvalidationReachesTwoProcessors: two processor instances with a long
// cache TTL; a withdrawal applied by consent-sync reaches both caches.
func TestInvalidationReachesTwoProcessors(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	var grants []consentlog.Change
	for _, p := range purpose.All {
		grants = append(grants, ch("s-inv", p, consent.Granted, consent.GDPR, now.Add(-time.Hour)))
	}
	r.publishConsent(ctx, grants...)
	s := r.startSync(true)
	waitUntil(t, "initial load", 30*time.Second, func() bool { return s.Ready() && s.Applied() == uint64(len(grants)) })
	cfg := r.cfg
	cfg.ConsentCacheTTL = time.Hour // only an invalidation can refresh an entry
	var caches []*consent.Cache
	for i := 0; i < 2; i++ {
		pp, err := wiring.BuildPrivacy(cfg, wiring.Deps{Redis: r.rdb, Registry: newRegistry(), Keys: r.keys})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		go wiring.FollowInvalidations(cctx, pp.Store, pp.Cache, nil)
		caches = append(caches, pp.Cache)
	}
	decide := func(c *consent.Cache) consent.Decision {
		out := make([]consent.Lookup, 1)
		var sc consent.LookupScratch
		if _, err := c.Lookup(ctx, []string{"s-inv"}, out, &sc); err != nil {
			t.Fatal(err)
		}
		return out[0].Decide(consent.GDPR, false, purpose.Marketing)
	}
	time.Sleep(300 * time.Millisecond) // subscriptions established
	for _, c := range caches {
		if !decide(c).Allowed {
			t.Fatal("granted subject denied")
		}
	}
	start := time.Now()
	r.publishConsent(ctx, ch("s-inv", purpose.Marketing, consent.Withdrawn, consent.GDPR, time.Now()))
	for i, c := range caches {
		waitUntil(t, "withdrawal reaches processor cache", 10*time.Second, func() bool { return !decide(c).Allowed })
		t.Logf("processor %d sees the withdrawal %v after it was written to the topic", i, time.Since(start).Round(time.Millisecond))
	}
}
