// Package demo runs the whole privacy path in one process with nothing
// installed: an in-process Kafka (franz-go kfake) and an in-process Redis
// (miniredis), synthetic consents and events (with a few malformed ones and
// some written with an evolved writer schema that adds unclassified fields),
// the privacy processor through the real runner, then a summary: counts per
// purpose and reason, and one raw event beside its clean form per purpose.
// A second stage runs the k-anonymity processors over the clean topics:
// k-anonymous aggregates of analytics and CASTLE over ai_training.
//
// It is the zero-setup showcase; tests and benchmarks use real Kafka and
// Redis (scripts/services).
package demo

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Options configure a demo run.
type Options struct {
	Events   int // total raw records, malformed ones included (default 20000)
	Subjects int // synthetic subjects (default 3000)
	Seed     uint64
	// Out receives the human summary (nil: none).
	Out io.Writer
	Log *slog.Logger
}

// Result is the accounting of a run; its JSON form is the last line of
// 'pipeline demo --json'. Check verifies the accounting identity.
type Result struct {
	privacy.Tally
	// Kanon is the k-anonymity stage (aggregates and CASTLE).
	Kanon KanonResult `json:"kanon"`
	// Rights is the data-subject rights stage (access, erasure).
	Rights   RightsResult `json:"rights"`
	ElapsedS float64      `json:"elapsed_s"`
}

// sampleSubject is a synthetic subject with explicit consent for every purpose.
const sampleSubject = "cust-sample-0001"

