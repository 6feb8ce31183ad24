package privacy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/topology"
)

// encrypting returns a harness whose policy encrypts the e-mail address and
// tokenizes the phone number for personalization (the checked-in policy
// otherwise), with a key-encryption key file.
func encrypting(t *testing.T) (*harness, *subjectkey.FileKMS) {
	t.Helper()
	pol, kek, kms := pipelinetest.EncryptingPolicy(t)
	h := newHarnessWith(t, singleObject, func(c *config.Config) { c.Privacy.PolicyFile, c.Keys.KEKFile = pol, kek })
	if err := h.pp.DataKeys.MarkLoaded(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h, kms
}

func header(r processors.Output, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// TestEncryptAndTokenizeWithSubjectKeys: personalization records carry the
// e-mail address encrypted (a new value each time) and the phone number
// tokenized (equal for equal values), never in clear, with the data key's
// id in pp-data-key; the key's record is in the batch, on the key topic,
// and decrypts both; once the key is logged it is not written again; once
// shredded, the subject's personalization events are denied as erased.
func TestEncryptAndTokenizeWithSubjectKeys(t *testing.T) {
	h, kms := encrypting(t)
	ctx := context.Background()
	gen := synth.New(7, 5, h.now)
	var recs []processors.Record
	var email, phone string
	for i := range 3 {
		ev := gen.EventFor(i, 1)
		ev.Email, ev.Phone = "canary-mail-31@example.com", "+84 90 555 0131"
		email, phone = ev.Email, ev.Phone
		if i == 0 {
			h.grantAll(t, ev.SubjectID, consent.GDPR)
		}
		recs = append(recs, h.record(t, ev))
	}
	out := h.process(t, recs...)
	personal := topology.DefaultNames().Clean(purpose.Personalization)
	var keyRecs, clean []processors.Output
	for _, o := range out.Outputs {
		switch o.Topic {
		case topology.DefaultKeysTopic:
			keyRecs = append(keyRecs, o)
		case personal:
			clean = append(clean, o)
		}
	}
	if len(keyRecs) != 1 || len(clean) != 3 {
		t.Fatalf("%d key records, %d personalization records", len(keyRecs), len(clean))
	}
	w, err := subjectkey.ParseWrapped(keyRecs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := subjectkey.Unwrap(ctx, kms, w)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := h.pp.Policy.Derive(h.pp.Raw, purpose.Personalization)
	if err != nil {
		t.Fatal(err)
	}
	codecJSON := policy.CleanSchemaJSON(purpose.Personalization, fields)
	var encs, toks []string
	for _, c := range clean {
		if id := header(c, processors.HeaderDataKey); id != w.ID || string(keyRecs[0].Key) != id ||
			id != subjectkey.ID("personalization", header(c, processors.HeaderKeyID), string(c.Key)) {
			t.Fatalf("pp-data-key %q, key record %q, record key %q", id, keyRecs[0].Key, c.Key)
		}
		if strings.Contains(string(c.Value), email) || strings.Contains(string(c.Value), phone) {
			t.Fatal("a plaintext reached the personalization topic")
		}
		v := decodeWith(t, codecJSON, c.Value)
		encs, toks = append(encs, unionString(v["email_encrypted"])), append(toks, unionString(v["phone_token"]))
	}
	if encs[0] == encs[1] || toks[0] != toks[1] {
		t.Fatalf("encrypt %v, tokenize %v", encs, toks)
	}
	for field, v := range map[string]string{"email": encs[2], "phone": toks[2]} {
		pt, err := dk.Decrypt(v, field)
		if err != nil || (field == "email" && string(pt) != email) || (field == "phone" && string(pt) != phone) {
			t.Fatalf("%s: %q %v", field, pt, err)
		}
	}

	// The erasure plan names this key (so an erasure shreds what the
	// processor made).
	ledger, _ := erasure.NewLedger(make([]byte, erasure.LedgerKeyLen))
	plan, err := erasure.PlanFor(subjectOf(t, recs[0]), h.pp.Keys, ledger)
	if err != nil || !slices.Contains(plan.DataKeys, w.ID) {
		t.Fatalf("the erasure plan misses the data key %s: %v", w.ID, err)
	}

	// Logged (the key sync saw it): not written again.
	if ok, err := h.pp.DataKeys.Put(ctx, w); err != nil || !ok {
		t.Fatal(err)
	}
	for _, o := range h.process(t, recs[0]).Outputs {
		if o.Topic == topology.DefaultKeysTopic {
			t.Fatal("a logged key was written again")
		}
	}
	// Shredded: denied as erased, nothing published for personalization.
	if err := h.pp.DataKeys.Shred(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	for _, o := range h.process(t, recs[0]).Outputs {
		if o.Topic == personal || o.Topic == topology.DefaultKeysTopic {
			t.Fatalf("after the shred: a record on %s", o.Topic)
		}
	}
	if !strings.Contains(h.metricsText(t), `reason="erased"`) {
		t.Fatal("the denial is not counted as erased")
	}
}

// TestKeyStoreDownPublishesNothingUnencrypted: while the data keys cannot
// be read the processor pauses; nothing is published, in clear or at all.
func TestKeyStoreDownPublishesNothingUnencrypted(t *testing.T) {
	h, _ := encrypting(t)
	ev := synth.New(8, 5, h.now).EventFor(1, 1)
	h.grantAll(t, ev.SubjectID, consent.GDPR)
	rec := h.record(t, ev)
	h.process(t, rec) // consent now cached; the key stays unlogged (refetched)
	h.mr.Close()
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	err := w.Process(ctx, []processors.Record{rec}, &out)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a context error while paused, got %v", err)
	}
	if !strings.Contains(h.metricsText(t), "data_key_store_errors_total") {
		t.Fatal("the key store errors are not counted")
	}
	if out.Len() != 0 {
		t.Fatalf("published %d records without the data keys", out.Len())
	}
}

func subjectOf(t *testing.T, r processors.Record) string {
	t.Helper()
	return string(r.Key) // the harness keys raw records by subject id
}
