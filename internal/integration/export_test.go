package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/export"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
)

// TestExportBeforeAndAfterErasure: the access export of SPEC 3.5 on the
// real broker, redis-server and registry, with the privacy processor
// (encrypting policy, Confluent framing), consent-sync and the key sync
// running. Before the erasure the subject's export holds its consent
// history, its pseudonyms, its logged data key and its records with the
// encrypted e-mail decrypted, and no record of the other subject. After
// wiring.Erase it says erased, every key shredded, no consent, no
// decrypted value. The cost of an export over the topics' records is
// measured (time, records read, with and without partition pruning).
func TestExportBeforeAndAfterErasure(t *testing.T) {
	r := newRig(t)
	r.erasing()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	r.startErasing(fctx)
	pp := r.pp

	subject, other := "canary-export-subject-9101", "canary-export-other-9102"
	const fillers = 20
	var fill []string
	for i := range fillers {
		fill = append(fill, "canary-export-filler-"+string(rune('a'+i)))
	}
	now := time.Now().Truncate(time.Millisecond)
	var grants []consentlog.Change
	for _, sub := range append([]string{subject, other}, fill...) {
		for _, p := range purpose.All {
			grants = append(grants, ch(sub, p, consent.Granted, consent.GDPR, now.Add(-time.Minute)))
		}
	}
	grants = append(grants, ch(subject, purpose.Marketing, consent.Withdrawn, consent.GDPR, now.Add(-30*time.Second)))
	r.publishConsent(ctx, grants...)
	waitUntil(t, "consent and history in Redis", time.Minute, func() bool {
		out := make([]consent.Lookup, 2)
		h, _ := pp.Store.History(ctx, subject)
		return pp.Store.Lookup(ctx, []string{subject, other}, out) == nil && out[0].Found && out[1].Found && len(h) == purpose.Count+1
	})
	gen := synth.New(91, 2+fillers, time.Now())
	var evs []producer.Event
	const total = 4000
	for i := range total {
		ev := gen.Event(i)
		switch {
		case i%50 == 0:
			ev.SubjectID = subject
		case i%50 == 1:
			ev.SubjectID = other
		default:
			ev.SubjectID = fill[i%fillers]
		}
		ev.Email = "canary-mail-" + ev.SubjectID + "@example.com"
		evs = append(evs, ev)
	}
	r.start()
	r.produce(ctx, evs)
	r.waitCaughtUp(3 * time.Minute)
	held := len(r.read(r.cleanTopics()...))

	b, closeFn, err := wiring.NewExporter(ctx, r.cfg, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	var progress int
	start := time.Now()
	before, err := b.Build(ctx, export.Request{Subject: subject, Requests: []json.RawMessage{json.RawMessage(`{"id":"req-it-export","type":"access"}`)}},
		func(export.Progress) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	js, _ := before.JSON()
	if !before.Complete || before.Erased || !before.HoldsData || progress == 0 {
		t.Fatalf("before: complete %v, erased %v, holds %v, %d progress calls", before.Complete, before.Erased, before.HoldsData, progress)
	}
	if before.Consent.State == nil || len(before.Consent.History) != purpose.Count+1 {
		t.Fatalf("before: consent %+v", before.Consent)
	}
	for _, ps := range before.Consent.State.Purposes {
		if want := map[bool]string{true: "withdrawn", false: "granted"}[ps.Purpose == "marketing"]; ps.State != want {
			t.Fatalf("before: %s is %s", ps.Purpose, ps.State)
		}
	}
	if len(before.Pseudonyms) != purpose.Count {
		t.Fatalf("before: %d pseudonyms", len(before.Pseudonyms))
	}
	for _, k := range before.DataKeys {
		if want := map[bool]string{true: export.KeyLogged, false: export.KeyAbsent}[k.Purpose == "personalization"]; k.Status != want {
			t.Fatalf("before: data key %s is %s, want %s", k.ID, k.Status, want)
		}
	}
	ps := map[string]bool{}
	for _, p := range before.Pseudonyms {
		ps[p.Pseudonym] = true
	}
	decrypted, matched := 0, 0
	for _, tr := range before.Records {
		if tr.Undecodable != 0 || !tr.Complete {
			t.Fatalf("before: %s undecodable %d, complete %v", tr.Topic, tr.Undecodable, tr.Complete)
		}
		for _, rec := range tr.Records {
			matched++
			if !ps[rec.Key] {
				t.Fatalf("before: a record keyed %s on %s is not the subject's", rec.Key, tr.Topic)
			}
			for _, d := range rec.Decrypted {
				if d.Status != export.StatusDecrypted || *d.Value != "canary-mail-"+subject+"@example.com" {
					t.Fatalf("before: %+v", d)
				}
				decrypted++
			}
		}
	}
	if decrypted == 0 || matched == 0 {
		t.Fatalf("before: %d records, %d decrypted", matched, decrypted)
	}
	if bytes.Contains(js, []byte(other)) || bytes.Contains(js, []byte("canary-export-filler-")) {
		t.Fatal("before: the export names another subject")
	}
	fb, closeFull, err := wiring.NewExporter(ctx, r.cfg, export.Options{FullScan: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFull()
	fstart := time.Now()
	fdoc, err := fb.Build(ctx, export.Request{Subject: subject}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ftook := time.Since(fstart)
	if fm := countRecords(fdoc); fm != matched {
		t.Fatalf("full scan found %d records, pruned %d", fm, matched)
	}
	t.Logf("export over %d clean records (4 partitions per topic): pruned %d records read in %s (%d progress calls), full scan %d records in %s; %d of the subject's records, %d decrypted, document %d bytes",
		held, before.Scan.RecordsScanned, took.Round(time.Millisecond), progress, fdoc.Scan.RecordsScanned, ftook.Round(time.Millisecond), matched, decrypted, len(js))

	if _, err := wiring.Erase(ctx, r.cfg, subject, "req-it-erase"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the key sync saw the erasure", time.Minute, func() bool {
		st, _ := pp.DataKeys.State(ctx, before.DataKeys[1].ID)
		return st == export.KeyShredded
	})
	after, err := b.Build(ctx, export.Request{Subject: subject}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ajs, _ := after.JSON()
	if !after.Erased || after.Consent.State != nil || len(after.Consent.History) != 0 || !after.Complete {
		t.Fatalf("after:\n%s", ajs)
	}
	for _, k := range after.DataKeys {
		if k.Status != export.KeyShredded {
			t.Fatalf("after: data key %s is %s", k.ID, k.Status)
		}
	}
	for _, tr := range after.Records {
		for _, rec := range tr.Records {
			for _, d := range rec.Decrypted {
				if d.Status != export.StatusKeyShredded || d.Value != nil {
					t.Fatalf("after: %+v", d)
				}
			}
		}
	}
	t.Logf("after the erasure: erased, %d data keys shredded, %d retained records listed undecryptable", len(after.DataKeys), countRecords(after))
}

func countRecords(d export.Document) int {
	n := 0
	for _, tr := range d.Records {
		n += len(tr.Records)
	}
	return n
}

// TestExportCost measures an export over N records of one clean topic on
// the real broker (N = PIPELINE_TEST_EXPORT_RECORDS, default 200000; 4
// partitions): the time and records read with partition pruning (the
// subject's one partition) and with a full scan, and that both find the
// subject's records and nothing else.
func TestExportCost(t *testing.T) {
	r := newRig(t)
	n := 200_000
	if s := os.Getenv("PIPELINE_TEST_EXPORT_RECORDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("PIPELINE_TEST_EXPORT_RECORDS=%q", s)
		}
		n = v
	}
	r.cfg.Keys.ErasureKeyFile = filepath.Join(t.TempDir(), "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(r.cfg.Keys.ErasureKeyFile); err != nil {
		t.Fatal(err)
	}
	r.cfg.Privacy.PseudonymKeysFile = filepath.Join(t.TempDir(), "keys.json")
	if err := writeKeyring(r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const subject = "canary-export-cost-subject"
	var rec consent.Record
	for _, p := range purpose.All {
		rec.Apply(p, consent.Granted, consent.GDPR, time.Now().Add(-time.Minute).UnixMilli())
	}
	if err := r.pp.Store.Put(ctx, subject, &rec); err != nil {
		t.Fatal(err)
	}
	// One real analytics record of the subject (the processor's bytes),
	// copied: the subject's records, and as many others under random
	// pseudonyms (other subjects' records, of the same size).
	ev := synth.New(5, 1, time.Now()).EventFor(0, 0)
	ev.SubjectID = subject
	raw, err := r.enc.AppendEncoded(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	w := r.pp.Processor.NewWorker()
	var out processors.Batch
	if err := w.Process(ctx, []processors.Record{{Topic: r.cfg.Names.RawTopic, Key: []byte(subject), Value: raw}}, &out); err != nil {
		t.Fatal(err)
	}
	analytics := wiring.CleanTopic(r.cfg, purpose.Analytics)
	var model *processors.Output
	for i := range out.Outputs {
		if out.Outputs[i].Topic == analytics {
			model = &out.Outputs[i]
		}
	}
	if model == nil {
		t.Fatal("no analytics record for the subject")
	}
	var hs []kgo.RecordHeader
	for _, h := range model.Headers {
		hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
	}
	value := bytes.Clone(model.Value)
	const mine = 100
	recs := make([]*kgo.Record, 0, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		key := bytes.Clone(model.Key)
		if i%(n/mine) != 0 {
			key = []byte(fmt.Sprintf("%022x", rng.Uint64()))[:22]
		}
		recs = append(recs, &kgo.Record{Topic: analytics, Key: key, Value: value, Headers: hs})
	}
	pcl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	pstart := time.Now()
	if err := kafkaio.ProduceAll(ctx, pcl, recs); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced %d records of %d bytes in %s", n, len(value), time.Since(pstart).Round(time.Millisecond))

	measure := func(opts export.Options) (export.Document, time.Duration) {
		t.Helper()
		b, closeFn, err := wiring.NewExporter(ctx, r.cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		start := time.Now()
		doc, err := b.Build(ctx, export.Request{Subject: subject}, nil)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		var topic export.TopicRecords
		for _, tr := range doc.Records {
			if tr.Topic == analytics {
				topic = tr
			}
		}
		if !doc.Complete || len(topic.Records) != mine || topic.Undecodable != 0 {
			t.Fatalf("complete %v, %d records (want %d), %d undecodable", doc.Complete, len(topic.Records), mine, topic.Undecodable)
		}
		for _, rr := range topic.Records {
			if rr.Key != string(model.Key) {
				t.Fatal("another subject's record in the export")
			}
		}
		return doc, took
	}
	pruned, ptook := measure(export.Options{})
	full, ftook := measure(export.Options{FullScan: true})
	rate := func(d export.Document, took time.Duration) float64 {
		return float64(d.Scan.RecordsScanned) / took.Seconds()
	}
	t.Logf("export over %d records (4 partitions): pruned: %d records read in %s (%.0f records/s); full scan: %d records read in %s (%.0f records/s); %d of the subject's found both ways",
		n, pruned.Scan.RecordsScanned, ptook.Round(time.Millisecond), rate(pruned, ptook), full.Scan.RecordsScanned, ftook.Round(time.Millisecond), rate(full, ftook), mine)
}
