// Package throughput is 'pipeline-dev bench throughput' (issue 16, part
// 1): on the real broker and Redis it pre-produces N raw events once, then
// runs, interleaved and repeated, (a) a fan-out passthrough in
// transactions (each raw record copied to the five clean topics through
// the same exactly-once runner), (b) the same fan-out without
// transactions (a plain consumer group and producer), and (c) the privacy
// job, each from the start of the raw topic in a fresh consumer group,
// and reports events/s, CPU per event (this process's, from
// /proc/self/stat) and peak RSS of each, and the ratios within the run.
// Every figure is a ratio against a baseline measured in the same run:
// the machines are shared and noisy.
package throughput

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/topology"
)

// Options configure a measurement.
type Options struct {
	Events   int // raw events pre-produced (default 200000)
	Subjects int // distinct subjects (default 50000)
	// AllGranted grants every subject every purpose (the job then writes
	// as many records as the passthrough); by default the subjects have
	// the synthetic mix of synth.Consent (about 2.4 clean records per
	// event: some purposes denied, withdrawn or never chosen, some
	// subjects unknown), which is what a consent job sees.
	AllGranted bool
	Partitions int // of every topic (default 6)
	Rounds     int // interleaved repetitions of the three runs (default 3)
	// LatencySeconds is the measured duration of each latency phase
	// (latency.go); 0 skips the latency part.
	LatencySeconds int
	// LatencyPollRecords and LatencyLinger are the runner's MaxPollRecords
	// (0: PIPELINE_MAX_POLL_RECORDS, as the default setting) and producer
	// linger (0: no wait) of the lower-latency setting measured at
	// KnobFraction against the configured ones.
	LatencyPollRecords int
	LatencyLinger      time.Duration
	Log                io.Writer
	// CPUProfile, when set, is the file that receives a CPU profile of
	// the privacy job's last round (go tool pprof).
	CPUProfile string

	// The scaling knobs (scale.go); zero keeps the defaults above.
	//
	// Purposes, 1-5, grants every subject only the first k purposes of
	// purpose.All (the others denied): the job writes k records per event.
	Purposes int
	// RecordBytes is the raw event size aimed at: the free-text message is
	// padded above the natural size, optional fields are dropped below it
	// (Result.EventBytes is what was reached).
	RecordBytes int
	// Replicas runs the runner modes as this many runner instances in this
	// process, each with its own transactional id, in one group (0: the
	// one runner of the default path).
	Replicas int
	// Kanon adds mode (d): the k-anonymity processors that read the clean
	// topics (KanonModes), after the job in each round.
	Kanon bool
	// Modes, when set, replaces the runs of each round (the sweeps run the
	// job and passthrough_tx only).
	Modes []Mode
}

// Mode names one of the compared runs.
type Mode string

// The runs.
const (
	PassthroughTx   Mode = "passthrough_tx"
	PassthroughNoTx Mode = "passthrough_no_tx"
	Job             Mode = "privacy_job"
)

// Modes are the runs, in the order each round runs them.
var Modes = []Mode{PassthroughTx, PassthroughNoTx, Job}

// Figures are one mode's figures: medians over the rounds (peak RSS: the
// largest).
type Figures struct {
	EventsPerS     float64   `json:"events_per_s"`
	CPUMicrosEvent float64   `json:"cpu_us_per_event"`
	PeakRSSMB      float64   `json:"peak_rss_mb"`
	RecordsOut     int64     `json:"records_out"`
	RoundsEPS      []float64 `json:"rounds_events_per_s"`
	// Phases are the last round's (via the runner only).
	Phases *Phases `json:"phases,omitempty"`
	// RedisRoundTrips is the bench's Redis client's round trips (a
	// command or a pipeline each) per 1,000 events, over the whole run;
	// CacheHitRate the consent cache's hits / (hits + misses) (the job).
	// Medians over the rounds.
	RedisRoundTrips float64 `json:"redis_round_trips_per_1000_events"`
	CacheHitRate    float64 `json:"consent_cache_hit_rate,omitempty"`
	// InputRecords is what one run read (the kanon modes: clean records;
	// their events_per_s and cpu_us_per_event are per input record).
	InputRecords int64 `json:"input_records,omitempty"`
}

