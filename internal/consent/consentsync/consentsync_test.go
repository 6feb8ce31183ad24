package consentsync

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
)

func change(sub string, p purpose.Purpose, st consent.State, at time.Time) consentlog.Change {
	return consentlog.Change{SubjectID: sub, Purpose: p, State: st, Jurisdiction: consent.GDPR, Source: consentlog.WebForm,
		PolicyVersion: "v1", Timestamp: at, ReceiptID: consentlog.NewReceiptID()}
}

func TestApplyKeepsNewestPerPurposeAndAnnounces(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consentredis.NewRedisStore(rdb)
	s, err := New(Config{Kafka: kafkaconn.Config{Brokers: []string{"unused:1"}}, Topic: "t", Group: "g", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sub := store.SubscribeInvalidations(ctx)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	newer := change("c1", purpose.Analytics, consent.Withdrawn, t0.Add(time.Minute))
	older := change("c1", purpose.Analytics, consent.Granted, t0)
	other := change("c1", purpose.Marketing, consent.Granted, t0)
	n, err := s.Apply(ctx, []consentlog.Change{newer, older, other, newer}, nil)
	if err != nil || n != 2 {
		t.Fatalf("applied %d (%v), want 2: newer and other; the older and the duplicate are stale", n, err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "c1" {
		t.Fatalf("invalidation %v %v", msg, err)
	}
	store.MarkLoaded(ctx)
	out := make([]consent.Lookup, 1)
	if err := store.Lookup(ctx, []string{"c1"}, out); err != nil {
		t.Fatal(err)
	}
	r := out[0].Record
	if r.Purposes[purpose.Analytics].State != consent.Withdrawn || r.Purposes[purpose.Marketing].State != consent.Granted ||
		r.Jurisdiction != consent.GDPR || r.Version != newer.Timestamp.UnixMilli() {
		t.Fatalf("stored %+v", r)
	}
	// Replaying everything in another order converges to the same state.
	n, _ = s.Apply(ctx, []consentlog.Change{other, older, newer}, nil)
	if n != 0 {
		t.Fatalf("replay applied %d changes", n)
	}
	hist, _ := rdb.LRange(ctx, store.HistoryKey("c1"), 0, -1).Result()
	if len(hist) != 2 || !strings.Contains(hist[0], `"purpose":"marketing"`) {
		t.Fatalf("history %v", hist)
	}
}

func TestApplyRepairsACorruptRecord(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consentredis.NewRedisStore(rdb, consentredis.WithRequireLoaded(false))
	s, _ := New(Config{Kafka: kafkaconn.Config{Brokers: []string{"x:1"}}, Topic: "t", Group: "g", Store: store})
	mr.Set(store.Key("c9"), "garbage")
	if n, err := s.Apply(context.Background(), []consentlog.Change{change("c9", purpose.AITraining, consent.Denied, time.Now())}, nil); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	out := make([]consent.Lookup, 1)
	store.Lookup(context.Background(), []string{"c9"}, out)
	if out[0].Corrupt || out[0].Record.Purposes[purpose.AITraining].State != consent.Denied {
		t.Fatalf("%+v", out[0])
	}
}

// TestLuaScriptAgreesWithGoRecord applies random sequences of changes
// through the Lua script (miniredis runs Lua 5.1, as Redis does) and
// through consentlog.Change.ApplyTo: every change is applied or not alike,
// and the stored record equals the Go record, also when the sequence is
// replayed in shuffled orders, and from stored version-1 records.
// internal/integration repeats this against a real redis-server.
func TestLuaScriptAgreesWithGoRecord(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consentredis.NewRedisStore(rdb, consentredis.WithRequireLoaded(false))
	s, _ := New(Config{Kafka: kafkaconn.Config{Brokers: []string{"x:1"}}, Topic: "t", Group: "g", Store: store})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	v1Starts := []string{"", "1|ccpa|1|1772323200002|g:1772323200001|-:0|d:1772323200002|-:0|-:0", "1|unknown|0|0|-:0|-:0|-:0|-:0|-:0",
		"1|gdpr|0|1772323200003|w:1772323200003|g:1772323200000|-:0|-:0|g:1772323200001"}
	for round := 0; round < 30; round++ {
		changes := pipelinetest.RandomConsentChanges(rng, "sub", 1+rng.IntN(20), t0)
		start := v1Starts[round%len(v1Starts)]
		var want consent.Record
		if start != "" {
			if err := consent.Decode(start, &want); err != nil {
				t.Fatal(err)
			}
		}
		for k := 0; k < 3; k++ {
			mr.Del(store.Key("sub"))
			if start != "" {
				mr.Set(store.Key("sub"), start)
			}
			var goRec consent.Record
			if start != "" {
				consent.Decode(start, &goRec)
			}
			for i := range changes {
				applied := changes[i].ApplyTo(&goRec)
				n, err := s.Apply(ctx, changes[i:i+1], nil)
				if err != nil {
					t.Fatal(err)
				}
				if (n == 1) != applied {
					t.Fatalf("round %d: change %+v: Lua applied %d, Go %v", round, changes[i], n, applied)
				}
			}
			raw, _ := mr.Get(store.Key("sub"))
			var got consent.Record
			if raw == "" && goRec == (consent.Record{}) {
				// nothing was ever applied (cannot happen with valid changes)
			} else if err := consent.Decode(raw, &got); err != nil || got != goRec {
				t.Fatalf("round %d order %d: Lua stored %q (%v)\n got %+v\nwant %+v", round, k, raw, err, got, goRec)
			}
			if k == 0 {
				want = goRec
			} else if goRec != want {
				t.Fatalf("round %d: order changed the Go record:\n got %+v\nwant %+v", round, goRec, want)
			}
			// Replaying the whole sequence applies nothing.
			if n, _ := s.Apply(ctx, changes, nil); n != 0 {
				t.Fatalf("round %d: replay applied %d changes", round, n)
			}
			rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
		}
	}
}

func TestSubjectLevelChangeCreatesTheRecord(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consentredis.NewRedisStore(rdb, consentredis.WithRequireLoaded(false))
	s, _ := New(Config{Kafka: kafkaconn.Config{Brokers: []string{"x:1"}}, Topic: "t", Group: "g", Store: store})
	ctx := context.Background()
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	jur := consentlog.Change{SubjectID: "ca-1", Purpose: consentlog.SubjectLevel, Jurisdiction: consent.CCPA, Source: consentlog.Import,
		PolicyVersion: consentlog.DefaultProfilePolicyVersion, Timestamp: at, ReceiptID: "r1"}
	gpc := consentlog.Change{SubjectID: "ca-1", Purpose: consentlog.SubjectLevel, GPC: consent.GPCOn, Source: consentlog.GPCSignal,
		PolicyVersion: "v", Timestamp: at.Add(time.Second), ReceiptID: "r2"}
	if n, err := s.Apply(ctx, []consentlog.Change{jur, gpc}, nil); n != 2 || err != nil {
		t.Fatal(n, err)
	}
	out := make([]consent.Lookup, 1)
	if err := store.Lookup(ctx, []string{"ca-1"}, out); err != nil {
		t.Fatal(err)
	}
	r := out[0].Record
	if !out[0].Found || r.Jurisdiction != consent.CCPA || !r.GPC || r.GPCMs != gpc.Timestamp.UnixMilli() || r.Version != gpc.Timestamp.UnixMilli() {
		t.Fatalf("%+v", out[0])
	}
	for _, p := range purpose.All {
		if r.Purposes[p].State != consent.Unset {
			t.Fatalf("%s set by a subject-level change", p)
		}
	}
	hist, _ := rdb.LRange(ctx, store.HistoryKey("ca-1"), 0, -1).Result()
	if len(hist) != 2 || !strings.Contains(hist[0], `"gpc":true`) || strings.Contains(hist[0], `"purpose"`) || strings.Contains(hist[1], `"gpc"`) {
		t.Fatalf("history %v", hist)
	}
	// GPC off, newer, clears it; an older on does not bring it back.
	off := gpc
	off.GPC, off.Source, off.Timestamp = consent.GPCOff, consentlog.WebForm, at.Add(2*time.Second)
	older := gpc
	older.ReceiptID = "r3"
	if n, _ := s.Apply(ctx, []consentlog.Change{off, older}, nil); n != 1 {
		t.Fatalf("applied %d, want 1", n)
	}
	store.Lookup(ctx, []string{"ca-1"}, out)
	if out[0].Record.GPC || out[0].Record.Jurisdiction != consent.CCPA {
		t.Fatalf("%+v", out[0].Record)
	}
}

// TestHistoryEntryKeepsItsJSON: the history entry, now consent's, reads and
// writes the JSON it had when it embedded consentlog.Input.
func TestHistoryEntryKeepsItsJSON(t *testing.T) {
	type oldEntry struct {
		ReceiptID string `json:"receipt_id"`
		consentlog.Input
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	choice := change("s1", purpose.Marketing, consent.Denied, at)
	choice.GPC = consent.GPCOff
	profile := consentlog.Change{SubjectID: "s2", Purpose: consentlog.SubjectLevel, Jurisdiction: consent.CCPA, GPC: consent.GPCOn,
		Source: consentlog.GPCSignal, PolicyVersion: "unspecified", Timestamp: at, ReceiptID: "r2"}
	for _, c := range []consentlog.Change{choice, profile, change("s3", purpose.Analytics, consent.Granted, at)} {
		e := Entry(&c)
		in := consentlog.Input{SubjectID: e.SubjectID, Purpose: e.Purpose, State: e.State, Jurisdiction: e.Jurisdiction,
			Source: e.Source, PolicyVersion: e.PolicyVersion, Timestamp: e.Timestamp, GPC: e.GPC}
		got, _ := json.Marshal(e)
		want, _ := json.Marshal(oldEntry{ReceiptID: e.ReceiptID, Input: in})
		if string(got) != string(want) {
			t.Fatalf("entry JSON\n got %s\nwant %s", got, want)
		}
		var back consent.HistoryEntry
		if err := json.Unmarshal(want, &back); err != nil || back != e {
			t.Fatalf("entry read back as %+v (%v), want %+v", back, err, e)
		}
	}
}

// TestTombstoneDeletesTheSubject (attack: a grant still in flight when the
// subject was erased): a tombstone of the consent topic deletes the
// subject's record and history in Redis, also when a grant precedes it in
// the same poll, and other subjects keep theirs.
func TestTombstoneDeletesTheSubject(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "privacy.consent"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := consentredis.NewRedisStore(rdb)
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now().Truncate(time.Millisecond)
	recs, err := consentlog.Records("privacy.consent", change("erased-1", purpose.Analytics, consent.Granted, now),
		change("kept-1", purpose.Analytics, consent.Granted, now))
	if err != nil {
		t.Fatal(err)
	}
	late, _ := consentlog.Records("privacy.consent", change("erased-1", purpose.Marketing, consent.Granted, now.Add(time.Second)))
	recs = append(recs, late...)
	for _, k := range consentlog.SubjectKeys("erased-1") {
		recs = append(recs, &kgo.Record{Topic: "privacy.consent", Key: k})
	}
	cl, _ := conn.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()))
	defer cl.Close()
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(Config{Kafka: conn, Topic: "privacy.consent", Group: "g", Store: store, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx, false) }()
	defer func() { scancel(); <-done }()
	// The end state (the rebuild at start and the follow that re-reads the
	// uncommitted records both reach it).
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := make([]consent.Lookup, 2)
		err := store.Lookup(ctx, []string{"erased-1", "kept-1"}, out)
		n, _ := rdb.Exists(ctx, store.HistoryKey("erased-1")).Result()
		snap, _ := metrics.Snapshot(reg)
		if err == nil && !out[0].Found && out[1].Found && n == 0 && s.Ready() && snap["pipeline_consent_sync_erased_total"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("erased found %v, kept found %v, history %d, ready %v, %v", out[0].Found, out[1].Found, n, s.Ready(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
