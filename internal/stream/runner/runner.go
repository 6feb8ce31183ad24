// Package runner moves records between Kafka and a processor with exactly
// once semantics: it consumes a topic in a consumer group (cooperative
// sticky), splits each poll across workers by partition, and produces every
// output and commits the consumed offsets in one Kafka transaction
// (franz-go's GroupTransactSession). A replica killed at any moment, a
// rebalance, or a broker restart aborts the open transaction; the records
// are processed again from the last committed offsets and nothing is lost
// or duplicated for read_committed consumers. A processor may also read a
// second, co-partitioned topic in the same group and transactions
// (Config.Notices: the erasure notices of the k-anonymity processors).
//
// This package and topology are the only ones that import franz-go for
// processing (internal/stream/kafkaio and the producer hold small client helpers).
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/statestore"
	"github.com/privacy-pipeline/pipeline/processors"
)

// Config configures a Runner.
type Config struct {
	// Conn is the connection to the cluster (seed brokers, later TLS and
	// SASL): every client of the runner is built from it, the session and
	// the state store's.
	Conn kafkaconn.Config
	// Group is the consumer group id.
	Group string
	// Input is the topic to consume.
	Input string
	// Notices, when set, is a second topic consumed in the same group and
	// co-partitioned with Input: the same partition count (checked at the
	// start of every session) and records keyed like Input's
	// (privacy.erasures and the clean topics are both keyed by the
	// pseudonym, with the same default partitioner). The group then uses
	// the range balancer, which assigns partition p of both topics to the
	// same member, and a record of Notices partition p reaches the worker
	// of Input partition p in the same batch and transaction as Input's
	// records (processors.Record.Topic tells them apart); its offset is
	// committed with the batch, so a notice is applied to the partition's
	// state exactly once. The price: the range balancer is eager, so every
	// rebalance revokes all partitions (stateful workers restore them
	// from their checkpoints), and a group cannot mix replicas with and
	// without Notices (restart all of them to switch).
	Notices string
	// Workers is the number of parallel workers (default GOMAXPROCS).
	Workers int
	// MaxPollRecords bounds one batch, that is one transaction (default 5000).
	MaxPollRecords int
	// ProducerLinger is how long the producer waits to fill a batch of
	// outputs before sending it (kgo.ProducerLinger): longer trades
	// latency for fewer, larger produce requests. Zero: 5ms; negative: no
	// wait.
	ProducerLinger time.Duration
	// ClientID names the client in broker logs.
	ClientID string
	// TransactionalID identifies this replica's transactions. Give each
	// replica a stable, unique id (a pod or slot name): a restarted replica
	// with the same id fences its predecessor and aborts its open
	// transaction at once, instead of waiting for TransactionTimeout. Empty:
	// group + hostname + a random suffix.
	TransactionalID string
	// TransactionTimeout bounds how long a dead replica's open transaction
	// can block its partitions (default 10s).
	TransactionTimeout time.Duration
	// SessionTimeout is how long the group waits for a silent (killed)
	// member before giving its partitions to others (default 10s).
	SessionTimeout time.Duration
	// Log receives operational messages (never record contents).
	Log *slog.Logger
	// Metrics, when set, receives transaction and assignment metrics.
	Metrics *Metrics
	// ExtraOpts are appended to the session's kgo options (tests, tuning).
	ExtraOpts []kgo.Opt
	// OnCommit, when set, is called after each committed transaction with
	// its outputs (valid only during the call) and the commit time: the
	// moment they became visible to read_committed consumers. For
	// measurements such as withdrawal latency.
	OnCommit func(outputs []processors.Output, at time.Time)
	// StopGrace bounds how long, after ctx ends, the in-flight batch may
	// take to produce and commit (default 15s). A batch still waiting for a
	// consent decision is aborted at once instead: nothing of it is
	// visible, and the next owner of its partitions processes it again.
	StopGrace time.Duration
	// TickInterval is how often a worker that implements processors.Ticker
	// is ticked when no record arrives (default 1s).
	TickInterval time.Duration
	// Clock tells ticks the time (default time.Now).
	Clock func() time.Time
	// IdleAfter is how long an owned input partition must go without a
	// record (counted from its assignment) before a tick may act on it by
	// the wall clock (default 10 × TickInterval). A tick acts only on
	// partitions that are idle and caught up: their committed offset is at
	// the end of the partition (read_committed; a transaction marker may
	// follow the last record). A partition that stays idle but looks behind
	// (its tail is an aborted transaction, which read_committed never
	// delivers) is ticked after 6 × IdleAfter. So a new owner, or a replica
	// back from downtime, reads its backlog before any window closes by
	// the wall clock.
	IdleAfter time.Duration
	// AbortAlertAfter is how many transactions in a row may fail to commit
	// for the same reason before the runner reports it: a warning log with
	// the reason, Ready false (/readyz 503) and the consecutive-aborts
	// gauge past the alert threshold, until a transaction commits again
	// (default 5). Aborts are never retried silently forever.
	AbortAlertAfter int
}