// Run runs the demo.
func Run(ctx context.Context, opt Options) (Result, error) {
	if opt.Events <= 0 {
		opt.Events = 20000
	}
	if opt.Subjects <= 0 {
		opt.Subjects = 3000
	}
	if opt.Seed == 0 {
		opt.Seed = 42
	}
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	cfg, err := config.Load()
	if err != nil {
		return Result{}, err
	}
	cleanTopics := make([]string, 0, purpose.Count)
	for _, p := range purpose.All {
		cleanTopics = append(cleanTopics, wiring.CleanTopic(cfg, p))
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(demoPartitions, append(append([]string{cfg.Names.RawTopic, cfg.Names.QuarantineTopic, cfg.Names.AuditTopic,
			cfg.Names.ConsentTopic, cfg.Names.KeysTopic, cfg.Names.ErasuresTopic, cfg.Names.RequestsTopic}, cleanTopics...), kanonTopics(cfg)...)...))
	if err != nil {
		return Result{}, fmt.Errorf("demo: kfake: %w", err)
	}
	defer cluster.Close()
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	mr, err := miniredis.Run()
	if err != nil {
		return Result{}, fmt.Errorf("demo: miniredis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	cfg.Redis.Addr = mr.Addr() // the requests stage opens its own clients from the configuration

	// An in-process schema registry (srfake): the clean, agg and kanon
	// schemas are registered in it and every output is Confluent-framed,
	// whatever PIPELINE_SCHEMA_REGISTRY_URL says.
	fakeRegistry := srfake.New()
	defer fakeRegistry.Close()
	cfg.Schemas = config.Schemas{WireFormat: wireformat.Confluent.String(), Registry: schemaregistry.Config{
		URL: []string{fakeRegistry.URL()}, Timeout: 10 * time.Second, Compatibility: "BACKWARD", AutoRegister: true}}
	rawID, err := registerRaw(ctx, cfg)
	if err != nil {
		return Result{}, err
	}

	keys, err := pseudonym.GenerateKeyring(purpose.Names(), "demo")
	if err != nil {
		return Result{}, err
	}
	// The keyring and an erasure ledger key in files, as a deployment has
	// them (the requests stage reads them; the processor checks the ledger).
	dir, err := os.MkdirTemp("", "pipeline-demo-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	cfg.Privacy.PseudonymKeysFile, cfg.Keys.ErasureKeyFile = filepath.Join(dir, "keys.json"), filepath.Join(dir, "ledger.key")
	if err := pseudonym.WriteKeyringFile(cfg.Privacy.PseudonymKeysFile, keys); err != nil {
		return Result{}, err
	}
	if err := erasure.GenerateLedgerKeyFile(cfg.Keys.ErasureKeyFile); err != nil {
		return Result{}, err
	}
	reg := prometheus.NewRegistry()
	pp, err := wiring.BuildPrivacy(ctx, cfg, wiring.Deps{Redis: rdb, Registry: reg, Log: opt.Log, Keys: keys})
	if err != nil {
		return Result{}, err
	}
	// An evolved writer schema: a producer added two fields nobody classified.
	v2JSON, err := evolvedSchema()
	if err != nil {
		return Result{}, err
	}
	if _, err := pp.Decoder.Register(v2JSON); err != nil {
		return Result{}, err
	}

	now := time.Now()
	if err := seedConsents(ctx, pp.Store, opt.Subjects, now); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(opt.Out, "privacy pipeline demo: in-process Kafka (kfake), Redis (miniredis) and schema registry (srfake)\n")
	fmt.Fprintf(opt.Out, "raw events are written half single-object encoded, half in the Confluent wire format (schema id %d under %s); every output is Confluent-framed, its schema registered under <topic>-value:\n",
		rawID, wireformat.TopicSubject(cfg.Names.RawTopic))
	for _, p := range purpose.All {
		fmt.Fprintf(opt.Out, "  %-45s schema id %d\n", wiring.CleanTopic(cfg, p), binary.BigEndian.Uint32(pp.Processor.CleanFrame(p)[1:]))
	}
	fmt.Fprintf(opt.Out, "seeded consent for %d synthetic subjects across gdpr, ccpa, uk_gdpr, pdpa, vn_decree13 and unknown jurisdictions\n", opt.Subjects)
	fmt.Fprintf(opt.Out, "(some CCPA subjects have a record with only their jurisdiction: the opt-out default applies to them; subjects with no record are denied everything, whatever their events claim)\n")

	sampleRaw, err := produceEvents(ctx, cfg, opt, now, v2JSON, rawID)
	if err != nil {
		return Result{}, err
	}

	rc := wiring.RunnerConfig(cfg, cfg.Names.GroupID, cfg.Names.RawTopic, opt.Log)
	rc.TransactionalID = "demo-privacy"
	rn, err := runner.New(rc, pp.Processor)
	if err != nil {
		return Result{}, err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rn.Run(rctx) }()
	waitErr := waitFor(ctx, rn, opt.Events, 5*time.Minute)
	stop()
	if err := <-done; err != nil {
		return Result{}, err
	}
	if waitErr != nil {
		return Result{}, waitErr
	}
	res, err := result(reg)
	if err != nil {
		return Result{}, err
	}
	res.ElapsedS = time.Since(start).Seconds()
	if err := res.Check(); err != nil {
		return res, err
	}
	// Independent check: what the topics hold (read_committed) equals what
	// was counted.
	recs, err := kafkaio.ReadAll(ctx, cfg.Kafka, cleanTopics...)
	if err != nil {
		return res, err
	}
	held := map[string]int{}
	for _, r := range recs {
		held[r.Topic]++
	}
	for _, p := range purpose.All {
		if got := held[wiring.CleanTopic(cfg, p)]; got != res.Published[p.String()] {
			return res, fmt.Errorf("demo: topic %s holds %d records, %d were counted as published", wiring.CleanTopic(cfg, p), got, res.Published[p.String()])
		}
	}
	printSummary(opt.Out, res, cfg)
	if err := printSample(ctx, opt.Out, cfg, pp, sampleRaw); err != nil {
		return res, err
	}
	// Stage two: k-anonymity over the clean topics just filled.
	res.Kanon, err = runKanon(ctx, cfg, opt.Log, res.Published[purpose.Analytics.String()], res.Published[purpose.AITraining.String()])
	if err != nil {
		return res, err
	}
	printKanon(opt.Out, res.Kanon)
	// Stage three: the sample subject's access and erasure requests.
	res.Rights, err = runRights(ctx, cfg, rdb, pp, reg, keys, opt.Log)
	if err != nil {
		return res, err
	}
	printRights(opt.Out, res.Rights)
	res.ElapsedS = time.Since(start).Seconds()
	return res, nil
}

func evolvedSchema() ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(schemas.RawEventSchemaJSON(), &m); err != nil {
		return nil, err
	}
	fields := m["fields"].([]any)
	fields = append(fields,
		map[string]any{"name": "loyalty_tier", "type": []any{"null", "string"}, "default": nil},
		map[string]any{"name": "referrer_email", "type": []any{"null", "string"}, "default": nil})
	m["fields"] = fields
	return json.Marshal(m)
}

func seedConsents(ctx context.Context, store *consentredis.RedisStore, n int, now time.Time) error {
	var subs []string
	var recs []consent.Record
	flush := func() error {
		if len(subs) == 0 {
			return nil
		}
		err := store.PutMany(ctx, subs, recs)
		subs, recs = subs[:0], recs[:0]
		return err
	}
	for i := 0; i < n; i++ {
		if rec, ok := synth.Consent(i, now); ok {
			subs = append(subs, synth.SubjectID(i))
			recs = append(recs, rec)
		}
		if len(subs) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	sample := consent.Record{}
	for _, p := range purpose.All {
		sample.Apply(p, consent.Granted, consent.GDPR, now.Add(-time.Hour).UnixMilli())
	}
	subs = append(subs, sampleSubject)
	recs = append(recs, sample)
	if err := flush(); err != nil {
		return err
	}
	return store.MarkLoaded(ctx) // the store now holds a complete copy
}

// produceEvents writes opt.Events raw records: one sample event, a few
// malformed records, ~5% with the evolved writer schema, the rest normal.
// registerRaw registers the raw schema under the raw topic's subject, as a
// producer with Confluent's AvroSerializer does, and returns its id.
func registerRaw(ctx context.Context, cfg config.Config) (uint32, error) {
	cl, err := cfg.Schemas.Registry.NewClient()
	if err != nil {
		return 0, err
	}
	ss, err := cl.SR().CreateSchema(ctx, wireformat.TopicSubject(cfg.Names.RawTopic), sr.Schema{Schema: string(schemas.RawEventSchemaJSON()), Type: sr.TypeAvro})
	if err != nil {
		return 0, fmt.Errorf("demo: registering the raw schema: %w", err)
	}
	return uint32(ss.ID), nil
}

// produceEvents writes the synthetic events: the sample, a few malformed
// records, every twentieth event with an evolved writer schema, and of the
// others every second one in the Confluent wire format (rawID) instead of
// single-object encoding: the raw input accepts both.
func produceEvents(ctx context.Context, cfg config.Config, opt Options, now time.Time, v2JSON []byte, rawID uint32) (*producer.Event, error) {
	enc, err := producer.NewEncoder()
	if err != nil {
		return nil, err
	}
	encV2, err := producer.NewEncoderFor(v2JSON)
	if err != nil {
		return nil, err
	}
	cl, err := cfg.Kafka.NewClient(kgo.DefaultProduceTopic(cfg.Names.RawTopic),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	gen := synth.New(opt.Seed, opt.Subjects, now)
	malformed := max(1, opt.Events/1000)
	if opt.Events < 3 {
		malformed = 0
	}
	recs := make([]*kgo.Record, 0, opt.Events)
	sample := gen.EventFor(0, 7)
	sample.SubjectID = sampleSubject
	sample.EventType = "support_message"
	sample.Message = "Hi, I'm " + sample.Name + ", mail me at " + sample.Email + " or call " + sample.Phone
	sample.CardNumber = "4111 1111 1111 1111"
	amt := 129.90
	sample.OrderAmount, sample.Currency = &amt, "USD"
	rec, err := enc.Record(cfg.Names.RawTopic, &sample)
	if err != nil {
		return nil, err
	}
	recs = append(recs, rec)
	for i := 0; i < malformed; i++ {
		b, _ := synth.Malformed(i, enc, now)
		recs = append(recs, &kgo.Record{Topic: cfg.Names.RawTopic, Key: []byte(fmt.Sprintf("bad-%d", i)), Value: b})
	}
	for i := len(recs); i < opt.Events; i++ {
		ev := gen.Event(i)
		var r *kgo.Record
		if i%20 == 0 {
			v, err := encV2.AppendNative(nil, ev.Native(map[string]any{
				"loyalty_tier": goavro.Union("string", "gold"), "referrer_email": goavro.Union("string", ev.Email)}))
			if err != nil {
				return nil, err
			}
			r = &kgo.Record{Topic: cfg.Names.RawTopic, Key: []byte(ev.SubjectID), Value: v}
		} else if r, err = enc.Record(cfg.Names.RawTopic, &ev); err != nil {
			return nil, err
		} else if i%2 == 1 {
			r.Value = append(wireformat.AppendConfluent(nil, rawID), r.Value[wireformat.SingleObjectHeaderLen:]...)
		}
		recs = append(recs, r)
	}
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		return nil, err
	}
	return &sample, nil
}

// waitFor waits until n input records are committed (all their outputs
// acknowledged).
func waitFor(ctx context.Context, rn *runner.Runner, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if int(rn.Committed()) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: committed %d of %d events before the timeout", rn.Committed(), n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func result(g prometheus.Gatherer) (Result, error) {
	t, err := privacy.ReadTally(g)
	return Result{Tally: t}, err
}

func printSummary(w io.Writer, r Result, cfg config.Config) {
	q := r.QuarantinedTotal()
	fmt.Fprintf(w, "\nprocessed %d raw events in %.2fs: %d quarantined, %d unclassified fields dropped\n\n", r.EventsIn, r.ElapsedS, q, r.UnclassifiedDropped)
	fmt.Fprintf(w, "%-22s %10s %10s   %s\n", "purpose", "published", "denied", "denied by reason")
	for _, p := range purpose.Names() {
		d := 0
		var parts []string
		for reason, n := range r.Denied[p] {
			d += n
			parts = append(parts, fmt.Sprintf("%s=%d", reason, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "%-22s %10d %10d   %s\n", p, r.Published[p], d, strings.Join(parts, " "))
	}
	var qs []string
	for reason, n := range r.Quarantined {
		qs = append(qs, fmt.Sprintf("%s=%d", reason, n))
	}
	sort.Strings(qs)
	fmt.Fprintf(w, "\nquarantined to %s: %s\n", cfg.Names.QuarantineTopic, strings.Join(qs, " "))
	var gs []string
	for _, p := range purpose.Names() {
		for src, n := range r.GPCApplied[p] {
			gs = append(gs, fmt.Sprintf("%s/%s=%d", p, src, n))
		}
	}
	sort.Strings(gs)
	fmt.Fprintf(w, "Global Privacy Control signals applied (purpose/source): %s\n", strings.Join(gs, " "))
}

// printSample shows the sample event's raw form beside each clean form, as
// read back from the clean topics.
func printSample(ctx context.Context, w io.Writer, cfg config.Config, pp *wiring.Privacy, raw *producer.Event) error {
	rawJSON, _ := json.MarshalIndent(raw.Native(nil), "", "  ")
	fmt.Fprintf(w, "\none raw event (synthetic data) from %s:\n%s\n", cfg.Names.RawTopic, rawJSON)
	for _, p := range purpose.All {
		key, _ := pp.Keys.Active(p.String())
		pseud := string(pseudonym.New(key).Append(nil, "subject_id", raw.SubjectID))
		recs, err := kafkaio.ReadAll(ctx, cfg.Kafka, wiring.CleanTopic(cfg, p))
		if err != nil {
			return err
		}
		fields, err := pp.Policy.Derive(pp.Raw, p)
		if err != nil {
			return err
		}
		codec, err := avrosingle.NewCodec(string(policy.CleanSchemaJSON(p, fields)))
		if err != nil {
			return err
		}
		found := false
		for _, r := range recs {
			if string(r.Key) != pseud {
				continue
			}
			native, _, err := codec.NativeFromFramed(r.Value)
			if err != nil {
				return fmt.Errorf("demo: decode clean record of %s: %w", p, err)
			}
			text, _ := json.MarshalIndent(native, "", "  ")
			var hs []string
			for _, h := range r.Headers {
				hs = append(hs, h.Key+"="+string(h.Value))
			}
			fmt.Fprintf(w, "\nits clean form in %s (key %s; headers %s):\n%s\n", wiring.CleanTopic(cfg, p), r.Key, strings.Join(hs, " "), text)
			found = true
			break
		}
		if !found {
			fmt.Fprintf(w, "\nnot published to %s\n", wiring.CleanTopic(cfg, p))
		}
	}
	return nil
}
