package integration

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/keys/keysync"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
)

// erasureBound is the documented bound on how long after an erasure
// starts a record about the subject can still be committed, derived from
// the configuration only (never from this machine's speed):
//
//   - PIPELINE_CONSENT_CACHE_TTL: a processor may decide from cached
//     consent that long after the executor deleted it (the executor waits
//     it out before Erase returns);
//   - PIPELINE_DATA_KEY_CACHE_TTL: a processor may encrypt with a cached
//     data key that long after the shred (the ledger check, uncached,
//     normally stops it at the next batch);
//   - the commit interval, PIPELINE_TRANSACTION_TIMEOUT: a batch whose
//     lookups were done before the erasure started commits within its
//     transaction's lifetime or is aborted by the broker.
func erasureBound(consentTTL, dataKeyTTL, txnTimeout time.Duration) time.Duration {
	return consentTTL + dataKeyTTL + txnTimeout
}

// TestErasureRacingReplicasOnRealServices (issue 15, "Erasure racing
// replicas"): three privacy replicas (each its own Redis connection,
// caches, invalidation follower and transactional runner in the one
// consumer group) with the encrypting policy and the erasure ledger,
// consent-sync and the key sync running, process a continuous stream of
// events of 200 subjects (600/s, half of them about the 30 to erase)
// spread round robin over every partition (so every replica meets every
// subject). Mid-stream, three erasers in parallel (own
// executors and transactional ids, so some erasures run concurrently)
// erase 30 of the subjects while their events keep arriving.
//
// The attack: an erased subject's events racing its erasure on three
// replicas, each with a consent cache, a data-key cache and a batch in
// flight, where a replica that misses the shred would publish the subject
// again or create it a new key.
//
// An erasure *starts* when the executor is called (Erase shreds the keys
// and sets the ledger mark first) and is *accepted* when Erase returns.
// Asserted: 0 records about an erased subject committed after its erasure
// was accepted, by two independent observations: the runners' commit
// hooks (the moment each transaction became visible) and the read_committed
// log (no record at or past the offsets the partitions had reached when
// Erase returned), a record being about the subject when its key is one of
// its purpose pseudonyms or its pp-data-key header one of its data key ids;
// the time from start to the last committed record about the subject
// (p50/p99/max) is within erasureBound of the configuration; the kept
// subjects keep flowing after the last erasure; the key topic holds no key
// record for an erased id after its tombstone, and Redis says shredded.
func TestErasureRacingReplicasOnRealServices(t *testing.T) {
	r := newRig(t)
	pol, kek, _ := pipelinetest.EncryptingPolicy(t)
	r.cfg.Privacy.PolicyFile, r.cfg.Keys.KEKFile = pol, kek
	r.cfg.Keys.ErasureKeyFile = filepath.Join(t.TempDir(), "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(r.cfg.Keys.ErasureKeyFile); err != nil {
		t.Fatal(err)
	}
	r.cfg.Privacy.PseudonymKeysFile = filepath.Join(t.TempDir(), "keys.json")
	if err := writeKeyring(r); err != nil {
		t.Fatal(err)
	}
	r.cfg.Keys.DataKeyCacheTTL = 2 * time.Second // a short cache: the bound below stays meaningful
	bound := erasureBound(r.cfg.Consent.CacheTTL, r.cfg.Keys.DataKeyCacheTTL, r.cfg.Runner.TransactionTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	ropts, err := wiring.RedisOptions(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	if r.pp, err = wiring.BuildPrivacy(ctx, r.cfg, wiring.Deps{Redis: rdb, Registry: newRegistry(), Keys: r.keys}); err != nil {
		t.Fatal(err)
	}
	ks, err := keysync.New(keysync.Config{Kafka: r.cfg.Kafka, Topic: r.cfg.Names.KeysTopic, Group: r.cfg.Names.KeySyncGroup, Store: r.pp.DataKeys})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- ks.Run(sctx) }()
	defer func() { scancel(); <-sdone }()
	waitUntil(t, "the key sync loaded", time.Minute, ks.Ready)
	r.startSync(false)

	const subjects, erasedN = 200, 30
	r.grantAll(ctx, subjects, time.Now())
	ledger := mustLedger(t, r.cfg.Keys.ErasureKeyFile)
	erasedIdx := rand.New(rand.NewPCG(15, 30)).Perm(subjects)[:erasedN]
	plans := make([]erasure.Plan, erasedN)
	byPseudonym, byDataKey := map[string]int{}, map[string]int{} // -> index into erasedIdx
	for j, s := range erasedIdx {
		if plans[j], err = erasure.PlanFor(synth.SubjectID(s), r.keys, ledger); err != nil {
			t.Fatal(err)
		}
		for _, n := range plans[j].Notices {
			byPseudonym[n.Pseudonym] = j
		}
		for _, id := range plans[j].DataKeys {
			byDataKey[id] = j
		}
	}
	about := func(key []byte, dataKey string) (int, bool) {
		if j, ok := byPseudonym[string(key)]; ok {
			return j, true
		}
		j, ok := byDataKey[dataKey]
		return j, ok
	}

	// What the runners committed, and when.
	var mu sync.Mutex
	commits := make([][]time.Time, erasedN)
	var keptAfter atomic.Int64
	var lastReturned atomic.Int64 // unix ns of the last Erase return (0 before)
	onCommit := func(outs []processors.Output, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range outs {
			if o.Topic == r.cfg.Names.KeysTopic || o.Topic == r.cfg.Names.QuarantineTopic {
				continue
			}
			dk := ""
			for _, h := range o.Headers {
				if h.Key == processors.HeaderDataKey {
					dk = string(h.Value)
				}
			}
			if j, ok := about(o.Key, dk); ok {
				commits[j] = append(commits[j], at)
			} else if lr := lastReturned.Load(); lr != 0 && at.UnixNano() > lr {
				keptAfter.Add(1)
			}
		}
	}
	var stops []func()
	for range 3 {
		rc := redis.NewClient(ropts)
		defer rc.Close()
		pp, err := wiring.BuildPrivacy(ctx, r.cfg, wiring.Deps{Redis: rc, Registry: newRegistry(), Keys: r.keys})
		if err != nil {
			t.Fatal(err)
		}
		cfg := wiring.RunnerConfig(r.cfg, r.cfg.Names.GroupID, r.cfg.Names.RawTopic, slog.New(slog.NewJSONHandler(r.logs, nil)))
		cfg.MaxPollRecords, cfg.OnCommit = 100, onCommit
		rn, err := runner.New(cfg, pp.Processor)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { rn.Run(rctx); close(done) }()
		go consentredis.FollowInvalidations(rctx, pp.Store, pp.Cache, nil) // as 'pipeline run privacy' does
		stops = append(stops, func() { rcancel(); <-done })
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()

	// The stream: 600 events/s, every subject, round robin over the
	// partitions, until stopLoad.
	loadCl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer loadCl.Close()
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	var produced, acked, loadErrs atomic.Int64
	go func() {
		defer close(loadDone)
		gen := synth.New(15, subjects, time.Now())
		lr := rand.New(rand.NewPCG(15, 15))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			for k := range 6 {
				// Half the events are about the subjects to erase: their
				// events are in flight on every replica when the erasures
				// land.
				sub := lr.IntN(subjects)
				if k%2 == 0 {
					sub = erasedIdx[lr.IntN(erasedN)]
				}
				ev := gen.EventFor(seq*6+k, sub)
				rec, err := r.enc.Record(r.cfg.Names.RawTopic, &ev)
				if err != nil {
					loadErrs.Add(1)
					continue
				}
				rec.Partition = int32(produced.Add(1) % 4)
				loadCl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err != nil {
						loadErrs.Add(1)
					} else {
						acked.Add(1)
					}
				})
			}
		}
	}()
	// Before any erasure, every subject to erase is flowing (its keys
	// exist: the tombstones will have something to shred).
	waitUntil(t, "records of every subject to erase committed", 2*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for j := range commits {
			if len(commits[j]) == 0 {
				return false
			}
		}
		return true
	})

	// The erasures: three erasers in parallel, ten subjects each, a random
	// pause between two, all while the stream runs.
	adm := r.adm
	started, returned := make([]time.Time, erasedN), make([]time.Time, erasedN)
	ends := make([]map[string]map[int32]int64, erasedN) // the clean topics' ends when Erase returned
	var wg sync.WaitGroup
	errs := make(chan error, erasedN)
	for w := range 3 {
		ex, closeEx, err := wiring.NewEraser(r.cfg, fmt.Sprintf("%s-eraser-%d", r.cfg.Names.GroupID, w))
		if err != nil {
			t.Fatal(err)
		}
		defer closeEx()
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for j := w; j < erasedN; j += 3 {
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				started[j] = time.Now()
				if _, err := ex.Erase(ctx, synth.SubjectID(erasedIdx[j]), fmt.Sprintf("req-race-%d", j)); err != nil {
					errs <- err
					return
				}
				returned[j] = time.Now()
				if lr := lastReturned.Load(); returned[j].UnixNano() > lr {
					lastReturned.Store(returned[j].UnixNano())
				}
				lo, err := adm.ListEndOffsets(ctx, r.cleanTopics()...)
				if err != nil {
					errs <- err
					return
				}
				ends[j] = map[string]map[int32]int64{}
				lo.Each(func(o kadm.ListedOffset) {
					if ends[j][o.Topic] == nil {
						ends[j][o.Topic] = map[int32]int64{}
					}
					ends[j][o.Topic][o.Partition] = o.Offset
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The stream goes on past every cache TTL, then stops; the replicas
	// drain it.
	time.Sleep(r.cfg.Keys.DataKeyCacheTTL + 3*time.Second)
	stopLoad()
	<-loadDone
	if err := loadCl.Flush(ctx); err != nil || loadErrs.Load() != 0 {
		t.Fatalf("the stream: %v, %d errors", err, loadErrs.Load())
	}
	r.waitCaughtUp(3 * time.Minute)
	for _, stop := range stops {
		stop()
	}
	stops = nil

	// 1. The commit hooks: nothing after acceptance; the bound from start.
	mu.Lock()
	lat := make([]float64, 0, erasedN)
	var violations []string
	raced := 0 // erasures with a record about the subject committed after their start
	for j := range erasedN {
		ms := 0.0
		for _, at := range commits[j] {
			if at.After(started[j]) {
				raced++
				break
			}
		}
		for _, at := range commits[j] {
			if at.After(returned[j]) {
				violations = append(violations, fmt.Sprintf("erasure %d: a record committed %v after Erase returned", j, at.Sub(returned[j])))
			}
			if d := at.Sub(started[j]); d > 0 {
				ms = max(ms, float64(d.Microseconds())/1000)
			}
		}
		lat = append(lat, ms)
	}
	mu.Unlock()
	sort.Float64s(lat)
	acceptMs := make([]float64, 0, erasedN)
	for j := range erasedN {
		acceptMs = append(acceptMs, float64(returned[j].Sub(started[j]).Microseconds())/1000)
	}
	sort.Float64s(acceptMs)
	t.Logf("%d erasures racing 3 replicas, %d events over 4 partitions: start -> last committed record about the subject p50 %.0f ms, p99 %.0f ms, max %.0f ms (bound %v = consent cache TTL %v + data key cache TTL %v + transaction timeout %v); %d erasures raced a batch in flight; Erase took p50 %.0f ms, max %.0f ms; %d records of kept subjects committed after the last erasure",
		erasedN, acked.Load(), quantileMs(lat, 0.5), quantileMs(lat, 0.99), quantileMs(lat, 1), bound,
		r.cfg.Consent.CacheTTL, r.cfg.Keys.DataKeyCacheTTL, r.cfg.Runner.TransactionTimeout, raced, quantileMs(acceptMs, 0.5), quantileMs(acceptMs, 1), keptAfter.Load())
	for _, v := range violations {
		t.Error(v)
	}
	if worst := quantileMs(lat, 1); worst > float64(bound.Milliseconds()) {
		t.Errorf("a record committed %.0f ms after its erasure started, over the bound %v", worst, bound)
	}
	if keptAfter.Load() == 0 {
		t.Error("no record of a kept subject committed after the last erasure: the stream stopped")
	}

	// 2. The read_committed log: no record about an erased subject at or
	// past the offsets reached when its erasure was accepted.
	logAbout := 0
	for _, rec := range r.read(r.cleanTopics()...) {
		j, ok := about(rec.Key, headerOf(rec, processors.HeaderDataKey))
		if !ok {
			continue
		}
		logAbout++
		if rec.Offset >= ends[j][rec.Topic][rec.Partition] {
			t.Errorf("erasure %d: %s/%d@%d about the subject, past the end (%d) when Erase returned", j, rec.Topic, rec.Partition, rec.Offset, ends[j][rec.Topic][rec.Partition])
		}
	}

	// 3. No key re-created: after an erased id's tombstone the key topic
	// holds no key record for it; Redis says shredded.
	keyRecs, err := kafkaio.ReadAll(ctx, r.cfg.Kafka, r.cfg.Names.KeysTopic)
	if err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(keyRecs, func(a, b int) bool { return keyRecs[a].Offset < keyRecs[b].Offset })
	tombstoned := map[string]bool{}
	for _, rec := range keyRecs {
		id := string(rec.Key)
		if _, ok := byDataKey[id]; !ok {
			continue
		}
		if rec.Value == nil {
			tombstoned[id] = true
		} else if tombstoned[id] {
			t.Errorf("a key record for erased id %s after its tombstone (partition %d offset %d)", id, rec.Partition, rec.Offset)
		}
	}
	for id := range byDataKey {
		if !tombstoned[id] {
			t.Errorf("no tombstone for erased id %s on the key topic", id)
		}
		if st, _ := r.pp.DataKeys.State(ctx, id); st != "shredded" {
			t.Errorf("erased id %s is %q in Redis", id, st)
		}
	}
	t.Logf("log: %d records about the erased subjects, all before their erasures' acceptance; %d erased key ids tombstoned, none re-created", logAbout, len(tombstoned))
}

// quantileMs returns the f-quantile of sorted values (0 if none).
func quantileMs(sorted []float64, f float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(f*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