// MaxRecordBytes is the producer's limit on one record's key, value and
// headers (kgo.ProducerBatchMaxBytes, kgo's default made explicit): a record
// above it is refused by the client with MESSAGE_TOO_LARGE, whatever the
// topic accepts. Processors keep their outputs below it and below the
// topic's max.message.bytes (see processors/privacy.Limits).
const MaxRecordBytes = 1_000_012

// Abort reasons: bounded label values of pipeline_transaction_aborts_total.
const (
	AbortStaleConsent = "stale_consent" // a decision of the batch went stale before commit
	AbortProcess      = "process_error" // a worker failed (e.g. the context ended while paused)
	AbortProduce      = "produce_error" // an output was refused (e.g. MESSAGE_TOO_LARGE)
	AbortGroup        = "group_changed" // the group rebalanced or the offsets could not be committed
	AbortEnd          = "end_error"     // ending the transaction failed; the session restarts
	AbortBegin        = "begin_error"   // beginning a transaction failed; the session restarts
)

// AbortReasons lists the abort reasons.
func AbortReasons() []string {
	return []string{AbortStaleConsent, AbortProcess, AbortProduce, AbortGroup, AbortEnd, AbortBegin}
}

// Runner runs one processor against Kafka.
type Runner struct {
	cfg      Config
	proc     processors.Processor
	running  atomic.Bool
	assigned atomic.Int64
	store    *statestore.Store // nil unless the processor is stateful

	forgetMu  sync.Mutex
	forget    []int32             // revoked partitions whose worker state must be dropped
	owned     map[int32]bool      // input partitions assigned to this replica
	lastSeen  map[int32]time.Time // when each owned partition was assigned or last delivered a record
	batches   atomic.Uint64
	committed atomic.Uint64
	aborted   atomic.Uint64

	streakMu     sync.Mutex
	streak       int    // transactions in a row that did not commit
	streakReason string // the reason of the last of them
	streakErr    string // its error text (no record contents)
	alerting     atomic.Bool
}

// New returns a runner.
func New(cfg Config, proc processors.Processor) (*Runner, error) {
	if cfg.Group == "" || cfg.Input == "" {
		return nil, errors.New("runner: Conn, Group and Input are required")
	}
	if cfg.Notices == cfg.Input {
		return nil, errors.New("runner: Notices must be another topic than Input")
	}
	if err := cfg.Conn.Validate(); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 5000
	}
	if cfg.ProducerLinger == 0 {
		cfg.ProducerLinger = 5 * time.Millisecond
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "privacy-pipeline-" + proc.Name()
	}
	if cfg.TransactionalID == "" {
		host, _ := os.Hostname()
		cfg.TransactionalID = fmt.Sprintf("%s-%s-%08x", cfg.Group, host, rand.Uint32())
	}
	if cfg.TransactionTimeout <= 0 {
		cfg.TransactionTimeout = 10 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 15 * time.Second
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 10 * cfg.TickInterval
	}
	if cfg.AbortAlertAfter <= 0 {
		cfg.AbortAlertAfter = 5
	}
	r := &Runner{cfg: cfg, proc: proc}
	if sp, ok := proc.(processors.Stateful); ok {
		r.store = statestore.New(cfg.Conn, cfg.Input, sp.StateTopic())
		sp.UseStore(r.store)
	}
	return r, nil
}

// Running reports whether the runner is connected and consuming.
func (r *Runner) Running() bool { return r.running.Load() }

// Assigned returns the number of partitions currently assigned.
func (r *Runner) Assigned() int { return int(r.assigned.Load()) }

// Ready reports whether the replica is connected, owns partitions, and is
// not failing to commit the same batch over and over (see AbortAlertAfter).
func (r *Runner) Ready() bool {
	return r.running.Load() && r.assigned.Load() > 0 && !r.alerting.Load()
}

// AbortStreak returns how many transactions in a row did not commit, and
// the reason of the last one.
func (r *Runner) AbortStreak() (int, string) {
	r.streakMu.Lock()
	defer r.streakMu.Unlock()
	return r.streak, r.streakReason
}

