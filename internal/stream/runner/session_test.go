package runner

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/processors"
)

// Focused tests of the session's steps: poll, split, transact (and the
// end of a transaction it shares with ticks). Each drives one step of a
// loop on an in-process kfake cluster, or none at all, and waits on
// conditions with generous deadlines, never on a timing.

// probe is a processor with one worker that copies each input to "out"
// (value: its partition and offset, or big when set) and records how the
// runner drove it. It is a StatefulWorker so that Forget is observed.
type probe struct {
	failNext atomic.Int32  // Process calls still to fail
	hold     chan struct{} // when set, Process waits for it to be closed
	entered  chan struct{} // when set, Process signals it entered
	big      atomic.Pointer[[]byte]

	mu        sync.Mutex
	processed [][]processors.Record
	done      []bool
	forgot    []int32
}

func (p *probe) Name() string                 { return "probe" }
func (p *probe) NewWorker() processors.Worker { return p }
func (p *probe) Current() bool                { return true }

func (p *probe) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	p.mu.Lock()
	p.processed = append(p.processed, slices.Clone(in))
	p.mu.Unlock()
	if p.entered != nil {
		p.entered <- struct{}{}
	}
	if p.hold != nil {
		select {
		case <-p.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if p.failNext.Add(-1) >= 0 {
		return errors.New("probe: refused")
	}
	for i, r := range in {
		v := []byte(fmt.Sprintf("%d/%d", r.Partition, r.Offset))
		if b := p.big.Load(); b != nil {
			v = *b
		}
		out.Add(i, "out", r.Key, v)
	}
	return nil
}

func (p *probe) Done(committed bool) {
	p.mu.Lock()
	p.done = append(p.done, committed)
	p.mu.Unlock()
}

func (p *probe) Forget(partition int32) {
	p.mu.Lock()
	p.forgot = append(p.forgot, partition)
	p.mu.Unlock()
}

func (p *probe) dones() []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.done)
}

func (p *probe) forgotten() []int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.forgot)
}

// cluster starts a kfake cluster with the topics (partitions each) and
// produces n records to "in", spread over its partitions by key.
func cluster(t *testing.T, partitions int32, n int) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "in", "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Topic: "in", Partition: int32(i) % partitions, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))})
	}
	if err := kafkaio.ProduceAll(context.Background(), cl, recs); err != nil {
		t.Fatal(err)
	}
	return brokers
}

// newRunner returns a runner of p on brokers, with metrics and its log in
// logs.
func newRunner(t *testing.T, brokers []string, p processors.Processor, logs *pipelinetest.SyncBuffer, mod func(*Config)) (*Runner, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	cfg := Config{Conn: kafkaconn.Config{Brokers: brokers}, Group: "g", Input: "in", Workers: 1, Metrics: m,
		Log: slog.New(slog.NewJSONHandler(logs, nil))}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	return r, m
}

