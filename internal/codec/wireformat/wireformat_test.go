package wireformat

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/linkedin/goavro/v2"
	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// TestConfluentHeaderIsConfluents checks the header byte for byte against
// Confluent's documented layout: magic 0, then the id as a big-endian int32.
func TestConfluentHeaderIsConfluents(t *testing.T) {
	got := AppendConfluent([]byte("x"), 0x01020304)
	if want := []byte{'x', 0, 1, 2, 3, 4}; !bytes.Equal(got, want) {
		t.Fatalf("AppendConfluent = % x, want % x", got, want)
	}
	h, ok := Parse(got[1:])
	if !ok || h.Format != Confluent || h.ID != 0x01020304 || h.Len() != 5 || h.String() != "id 16909060" {
		t.Fatalf("Parse = %+v %v", h, ok)
	}
}

func TestSingleObjectHeader(t *testing.T) {
	fp := avroschema.MustFingerprint(schemas.RawEventSchemaJSON())
	got := AppendSingleObject(nil, fp)
	if got[0] != 0xC3 || got[1] != 0x01 || binary.LittleEndian.Uint64(got[2:]) != fp {
		t.Fatalf("AppendSingleObject = % x", got)
	}
	h, ok := Parse(append(got, 1, 2, 3))
	if !ok || h.Format != SingleObject || h.Fingerprint != fp || h.Len() != 10 {
		t.Fatalf("Parse = %+v %v", h, ok)
	}
	fr, err := SingleObjectFramer{}.Frame("any", schemas.RawEventSchemaJSON())
	if err != nil || !bytes.Equal(fr, got) {
		t.Fatalf("SingleObjectFramer = % x %v, want % x", fr, err, got)
	}
	if _, err := (SingleObjectFramer{}).Frame("t", []byte("{")); err == nil {
		t.Fatal("SingleObjectFramer accepted an invalid schema")
	}
}

// TestGoavroReadsOurSingleObject: goavro's own single-object decoder
// accepts the header (for a schema without logical types goavro's
// fingerprint is the specification's).
func TestGoavroReadsOurSingleObject(t *testing.T) {
	c, err := goavro.NewCodec(`{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := c.BinaryFromNative(nil, map[string]any{"s": "x"})
	if _, _, err := c.NativeFromSingle(append(AppendSingleObject(nil, c.Rabin), body...)); err != nil {
		t.Fatalf("goavro rejects our single-object header: %v", err)
	}
}

// TestParseRefusesUnframed: plain Avro, a truncated header, another marker.
func TestParseRefusesUnframed(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {0, 1, 2, 3}, {0xC3}, {0xC3, 0x01, 1, 2}, {0xC3, 0x02, 1, 2, 3, 4, 5, 6, 7, 8}, {2, 'a'}, {1, 0, 0, 0, 1}} {
		if h, ok := Parse(b); ok {
			t.Errorf("Parse(% x) = %+v, want not framed", b, h)
		}
	}
}

func TestFormatNames(t *testing.T) {
	for _, f := range []Format{Confluent, SingleObject} {
		g, err := ParseFormat(f.String())
		if err != nil || g != f {
			t.Errorf("ParseFormat(%q) = %v %v", f, g, err)
		}
	}
	if _, err := ParseFormat("avro"); err == nil {
		t.Error("ParseFormat accepted avro")
	}
	if TopicSubject("clean.analytics.customer-events") != "clean.analytics.customer-events-value" {
		t.Error("TopicSubject is not TopicNameStrategy")
	}
}

// FuzzParse: Parse never panics, and what it accepts re-encodes to the
// same header bytes.
func FuzzParse(f *testing.F) {
	f.Add(AppendConfluent(nil, 7))
	f.Add(AppendSingleObject(nil, 42))
	f.Add([]byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := Parse(b)
		if !ok {
			return
		}
		var re []byte
		if h.Format == Confluent {
			re = AppendConfluent(nil, h.ID)
		} else {
			re = AppendSingleObject(nil, h.Fingerprint)
		}
		if !bytes.Equal(re, b[:h.Len()]) {
			t.Fatalf("Parse(% x) = %+v, re-encoded % x", b, h, re)
		}
	})
}