// noteCommit ends an abort streak.
func (r *Runner) noteCommit() {
	r.streakMu.Lock()
	was, reason := r.streak, r.streakReason
	r.streak, r.streakReason, r.streakErr = 0, "", ""
	r.streakMu.Unlock()
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.ConsecutiveAborts.Set(0)
	}
	if r.alerting.Swap(false) {
		r.cfg.Log.Warn("transactions commit again", "processor", r.proc.Name(), "aborted_in_a_row", was, "reason", reason)
	}
}

// noteAbort counts a transaction that did not commit. A streak of the same
// reason that reaches AbortAlertAfter is reported (warning, readiness,
// gauge); the error text carries no record contents (processors' errors
// name operations, not subjects; produce errors are Kafka error codes).
func (r *Runner) noteAbort(reason string, err error) {
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.Aborts.WithLabelValues(reason).Inc()
	}
	r.streakMu.Lock()
	if reason != r.streakReason {
		r.streak = 0
	}
	r.streak++
	r.streakReason = reason
	if err != nil {
		r.streakErr = err.Error()
	}
	n, msg := r.streak, r.streakErr
	r.streakMu.Unlock()
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.ConsecutiveAborts.Set(float64(n))
	}
	if n >= r.cfg.AbortAlertAfter && (!r.alerting.Swap(true) || n%100 == 0) {
		r.cfg.Log.Warn("transactions keep aborting for the same reason; not ready until one commits",
			"processor", r.proc.Name(), "reason", reason, "aborted_in_a_row", n, "err", msg)
	}
}

// Batches returns the number of committed transactions.
func (r *Runner) Batches() uint64 { return r.batches.Load() }

// Committed returns the number of input records whose outputs and offsets
// were committed.
func (r *Runner) Committed() uint64 { return r.committed.Load() }

// Aborted returns the number of aborted transactions.
func (r *Runner) Aborted() uint64 { return r.aborted.Load() }

// Run consumes until ctx ends. A failed session restarts from the committed
// offsets; Run returns only when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	workers := make([]processors.Worker, r.cfg.Workers)
	for i := range workers {
		workers[i] = r.proc.NewWorker()
	}
	if r.store != nil {
		defer r.store.Close()
	}
	backoff := 100 * time.Millisecond
	for {
		forgetAll(workers)
		err := r.session(ctx, workers)
		r.forgetMu.Lock()
		clear(r.owned)
		clear(r.lastSeen)
		r.forgetMu.Unlock()
		r.running.Store(false)
		r.setAssigned(0)
		if ctx.Err() != nil {
			return nil
		}
		r.cfg.Log.Warn("runner session ended; restarting from committed offsets", "processor", r.proc.Name(), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// forgetAll drops every stateful worker's state: a new session restores it
// from the committed checkpoints.
func forgetAll(workers []processors.Worker) {
	for _, w := range workers {
		if sw, ok := w.(processors.StatefulWorker); ok {
			sw.Forget(processors.AllPartitions)
		}
	}
}

// noteLag sets the lag gauge of every partition a poll fetched from: the
// last stable offset (what read_committed can see) minus the offset after
// the last record fetched.
func (r *Runner) noteLag(fetches kgo.Fetches) {
	if r.cfg.Metrics == nil {
		return
	}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Topic != r.cfg.Input || len(p.Records) == 0 {
			return
		}
		end := p.LastStableOffset
		if end <= 0 {
			end = p.HighWatermark
		}
		lag := end - (p.Records[len(p.Records)-1].Offset + 1)
		r.cfg.Metrics.Lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(max(lag, 0)))
	})
}

// noteRevoked remembers partitions that moved away (their state is dropped
// at the next batch) and removes their lag.
func (r *Runner) noteRevoked(m map[string][]int32) {
	if r.cfg.Metrics != nil {
		for _, p := range m[r.cfg.Input] {
			r.cfg.Metrics.Lag.DeleteLabelValues(r.cfg.Input, strconv.Itoa(int(p)))
		}
	}
	r.forgetMu.Lock()
	r.forget = append(r.forget, m[r.cfg.Input]...)
	for _, p := range m[r.cfg.Input] {
		delete(r.owned, p)
		delete(r.lastSeen, p)
	}
	r.forgetMu.Unlock()
}

