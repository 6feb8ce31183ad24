package cleancodec

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroenc"
	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

func newTestDecoder(t testing.TB, ts testSchema) *Decoder {
	t.Helper()
	d, err := New(ts.reader, ts.writers...)
	if err != nil {
		t.Fatalf("%s: New: %v", ts.name, err)
	}
	return d
}

// The fingerprint is the Avro specification's (package avroschema), which
// the pipeline's writers put in their records. goavro's differs only for
// schemas with a logical type (goavro issue 174).
func TestFingerprintIsTheSpecs(t *testing.T) {
	logical := 0
	for _, ts := range testSchemas(t) {
		for _, s := range append([][]byte{ts.reader}, ts.writers...) {
			fp, err := SchemaFingerprint(s)
			if err != nil {
				t.Fatalf("%s: %v", ts.name, err)
			}
			if want := avroschema.MustFingerprint(s); fp != want {
				t.Errorf("%s: fingerprint %016x, avroschema %016x", ts.name, fp, want)
			}
			c, err := goavro.NewCodec(string(s))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(s, []byte("logicalType")) {
				logical++
			} else if fp != c.Rabin {
				t.Errorf("%s: no logical type, yet fingerprint %016x and goavro's %016x differ", ts.name, fp, c.Rabin)
			}
		}
		if d := newTestDecoder(t, ts); d.Fingerprint() != mustFP(t, ts.reader) {
			t.Errorf("%s: Decoder.Fingerprint differs from SchemaFingerprint", ts.name)
		}
	}
	if logical == 0 {
		t.Error("no test schema has a logical type: the case where goavro differs is not covered")
	}
}