// openLoop opens a session of r, as Runner.session does, and returns its
// loop; the session is closed at the end of the test.
func openLoop(t *testing.T, r *Runner) *loop {
	t.Helper()
	sess, err := kgo.NewGroupTransactSession(r.sessionOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	workers := make([]processors.Worker, r.cfg.Workers)
	for i := range workers {
		workers[i] = r.proc.NewWorker()
	}
	return r.newLoop(sess, context.Background(), workers)
}

// pollSome polls until a poll brings at least one record.
func pollSome(t *testing.T, l *loop) kgo.Fetches {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fetches, err := l.poll(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if fetches.NumRecords() > 0 {
			return fetches
		}
	}
	t.Fatal("no record polled within 60s")
	return nil
}

// committedOutputs reads the committed records of "out" (read_committed).
func committedOutputs(t *testing.T, brokers []string) []string {
	t.Helper()
	recs, err := kafkaio.ReadAll(context.Background(), kafkaconn.Config{Brokers: brokers}, "out")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	slices.Sort(out)
	return out
}

// groupOffsets returns the group's committed offsets of "in" by partition.
func groupOffsets(t *testing.T, brokers []string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	os, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	os.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "in" && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// fetchedEnds returns, per partition, the offset after the last record
// of the fetches, and the "partition/offset" value of each record.
func fetchedEnds(fetches kgo.Fetches) (map[int32]int64, []string) {
	ends := map[int32]int64{}
	var values []string
	fetches.EachRecord(func(r *kgo.Record) {
		ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
		values = append(values, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
	})
	slices.Sort(values)
	return ends, values
}

func TestSplitKeepsEachPartitionOnOneWorkerInOrder(t *testing.T) {
	rec := func(p int32, off int64, hs ...kgo.RecordHeader) *kgo.Record {
		return &kgo.Record{Topic: "in", Partition: p, Offset: off, Value: []byte(fmt.Sprint(off)), Headers: hs}
	}
	h := func(k string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(k)} }
	fetches := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{
		{Partition: 0, Records: []*kgo.Record{rec(0, 0, h("a")), rec(0, 1, h("b"), h("c")), rec(0, 2)}},
		{Partition: 1, Records: []*kgo.Record{rec(1, 0), rec(1, 1, h("d"))}},
		{Partition: 2, Records: []*kgo.Record{rec(2, 7, h("e"))}},
		{Partition: 3, Records: nil},
	}}}}}
	buckets := make([][]processors.Record, 2)
	arena := make([][]processors.Header, 2)
	batches := make([]processors.Batch, 2)
	batches[1].Add(0, "out", nil, []byte("left over from the previous batch"))
	split(fetches, buckets, arena, batches)

	got := func(b []processors.Record) string {
		var s []string
		for _, r := range b {
			var hs []string
			for _, h := range r.Headers {
				hs = append(hs, h.Key)
			}
			s = append(s, fmt.Sprintf("%d/%d%v", r.Partition, r.Offset, hs))
		}
		return strings.Join(s, " ")
	}
	// Partition p goes to worker p mod 2, each partition in offset order.
	if g, w := got(buckets[0]), "0/0[a] 0/1[b c] 0/2[] 2/7[e]"; g != w {
		t.Fatalf("worker 0 got %s, want %s", g, w)
	}
	if g, w := got(buckets[1]), "1/0[] 1/1[d]"; g != w {
		t.Fatalf("worker 1 got %s, want %s", g, w)
	}
	if batches[1].Len() != 0 {
		t.Fatal("split kept the previous batch's outputs")
	}
	// A worker appending to one record's headers must not overwrite the
	// next record's (each record's headers are capped in the arena).
	buckets[0][0].Headers = append(buckets[0][0].Headers, processors.Header{Key: "injected"})
	if g := got(buckets[0][1:2]); g != "0/1[b c]" {
		t.Fatalf("appending to a record's headers changed the next record: %s", g)
	}

	// The next poll reuses the buffers: nothing of the previous one stays.
	split(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{
		{Partition: 1, Records: []*kgo.Record{rec(1, 2)}},
	}}}}}, buckets, arena, batches)
	if len(buckets[0]) != 0 || got(buckets[1]) != "1/2[]" {
		t.Fatalf("second split: worker 0 %q, worker 1 %q", got(buckets[0]), got(buckets[1]))
	}
	if len(arena[0]) != 0 || len(arena[1]) != 0 {
		t.Fatal("header arenas not reset for the next poll")
	}
}

func TestTickDueOnlyAfterTheIntervalAndAnEmptyPoll(t *testing.T) {
	r, _ := newRunner(t, []string{"unused:9092"}, &probe{}, &pipelinetest.SyncBuffer{}, func(c *Config) { c.TickInterval = time.Hour })
	l := &loop{r: r, ticks: true}
	ctx := context.Background()
	withRecords := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{
		{Partition: 0, Records: []*kgo.Record{{Topic: "in"}}}}}}}}

	l.lastTick = time.Now()
	if l.tickDue(ctx, nil) {
		t.Fatal("tick due before TickInterval passed")
	}
	// The interval passed but records came: they go first, and the
	// interval starts again.
	l.lastTick = time.Now().Add(-2 * time.Hour)
	if l.tickDue(ctx, withRecords) {
		t.Fatal("tick due while a poll brought records")
	}
	if time.Since(l.lastTick) > time.Minute {
		t.Fatal("the tick interval did not start again")
	}
	if l.tickDue(ctx, nil) {
		t.Fatal("tick due right after the interval started again")
	}
	l.lastTick = time.Now().Add(-2 * time.Hour)
	if !l.tickDue(ctx, nil) {
		t.Fatal("no tick after the interval with an empty poll")
	}
	l.lastTick = time.Now().Add(-2 * time.Hour)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if l.tickDue(cctx, nil) {
		t.Fatal("tick due while stopping")
	}
	l.ticks = false
	if l.tickDue(ctx, nil) {
		t.Fatal("tick due for workers that do not tick")
	}
}

