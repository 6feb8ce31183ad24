package erasure_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/keys/keysync"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
)

// TestEraseRemovesEverything: before, the subject has consent, history and
// data keys (in Redis and on the key topic) and consent records on the
// consent topic. After Erase: its data keys and ledger mark are shredded
// in Redis and no key is created for it again; its consent record and
// history are gone; the key topic holds a tombstone per data key and the
// ledger record, the consent topic a tombstone per key of the subject in
// the partition of that key's records, privacy.erasures one notice per
// purpose pseudonym, privacy.audit one erasure record with the subject's
// ledger mark, the request and the counts; no topic of the erasure but
// the consent topic shows the raw id (attack: the audit trail becoming a
// list of erased people). A
// second Erase (a retry) succeeds; a key sync over the key topic into an
// empty Redis restores the shreds and the mark.
func TestEraseRemovesEverything(t *testing.T) {
	const subject = "canary-subject-erase-78"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const consentT, keysT, erasuresT, auditT = "privacy.consent", "privacy.keys", "privacy.erasures", "privacy.audit"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, consentT, keysT, erasuresT), kfake.SeedTopics(1, auditT))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	kek := filepath.Join(t.TempDir(), "kek.json")
	subjectkey.GenerateKEKFile(kek)
	kms, _ := subjectkey.LoadKEKFile(kek)
	keys, _ := keyredis.New(keyredis.Config{Redis: rdb, KMS: kms})
	keys.MarkLoaded(ctx)
	store := consentredis.NewRedisStore(rdb)
	store.MarkLoaded(ctx)
	kr, _ := pseudonym.GenerateKeyring(purpose.Names(), "t")
	l, err := erasure.NewLedger(bytes.Repeat([]byte{7}, erasure.LedgerKeyLen))
	if err != nil {
		t.Fatal(err)
	}

	// Before: consent, history, keys, records.
	var rec consent.Record
	rec.Apply(purpose.Marketing, consent.Granted, consent.GDPR, time.Now().UnixMilli())
	store.Put(ctx, subject, &rec)
	rdb.RPush(ctx, store.HistoryKey(subject), "an entry")
	plan, _ := erasure.PlanFor(subject, kr, l)
	var lk subjectkey.Lookup
	if err := keys.Get(ctx, plan.DataKeys, &lk); err != nil {
		t.Fatal(err)
	}
	pcl, _ := conn.NewClient(kgo.RecordPartitioner(erasure.Partitioner(consentT)))
	defer pcl.Close()
	var before []*kgo.Record
	for _, w := range lk.Unlogged {
		b, _ := w.Marshal()
		before = append(before, &kgo.Record{Topic: keysT, Key: []byte(w.ID), Value: b})
	}
	crecs, err := consentlog.Records(consentT, consentlog.Change{SubjectID: subject, Purpose: purpose.Marketing, State: consent.Granted,
		Jurisdiction: consent.GDPR, Source: consentlog.WebForm, PolicyVersion: "t", Timestamp: time.Now().Truncate(time.Millisecond), ReceiptID: consentlog.NewReceiptID()})
	if err != nil {
		t.Fatal(err)
	}
	if err := kafkaio.ProduceAll(ctx, pcl, append(before, crecs...)); err != nil {
		t.Fatal(err)
	}

	tcl, err := conn.NewClient(kgo.TransactionalID("erasure-test"), kgo.RecordPartitioner(erasure.Partitioner(consentT)))
	if err != nil {
		t.Fatal(err)
	}
	defer tcl.Close()
	ex, err := erasure.NewExecutor(erasure.ExecutorConfig{Producer: tcl, ConsentTopic: consentT, KeysTopic: keysT, ErasuresTopic: erasuresT, AuditTopic: auditT,
		Consent: store, Keys: keys, Keyring: kr, Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ex.Erase(ctx, subject, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if res.RedisKeysDeleted != 2 {
		t.Fatalf("deleted %d consent keys in Redis, want the record and the history", res.RedisKeysDeleted)
	}

	// Redis.
	if err := keys.Get(ctx, plan.DataKeys, &lk); err != nil || lk.Created != 0 || slices.Contains(lk.Shredded, false) {
		t.Fatalf("after the erasure: created %d, shredded %v, %v", lk.Created, lk.Shredded, err)
	}
	if st, _ := keys.State(ctx, plan.Mark); st != "shredded" {
		t.Fatalf("ledger mark %s", st)
	}
	out := make([]consent.Lookup, 1)
	if err := store.Lookup(ctx, []string{subject}, out); err != nil || out[0].Found {
		t.Fatalf("consent still found: %v", err)
	}
	if n, _ := rdb.Exists(ctx, store.HistoryKey(subject)).Result(); n != 0 {
		t.Fatal("history kept")
	}
	for _, k := range mr.Keys() {
		if bytes.Contains([]byte(k), []byte(subject)) {
			t.Fatalf("Redis key %q names the subject", k)
		}
	}

	// Kafka.
	all, err := kafkaio.ReadAll(ctx, conn, consentT, keysT, erasuresT, auditT)
	if err != nil {
		t.Fatal(err)
	}
	partOf := map[string]int32{}
	tomb := map[string]int32{}
	var notices, ledgerRecs, audits int
	for _, r := range all {
		switch {
		case r.Topic == consentT && r.Value != nil:
			partOf[string(r.Key)] = r.Partition
		case r.Topic == consentT:
			tomb[string(r.Key)] = r.Partition
		case r.Topic == keysT && r.Value == nil:
			tomb[string(r.Key)] = r.Partition
		case r.Topic == keysT && string(r.Key) == plan.Mark:
			var lr erasure.LedgerRecord
			if json.Unmarshal(r.Value, &lr) != nil || lr.V != 1 || lr.Request != "req-1" {
				t.Fatalf("ledger record %s", r.Value)
			}
			ledgerRecs++
		case r.Topic == keysT:
			partOf[string(r.Key)] = r.Partition
		case r.Topic == erasuresT:
			notices++
		case r.Topic == auditT:
			audits++
			ar, err := audit.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			want := audit.ErasureSummary{Request: "req-1", SubjectRef: plan.Mark, KeysShredded: len(plan.DataKeys), KeyTombstones: len(plan.DataKeys),
				ConsentTombstones: len(plan.ConsentKeys), Notices: len(plan.Notices)}
			if ar.Kind != audit.KindErasure || string(r.Key) != "erasure" || *ar.Erasure != want {
				t.Fatalf("audit record %s, want %+v", r.Value, want)
			}
		}
		if r.Topic != consentT && (bytes.Contains(r.Key, []byte(subject)) || bytes.Contains(r.Value, []byte(subject))) {
			t.Fatalf("%s names the subject", r.Topic)
		}
	}
	for k, p := range partOf {
		if tp, ok := tomb[k]; !ok || tp != p {
			t.Fatalf("%s: record in partition %d, tombstone %v in %d", k, p, ok, tp)
		}
	}
	for _, k := range plan.ConsentKeys {
		if _, ok := tomb[string(k)]; !ok {
			t.Fatalf("no tombstone for consent key %s", k)
		}
	}
	if notices != len(plan.Notices) || ledgerRecs != 1 || audits != 1 {
		t.Fatalf("%d notices (want %d), %d ledger records, %d audit records", notices, len(plan.Notices), ledgerRecs, audits)
	}

	if _, err := ex.Erase(ctx, subject, "req-1"); err != nil {
		t.Fatalf("a retried erasure: %v", err)
	}

	// The key topic restores the shreds and the mark into an empty Redis.
	mr2 := miniredis.RunT(t)
	rdb2 := redis.NewClient(&redis.Options{Addr: mr2.Addr()})
	defer rdb2.Close()
	keys2, _ := keyredis.New(keyredis.Config{Redis: rdb2, KMS: kms})
	ks, _ := keysync.New(keysync.Config{Kafka: conn, Topic: keysT, Group: "ks", Store: keys2})
	if err := ks.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(plan.DataKeys, plan.Mark) {
		if st, _ := keys2.State(ctx, id); st != "shredded" {
			t.Fatalf("rebuilt %s: %s", id, st)
		}
	}
}
