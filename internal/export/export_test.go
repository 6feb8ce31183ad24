package export_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/export"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/processors"
)

func others(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("canary-other-subject-%02d", i))
	}
	return out
}

// TestExportFindsRecordsTheRunnerPlaced: the privacy processor runs in the
// real runner (its transactional session and its producer partitioner) on
// clean topics of 1, 3, 7, 4 and 2 partitions. The export of one subject,
// reading only the partition its pseudonym hashes to in each topic, holds
// exactly the records a full independent read finds keyed by its
// pseudonyms, and nothing else: the attack of another subject whose
// pseudonym lands in the same partition (which this data exercises: the
// scanned partitions hold other subjects' records) does not put their
// records in the export. A full scan finds the same records at a higher
// cost. The encrypted e-mail is decrypted with the subject's data key,
// the token is left a token, consent and history, pseudonyms and key
// states are there, and the progress ends at the total.
func TestExportFindsRecordsTheRunnerPlaced(t *testing.T) {
	parts := map[purpose.Purpose]int{purpose.Analytics: 1, purpose.Personalization: 3, purpose.AITraining: 7, purpose.Marketing: 4, purpose.ThirdPartySharing: 2}
	f := newFixture(t, parts, nil)
	const subject = "canary-export-subject-1"
	subjects := append([]string{subject}, others(24)...)
	f.grant(subjects...)
	f.runRunner(f.events(11, 200, subjects...))

	var calls []export.Progress
	doc, err := f.exporter(export.Options{}).Build(f.ctx, export.Request{Subject: subject}, func(p export.Progress) { calls = append(calls, p) })
	if err != nil {
		t.Fatal(err)
	}
	want := f.held(f.keys, subject)
	got := exported(doc)
	ps := f.pseudonyms(f.keys, subject)
	for _, p := range purpose.All {
		topic := wiring.CleanTopic(f.cfg, p)
		if len(want[topic]) == 0 {
			t.Fatalf("%s: the subject has no record to find", topic)
		}
		if !slices.Equal(got[topic], want[topic]) {
			t.Fatalf("%s (%d partitions): exported %v, the topic holds %v", topic, parts[p], got[topic], want[topic])
		}
	}
	collided := false
	for _, tr := range doc.Records {
		for _, r := range tr.Records {
			if !ps[tr.Purpose][r.Key] {
				t.Fatalf("%s: a record keyed %s is not the subject's", tr.Topic, r.Key)
			}
		}
		if n := f.partitionCount(tr.Topic); n != tr.Partitions || (n > 1 && len(tr.Scanned) != 1) {
			t.Fatalf("%s: %d partitions, %d scanned, want 1 (pruned)", tr.Topic, tr.Partitions, len(tr.Scanned))
		}
		for k := range ps[tr.Purpose] {
			if tr.Scanned[0].Partition != export.PartitionFor([]byte(k), tr.Partitions) {
				t.Fatalf("%s: scanned partition %d, the pseudonym hashes to %d", tr.Topic, tr.Scanned[0].Partition, export.PartitionFor([]byte(k), tr.Partitions))
			}
		}
		if !tr.Complete || tr.Undecodable != 0 || tr.Scanned[0].Reached != tr.Scanned[0].End {
			t.Fatalf("%s: complete %v, undecodable %d, reached %d of %d", tr.Topic, tr.Complete, tr.Undecodable, tr.Scanned[0].Reached, tr.Scanned[0].End)
		}
		collided = collided || (tr.Partitions > 1 && tr.RecordsScanned > tr.Matched)
	}
	if !collided {
		t.Fatal("no scanned partition held another subject's record: the collision is not exercised")
	}
	if !doc.Complete || doc.Erased || !doc.HoldsData || !doc.Scan.PartitionPruning {
		t.Fatalf("complete %v, erased %v, holds data %v, pruning %v", doc.Complete, doc.Erased, doc.HoldsData, doc.Scan.PartitionPruning)
	}

	// Decryption, tokens, consent, pseudonyms, keys.
	personal := wiring.CleanTopic(f.cfg, purpose.Personalization)
	for _, tr := range doc.Records {
		for _, r := range tr.Records {
			if tr.Topic != personal {
				if len(r.Decrypted) != 0 {
					t.Fatalf("%s: decrypted %v", tr.Topic, r.Decrypted)
				}
				continue
			}
			if len(r.Decrypted) != 1 || r.Decrypted[0].Status != export.StatusDecrypted || r.Decrypted[0].SourceField != "email" ||
				*r.Decrypted[0].Value != mail(subject) {
				t.Fatalf("personalization record %d: decrypted %+v", r.Offset, r.Decrypted)
			}
			if tok := fmt.Sprint(value(r, "phone_token")); !strings.HasPrefix(tok, subjectkey.TokenPrefix) {
				t.Fatalf("the token is %v", tok)
			}
			if r.Provenance.PolicyVersion == "" || r.Provenance.ConsentVersion == "" || r.Provenance.KeyID == "" || r.Provenance.DataKey == "" {
				t.Fatalf("provenance %+v", r.Provenance)
			}
		}
	}
	if doc.Consent.State == nil || len(doc.Consent.State.Purposes) != purpose.Count || doc.Consent.State.Purposes[0].State != "granted" || len(doc.Consent.History) != purpose.Count {
		t.Fatalf("consent %+v", doc.Consent)
	}
	if len(doc.Pseudonyms) != purpose.Count || len(doc.DataKeys) != purpose.Count {
		t.Fatalf("%d pseudonyms, %d data keys", len(doc.Pseudonyms), len(doc.DataKeys))
	}
	for _, k := range doc.DataKeys {
		want := export.KeyAbsent
		if k.Purpose == "personalization" {
			want = export.KeyUnlogged // no key sync runs here
		}
		if k.Status != want {
			t.Fatalf("data key %s: %s, want %s", k.ID, k.Status, want)
		}
	}
	js, err := doc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range subjects[1:] {
		if bytes.Contains(js, []byte(o)) {
			t.Fatalf("the export names another subject (%s)", o)
		}
	}
	if !bytes.Contains(js, []byte(mail(subject))) {
		t.Fatal("the decrypted e-mail is not in the document")
	}
	last := map[string]export.Progress{}
	for _, c := range calls {
		last[c.Topic] = c
	}
	for _, tr := range doc.Records {
		if c := last[tr.Topic]; c.Scanned != c.Total || c.Total == 0 || c.AllScanned != c.AllTotal || c.Fraction() != 1 {
			t.Fatalf("%s: the last progress is %+v", tr.Topic, c)
		}
	}

	// A full scan finds the same records, reading more.
	full := f.export(export.Options{FullScan: true}, subject)
	if fmt.Sprint(exported(full)) != fmt.Sprint(got) || full.Scan.RecordsScanned <= doc.Scan.RecordsScanned {
		t.Fatalf("full scan: %d records read (pruned %d), same records: %v", full.Scan.RecordsScanned, doc.Scan.RecordsScanned,
			fmt.Sprint(exported(full)) == fmt.Sprint(got))
	}
	t.Logf("pruned: %d records read for %d of the subject's; full scan: %d", doc.Scan.RecordsScanned, len(slices.Concat(mapValues(got)...)), full.Scan.RecordsScanned)
}

