package cleancodec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// The reference path: goavro, the codec the pipeline's writers use, decodes
// a record with its writer schema, and the result is mapped by name onto the
// reader's fields with Avro's promotions. Tests and the fuzz target compare
// Decode with it.

// allTypesSchema has one field of every supported type, written in the
// three accepted spellings of a primitive.
const allTypesSchema = `{
  "type": "record", "name": "CustomerEvent", "namespace": "test.cleancodec",
  "doc": "every supported type",
  "fields": [
    {"name": "s", "type": ["null", "string"], "default": null, "doc": "a string"},
    {"name": "b", "type": ["null", "bytes"], "default": null},
    {"name": "i", "type": ["null", "int"], "default": null},
    {"name": "l", "type": ["null", {"type": "long"}], "default": null},
    {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "f", "type": ["null", "float"], "default": null},
    {"name": "d", "type": ["null", "double"], "default": null},
    {"name": "ok", "type": ["null", "boolean"], "default": null},
    {"name": "s2", "type": ["null", {"type": "string", "avro.java.string": "String"}], "default": null}
  ]
}`

// testSchema is a reader schema under test with its known writer schemas.
type testSchema struct {
	name    string
	reader  []byte
	writers [][]byte // besides the reader
}

// testSchemas returns every purpose's clean schema and the all-types
// schema, each with an evolved writer schema.
func testSchemas(t testing.TB) []testSchema {
	t.Helper()
	var out []testSchema
	for _, p := range purpose.All {
		b, err := schemas.CleanSchemaJSON(p.String())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, testSchema{name: p.String(), reader: b, writers: [][]byte{evolve(t, b)}})
	}
	out = append(out, testSchema{name: "all_types", reader: []byte(allTypesSchema), writers: [][]byte{evolve(t, []byte(allTypesSchema))}})
	return out
}

// evolve derives a writer schema from a reader schema as an older or newer
// producer might have written it: fields in reverse order, the second field
// missing, promotable types in place of the reader's (float for the first
// double, int for the first long or timestamp, bytes for the first string
// other than the dropped one), and extra fields of every type.
func evolve(t testing.TB, reader []byte) []byte {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(reader, &root); err != nil {
		t.Fatal(err)
	}
	fields := root["fields"].([]any)
	var out []any
	done := map[string]bool{}
	for i := len(fields) - 1; i >= 0; i-- {
		if i == 1 {
			continue
		}
		f := fields[i].(map[string]any)
		branch := f["type"].([]any)[1]
		base, _ := branch.(string)
		if m, ok := branch.(map[string]any); ok {
			base = m["type"].(string)
		}
		nf := map[string]any{"name": f["name"], "default": nil, "type": f["type"]}
		repl := map[string]string{"double": "float", "long": "int", "string": "bytes"}[base]
		if repl != "" && !done[base] {
			done[base] = true
			nf["type"] = []any{"null", repl}
		}
		out = append(out, nf)
		if i == len(fields)/2 {
			for _, x := range []string{"string", "bytes", "int", "long", "float", "double", "boolean"} {
				out = append(out, map[string]any{"name": "extra_" + x, "type": []any{"null", x}, "default": nil})
			}
		}
	}
	root["fields"] = out
	root["doc"] = "evolved writer"
	b, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wrapCodec returns goavro's codec of a schema with the specification's
// single-object fingerprint (the one the pipeline writes).
func wrapCodec(schemaJSON []byte) (*avrosingle.Codec, error) {
	c, err := goavro.NewCodecForStandardJSONFull(string(schemaJSON))
	if err != nil {
		return nil, err
	}
	return avrosingle.Wrap(c, schemaJSON)
}

// oracle decodes records with goavro.
type oracle struct {
	reader []Field
	codecs map[uint64]*avrosingle.Codec
}

func newOracle(t testing.TB, ts testSchema) *oracle {
	t.Helper()
	rs, err := parseSchema(ts.reader)
	if err != nil {
		t.Fatal(err)
	}
	o := &oracle{reader: rs.fields, codecs: map[uint64]*avrosingle.Codec{}}
	for _, s := range append([][]byte{ts.reader}, ts.writers...) {
		c, err := wrapCodec(s)
		if err != nil {
			t.Fatal(err)
		}
		o.codecs[c.Rabin] = c
	}
	return o
}

// decode returns the reader's values of a record, or an error when goavro
// rejects it (or leaves trailing bytes).
func (o *oracle) decode(b []byte) ([]Value, error) {
	if len(b) < wireformat.SingleObjectHeaderLen {
		return nil, errors.New("short")
	}
	fp, _, err := goavro.FingerprintFromSOE(b)
	if err != nil {
		return nil, err
	}
	c := o.codecs[fp]
	if c == nil {
		return nil, errors.New("unknown fingerprint")
	}
	native, rest, err := c.NativeFromSingle(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing bytes")
	}
	rec := native.(map[string]any)
	vals := make([]Value, len(o.reader))
	for i, f := range o.reader {
		u, ok := rec[f.Name]
		if !ok || u == nil {
			continue
		}
		for _, x := range u.(map[string]any) {
			v, err := toValue(x, f.Type)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name, err)
			}
			vals[i] = v
		}
	}
	return vals, nil
}