func TestPollFetchErrorsOfAnEndedPollAreNotLogged(t *testing.T) {
	logs := &pipelinetest.SyncBuffer{}
	r, _ := newRunner(t, []string{"unused:9092"}, &probe{}, logs, nil)
	r.logFetchErrors(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{
		{Partition: 0, Err: context.DeadlineExceeded},
		{Partition: 1, Err: context.Canceled},
		{Partition: 2, Err: kerr.NotLeaderForPartition},
	}}}}})
	out := logs.String()
	if strings.Count(out, "fetch error") != 1 || !strings.Contains(out, `"partition":2`) {
		t.Fatalf("want one fetch error logged, for partition 2:\n%s", out)
	}
}

// TestPollOfTickingWorkersReturnsWithoutRecords: with workers that tick, a
// poll with no record to deliver returns (empty) instead of blocking, so
// ticks run on an idle input; a closed client ends the session.
func TestPollOfTickingWorkersReturnsWithoutRecords(t *testing.T) {
	brokers := cluster(t, 1, 0)
	r, _ := newRunner(t, brokers, &probe{}, &pipelinetest.SyncBuffer{}, func(c *Config) { c.TickInterval = 50 * time.Millisecond })
	l := openLoop(t, r)
	l.ticks = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // only a backstop
	defer cancel()
	fetches, err := l.poll(ctx)
	if err != nil || ctx.Err() != nil {
		t.Fatalf("poll: %v (ctx %v)", err, ctx.Err())
	}
	if fetches.NumRecords() != 0 {
		t.Fatalf("%d records from an empty topic", fetches.NumRecords())
	}
	l.sess.Close()
	if _, err := l.poll(ctx); err == nil || !strings.Contains(err.Error(), "client closed") {
		t.Fatalf("poll of a closed client: %v", err)
	}
}

// TestTransactCommitsOutputsWithTheirOffsets: one transaction makes the
// outputs visible and commits the consumed offsets together, and counts
// and reports the batch once.
func TestTransactCommitsOutputsWithTheirOffsets(t *testing.T) {
	brokers := cluster(t, 2, 40)
	p := &probe{}
	var reported atomic.Int64
	r, m := newRunner(t, brokers, p, &pipelinetest.SyncBuffer{}, func(c *Config) {
		c.OnCommit = func(outs []processors.Output, _ time.Time) { reported.Add(int64(len(outs))) }
	})
	l := openLoop(t, r)
	fetches := pollSome(t, l)
	if err := l.transact(context.Background(), fetches); err != nil {
		t.Fatal(err)
	}
	ends, values := fetchedEnds(fetches)
	if got := committedOutputs(t, brokers); !slices.Equal(got, values) {
		t.Fatalf("committed outputs %v, want one per consumed record %v", got, values)
	}
	if got := groupOffsets(t, brokers); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Fatalf("committed offsets %v, want %v", got, ends)
	}
	n := uint64(fetches.NumRecords())
	if r.Committed() != n || r.Batches() != 1 || r.Aborted() != 0 || reported.Load() != int64(n) {
		t.Fatalf("committed %d batches %d aborted %d reported %d; want %d, 1, 0, %d", r.Committed(), r.Batches(), r.Aborted(), reported.Load(), n, n)
	}
	if v := value(m.Transactions.WithLabelValues("committed")); v != 1 {
		t.Fatalf("transactions{committed} = %v", v)
	}
	if d := p.dones(); !slices.Equal(d, []bool{true}) {
		t.Fatalf("worker told %v, want [true]", d)
	}
}

