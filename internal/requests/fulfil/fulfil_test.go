package fulfil

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
)

const topic = "privacy.requests"

type fakeEraser struct {
	mu     sync.Mutex
	erased []string
	fail   int
}

func (e *fakeEraser) Erase(_ context.Context, subject, _ string) (map[string]int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail > 0 {
		e.fail--
		return nil, errors.New("broker down")
	}
	e.erased = append(e.erased, subject)
	return map[string]int64{"data_keys": 5}, nil
}

type fakeExporter struct{ calls int }

func (x *fakeExporter) Export(_ context.Context, subject string, reqs []requests.Request, progress func(float64)) ([]byte, map[string]int64, error) {
	x.calls++
	progress(0.5)
	return []byte(`{"v":1,"subject_id":"` + subject + `","requests":` + string(rune('0'+len(reqs))) + `}`), map[string]int64{"records": 2}, nil
}

type rig struct {
	svc    *Service
	store  *requestredis.Store
	cl     *kgo.Client
	eraser *fakeEraser
	export *fakeExporter
	reg    *prometheus.Registry
	mr     *miniredis.Miniredis
}

func newRig(t *testing.T) *rig {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	r := &rig{store: requestredis.New(rdb, ""), cl: cl, eraser: &fakeEraser{}, export: &fakeExporter{}, reg: prometheus.NewRegistry(), mr: mr}
	r.svc, err = New(Config{Kafka: kafkaconn.Config{Brokers: c.ListenAddrs()}, Topic: topic, Group: "requests", Store: r.store,
		Eraser: r.eraser, Exporter: r.export, Mark: fakeMark,
		Metrics: NewMetrics(r.reg), GaugeEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// fakeMark stands for the ledger's keyed hash.
func fakeMark(subject string) string {
	h := sha256.Sum256([]byte(subject))
	return "er1." + base64.RawURLEncoding.EncodeToString(h[:16])
}

func (r *rig) produce(t *testing.T, key string, value []byte) {
	t.Helper()
	if err := r.cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(key), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// file stores and logs a request as the API does.
func (r *rig) file(t *testing.T, q requests.Request) {
	t.Helper()
	if ok, _, err := r.store.Create(context.Background(), q); !ok || err != nil {
		t.Fatal(ok, err)
	}
	r.produce(t, q.ID, q.Marshal())
}

func (r *rig) waitStatus(t *testing.T, id string, want requests.Status) requests.Request {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := r.store.Get(context.Background(), id)
		if err == nil && q.Status == want {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %s (%v), want %s", id, q.Status, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newReq(t *testing.T, id string, kind requests.Kind, subject string, verified bool) requests.Request {
	t.Helper()
	q, err := requests.New(id, kind, subject, requests.GDPR, "api", "ops", verified, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestErasureRequestRunsOnceAndForgetsTheSubject: a verified erasure is
// carried out once, even when its record is replayed; the subject's other
// requests lose its raw id and its export documents; the done record on
// the log holds no raw id.
func TestErasureRequestRunsOnceAndForgetsTheSubject(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	acc := newReq(t, "rq_c_acc", requests.Access, "dana-CANARY", true)
	r.file(t, acc)
	r.waitStatus(t, acc.ID, requests.Done)
	if doc, err := r.store.Export(ctx, acc.ID); err != nil || !strings.Contains(string(doc), "dana-CANARY") {
		t.Fatalf("export %s %v", doc, err)
	}
	er := newReq(t, "rq_c_er", requests.Erasure, "dana-CANARY", true)
	r.file(t, er)
	done := r.waitStatus(t, er.ID, requests.Done)
	r.produce(t, er.ID, er.Marshal()) // a replay of the filing
	time.Sleep(300 * time.Millisecond)
	if len(r.eraser.erased) != 1 || done.Subject != "" || done.SubjectMark == "" || done.Result["data_keys"] != 5 {
		t.Fatalf("erased %d times; done %+v", len(r.eraser.erased), done)
	}
	a, _ := r.store.Get(ctx, acc.ID)
	if a.Subject != "" {
		t.Fatal("the access request still names the subject")
	}
	if _, err := r.store.Export(ctx, acc.ID); !errors.Is(err, requestredis.ErrNotFound) {
		t.Fatal("the export document survived the erasure")
	}
	for _, k := range r.mr.Keys() {
		if v, _ := r.mr.Get(k); strings.Contains(k+v, "CANARY") {
			t.Fatalf("%s still names the subject", k)
		}
	}
	// The log's latest record per request id (what compaction keeps)
	// holds no raw id.
	latest := r.latest(t)
	for id, v := range latest {
		if strings.Contains(string(v), "CANARY") {
			t.Fatalf("the latest record of %s names the subject", id)
		}
	}
}

func (r *rig) latest(t *testing.T) map[string][]byte {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.svc.cfg.Kafka.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	out := map[string][]byte{}
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) { out[string(rec.Key)] = rec.Value })
	}
	return out
}

// TestBadRecordsAreCountedAndSkipped: a poll of only bad records — not
// JSON, a record whose key is not its id, a forged reuse of an id for
// another subject, a tombstone — is counted by outcome and never stalls
// the requests behind it; an unverified request waits.
func TestBadRecordsAreCountedAndSkipped(t *testing.T) {
	r := newRig(t)
	good := newReq(t, "rq_c_good", requests.Erasure, "erin", true)
	r.file(t, good)
	r.waitStatus(t, good.ID, requests.Done)
	r.produce(t, "x", []byte("not json"))
	r.produce(t, "rq_c_other", good.Marshal())
	forged := newReq(t, "rq_c_good", requests.Erasure, "frank", true)
	r.produce(t, forged.ID, forged.Marshal())
	r.produce(t, "rq_c_good", nil)
	wait := newReq(t, "rq_c_wait", requests.Access, "gina", false)
	r.file(t, wait)
	after := newReq(t, "rq_c_after", requests.Access, "hank", true)
	r.file(t, after)
	r.waitStatus(t, after.ID, requests.Done)
	if q, _ := r.store.Get(context.Background(), wait.ID); q.Status != requests.Received {
		t.Fatalf("an unverified request ran: %s", q.Status)
	}
	for o, want := range map[string]float64{"malformed": 2, "conflict": 1, "tombstone": 1} {
		if got := testutil.ToFloat64(r.svc.cfg.Metrics.Records.WithLabelValues(o)); got != want {
			t.Errorf("%s: %v, want %v", o, got, want)
		}
	}
	if len(r.eraser.erased) != 1 || r.eraser.erased[0] != "erin" {
		t.Fatalf("erased %v", r.eraser.erased)
	}
}

// TestFailedErasureIsRetried: an erasure whose executor fails (the broker
// down) is retried until it succeeds, and ends done once.
func TestFailedErasureIsRetried(t *testing.T) {
	r := newRig(t)
	r.eraser.fail = 2
	q := newReq(t, "rq_c_retry", requests.Erasure, "ivy", true)
	r.file(t, q)
	r.waitStatus(t, q.ID, requests.Done)
	if len(r.eraser.erased) != 1 || testutil.ToFloat64(r.svc.cfg.Metrics.Failures.WithLabelValues("erasure")) != 2 {
		t.Fatalf("erased %v, failures %v", r.eraser.erased, testutil.ToFloat64(r.svc.cfg.Metrics.Failures.WithLabelValues("erasure")))
	}
}

// TestOpenGauges: open requests are counted by days left, and the least
// days left goes negative once a deadline passes (what the alert watches).
func TestOpenGauges(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	late, _ := requests.New("rq_c_late", requests.Access, "s", requests.VNDecree13, "api", "p", false, now.Add(-80*time.Hour))
	soon, _ := requests.New("rq_c_soon", requests.Erasure, "s", requests.VNDecree13, "api", "p", false, now.Add(-50*time.Hour))
	far, _ := requests.New("rq_c_far", requests.Erasure, "s", requests.GDPR, "api", "p", false, now)
	m.SetOpen([]requests.Request{late, soon, far}, now)
	for _, c := range []struct {
		k    requests.Kind
		r    requests.Regime
		due  string
		want float64
	}{
		{requests.Access, requests.VNDecree13, "overdue", 1},
		{requests.Erasure, requests.VNDecree13, "1d", 1},
		{requests.Erasure, requests.GDPR, "later", 1},
		{requests.Erasure, requests.GDPR, "overdue", 0},
	} {
		if got := testutil.ToFloat64(m.Open.WithLabelValues(string(c.k), string(c.r), c.due)); got != c.want {
			t.Errorf("%s %s %s: %v, want %v", c.k, c.r, c.due, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.MinDaysLeft); got > -0.3 || got < -0.4 {
		t.Errorf("min days left %v, want -8h", got)
	}
	m.SetOpen(nil, now)
	if got := testutil.ToFloat64(m.Open.WithLabelValues("access", "vn_decree13", "overdue")); got != 0 {
		t.Error("an emptied bucket kept its value")
	}
}

// TestHeartbeatsOnTheRequestTopic: with a heartbeat interval, every
// partition of the request topic gets heartbeat tombstones (so a quiet
// partition's segment rolls and an erased subject's raw-id records are
// compacted away), and the service does not count them as bad records.
func TestHeartbeatsOnTheRequestTopic(t *testing.T) {
	r := newRig(t)
	// The rig's service runs without heartbeats: a second one with.
	svc, err := New(Config{Kafka: r.svc.cfg.Kafka, Topic: topic, Group: "requests-2", Store: r.store, Eraser: r.eraser, Exporter: r.export,
		Mark: fakeMark, Metrics: NewMetrics(prometheus.NewRegistry()), Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(svc.cfg.Metrics.Heartbeats) < 6 { // two rounds over 3 partitions
		if time.Now().After(deadline) {
			t.Fatalf("%v heartbeats", testutil.ToFloat64(svc.cfg.Metrics.Heartbeats))
		}
		time.Sleep(20 * time.Millisecond)
	}
	parts := map[int32]bool{}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(r.svc.cfg.Kafka.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer pcancel()
	for pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(rec *kgo.Record) {
			if string(rec.Key) == "pp-heartbeat" && rec.Value == nil {
				parts[rec.Partition] = true
			}
		})
	}
	if len(parts) != 3 {
		t.Fatalf("heartbeats on partitions %v, want all 3", parts)
	}
	if got := testutil.ToFloat64(svc.cfg.Metrics.Records.WithLabelValues("tombstone")); got != 0 {
		t.Fatalf("%v heartbeats counted as tombstones", got)
	}
}

// TestStoreRebuiltFromTheLog: Redis lost the requests (a new or flushed
// Redis, no loaded marker) while the log holds them: a done request, an
// erased subject's anonymised one, an unverified one, and a verified one
// whose record the service had consumed but not carried out. Rebuild
// restores each from its latest record (the source of truth), carries out
// the verified one, leaves the unverified one waiting, and sets the
// marker; a stale record never replaces a later one.
func TestStoreRebuiltFromTheLog(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	defer cl.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := requestredis.New(rdb, "")
	ctx := context.Background()
	now := time.Now()
	produce := func(q requests.Request) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(q.ID), Value: q.Marshal()}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	done := newReq(t, "rq_c_done", requests.Access, "kim", true)
	produce(done)
	started, _ := done.Start("requests", now)
	produce(started)
	finished, _ := started.Finish("requests", nil, now)
	produce(finished)
	er := newReq(t, "rq_c_er2", requests.Erasure, "lee-CANARY", true)
	produce(er)
	erDone, _ := er.Start("requests", now)
	erDone, _ = erDone.Finish("requests", nil, now)
	produce(erDone.Anonymise(fakeMark("lee-CANARY")))
	wait := newReq(t, "rq_c_wait2", requests.Access, "max", false)
	produce(wait)
	lost := newReq(t, "rq_c_lost", requests.Access, "ned", true)
	produce(lost)
	produce(started) // a stale copy after the done one: must not win

	exp := &fakeExporter{}
	svc, err := New(Config{Kafka: kafkaconn.Config{Brokers: c.ListenAddrs()}, Topic: topic, Group: "requests", Store: store,
		Eraser: &fakeEraser{}, Exporter: exp, Mark: fakeMark, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := store.Loaded(ctx); ok {
		t.Fatal("a new store says it is loaded")
	}
	if err := svc.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]requests.Status{done.ID: requests.Done, er.ID: requests.Done, wait.ID: requests.Received, lost.ID: requests.Done} {
		got, err := store.Get(ctx, id)
		if err != nil || got.Status != want {
			t.Errorf("%s: %s %v, want %s", id, got.Status, err, want)
		}
	}
	if got, _ := store.Get(ctx, er.ID); got.Subject != "" || got.SubjectMark != fakeMark("lee-CANARY") {
		t.Fatalf("the erased subject's request came back with %+v", got)
	}
	if rs, _ := store.BySubject(ctx, "lee-CANARY"); len(rs) != 0 {
		t.Fatal("the erased subject is indexed again")
	}
	if exp.calls != 1 {
		t.Fatalf("%d exports run by the rebuild, want 1 (the verified request)", exp.calls)
	}
	if ok, _ := store.Loaded(ctx); !ok {
		t.Fatal("no loaded marker after the rebuild")
	}
	if testutil.ToFloat64(svc.cfg.Metrics.Rebuilds) != 1 {
		t.Fatal("the rebuild is not counted")
	}
}