// Result is the measurement; its JSON form is the last line of
// 'pipeline-dev bench throughput --json'.
type Result struct {
	Events     int              `json:"events"`
	Subjects   int              `json:"subjects"`
	Partitions int              `json:"partitions"`
	Rounds     int              `json:"rounds"`
	AllGranted bool             `json:"all_granted"`
	EventBytes float64          `json:"event_bytes"`
	Modes      map[Mode]Figures `json:"modes"`
	// The ratios of the goals, within this run.
	JobOverPassthroughTx    float64 `json:"job_over_passthrough_tx"`
	JobOverPassthroughNoTx  float64 `json:"job_over_passthrough_no_tx"`
	JobCPUOverPassthroughTx float64 `json:"job_cpu_over_passthrough_tx"`
	// Latency is the end-to-end latency at fractions of the job's rate
	// (nil when skipped).
	Latency *Latency `json:"latency,omitempty"`
	// The scaling knobs of this run (Options), and the sweeps when asked.
	Purposes    int      `json:"purposes,omitempty"`
	RecordBytes int      `json:"record_bytes,omitempty"`
	Replicas    int      `json:"replicas,omitempty"`
	Scaling     *Scaling `json:"scaling,omitempty"`
}

type bench struct {
	opt       Options
	id        string
	cfg       config.Config
	rdb       *redis.Client
	adm       *kadm.Client
	cl        *kgo.Client
	keys      *pseudonym.Keyring
	start     time.Time
	outs      []string // the fan-out's five topics
	bytes     int64
	rtt       *roundTrips            // counts b.rdb's round trips
	commits   commits                // the runners' committed outputs per topic
	cleanHeld int64                  // records read back from the clean topics (replicas)
	regs      []*prometheus.Registry // the job's registries of the current run
}

