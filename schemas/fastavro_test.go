package schemas_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// schemaFiles returns every checked-in Avro schema of the repository (the
// files under schemas/ and the consent log's version-1 schema), and every
// derived schema (clean schemas from the raw schema and the policy, the
// k-anonymity outputs' from kanon.json) written to dir.
func schemaFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.avsc", "clean/*.avsc", "agg/*.avsc", "../internal/consent/consentlog/*.avsc"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	raw, err := schemas.RawEvent()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(schemas.PolicyJSON(), raw)
	if err != nil {
		t.Fatal(err)
	}
	derived := map[string][]byte{}
	for _, p := range purpose.All {
		fields, err := pol.Derive(raw, p)
		if err != nil {
			t.Fatal(err)
		}
		derived[schemas.CleanSchemaFile(p.String())] = policy.CleanSchemaJSON(p, fields)
	}
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	kd, err := spec.Derived()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kd {
		derived[k] = v
	}
	for rel, b := range derived {
		path := filepath.Join(dir, "derived", rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	slices.Sort(files)
	return files
}

// TestFingerprintsMatchFastavro: the canonical form and the fingerprint of
// every checked-in and derived schema equal fastavro's. It needs
// PIPELINE_PYTHON, a python with fastavro (export
// PIPELINE_PYTHON="$(scripts/pyenv)"); under CI=true its absence fails the
// test. The log (go test -v) has the table of goavro's (legacy) and the
// specification's fingerprints.
func TestFingerprintsMatchFastavro(t *testing.T) {
	py := os.Getenv("PIPELINE_PYTHON")
	if py == "" {
		msg := `the fastavro cross-check needs PIPELINE_PYTHON, a python with fastavro: export PIPELINE_PYTHON="$(scripts/pyenv)"`
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	files := schemaFiles(t, t.TempDir())
	if len(files) < 12 {
		t.Fatalf("found %d schema files, expected every checked-in and derived one: %v", len(files), files)
	}
	cmd := exec.Command(py, append([]string{"../scripts/avro-fingerprints.py", "--canonical"}, files...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/avro-fingerprints.py: %v\n%s", err, stderr.Bytes())
	}
	type fa struct {
		fp        uint64
		canonical string
	}
	got := map[string]fa{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 {
			t.Fatalf("unexpected line %q", sc.Text())
		}
		fp, err := strconv.ParseUint(parts[1], 16, 64)
		if err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got[parts[0]] = fa{fp, parts[2]}
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-60s %-16s %-16s %s\n", "schema", "goavro (legacy)", "spec (Go)", "fastavro")
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := got[path]
		if !ok {
			t.Errorf("%s: no fastavro fingerprint", path)
			continue
		}
		c, err := avroschema.Canonical(b)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		fp := avroschema.Rabin(c)
		if string(c) != f.canonical {
			t.Errorf("%s: canonical form differs from fastavro's\n go:       %s\n fastavro: %s", path, c, f.canonical)
		}
		if fp != f.fp {
			t.Errorf("%s: fingerprint %016x, fastavro %016x", path, fp, f.fp)
		}
		legacy := "-"
		if gc, err := goavro.NewCodec(string(b)); err == nil {
			legacy = fmt.Sprintf("%016x", gc.Rabin)
		}
		name := path
		if i := strings.Index(path, "/derived/"); i >= 0 {
			name = "(derived) " + path[i+len("/derived/"):]
		}
		fmt.Fprintf(&table, "%-60s %-16s %016x %016x\n", name, legacy, fp, f.fp)
	}
	t.Logf("%d schemas\n%s", len(files), table.String())
}
