package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/decrypt"
	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// TestErasureOnRealServices: the end-to-end erasure of SPEC 3.5 on the real
// broker and redis-server, with the privacy processor, consent-sync and the
// key sync running and events arriving before and after. Before: the
// subject's encrypted fields decrypt. 'pipeline erase' (wiring.Erase):
// afterwards no new record about the subject is published on any clean
// topic while another subject's still are, its old ciphertexts no longer
// decrypt (the consumer's keyring sees the tombstones), privacy.erasures
// holds one notice per purpose pseudonym, privacy.consent holds a
// tombstone for every key of the subject, Redis holds nothing under its
// id, and no raw id reaches privacy.keys, privacy.erasures or privacy.audit.
func TestErasureOnRealServices(t *testing.T) {
	r := newRig(t)
	kms := r.erasing()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	rdb := r.startErasing(fctx)
	pp := r.pp

	erased, kept := "canary-erase-subject-9001", "canary-keep-subject-9002"
	r.grantAllPurposes(ctx, erased, kept)
	events := func(seed uint64) []producer.Event { return alternating(seed, erased, kept) }
	r.start()
	r.produce(ctx, events(81))
	r.waitCaughtUp(2 * time.Minute)

	plan, err := erasure.PlanFor(erased, r.keys, mustLedger(t, r.cfg.Keys.ErasureKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pseudonyms := map[string]bool{}
	for _, n := range plan.Notices {
		pseudonyms[n.Pseudonym] = true
	}
	personal := wiring.CleanTopic(r.cfg, purpose.Personalization)
	var before []*kgo.Record
	for _, rec := range r.read(personal) {
		if pseudonyms[string(rec.Key)] {
			before = append(before, rec)
		}
	}
	if len(before) == 0 {
		t.Fatal("nothing published for the subject before its erasure")
	}
	kr := decrypt.New(kms)
	readKeys := func() {
		if _, err := kr.ReadTopic(ctx, r.cfg.Kafka, r.cfg.Names.KeysTopic); err != nil {
			t.Fatal(err)
		}
	}
	readKeys()
	emailOf := func(rec *kgo.Record) (string, error) {
		v := decodeCleanRecord(t, r, purpose.Personalization, rec)
		pt, err := kr.Field(ctx, rec, "email", v["email_encrypted"].(map[string]any)["string"].(string))
		return string(pt), err
	}
	if got, err := emailOf(before[0]); err != nil || got != "canary-mail-"+erased+"@example.com" {
		t.Fatalf("before the erasure: %q %v", got, err)
	}
	ends := endOffsets(t, r)

	res, err := wiring.Erase(ctx, r.cfg, erased, "req-it-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("erased: %d records committed, %d Redis keys deleted", res.Records, res.RedisKeysDeleted)

	// Events keep arriving for both.
	r.produce(ctx, events(82))
	r.waitCaughtUp(2 * time.Minute)
	after := map[string]int{}
	for _, rec := range r.read(r.cleanTopics()...) {
		if rec.Offset < ends[rec.Topic][rec.Partition] {
			continue
		}
		if pseudonyms[string(rec.Key)] {
			t.Fatalf("a record about the erased subject was published on %s after its erasure", rec.Topic)
		}
		after[rec.Topic]++
	}
	if after[personal] == 0 {
		t.Fatal("nothing published for the kept subject after the erasure")
	}
	readKeys()
	if _, err := emailOf(before[0]); !errors.Is(err, decrypt.ErrErased) {
		t.Fatalf("an old ciphertext after the erasure: %v", err)
	}
	// Notices, tombstones, Redis.
	notices := 0
	for _, rec := range r.read(r.cfg.Names.ErasuresTopic, r.cfg.Names.KeysTopic, r.cfg.Names.AuditTopic) {
		if bytes.Contains(rec.Key, []byte(erased)) || bytes.Contains(rec.Value, []byte(erased)) {
			t.Fatalf("the raw id on %s", rec.Topic)
		}
		if rec.Topic == r.cfg.Names.ErasuresTopic {
			notices++
		}
	}
	if notices != len(plan.Notices) {
		t.Fatalf("%d notices, want %d", notices, len(plan.Notices))
	}
	tombs := map[string]bool{}
	for _, rec := range r.read(r.consentTopic()) {
		if rec.Value == nil {
			tombs[string(rec.Key)] = true
		}
	}
	for _, k := range plan.ConsentKeys {
		if !tombs[string(k)] {
			t.Fatalf("no tombstone for %s on the consent topic", k)
		}
	}
	var left []string
	waitUntil(t, "Redis holds nothing under the erased id", 30*time.Second, func() bool {
		// This rig's keys only (the id is the rig's names' prefix).
		keys, err := rdb.Keys(ctx, strings.TrimSuffix(r.cfg.Names.RawTopic, ".raw")+"*"+erased+"*").Result()
		if err == nil && len(keys) > 0 {
			if fmt.Sprint(keys) != fmt.Sprint(left) {
				t.Logf("Redis still holds %v", keys)
			}
			left = keys
		}
		return err == nil && len(keys) == 0
	})
	// The ledger, as the consent API checks it (a later grant is refused).
	if got, err := (erasure.Check{Ledger: mustLedger(t, r.cfg.Keys.ErasureKeyFile), Keys: pp.DataKeys}).Erased(ctx, []string{erased, kept}); err != nil || !got[0] || got[1] {
		t.Fatalf("ledger says %v (%v), want [true false]", got, err)
	}
	for _, id := range plan.DataKeys {
		if st, _ := pp.DataKeys.State(ctx, id); st != "shredded" && st != "missing" {
			t.Fatalf("data key %s is %s", id, st)
		}
	}
	t.Logf("before: %d personalization records of the subject decrypted; after: 0 published (kept subject: %v), %d notices, %d consent tombstones",
		len(before), after, notices, len(tombs))
}

func mustLedger(t *testing.T, path string) *erasure.Ledger {
	t.Helper()
	l, err := erasure.LoadLedgerKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeKeyring writes the rig's pseudonym keyring where the configuration
// says (wiring.Erase loads it from the file, as 'pipeline erase' does).
func writeKeyring(r *rig) error {
	return pseudonym.WriteKeyringFile(r.cfg.Privacy.PseudonymKeysFile, r.keys)
}

// endOffsets are the clean topics' end offsets per partition.
func endOffsets(t *testing.T, r *rig) map[string]map[int32]int64 {
	t.Helper()
	ends, err := r.adm.ListEndOffsets(context.Background(), r.cleanTopics()...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out
}