// forgetRevoked drops the state of the partitions revoked since the last
// batch from every stateful worker.
func (r *Runner) forgetRevoked(workers []processors.Worker) {
	r.forgetMu.Lock()
	ps := r.forget
	r.forget = nil
	r.forgetMu.Unlock()
	for _, p := range ps {
		for _, w := range workers {
			if sw, ok := w.(processors.StatefulWorker); ok {
				sw.Forget(p)
			}
		}
	}
}

// setAssigned sets the number of assigned partitions and its gauge.
func (r *Runner) setAssigned(n int64) {
	r.assigned.Store(n)
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.Assigned.Set(float64(n))
	}
}

// checkNotices verifies that the Notices topic (if any) has exactly as
// many partitions as Input: otherwise a notice would reach a worker that
// holds none of its subject's state.
func (r *Runner) checkNotices(ctx context.Context, cl *kgo.Client) error {
	if r.cfg.Notices == "" {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(lctx, r.cfg.Input, r.cfg.Notices)
	if err != nil {
		return fmt.Errorf("runner: list topics: %w", err)
	}
	in, nt := td[r.cfg.Input], td[r.cfg.Notices]
	if err := errors.Join(in.Err, nt.Err); err != nil {
		return fmt.Errorf("runner: topics %s, %s: %w (run 'pipeline topology apply')", r.cfg.Input, r.cfg.Notices, err)
	}
	if len(in.Partitions) != len(nt.Partitions) {
		return fmt.Errorf("runner: notices topic %s has %d partitions, %s has %d: they must be co-partitioned", r.cfg.Notices, len(nt.Partitions), r.cfg.Input, len(in.Partitions))
	}
	return nil
}

// session runs one transactional session until it fails or ctx ends: it
// joins the group, then polls, and either ticks the workers or processes
// the poll in one transaction.
func (r *Runner) session(ctx context.Context, workers []processors.Worker) error {
	opts := r.sessionOpts()
	if r.store != nil {
		if err := r.store.CheckPartitions(ctx); err != nil {
			return err
		}
	}
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("runner: client: %w", err)
	}
	// Close leaves the group promptly, so the partitions move at once.
	defer sess.Close()
	if err := r.checkNotices(ctx, sess.Client()); err != nil {
		return err
	}
	r.running.Store(true)

	wctx, stop := graceContext(ctx, r.cfg.StopGrace)
	defer stop()
	l := r.newLoop(sess, wctx, workers)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fetches, err := l.poll(ctx)
		if err != nil {
			return err
		}
		l.r.noteLag(fetches)
		if l.tickDue(ctx, fetches) {
			if err := l.tick(ctx); err != nil {
				return err
			}
			continue
		}
		r.logFetchErrors(fetches)
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := l.transact(ctx, fetches); err != nil {
			return err
		}
	}
}

// sessionOpts are the options of the session's client: a cooperative
// sticky group member that reads committed records and produces in
// transactions, with the assignment callbacks that track owned partitions.
func (r *Runner) sessionOpts() []kgo.Opt {
	topics, balancer := []string{r.cfg.Input}, kgo.CooperativeStickyBalancer()
	if r.cfg.Notices != "" {
		// Co-partitioned: partition p of both topics on one member.
		topics, balancer = append(topics, r.cfg.Notices), kgo.RangeBalancer()
	}
	opts := []kgo.Opt{
		kgo.ClientID(r.cfg.ClientID),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(balancer),
		kgo.DisableAutoCommit(),
		kgo.RequireStableFetchOffsets(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionalID(r.cfg.TransactionalID),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		kgo.SessionTimeout(r.cfg.SessionTimeout),
		kgo.HeartbeatInterval(max(r.cfg.SessionTimeout/5, 500*time.Millisecond)),
		// Kafka 4 (KIP-890) may answer a transaction's first produce with
		// CONCURRENT_TRANSACTIONS while the previous one's markers are
		// still being written; franz-go retries it after a metadata
		// refresh, which waits out the metadata min age (5 s by default):
		// a 5 s stall after some commits. 100 ms bounds it.
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()),
		kgo.ProducerBatchMaxBytes(MaxRecordBytes),
		kgo.ProducerLinger(max(r.cfg.ProducerLinger, 0)),
		kgo.RecordPartitioner(r.partitioner()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.noteAssigned(m)
			r.setAssigned(r.assigned.Load() + int64(len(m[r.cfg.Input])))
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.noteRevoked(m)
			r.setAssigned(max(0, r.assigned.Load()-int64(len(m[r.cfg.Input]))))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.noteRevoked(m)
			r.setAssigned(max(0, r.assigned.Load()-int64(len(m[r.cfg.Input]))))
		}),
	}
	return append(append(opts, r.cfg.Conn.Opts()...), r.cfg.ExtraOpts...)
}