// TestTransactProcessorErrorAbortsAndTheBatchIsRedone: a processor error
// aborts the transaction (nothing visible, no offset committed, the worker
// told so) without ending the session; the session rewinds and the same
// records are processed again, and committed exactly once.
func TestTransactProcessorErrorAbortsAndTheBatchIsRedone(t *testing.T) {
	brokers := cluster(t, 1, 20)
	p := &probe{}
	p.failNext.Store(1)
	logs := &pipelinetest.SyncBuffer{}
	r, m := newRunner(t, brokers, p, logs, nil)
	l := openLoop(t, r)
	first := pollSome(t, l)
	if err := l.transact(context.Background(), first); err != nil {
		t.Fatalf("a processor error ended the session: %v", err)
	}
	if r.Aborted() != 1 || r.Committed() != 0 {
		t.Fatalf("aborted %d committed %d, want 1 and 0", r.Aborted(), r.Committed())
	}
	if n, reason := r.AbortStreak(); n != 1 || reason != AbortProcess {
		t.Fatalf("abort streak %d %q", n, reason)
	}
	if v := value(m.Aborts.WithLabelValues(AbortProcess)); v != 1 {
		t.Fatalf("aborts{process_error} = %v", v)
	}
	if !strings.Contains(logs.String(), "transaction aborted") || !strings.Contains(logs.String(), "probe: refused") {
		t.Fatalf("no abort logged:\n%s", logs.String())
	}
	if got := groupOffsets(t, brokers); len(got) != 0 {
		t.Fatalf("offsets committed by an aborted transaction: %v", got)
	}

	_, want := fetchedEnds(first)
	var again []string
	for len(again) < len(want) { // the session rewound: the same records come again
		fetches := pollSome(t, l)
		if err := l.transact(context.Background(), fetches); err != nil {
			t.Fatal(err)
		}
		_, vs := fetchedEnds(fetches)
		again = append(again, vs...)
	}
	slices.Sort(again)
	if !slices.Equal(again[:len(want)], want) {
		t.Fatalf("redone records %v, want %v", again, want)
	}
	if got := committedOutputs(t, brokers); !slices.Equal(got, again) {
		t.Fatalf("committed outputs %v, want each redone record once: %v", got, again)
	}
	if d := p.dones(); d[0] {
		t.Fatalf("worker told %v: the aborted batch must come first, false", d)
	}
	if n, _ := r.AbortStreak(); n != 0 {
		t.Fatal("abort streak not cleared by a commit")
	}
}

// TestTransactOutputAboveTopicMaxMessageBytesAbortsAndRestarts: an output
// that the client accepts (below MaxRecordBytes) but the output topic's
// max.message.bytes refuses fails the produce with MESSAGE_TOO_LARGE: the
// transaction aborts (nothing visible, no offset committed) and transact
// returns the error, so the session restarts; the next session redoes the
// batch from the committed offsets.
func TestTransactOutputAboveTopicMaxMessageBytesAbortsAndRestarts(t *testing.T) {
	brokers := cluster(t, 1, 5)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	limit := "10000"
	if _, err := kadm.NewClient(cl).AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, "out"); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 50_000) // random: snappy cannot shrink it below the limit
	rand.Read(big)
	p := &probe{}
	p.big.Store(&big)
	logs := &pipelinetest.SyncBuffer{}
	r, m := newRunner(t, brokers, p, logs, nil)
	l := openLoop(t, r)
	err = l.transact(context.Background(), pollSome(t, l))
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("transact: %v, want MESSAGE_TOO_LARGE", err)
	}
	if n, reason := r.AbortStreak(); n != 1 || reason != AbortProduce || r.Aborted() != 1 {
		t.Fatalf("abort streak %d %q, aborted %d", n, reason, r.Aborted())
	}
	if v := value(m.Transactions.WithLabelValues("aborted")); v != 1 {
		t.Fatalf("transactions{aborted} = %v", v)
	}
	if !strings.Contains(logs.String(), "transaction aborted") {
		t.Fatalf("no abort logged:\n%s", logs.String())
	}
	if got := committedOutputs(t, brokers); len(got) != 0 {
		t.Fatalf("%d outputs of an aborted transaction visible", len(got))
	}
	if got := groupOffsets(t, brokers); len(got) != 0 {
		t.Fatalf("offsets committed by an aborted transaction: %v", got)
	}

	// The next session (same transactional id) redoes the batch.
	l.sess.Close()
	p.big.Store(nil)
	l = openLoop(t, r)
	var values []string
	for len(values) < 5 {
		fetches := pollSome(t, l)
		if err := l.transact(context.Background(), fetches); err != nil {
			t.Fatal(err)
		}
		_, vs := fetchedEnds(fetches)
		values = append(values, vs...)
	}
	if got := committedOutputs(t, brokers); len(got) != 5 || got[0] != "0/0" {
		t.Fatalf("after the restart: outputs %v, want the 5 records once", got)
	}
}