// Run measures.
func Run(ctx context.Context, opt Options) (Result, error) {
	if opt.Events <= 0 {
		opt.Events = 200000
	}
	if opt.Subjects <= 0 {
		opt.Subjects = 50000
	}
	if opt.Partitions <= 0 {
		opt.Partitions = 6
	}
	if opt.Rounds <= 0 {
		opt.Rounds = 3
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	if os.Getenv("PIPELINE_KAFKA_BROKERS") == "" || os.Getenv("PIPELINE_REDIS_ADDR") == "" {
		return Result{}, errors.New(`bench throughput: needs a real Kafka and Redis: eval "$(scripts/services up)" first`)
	}
	b := &bench{opt: opt, start: time.Now()}
	cleanup, err := b.setup(ctx)
	defer cleanup()
	if err != nil {
		return Result{}, err
	}
	runs := map[Mode][]run{}
	for round := 1; round <= opt.Rounds; round++ {
		for _, m := range b.modes() {
			r, err := b.runMode(ctx, m, round)
			if err != nil {
				return Result{}, fmt.Errorf("bench throughput: %s, round %d: %w", m, round, err)
			}
			runs[m] = append(runs[m], r)
			b.logf("round %d/%d %-18s %8.0f events/s, %6.1f us CPU/event, peak RSS %4.0f MB, %d records out%s",
				round, opt.Rounds, m, r.eps, r.cpuUS, r.rssMB, r.out, r.phases)
		}
	}
	res := Result{Events: opt.Events, Subjects: opt.Subjects, Partitions: opt.Partitions, Rounds: opt.Rounds,
		AllGranted: opt.AllGranted, EventBytes: float64(b.bytes) / float64(opt.Events), Modes: map[Mode]Figures{},
		Purposes: opt.Purposes, RecordBytes: opt.RecordBytes, Replicas: opt.Replicas}
	for m, rs := range runs {
		var f Figures
		var eps, cpu, rtt, hit []float64
		for _, r := range rs {
			eps, cpu = append(eps, r.eps), append(cpu, r.cpuUS)
			rtt, hit = append(rtt, r.rttPer1k), append(hit, r.hitRate)
			f.PeakRSSMB, f.RecordsOut, f.InputRecords = max(f.PeakRSSMB, r.rssMB), r.out, r.in
			if r.phases.Batches > 0 {
				ph := r.phases
				f.Phases = &ph
			}
		}
		f.RoundsEPS = append([]float64(nil), eps...)
		f.EventsPerS, f.CPUMicrosEvent = median(eps), median(cpu)
		f.RedisRoundTrips, f.CacheHitRate = median(rtt), median(hit)
		res.Modes[m] = f
	}
	res.JobOverPassthroughTx = ratio(res.Modes[Job].EventsPerS, res.Modes[PassthroughTx].EventsPerS)
	res.JobOverPassthroughNoTx = ratio(res.Modes[Job].EventsPerS, res.Modes[PassthroughNoTx].EventsPerS)
	res.JobCPUOverPassthroughTx = ratio(res.Modes[Job].CPUMicrosEvent, res.Modes[PassthroughTx].CPUMicrosEvent)
	if opt.LatencySeconds > 0 {
		if res.Latency, err = b.runLatency(ctx, res.Modes[Job].EventsPerS); err != nil {
			return Result{}, fmt.Errorf("bench throughput: %w", err)
		}
	}
	return res, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.opt.Log, "throughput %6.1fs: %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// setup: names of the run's own, the topics, consent for every subject in
// Redis, the raw events produced once.
func (b *bench) setup(ctx context.Context) (func(), error) {
	var cleanup []func()
	done := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	cfg, err := config.Load()
	if err != nil {
		return done, err
	}
	b.id = fmt.Sprintf("tbench-%08x", rand.Uint32())
	n := &cfg.Names
	n.RawTopic, n.CleanTopicTemplate, n.QuarantineTopic, n.AuditTopic = b.id+".raw", b.id+".clean.{purpose}", b.id+".quarantine", b.id+".audit"
	n.ConsentTopic, n.KeysTopic, n.ErasuresTopic, n.RequestsTopic = b.id+".consent", b.id+".keys", b.id+".erasures", b.id+".requests"
	n.StateTopicTemplate, n.AggTopicTemplate, n.KanonTopicTemplate = b.id+".state.{processor}", b.id+".agg.{purpose}.{name}", b.id+".kanon.{purpose}"
	cfg.Consent.KeyPrefix = b.id + ":consent:"
	b.cfg = cfg
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		return done, err
	}
	b.rdb = redis.NewClient(ropts)
	b.rtt = &roundTrips{}
	b.rdb.AddHook(b.rtt)
	cleanup = append(cleanup, func() { b.rdb.Close() })
	if b.cl, err = cfg.Kafka.NewClient(kgo.ProducerBatchCompression(kgo.NoCompression())); err != nil {
		return done, err
	}
	cleanup = append(cleanup, b.cl.Close)
	b.adm = kadm.NewClient(b.cl)
	names, err := wiring.Names(cfg)
	if err != nil {
		return done, err
	}
	topo := topology.Default(names, topology.Options{Partitions: int32(b.opt.Partitions), Replication: 1})
	for _, p := range purpose.All {
		b.outs = append(b.outs, b.id+".passthrough."+p.String())
	}
	if _, err := topology.Apply(ctx, b.adm, topo); err != nil {
		return done, err
	}
	if _, err := b.adm.CreateTopics(ctx, int32(b.opt.Partitions), 1, nil, b.outs...); err != nil {
		return done, err
	}
	cleanup = append(cleanup, func() {
		ts := append([]string(nil), b.outs...)
		for _, t := range topo.Topics {
			ts = append(ts, t.Name)
		}
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.adm.DeleteTopics(dctx, ts...)
		b.rdb.Del(dctx, b.rdb.Keys(dctx, b.id+":*").Val()...)
	})
	if b.keys, err = pseudonym.GenerateKeyring(purpose.Names(), "bench"); err != nil {
		return done, err
	}
	if err := b.seed(ctx); err != nil {
		return done, err
	}
	return done, nil
}

// run is one mode's one round.
type run struct {
	eps, cpuUS, rssMB float64
	out               int64
	phases            Phases
	in                int64   // records read (the kanon modes)
	rttPer1k, hitRate float64 // Redis round trips per 1,000 events, consent cache hit rate
}

// runMode runs one mode from the start of the raw topic in a fresh group
// until every event is committed (or, without transactions, consumed and
// its copies acknowledged). The clock and the CPU count start at the
// first committed batch, so the group join and the producer's start are
// not measured; the events before it are left out of the rate.
func (b *bench) runMode(ctx context.Context, m Mode, round int) (run, error) {
	group := fmt.Sprintf("%s.%s.%d", b.id, m, round)
	if m == Job && round == b.opt.Rounds && b.opt.CPUProfile != "" {
		stop, err := startProfile(b.opt.CPUProfile)
		if err != nil {
			return run{}, err
		}
		defer stop()
	}
	debug.FreeOSMemory() // the previous run's and the seed's garbage is not this run's RSS
	rss := startRSS(ctx)
	b.rtt.reset()
	b.regs = nil
	var st start
	var out int64
	var err error
	switch m {
	case PassthroughNoTx:
		out, err = b.noTx(ctx, group, &st)
	case KanonAggregates, KanonRecords:
		out, err = b.kanon(ctx, m, group, &st)
	default:
		if b.opt.Replicas > 0 {
			out, err = b.replicas(ctx, m, group, &st)
		} else {
			out, err = b.viaRunner(ctx, m, group, round, &st)
		}
	}
	end, cpuEnd := time.Now(), cpuTicks()
	if !st.end.IsZero() {
		end, cpuEnd = st.end, st.endCPU
	}
	wall := end.Sub(st.at)
	cpu := cpuEnd - st.cpu
	peak := rss()
	if err != nil {
		return run{}, err
	}
	total := int64(b.opt.Events)
	if st.total > 0 {
		total = st.total
	}
	n := float64(total - st.events)
	if n <= 0 || wall <= 0 {
		return run{}, fmt.Errorf("nothing measured after the first committed batch (%d of %d records in it): run more events", st.events, total)
	}
	r := run{eps: n / wall.Seconds(), cpuUS: float64(cpu) * 1e4 / n, rssMB: peak, out: out,
		rttPer1k: float64(b.rtt.load()) * 1000 / float64(b.opt.Events), phases: st.phases}
	if st.total > 0 {
		r.in = st.total
	}
	if m == Job {
		if r.hitRate, err = cacheHitRate(b.regs); err != nil {
			return run{}, err
		}
	}
	return r, nil
}

// String formats the phases for the progress line ("" when none).
func (p Phases) String() string {
	if p.Batches == 0 {
		return ""
	}
	return fmt.Sprintf("; %d batches, per batch %.1f ms process, %.1f ms produce, %.1f ms commit", p.Batches, p.ProcessMs, p.ProduceMs, p.CommitMs)
}

// Phases are the mean milliseconds one batch's transaction spent in each
// phase (runner.Metrics.Phase), and the batches.
type Phases struct {
	Batches   int     `json:"batches"`
	ProcessMs float64 `json:"process_ms"`
	ProduceMs float64 `json:"produce_ms"`
	CommitMs  float64 `json:"commit_ms"`
}

// since returns the phases of the batches after p0 (both read from one
// runner's metrics).
func (p Phases) since(p0 Phases) Phases {
	n := p.Batches - p0.Batches
	if n <= 0 {
		return Phases{}
	}
	d := func(a, a0 float64) float64 { return (a*float64(p.Batches) - a0*float64(p0.Batches)) / float64(n) }
	return Phases{Batches: n, ProcessMs: d(p.ProcessMs, p0.ProcessMs), ProduceMs: d(p.ProduceMs, p0.ProduceMs), CommitMs: d(p.CommitMs, p0.CommitMs)}
}

func readPhases(m *runner.Metrics) Phases {
	var p Phases
	mean := func(ph string) float64 {
		var d dto.Metric
		h, ok := m.Phase.WithLabelValues(ph).(prometheus.Histogram)
		if !ok || h.Write(&d) != nil || d.GetHistogram().GetSampleCount() == 0 {
			return 0
		}
		p.Batches = int(d.GetHistogram().GetSampleCount())
		return d.GetHistogram().GetSampleSum() * 1000 / float64(d.GetHistogram().GetSampleCount())
	}
	p.ProcessMs, p.ProduceMs, p.CommitMs = mean(runner.PhaseProcess), mean(runner.PhaseProduce), mean(runner.PhaseCommit)
	return p
}

// start is when the first batch was committed: the time, the CPU ticks
// and the events committed with it.
type start struct {
	at     time.Time
	cpu    int64
	events int64
	phases Phases // of the transactions (via the runner)
	// end and endCPU, when set, end the measurement instead of the
	// return (the kanon modes: their last commit); total, when set, is
	// the records to count instead of the events.
	end    time.Time
	endCPU int64
	total  int64
}

func (s *start) mark(events int64) {
	if s.at.IsZero() {
		s.at, s.cpu, s.events = time.Now(), cpuTicks(), events
	}
}

// processor builds the mode's processor: the privacy processor with its
// own registry (the job), or the fan-out counting into counter.
func (b *bench) processor(ctx context.Context, m Mode, counter *atomic.Int64) (processors.Processor, error) {
	if m == Job {
		pp, err := wiring.BuildPrivacy(ctx, b.cfg, wiring.Deps{Redis: b.rdb, Registry: b.jobRegistry(), Keys: b.keys})
		if err != nil {
			return nil, err
		}
		return pp.Processor, nil
	}
	return &fanout{outs: b.outs, n: counter}, nil
}

// viaRunner runs the exactly-once runner with the privacy processor or the
// fan-out.
func (b *bench) viaRunner(ctx context.Context, m Mode, group string, round int, st *start) (int64, error) {
	var counter *atomic.Int64
	if m != Job {
		counter = &atomic.Int64{}
	}
	proc, err := b.processor(ctx, m, counter)
	if err != nil {
		return 0, err
	}
	rc := wiring.RunnerConfig(b.cfg, group, b.cfg.Names.RawTopic, slog.New(slog.DiscardHandler))
	rc.TransactionalID = group
	rc.Metrics = runner.NewMetrics(prometheus.NewRegistry())
	defer func() { st.phases = readPhases(rc.Metrics) }()
	rc.OnCommit = b.commits.hook(rc.OnCommit)
	rn, err := runner.New(rc, proc)
	if err != nil {
		return 0, err
	}
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- rn.Run(rctx) }()
	for int(rn.Committed()) < b.opt.Events {
		if c := rn.Committed(); c > 0 {
			st.mark(int64(c))
		}
		select {
		case err := <-errc:
			stop()
			return 0, fmt.Errorf("runner stopped: %w", err)
		case <-ctx.Done():
			stop()
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	stop()
	if err := <-errc; err != nil {
		return 0, err
	}
	if counter != nil {
		return counter.Load(), nil
	}
	return b.countOut(ctx, round)
}

// countOut counts the clean topics' records (the job's output of every
// round so far, divided by the rounds: the job writes where the product
// writes).
func (b *bench) countOut(ctx context.Context, round int) (int64, error) {
	var ts []string
	for _, p := range purpose.All {
		ts = append(ts, strings.ReplaceAll(b.cfg.Names.CleanTopicTemplate, "{purpose}", p.String()))
	}
	ends, err := b.adm.ListEndOffsets(ctx, ts...)
	if err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n / int64(round), nil
}

// noTx is the fan-out with a plain consumer group and producer: poll,
// produce each record to the five topics, wait for the acknowledgements,
// commit.
func (b *bench) noTx(ctx context.Context, group string, st *start) (int64, error) {
	cl, err := b.cfg.Kafka.NewClient(kgo.ConsumerGroup(group), kgo.ConsumeTopics(b.cfg.Names.RawTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var consumed, out int64
	for consumed < int64(b.opt.Events) {
		fs := cl.PollRecords(ctx, 5000)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			consumed++
			for _, t := range b.outs {
				recs = append(recs, &kgo.Record{Topic: t, Key: r.Key, Value: r.Value})
			}
		})
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return 0, err
		}
		out += int64(len(recs))
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return 0, err
		}
		if consumed > 0 {
			st.mark(consumed)
		}
	}
	return out, nil
}

