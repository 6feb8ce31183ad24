// Package withdrawal measures withdrawal latency (SPEC 3.3) against a real
// Kafka broker and Redis: under a continuous load of raw events it withdraws
// consent for a sample of subjects through the consent API, and records, for
// each withdrawal, the time from the API accepting it to the last clean
// record for that subject and purpose published after it (as seen by a
// read_committed consumer tailing the clean topics). The whole path is the
// production one: API -> consent topic -> consent-sync -> Redis +
// invalidation -> privacy processor (exactly once) -> clean topic.
package withdrawal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
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
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/topology"
)

// Options configure a measurement.
type Options struct {
	Rate        int           // raw events per second (default 20000)
	Withdrawals int           // withdrawals to measure (default 50)
	Subjects    int           // subjects (default 2000)
	Bound       time.Duration // a violation is a record published later than this (default 1s)
	Log         io.Writer
}

// Result is the measurement; its JSON form is the last line of
// 'pipeline-dev bench withdrawal --json'.
type Result struct {
	RateEPS      float64 `json:"rate_eps"`
	ProcessedEPS float64 `json:"processed_eps"`
	Withdrawals  int     `json:"withdrawals"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	Violations   int     `json:"violations"`
	BoundMs      float64 `json:"bound_ms"`
	// SeenP99Ms is the p99 as seen by a read_committed consumer tailing the
	// clean topics on the same machine (later than the commit by its lag).
	SeenP99Ms float64 `json:"consumer_seen_p99_ms"`
	// SyncP50Ms and SyncP99Ms: from acceptance to consent-sync announcing
	// the change to the processors (the consent half of the path).
	SyncP50Ms float64 `json:"sync_p50_ms"`
	SyncP99Ms float64 `json:"sync_p99_ms"`
}

// withdrawalRec is one withdrawal: the pair withdrawn and when the API
// accepted it.
type withdrawalRec struct {
	subject  string
	purpose  purpose.Purpose
	accepted time.Time
}

// subjectPurpose is one (subject, purpose) pair of the sample.
type subjectPurpose struct {
	s string
	p purpose.Purpose
}

// bench is one measurement: its configuration, the running components,
// and what the observers record (under mu).
type bench struct {
	opt   Options
	start time.Time
	id    string // prefixes every topic, group and key of the run
	cfg   config.Config

	rdb     *redis.Client
	adm     *kadm.Client
	keys    *pseudonym.Keyring
	pp      *wiring.Privacy
	prodCl  *kgo.Client // consent grants and the API's changes
	rn      *runner.Runner
	srv     *httptest.Server
	rng     *rand.Rand
	sample  []int    // the subjects that withdraw
	cleanup []func() // run in reverse order when Run returns

	rctx     context.Context // the components; stopAll ends it
	stopAll  context.CancelFunc
	stopTail context.CancelFunc // ends the tailing consumer
	wg       sync.WaitGroup

	// the load
	loadCl    *kgo.Client
	stopLoad  context.CancelFunc
	loadDone  chan struct{}
	loadStart time.Time
	loadEnd   time.Time // set when the load stops (read after loadDone)
	produced  int
	acked     atomic.Int64

	mu            sync.Mutex
	lastCommitted map[subjectPurpose][]time.Time // commit times of the sample's clean records
	lastSeen      map[subjectPurpose][]time.Time // when the tailing consumer saw them
	announced     map[string][]time.Time         // when consent-sync announced each subject
	bySubject     map[purpose.Purpose]map[string]string
	topicPurpose  map[string]purpose.Purpose
	published     int // clean records seen by the tailing consumer
}

// Run measures.
func Run(ctx context.Context, opt Options) (Result, error) {
	opt = opt.withDefaults()
	if os.Getenv("PIPELINE_KAFKA_BROKERS") == "" || os.Getenv("PIPELINE_REDIS_ADDR") == "" {
		return Result{}, errors.New(`bench withdrawal: needs a real Kafka and Redis: eval "$(scripts/services up)" first`)
	}
	b := &bench{opt: opt, start: time.Now(), lastCommitted: map[subjectPurpose][]time.Time{},
		lastSeen: map[subjectPurpose][]time.Time{}, announced: map[string][]time.Time{}, topicPurpose: map[string]purpose.Purpose{}}
	defer func() {
		for i := len(b.cleanup) - 1; i >= 0; i-- {
			b.cleanup[i]()
		}
	}()
	steps := []func(context.Context) error{
		b.setup, b.loadConsent, b.startPrivacy, b.startAPI, b.pickSample, b.startTail, b.startLoad, b.startAnnouncements,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return Result{}, err
		}
	}
	ws, err := b.withdraw(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := b.endLoad(ctx); err != nil {
		return Result{}, err
	}
	processedIn := b.drain(ctx)
	return b.result(ws, processedIn), nil
}

// withDefaults fills the zero fields of the options.
func (opt Options) withDefaults() Options {
	if opt.Rate <= 0 {
		opt.Rate = 20000
	}
	if opt.Withdrawals <= 0 {
		opt.Withdrawals = 50
	}
	if opt.Subjects <= 0 {
		opt.Subjects = 2000
	}
	if opt.Bound <= 0 {
		opt.Bound = time.Second
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	return opt
}

// logf logs a progress line with the time since the start.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.opt.Log, "withdrawal %6.1fs: %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// goRun runs f in a goroutine that ends before the results are read.
func (b *bench) goRun(f func()) {
	b.wg.Add(1)
	go func() { defer b.wg.Done(); f() }()
}

// setup loads the configuration with names of the run's own, connects to
// Redis and Kafka, creates the topics (deleted at the end) and builds the
// privacy processor.
func (b *bench) setup(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	id := fmt.Sprintf("wbench-%08x", rand.Uint32())
	cfg.Names.RawTopic, cfg.Names.CleanTopicTemplate, cfg.Names.QuarantineTopic = id+".raw", id+".clean.{purpose}", id+".quarantine"
	cfg.Names.ConsentTopic, cfg.Names.GroupID, cfg.Consent.KeyPrefix = id+".consent", id+".privacy", id+":consent:"
	cfg.Names.AuditTopic = id + ".audit"
	cfg.Runner.MaxPollRecords = 1000
	b.id, b.cfg = id, cfg

	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		return err
	}
	b.rdb = redis.NewClient(ropts)
	b.cleanup = append(b.cleanup, func() { b.rdb.Close() })
	admCl, err := cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	b.cleanup = append(b.cleanup, admCl.Close)
	b.adm = kadm.NewClient(admCl)
	if err := b.createTopics(ctx); err != nil {
		return err
	}
	if b.keys, err = pseudonym.GenerateKeyring(purpose.Names(), "bench"); err != nil {
		return err
	}
	if b.pp, err = wiring.BuildPrivacy(ctx, cfg, wiring.Deps{Redis: b.rdb, Registry: prometheus.NewRegistry(), Keys: b.keys}); err != nil {
		return err
	}
	b.rctx, b.stopAll = context.WithCancel(ctx)
	b.cleanup = append(b.cleanup, b.stopAll)
	return nil
}

// createTopics creates the run's topology and registers its deletion.
func (b *bench) createTopics(ctx context.Context) error {
	names, err := wiring.Names(b.cfg)
	if err != nil {
		return err
	}
	names.Requests, names.Erasures = b.id+".requests", b.id+".erasures"
	topo := topology.Default(names, topology.Options{Partitions: 6, Replication: 1})
	if _, err := topology.Apply(ctx, b.adm, topo); err != nil {
		return err
	}
	b.cleanup = append(b.cleanup, func() {
		var ts []string
		for _, t := range topo.Topics {
			ts = append(ts, t.Name)
		}
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.adm.DeleteTopics(dctx, ts...)
	})
	return nil
}

// loadConsent grants every subject every purpose through the consent
// topic and consent-sync, and waits until the sync has applied them all.
func (b *bench) loadConsent(ctx context.Context) error {
	prodCl, err := b.cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	b.prodCl = prodCl
	b.cleanup = append(b.cleanup, prodCl.Close)
	var grants []*kgo.Record
	for i := 0; i < b.opt.Subjects; i++ {
		for _, p := range purpose.All {
			c := consentlog.Change{SubjectID: synth.SubjectID(i), Purpose: p, State: consent.Granted, Jurisdiction: consent.GDPR,
				Source: consentlog.Import, PolicyVersion: "bench", Timestamp: b.start.Add(-time.Hour).Truncate(time.Millisecond), ReceiptID: consentlog.NewReceiptID()}
			v, err := consentlog.Encode(&c)
			if err != nil {
				return err
			}
			grants = append(grants, &kgo.Record{Topic: b.cfg.Names.ConsentTopic, Key: consentlog.Key(c.SubjectID, p), Value: v})
		}
	}
	if err := kafkaio.ProduceAll(ctx, prodCl, grants); err != nil {
		return err
	}
	syncer, err := consentsync.New(consentsync.Config{Kafka: b.cfg.Kafka, Topic: b.cfg.Names.ConsentTopic, Group: b.id + ".sync", Store: b.pp.Store})
	if err != nil {
		return err
	}
	b.goRun(func() { syncer.Run(b.rctx, true) })
	for !syncer.Ready() || syncer.Applied() < uint64(len(grants)) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.logf("consent loaded for %d subjects through %s and consent-sync", b.opt.Subjects, b.cfg.Names.ConsentTopic)
	return nil
}

// startPrivacy runs the privacy processor, following invalidations. Its
// commit hook gives the exact moment each clean record became visible.
func (b *bench) startPrivacy(context.Context) error {
	rc := wiring.RunnerConfig(b.cfg, b.cfg.Names.GroupID, b.cfg.Names.RawTopic, slog.New(slog.DiscardHandler))
	rc.OnCommit = b.onCommit
	rn, err := runner.New(rc, b.pp.Processor)
	if err != nil {
		return err
	}
	b.rn = rn
	b.goRun(func() { rn.Run(b.rctx) })
	b.goRun(func() { consentredis.FollowInvalidations(b.rctx, b.pp.Store, b.pp.Cache, nil) })
	return nil
}

// onCommit records the commit time of each clean record of a sample
// subject.
func (b *bench) onCommit(outs []processors.Output, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range outs {
		p, ok := b.topicPurpose[o.Topic]
		if !ok {
			continue
		}
		if s, ok := b.bySubject[p][string(o.Key)]; ok {
			b.lastCommitted[subjectPurpose{s, p}] = append(b.lastCommitted[subjectPurpose{s, p}], at)
		}
	}
}

// startAPI serves the consent API over real HTTP.
func (b *bench) startAPI(context.Context) error {
	open, err := httpauth.New(httpauth.Config{}) // measures withdrawal, not authentication
	if err != nil {
		return err
	}
	api, err := consentapi.New(consentapi.Config{Producer: b.prodCl, Topic: b.cfg.Names.ConsentTopic, Store: b.pp.Store, Guard: open})
	if err != nil {
		return err
	}
	b.srv = httptest.NewServer(api.Handler())
	b.cleanup = append(b.cleanup, b.srv.Close)
	return nil
}

// pickSample chooses the subjects that withdraw and maps their pseudonyms
// per purpose, and the clean topics to their purposes, for the observers.
func (b *bench) pickSample(context.Context) error {
	b.rng = rand.New(rand.NewPCG(1, 2))
	b.sample = b.rng.Perm(b.opt.Subjects)[:b.opt.Withdrawals]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bySubject = map[purpose.Purpose]map[string]string{}
	for _, p := range purpose.All {
		k, _ := b.keys.Active(p.String())
		ps := pseudonym.New(k)
		b.bySubject[p] = map[string]string{}
		for _, s := range b.sample {
			b.bySubject[p][string(ps.Append(nil, "subject_id", synth.SubjectID(s)))] = synth.SubjectID(s)
		}
	}
	for _, p := range purpose.All {
		b.topicPurpose[wiring.CleanTopic(b.cfg, p)] = p
	}
	return nil
}

// startTail is the cross-check: a read_committed consumer tailing the
// clean topics (it shares the machine, so it can only see records later
// than they were committed).
func (b *bench) startTail(ctx context.Context) error {
	var cleanTopics []string
	for _, p := range purpose.All {
		cleanTopics = append(cleanTopics, wiring.CleanTopic(b.cfg, p))
	}
	tail, err := b.cfg.Kafka.NewClient(kgo.ConsumeTopics(cleanTopics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		return err
	}
	b.cleanup = append(b.cleanup, tail.Close)
	tctx, stopTail := context.WithCancel(ctx)
	b.stopTail = stopTail
	b.cleanup = append(b.cleanup, stopTail)
	b.goRun(func() {
		for tctx.Err() == nil {
			fs := tail.PollFetches(tctx)
			now := time.Now()
			b.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				b.published++
				p := b.topicPurpose[r.Topic]
				if s, ok := b.bySubject[p][string(r.Key)]; ok {
					b.lastSeen[subjectPurpose{s, p}] = append(b.lastSeen[subjectPurpose{s, p}], now)
				}
			})
			b.mu.Unlock()
		}
	})
	return nil
}

// startLoad starts the load: Rate raw events per second, a fifth of them
// for the sample subjects, until endLoad.
func (b *bench) startLoad(ctx context.Context) error {
	loadCl, err := b.cfg.Kafka.NewClient(kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.MaxBufferedRecords(200000))
	if err != nil {
		return err
	}
	b.loadCl = loadCl
	b.cleanup = append(b.cleanup, loadCl.Close)
	lctx, stopLoad := context.WithCancel(ctx)
	b.stopLoad = stopLoad
	b.cleanup = append(b.cleanup, stopLoad)
	b.loadStart = time.Now()
	b.loadDone = make(chan struct{})
	go b.produceLoad(ctx, lctx)
	return nil
}

// produceLoad produces, every 10ms, the events due since the load began,
// until lctx ends. Records are produced with ctx, not lctx: stopping the
// load must not fail buffered records.
func (b *bench) produceLoad(ctx, lctx context.Context) {
	defer close(b.loadDone)
	enc, _ := producer.NewEncoder()
	gen := synth.New(3, b.opt.Subjects, time.Now())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lr := rand.New(rand.NewPCG(3, 4))
	for seq := 0; ; {
		select {
		case <-lctx.Done():
			b.loadEnd = time.Now()
			return
		case <-tick.C:
		}
		due := int(time.Since(b.loadStart).Seconds()*float64(b.opt.Rate)) - b.produced
		for i := 0; i < due; i++ {
			s := lr.IntN(b.opt.Subjects)
			if lr.IntN(5) == 0 {
				s = b.sample[lr.IntN(len(b.sample))]
			}
			ev := gen.EventFor(seq, s)
			ev.Jurisdiction, ev.GPC = "gdpr", false
			seq++
			rec, err := enc.Record(b.cfg.Names.RawTopic, &ev)
			if err != nil {
				continue
			}
			b.loadCl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err == nil {
					b.acked.Add(1)
				}
			})
			b.produced++
		}
	}
}

// startAnnouncements records, for the diagnostics, when consent-sync
// announces each subject on the invalidation channel.
func (b *bench) startAnnouncements(context.Context) error {
	annSub := b.pp.Store.SubscribeInvalidations(b.rctx)
	if _, err := annSub.Receive(b.rctx); err != nil {
		return err
	}
	stopAnn := context.AfterFunc(b.rctx, func() { annSub.Close() })
	b.cleanup = append(b.cleanup, func() { stopAnn() })
	b.goRun(func() {
		for {
			m, err := annSub.ReceiveMessage(b.rctx)
			if err != nil {
				return
			}
			now := time.Now()
			b.mu.Lock()
			for _, s := range consentredis.ParseInvalidation(m.Payload) {
				b.announced[s] = append(b.announced[s], now)
			}
			b.mu.Unlock()
		}
	})
	return nil
}

// withdraw withdraws, through the API and under load, one (subject,
// purpose) pair of the sample at a time, and returns when each was
// accepted.
func (b *bench) withdraw(ctx context.Context) ([]withdrawalRec, error) {
	time.Sleep(3 * time.Second)
	b.logf("load running at %d events/s; withdrawing %d (subject, purpose) pairs through the API", b.opt.Rate, b.opt.Withdrawals)
	var ws []withdrawalRec
	for i, s := range b.sample {
		p := purpose.All[i%purpose.Count]
		sub := synth.SubjectID(s)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/v1/subjects/"+url.PathEscape(sub)+"/consents/"+p.String()+"/withdraw",
			strings.NewReader(`{"source":"web_form","jurisdiction":"gdpr"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return nil, fmt.Errorf("bench withdrawal: API answered %s", resp.Status)
		}
		ws = append(ws, withdrawalRec{sub, p, time.Now()})
		time.Sleep(time.Duration(100+b.rng.IntN(150)) * time.Millisecond)
	}
	return ws, nil
}

