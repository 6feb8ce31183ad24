package audit_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
)

var at = time.UnixMilli(1764745200123)

const mark = "er1.AAAAAAAAAAAAAAAAAAAAAA"

func batchCounts() *audit.BatchCounts {
	c := &audit.BatchCounts{Events: 10, PolicyVersion: "2026-01 <v\"2\">", HasConsent: true, ConsentMin: 1700000000000, ConsentMax: 1700000000999, Unclassified: 2}
	c.Note("raw.customer-events", 3, 107)
	c.Note("raw.customer-events", 3, 100)
	c.Note("raw.customer-events", 1, 5)
	c.Note("raw.customer-events", 3, 109)
	p := c.AddPurpose("analytics", 6, 1)
	p.Denied = append(p.Denied, audit.Count{Name: "unknown_subject", N: 2}, audit.Count{Name: "no_consent", N: 0}, audit.Count{Name: "erased", N: 1})
	c.AddPurpose("marketing", 0, 0).Denied = append(c.Purposes[1].Denied, audit.Count{Name: "gpc_opt_out", N: 9})
	c.Quarantined = append(c.Quarantined, audit.Count{Name: "not_avro", N: 1}, audit.Count{Name: "oversized", N: 0})
	return c
}

func examples() []audit.Record {
	return []audit.Record{
		audit.Batch(at, "privacy", batchCounts().Summary()),
		audit.Consent(at, "consent-api", "ops-team", audit.ConsentChange{Change: audit.ChangeWithdraw, Purpose: "marketing", Source: "web_form",
			PolicyVersion: "withdrawal", Version: 1764745200000, ReceiptID: "0123456789abcdef0123456789abcdef", SubjectRef: mark}),
		audit.Consent(at, "consent-api", "CN=importer,O=Example", audit.ConsentChange{Change: audit.ChangeImport, Source: "import",
			Import: &audit.ImportCounts{Accepted: 3, Rejected: 1, Erased: 2, Part: 1, Parts: 1, Changes: map[string]int{"grant": 2, "profile": 1}}}),
		audit.Request(at, "requests", "privacy-desk", audit.RequestStatus{ID: "req-42", Kind: audit.RequestErasure, Regime: "gdpr",
			Status: audit.StatusExtended, Reason: "complex_request", DeadlineMS: 1772521200000, SubjectRef: mark}),
		audit.Erasure(at, "erasure", "", audit.ErasureSummary{Request: "req-42", SubjectRef: mark, KeysShredded: 5, KeyTombstones: 5, ConsentTombstones: 7, Notices: 5}),
	}
}

// TestRoundTrip: every kind, built by its constructor, encodes and
// decodes back to itself.
func TestRoundTrip(t *testing.T) {
	for _, r := range examples() {
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatalf("%s: %v", r.Kind, err)
		}
		got, err := audit.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.Kind, err, b)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("%s: decoded %+v\nwant %+v\n%s", r.Kind, got, r, b)
		}
		if string(r.Key()) != r.Processor {
			t.Fatalf("key %q", r.Key())
		}
	}
}

// TestAppendBatch: the allocation-free writer writes the document
// encoding/json reads as the summary (zero counts left out, names
// escaped), and allocates nothing once its buffer has room.
func TestAppendBatch(t *testing.T) {
	c := batchCounts()
	b := audit.AppendBatch(nil, at, "privacy", c)
	if !json.Valid(b) {
		t.Fatalf("not JSON: %s", b)
	}
	got, err := audit.Decode(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := audit.Batch(at, "privacy", c.Summary())
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v\nwant %+v", got.Batch, want.Batch)
	}
	if in := got.Batch.Inputs; len(in) != 2 || in[0].Partition != 3 || in[0].Offsets[0] != 100 || in[0].Offsets[1] != 109 {
		t.Fatalf("inputs %+v", in)
	}
	if _, ok := got.Batch.Purposes["analytics"].Denied["no_consent"]; ok {
		t.Fatal("a zero count was written")
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = audit.AppendBatch(buf[:0], at, "privacy", c) }); n != 0 {
		t.Fatalf("AppendBatch allocates %v times", n)
	}
	c.Reset()
	if n := testing.AllocsPerRun(100, func() {
		c.Reset()
		c.Note("raw", 1, 1)
		c.AddPurpose("analytics", 1, 0).Denied = append(c.Purposes[0].Denied, audit.Count{Name: "denied", N: 1})
	}); n != 0 {
		t.Fatalf("refilling the counts allocates %v times", n)
	}
}

