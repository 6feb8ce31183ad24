// Package chaos runs the exactly-once chaos test (SPEC 7) against a real
// Kafka broker and Redis: it produces N raw events with unique ids and a
// known consent mix, runs privacy processor replicas as separate OS
// processes, and during the run kills replicas with SIGKILL, scales from 1
// to 3 to 1 replicas, restarts Redis (which comes back empty: the replicas
// must pause until consent is reloaded) and the Kafka broker through
// scripts/services. A verifier then reads every clean topic with
// read_committed and compares, per purpose, the event ids published with
// those expected from consent and policy.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

// Options configure a chaos run.
type Options struct {
	Events     int    // raw events (default 500000)
	Subjects   int    // synthetic subjects (default 5000)
	Kills      int    // SIGKILLs (default max(3, Events/40000))
	Partitions int    // partitions of every topic (default 6)
	Binary     string // the pipeline binary the replicas run (required: the production build)
	Services   string // scripts/services (default: ./scripts/services)
	Seed       uint64
	Log        io.Writer // progress (default: discard)
	Timeout    time.Duration
	// NoKanon leaves out the k-anonymity processors (by default each slot
	// also runs 'run kanon' and 'run kanon-records', killed like the rest).
	NoKanon bool
}

// PurposeResult compares one clean topic with expectations.
type PurposeResult struct {
	Expected         int `json:"expected"`
	Published        int `json:"published"`
	Missing          int `json:"missing"`
	Duplicated       int `json:"duplicated"`
	WronglyPublished int `json:"wrongly_published"`
}

// Result is the outcome; its JSON form is the last line of 'pipeline-dev chaos --json'.
type Result struct {
	Events        int                      `json:"events"`
	Kills         int                      `json:"kills"`
	Purposes      map[string]PurposeResult `json:"purposes"`
	Quarantine    PurposeResult            `json:"quarantine"`
	MaxReplicas   int                      `json:"max_replicas"`
	RedisRestarts int                      `json:"redis_restarts"`
	KafkaRestarts int                      `json:"kafka_restarts"`
	// Audit is the privacy processor's audit trail's verification.
	Audit *AuditResult `json:"audit,omitempty"`
	// Kanon is the k-anonymity processors' verification (nil with NoKanon).
	Kanon    *KanonResult `json:"kanon,omitempty"`
	ElapsedS float64      `json:"elapsed_s"`
}

// OK reports whether nothing was missing, duplicated or wrongly published.
func (r Result) OK() bool {
	all := append([]PurposeResult{r.Quarantine}, values(r.Purposes)...)
	for _, p := range all {
		if p.Missing != 0 || p.Duplicated != 0 || p.WronglyPublished != 0 {
			return false
		}
	}
	if r.Kanon != nil && !r.Kanon.OK() {
		return false
	}
	if r.Audit == nil || !r.Audit.OK() {
		return false
	}
	return len(r.Purposes) == purpose.Count
}