// endLoad keeps the load on for 3s after the last withdrawal, then stops
// it and checks that every raw event was written.
func (b *bench) endLoad(ctx context.Context) error {
	time.Sleep(3 * time.Second)
	b.stopLoad()
	<-b.loadDone
	if err := b.loadCl.Flush(ctx); err != nil {
		return err
	}
	if int(b.acked.Load()) != b.produced {
		return fmt.Errorf("bench withdrawal: %d of %d raw events were not written", b.produced-int(b.acked.Load()), b.produced)
	}
	b.logf("load stopped: %d events in %.1fs; waiting for the processor to drain", b.produced, b.loadEnd.Sub(b.loadStart).Seconds())
	return nil
}

// drain waits (at most 2 minutes) for the processor to commit every raw
// event, then stops every component, and returns how long processing
// took from the start of the load.
func (b *bench) drain(ctx context.Context) time.Duration {
	lastLog := time.Now()
	for b.rn.Committed() < uint64(b.produced) && ctx.Err() == nil && time.Since(b.loadEnd) < 2*time.Minute {
		time.Sleep(50 * time.Millisecond)
		if time.Since(lastLog) > 5*time.Second {
			b.logf("draining: %d of %d committed, %d aborted transactions", b.rn.Committed(), b.produced, b.rn.Aborted())
			lastLog = time.Now()
		}
	}
	processedIn := time.Since(b.loadStart)
	time.Sleep(time.Second)
	b.stopTail()
	b.stopAll()
	b.wg.Wait()
	return processedIn
}

