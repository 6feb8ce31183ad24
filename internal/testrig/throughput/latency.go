package throughput

// The latency part of 'pipeline-dev bench throughput' (issue 16): after
// the throughput rounds, the privacy job runs in a fresh group on a fresh
// raw topic (so it sees only the paced events) while a paced producer
// writes raw events at 25 %, 50 % and 80 % of the job's measured maximum
// rate, one phase after the other, and a read_committed consumer of the
// clean topics measures, per event, the time from producing the raw event
// to the first of its clean records being visible to it. The same is
// measured at 50 % with a lower-latency setting of the runner's knobs
// (PIPELINE_PRODUCER_LINGER, by default 0 instead of 5ms, and
// PIPELINE_MAX_POLL_RECORDS, by default unchanged), in a second job on a
// second fresh topic. The paced producer and the consumer run in the
// bench's process, on the job's CPUs: 80 % of the rate measured without
// them can be more than the job sustains beside them.
//
// Matching a clean record to its raw event: the runner gives clean
// records the time they were produced, not the raw record's timestamp,
// and the privacy processor sets no provenance header on clean records.
// So the paced producer puts a header on each raw record (benchHeader:
// the event's sequence number and its send time in Unix nanoseconds), and
// the job's processor is wrapped (stamped) so that each clean output
// carries the same header, copied from its input. The copy costs the job
// a header of 16 bytes per clean record and no allocation per event.
// Each event is counted once, at its first clean record; events without
// any (every purpose denied, unknown subjects) are not measured, and the
// report says how many were.

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
)

// DefaultLatencyFractions are the loads the latency is measured at, as
// fractions of the privacy job's measured events/s.
var DefaultLatencyFractions = []float64{0.25, 0.5, 0.8}

// KnobFraction is the load at which the lower-latency setting is measured
// against the default one.
const KnobFraction = 0.5