// noteAssigned remembers newly assigned input partitions as owned, and as
// seen now: their idle time counts from the assignment.
func (r *Runner) noteAssigned(m map[string][]int32) {
	r.forgetMu.Lock()
	defer r.forgetMu.Unlock()
	if r.owned == nil {
		r.owned, r.lastSeen = map[int32]bool{}, map[int32]time.Time{}
	}
	for _, p := range m[r.cfg.Input] {
		r.owned[p] = true
		r.lastSeen[p] = time.Now()
	}
}

// graceContext returns the context that producing and ending transactions
// use: it outlives ctx by grace, so that a stopping runner finishes the
// batch it holds. stop releases it.
func graceContext(ctx context.Context, grace time.Duration) (wctx context.Context, stop func()) {
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			wcancel()
		case <-wctx.Done():
		}
	})
	return wctx, func() {
		stopGrace()
		wcancel()
	}
}

// loop is one session's processing state: its client, the workers, and
// the buffers reused from poll to poll.
type loop struct {
	r        *Runner
	sess     *kgo.GroupTransactSession
	wctx     context.Context // produces and ends transactions (see graceContext)
	workers  []processors.Worker
	buckets  [][]processors.Record // each worker's records of the current batch
	hdrArena [][]processors.Header // record headers, reused across polls
	batches  []processors.Batch    // each worker's outputs of the current transaction
	out      *outputs              // produces them (streamed while processing, then the rest)
	ticks    bool                  // the workers implement processors.Ticker
	lastTick time.Time
	// pollMax shrinks after a batch went stale (a consent change landed
	// between its decisions and its commit) and grows back after commits,
	// so even under a storm of consent changes a batch small enough to
	// commit is eventually taken: staleness can never livelock the runner.
	pollMax int
}

// newLoop returns the processing state of a session that has just begun.
func (r *Runner) newLoop(sess *kgo.GroupTransactSession, wctx context.Context, workers []processors.Worker) *loop {
	n := len(workers)
	_, ticks := workers[0].(processors.Ticker)
	return &loop{
		r: r, sess: sess, wctx: wctx, workers: workers,
		buckets:  make([][]processors.Record, n),
		hdrArena: make([][]processors.Header, n),
		batches:  make([]processors.Batch, n),
		out:      newOutputs(wctx, sess, n, r.stateTopic),
		ticks:    ticks,
		lastTick: time.Now(),
		pollMax:  r.cfg.MaxPollRecords,
	}
}

// poll fetches up to pollMax records. When the workers tick it waits at
// most TickInterval, so that ticks run while no record arrives; the
// fetches may then be empty. A closed client is an error: the session
// cannot go on.
func (l *loop) poll(ctx context.Context) (kgo.Fetches, error) {
	pctx, pcancel := ctx, context.CancelFunc(func() {})
	if l.ticks {
		pctx, pcancel = context.WithTimeout(ctx, l.r.cfg.TickInterval)
	}
	fetches := l.sess.PollRecords(pctx, l.pollMax)
	pcancel()
	if fetches.IsClientClosed() {
		return fetches, errors.New("runner: client closed")
	}
	return fetches, nil
}

// tickDue reports whether to tick instead of processing the poll: the
// workers tick, TickInterval has passed since the last tick, and the poll
// brought no record. Once the interval has passed it starts again, even
// when records came (they are processed, and the tick waits its turn).
func (l *loop) tickDue(ctx context.Context, fetches kgo.Fetches) bool {
	if !l.ticks || ctx.Err() != nil || time.Since(l.lastTick) < l.r.cfg.TickInterval {
		return false
	}
	l.lastTick = time.Now()
	return fetches.NumRecords() == 0
}

// logFetchErrors logs the poll's fetch errors but those of an ended poll
// context (the tick timeout, a stop). The client retries on its own.
func (r *Runner) logFetchErrors(fetches kgo.Fetches) {
	fetches.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			r.cfg.Log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		}
	})
}

