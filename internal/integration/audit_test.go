package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
)

// TestAuditOnRealServices: privacy.audit on the real broker and Redis, read
// with read_committed after consent changes through the consent API (with
// the erasure ledger), a run of the privacy processor over canary,
// synthetic and malformed events, and an erasure ('pipeline erase',
// wiring.Erase). Every record decodes strictly; the batch records' counts
// add up to the processor's committed metrics (events, published and
// denied per purpose and reason, quarantined per reason) and to what the
// clean topics hold; there is one consent record per change, with the
// principal and the subject's ledger mark, and one erasure record; no
// canary marker (the raw subject ids among them) is in privacy.audit,
// privacy.keys or privacy.erasures; and Python's json module reads the
// records as the broker holds them (PIPELINE_PYTHON).
func TestAuditOnRealServices(t *testing.T) {
	py := pythonPath(t)
	r := newRig(t)
	r.cfg.Keys.ErasureKeyFile = filepath.Join(t.TempDir(), "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(r.cfg.Keys.ErasureKeyFile); err != nil {
		t.Fatal(err)
	}
	r.cfg.Privacy.PseudonymKeysFile = filepath.Join(t.TempDir(), "keys.json")
	if err := writeKeyring(r); err != nil {
		t.Fatal(err)
	}
	ledger := mustLedger(t, r.cfg.Keys.ErasureKeyFile)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	now := time.Now()

	// Consent: synthetic subjects straight into the store; the canaries
	// through the API (audited) and consent-sync.
	var subs []string
	var crs []consent.Record
	for i := 0; i < 200; i++ {
		if rec, ok := synth.Consent(i, now); ok {
			subs, crs = append(subs, synth.SubjectID(i)), append(crs, rec)
		}
	}
	if err := r.pp.Store.PutMany(ctx, subs, crs); err != nil {
		t.Fatal(err)
	}
	const erased, kept = "canary-audit-subject-erased-41", "canary-audit-subject-kept-42"
	r.startSync(false)
	cl, err := r.cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	open, _ := httpauth.New(httpauth.Config{}) // principal "anonymous"; consentapi's test authenticates
	api, err := consentapi.New(consentapi.Config{Producer: cl, Topic: r.consentTopic(), Store: r.pp.Store, Guard: open,
		AuditTopic: r.cfg.Names.AuditTopic, Marks: ledger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	changes := 0
	for _, sub := range []string{erased, kept} {
		for _, p := range purpose.All {
			code, body := pipelinetest.Request(t, "PUT", srv.URL+"/v1/subjects/"+sub+"/consents/"+p.String(), "application/json",
				`{"state":"granted","jurisdiction":"gdpr","source":"web_form","policy_version":"it"}`)
			if code != http.StatusAccepted {
				t.Fatalf("grant: %d %s", code, body)
			}
			changes++
		}
	}
	if code, body := pipelinetest.Request(t, "POST", srv.URL+"/v1/subjects/"+kept+"/consents/marketing/withdraw", "", ""); code != http.StatusAccepted {
		t.Fatalf("withdraw: %d %s", code, body)
	}
	changes++
	waitUntil(t, "the API's consent in Redis", time.Minute, func() bool {
		out := make([]consent.Lookup, 2)
		return r.pp.Store.Lookup(ctx, []string{erased, kept}, out) == nil && out[0].Found && out[1].Found &&
			out[1].Record.Purposes[purpose.Marketing].State == consent.Withdrawn
	})

	// The privacy processor over canaries, synthetic and malformed events.
	var evs []producer.Event
	var markers []pipelinetest.Marker
	for i := 0; i < 20; i++ {
		ev, m := pipelinetest.CanaryEvent(300+i, []string{erased, kept}[i%2], now)
		evs, markers = append(evs, ev), append(markers, m...)
	}
	markers = append(markers, pipelinetest.Marker{Field: "subject_id", Value: erased}, pipelinetest.Marker{Field: "subject_id", Value: kept})
	gen := synth.New(31, 200, now)
	for i := 0; i < 2000; i++ {
		evs = append(evs, gen.Event(i))
	}
	var bad [][]byte
	for i := 0; i < 7; i++ {
		b, _ := synth.Malformed(i, r.enc, now)
		bad = append(bad, b)
	}
	_, stop := r.start()
	r.produce(ctx, evs, bad...)
	r.waitCaughtUp(2 * time.Minute)
	stop()
	r.checkAccounting(len(evs) + len(bad))

	// The erasure.
	if _, err := wiring.Erase(ctx, r.cfg, erased, "req-audit-1"); err != nil {
		t.Fatal(err)
	}
	plan, _ := erasure.PlanFor(erased, r.keys, ledger)

	// privacy.audit, read_committed.
	tally, err := privacy.ReadTally(r.reg)
	if err != nil {
		t.Fatal(err)
	}
	recs := r.read(r.cfg.Names.AuditTopic)
	events, quarantined := 0, map[string]int{}
	published, denied := map[string]int{}, map[string]map[string]int{}
	var consents, erasures, batches int
	var lines []byte
	for _, rec := range recs {
		ar, err := audit.Decode(rec.Value)
		if err != nil {
			t.Fatalf("%v: %s", err, rec.Value)
		}
		if string(rec.Key) != ar.Processor {
			t.Fatalf("key %q, processor %q", rec.Key, ar.Processor)
		}
		lines = append(append(lines, rec.Value...), '\n')
		switch ar.Kind {
		case audit.KindBatch:
			batches++
			b := ar.Batch
			events += b.Events
			for reason, n := range b.Quarantined {
				quarantined[reason] += n
			}
			for p, pc := range b.Purposes {
				published[p] += pc.Published
				if denied[p] == nil {
					denied[p] = map[string]int{}
				}
				for reason, n := range pc.Denied {
					denied[p][reason] += n
				}
			}
		case audit.KindConsent:
			consents++
			if ar.Principal != "anonymous" || (ar.Consent.SubjectRef != ledger.Mark(erased) && ar.Consent.SubjectRef != ledger.Mark(kept)) {
				t.Fatalf("consent record %s", rec.Value)
			}
		case audit.KindErasure:
			erasures++
			e := ar.Erasure
			if e.SubjectRef != plan.Mark || e.Request != "req-audit-1" || e.Notices != len(plan.Notices) || e.ConsentTombstones != len(plan.ConsentKeys) {
				t.Fatalf("erasure record %s", rec.Value)
			}
		default:
			t.Fatalf("unexpected record %s", rec.Value)
		}
	}
	if events != tally.EventsIn || fmt.Sprint(quarantined) != fmt.Sprint(tally.Quarantined) {
		t.Errorf("audit: %d events, quarantined %v; metrics %d, %v", events, quarantined, tally.EventsIn, tally.Quarantined)
	}
	for _, p := range purpose.Names() {
		if published[p] != tally.Published[p] || fmt.Sprint(denied[p]) != fmt.Sprint(tally.Denied[p]) {
			t.Errorf("%s: audit published %d denied %v; metrics %d %v", p, published[p], denied[p], tally.Published[p], tally.Denied[p])
		}
	}
	if consents != changes || erasures != 1 || batches == 0 {
		t.Errorf("%d consent records for %d changes, %d erasure records, %d batch records", consents, changes, erasures, batches)
	}

	// No raw id or field value in the audit, key and erasure topics.
	for _, rec := range r.read(r.cfg.Names.AuditTopic, r.cfg.Names.KeysTopic, r.cfg.Names.ErasuresTopic) {
		b := append(append([]byte{}, rec.Key...), rec.Value...)
		for _, h := range rec.Headers {
			b = append(append(b, h.Key...), h.Value...)
		}
		if found := pipelinetest.Find(b, markers); len(found) > 0 {
			t.Fatalf("%s carries %v", rec.Topic, found)
		}
	}

	// A standard client reads the records as the broker holds them.
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `
import json, sys
pub, n = {}, {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["v"] == 1, r
    n[r["kind"]] = n.get(r["kind"], 0) + 1
    if r["kind"] == "batch":
        for p, c in r["batch"]["purposes"].items():
            pub[p] = pub.get(p, 0) + c["published"]
print(json.dumps({"published": pub, "kinds": n}, sort_keys=True))
`, path).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var pyRead struct {
		Published map[string]int `json:"published"`
		Kinds     map[string]int `json:"kinds"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &pyRead); err != nil {
		t.Fatalf("python said %s: %v", out, err)
	}
	if fmt.Sprint(pyRead.Published) != fmt.Sprint(published) || pyRead.Kinds["batch"] != batches || pyRead.Kinds["consent"] != consents || pyRead.Kinds["erasure"] != 1 {
		t.Fatalf("python read %s; Go: published %v, %d batch, %d consent records", out, published, batches, consents)
	}
	t.Logf("audit: %d batch records (%d events), %d consent records, %d erasure record; counts equal the metrics; Python read them all", batches, events, consents, erasures)
}