// fanout is the passthrough processor: every input record to every one of
// its topics.
type fanout struct {
	outs []string
	n    *atomic.Int64
}

func (f *fanout) Name() string { return "passthrough" }

func (f *fanout) NewWorker() processors.Worker { return &fanoutWorker{f: f} }

type fanoutWorker struct {
	f       *fanout
	pending int64
}

func (w *fanoutWorker) Process(_ context.Context, in []processors.Record, out *processors.Batch) error {
	for i := range in {
		for _, t := range w.f.outs {
			out.Add(i, t, in[i].Key, in[i].Value)
		}
	}
	w.pending = int64(len(in) * len(w.f.outs))
	return nil
}

func (w *fanoutWorker) Done(committed bool) {
	if committed {
		w.f.n.Add(w.pending)
	}
	w.pending = 0
}

func (w *fanoutWorker) Current() bool { return true }

// cpuTicks is this process's user + system CPU time in clock ticks (100
// per second on Linux).
func cpuTicks() int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// startRSS samples this process's resident set every 50 ms until the
// returned function is called, which returns the peak in MB.
func startRSS(ctx context.Context) func() float64 {
	var peak atomic.Int64
	sample := func() {
		if kb := rssKB(); kb > peak.Load() {
			peak.Store(kb)
		}
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			sample()
			select {
			case <-sctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() float64 {
		stop()
		<-done
		sample()
		return float64(peak.Load()) / 1024
	}
}

func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// startProfile starts a CPU profile into path; the returned function
// stops it and closes the file.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench throughput: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench throughput: cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