// transact processes one poll's records and, in one transaction, produces
// every output and commits the consumed offsets; anything failing aborts
// it, and the records are processed again from the committed offsets. It
// returns an error when the session must restart.
func (l *loop) transact(ctx context.Context, fetches kgo.Fetches) error {
	r := l.r
	if err := l.sess.Begin(); err != nil {
		r.noteAbort(AbortBegin, err)
		return fmt.Errorf("runner: begin transaction: %w", err)
	}
	r.forgetRevoked(l.workers)
	split(fetches, l.buckets, l.hdrArena, l.batches)
	if l.ticks {
		r.markSeen(fetches)
	}
	t0 := time.Now()
	for i := range l.batches { // the workers' final outputs are produced while they go on
		l.batches[i].Stream(l.out.sinks[i], StreamEvery)
	}
	procErr := l.process(ctx)
	for i := range l.batches {
		l.batches[i].Stream(nil, 0)
	}
	t1 := time.Now()
	var produceErr error
	if procErr == nil {
		l.out.rest(l.batches)
		produceErr = l.out.wait()
	}
	t2 := time.Now()
	stale := false
	if procErr == nil && produceErr == nil && !allCurrent(l.workers, l.buckets) {
		// A decision went stale (e.g. a withdrawal) after the outputs
		// were produced: abort and redo the batch, smaller.
		stale = true
		l.pollMax = max(1, l.pollMax/4)
		r.cfg.Log.Debug("batch outdated by a consent change; aborting to redo it", "processor", r.proc.Name())
	}
	committed, err := l.end(txnEnd{took: l.buckets, records: fetches.NumRecords(), procErr: procErr, produceErr: produceErr, stale: stale})
	if procErr != nil {
		// Records streamed before the failure: ending (aborting) the
		// transaction fails those still buffered; wait for every outcome
		// before their memory is reused.
		_ = l.out.wait()
	}
	if m := r.cfg.Metrics; m != nil {
		m.Phase.WithLabelValues(PhaseProcess).Observe(t1.Sub(t0).Seconds())
		m.Phase.WithLabelValues(PhaseProduce).Observe(t2.Sub(t1).Seconds())
		m.Phase.WithLabelValues(PhaseCommit).Observe(time.Since(t2).Seconds())
	}
	if err != nil {
		return err
	}
	if committed {
		l.pollMax = min(r.cfg.MaxPollRecords, l.pollMax*2)
	}
	return produceErr // the producer may be in a failed state: new session
}

// split resets the per-worker buffers and deals one poll's records to the
// workers by partition (partition p to worker p mod len(buckets)), so each
// partition's order is kept by one worker. Headers are copied into the
// worker's arena, which is reused from poll to poll.
func split(fetches kgo.Fetches, buckets [][]processors.Record, hdrArena [][]processors.Header, batches []processors.Batch) {
	for i := range buckets {
		buckets[i] = buckets[i][:0]
		clear(hdrArena[i]) // drop references to the previous poll's bytes
		hdrArena[i] = hdrArena[i][:0]
		batches[i].Reset()
	}
	n := len(buckets)
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		b := int(ftp.Partition) % n
		for _, rec := range ftp.Records {
			r := toRecord(rec)
			if len(rec.Headers) > 0 {
				start := len(hdrArena[b])
				for _, h := range rec.Headers {
					hdrArena[b] = append(hdrArena[b], processors.Header{Key: h.Key, Value: h.Value})
				}
				r.Headers = hdrArena[b][start:len(hdrArena[b]):len(hdrArena[b])]
			}
			buckets[b] = append(buckets[b], r)
		}
	})
}

// markSeen notes that the partitions that delivered records are active
// now: a tick leaves them alone for IdleAfter.
func (r *Runner) markSeen(fetches kgo.Fetches) {
	seen := time.Now()
	r.forgetMu.Lock()
	defer r.forgetMu.Unlock()
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if ftp.Topic == r.cfg.Input && len(ftp.Records) > 0 && r.lastSeen != nil {
			r.lastSeen[ftp.Partition] = seen
		}
	})
}

// process runs each worker on its records. A decision that went stale
// while processing (a withdrawal arrived) is redone, up to three times,
// when nothing was produced yet, which costs no abort; once a worker
// streamed outputs (Batch.Ready) the batch can only be aborted and redone
// (transact).
func (l *loop) process(ctx context.Context) error {
	err := l.r.processAll(ctx, l.workers, l.buckets, l.batches)
	for redo := 0; err == nil && redo < 3 && !streamedAny(l.batches) && !allCurrent(l.workers, l.buckets); redo++ {
		for i, w := range l.workers {
			if len(l.buckets[i]) > 0 {
				w.Done(false)
				l.batches[i].Reset()
			}
		}
		err = l.r.processAll(ctx, l.workers, l.buckets, l.batches)
	}
	return err
}

// streamedAny reports whether a worker's outputs were produced while it
// processed: a stale batch can then only be aborted, not redone.
func streamedAny(batches []processors.Batch) bool {
	for i := range batches {
		if batches[i].Streamed() > 0 {
			return true
		}
	}
	return false
}