// TestDecodeRefuses names the attacks on a reader: a record that smuggles
// a raw subject id where a mark belongs, free text where a code belongs,
// a field spelled in another case or given twice (encoding/json would
// take either silently), another version, a kind carrying another kind's
// object, negative or inconsistent counts, trailing data.
func TestDecodeRefuses(t *testing.T) {
	good, _ := audit.Encode(examples()[4])
	if _, err := audit.Decode(good); err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"raw id as subject_ref":     `{"v":1,"kind":"erasure","time_ms":1,"processor":"erasure","erasure":{"subject_ref":"canary-subject-1","keys_shredded":0,"key_tombstones":0,"consent_tombstones":0,"notices":0}}`,
		"prefixed raw id":           `{"v":1,"kind":"erasure","time_ms":1,"processor":"erasure","erasure":{"subject_ref":"er1.jane.doe@example.com","keys_shredded":0,"key_tombstones":0,"consent_tombstones":0,"notices":0}}`,
		"version 2":                 strings.Replace(string(good), `"v":1`, `"v":2`, 1),
		"upper-case field":          strings.Replace(string(good), `"v":1`, `"V":1`, 1),
		"duplicate field":           strings.Replace(string(good), `"v":1`, `"v":1,"v":1`, 1),
		"unknown field":             strings.Replace(string(good), `"v":1`, `"v":1,"subject_id":"x"`, 1),
		"trailing data":             string(good) + `{}`,
		"two objects":               strings.Replace(string(good), `"erasure":{`, `"batch":{"inputs":[]},"erasure":{`, 1),
		"kind mismatch":             strings.Replace(string(good), `"kind":"erasure"`, `"kind":"consent"`, 1),
		"negative count":            strings.Replace(string(good), `"notices":5`, `"notices":-5`, 1),
		"float count":               strings.Replace(string(good), `"notices":5`, `"notices":5.5`, 1),
		"request reason text":       `{"v":1,"kind":"request","time_ms":1,"processor":"requests","principal":"p","request":{"id":"r1","kind":"access","regime":"gdpr","status":"refused","reason":"Jane Doe called","deadline_ms":5}}`,
		"consent without principal": `{"v":1,"kind":"consent","time_ms":1,"processor":"consent-api","consent":{"change":"grant","purpose":"analytics"}}`,
		"import counts do not add":  `{"v":1,"kind":"consent","time_ms":1,"processor":"consent-api","principal":"p","consent":{"change":"import","import":{"accepted":3,"rejected":0,"erased":0,"part":1,"parts":1,"changes":{"grant":1}}}}`,
		"unknown denial reason":     `{"v":1,"kind":"batch","time_ms":1,"processor":"privacy","batch":{"inputs":[{"topic":"t","partition":0,"offsets":[0,0]}],"events":1,"policy_version":"v","purposes":{"analytics":{"published":0,"denied":{"jane@example.com":1}}}}}`,
		"offsets of three":          `{"v":1,"kind":"batch","time_ms":1,"processor":"privacy","batch":{"inputs":[{"topic":"t","partition":0,"offsets":[0,0,9]}],"events":1,"policy_version":"v","purposes":{"analytics":{"published":1}}}}`,
		"principal on a batch":      `{"v":1,"kind":"batch","time_ms":1,"processor":"privacy","principal":"x","batch":{"inputs":[{"topic":"t","partition":0,"offsets":[0,0]}],"events":1,"policy_version":"v","purposes":{"analytics":{"published":1}}}}`,
		"not an object":             `[1,2]`,
		"policy version too long":   `{"v":1,"kind":"batch","time_ms":1,"processor":"privacy","batch":{"inputs":[{"topic":"t","partition":0,"offsets":[0,0]}],"events":1,"policy_version":"` + strings.Repeat("v", audit.MaxVersionLen+1) + `","purposes":{"analytics":{"published":1}}}}`,
		"deep nesting":              `{"v":[[[[[[[1]]]]]]]}`,
	} {
		if _, err := audit.Decode([]byte(doc)); err == nil {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
}

// TestSubjectRefIsTheLedgerMark: the reference the format accepts is
// exactly what the erasure ledger computes.
func TestSubjectRefIsTheLedgerMark(t *testing.T) {
	if audit.MarkPrefix != erasure.MarkPrefix {
		t.Fatalf("prefix %q, the ledger's %q", audit.MarkPrefix, erasure.MarkPrefix)
	}
	l, err := erasure.NewLedger(bytes.Repeat([]byte{7}, erasure.LedgerKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "canary-subject-1", "jane@example.com", strings.Repeat("x", 256)} {
		m := l.Mark(s)
		if !audit.IsSubjectRef(m) || !erasure.IsMark(m) {
			t.Fatalf("mark %q refused", m)
		}
	}
	if audit.IsSubjectRef("er1.AAAAAAAAAAAAAAAAAAAAAB") {
		t.Fatal("a reference that is no 128-bit mark accepted")
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes to a
// document that decodes to the same record and re-encodes identically.
func FuzzDecode(f *testing.F) {
	for _, r := range examples() {
		b, _ := audit.Encode(r)
		f.Add(b)
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"kind":"batch","time_ms":1,"processor":"p","batch":{"inputs":[{"topic":"t","partition":0,"offsets":[0,1]}],"events":1,"policy_version":"\u2028\ud800","purposes":{"analytics":{"published":1}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := audit.Decode(b)
		if err != nil {
			return
		}
		enc, err := audit.Encode(r)
		if err != nil {
			t.Fatalf("decoded but does not encode: %v", err)
		}
		r2, err := audit.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded record refused: %v\n%s", err, enc)
		}
		enc2, err := audit.Encode(r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// TestPythonReadsTheFormat: a standard client (Python's json module, the
// venv's python of PIPELINE_PYTHON) reads one record of each kind and
// finds the documented fields.
func TestPythonReadsTheFormat(t *testing.T) {
	py := os.Getenv("PIPELINE_PYTHON")
	if py == "" {
		msg := `the Python check needs PIPELINE_PYTHON: export PIPELINE_PYTHON="$(scripts/pyenv)"`
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var lines []byte
	for _, r := range examples() {
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(append(lines, b...), '\n')
	}
	lines = append(append(lines, audit.AppendBatch(nil, at, "privacy", batchCounts())...), '\n')
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	const script = `
import json, sys
need = {
  "batch": ["inputs", "events", "policy_version", "purposes"],
  "consent": ["change"],
  "request": ["id", "kind", "regime", "status", "deadline_ms"],
  "erasure": ["subject_ref", "keys_shredded", "key_tombstones", "consent_tombstones", "notices"],
}
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["v"] == 1 and isinstance(r["time_ms"], int) and r["processor"], r
    k = r["kind"]
    body = r[k]
    for f in need[k]:
        assert f in body, (k, f)
    if k == "batch":
        i = body["inputs"][0]
        first, last = i["offsets"]
        p = body["purposes"]["analytics"]
        out = "batch %s/%d [%d,%d] analytics published=%d erased=%d pv=%s" % (i["topic"], i["partition"], first, last, p["published"], p["denied"]["erased"], body["policy_version"])
    elif k == "consent":
        out = "consent %s by %s ref=%s" % (body["change"], r["principal"], body.get("subject_ref", body.get("import", {}).get("accepted")))
    elif k == "request":
        out = "request %s %s %s by %s" % (body["id"], body["kind"], body["status"], r["principal"])
    else:
        out = "erasure %s notices=%d" % (body["subject_ref"], body["notices"])
    print(out)
`
	cmd := exec.Command(py, "-c", script, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.Bytes())
	}
	want := `batch raw.customer-events/3 [100,109] analytics published=6 erased=1 pv=2026-01 <v"2">
consent withdraw by ops-team ref=` + mark + `
consent import by CN=importer,O=Example ref=3
request req-42 erasure extended by privacy-desk
erasure ` + mark + ` notices=5
batch raw.customer-events/3 [100,109] analytics published=6 erased=1 pv=2026-01 <v"2">
`
	if string(out) != want {
		t.Fatalf("python read:\n%s\nwant:\n%s", out, want)
	}
}
