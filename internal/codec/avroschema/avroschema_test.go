package avroschema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// vector is one case of the Avro project's schema test vectors.
type vector struct {
	id, input, canonical string
	fingerprint          *int64 // Java's signed long; nil when the case has none
}

// readVectors parses testdata/schema-tests.txt: share/test/data/schema-tests.txt
// of the Apache Avro project (https://github.com/apache/avro, commit
// 87212a6d47247a30dff247d16386d722c56d4390), copied unchanged under the
// Apache License 2.0 (see the file's header). Its fingerprints are Java's
// 64-bit Rabin fingerprints (SchemaNormalization.parsingFingerprint64), as
// signed longs.
func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open("testdata/schema-tests.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	var cur *vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "// ") && len(strings.TrimSpace(line[3:])) == 3:
			if _, err := strconv.Atoi(strings.TrimSpace(line[3:])); err == nil {
				out = append(out, vector{id: line[3:]})
				cur = &out[len(out)-1]
			}
		case cur == nil || strings.HasPrefix(line, "//") || strings.HasPrefix(line, "#"):
		case line == "<<INPUT":
			var b strings.Builder
			for sc.Scan() && sc.Text() != "INPUT" {
				b.WriteString(sc.Text())
				b.WriteByte('\n')
			}
			cur.input = b.String()
		case strings.HasPrefix(line, "<<INPUT "):
			cur.input = strings.TrimPrefix(line, "<<INPUT ")
		case strings.HasPrefix(line, "<<canonical "):
			cur.canonical = strings.TrimPrefix(line, "<<canonical ")
		case strings.HasPrefix(line, "<<fingerprint "):
			n, err := strconv.ParseInt(strings.TrimPrefix(line, "<<fingerprint "), 10, 64)
			if err != nil {
				t.Fatalf("case %s: %v", cur.id, err)
			}
			cur.fingerprint = &n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The Avro project's vectors: every canonical form, and every 64-bit Rabin
// fingerprint.
func TestAvroSchemaTestVectors(t *testing.T) {
	vs := readVectors(t)
	if len(vs) < 34 {
		t.Fatalf("read %d vectors, want at least 34", len(vs))
	}
	fps := 0
	for _, v := range vs {
		if v.input == "" || v.canonical == "" {
			t.Fatalf("case %s: incomplete (%+v)", v.id, v)
		}
		got, err := Canonical([]byte(v.input))
		if err != nil {
			t.Errorf("case %s: Canonical(%s): %v", v.id, v.input, err)
			continue
		}
		if string(got) != v.canonical {
			t.Errorf("case %s: Canonical(%s)\n got  %s\n want %s", v.id, v.input, got, v.canonical)
		}
		if v.fingerprint != nil {
			fps++
			fp, err := Fingerprint([]byte(v.input))
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(*v.fingerprint); fp != want {
				t.Errorf("case %s: Fingerprint %016x, want %016x", v.id, fp, want)
			}
			if Rabin([]byte(v.canonical)) != uint64(*v.fingerprint) {
				t.Errorf("case %s: Rabin of the canonical form differs", v.id)
			}
		}
	}
	t.Logf("%d vectors, %d with fingerprints", len(vs), fps)
}

func TestRabinEmpty(t *testing.T) {
	if Rabin(nil) != Empty {
		t.Fatalf("Rabin(nil) = %016x", Rabin(nil))
	}
}

// Cases the published vectors do not cover; the expected forms follow the
// specification (and agree with fastavro and Java Avro).
func TestCanonicalCases(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// STRIP: logical types are not part of the canonical form (the quirk of goavro issue 174).
		{`{"type":"long","logicalType":"timestamp-millis"}`, `"long"`},
		{`{"type":"record","name":"r","fields":[{"name":"t","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null}]}`,
			`{"name":"r","type":"record","fields":[{"name":"t","type":["null","long"]}]}`},
		{`{"type":"fixed","name":"d","size":16,"logicalType":"decimal","precision":4}`, `{"name":"d","type":"fixed","size":16}`},
		// FULLNAMES: nested types inherit the enclosing namespace; references are written in full.
		{`{"type":"record","name":"a","namespace":"x.y","fields":[
			{"name":"f","type":{"type":"enum","name":"e","symbols":["A"]}},
			{"name":"g","type":"e"},
			{"name":"h","type":{"type":"fixed","name":"z.q","size":"02"}},
			{"name":"i","type":{"type":"array","items":"z.q"}},
			{"name":"j","type":{"type":"map","values":{"type":"x.y.a"}}}]}`,
			`{"name":"x.y.a","type":"record","fields":[{"name":"f","type":{"name":"x.y.e","type":"enum","symbols":["A"]}},{"name":"g","type":"x.y.e"},{"name":"h","type":{"name":"z.q","type":"fixed","size":2}},{"name":"i","type":{"type":"array","items":"z.q"}},{"name":"j","type":{"type":"map","values":"x.y.a"}}]}`},
		// A name with dots sets the namespace of the types nested in it.
		{`{"type":"record","name":"p.r","namespace":"ignored","fields":[{"name":"f","type":{"type":"record","name":"s","fields":[]}},{"name":"g","type":"s"}]}`,
			`{"name":"p.r","type":"record","fields":[{"name":"f","type":{"name":"p.s","type":"record","fields":[]}},{"name":"g","type":"p.s"}]}`},
		// A short reference not found in the enclosing namespace falls back to the null namespace.
		{`{"type":"record","name":"top","fields":[{"name":"f","type":{"type":"record","name":"n.in","fields":[{"name":"back","type":["null","top"]}]}}]}`,
			`{"name":"top","type":"record","fields":[{"name":"f","type":{"name":"n.in","type":"record","fields":[{"name":"back","type":["null","top"]}]}}]}`},
		// STRINGS: escapes are decoded; WHITESPACE: none.
		{"{ \"type\" : \"enum\" , \"name\" : \"\\u0066oo\" , \"symbols\" : [ \"\\u0041\" ] }", `{"name":"foo","type":"enum","symbols":["A"]}`},
		{`{"type":"error","name":"E","fields":[]}`, `{"name":"E","type":"record","fields":[]}`},
	} {
		got, err := Canonical([]byte(c.in))
		if err != nil {
			t.Errorf("Canonical(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%s)\n got  %s\n want %s", c.in, got, c.want)
		}
	}
}