// txnEnd is what ending a transaction needs to know about it.
type txnEnd struct {
	// tick marks a tick's transaction: every worker took part, and it is
	// not a batch of records (not counted in Batches, Committed or
	// Aborted, not reported to OnCommit).
	tick bool
	// took holds each worker's records of a batch: the workers with none
	// took no part and are not told the outcome.
	took [][]processors.Record
	// records is the number of input records the batch consumed.
	records int
	// procErr and produceErr are the processing and produce failures;
	// stale marks a decision that went stale after producing. Any of them
	// aborts the transaction.
	procErr, produceErr error
	stale               bool
}

// end ends the open transaction, the one path shared by batches and
// ticks: it commits when nothing failed (the outputs and the consumed
// offsets become visible together) and aborts otherwise, tells the workers
// that took part which, then counts and reports the outcome. It returns
// whether the transaction committed, and an error when ending it failed
// (the session must restart).
func (l *loop) end(t txnEnd) (bool, error) {
	r := l.r
	commit := t.procErr == nil && t.produceErr == nil && !t.stale
	committed, endErr := l.sess.End(l.wctx, kgo.TransactionEndTry(commit))
	for i, w := range l.workers {
		if t.tick || len(t.took[i]) > 0 {
			w.Done(committed && endErr == nil)
		}
	}
	switch {
	case endErr != nil:
		r.countTxn("error")
		r.noteAbort(AbortEnd, endErr)
		return false, fmt.Errorf("runner: end transaction: %w", endErr)
	case committed:
		if !t.tick {
			r.noteBatch(l.batches, t.records)
		}
		r.countTxn("committed")
		r.noteCommit()
		return true, nil
	}
	// Aborted (a rebalance, a processing or produce error): the session
	// rewound to the committed offsets; the records are processed again
	// by whoever owns their partitions.
	if !t.tick {
		r.aborted.Add(1)
	}
	r.countTxn("aborted")
	switch {
	case t.procErr != nil:
		r.noteAbort(AbortProcess, t.procErr)
	case t.produceErr != nil:
		r.noteAbort(AbortProduce, t.produceErr)
	case t.stale:
		r.noteAbort(AbortStaleConsent, nil)
	default:
		r.noteAbort(AbortGroup, nil)
	}
	switch {
	case t.tick && t.produceErr != nil:
		r.cfg.Log.Info("tick aborted", "processor", r.proc.Name(), "produce_err", t.produceErr)
	case !t.tick && (t.procErr != nil || t.produceErr != nil):
		r.cfg.Log.Info("transaction aborted", "processor", r.proc.Name(), "process_err", t.procErr, "produce_err", t.produceErr)
	}
	return false, nil
}

// noteBatch counts a committed batch of records and reports its outputs
// to OnCommit.
func (r *Runner) noteBatch(batches []processors.Batch, records int) {
	if r.cfg.OnCommit != nil {
		at := time.Now()
		for i := range batches {
			r.cfg.OnCommit(batches[i].Outputs, at)
		}
	}
	r.batches.Add(1)
	r.committed.Add(uint64(records))
}

// tick runs the workers' Tick: time, not a record, may change their state
// (idle windows close). What that publishes, with the checkpoints, goes out
// in a transaction of its own; a tick that changes nothing costs none, and
// a tick that fails is dropped (logged; the next one tries again).
func (l *loop) tick(ctx context.Context) error {
	r := l.r
	r.forgetRevoked(l.workers)
	for i := range l.batches {
		l.batches[i].Reset()
	}
	changed, err := l.tickWorkers(ctx)
	switch {
	case err != nil:
		l.doneAll(false)
		r.cfg.Log.Info("tick failed", "processor", r.proc.Name(), "err", err)
		return nil
	case !changed:
		l.doneAll(true)
		return nil
	}
	if err := l.sess.Begin(); err != nil {
		l.doneAll(false)
		return fmt.Errorf("runner: begin transaction: %w", err)
	}
	l.out.rest(l.batches)
	produceErr := l.out.wait()
	if _, err := l.end(txnEnd{tick: true, produceErr: produceErr}); err != nil {
		return err
	}
	return produceErr
}