// Latency is the latency section of the result.
type Latency struct {
	// MaxEventsPerS is the privacy job's events/s from the rounds: the
	// 100 % the fractions refer to.
	MaxEventsPerS float64 `json:"max_events_per_s"`
	// Seconds is each phase's measured duration; WarmupSeconds precede it
	// (sent, processed, not measured).
	Seconds       float64 `json:"seconds"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	// Runs are the phases: the default setting at each fraction, then the
	// lower-latency setting at KnobFraction.
	Runs []LatencyRun `json:"runs"`
}

// LatencyRun is one phase's figures. Latencies are from the raw event's
// produce call to the first of its clean records arriving at a
// read_committed consumer (same process, same clock), in milliseconds,
// exact percentiles over the measured events.
type LatencyRun struct {
	Setting        string  `json:"setting"` // "default" or "low_latency"
	MaxPollRecords int     `json:"max_poll_records"`
	LingerMs       float64 `json:"producer_linger_ms"`
	Fraction       float64 `json:"fraction"`
	TargetEPS      float64 `json:"target_events_per_s"`
	// AchievedEPS is the events sent in the measured window over its
	// length. A late tick sends what is owed, so it stays at the target
	// unless sending stopped; MaxTickGapMs, the longest time between two
	// ticks (5 ms when the producer is never held up), shows how bursty
	// the sending was on a busy machine.
	AchievedEPS  float64 `json:"achieved_events_per_s"`
	MaxTickGapMs float64 `json:"max_tick_gap_ms"`
	Sent         int64   `json:"sent"`     // events sent in the measured window
	Measured     int64   `json:"measured"` // of them, with a clean record seen
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	// Aborted counts the job's transactions aborted during the phase
	// (each redoes its batch: a latency spike, not a loss).
	Aborted uint64 `json:"aborted_transactions"`
	// Phases are the job's transactions during the phase: how many, and
	// the mean time of each in processing, producing and committing.
	Phases Phases `json:"phases"`
}

// benchHeader carries an event's sequence number and send time (8 + 8
// bytes, big endian) on its raw record and, copied by stamped, on its
// clean records.
const benchHeader = "pp-bench-sent"

// latencyWarmup is sent before each phase's measured window: the rate
// change and the consent cache settle.
const latencyWarmup = time.Second

// latencySetting is one runner configuration measured.
type latencySetting struct {
	name      string
	poll      int           // MaxPollRecords
	linger    time.Duration // PIPELINE_PRODUCER_LINGER (0: no wait)
	fractions []float64
}

// runLatency measures the latency section; maxEPS is the job's events/s.
func (b *bench) runLatency(ctx context.Context, maxEPS float64) (*Latency, error) {
	if maxEPS <= 0 {
		return nil, fmt.Errorf("latency: no maximum rate measured")
	}
	dur := time.Duration(b.opt.LatencySeconds) * time.Second
	lat := &Latency{MaxEventsPerS: maxEPS, Seconds: dur.Seconds(), WarmupSeconds: latencyWarmup.Seconds()}
	pool, err := b.latencyPool()
	if err != nil {
		return nil, err
	}
	def := latencySetting{name: "default", poll: b.cfg.Runner.MaxPollRecords, linger: b.cfg.Runner.ProducerLinger, fractions: DefaultLatencyFractions}
	low := latencySetting{name: "low_latency", poll: b.opt.LatencyPollRecords, linger: b.opt.LatencyLinger, fractions: []float64{KnobFraction}}
	if low.poll <= 0 {
		low.poll = def.poll
	}
	settings := []latencySetting{def, low}
	for i, s := range settings {
		runs, err := b.latencySetting(ctx, i, s, maxEPS, dur, pool)
		if err != nil {
			return nil, fmt.Errorf("latency, %s setting: %w", s.name, err)
		}
		lat.Runs = append(lat.Runs, runs...)
	}
	return lat, nil
}

// rawPool is a pool of encoded raw events the paced producer cycles
// through (values are shared; each send is a new record).
type rawPool struct{ keys, values [][]byte }

func (b *bench) latencyPool() (rawPool, error) {
	enc, err := producer.NewEncoder()
	if err != nil {
		return rawPool{}, err
	}
	// The seed's first events: their subjects are ones whose consent is
	// stored (seed.go).
	next := b.events()
	n := min(20000, max(b.opt.Subjects, 1000), b.opt.Events)
	p := rawPool{keys: make([][]byte, n), values: make([][]byte, n)}
	for i := range n {
		ev, _ := next(i)
		r, err := enc.Record("", &ev)
		if err != nil {
			return rawPool{}, err
		}
		p.keys[i], p.values[i] = r.Key, r.Value
	}
	return p, nil
}

// latencySetting runs one job with the setting's poll size and linger on a fresh
// raw topic and measures its phases.
func (b *bench) latencySetting(ctx context.Context, idx int, s latencySetting, maxEPS float64, dur time.Duration, pool rawPool) ([]LatencyRun, error) {
	raw := fmt.Sprintf("%s.latency%d.raw", b.id, idx)
	if _, err := b.adm.CreateTopics(ctx, int32(b.opt.Partitions), 1, nil, raw); err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.adm.DeleteTopics(dctx, raw)
	}()
	pp, err := wiring.BuildPrivacy(ctx, b.cfg, wiring.Deps{Redis: b.rdb, Registry: prometheus.NewRegistry(), Keys: b.keys})
	if err != nil {
		return nil, err
	}
	var clean []string
	for _, p := range purpose.All {
		clean = append(clean, wiring.CleanTopic(b.cfg, p))
	}
	group := fmt.Sprintf("%s.latency.%d", b.id, idx)
	rc := wiring.RunnerConfig(b.cfg, group, raw, slog.New(slog.NewTextHandler(b.opt.Log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	rc.TransactionalID, rc.MaxPollRecords = group, s.poll
	rc.ProducerLinger = wiring.RunnerLinger(s.linger)
	rc.Metrics = runner.NewMetrics(prometheus.NewRegistry())
	rn, err := runner.New(rc, newStamped(pp.Processor, clean))
	if err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- rn.Run(rctx) }()
	defer func() { stop(); <-errc }()
	if err := waitFor(ctx, 60*time.Second, errc, func() bool { return rn.Assigned() == b.opt.Partitions }); err != nil {
		return nil, fmt.Errorf("joining the group: %w", err)
	}
	con, err := b.startConsumer(ctx, clean)
	if err != nil {
		return nil, err
	}
	defer con.close()
	pr, err := b.cfg.Kafka.NewClient(kgo.DefaultProduceTopic(raw), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	var runs []LatencyRun
	var seq, produced int64
	// Prime, unmeasured: a trickle until the job has committed it and the
	// consumer has seen its clean records, so that the first phase does
	// not measure the transactional producer's and the consumer's start.
	pr0, err := pace(ctx, pr, pool, min(1000, maxEPS/10), 0, time.Second, &seq)
	if err != nil {
		return nil, err
	}
	produced += pr0.ok
	if err := waitFor(ctx, 60*time.Second, errc, func() bool {
		return int64(rn.Committed()) >= produced && len(con.latencies(pr0.start, pr0.end)) > 0
	}); err != nil {
		return nil, fmt.Errorf("priming: %w", err)
	}
	if err := con.catchUp(ctx, b.adm, clean, 10*time.Second); err != nil {
		return nil, err
	}
	for _, f := range s.fractions {
		rate := f * maxEPS
		aborted, phases0 := rn.Aborted(), readPhases(rc.Metrics)
		ph, err := pace(ctx, pr, pool, rate, latencyWarmup, dur, &seq)
		if err != nil {
			return nil, err
		}
		produced += ph.ok
		// Drain: every sent event committed by the job, then the consumer
		// at the end of the clean topics.
		if err := waitFor(ctx, 120*time.Second, errc, func() bool { return int64(rn.Committed()) >= produced }); err != nil {
			return nil, fmt.Errorf("the job did not commit the phase's events: %w", err)
		}
		if err := con.catchUp(ctx, b.adm, clean, 10*time.Second); err != nil {
			return nil, err
		}
		ms := con.latencies(ph.measuredFrom, ph.end)
		con.forget(ph.end)
		run := LatencyRun{Setting: s.name, MaxPollRecords: s.poll, LingerMs: float64(s.linger) / 1e6, Fraction: f, TargetEPS: rate,
			AchievedEPS: float64(ph.end-ph.measuredFrom) / max(ph.window.Seconds(), 1e-3), Sent: ph.end - ph.measuredFrom, Measured: int64(len(ms)),
			MaxTickGapMs: float64(ph.maxGap) / 1e6, Aborted: rn.Aborted() - aborted, Phases: readPhases(rc.Metrics).since(phases0)}
		if q := Percentiles(ms, 0.5, 0.99, 0.999, 1); q != nil {
			run.P50Ms, run.P99Ms, run.P999Ms, run.MaxMs = q[0], q[1], q[2], q[3]
		}
		if ph.errs > 0 {
			return nil, fmt.Errorf("%d raw events could not be produced", ph.errs)
		}
		b.logf("latency %-11s poll %5d linger %4.1f ms at %3.0f %% (%6.0f events/s, achieved %6.0f, longest tick gap %.0f ms): %d of %d events measured, p50 %.1f ms, p99 %.1f ms, p999 %.1f ms, max %.1f ms, %d aborted%s",
			s.name, s.poll, run.LingerMs, f*100, rate, run.AchievedEPS, run.MaxTickGapMs, run.Measured, run.Sent, run.P50Ms, run.P99Ms, run.P999Ms, run.MaxMs, run.Aborted, run.Phases)
		runs = append(runs, run)
	}
	return runs, nil
}

// waitFor polls cond every 5 ms until it holds, the runner stops or the
// timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, errc <-chan error, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
		select {
		case err := <-errc:
			return fmt.Errorf("runner stopped: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// paceTick is how often the paced producer releases a batch.
const paceTick = 5 * time.Millisecond

// due returns how many events are due at elapsed time since the start at
// rate events/s, given sent were sent: the pacing depends on the clock,
// not on how fast ticks come (a late tick sends what is owed).
func due(rate float64, elapsed time.Duration, sent int64) int64 {
	return max(0, int64(rate*elapsed.Seconds())-sent)
}

// phase is what one paced phase sent: the sequence numbers [start,
// end), those from measuredFrom on sent in the measured window of length
// window; ok produced, errs refused.
type phase struct {
	start, measuredFrom, end int64
	window                   time.Duration
	maxGap                   time.Duration // the longest time between two ticks in the window
	ok, errs                 int64
}

// pace produces raw events at rate for warmup + dur, asynchronously, each
// with its sequence number (from *seq) and send time in benchHeader, then
// flushes.
func pace(ctx context.Context, cl *kgo.Client, pool rawPool, rate float64, warmup, dur time.Duration, seq *int64) (phase, error) {
	ph := phase{start: *seq, measuredFrom: -1}
	var mu sync.Mutex
	promise := func(_ *kgo.Record, err error) {
		mu.Lock()
		if err != nil {
			ph.errs++
		} else {
			ph.ok++
		}
		mu.Unlock()
	}
	t := time.NewTicker(paceTick)
	defer t.Stop()
	begin := time.Now()
	var sent int64
	// The events sent at a tick are those due since the previous one: the
	// measured window runs from the tick before the first measured one to
	// the last tick.
	var prev, from, last time.Duration
	for {
		now := time.Now()
		elapsed := now.Sub(begin)
		if elapsed >= warmup+dur {
			break
		}
		if ph.measuredFrom < 0 && elapsed >= warmup {
			ph.measuredFrom, from = *seq, prev
		}
		if ph.measuredFrom >= 0 {
			ph.maxGap = max(ph.maxGap, elapsed-prev)
		}
		prev, last = elapsed, elapsed
		n := due(rate, elapsed, sent)
		ns := now.UnixNano()
		for range n {
			i := int(*seq % int64(len(pool.values)))
			h := make([]byte, 16)
			binary.BigEndian.PutUint64(h, uint64(*seq))
			binary.BigEndian.PutUint64(h[8:], uint64(ns))
			cl.Produce(ctx, &kgo.Record{Key: pool.keys[i], Value: pool.values[i], Headers: []kgo.RecordHeader{{Key: benchHeader, Value: h}}}, promise)
			*seq++
		}
		sent += n
		select {
		case <-ctx.Done():
			return ph, ctx.Err()
		case <-t.C:
		}
	}
	ph.end = *seq
	if ph.measuredFrom < 0 {
		ph.measuredFrom, from = ph.end, last
	}
	ph.window = last - from
	if err := cl.Flush(ctx); err != nil {
		return ph, err
	}
	return ph, nil
}

// consumer is the read_committed consumer of the clean topics: the
// latency of each event's first clean record, by sequence number.
type consumer struct {
	cl     *kgo.Client
	stop   context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	first  map[int64]float64          // sequence number -> ms
	next   map[string]map[int32]int64 // offset after the last record seen
	starts map[string]map[int32]int64
}

// startConsumer consumes the clean topics from their current ends.
func (b *bench) startConsumer(ctx context.Context, topics []string) (*consumer, error) {
	ends, err := b.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	c := &consumer{first: map[int64]float64{}, next: map[string]map[int32]int64{}, starts: map[string]map[int32]int64{}, done: make(chan struct{})}
	parts := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if parts[o.Topic] == nil {
			parts[o.Topic], c.next[o.Topic], c.starts[o.Topic] = map[int32]kgo.Offset{}, map[int32]int64{}, map[int32]int64{}
		}
		parts[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
		c.next[o.Topic][o.Partition], c.starts[o.Topic][o.Partition] = o.Offset, o.Offset
	})
	// FetchMaxWait as the Java consumer's fetch.max.wait.ms default (kgo's
	// is 5s): the broker does not always answer a read_committed fetch when
	// a transaction's markers move the last stable offset, and such a
	// fetch then waits out its maximum (seen here as 5 s stalls).
	if c.cl, err = b.cfg.Kafka.NewClient(kgo.ConsumePartitions(parts), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond)); err != nil {
		return nil, err
	}
	cctx, stop := context.WithCancel(ctx)
	c.stop = stop
	go c.run(cctx)
	return c, nil
}

func (c *consumer) run(ctx context.Context) {
	defer close(c.done)
	for {
		fs := c.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		now := time.Now().UnixNano()
		c.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			c.next[r.Topic][r.Partition] = r.Offset + 1
			for _, h := range r.Headers {
				if h.Key == benchHeader && len(h.Value) == 16 {
					s := int64(binary.BigEndian.Uint64(h.Value))
					if _, ok := c.first[s]; !ok {
						c.first[s] = float64(now-int64(binary.BigEndian.Uint64(h.Value[8:]))) / 1e6
					}
				}
			}
		})
		c.mu.Unlock()
	}
}

// catchUp waits until the consumer has read to the current end of every
// clean partition written since it started (the last record of a
// committed transaction is followed by its marker, hence end - 1), or
// until timeout (a partition whose last transaction aborted never gets
// there).
func (c *consumer) catchUp(ctx context.Context, adm *kadm.Client, topics []string, timeout time.Duration) error {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		behind := false
		c.mu.Lock()
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > c.starts[o.Topic][o.Partition] && c.next[o.Topic][o.Partition] < o.Offset-1 {
				behind = true
			}
		})
		c.mu.Unlock()
		if !behind || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// forget drops the events before to (a finished phase's).
func (c *consumer) forget(to int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.first {
		if s < to {
			delete(c.first, s)
		}
	}
}

// latencies returns the latencies of the events [from, to) seen so far.
func (c *consumer) latencies(from, to int64) []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v []float64
	for s := from; s < to; s++ {
		if ms, ok := c.first[s]; ok {
			v = append(v, ms)
		}
	}
	return v
}

func (c *consumer) close() {
	c.stop()
	c.cl.Close()
	<-c.done
}

// Percentiles returns the exact nearest-rank percentiles q (0 < q <= 1)
// of v: the smallest value with at least q of the values at or below it.
// nil when v is empty; v is not modified.
func Percentiles(v []float64, qs ...float64) []float64 {
	if len(v) == 0 {
		return nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	out := make([]float64, len(qs))
	for i, q := range qs {
		k := int(math.Ceil(q*float64(len(s)))) - 1
		out[i] = s[min(max(k, 0), len(s)-1)]
	}
	return out
}

// stamped wraps the privacy processor: each clean output gets its input's
// benchHeader, so the consumer can tell which raw event it came from and
// when that was sent.
type stamped struct {
	inner processors.Processor
	clean map[string]bool
}

func newStamped(inner processors.Processor, clean []string) *stamped {
	s := &stamped{inner: inner, clean: map[string]bool{}}
	for _, t := range clean {
		s.clean[t] = true
	}
	return s
}

func (s *stamped) Name() string { return s.inner.Name() }

func (s *stamped) NewWorker() processors.Worker {
	return &stampedWorker{Worker: s.inner.NewWorker(), clean: s.clean}
}

type stampedWorker struct {
	processors.Worker
	clean map[string]bool
	hdrs  []processors.Header // the outputs' new header lists, reused per batch
}

func (w *stampedWorker) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	// The previous batch's outputs were produced before this Process: the
	// arena can be reused. Outputs keep the array they were given even
	// when a later append moves it.
	w.hdrs = w.hdrs[:0]
	if sink, every := out.Sink(); sink != nil {
		// The runner streams outputs while the worker runs: stamp them
		// before they are handed over.
		out.Stream(func(outs []processors.Output) { w.stamp(in, outs, out); sink(outs) }, every)
		defer out.Stream(sink, every)
	}
	if err := w.Worker.Process(ctx, in, out); err != nil {
		return err
	}
	w.stamp(in, out.Outputs[out.Streamed():], out)
	return nil
}

// stamp gives each clean output of outs its input's benchHeader.
func (w *stampedWorker) stamp(in []processors.Record, outs []processors.Output, out *processors.Batch) {
	for j := range outs {
		o := &outs[j]
		if !w.clean[o.Topic] || o.Input < 0 || o.Input >= len(in) {
			continue
		}
		for _, h := range in[o.Input].Headers {
			if h.Key == benchHeader {
				start := len(w.hdrs)
				w.hdrs = append(w.hdrs, o.Headers...)
				w.hdrs = append(w.hdrs, processors.Header{Key: benchHeader, Value: out.Copy(h.Value)})
				o.Headers = w.hdrs[start:len(w.hdrs):len(w.hdrs)]
				break
			}
		}
	}
}
