package privacy_test

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// A raw record with goavro's legacy fingerprint is decoded like one with the
// specification's and counted in pipeline_legacy_fingerprint_total; one with
// an unknown fingerprint is quarantined unknown_schema as before. Clean
// records carry the specification's fingerprint of the checked-in clean
// schema, in the single-object header and in the pp-schema header.
func TestLegacyRawFingerprintCountedAndCleanFingerprintsStandard(t *testing.T) {
	h := newHarness(t)
	gen := synth.New(1, 10, h.now)
	evSpec, evLegacy := gen.EventFor(1, 1), gen.EventFor(2, 2)
	h.grantAll(t, evSpec.SubjectID, consent.GDPR)
	h.grantAll(t, evLegacy.SubjectID, consent.GDPR)
	spec := h.record(t, evSpec)
	c, err := goavro.NewCodec(string(schemas.RawEventSchemaJSON()))
	if err != nil {
		t.Fatal(err)
	}
	legacyBytes, err := c.SingleFromNative(nil, evLegacy.Native(nil))
	if err != nil {
		t.Fatal(err)
	}
	legacy := processors.Record{Topic: "raw.customer-events", Value: legacyBytes, Key: []byte(evLegacy.SubjectID)}
	unknown := h.record(t, evSpec)
	unknown.Value[5] ^= 0x5a

	out := h.process(t, spec, legacy, unknown)
	tally, err := privacy.ReadTally(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	if tally.EventsIn != 3 || tally.LegacyFingerprint != 1 || tally.Quarantined["unknown_schema"] != 1 || tally.QuarantinedTotal() != 1 {
		t.Fatalf("tally %+v: want 3 in, 1 legacy, 1 unknown_schema", tally)
	}
	if err := tally.Check(); err != nil {
		t.Fatal(err)
	}
	published := map[int]int{}
	for _, o := range out.Outputs {
		p, ok := topicPurpose(o.Topic)
		if !ok {
			continue
		}
		published[o.Input]++
		js, err := schemas.CleanSchemaJSON(p.String())
		if err != nil {
			t.Fatal(err)
		}
		want := avroschema.MustFingerprint(js)
		if got := binary.LittleEndian.Uint64(o.Value[2:10]); got != want {
			t.Fatalf("%s: record fingerprint %016x, want %016x", o.Topic, got, want)
		}
		if fp := h.pp.Processor.CleanFingerprint(p); fp != want {
			t.Fatalf("%s: CleanFingerprint %016x, want %016x", p, fp, want)
		}
		for _, hd := range o.Headers {
			if hd.Key == processors.HeaderSchema {
				if w := "privacy.clean." + p.String() + ".CustomerEvent@" + strconv.FormatUint(want, 16); string(hd.Value) != w {
					t.Fatalf("%s header %q, want %q", hd.Key, hd.Value, w)
				}
			}
		}
		decodeClean(t, p, o.Value)
	}
	if published[0] != purpose.Count || published[1] != purpose.Count {
		t.Fatalf("clean records per input %v, want %d for the spec and the legacy record", published, purpose.Count)
	}
}