// tickWorkers ticks each worker with the time and the idle, caught-up
// partitions it owns (see idlePartitions), stopping at the first error.
// It reports whether any worker produced an output or a checkpoint.
func (l *loop) tickWorkers(ctx context.Context) (changed bool, err error) {
	now := l.r.cfg.Clock()
	n := len(l.workers)
	parts := make([][]int32, n)
	for _, p := range l.r.idlePartitions(ctx, l.sess) {
		parts[int(p)%n] = append(parts[int(p)%n], p)
	}
	for i, w := range l.workers {
		if err := w.(processors.Ticker).Tick(ctx, now, parts[i], &l.batches[i]); err != nil {
			return false, err
		}
		changed = changed || l.batches[i].Len() > 0 || len(l.batches[i].Checkpoints) > 0
	}
	return changed, nil
}

// doneAll tells every worker whether its state since the last Done stands.
func (l *loop) doneAll(kept bool) {
	for _, w := range l.workers {
		w.Done(kept)
	}
}

// allCurrent reports whether every worker that processed records still
// holds current decisions.
func allCurrent(workers []processors.Worker, buckets [][]processors.Record) bool {
	for i, w := range workers {
		if len(buckets[i]) > 0 && !w.Current() {
			return false
		}
	}
	return true
}

// idlePartitions returns the owned input partitions a tick may act on:
// idle for IdleAfter and caught up, or idle for 6 × IdleAfter whatever
// their offsets say (see Config.IdleAfter).
func (r *Runner) idlePartitions(ctx context.Context, sess *kgo.GroupTransactSession) []int32 {
	now := time.Now()
	idle := map[int32]time.Duration{}
	r.forgetMu.Lock()
	for p := range r.owned {
		if d := now.Sub(r.lastSeen[p]); d >= r.cfg.IdleAfter {
			idle[p] = d
		}
	}
	r.forgetMu.Unlock()
	if len(idle) == 0 {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, max(r.cfg.TickInterval, 5*time.Second))
	ends, err := kadm.NewClient(sess.Client()).ListCommittedOffsets(lctx, r.cfg.Input)
	cancel()
	committed := sess.Client().CommittedOffsets()[r.cfg.Input]
	return eligible(idle, 6*r.cfg.IdleAfter, func(p int32) (int64, bool) {
		if err != nil {
			return 0, false
		}
		end, ok := ends.Lookup(r.cfg.Input, p)
		if !ok || end.Err != nil {
			return 0, false
		}
		at := int64(0)
		if c, ok := committed[p]; ok {
			at = c.Offset
		}
		return end.Offset - at, true
	})
}

// eligible picks, of the idle partitions (with how long each has been
// idle), those caught up - a lag of at most one offset, the marker that
// follows a committed transaction - or idle for at least stuck whatever
// their lag. lag reports false when the lag is unknown.
func eligible(idle map[int32]time.Duration, stuck time.Duration, lag func(int32) (int64, bool)) []int32 {
	var out []int32
	for p, d := range idle {
		if l, ok := lag(p); (ok && l <= 1) || d >= stuck {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// countTxn counts an ended transaction by outcome.
func (r *Runner) countTxn(outcome string) {
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.Transactions.WithLabelValues(outcome).Inc()
	}
}

// processAll runs the workers that have records in parallel, each on its
// own records into its own batch, and joins their errors.
func (r *Runner) processAll(ctx context.Context, workers []processors.Worker, buckets [][]processors.Record, batches []processors.Batch) error {
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i := range workers {
		if len(buckets[i]) == 0 {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = workers[i].Process(ctx, buckets[i], &batches[i])
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// toRecord converts a fetched record (headers aside: see split).
func toRecord(rec *kgo.Record) processors.Record {
	return processors.Record{
		Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp,
	}
}

// partitioner places checkpoints on the state partition of their input
// partition and every other record by the sticky key partitioner.
func (r *Runner) partitioner() kgo.Partitioner {
	def := kgo.StickyKeyPartitioner(nil)
	if r.store == nil {
		return def
	}
	return statePartitioner{topic: r.store.Topic(), def: def}
}

type statePartitioner struct {
	topic string
	def   kgo.Partitioner
}

func (p statePartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == p.topic {
		return manualPartitioner{}
	}
	return p.def.ForTopic(t)
}

type manualPartitioner struct{}

func (manualPartitioner) RequiresConsistency(*kgo.Record) bool { return true }
func (manualPartitioner) Partition(r *kgo.Record, n int) int {
	if int(r.Partition) < n {
		return int(r.Partition)
	}
	return int(r.Partition) % n // CheckPartitions prevents this
}

// stateTopic names the state topic of a stateful processor's checkpoints
// ("" when stateless: it then writes none).
func (r *Runner) stateTopic() string {
	if r.store == nil {
		return ""
	}
	return r.store.Topic()
}