func values(m map[string]PurposeResult) []PurposeResult {
	out := make([]PurposeResult, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

type run struct {
	opt      Options
	cfg      config.Config
	id       string
	dir      string
	keysPath string
	keys     *pseudonym.Keyring
	rdb      *redis.Client
	store    *consentredis.RedisStore
	adm      *kadm.Client
	cl       *kgo.Client
	start    time.Time
	topo     topology.Topology

	mu       sync.Mutex
	replicas map[int]*replica
	kills    int
	maxRep   int
}

type replica struct {
	slot int
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.opt.Log, "chaos %6.1fs: %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run runs the chaos test. The services come from PIPELINE_KAFKA_BROKERS and
// PIPELINE_REDIS_ADDR.
func Run(ctx context.Context, opt Options) (Result, error) {
	if opt.Events <= 0 {
		opt.Events = 500000
	}
	if opt.Subjects <= 0 {
		opt.Subjects = 5000
	}
	if opt.Kills <= 0 {
		opt.Kills = max(3, opt.Events/40000)
	}
	if opt.Partitions <= 0 {
		opt.Partitions = 6
	}
	if opt.Seed == 0 {
		opt.Seed = rand.Uint64()
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Minute
	}
	if opt.Binary == "" {
		return Result{}, errors.New("chaos: Options.Binary (the pipeline binary the replicas run) is required")
	}
	if opt.Services == "" {
		opt.Services = filepath.Join("scripts", "services")
	}
	if _, err := os.Stat(opt.Services); err != nil {
		return Result{}, fmt.Errorf("chaos: %s not found: run from the repository root (it restarts Redis and Kafka through it)", opt.Services)
	}
	if os.Getenv("PIPELINE_KAFKA_BROKERS") == "" || os.Getenv("PIPELINE_REDIS_ADDR") == "" {
		return Result{}, errors.New(`chaos: needs a real Kafka and Redis: eval "$(scripts/services up)" first`)
	}
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	r := &run{opt: opt, start: time.Now(), replicas: map[int]*replica{}}
	if err := r.setup(ctx); err != nil {
		return Result{}, err
	}
	defer r.cleanup()
	expected, expectedBad, err := r.produce(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := r.chaos(ctx); err != nil {
		return Result{}, err
	}
	res, err := r.verify(ctx, expected, expectedBad)
	if err != nil {
		return Result{}, err
	}
	if res.Audit, err = r.verifyAudit(ctx, res.Purposes); err != nil {
		return res, err
	}
	if !opt.NoKanon {
		if res.Kanon, err = r.verifyKanon(ctx); err != nil {
			return res, err
		}
	}
	res.Events, res.Kills, res.MaxReplicas = opt.Events, r.kills, r.maxRep
	res.RedisRestarts, res.KafkaRestarts = 1, 1
	res.ElapsedS = time.Since(r.start).Seconds()
	return res, nil
}

func (r *run) setup(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	r.id = fmt.Sprintf("chaos-%08x", rand.Uint32())
	cfg.Names.RawTopic, cfg.Names.CleanTopicTemplate, cfg.Names.QuarantineTopic = r.id+".raw", r.id+".clean.{purpose}", r.id+".quarantine"
	cfg.Names.GroupID, cfg.Consent.KeyPrefix = r.id+".privacy", r.id+":consent:"
	cfg.Names.StateTopicTemplate, cfg.Names.AggTopicTemplate, cfg.Names.KanonTopicTemplate = r.id+".state.{processor}", r.id+".agg.{purpose}.{name}", r.id+".kanon.{purpose}"
	cfg.Names.KanonAggregatesGroup, cfg.Names.CastleGroup = r.id+".kanon", r.id+".kanon-records"
	cfg.Names.KanonMergeGroup = r.id + ".kanon-merge"
	cfg.Names.AuditTopic = r.id + ".audit"
	r.cfg = cfg
	if r.dir, err = os.MkdirTemp("", r.id); err != nil {
		return err
	}
	r.keysPath = filepath.Join(r.dir, "keys.json")
	if r.keys, err = pseudonym.GenerateKeyring(purpose.Names(), "chaos"); err != nil {
		return err
	}
	if err := pseudonym.WriteKeyringFile(r.keysPath, r.keys); err != nil {
		return err
	}
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		return err
	}
	r.rdb = redis.NewClient(ropts)
	r.store = consentredis.NewRedisStore(r.rdb, consentredis.WithKeyPrefix(cfg.Consent.KeyPrefix))
	if r.cl, err = cfg.Kafka.NewClient(kgo.ProducerBatchCompression(kgo.SnappyCompression()),
		kgo.ProducerLinger(10*time.Millisecond)); err != nil {
		return err
	}
	r.adm = kadm.NewClient(r.cl)
	names, err := wiring.Names(cfg)
	if err != nil {
		return err
	}
	names.Consent, names.Requests, names.Erasures = r.id+".consent", r.id+".requests", r.id+".erasures"
	r.topo = topology.Default(names, topology.Options{Partitions: int32(r.opt.Partitions), Replication: 1})
	if _, err := topology.Apply(ctx, r.adm, r.topo); err != nil {
		return err
	}
	r.logf("run %s: %d events, %d subjects, %d partitions, seed %d", r.id, r.opt.Events, r.opt.Subjects, r.opt.Partitions, r.opt.Seed)
	return r.seedConsent(ctx)
}

func (r *run) cleanup() {
	r.mu.Lock()
	for _, rep := range r.replicas {
		rep.cmd.Process.Kill()
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var topics []string
	for _, tp := range r.topo.Topics {
		topics = append(topics, tp.Name)
	}
	r.adm.DeleteTopics(ctx, topics...)
	r.cl.Close()
	r.rdb.Close()
	os.RemoveAll(r.dir)
}

// seedConsent writes the synthetic consent of every subject and the loaded marker.
func (r *run) seedConsent(ctx context.Context) error {
	var subs []string
	var recs []consent.Record
	for i := 0; i < r.opt.Subjects; i++ {
		if rec, ok := synth.Consent(i, r.start); ok {
			subs, recs = append(subs, synth.SubjectID(i)), append(recs, rec)
		}
		if len(subs) == 1000 || i == r.opt.Subjects-1 {
			if err := r.store.PutMany(ctx, subs, recs); err != nil {
				return err
			}
			subs, recs = subs[:0], recs[:0]
		}
	}
	return r.store.MarkLoaded(ctx)
}

// produce writes the raw events and returns, per purpose, the expected
// pseudonymised event ids, and the number of malformed records.
func (r *run) produce(ctx context.Context) ([purpose.Count]map[string]bool, int, error) {
	var expected [purpose.Count]map[string]bool
	var ps [purpose.Count]*pseudonym.Pseudonymizer
	for _, p := range purpose.All {
		expected[p] = map[string]bool{}
		k, _ := r.keys.Active(p.String())
		ps[p] = pseudonym.New(k)
	}
	enc, err := producer.NewEncoder()
	if err != nil {
		return expected, 0, err
	}
	// Events lie two hours back, so the aggregates' windows can all be closed
	// by the wall clock at the end; each has a unique page, so a CASTLE
	// output can be traced back to its event by the verifier.
	gen := synth.New(r.opt.Seed, r.opt.Subjects, r.start.Add(-2*time.Hour))
	recByIdx := map[string]*consent.Record{}
	for i := 0; i < r.opt.Subjects; i++ {
		if rec, ok := synth.Consent(i, r.start); ok {
			recByIdx[synth.SubjectID(i)] = &rec
		}
	}
	bad := max(1, r.opt.Events/10000)
	var batch []*kgo.Record
	flush := func() error {
		err := kafkaio.ProduceAll(ctx, r.cl, batch)
		batch = batch[:0]
		return err
	}
	for i := 0; i < r.opt.Events; i++ {
		if i%(r.opt.Events/bad) == 0 && i/(r.opt.Events/bad) < bad {
			b, _ := synth.Malformed(i/(r.opt.Events/bad), enc, r.start)
			batch = append(batch, &kgo.Record{Topic: r.cfg.Names.RawTopic, Key: []byte("bad"), Value: b})
		} else {
			ev := gen.Event(i)
			ev.EventID = fmt.Sprintf("evt-%s-%d", r.id, i)
			ev.PageURL = fmt.Sprintf("https://shop.example.com/e/%d", i)
			rec, err := enc.Record(r.cfg.Names.RawTopic, &ev)
			if err != nil {
				return expected, 0, err
			}
			batch = append(batch, rec)
			jur, _ := consent.LookupJurisdiction(ev.Jurisdiction)
			stored := recByIdx[ev.SubjectID]
			for _, p := range purpose.All {
				if consent.Decide(stored, jur, ev.GPC, p).Allowed {
					expected[p][string(ps[p].Append(nil, "event_id", ev.EventID))] = true
				}
			}
		}
		if len(batch) == 20000 {
			if err := flush(); err != nil {
				return expected, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return expected, 0, err
	}
	r.logf("produced %d raw events (%d malformed)", r.opt.Events, bad)
	return expected, bad, nil
}

// Process keys: slot + 100*kind, kind 0 privacy, 1 kanon, 2 kanon-records.
const (
	kindPrivacy = iota
	kindKanon
	kindKanonRecords
)

// startReplica starts slot's replica of every processor.
func (r *run) startReplica(slot int) error {
	kinds := []int{kindPrivacy}
	if !r.opt.NoKanon {
		kinds = append(kinds, kindKanon, kindKanonRecords)
	}
	for _, k := range kinds {
		if err := r.startProc(slot + 100*k); err != nil {
			return err
		}
	}
	return nil
}

// startProc starts one processor replica as an OS process.
func (r *run) startProc(key int, extraEnv ...string) error {
	slot, kind := key%100, key/100
	args := []string{"run", "privacy"}
	switch kind {
	case kindKanon:
		args = []string{"run", "kanon"}
	case kindKanonRecords:
		args = []string{"run", "kanon-records"}
	}
	cmd := exec.Command(r.opt.Binary, args...)
	env := os.Environ()
	env = append(env,
		"PIPELINE_RAW_TOPIC="+r.cfg.Names.RawTopic, "PIPELINE_CLEAN_TOPIC_TEMPLATE="+r.cfg.Names.CleanTopicTemplate,
		"PIPELINE_QUARANTINE_TOPIC="+r.cfg.Names.QuarantineTopic, "PIPELINE_GROUP_ID="+r.cfg.Names.GroupID,
		"PIPELINE_AUDIT_TOPIC="+r.cfg.Names.AuditTopic,
		"PIPELINE_CONSENT_KEY_PREFIX="+r.cfg.Consent.KeyPrefix, "PIPELINE_PSEUDONYM_KEYS_FILE="+r.keysPath,
		"PIPELINE_HTTP_ADDR=127.0.0.1:0", "PIPELINE_LOG_LEVEL=warn",
		fmt.Sprintf("PIPELINE_TRANSACTIONAL_ID=%s-%s-slot-%d", r.id, args[1], slot),
		"PIPELINE_MAX_POLL_RECORDS=2000", "PIPELINE_WORKERS=1")
	env = append(env, r.kanonEnv()...)
	cmd.Env = append(env, extraEnv...)
	logf, err := os.OpenFile(filepath.Join(r.dir, fmt.Sprintf("replica-%d.log", key)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start replica: %w", err)
	}
	rep := &replica{slot: key, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(rep.done) }()
	r.mu.Lock()
	r.replicas[key] = rep
	n := 0
	for k := range r.replicas {
		if k < 100 {
			n++
		}
	}
	r.maxRep = max(r.maxRep, n)
	r.mu.Unlock()
	return nil
}

func (r *run) signal(slot int, sig syscall.Signal) {
	r.mu.Lock()
	rep := r.replicas[slot]
	delete(r.replicas, slot)
	r.mu.Unlock()
	if rep == nil {
		return
	}
	rep.cmd.Process.Signal(sig)
	select {
	case <-rep.done:
	case <-time.After(30 * time.Second):
		rep.cmd.Process.Kill()
		<-rep.done
	}
}

func (r *run) liveSlots() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for s := range r.replicas {
		out = append(out, s)
	}
	sort.Ints(out)
	return out
}

// committed returns how many raw records the group has committed.
func (r *run) committed(ctx context.Context) (int64, error) {
	offs, err := r.adm.FetchOffsets(ctx, r.cfg.Names.GroupID)
	if err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == r.cfg.Names.RawTopic && o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n, nil
}

func (r *run) services(args ...string) error {
	out, err := exec.Command(r.opt.Services, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: scripts/services %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// chaos runs the replicas and the fault schedule until every raw record is
// committed.
func (r *run) chaos(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(r.opt.Seed, 7))
	total := int64(r.opt.Events)
	type step struct {
		at   float64
		name string
		do   func() error
	}
	var steps []step
	steps = append(steps, step{0.08, "scale 1 -> 3", func() error {
		if err := r.startReplica(1); err != nil {
			return err
		}
		return r.startReplica(2)
	}})
	for k := 0; k < r.opt.Kills; k++ {
		at := 0.10 + 0.78*(float64(k)+rng.Float64())/float64(r.opt.Kills)
		steps = append(steps, step{at, "SIGKILL a replica", func() error {
			live := r.liveSlots()
			if len(live) == 0 {
				return nil
			}
			key := live[rng.IntN(len(live))]
			r.signal(key, syscall.SIGKILL)
			r.kills++
			r.logf("killed replica %d of %s (SIGKILL); restarting it", key%100, procName(key))
			time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
			return r.startProc(key)
		}})
	}
	steps = append(steps, step{0.35, "restart Redis (it comes back empty)", func() error {
		if err := r.services("restart", "redis"); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // replicas pause: the loaded marker is gone
		return r.seedConsent(ctx)
	}})
	steps = append(steps, step{0.55, "restart the Kafka broker", func() error { return r.services("restart", "kafka") }})
	steps = append(steps, step{0.90, "scale 3 -> 1", func() error {
		for _, s := range r.liveSlots() {
			if s%100 != 0 {
				r.signal(s, syscall.SIGTERM)
			}
		}
		if len(r.liveSlots()) == 0 {
			return r.startReplica(0)
		}
		return nil
	}})
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	if err := r.startReplica(0); err != nil {
		return err
	}
	r.maxRep = 1
	next := 0
	var last int64 = -1
	lastLog := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("chaos: did not finish: %w", err)
		}
		done, err := r.committed(ctx)
		if err != nil {
			done = last // the broker may be restarting
		}
		for next < len(steps) && float64(done) >= steps[next].at*float64(total) {
			r.logf("%d/%d committed: %s", done, total, steps[next].name)
			if err := steps[next].do(); err != nil {
				return err
			}
			next++
		}
		if done >= total && next == len(steps) {
			break
		}
		if done != last || time.Since(lastLog) > 10*time.Second {
			if time.Since(lastLog) > 2*time.Second {
				r.logf("%d/%d committed, %d replicas", done, total, len(r.liveSlots()))
				lastLog = time.Now()
			}
			last = done
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !r.opt.NoKanon {
		if err := r.kanonCaughtUp(ctx); err != nil {
			return err
		}
	}
	for _, s := range r.liveSlots() {
		r.signal(s, syscall.SIGTERM)
	}
	r.logf("all %d raw records committed, and the clean topics by the k-anonymity processors; replicas stopped", total)
	return nil
}

// verify reads every clean topic with read_committed and compares.
func (r *run) verify(ctx context.Context, expected [purpose.Count]map[string]bool, expectedBad int) (Result, error) {
	res := Result{Purposes: map[string]PurposeResult{}}
	for _, p := range purpose.All {
		js, err := schemas.CleanSchemaJSON(p.String())
		if err != nil {
			return res, err
		}
		codec, err := avrosingle.NewCodec(string(js))
		if err != nil {
			return res, err
		}
		seen := map[string]int{}
		var decodeErr error
		err = kafkaio.Scan(ctx, r.cfg.Kafka, func(rec *kgo.Record) {
			native, _, err := codec.NativeFromFramed(rec.Value)
			if err != nil {
				decodeErr = err
				return
			}
			id, _ := native.(map[string]any)["event_id_pseudonym"].(map[string]any)["string"].(string)
			seen[id]++
		}, wiring.CleanTopic(r.cfg, p))
		if err != nil {
			return res, err
		}
		if decodeErr != nil {
			return res, fmt.Errorf("chaos: %s holds a record its schema cannot decode: %w", p, decodeErr)
		}
		pr := PurposeResult{Expected: len(expected[p])}
		for id, n := range seen {
			pr.Published += n
			if n > 1 {
				pr.Duplicated += n - 1
			}
			if !expected[p][id] {
				pr.WronglyPublished++
			}
		}
		for id := range expected[p] {
			if seen[id] == 0 {
				pr.Missing++
			}
		}
		res.Purposes[p.String()] = pr
		r.logf("verified %s: %+v", p, pr)
	}
	n := 0
	if err := kafkaio.Scan(ctx, r.cfg.Kafka, func(*kgo.Record) { n++ }, r.cfg.Names.QuarantineTopic); err != nil {
		return res, err
	}
	res.Quarantine = PurposeResult{Expected: expectedBad, Published: n}
	if n > expectedBad {
		res.Quarantine.Duplicated = n - expectedBad
	} else {
		res.Quarantine.Missing = expectedBad - n
	}
	return res, nil
}
