package export_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/export"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
)

// fixture is the privacy processor with the encrypting policy (e-mail
// encrypted, phone tokenized for personalization) on kfake and
// miniredis, single-object framed, with clean topics of chosen partition
// counts.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	cluster *kfake.Cluster
	cfg     config.Config
	mr      *miniredis.Miniredis
	rdb     *redis.Client
	kms     *subjectkey.FileKMS
	keys    *pseudonym.Keyring
	pp      *wiring.Privacy
	enc     *producer.Encoder
	now     time.Time
	ledger  *erasure.Ledger
}

func newFixture(t *testing.T, parts map[purpose.Purpose]int, keys *pseudonym.Keyring, opts ...func(*config.Config)) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg.Kafka.Brokers = c.ListenAddrs()
	mr := miniredis.RunT(t)
	cfg.Redis.Addr = mr.Addr()
	cfg.Schemas = config.Schemas{WireFormat: wireformat.SingleObject.String()}
	for _, o := range opts {
		o(&cfg)
	}
	pol, kek, kms := pipelinetest.EncryptingPolicy(t)
	cfg.Privacy.PolicyFile, cfg.Keys.KEKFile = pol, kek
	dir := t.TempDir()
	cfg.Keys.ErasureKeyFile = filepath.Join(dir, "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(cfg.Keys.ErasureKeyFile); err != nil {
		t.Fatal(err)
	}
	ledger, err := erasure.LoadLedgerKey(cfg.Keys.ErasureKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if keys == nil {
		if keys, err = pseudonym.GenerateKeyring(purpose.Names(), "t"); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Privacy.PseudonymKeysFile = filepath.Join(dir, "keys.json")
	if err := pseudonym.WriteKeyringFile(cfg.Privacy.PseudonymKeysFile, keys); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: ctx, cluster: c, cfg: cfg, mr: mr, kms: kms, keys: keys, now: time.Now(), ledger: ledger}
	f.createTopics(parts)
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.rdb = redis.NewClient(ropts)
	t.Cleanup(func() { f.rdb.Close() })
	f.pp = f.privacy(keys)
	f.enc, _ = producer.NewEncoder()
	return f
}

func (f *fixture) createTopics(parts map[purpose.Purpose]int) {
	f.t.Helper()
	adm, err := f.cfg.Kafka.NewAdmin()
	if err != nil {
		f.t.Fatal(err)
	}
	defer adm.Close()
	n := f.cfg.Names
	for topic, p := range map[string]int32{n.RawTopic: 4, n.QuarantineTopic: 1, n.KeysTopic: 2, n.ConsentTopic: 2, n.ErasuresTopic: 2} {
		if _, err := adm.CreateTopic(f.ctx, p, 1, nil, topic); err != nil {
			f.t.Fatal(err)
		}
	}
	for _, pur := range purpose.All {
		p := parts[pur]
		if p == 0 {
			p = 3
		}
		if _, err := adm.CreateTopic(f.ctx, int32(p), 1, nil, wiring.CleanTopic(f.cfg, pur)); err != nil {
			f.t.Fatal(err)
		}
	}
}

// privacy builds a privacy processor with keys on the fixture's stores.
func (f *fixture) privacy(keys *pseudonym.Keyring) *wiring.Privacy {
	f.t.Helper()
	pp, err := wiring.BuildPrivacy(f.ctx, f.cfg, wiring.Deps{Redis: f.rdb, Registry: prometheus.NewRegistry(), Keys: keys})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := pp.Store.MarkLoaded(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	if err := pp.DataKeys.MarkLoaded(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	return pp
}

// grant stores consent for every purpose and a history entry per purpose.
func (f *fixture) grant(subjects ...string) {
	f.t.Helper()
	for _, s := range subjects {
		var r consent.Record
		for _, p := range purpose.All {
			at := f.now.Add(-time.Minute)
			r.Apply(p, consent.Granted, consent.GDPR, at.UnixMilli())
			he, _ := json.Marshal(consent.HistoryEntry{ReceiptID: "rcpt-" + p.String(), SubjectID: s, Purpose: p.String(), State: "granted",
				Jurisdiction: "gdpr", Source: "web_form", PolicyVersion: "t", Timestamp: at.UTC().Format(time.RFC3339Nano)})
			f.rdb.LPush(f.ctx, f.pp.Store.HistoryKey(s), he)
		}
		if err := f.pp.Store.Put(f.ctx, s, &r); err != nil {
			f.t.Fatal(err)
		}
	}
}

// events returns n events, subject i%len(subjects), with a marked e-mail.
func (f *fixture) events(seed uint64, n int, subjects ...string) []producer.Event {
	gen := synth.New(seed, len(subjects), f.now)
	var evs []producer.Event
	for i := range n {
		ev := gen.EventFor(i, i%len(subjects))
		ev.SubjectID = subjects[i%len(subjects)]
		ev.Email = mail(ev.SubjectID)
		evs = append(evs, ev)
	}
	return evs
}

func mail(subject string) string { return "canary-mail-" + subject + "@example.com" }

// publish runs events through pp's worker and produces its outputs with
// the runner's partitioner for the clean topics (franz-go's
// StickyKeyPartitioner, Kafka's murmur2 for keyed records).
func (f *fixture) publish(pp *wiring.Privacy, evs []producer.Event) {
	f.t.Helper()
	var in []processors.Record
	for i := range evs {
		b, err := f.enc.AppendEncoded(nil, &evs[i])
		if err != nil {
			f.t.Fatal(err)
		}
		in = append(in, processors.Record{Topic: f.cfg.Names.RawTopic, Key: []byte(evs[i].SubjectID), Value: b})
	}
	w := pp.Processor.NewWorker()
	var out processors.Batch
	if err := w.Process(f.ctx, in, &out); err != nil {
		f.t.Fatal(err)
	}
	w.Done(true)
	var recs []*kgo.Record
	for _, o := range out.Outputs {
		r := &kgo.Record{Topic: o.Topic, Key: append([]byte(nil), o.Key...), Value: append([]byte(nil), o.Value...)}
		for _, h := range o.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: append([]byte(nil), h.Value...)})
		}
		recs = append(recs, r)
	}
	f.produce(recs...)
}