func TestCanonicalRejects(t *testing.T) {
	for _, in := range []string{
		``, `{`, `"int" "int"`, `3`, `"nosuch"`, `{"type":3}`, `{"type":"record"}`,
		`{"type":"record","name":"1a","fields":[]}`, `{"type":"record","name":"a..b","fields":[]}`,
		`{"type":"record","name":"int","fields":[]}`, `{"type":"record","name":"r","fields":{}}`,
		`{"type":"record","name":"r","fields":[{"name":"f"}]}`,
		`{"type":"record","name":"r","fields":[{"name":"f","type":"int"},{"name":"f","type":"int"}]}`,
		`{"type":"record","name":"r","fields":[{"name":"a.b","type":"int"}]}`,
		`{"type":"record","name":"r","fields":[{"name":"f","type":{"type":"enum","name":"r","symbols":[]}}]}`,
		`{"type":"enum","name":"e","symbols":["A","A"]}`, `{"type":"enum","name":"e","symbols":["-"]}`,
		`{"type":"fixed","name":"f","size":-1}`, `{"type":"fixed","name":"f","size":1.5}`, `{"type":"fixed","name":"f"}`,
		`{"type":"array"}`, `{"type":"map","values":"nosuch"}`, `[["int"]]`,
		`{"type":"record","name":"r","namespace":3,"fields":[]}`,
		strings.Repeat("[", 2000) + strings.Repeat("]", 2000),
	} {
		if _, err := Canonical([]byte(in)); !errors.Is(err, ErrInvalidSchema) {
			t.Errorf("Canonical(%.60s): err %v, want ErrInvalidSchema", in, err)
		}
	}
}

// FuzzCanonical: no panic; a canonical form is JSON, is itself a valid
// schema, and is its own canonical form (except for the specification's
// known ambiguity, see canonical).
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`"int"`, `["null","string"]`, `{"type":"long","logicalType":"timestamp-millis"}`,
		`{"type":"record","name":"a","namespace":"x","fields":[{"name":"f","type":{"type":"enum","name":"e","symbols":["A"]}},{"name":"g","type":"e"}]}`,
		`{"type":"record","name":"a","namespace":"x","fields":[{"name":"f","type":{"type":"fixed","name":"e","namespace":"","size":1}}]}`,
		`{"type":"map","values":{"type":"array","items":"bytes"}}`,
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../../../schemas/customer_event.avsc"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, ambiguous, err := canonical(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidSchema) {
				t.Fatalf("error %v does not wrap ErrInvalidSchema", err)
			}
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonical form is not JSON: %s", c)
		}
		if bytes.ContainsAny(c, " \t\r\n") {
			t.Fatalf("canonical form has whitespace: %s", c)
		}
		c2, _, err := canonical(c)
		if err != nil {
			t.Fatalf("canonical form %s is not a schema: %v", c, err)
		}
		if !ambiguous && !bytes.Equal(c, c2) {
			t.Fatalf("not idempotent:\n %s\n %s", c, c2)
		}
		if fp, err := Fingerprint(in); err != nil || fp != Rabin(c) {
			t.Fatalf("Fingerprint %016x, %v; Rabin of the canonical form %016x", fp, err, Rabin(c))
		}
	})
}