func mapValues(m map[string][]string) [][]string {
	var out [][]string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func value(r export.Record, name string) any {
	for _, f := range r.Value {
		if f.Name == name {
			return f.Value
		}
	}
	return nil
}

// rotate returns kr with a new active key for pur, the old one kept.
func rotate(t *testing.T, kr *pseudonym.Keyring, pur string) *pseudonym.Keyring {
	t.Helper()
	type entry struct {
		Purpose string `json:"purpose"`
		ID      string `json:"id"`
		Secret  string `json:"secret"`
		Active  bool   `json:"active"`
	}
	var es []entry
	for _, p := range kr.Purposes() {
		for _, k := range kr.Keys(p) {
			es = append(es, entry{Purpose: p, ID: k.ID, Secret: base64.StdEncoding.EncodeToString(k.Secret), Active: p != pur})
		}
	}
	secret := bytes.Repeat([]byte{0x5a}, pseudonym.MinSecretLen)
	es = append(es, entry{Purpose: pur, ID: pur + "-rotated", Secret: base64.StdEncoding.EncodeToString(secret), Active: true})
	b, _ := json.Marshal(map[string]any{"keys": es})
	out, err := pseudonym.ParseKeyring(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportAttacks: records crafted to make the export include what is
// not the subject's, or decrypt another subject's value into it.
//   - Rotation: after the personalization pseudonym key rotated, the
//     subject's records under the old and the new key are both found.
//   - Cross-purpose: a record keyed by the subject's marketing pseudonym
//     on the analytics topic, in the very partition the export reads, is
//     not included (pseudonyms match only within their own purpose).
//   - Key swap: a record keyed by the subject's pseudonym whose
//     pp-data-key header names another subject's data key, carrying that
//     subject's ciphertext, is listed (it is keyed by the subject) but
//     never decrypted with the other key (data_key_mismatch); with the
//     header set to the subject's own key, the foreign ciphertext does not
//     decrypt. The other subject's e-mail appears nowhere.
//   - Malformed: a record keyed by the subject that is not Avro is counted
//     undecodable and skipped; the records after it are still found.
func TestExportAttacks(t *testing.T) {
	f := newFixture(t, nil, nil)
	const subject, victim = "canary-export-subject-2", "canary-victim-subject-3"
	subjects := append([]string{subject, victim}, others(10)...)
	f.grant(subjects...)
	f.publish(f.pp, f.events(21, 60, subjects...))
	rotated := rotate(t, f.keys, "personalization")
	pp2 := f.privacy(rotated)
	f.publish(pp2, f.events(22, 60, subjects...))
	if err := pseudonym.WriteKeyringFile(f.cfg.Privacy.PseudonymKeysFile+".2", rotated); err != nil {
		t.Fatal(err)
	}
	f.cfg.Privacy.PseudonymKeysFile += ".2"

	personal, analytics := wiring.CleanTopic(f.cfg, purpose.Personalization), wiring.CleanTopic(f.cfg, purpose.Analytics)
	all, err := kafkaio.ReadAll(f.ctx, f.cfg.Kafka, personal, analytics)
	if err != nil {
		t.Fatal(err)
	}
	ps, vps := f.pseudonyms(rotated, subject), f.pseudonyms(rotated, victim)
	active := func(kr *pseudonym.Keyring, pur, sub string) string {
		k, _ := kr.Active(pur)
		return string(pseudonym.New(k).Append(nil, "subject_id", sub))
	}
	var victimRec, analyticsRec *kgo.Record
	for _, r := range all {
		switch {
		case r.Topic == personal && vps["personalization"][string(r.Key)] && victimRec == nil:
			victimRec = r
		case r.Topic == analytics && ps["analytics"][string(r.Key)] && analyticsRec == nil:
			analyticsRec = r
		}
	}
	if victimRec == nil || analyticsRec == nil {
		t.Fatal("fixture: missing records")
	}
	setHdr := func(hs []kgo.RecordHeader, k, v string) []kgo.RecordHeader {
		out := slices.Clone(hs)
		for i := range out {
			if out[i].Key == k {
				out[i].Value = []byte(v)
			}
		}
		return out
	}
	n := f.partitionCount(personal)
	mine := active(rotated, "personalization", subject)
	ownKey := subjectkey.ID("personalization", "personalization-rotated", mine)
	crafted := []*kgo.Record{
		// Cross-purpose: the subject's marketing pseudonym on analytics, in
		// the partition the export reads there.
		{Topic: analytics, Key: []byte(active(rotated, "marketing", subject)), Value: analyticsRec.Value, Headers: analyticsRec.Headers,
			Partition: export.PartitionFor(analyticsRec.Key, f.partitionCount(analytics))},
		// Key swap: the victim's record and data key under the subject's key.
		{Topic: personal, Key: []byte(mine), Value: victimRec.Value, Headers: victimRec.Headers, Partition: export.PartitionFor([]byte(mine), n)},
		{Topic: personal, Key: []byte(mine), Value: victimRec.Value, Headers: setHdr(victimRec.Headers, processors.HeaderDataKey, ownKey),
			Partition: export.PartitionFor([]byte(mine), n)},
		// Malformed.
		{Topic: personal, Key: []byte(mine), Value: []byte("not avro at all"), Partition: export.PartitionFor([]byte(mine), n)},
	}
	cl, err := f.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.ProduceAll(f.ctx, cl, crafted); err != nil {
		t.Fatal(err)
	}
	f.publish(pp2, f.events(23, 12, subjects...)) // after the crafted ones

	doc := f.export(export.Options{}, subject)
	want, got := f.held(rotated, subject), exported(doc)
	for _, p := range purpose.All {
		topic := wiring.CleanTopic(f.cfg, p)
		w := want[topic]
		if topic == personal { // the malformed record is not exported
			w = slices.DeleteFunc(slices.Clone(w), func(s string) bool { return s == pos(crafted[3].Partition, crafted[3].Offset) })
		}
		if !slices.Equal(got[topic], w) {
			t.Fatalf("%s: exported %v, want %v", topic, got[topic], w)
		}
	}
	oldKey, _ := f.keys.Active("personalization")
	keyIDs := map[string]int{}
	var statuses []string
	for _, tr := range doc.Records {
		if tr.Topic == personal && tr.Undecodable != 1 {
			t.Fatalf("undecodable %d, want 1", tr.Undecodable)
		}
		for _, r := range tr.Records {
			if tr.Topic == personal {
				keyIDs[r.Provenance.KeyID]++
				for _, d := range r.Decrypted {
					if d.Status != export.StatusDecrypted {
						statuses = append(statuses, d.Status)
					}
				}
			}
		}
	}
	if keyIDs[oldKey.ID] == 0 || keyIDs["personalization-rotated"] == 0 {
		t.Fatalf("records by pseudonym key: %v (want both the rotated-out and the new key)", keyIDs)
	}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []string{export.StatusDataKeyMismatch, export.StatusDoesNotDecrypt}) {
		t.Fatalf("the crafted records decrypt as %v", statuses)
	}
	js, _ := doc.JSON()
	if bytes.Contains(js, []byte(mail(victim))) || bytes.Contains(js, []byte(victim)) {
		t.Fatal("the victim's e-mail or id is in the subject's export")
	}
	if len(doc.Pseudonyms) != purpose.Count+1 || len(doc.DataKeys) != purpose.Count+1 {
		t.Fatalf("%d pseudonyms, %d data keys, want one more for the rotated key", len(doc.Pseudonyms), len(doc.DataKeys))
	}
}

// TestExportBoundsSayIncomplete: each bound stops the scan and the
// document says so (complete false, the reason, the topics incomplete);
// a bound equal to what there is to read does not.
func TestExportBoundsSayIncomplete(t *testing.T) {
	f := newFixture(t, map[purpose.Purpose]int{purpose.Analytics: 1}, nil)
	const subject = "canary-export-subject-4"
	subjects := append([]string{subject}, others(5)...)
	f.grant(subjects...)
	f.publish(f.pp, f.events(31, 120, subjects...))
	all := f.export(export.Options{}, subject)
	if !all.Complete {
		t.Fatal(all.IncompleteReason)
	}
	check := func(name string, opts export.Options, reason string) export.Document {
		t.Helper()
		doc := f.export(opts, subject)
		if reason == "" {
			if !doc.Complete || doc.IncompleteReason != "" {
				t.Fatalf("%s: incomplete (%s)", name, doc.IncompleteReason)
			}
			return doc
		}
		incomplete := 0
		for _, tr := range doc.Records {
			if !tr.Complete {
				incomplete++
			}
		}
		js, _ := doc.JSON()
		if doc.Complete || doc.IncompleteReason != reason || incomplete == 0 || !bytes.Contains(js, []byte(`"complete": false`)) {
			t.Fatalf("%s: complete %v, reason %q, %d topics incomplete", name, doc.Complete, doc.IncompleteReason, incomplete)
		}
		return doc
	}
	if d := check("max records scanned", export.Options{MaxRecordsScanned: 3}, export.ReasonMaxRecordsScanned); d.Scan.RecordsScanned != 3 {
		t.Fatalf("scanned %d records, bound 3", d.Scan.RecordsScanned)
	}
	check("max records scanned = all", export.Options{MaxRecordsScanned: all.Scan.RecordsScanned}, "")
	if d := check("max records exported", export.Options{MaxRecordsExported: 2}, export.ReasonMaxRecordsExported); len(slices.Concat(mapValues(exported(d))...)) != 2 {
		t.Fatalf("exported %v", exported(d))
	}
	check("max duration", export.Options{MaxDuration: time.Nanosecond}, export.ReasonMaxDuration)
}

// TestExportRequestValidation: an empty or blank subject and a request
// entry that is not JSON are refused; an unknown subject is a complete
// document that says nothing is held, with the caller's requests copied.
func TestExportRequestValidation(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.grant("canary-known-subject")
	f.publish(f.pp, f.events(41, 20, "canary-known-subject"))
	b := f.exporter(export.Options{})
	for _, req := range []export.Request{{Subject: ""}, {Subject: "  "}, {Subject: "a\x00b"}, {Subject: "x", Requests: []json.RawMessage{json.RawMessage("{no")}}} {
		if _, err := b.Build(f.ctx, req, nil); !errors.Is(err, export.ErrInvalidRequest) {
			t.Fatalf("%q: %v", req.Subject, err)
		}
	}
	reqs := []json.RawMessage{json.RawMessage(`{"id":"req-1","type":"access"}`)}
	doc, err := b.Build(f.ctx, export.Request{Subject: "canary-never-seen", Requests: reqs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := doc.JSON()
	if doc.HoldsData || !doc.Complete || doc.Consent.State != nil || len(doc.Consent.History) != 0 || len(doc.Requests) != 1 ||
		!bytes.Contains(js, []byte(`"holds_data": false`)) || !bytes.Contains(js, []byte("holds nothing")) || !bytes.Contains(js, []byte(`"req-1"`)) {
		t.Fatalf("unknown subject:\n%s", js)
	}
	for _, tr := range doc.Records {
		if len(tr.Records) != 0 || tr.Matched != 0 {
			t.Fatalf("%s: %d records", tr.Topic, len(tr.Records))
		}
	}
	if !bytes.HasPrefix(js, []byte("{\n  \"v\": 1,\n  \"subject_id\": \"canary-never-seen\",\n  \"generated_at\"")) {
		t.Fatalf("field order:\n%s", js[:120])
	}
}

// TestExportOfAnErasedSubject: before the erasure the export decrypts the
// subject's e-mail; after wiring.Erase it says erased, every data key is
// shredded, the consent state and history are gone, and the records the
// topics retain are listed with no decrypted value (key_shredded); it does
// not fail.
func TestExportOfAnErasedSubject(t *testing.T) {
	f := newFixture(t, nil, nil)
	const subject = "canary-export-subject-5"
	subjects := append([]string{subject}, others(4)...)
	f.grant(subjects...)
	f.publish(f.pp, f.events(51, 40, subjects...))
	before := f.export(export.Options{}, subject)
	if js, _ := before.JSON(); !bytes.Contains(js, []byte(mail(subject))) || before.Erased {
		t.Fatal("before the erasure: the e-mail is not decrypted")
	}
	if _, err := wiring.Erase(f.ctx, f.cfg, subject, "req-erase-1"); err != nil {
		t.Fatal(err)
	}
	after := f.export(export.Options{}, subject)
	js, _ := after.JSON()
	if !after.Erased || !after.HoldsData || after.Consent.State != nil || len(after.Consent.History) != 0 || !bytes.Contains(js, []byte("was erased")) {
		t.Fatalf("after the erasure:\n%s", js)
	}
	for _, k := range after.DataKeys {
		if k.Status != export.KeyShredded {
			t.Fatalf("data key %s is %s", k.ID, k.Status)
		}
	}
	n := 0
	for _, tr := range after.Records {
		for _, r := range tr.Records {
			// The encrypted e-mail is gone for good (marketing keeps it in
			// clear by policy: those records still show it, as they should).
			if tr.Purpose == "personalization" {
				if b, _ := json.Marshal(r); bytes.Contains(b, []byte(mail(subject))) {
					t.Fatalf("after the erasure the e-mail is readable on %s", tr.Topic)
				}
			}
			for _, d := range r.Decrypted {
				if d.Status != export.StatusKeyShredded || d.Value != nil {
					t.Fatalf("after the erasure: %+v", d)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no retained encrypted record listed after the erasure")
	}
}

// TestExportAfterPartitionsWereAdded: the records of a key written before
// ops added partitions stay in the partition the old count chose. With
// the old count in Options.PartitionCounts the export reads that
// partition too and finds every record; without it, it reads only the
// new count's partition (the documented assumption), and a full scan
// finds them all.
func TestExportAfterPartitionsWereAdded(t *testing.T) {
	f := newFixture(t, map[purpose.Purpose]int{purpose.Analytics: 2}, nil)
	k, _ := f.keys.Active("analytics")
	var subject string
	for i := 0; ; i++ { // a subject whose partition moves when the count does
		subject = fmt.Sprintf("canary-export-subject-6-%d", i)
		if ps := pseudonym.New(k).Append(nil, "subject_id", subject); export.PartitionFor(ps, 2) != export.PartitionFor(ps, 7) {
			break
		}
	}
	subjects := append([]string{subject}, others(6)...)
	f.grant(subjects...)
	f.publish(f.pp, f.events(61, 70, subjects...))
	adm, err := f.cfg.Kafka.NewAdmin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	analytics := wiring.CleanTopic(f.cfg, purpose.Analytics)
	if _, err := adm.CreatePartitions(f.ctx, 5, analytics); err != nil {
		t.Fatal(err)
	}
	if n := f.partitionCount(analytics); n != 7 {
		t.Fatalf("%d partitions after adding 5", n)
	}
	f.publish(f.pp, f.events(62, 70, subjects...))
	want := f.held(f.keys, subject)[analytics]
	topicOf := func(d export.Document) []string { return exported(d)[analytics] }
	if got := topicOf(f.export(export.Options{PartitionCounts: []int{2}}, subject)); !slices.Equal(got, want) {
		t.Fatalf("with the old count: exported %v, want %v", got, want)
	}
	if got := topicOf(f.export(export.Options{FullScan: true}, subject)); !slices.Equal(got, want) {
		t.Fatalf("full scan: exported %v, want %v", got, want)
	}
	if got := topicOf(f.export(export.Options{}, subject)); len(got) >= len(want) {
		t.Fatalf("without the old count the records of the old partition were found (%d of %d): is the test meaningful?", len(got), len(want))
	}
}

// TestExportFailsRatherThanGuess: a consent or key store that cannot
// answer, a consent store not loaded (Redis restarted empty), or the
// caller's context ending is an error, never a document that looks
// complete.
func TestExportFailsRatherThanGuess(t *testing.T) {
	f := newFixture(t, nil, nil)
	const subject = "canary-export-subject-7"
	f.grant(subject)
	f.publish(f.pp, f.events(71, 10, subject))
	b := f.exporter(export.Options{})
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	if _, err := b.Build(ctx, export.Request{Subject: subject}, nil); err == nil {
		t.Fatal("a cancelled export returned a document")
	}
	f.rdb.Del(f.ctx, f.pp.Store.MarkerKey())
	if _, err := b.Build(f.ctx, export.Request{Subject: subject}, nil); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Fatalf("consent store not loaded: %v", err)
	}
	f.pp.Store.MarkLoaded(f.ctx)
	f.mr.Close()
	if _, err := b.Build(f.ctx, export.Request{Subject: subject}, nil); err == nil {
		t.Fatal("Redis down: an export returned a document")
	}
}

// TestExportConfluentFramed: with the Confluent wire format (the
// default) the writer schemas come from the registry by id: the
// subject's records decode and decrypt; a record of the subject naming an
// id the registry does not have is counted undecodable; a registry that
// cannot answer makes the export an error, not a document missing the
// records it could not decode.
func TestExportConfluentFramed(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	f := newFixture(t, nil, nil, func(c *config.Config) {
		c.Schemas = config.Schemas{WireFormat: wireformat.Confluent.String(), Registry: schemaregistry.Config{
			URL: []string{reg.URL()}, Timeout: 2 * time.Second, Compatibility: "BACKWARD", AutoRegister: true}}
	})
	const subject = "canary-export-subject-8"
	subjects := append([]string{subject}, others(3)...)
	f.grant(subjects...)
	f.publish(f.pp, f.events(81, 30, subjects...))
	personal := wiring.CleanTopic(f.cfg, purpose.Personalization)
	k, _ := f.keys.Active("personalization")
	mine := pseudonym.New(k).Append(nil, "subject_id", subject)
	f.produce(&kgo.Record{Topic: personal, Key: mine, Value: wireformat.AppendConfluent(nil, 99999)})
	doc := f.export(export.Options{}, subject)
	decrypted := 0
	for _, tr := range doc.Records {
		if len(tr.Records) == 0 || (tr.Topic == personal) != (tr.Undecodable == 1) || tr.Undecodable > 1 {
			t.Fatalf("%s: %d records, %d undecodable", tr.Topic, len(tr.Records), tr.Undecodable)
		}
		for _, r := range tr.Records {
			if !strings.HasPrefix(r.Writer, "id ") {
				t.Fatalf("writer %q", r.Writer)
			}
			for _, d := range r.Decrypted {
				if d.Status != export.StatusDecrypted || *d.Value != mail(subject) {
					t.Fatalf("%+v", d)
				}
				decrypted++
			}
		}
	}
	if decrypted == 0 {
		t.Fatal("nothing decrypted")
	}
	reg.Close()
	if _, err := f.exporter(export.Options{}).Build(f.ctx, export.Request{Subject: subject}, nil); err == nil {
		t.Fatal("registry down: an export returned a document")
	}
}

// TestExportSkipsAbortedAndOpenTransactions: a record of the subject in
// an aborted transaction, and one in a transaction still open when the
// export starts, are not in the export (read_committed, to the last
// stable offset captured at the start), and the export ends although the
// open transaction holds the partition's stable offset back.
func TestExportSkipsAbortedAndOpenTransactions(t *testing.T) {
	f := newFixture(t, map[purpose.Purpose]int{purpose.Analytics: 1}, nil)
	const subject = "canary-export-subject-9"
	f.grant(subject)
	f.publish(f.pp, f.events(91, 5, subject))
	analytics := wiring.CleanTopic(f.cfg, purpose.Analytics)
	want := f.held(f.keys, subject)[analytics]
	recs, err := kafkaio.ReadAll(f.ctx, f.cfg.Kafka, analytics)
	if err != nil || len(recs) == 0 {
		t.Fatal(err)
	}
	model := recs[0]
	txn := func(id string, commit *kgo.TransactionEndTry) {
		cl, err := f.cfg.Kafka.NewClient(kgo.TransactionalID(id), kgo.TransactionTimeout(5*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if commit != nil {
			defer cl.Close()
		}
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(f.ctx, &kgo.Record{Topic: analytics, Key: model.Key, Value: model.Value, Headers: model.Headers}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if commit != nil {
			if err := cl.EndTransaction(f.ctx, *commit); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Cleanup(cl.Close) // left open
	}
	abort := kgo.TryAbort
	txn("export-aborted", &abort)
	txn("export-open", nil)
	// Reading to the high watermark instead would wait for the open
	// transaction (5 minutes) and stop at this bound, incomplete.
	doc := f.export(export.Options{MaxDuration: 20 * time.Second}, subject)
	if got := exported(doc)[analytics]; !doc.Complete || !slices.Equal(got, want) {
		t.Fatalf("complete %v (%s): exported %v, want the committed %v", doc.Complete, doc.IncompleteReason, got, want)
	}
}
