package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
)

func (r *rig) consentTopic() string { return r.topo.Topics[1].Name }

// publishConsent writes changes to the rig's consent topic, as the API does
// (consentlog.Records: with the subject-level companions).
func (r *rig) publishConsent(ctx context.Context, changes ...consentlog.Change) {
	r.t.Helper()
	cl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	recs, err := consentlog.Records(r.consentTopic(), changes...)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		r.t.Fatal(err)
	}
}

// startAPI serves the consent API on the rig's consent topic and store
// until the test ends.
func (r *rig) startAPI() *httptest.Server {
	r.t.Helper()
	cl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	open, err := httpauth.New(httpauth.Config{}) // the engine's tests; secured_commands_test.go authenticates
	if err != nil {
		r.t.Fatal(err)
	}
	api, err := consentapi.New(consentapi.Config{Producer: cl, Topic: r.consentTopic(), Store: r.pp.Store, Guard: open})
	if err != nil {
		r.t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	r.t.Cleanup(srv.Close)
	return srv
}

// startSync runs a consent sync for the rig until the test ends.
func (r *rig) startSync(rebuild bool) *consentsync.Syncer {
	s, err := consentsync.New(consentsync.Config{Kafka: r.cfg.Kafka, Topic: r.consentTopic(), Group: r.cfg.Names.ConsentSyncGroup, Store: r.pp.Store})
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

func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
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
	recs := r.read(wiring.CleanTopic(r.cfg, purpose.Analytics))
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
	cfg.Consent.CacheTTL = time.Hour // only an invalidation can refresh an entry
	var caches []*consentredis.Cache
	for i := 0; i < 2; i++ {
		pp, err := wiring.BuildPrivacy(ctx, cfg, wiring.Deps{Redis: r.rdb, Registry: newRegistry(), Keys: r.keys})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		go consentredis.FollowInvalidations(cctx, pp.Store, pp.Cache, nil)
		caches = append(caches, pp.Cache)
	}
	decide := func(c *consentredis.Cache) consent.Decision {
		out := make([]consent.Lookup, 1)
		if _, err := c.Lookup(ctx, []string{"s-inv"}, out); err != nil {
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

// TestConsentLuaScriptAgreesWithGoOnRealRedis applies random sequences of
// changes (choices, jurisdictions, GPC on and off, many timestamp ties)
// through consent-sync's Lua script on the real redis-server and through
// consentlog.Change.ApplyTo: each change is applied or not alike, the
// stored record equals the Go record, shuffled orders of the same changes
// end in the same record, and stored version-1 records are upgraded alike.
func TestConsentLuaScriptAgreesWithGoOnRealRedis(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	s, err := consentsync.New(consentsync.Config{Kafka: r.cfg.Kafka, Topic: r.consentTopic(), Group: r.cfg.Names.ConsentSyncGroup, Store: r.pp.Store})
	if err != nil {
		t.Fatal(err)
	}
	store := r.pp.Store
	rng := rand.New(rand.NewPCG(20, 26))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	starts := []string{"", "1|ccpa|1|1772323200002|g:1772323200001|-:0|d:1772323200002|-:0|-:0", "1|unknown|0|0|-:0|-:0|-:0|-:0|-:0",
		"1|gdpr|0|1772323200003|w:1772323200003|g:1772323200000|-:0|-:0|g:1772323200001"}
	read := func(sub string) (string, consent.Record) {
		raw, err := store.Client().Get(ctx, store.Key(sub)).Result()
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		var rec consent.Record
		if err := consent.Decode(raw, &rec); err != nil {
			t.Fatalf("stored %q: %v", raw, err)
		}
		return raw, rec
	}
	for round := 0; round < 150; round++ {
		sub := fmt.Sprintf("lua-%d", round)
		changes := pipelinetest.RandomConsentChanges(rng, sub, 1+rng.IntN(30), t0)
		start := starts[round%len(starts)]
		var first consent.Record
		for order := 0; order < 4; order++ {
			store.Client().Del(ctx, store.Key(sub))
			var want consent.Record
			if start != "" {
				store.Client().Set(ctx, store.Key(sub), start, 0)
				consent.Decode(start, &want)
			}
			if order == 0 {
				// One change at a time: each is applied or not alike.
				for i := range changes {
					applied := changes[i].ApplyTo(&want)
					n, err := s.Apply(ctx, changes[i:i+1], nil)
					if err != nil {
						t.Fatal(err)
					}
					if (n == 1) != applied {
						t.Fatalf("round %d: %+v: the script applied %d, Go %v", round, changes[i], n, applied)
					}
				}
			} else {
				// The shuffled orders in one pipelined batch, as the sync
				// applies a poll.
				applied := 0
				for i := range changes {
					if changes[i].ApplyTo(&want) {
						applied++
					}
				}
				if n, err := s.Apply(ctx, changes, nil); err != nil || n != applied {
					t.Fatalf("round %d order %d: the script applied %d (%v), Go %d", round, order, n, err, applied)
				}
			}
			raw, got := read(sub)
			// A start that no change touched stays as it was (possibly v1).
			if got != want || (raw != string(consent.AppendEncoded(nil, &want)) && raw != start) {
				t.Fatalf("round %d order %d: redis holds %q\n got %+v\nwant %+v", round, order, raw, got, want)
			}
			if order == 0 {
				first = want
			} else if want != first {
				t.Fatalf("round %d: the order of the changes changed the record:\n got %+v\nwant %+v", round, want, first)
			}
			if n, _ := s.Apply(ctx, changes, nil); n != 0 {
				t.Fatalf("round %d: a replay applied %d changes", round, n)
			}
			rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
		}
	}
}

// TestConsentProfilesThroughAPIImportAndSync is issue 10's defects 4 and 5
// on the real broker and Redis: a CCPA business imports its customers'
// jurisdictions (rows without purpose and state) and GPC signals through
// the consent API (CSV and JSON lines), a privacy center records a
// profile with the Sec-GPC: 1 header, and consent-sync applies it all:
// every subject has a stored record (none is unknown) with jurisdiction
// ccpa and the GPC slot as imported, the API answers them, the opt-out
// default and the GPC denial follow from the stored record, and a rebuild
// from the topic, as well as the topic compacted to one record per key,
// give the same records.
func TestConsentProfilesThroughAPIImportAndSync(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	srv := r.startAPI()
	do := func(method, path, ctype, body string, header ...string) (int, string) {
		t.Helper()
		return pipelinetest.Request(t, method, srv.URL+path, ctype, body, header...)
	}
	s := r.startSync(true)
	waitUntil(t, "sync ready", 30*time.Second, s.Ready)

	old := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	// ca-0..ca-39: jurisdiction only; ca-40..ca-59: jurisdiction and GPC;
	// gpc-0..gpc-9: a GPC signal only; ca-60: a choice that records GPC.
	var csv strings.Builder
	csv.WriteString("subject_id,purpose,state,jurisdiction,source,policy_version,timestamp,gpc\n")
	for i := 0; i < 60; i++ {
		gpc := ""
		if i >= 40 {
			gpc = "true"
		}
		fmt.Fprintf(&csv, "ca-%d,,,ccpa,import,,%s,%s\n", i, old, gpc)
	}
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&csv, "gpc-%d,,,,gpc_signal,,%s,\n", i, old)
	}
	csv.WriteString("ca-60,marketing,granted,ccpa,web_form,v1,,1\n")
	csv.WriteString("bad-1,,,unknown,import,,,\n") // nothing to record
	code, body := do("POST", "/v1/consents/import", "text/csv", csv.String())
	var ir consentapi.ImportResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ir) != nil || ir.Accepted != 71 || ir.Rejected != 1 || ir.Errors[0].Line != 73 {
		t.Fatalf("import: %d %s", code, body)
	}
	jsonl := `{"subject_id":"ca-61","jurisdiction":"ccpa","source":"import","gpc":true}` + "\n" +
		`{"subject_id":"ca-62","jurisdiction":"ccpa","source":"import"}` + "\n"
	if code, body := do("POST", "/v1/consents/import", "application/x-ndjson", jsonl); code != http.StatusOK || !strings.Contains(body, `"accepted":2`) {
		t.Fatalf("import JSON lines: %d %s", code, body)
	}
	// A privacy center: the browser sends Sec-GPC: 1 with a profile.
	if code, body := do("PUT", "/v1/subjects/ca-63/profile", "application/json", `{"jurisdiction":"ccpa","source":"web_form"}`, "Sec-GPC", "1"); code != http.StatusAccepted || !strings.Contains(body, "gpc_signal_receipt_id") {
		t.Fatalf("profile with Sec-GPC: %d %s", code, body)
	}
	// ca-40 later turns GPC off; ca-41 sends an older off, which loses.
	if code, body := do("PUT", "/v1/subjects/ca-40/profile", "application/json", `{"gpc":false,"source":"web_form"}`); code != http.StatusAccepted {
		t.Fatalf("gpc off: %d %s", code, body)
	}
	older := time.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339)
	if code, body := do("PUT", "/v1/subjects/ca-41/profile", "application/json", `{"gpc":false,"source":"web_form","timestamp":"`+older+`"}`); code != http.StatusAccepted {
		t.Fatalf("older gpc off: %d %s", code, body)
	}

	type want struct {
		jur consent.Jurisdiction
		gpc bool
	}
	wants := map[string]want{}
	for i := 0; i < 60; i++ {
		wants[fmt.Sprintf("ca-%d", i)] = want{consent.CCPA, i >= 41}
	}
	for i := 0; i < 10; i++ {
		wants[fmt.Sprintf("gpc-%d", i)] = want{consent.Unknown, true}
	}
	for _, sub := range []string{"ca-60", "ca-61", "ca-63"} {
		wants[sub] = want{consent.CCPA, true}
	}
	wants["ca-62"] = want{consent.CCPA, false}
	subjects := make([]string, 0, len(wants))
	for sub := range wants {
		subjects = append(subjects, sub)
	}
	lookup := func() []consent.Lookup {
		out := make([]consent.Lookup, len(subjects))
		if err := r.pp.Store.Lookup(ctx, subjects, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(when string) map[string]consent.Record {
		recs := map[string]consent.Record{}
		for i, l := range lookup() {
			sub, w := subjects[i], wants[subjects[i]]
			if !l.Found || l.Corrupt {
				t.Fatalf("%s: %s has no readable stored record: %+v", when, sub, l)
			}
			rec := l.Record
			if rec.Jurisdiction != w.jur || rec.GPC != w.gpc {
				t.Fatalf("%s: %s: jurisdiction %s gpc %v, want %s %v", when, sub, rec.Jurisdiction, rec.GPC, w.jur, w.gpc)
			}
			raw, _ := r.pp.Store.Client().Get(ctx, r.pp.Store.Key(sub)).Result()
			if !strings.HasPrefix(raw, "2|") {
				t.Fatalf("%s: %s stored as %q, want version 2", when, sub, raw)
			}
			// The stored record decides: CCPA's opt-out default allows
			// analytics (also when the event claims nothing), a recorded
			// GPC signal denies marketing whatever the event says.
			if w.jur == consent.CCPA && sub != "ca-60" {
				if d := l.Decide(consent.Unknown, false, purpose.Analytics); !d.Allowed || d.Reason != consent.ReasonDefaultAllowed {
					t.Fatalf("%s: %s analytics: %+v", when, sub, d)
				}
			}
			if d := l.Decide(consent.CCPA, false, purpose.Marketing); w.gpc && (d.Allowed || d.Reason != consent.ReasonGPCOptOut) {
				t.Fatalf("%s: %s marketing with a recorded GPC signal: %+v", when, sub, d)
			}
			recs[sub] = rec
		}
		return recs
	}
	waitUntil(t, "sync applied the profiles", 30*time.Second, func() bool {
		for i, l := range lookup() {
			w := wants[subjects[i]]
			if !l.Found || l.Record.Jurisdiction != w.jur || l.Record.GPC != w.gpc {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // anything still in flight
	live := check("after sync")

	// The API reads them back; a subject with only a jurisdiction is found.
	code, body = do("GET", "/v1/subjects/ca-3/consents", "", "")
	var st consentapi.State
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Jurisdiction != "ccpa" || st.GPC || st.JurisdictionUpdatedAt == "" || st.Purposes["analytics"].State != "unset" {
		t.Fatalf("GET ca-3: %d %s", code, body)
	}
	code, body = do("GET", "/v1/subjects/ca-50/consents", "", "")
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || !st.GPC || st.GPCUpdatedAt == "" {
		t.Fatalf("GET ca-50: %d %s", code, body)
	}
	code, body = do("GET", "/v1/subjects/ca-63/consents/history", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"source":"gpc_signal"`) || !strings.Contains(body, `"gpc":true`) {
		t.Fatalf("history ca-63: %d %s", code, body)
	}
	if code, _ := do("GET", "/v1/subjects/bad-1/consents", "", ""); code != http.StatusNotFound {
		t.Fatalf("the rejected line's subject: %d", code)
	}

	// A rebuild from the topic gives the same records.
	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if rebuilt := check("after rebuild"); !maps.Equal(rebuilt, live) {
		t.Fatal("the rebuild changed records")
	}
	// So does the topic compacted to its latest record per key: ca-60's
	// GPC value lives on in its companion when its choice is replaced.
	r.publishConsent(ctx, ch("ca-60", purpose.Marketing, consent.Denied, consent.Unknown, time.Now()))
	latest := map[string]consentlog.Change{}
	for _, rec := range r.read(r.consentTopic()) {
		c, err := consentlog.Decode(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		latest[string(rec.Key)] = c
	}
	compacted := map[string]consent.Record{}
	for _, c := range latest {
		rec := compacted[c.SubjectID]
		c.ApplyTo(&rec)
		compacted[c.SubjectID] = rec
	}
	for sub, w := range wants {
		if rec := compacted[sub]; rec.Jurisdiction != w.jur || rec.GPC != w.gpc {
			t.Errorf("compacted topic: %s: jurisdiction %s gpc %v, want %s %v", sub, rec.Jurisdiction, rec.GPC, w.jur, w.gpc)
		}
	}
}