// TestTransactRevokedPartitionMidBatchAbortsAndItsStateIsDropped: a
// partition revoked while its batch is processed (a second replica
// joined) aborts the transaction - the batch's outputs and offsets must
// not commit for a partition this replica no longer owns - and the
// worker's state of the revoked partition is dropped before the next
// batch.
func TestTransactRevokedPartitionMidBatchAbortsAndItsStateIsDropped(t *testing.T) {
	brokers := cluster(t, 2, 20)
	p := &probe{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	r, m := newRunner(t, brokers, p, &pipelinetest.SyncBuffer{}, nil)
	l := openLoop(t, r)
	waitFor(t, 60*time.Second, func() bool { return r.Assigned() == 2 })
	fetches := pollSome(t, l)
	done := make(chan error, 1)
	go func() { done <- l.transact(context.Background(), fetches) }()
	<-p.entered

	// A second member joins; cooperative sticky moves one partition to it.
	other, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() { // the other member must poll to take part in the rebalance
		for {
			if f := other.PollFetches(context.Background()); f.IsClientClosed() {
				return
			}
		}
	}()
	waitFor(t, 60*time.Second, func() bool { return r.Assigned() == 1 })
	r.forgetMu.Lock()
	var kept int32 = -1
	for q := range r.owned {
		kept = q
	}
	r.forgetMu.Unlock()
	revoked := 1 - kept

	close(p.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.Committed() != 0 || r.Aborted() != 1 {
		t.Fatalf("committed %d aborted %d: a batch of a revoked partition must abort", r.Committed(), r.Aborted())
	}
	if _, reason := r.AbortStreak(); reason != AbortGroup {
		t.Fatalf("abort reason %q, want %q", reason, AbortGroup)
	}
	if v := value(m.Aborts.WithLabelValues(AbortGroup)); v != 1 {
		t.Fatalf("aborts{group_changed} = %v", v)
	}
	if got := committedOutputs(t, brokers); len(got) != 0 {
		t.Fatalf("outputs of the aborted batch visible: %v", got)
	}

	// The next batch first drops the revoked partition's state, then
	// processes only the partition still owned. (The group may still be
	// settling - cooperative rebalancing takes two rounds - so a batch may
	// abort again; the batches are redone until one commits.)
	p.hold = nil
	p.entered = nil
	deadline := time.Now().Add(60 * time.Second)
	for r.Committed() == 0 {
		if time.Now().After(deadline) {
			n, reason := r.AbortStreak()
			t.Fatalf("no commit within 60s after the revocation (%d aborts in a row, %s)", n, reason)
		}
		fetches = pollSome(t, l)
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Partition == revoked {
				t.Fatalf("record of the revoked partition %d polled after the revocation", revoked)
			}
		})
		if err := l.transact(context.Background(), fetches); err != nil {
			t.Fatal(err)
		}
		if f := p.forgotten(); !slices.Contains(f, revoked) || slices.Contains(f, kept) {
			t.Fatalf("forgot %v; want the revoked partition %d and not %d", f, revoked, kept)
		}
	}
	if got, want := len(committedOutputs(t, brokers)), int(r.Committed()); got != want {
		t.Fatalf("%d outputs visible, want %d", got, want)
	}
}

// ticker is a probe whose Tick publishes one output of value (to "out")
// whatever the partitions.
type ticker struct {
	probe
	value atomic.Pointer[[]byte]
}

func (k *ticker) NewWorker() processors.Worker { return k }

func (k *ticker) Tick(_ context.Context, _ time.Time, _ []int32, out *processors.Batch) error {
	if v := k.value.Load(); v != nil {
		out.Add(0, "out", nil, *v)
	}
	return nil
}