func mustFP(t testing.TB, s []byte) uint64 {
	t.Helper()
	fp, err := SchemaFingerprint(s)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// Records written by goavro with the reader schema, or with an evolved
// writer schema, decode to goavro's values mapped by name.
func TestRoundTripGoavro(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ts := range testSchemas(t) {
		t.Run(ts.name, func(t *testing.T) {
			d := newTestDecoder(t, ts)
			o := newOracle(t, ts)
			var r Record
			for wi, w := range append([][]byte{ts.reader}, ts.writers...) {
				enc := newEncoder(t, w)
				for n := range 500 {
					b := enc.random(t, rng, []int{0, 30, 100}[n%3])
					want, err := o.decode(b)
					if err != nil {
						t.Fatalf("goavro rejects its own record: %v", err)
					}
					if err := d.Decode(b, &r); err != nil {
						t.Fatalf("writer %d record %d: Decode: %v", wi, n, err)
					}
					if err := equalValues(d.fields, r.Values, want); err != nil {
						t.Fatalf("writer %d record %d: %v", wi, n, err)
					}
					if r.Writer.Fingerprint != enc.codec.Rabin {
						t.Fatalf("Fingerprint %016x, want %016x", r.Writer.Fingerprint, enc.codec.Rabin)
					}
				}
			}
		})
	}
}

// Evolution: fields missing in the writer are absent, extra writer fields are
// skipped, promoted values convert.
func TestWriterEvolution(t *testing.T) {
	ts := testSchemas(t)[len(purpose.All)] // all_types
	d := newTestDecoder(t, ts)
	enc := newEncoder(t, ts.writers[0])
	m := map[string]any{}
	for _, f := range enc.fields {
		m[f.Name] = goavro.Union(f.Type.avroName(), map[Type]any{
			TypeString: "x", TypeBytes: []byte("héllo"), TypeInt: int32(-7), TypeLong: int64(1) << 40,
			TypeFloat: float32(1.5), TypeDouble: 2.25, TypeBoolean: true,
		}[f.Type])
	}
	b, err := enc.codec.SingleFromNative(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := d.Decode(b, &r); err != nil {
		t.Fatal(err)
	}
	get := func(name string) Value { return r.Values[d.Field(name)] }
	if get("b").Present {
		t.Error("b is missing from the writer but Present")
	}
	if v := get("s2"); !v.Present || v.Str() != "héllo" {
		t.Errorf("s2 (bytes -> string) = %+v", v)
	}
	if v := get("s"); v.Str() != "x" {
		t.Errorf("s = %+v", v)
	}
	if v := get("d"); v.F != 1.5 {
		t.Errorf("d (float -> double) = %+v", v)
	}
	if v := get("ts"); v.Num != -7 {
		t.Errorf("ts (int -> timestamp-millis) = %+v", v)
	}
	if v := get("l"); v.Num != 1<<40 {
		t.Errorf("l = %+v", v)
	}
	if v := get("ok"); !v.Bool() {
		t.Errorf("ok = %+v", v)
	}
	if d.Field("extra_int") != -1 || d.Field("nope") != -1 {
		t.Error("Field of an unknown name is not -1")
	}
	if !d.Known(enc.codec.Rabin) || d.Known(12345) {
		t.Error("Known is wrong")
	}
}

func TestRegister(t *testing.T) {
	d, err := NewForPurpose("analytics")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewForPurpose("nope"); err == nil {
		t.Error("NewForPurpose(nope) succeeded")
	}
	// Same fingerprint again: a no-op.
	reader, _ := schemas.CleanSchemaJSON("analytics")
	if fp, err := d.Register(reader); err != nil || fp != d.Fingerprint() {
		t.Errorf("Register(reader) = %x, %v", fp, err)
	}
	// A purpose's record name is CustomerEvent in every namespace, so
	// another purpose's schema resolves; its fields map by name.
	other, _ := schemas.CleanSchemaJSON("marketing")
	if _, err := d.Register(other); err != nil {
		t.Errorf("Register(marketing): %v", err)
	}
	for _, bad := range []string{
		`{"type":"record","name":"Other","fields":[{"name":"event_type","type":["null","string"]}]}`,
		`{"type":"record","name":"CustomerEvent","fields":[{"name":"event_type","type":["null","long"]}]}`,
		`{"type":"record","name":"CustomerEvent","fields":[{"name":"event_time","type":["null","double"]}]}`,
	} {
		if _, err := d.Register([]byte(bad)); !errors.Is(err, ErrIncompatibleSchema) {
			t.Errorf("Register(%s) = %v, want ErrIncompatibleSchema", bad, err)
		}
	}
	if _, err := d.Register([]byte(`{"type":"enum","name":"E","symbols":["A"]}`)); !errors.Is(err, ErrUnsupportedSchema) {
		t.Errorf("Register(enum) = %v, want ErrUnsupportedSchema", err)
	}
	if _, err := New([]byte(allTypesSchema), []byte(`{"type":"record","name":"CustomerEvent","fields":[{"name":"i","type":["null","string"]}]}`)); !errors.Is(err, ErrIncompatibleSchema) {
		t.Errorf("New with an incompatible writer = %v", err)
	}
}

func TestPromotable(t *testing.T) {
	ok := map[[2]Type]bool{
		{TypeInt, TypeLong}: true, {TypeInt, TypeTimestampMillis}: true, {TypeInt, TypeFloat}: true, {TypeInt, TypeDouble}: true,
		{TypeLong, TypeFloat}: true, {TypeLong, TypeDouble}: true, {TypeLong, TypeTimestampMillis}: true,
		{TypeTimestampMillis, TypeLong}: true, {TypeTimestampMillis, TypeDouble}: true, {TypeTimestampMillis, TypeFloat}: true,
		{TypeFloat, TypeDouble}: true, {TypeString, TypeBytes}: true, {TypeBytes, TypeString}: true,
	}
	for w := TypeString; w <= TypeBoolean; w++ {
		for r := TypeString; r <= TypeBoolean; r++ {
			if want := w == r || ok[[2]Type{w, r}]; promotable(w, r) != want {
				t.Errorf("promotable(%s, %s) = %v", w, r, !want)
			}
		}
	}
}

func TestNewRejectsUnsupportedSchemas(t *testing.T) {
	rec := func(fieldType string) string {
		return `{"type":"record","name":"R","fields":[{"name":"f","type":` + fieldType + `}]}`
	}
	for _, s := range []string{
		`not json`,
		`"string"`,
		`{"type":"record","name":"R"}`,
		`{"type":"record","name":"R","fields":[]} {}`,
		`{"type":"enum","name":"R","symbols":["A"]}`,
		`{"type":"record","name":"1R","fields":[]}`,
		`{"type":"record","name":"R","namespace":"a..b","fields":[]}`,
		`{"type":"record","name":"string","fields":[]}`,
		`{"type":"record","name":"R","fields":[{"name":"R","type":["null","string"]}]}`,
		`{"type":"record","name":"R","fields":[{"name":"f","type":["null","string"]},{"name":"f","type":["null","long"]}]}`,
		`{"type":"record","name":"R","fields":[{"name":"f-g","type":["null","string"]}]}`,
		`{"type":"record","name":"R","fields":[{"name":"f","namespace":"x","type":["null","string"]}]}`,
		rec(`"string"`),
		rec(`["string","null"]`),
		rec(`["null"]`),
		rec(`["null","string","long"]`),
		rec(`["null","null"]`),
		rec(`["null",["null","string"]]`),
		rec(`["null",{"type":"int","logicalType":"date"}]`),
		rec(`["null",{"type":"long","logicalType":"timestamp-micros"}]`),
		rec(`["null",{"type":"string","logicalType":"timestamp-millis"}]`),
		rec(`["null",{"type":"bytes","logicalType":"decimal","precision":4}]`),
		rec(`["null",{"type":"string","name":"x"}]`),
		rec(`["null",{"type":"fixed","name":"F","size":4}]`),
		rec(`["null",{"type":"array","items":"string"}]`),
		rec(`["null",{"type":"map","values":"string"}]`),
		rec(`["null",{"type":"enum","name":"E","symbols":["A"]}]`),
		rec(`["null",{"type":"record","name":"N","fields":[]}]`),
		rec(`["null","R"]`),
	} {
		_, err := New([]byte(s))
		if !errors.Is(err, ErrUnsupportedSchema) {
			t.Errorf("New(%s) = %v, want ErrUnsupportedSchema", s, err)
		} else if !strings.HasPrefix(err.Error(), "cleancodec: reader schema: cleancodec: unsupported schema") {
			t.Errorf("New(%s): error %q", s, err)
		}
	}
}

// A clean record as processors/privacy writes it: avroenc primitives after
// the single-object header.
func allTypesRecord(t testing.TB, d *Decoder) []byte {
	t.Helper()
	b := wireformat.AppendSingleObject(nil, d.Fingerprint())
	b = avroenc.AppendString(avroenc.AppendNonNull(b), "s")
	b = avroenc.AppendBytes(avroenc.AppendNonNull(b), []byte{0xff, 0})
	b = avroenc.AppendInt(avroenc.AppendNonNull(b), math.MinInt32)
	b = avroenc.AppendNull(b) // l
	b = avroenc.AppendLong(avroenc.AppendNonNull(b), 1700000000000)
	b = avroenc.AppendFloat(avroenc.AppendNonNull(b), float32(math.NaN()))
	b = avroenc.AppendDouble(avroenc.AppendNonNull(b), math.Inf(-1))
	b = avroenc.AppendBool(avroenc.AppendNonNull(b), true)
	b = avroenc.AppendString(avroenc.AppendNonNull(b), "")
	return b
}

func TestDecodeAvroencRecord(t *testing.T) {
	d, err := New([]byte(allTypesSchema))
	if err != nil {
		t.Fatal(err)
	}
	b := allTypesRecord(t, d)
	var r Record
	if err := d.Decode(b, &r); err != nil {
		t.Fatal(err)
	}
	v := func(n string) Value { return r.Values[d.Field(n)] }
	if v("s").Str() != "s" || string(v("b").Bytes) != "\xff\x00" || v("i").Num != math.MinInt32 || v("l").Present ||
		v("ts").Num != 1700000000000 || !math.IsNaN(v("f").F) || !math.IsInf(v("d").F, -1) || !v("ok").Bool() ||
		!v("s2").Present || v("s2").Str() != "" {
		t.Errorf("decoded %+v", r.Values)
	}
	// Bytes alias the record with capacity capped at their length.
	s := v("s").Bytes
	if &s[0] != &b[wireformat.SingleObjectHeaderLen+2] || cap(s) != len(s) {
		t.Error("Bytes do not alias the record with capped capacity")
	}
	o := newOracle(t, testSchema{name: "all_types", reader: []byte(allTypesSchema)})
	want, err := o.decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := equalValues(d.fields, r.Values, want); err != nil {
		t.Error(err)
	}
}

func TestDecodeErrors(t *testing.T) {
	d, err := New([]byte(allTypesSchema))
	if err != nil {
		t.Fatal(err)
	}
	good := allTypesRecord(t, d)
	hdr := header(d.Fingerprint())
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	nulls := func(n int) []byte { return make([]byte, n) }
	cases := []struct {
		name  string
		in    []byte
		want  error
		field string
	}{
		{"nil", nil, ErrNotFramed, ""},
		{"one byte", []byte{0xC3}, ErrNotFramed, ""},
		{"truncated Confluent header", []byte{0, 0, 1}, ErrTruncated, ""},
		{"unknown registry id", cat(wireformat.AppendConfluent(nil, 9), good[wireformat.SingleObjectHeaderLen:]), ErrUnknownSchema, ""},
		{"wrong marker", cat([]byte{0xC3, 0x02}, good[2:]), ErrNotFramed, ""},
		{"plain avro", good[wireformat.SingleObjectHeaderLen:], ErrNotFramed, ""},
		{"short header", good[:9], ErrTruncated, ""},
		{"unknown fingerprint", cat(header(42), good[wireformat.SingleObjectHeaderLen:]), ErrUnknownSchema, ""},
		{"header only", hdr, ErrTruncated, "s"},
		{"trailing", cat(good, []byte{0}), ErrTrailingBytes, ""},
		{"union index 2", cat(hdr, []byte{4}), ErrBadUnion, "s"},
		{"union index -1", cat(hdr, []byte{1}), ErrBadUnion, "s"},
		{"union index huge", cat(hdr, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), ErrBadUnion, "s"},
		{"overlong null index", cat(hdr, []byte{0x80, 0x00}, nulls(8)), nil, ""},
		{"overlong index 1", cat(hdr, []byte{0x82, 0x00, 0x02, 'a'}, nulls(8)), nil, ""},
		{"varint too long", cat(hdr, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), ErrBadVarint, "s"},
		{"varint overflow", cat(hdr, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02}), ErrBadVarint, "s"},
		{"varint truncated", cat(hdr, []byte{2, 0x80}), ErrTruncated, "s"},
		{"negative length", cat(hdr, []byte{2, 1}), ErrBadLength, "s"},
		{"min length", cat(hdr, []byte{2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), ErrBadLength, "s"},
		{"max length", cat(hdr, []byte{2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), ErrBadLength, "s"},
		{"length past end", cat(hdr, []byte{2, 10, 'a'}), ErrBadLength, "s"},
		{"invalid utf-8", cat(hdr, []byte{2, 2, 0xc3}, nulls(8)), ErrInvalidUTF8, "s"},
		{"surrogate utf-8", cat(hdr, []byte{2, 6, 0xed, 0xa0, 0x80}, nulls(8)), ErrInvalidUTF8, "s"},
		{"bytes need no utf-8", cat(hdr, []byte{0, 2, 2, 0xc3}, nulls(7)), nil, ""},
		{"int too big", cat(hdr, []byte{0, 0, 2, 0x80, 0x80, 0x80, 0x80, 0x10}, nulls(6)), ErrBadValue, "i"},
		{"int too small", cat(hdr, []byte{0, 0, 2, 0x81, 0x80, 0x80, 0x80, 0x10}, nulls(6)), ErrBadValue, "i"},
		{"int max", cat(hdr, []byte{0, 0, 2, 0xfe, 0xff, 0xff, 0xff, 0x0f}, nulls(6)), nil, ""},
		{"float truncated", cat(hdr, nulls(5), []byte{2, 1, 2, 3}), ErrTruncated, "f"},
		{"double truncated", cat(hdr, nulls(6), []byte{2, 1, 2, 3, 4, 5, 6, 7}), ErrTruncated, "d"},
		{"bool 2", cat(hdr, nulls(7), []byte{2, 2, 0}), ErrBadValue, "ok"},
		{"bool truncated", cat(hdr, nulls(7), []byte{2}), ErrTruncated, "ok"},
	}
	var r Record
	for _, c := range cases {
		// Stale values from a good record must not survive a failure.
		if err := d.Decode(good, &r); err != nil {
			t.Fatal(err)
		}
		err := d.Decode(c.in, &r)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != c.field {
			t.Errorf("%s: error %#v, want field %q", c.name, err, c.field)
		}
		malformed := c.want != ErrNotFramed && c.want != ErrUnknownSchema
		if errors.Is(err, ErrMalformed) != malformed {
			t.Errorf("%s: errors.Is(ErrMalformed) = %v", c.name, !malformed)
		}
		if err.Error() == "" {
			t.Errorf("%s: empty message", c.name)
		}
		for i, v := range r.Values {
			if !isZero(v) {
				t.Errorf("%s: value %d left after error: %+v", c.name, i, v)
			}
		}
	}
	// Every proper prefix of a valid record fails.
	for n := range len(good) {
		if err := d.Decode(good[:n], &r); err == nil {
			t.Errorf("prefix of %d bytes decoded", n)
		}
	}
}

func TestDecodeNoAllocs(t *testing.T) {
	for _, ts := range testSchemas(t) {
		d := newTestDecoder(t, ts)
		rng := rand.New(rand.NewPCG(3, 4))
		recs := [][]byte{newEncoder(t, ts.reader).random(t, rng, 0), newEncoder(t, ts.writers[0]).random(t, rng, 0)}
		var r Record
		for _, b := range recs {
			allocs := testing.AllocsPerRun(100, func() {
				if err := d.Decode(b, &r); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s: %v allocs per Decode", ts.name, allocs)
			}
		}
	}
}

// Register while other goroutines decode (run with -race).
func TestConcurrentRegisterDecode(t *testing.T) {
	ts := testSchemas(t)[0]
	d, err := New(ts.reader)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	b := newEncoder(t, ts.reader).random(t, rng, 10)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var r Record
			for range 2000 {
				if err := d.Decode(b, &r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 50 {
		w := strings.Replace(string(ts.writers[0]), `"evolved writer"`, `"evolved writer `+string(rune('a'+i%26))+`"`, 1)
		w = strings.Replace(w, `"extra_int"`, `"extra_int_`+string(rune('a'+i%26))+`"`, 1)
		if _, err := d.Register([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// TestConfluentFraming: the same body behind a Confluent header decodes,
// once its id is registered, to exactly what the single-object record
// decodes to; an id registered with an incompatible schema stays unknown;
// a clean record written with goavro's legacy fingerprint (before the
// pipeline used the specification's) still decodes.
func TestConfluentFraming(t *testing.T) {
	d, err := New([]byte(allTypesSchema))
	if err != nil {
		t.Fatal(err)
	}
	single := allTypesRecord(t, d)
	conf := append(wireformat.AppendConfluent(nil, 41), single[wireformat.SingleObjectHeaderLen:]...)
	var a, b Record
	if err := d.Decode(conf, &b); !errors.Is(err, ErrUnknownSchema) || d.KnownID(41) {
		t.Fatalf("unregistered id: %v", err)
	}
	if fp, err := d.RegisterID(41, []byte(allTypesSchema)); err != nil || fp != d.Fingerprint() || !d.KnownID(41) {
		t.Fatalf("RegisterID: %016x %v", fp, err)
	}
	if err := d.Decode(single, &a); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode(conf, &b); err != nil || b.Writer.Format != wireformat.Confluent || b.Writer.ID != 41 {
		t.Fatalf("confluent: %v %+v", err, b.Writer)
	}
	if err := equalValues(d.fields, b.Values, a.Values); err != nil {
		t.Error(err)
	}
	if _, err := d.RegisterID(42, []byte(`{"type":"record","name":"other","fields":[]}`)); !errors.Is(err, ErrIncompatibleSchema) || d.KnownID(42) {
		t.Fatalf("RegisterID of another record: %v", err)
	}

	clean, _ := schemas.CleanSchemaJSON("analytics")
	c, err := avrosingle.NewCodec(string(clean))
	if err != nil || c.LegacyRabin == c.Rabin {
		t.Fatalf("the analytics schema should have a legacy fingerprint: %v", err)
	}
	dp, err := NewForPurpose("analytics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.BinaryFromNative(nil, map[string]any{"event_id_pseudonym": goavro.Union("string", "e1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Decode(append(wireformat.AppendSingleObject(nil, c.LegacyRabin), body...), &a); err != nil {
		t.Fatalf("legacy fingerprint: %v", err)
	}
	if v := a.Values[dp.Field("event_id_pseudonym")]; v.Str() != "e1" {
		t.Fatalf("legacy record decoded %+v", v)
	}
}