// result computes the latencies per withdrawal - to the last commit, and
// to the last record seen by the tail, after its acceptance - and to its
// announcement by consent-sync.
func (b *bench) result(ws []withdrawalRec, processedIn time.Duration) Result {
	opt := b.opt
	res := Result{Withdrawals: len(ws), BoundMs: float64(opt.Bound.Milliseconds()),
		RateEPS:      float64(b.produced) / b.loadEnd.Sub(b.loadStart).Seconds(),
		ProcessedEPS: float64(b.rn.Committed()) / processedIn.Seconds()}
	b.mu.Lock()
	lat := latencies(ws, func(w withdrawalRec) []time.Time { return b.lastCommitted[subjectPurpose{w.subject, w.purpose}] })
	seenLat := latencies(ws, func(w withdrawalRec) []time.Time { return b.lastSeen[subjectPurpose{w.subject, w.purpose}] })
	syncLat := make([]float64, 0, len(ws))
	for _, w := range ws {
		for _, t := range b.announced[w.subject] {
			if d := t.Sub(w.accepted); d > 0 {
				syncLat = append(syncLat, float64(d.Microseconds())/1000)
				break
			}
		}
	}
	sort.Float64s(syncLat)
	res.SyncP50Ms, res.SyncP99Ms = quantile(syncLat, 0.5), quantile(syncLat, 0.99)
	published := b.published
	b.mu.Unlock()
	for _, ms := range lat {
		if ms > float64(opt.Bound.Milliseconds()) {
			res.Violations++
		}
	}
	res.P50Ms, res.P99Ms, res.MaxMs = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 1)
	res.SeenP99Ms = quantile(seenLat, 0.99)
	b.logf("processed %d events (%d clean records seen); withdrawal latency (to commit) p50 %.0f ms, p99 %.0f ms, max %.0f ms, %d over %v; as seen by a tailing consumer p99 %.0f ms",
		b.rn.Committed(), published, res.P50Ms, res.P99Ms, res.MaxMs, res.Violations, opt.Bound, res.SeenP99Ms)
	return res
}

// latencies returns, per withdrawal, the time in ms from its acceptance to
// the last publication after it (0 if none), sorted.
func latencies(ws []withdrawalRec, times func(withdrawalRec) []time.Time) []float64 {
	lat := make([]float64, 0, len(ws))
	for _, w := range ws {
		ms := 0.0
		for _, t := range times(w) {
			if d := t.Sub(w.accepted); d > 0 {
				ms = max(ms, float64(d.Microseconds())/1000)
			}
		}
		lat = append(lat, ms)
	}
	sort.Float64s(lat)
	return lat
}

// quantile returns the f-quantile of sorted values (0 if there are none).
func quantile(sorted []float64, f float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(f*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
