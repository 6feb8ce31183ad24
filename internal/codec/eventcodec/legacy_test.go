package eventcodec

import (
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// The raw schema's fingerprint as Java Avro and fastavro compute it
// (issue 13), and goavro's, which records written before carry.
const (
	rawSpecFP   uint64 = 0x5643d3a87d13e168
	rawLegacyFP uint64 = 0x6339edbd076e7d35
)

// A record with the specification's fingerprint decodes and is not marked;
// one with the legacy (goavro) fingerprint decodes and is marked; an unknown
// one is unknown_schema, as before.
func TestLegacyFingerprintAccepted(t *testing.T) {
	d, raw := newDecoder(t)
	if fp := avroschema.MustFingerprint(schemas.RawEventSchemaJSON()); fp != rawSpecFP {
		t.Fatalf("raw schema fingerprint %016x, want %016x", fp, rawSpecFP)
	}
	c, err := goavro.NewCodec(string(schemas.RawEventSchemaJSON()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rabin != rawLegacyFP {
		t.Fatalf("goavro fingerprint %016x, want %016x", c.Rabin, rawLegacyFP)
	}
	enc, err := producer.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	ev := synth.New(1, 100, now).EventFor(1, 42)
	spec, err := enc.AppendEncoded(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := wireformat.Parse(spec); h.Fingerprint != rawSpecFP {
		t.Fatalf("producer writes %016x, want the specification's %016x", h.Fingerprint, rawSpecFP)
	}
	legacy, err := c.SingleFromNative(nil, ev.Native(nil)) // goavro's own header: the old fingerprint
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := wireformat.Parse(legacy); h.Fingerprint != rawLegacyFP {
		t.Fatalf("legacy record has %016x", h.Fingerprint)
	}
	unknown := append([]byte(nil), spec...)
	unknown[2] ^= 0xff

	var out Event
	if r := d.Decode(legacy, &out); r != OK || !out.LegacyFingerprint || out.Header.Fingerprint != rawLegacyFP {
		t.Fatalf("legacy record: %s, legacy %v, fingerprint %016x", r, out.LegacyFingerprint, out.Header.Fingerprint)
	}
	if got := out.Values[raw.Index("subject_id")].Str; got != ev.SubjectID {
		t.Fatalf("legacy record: subject %q", got)
	}
	if r := d.Decode(spec, &out); r != OK || out.LegacyFingerprint || out.Header.Fingerprint != rawSpecFP {
		t.Fatalf("spec record: %s, legacy %v (the flag must be reset)", r, out.LegacyFingerprint)
	}
	if r := d.Decode(unknown, &out); r != UnknownSchema || out.LegacyFingerprint {
		t.Fatalf("unknown fingerprint: %s, legacy %v", r, out.LegacyFingerprint)
	}
}
