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

type withdrawalRec struct {
	subject  string
	purpose  purpose.Purpose
	accepted time.Time
}

// Run measures.
func Run(ctx context.Context, opt Options) (Result, error) {
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
	if os.Getenv("PIPELINE_KAFKA_BROKERS") == "" || os.Getenv("PIPELINE_REDIS_ADDR") == "" {
		return Result{}, errors.New(`bench withdrawal: needs a real Kafka and Redis: eval "$(scripts/services up)" first`)
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(opt.Log, "withdrawal %6.1fs: %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	cfg, err := config.Load()
	if err != nil {
		return Result{}, err
	}
	id := fmt.Sprintf("wbench-%08x", rand.Uint32())
	cfg.Names.RawTopic, cfg.Names.CleanTopicTemplate, cfg.Names.QuarantineTopic = id+".raw", id+".clean.{purpose}", id+".quarantine"
	cfg.Names.ConsentTopic, cfg.Names.GroupID, cfg.Consent.KeyPrefix = id+".consent", id+".privacy", id+":consent:"
	cfg.Runner.MaxPollRecords = 1000

	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		return Result{}, err
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	admCl, err := cfg.Kafka.NewClient()
	if err != nil {
		return Result{}, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	names, err := wiring.Names(cfg)
	if err != nil {
		return Result{}, err
	}
	names.Requests, names.Erasures, names.Audit = id+".requests", id+".erasures", id+".audit"
	topo := topology.Default(names, topology.Options{Partitions: 6, Replication: 1})
	if _, err := topology.Apply(ctx, adm, topo); err != nil {
		return Result{}, err
	}
	defer func() {
		var ts []string
		for _, t := range topo.Topics {
			ts = append(ts, t.Name)
		}
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm.DeleteTopics(dctx, ts...)
	}()

	keys, err := pseudonym.GenerateKeyring(purpose.Names(), "bench")
	if err != nil {
		return Result{}, err
	}
	pp, err := wiring.BuildPrivacy(cfg, wiring.Deps{Redis: rdb, Registry: prometheus.NewRegistry(), Keys: keys})
	if err != nil {
		return Result{}, err
	}
	rctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }

	// Consent: every subject granted every purpose, through the topic and the sync.
	prodCl, err := cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return Result{}, err
	}
	defer prodCl.Close()
	var grants []*kgo.Record
	for i := 0; i < opt.Subjects; i++ {
		for _, p := range purpose.All {
			c := consentlog.Change{SubjectID: synth.SubjectID(i), Purpose: p, State: consent.Granted, Jurisdiction: consent.GDPR,
				Source: consentlog.Import, PolicyVersion: "bench", Timestamp: start.Add(-time.Hour).Truncate(time.Millisecond), ReceiptID: consentlog.NewReceiptID()}
			v, err := consentlog.Encode(&c)
			if err != nil {
				return Result{}, err
			}
			grants = append(grants, &kgo.Record{Topic: cfg.Names.ConsentTopic, Key: consentlog.Key(c.SubjectID, p), Value: v})
		}
	}
	if err := kafkaio.ProduceAll(ctx, prodCl, grants); err != nil {
		return Result{}, err
	}
	syncer, err := consentsync.New(consentsync.Config{Kafka: cfg.Kafka, Topic: cfg.Names.ConsentTopic, Group: id + ".sync", Store: pp.Store})
	if err != nil {
		return Result{}, err
	}
	goRun(func() { syncer.Run(rctx, true) })
	for !syncer.Ready() || syncer.Applied() < uint64(len(grants)) {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	logf("consent loaded for %d subjects through %s and consent-sync", opt.Subjects, cfg.Names.ConsentTopic)

	// The privacy processor, following invalidations. Its commit hook gives
	// the exact moment each clean record became visible.
	type sp struct {
		s string
		p purpose.Purpose
	}
	var mu sync.Mutex
	lastCommitted := map[sp][]time.Time{}
	var bySubject map[purpose.Purpose]map[string]string
	topicPurpose := map[string]purpose.Purpose{}
	onCommit := func(outs []processors.Output, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range outs {
			p, ok := topicPurpose[o.Topic]
			if !ok {
				continue
			}
			if s, ok := bySubject[p][string(o.Key)]; ok {
				lastCommitted[sp{s, p}] = append(lastCommitted[sp{s, p}], at)
			}
		}
	}
	rn, err := runner.New(runner.Config{Conn: cfg.Kafka, Group: cfg.Names.GroupID, Input: cfg.Names.RawTopic,
		MaxPollRecords: cfg.Runner.MaxPollRecords, Log: slog.New(slog.DiscardHandler), OnCommit: onCommit}, pp.Processor)
	if err != nil {
		return Result{}, err
	}
	goRun(func() { rn.Run(rctx) })
	goRun(func() { consentredis.FollowInvalidations(rctx, pp.Store, pp.Cache, nil) })

	// The consent API over real HTTP.
	api, err := consentapi.New(consentapi.Config{Producer: prodCl, Topic: cfg.Names.ConsentTopic, Store: pp.Store})
	if err != nil {
		return Result{}, err
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	// Sample subjects, their pseudonyms per purpose.
	rng := rand.New(rand.NewPCG(1, 2))
	sample := rng.Perm(opt.Subjects)[:opt.Withdrawals]
	mu.Lock()
	bySubject = map[purpose.Purpose]map[string]string{}
	for _, p := range purpose.All {
		k, _ := keys.Active(p.String())
		ps := pseudonym.New(k)
		bySubject[p] = map[string]string{}
		for _, s := range sample {
			bySubject[p][string(ps.Append(nil, "subject_id", synth.SubjectID(s)))] = synth.SubjectID(s)
		}
	}
	var cleanTopics []string
	for _, p := range purpose.All {
		topicPurpose[cfg.CleanTopic(p)] = p
		cleanTopics = append(cleanTopics, cfg.CleanTopic(p))
	}
	mu.Unlock()

	// Cross-check: a read_committed consumer tailing the clean topics (it
	// shares the machine, so it can only see records later than they were
	// committed).
	lastSeen := map[sp][]time.Time{}
	tail, err := cfg.Kafka.NewClient(kgo.ConsumeTopics(cleanTopics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		return Result{}, err
	}
	defer tail.Close()
	tctx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	var published int
	goRun(func() {
		for tctx.Err() == nil {
			fs := tail.PollFetches(tctx)
			now := time.Now()
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				published++
				p := topicPurpose[r.Topic]
				if s, ok := bySubject[p][string(r.Key)]; ok {
					lastSeen[sp{s, p}] = append(lastSeen[sp{s, p}], now)
				}
			})
			mu.Unlock()
		}
	})

	// Load: Rate events/s, a fifth of them for the sample subjects.
	enc, _ := producer.NewEncoder()
	loadCl, err := cfg.Kafka.NewClient(kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.MaxBufferedRecords(200000))
	if err != nil {
		return Result{}, err
	}
	defer loadCl.Close()
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var produced int
	var acked atomic.Int64
	loadStart := time.Now()
	var loadEnd time.Time
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		gen := synth.New(3, opt.Subjects, time.Now())
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		lr := rand.New(rand.NewPCG(3, 4))
		for seq := 0; ; {
			select {
			case <-lctx.Done():
				loadEnd = time.Now()
				return
			case <-tick.C:
			}
			due := int(time.Since(loadStart).Seconds()*float64(opt.Rate)) - produced
			for i := 0; i < due; i++ {
				s := lr.IntN(opt.Subjects)
				if lr.IntN(5) == 0 {
					s = sample[lr.IntN(len(sample))]
				}
				ev := gen.EventFor(seq, s)
				ev.Jurisdiction, ev.GPC = "gdpr", false
				seq++
				rec, err := enc.Record(cfg.Names.RawTopic, &ev)
				if err != nil {
					continue
				}
				// ctx, not lctx: stopping the load must not fail buffered records.
				loadCl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err == nil {
						acked.Add(1)
					}
				})
				produced++
			}
		}
	}()

	// Diagnostics: when consent-sync announces each sample subject.
	announced := map[string][]time.Time{}
	annSub := pp.Store.SubscribeInvalidations(rctx)
	if _, err := annSub.Receive(rctx); err != nil {
		return Result{}, err
	}
	stopAnn := context.AfterFunc(rctx, func() { annSub.Close() })
	defer stopAnn()
	goRun(func() {
		for {
			m, err := annSub.ReceiveMessage(rctx)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			for _, s := range consentredis.ParseInvalidation(m.Payload) {
				announced[s] = append(announced[s], now)
			}
			mu.Unlock()
		}
	})

	// Withdraw through the API, one sample subject at a time.
	time.Sleep(3 * time.Second)
	logf("load running at %d events/s; withdrawing %d (subject, purpose) pairs through the API", opt.Rate, opt.Withdrawals)
	var ws []withdrawalRec
	for i, s := range sample {
		p := purpose.All[i%purpose.Count]
		sub := synth.SubjectID(s)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/subjects/"+url.PathEscape(sub)+"/consents/"+p.String()+"/withdraw",
			strings.NewReader(`{"source":"web_form","jurisdiction":"gdpr"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return Result{}, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return Result{}, fmt.Errorf("bench withdrawal: API answered %s", resp.Status)
		}
		ws = append(ws, withdrawalRec{sub, p, time.Now()})
		time.Sleep(time.Duration(100+rng.IntN(150)) * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // keep the load on after the last withdrawal
	stopLoad()
	<-loadDone
	if err := loadCl.Flush(ctx); err != nil {
		return Result{}, err
	}
	if int(acked.Load()) != produced {
		return Result{}, fmt.Errorf("bench withdrawal: %d of %d raw events were not written", produced-int(acked.Load()), produced)
	}
	logf("load stopped: %d events in %.1fs; waiting for the processor to drain", produced, loadEnd.Sub(loadStart).Seconds())
	lastLog := time.Now()
	for rn.Committed() < uint64(produced) && ctx.Err() == nil && time.Since(loadEnd) < 2*time.Minute {
		time.Sleep(50 * time.Millisecond)
		if time.Since(lastLog) > 5*time.Second {
			logf("draining: %d of %d committed, %d aborted transactions", rn.Committed(), produced, rn.Aborted())
			lastLog = time.Now()
		}
	}
	processedIn := time.Since(loadStart)
	time.Sleep(time.Second)
	stopTail()
	stopAll()
	wg.Wait()

	// Latency per withdrawal: last publication after acceptance.
	res := Result{Withdrawals: len(ws), BoundMs: float64(opt.Bound.Milliseconds()),
		RateEPS:      float64(produced) / loadEnd.Sub(loadStart).Seconds(),
		ProcessedEPS: float64(rn.Committed()) / processedIn.Seconds()}
	mu.Lock()
	lat := latencies(ws, func(w withdrawalRec) []time.Time { return lastCommitted[sp{w.subject, w.purpose}] })
	seenLat := latencies(ws, func(w withdrawalRec) []time.Time { return lastSeen[sp{w.subject, w.purpose}] })
	syncLat := make([]float64, 0, len(ws))
	for _, w := range ws {
		for _, t := range announced[w.subject] {
			if d := t.Sub(w.accepted); d > 0 {
				syncLat = append(syncLat, float64(d.Microseconds())/1000)
				break
			}
		}
	}
	sort.Float64s(syncLat)
	res.SyncP50Ms, res.SyncP99Ms = quantile(syncLat, 0.5), quantile(syncLat, 0.99)
	mu.Unlock()
	for _, ms := range lat {
		if ms > float64(opt.Bound.Milliseconds()) {
			res.Violations++
		}
	}
	res.P50Ms, res.P99Ms, res.MaxMs = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 1)
	res.SeenP99Ms = quantile(seenLat, 0.99)
	logf("processed %d events (%d clean records seen); withdrawal latency (to commit) p50 %.0f ms, p99 %.0f ms, max %.0f ms, %d over %v; as seen by a tailing consumer p99 %.0f ms",
		rn.Committed(), published, res.P50Ms, res.P99Ms, res.MaxMs, res.Violations, opt.Bound, res.SeenP99Ms)
	return res, nil
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

func quantile(sorted []float64, f float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(f*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