// toValue converts a goavro native value to a Value of the reader type rt.
func toValue(x any, rt Type) (Value, error) {
	v := Value{Present: true}
	var n int64
	isInt := true
	switch x := x.(type) {
	case string:
		v.Bytes = []byte(x)
		return v, nil
	case []byte:
		v.Bytes = x
		return v, nil
	case bool:
		if x {
			v.Num = 1
		}
		return v, nil
	case float32:
		v.F = float64(x)
		return v, nil
	case float64:
		v.F = x
		return v, nil
	case int32:
		n = int64(x)
	case int64:
		n = x
	case time.Time:
		n = x.UnixMilli()
	default:
		isInt = false
	}
	if !isInt {
		return v, fmt.Errorf("unexpected native %T", x)
	}
	switch rt {
	case TypeFloat:
		v.F = float64(float32(n))
	case TypeDouble:
		v.F = float64(n)
	default:
		v.Num = n
	}
	return v, nil
}

// equalValues reports the first difference between two value lists.
func equalValues(fields []Field, got, want []Value) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i, f := range fields {
		g, w := got[i], want[i]
		if g.Present != w.Present || !bytes.Equal(g.Bytes, w.Bytes) || g.Num != w.Num ||
			math.Float64bits(g.F) != math.Float64bits(w.F) {
			return fmt.Errorf("field %s (%s): got %+v, want %+v", f.Name, f.Type, g, w)
		}
		if g.Present && (f.Type == TypeString || f.Type == TypeBytes) && g.Bytes == nil {
			return fmt.Errorf("field %s: present with nil Bytes", f.Name)
		}
	}
	return nil
}

// encoder writes random records with goavro.
type encoder struct {
	codec  *avrosingle.Codec
	fields []Field
}

func newEncoder(t testing.TB, schemaJSON []byte) *encoder {
	t.Helper()
	c, err := wrapCodec(schemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSchema(schemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	return &encoder{codec: c, fields: s.fields}
}

// random returns a goavro-encoded single-object record; nullPct of the
// fields are null.
func (e *encoder) random(t testing.TB, rng *rand.Rand, nullPct int) []byte {
	t.Helper()
	m := make(map[string]any, len(e.fields))
	for _, f := range e.fields {
		if rng.IntN(100) < nullPct {
			m[f.Name] = nil
			continue
		}
		branch := f.Type.avroName()
		if f.Type == TypeTimestampMillis {
			branch = "long.timestamp-millis"
		}
		m[f.Name] = goavro.Union(branch, randomNative(rng, f.Type))
	}
	b, err := e.codec.SingleFromNative(nil, m)
	if err != nil {
		t.Fatalf("goavro encode: %v", err)
	}
	return b
}

func randomNative(rng *rand.Rand, t Type) any {
	edge := rng.IntN(4) == 0
	switch t {
	case TypeString:
		return randomString(rng)
	case TypeBytes:
		// Valid UTF-8 too, so that a bytes writer field may feed a string
		// reader field.
		return []byte(randomString(rng))
	case TypeInt:
		if edge {
			return []int32{math.MinInt32, math.MaxInt32, 0, -1}[rng.IntN(4)]
		}
		return int32(rng.Uint32())
	case TypeLong:
		if edge {
			return []int64{math.MinInt64, math.MaxInt64, 0, -1}[rng.IntN(4)]
		}
		return int64(rng.Uint64()) >> rng.IntN(64)
	case TypeTimestampMillis:
		if edge {
			return []int64{math.MinInt64, math.MaxInt64, 0, -1}[rng.IntN(4)]
		}
		return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + rng.Int64N(int64(10*365*24*time.Hour/time.Millisecond))
	case TypeFloat:
		if edge {
			return []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.MaxFloat32, math.SmallestNonzeroFloat32}[rng.IntN(5)]
		}
		return float32(rng.NormFloat64() * 1000)
	case TypeDouble:
		if edge {
			return []float64{math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64, -0.0}[rng.IntN(5)]
		}
		return rng.NormFloat64() * 1e6
	case TypeBoolean:
		return rng.IntN(2) == 1
	}
	panic("unknown type")
}

func randomString(rng *rand.Rand) string {
	pieces := []string{"", "a", "age_40_49", "SW1A", "ü", "日本語", "😀", "\x00", "e-mail@example.com", strings.Repeat("x", 70)}
	var sb strings.Builder
	for range rng.IntN(8) {
		sb.WriteString(pieces[rng.IntN(len(pieces))])
	}
	if rng.IntN(20) == 0 {
		sb.WriteString(strings.Repeat("long ", 100)) // multi-byte length varint
	}
	return sb.String()
}

// header returns a single-object header for a fingerprint.
func header(fp uint64) []byte {
	b := []byte{0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint64(b[2:], fp)
	return b
}

func isZero(v Value) bool { return !v.Present && v.Bytes == nil && v.Num == 0 && v.F == 0 }