func (f *fixture) produce(recs ...*kgo.Record) {
	f.t.Helper()
	cl, err := f.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.ProduceAll(f.ctx, cl, recs); err != nil {
		f.t.Fatal(err)
	}
}

// runRunner publishes evs through the real runner (its transactional
// session and partitioner) and waits until they are committed.
func (f *fixture) runRunner(evs []producer.Event) {
	f.t.Helper()
	rc := wiring.RunnerConfig(f.cfg, f.cfg.Names.GroupID, f.cfg.Names.RawTopic, slog.New(slog.DiscardHandler))
	rc.TransactionalID = "export-test-privacy"
	rn, err := runner.New(rc, f.pp.Processor)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- rn.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var recs []*kgo.Record
	for i := range evs {
		r, err := f.enc.Record(f.cfg.Names.RawTopic, &evs[i])
		if err != nil {
			f.t.Fatal(err)
		}
		recs = append(recs, r)
	}
	f.produce(recs...)
	deadline := time.Now().Add(time.Minute)
	for int(rn.Committed()) < len(evs) {
		if time.Now().After(deadline) {
			f.t.Fatalf("the runner committed %d of %d events", rn.Committed(), len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exporter builds the exporter as the commands do (wiring.NewExporter).
func (f *fixture) exporter(opts export.Options) *export.Builder {
	f.t.Helper()
	b, closeFn, err := wiring.NewExporter(f.ctx, f.cfg, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(closeFn)
	return b
}

func (f *fixture) export(opts export.Options, subject string) export.Document {
	f.t.Helper()
	doc, err := f.exporter(opts).Build(f.ctx, export.Request{Subject: subject}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return doc
}

// pseudonyms returns a subject's pseudonyms by purpose (every key).
func (f *fixture) pseudonyms(keys *pseudonym.Keyring, subject string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, p := range purpose.Names() {
		out[p] = map[string]bool{}
		for _, k := range keys.Keys(p) {
			out[p][string(pseudonym.New(k).Append(nil, "subject_id", subject))] = true
		}
	}
	return out
}

// held returns, per clean topic, the positions of the records keyed by
// one of the subject's pseudonyms of the topic's purpose: what a full,
// independent read of the topics finds.
func (f *fixture) held(keys *pseudonym.Keyring, subject string) map[string][]string {
	f.t.Helper()
	ps := f.pseudonyms(keys, subject)
	out := map[string][]string{}
	for _, p := range purpose.All {
		topic := wiring.CleanTopic(f.cfg, p)
		recs, err := kafkaio.ReadAll(f.ctx, f.cfg.Kafka, topic)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, r := range recs {
			if ps[p.String()][string(r.Key)] {
				out[topic] = append(out[topic], pos(r.Partition, r.Offset))
			}
		}
		sort.Strings(out[topic])
	}
	return out
}

func pos(p int32, o int64) string { return fmt.Sprintf("%d@%08d", p, o) }

// exported returns the positions of the document's records per topic.
func exported(doc export.Document) map[string][]string {
	out := map[string][]string{}
	for _, t := range doc.Records {
		for _, r := range t.Records {
			out[t.Topic] = append(out[t.Topic], pos(r.Partition, r.Offset))
		}
		sort.Strings(out[t.Topic])
	}
	return out
}

// partitionsOf reports, per clean topic, the partitions holding records.
func (f *fixture) partitionCount(topic string) int {
	f.t.Helper()
	adm, err := f.cfg.Kafka.NewAdmin()
	if err != nil {
		f.t.Fatal(err)
	}
	defer adm.Close()
	ends, err := adm.ListEndOffsets(f.ctx, topic)
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	ends.Each(func(kadm.ListedOffset) { n++ })
	return n
}
