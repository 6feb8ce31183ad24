package privacy_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/topology"
)

// withLedger returns a harness whose processor checks the erasure ledger
// (PIPELINE_ERASURE_KEY_FILE), the ledger, and the key store its marks
// are kept in.
func withLedger(t *testing.T) (*harness, *erasure.Ledger, *keyredis.Store) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(file); err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, singleObject, func(c *config.Config) { c.Keys.ErasureKeyFile = file })
	l, err := erasure.LoadLedgerKey(file)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: h.mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ks, err := keyredis.New(keyredis.Config{Redis: rdb, Prefix: keyredis.DefaultPrefix})
	if err != nil {
		t.Fatal(err)
	}
	return h, l, ks
}

// TestLedgerDeniesAnErasedSubjectWhateverConsentSays is the attack of a
// consent record that survives or reappears after an erasure (a replayed
// grant written straight to the consent topic, a cache restored from an
// old dump): the erasure ledger wins, every purpose denies the subject's
// events with reason erased, while another subject is published as usual.
func TestLedgerDeniesAnErasedSubjectWhateverConsentSays(t *testing.T) {
	h, l, ks := withLedger(t)
	gen := synth.New(9, 5, h.now)
	erased, kept := gen.EventFor(1, 1), gen.EventFor(2, 2)
	h.grantAll(t, erased.SubjectID, consent.GDPR)
	h.grantAll(t, kept.SubjectID, consent.GDPR)
	if err := ks.Shred(context.Background(), l.Mark(erased.SubjectID)); err != nil {
		t.Fatal(err)
	}
	out := h.process(t, h.record(t, erased), h.record(t, kept), h.record(t, erased))
	n := map[string]int{}
	for _, o := range out.Outputs {
		n[o.Topic]++
	}
	for _, p := range purpose.All {
		// kept: one record per purpose its consent and jurisdiction allow;
		// erased: none at all.
		if n[topology.DefaultNames().Clean(p)] > 1 {
			t.Fatalf("%s: %d records, the erased subject was published", p, n[topology.DefaultNames().Clean(p)])
		}
	}
	if n[topology.DefaultNames().Clean(purpose.Analytics)] != 1 {
		snap, _ := metrics.Snapshot(h.reg)
		t.Fatalf("the kept subject was not published: %v %v", n, filter(snap, "pipeline_denied_total"))
	}
	snap, _ := metrics.Snapshot(h.reg)
	for _, p := range purpose.All {
		if got := snap["pipeline_denied_total{purpose="+p.String()+",reason=erased}"]; got != 2 {
			t.Errorf("%s: %v events denied as erased, want 2", p, got)
		}
	}
}

// TestLedgerDownPausesTheProcessor: while the ledger cannot answer, the
// processor pauses (counted) and publishes nothing, as for consent: it
// never publishes without knowing whether a subject was erased.
func TestLedgerDownPausesTheProcessor(t *testing.T) {
	h, _, _ := withLedger(t)
	ev := synth.New(10, 5, h.now).EventFor(1, 1)
	h.grantAll(t, ev.SubjectID, consent.GDPR)
	rec := h.record(t, ev)
	h.process(t, rec) // consent is cached now; the ledger is asked per batch
	h.mr.Close()
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := w.Process(ctx, []processors.Record{rec}, &out); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a context error while paused, got %v", err)
	}
	if !strings.Contains(h.metricsText(t), "pipeline_erasure_ledger_errors_total") {
		t.Fatal("the ledger errors are not counted")
	}
	if out.Len() != 0 {
		t.Fatalf("published %d records without the ledger's answer", out.Len())
	}
}