// TestTickTransactionsShareTheEndOfABatch: a tick that publishes goes out
// in a transaction of its own through the same end as a batch - counted
// by outcome, the workers told - but it is not a batch of records
// (Batches and Aborted do not count it); a tick whose output the topic
// refuses aborts, is logged as "tick aborted", and restarts the session.
func TestTickTransactionsShareTheEndOfABatch(t *testing.T) {
	brokers := cluster(t, 1, 0)
	k := &ticker{}
	logs := &pipelinetest.SyncBuffer{}
	r, m := newRunner(t, brokers, k, logs, nil)
	l := openLoop(t, r)
	if !l.ticks {
		t.Fatal("a Ticker's loop does not tick")
	}
	waitFor(t, 60*time.Second, func() bool { return r.Assigned() == 1 })

	// A tick that changes nothing costs no transaction.
	if err := l.tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := value(m.Transactions.WithLabelValues("committed")); v != 0 {
		t.Fatalf("an empty tick committed %v transactions", v)
	}

	v := []byte("window closed")
	k.value.Store(&v)
	if err := l.tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := committedOutputs(t, brokers); !slices.Equal(got, []string{"window closed"}) {
		t.Fatalf("committed outputs %v", got)
	}
	if v := value(m.Transactions.WithLabelValues("committed")); v != 1 || r.Batches() != 0 {
		t.Fatalf("transactions{committed} %v, batches %d; want 1 and 0", v, r.Batches())
	}
	if d := k.dones(); !slices.Equal(d, []bool{true, true}) {
		t.Fatalf("worker told %v, want [true true]", d)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	limit := "10000"
	if _, err := kadm.NewClient(cl).AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, "out"); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 50_000)
	rand.Read(big)
	k.value.Store(&big)
	if err := l.tick(context.Background()); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("tick: %v, want MESSAGE_TOO_LARGE", err)
	}
	if n, reason := r.AbortStreak(); n != 1 || reason != AbortProduce || r.Aborted() != 0 {
		t.Fatalf("abort streak %d %q, aborted %d; want 1 %q 0", n, reason, r.Aborted(), AbortProduce)
	}
	if v := value(m.Transactions.WithLabelValues("aborted")); v != 1 {
		t.Fatalf("transactions{aborted} = %v", v)
	}
	if !strings.Contains(logs.String(), "tick aborted") || strings.Contains(logs.String(), "transaction aborted") {
		t.Fatalf("want the abort logged as a tick's:\n%s", logs.String())
	}
	if d := k.dones(); len(d) != 3 || d[2] {
		t.Fatalf("worker told %v, want false last", d)
	}
}

// TestLagGaugeFollowsFetchesAndRevocations: the lag an autoscaler reads is
// the last stable offset minus the next offset per fetched partition
// (never negative, only the input topic), and a revoked partition's lag
// disappears instead of freezing at its last value (which would keep a
// scaler adding replicas).
func TestLagGaugeFollowsFetchesAndRevocations(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := &Runner{cfg: Config{Input: "in", Metrics: NewMetrics(reg)}, owned: map[int32]bool{}, lastSeen: map[int32]time.Time{}}
	fetch := func(p int32, hwm, lso, last int64, topic string) kgo.Fetches {
		return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{{Partition: p,
			HighWatermark: hwm, LastStableOffset: lso, Records: []*kgo.Record{{Topic: topic, Partition: p, Offset: last}}}}}}}}
	}
	r.noteLag(fetch(0, 120, 100, 9, "in"))    // read_committed sees up to 100
	r.noteLag(fetch(1, 50, 0, 49, "in"))      // no stable offset reported: the high watermark
	r.noteLag(fetch(2, 10, 10, 20, "in"))     // a stale watermark: 0, never negative
	r.noteLag(fetch(0, 500, 500, 0, "other")) // not the input
	want := map[string]float64{"0": 90, "1": 0, "2": 0}
	if got := lagValues(t, reg); !maps.Equal(got, want) {
		t.Fatalf("lag %v, want %v", got, want)
	}
	r.noteRevoked(map[string][]int32{"in": {0}})
	delete(want, "0")
	if got := lagValues(t, reg); !maps.Equal(got, want) {
		t.Fatalf("after revoking 0: lag %v, want %v", got, want)
	}
}

func lagValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pipeline_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var topic, part string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "topic":
					topic = l.GetValue()
				case "partition":
					part = l.GetValue()
				}
			}
			if topic != "in" {
				t.Fatalf("lag of topic %q", topic)
			}
			out[part] = m.GetGauge().GetValue()
		}
	}
	return out
}
