package eventcodec

import (
	"reflect"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// kitchenSink is the raw schema plus unclassified fields of every complex
// Avro type, so the compiled decoder's skipping paths are exercised.
func kitchenSink() string {
	extra := `{"name":"tags","type":{"type":"array","items":"string"}},
	{"name":"attrs","type":{"type":"map","values":"long"}},
	{"name":"level","type":{"type":"enum","name":"Level","symbols":["LOW","HIGH"]}},
	{"name":"hash","type":{"type":"fixed","name":"Hash4","size":4}},
	{"name":"choice","type":["int","string"]},
	{"name":"extra","type":["null",{"type":"record","name":"Extra","fields":[{"name":"a","type":"int"},{"name":"b","type":"bytes"}]}],"default":null},
	{"name":"ratio","type":"float"},`
	return strings.Replace(string(schemas.RawEventSchemaJSON()), `"fields": [`, `"fields": [`+extra, 1)
}

func kitchenSinkNative(ev producer.Event) map[string]any {
	return ev.Native(map[string]any{
		"tags": []any{"a", "bb"}, "attrs": map[string]any{"x": int64(1), "y": int64(-7)},
		"level": "HIGH", "hash": []byte{1, 2, 3, 4}, "choice": goavro.Union("string", "s"),
		"extra": goavro.Union("privacy.raw.Extra", map[string]any{"a": int32(5), "b": []byte{9}}),
		"ratio": float32(0.5),
	})
}

func TestCompiledMatchesGoavro(t *testing.T) {
	d, _ := newDecoder(t)
	ks := kitchenSink()
	if _, err := d.Register([]byte(ks)); err != nil {
		t.Fatal(err)
	}
	enc, _ := producer.NewEncoder()
	encKS, _ := producer.NewEncoderFor([]byte(ks))
	gen := synth.New(5, 200, now)
	for i := 0; i < 300; i++ {
		ev := gen.Event(i)
		if i%3 == 0 {
			ev.Address, ev.Location, ev.BirthDate, ev.Email = nil, nil, nil, ""
		}
		a, _ := enc.AppendEncoded(nil, &ev)
		b, err := encKS.AppendNative(nil, kitchenSinkNative(ev))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := synth.Malformed(i, enc, now)
		for _, in := range [][]byte{a, b, m} {
			compareDecoders(t, d, in)
		}
	}
}

func compareDecoders(t *testing.T, d *Decoder, in []byte) {
	t.Helper()
	var got, want Event
	if d.Decode(in, &got) != OK {
		// Stricter than goavro is allowed (e.g. NaN in an unclassified
		// double). goavro is not asked: on hostile block counts it can
		// spend seconds allocating (seen: 7.9 s on a 60-byte input that the
		// compiled decoder rejects in 4 us).
		return
	}
	if rw := d.decodeWithGoavro(in, &want); rw != OK {
		if d.goavroRejectsDuplicateMapKey(in) {
			return // maps are never classified: they are skipped, not checked for duplicate keys
		}
		t.Fatalf("compiled decoder accepts what goavro rejects (%s): %x", rw, in)
	}
	if got.Unclassified != want.Unclassified {
		t.Fatalf("unclassified %d, goavro %d", got.Unclassified, want.Unclassified)
	}
	if !reflect.DeepEqual(got.Values, want.Values) {
		for i := range got.Values {
			if got.Values[i] != want.Values[i] {
				t.Fatalf("field %d: compiled %+v goavro %+v", i, got.Values[i], want.Values[i])
			}
		}
	}
}

// FuzzCompiledVsGoavro checks, on arbitrary bodies behind valid
// single-object headers, that the compiled decoder never accepts what goavro
// rejects and agrees with it on every accepted record.
func FuzzCompiledVsGoavro(f *testing.F) {
	d, _ := newDecoder(f)
	ks := kitchenSink()
	fpKS, err := d.Register([]byte(ks))
	if err != nil {
		f.Fatal(err)
	}
	enc, _ := producer.NewEncoder()
	encKS, _ := producer.NewEncoderFor([]byte(ks))
	gen := synth.New(11, 20, now)
	for i := 0; i < 6; i++ {
		ev := gen.Event(i)
		a, _ := enc.AppendEncoded(nil, &ev)
		b, _ := encKS.AppendNative(nil, kitchenSinkNative(ev))
		f.Add(a[10:], false)
		f.Add(b[10:], true)
	}
	hdr := func(fp uint64) []byte {
		h := []byte{0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
		for i := 0; i < 8; i++ {
			h[2+i] = byte(fp >> (8 * i))
		}
		return h
	}
	hRaw, hKS := hdr(enc.Fingerprint()), hdr(fpKS)
	// The same writer schemas under registry ids: the Confluent framing
	// must decode a body exactly as the single-object framing does.
	if _, err := d.RegisterID(1, schemas.RawEventSchemaJSON()); err != nil {
		f.Fatal(err)
	}
	if _, err := d.RegisterID(2, []byte(ks)); err != nil {
		f.Fatal(err)
	}
	cRaw, cKS := wireformat.AppendConfluent(nil, 1), wireformat.AppendConfluent(nil, 2)
	f.Fuzz(func(t *testing.T, body []byte, sink bool) {
		h, c := hRaw, cRaw
		if sink {
			h, c = hKS, cKS
		}
		compareDecoders(t, d, append(append([]byte{}, h...), body...))
		compareDecoders(t, d, append(append([]byte{}, c...), body...))
	})
}
