package avrosingle

import (
	"errors"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
)

const schema = `{"type":"record","name":"r","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"s","type":"string"}]}`

func TestSpecFingerprintAndLegacy(t *testing.T) {
	c, err := NewCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rabin != avroschema.MustFingerprint([]byte(schema)) || c.Rabin == c.LegacyRabin || c.LegacyRabin != c.Codec.Rabin {
		t.Fatalf("Rabin %016x LegacyRabin %016x goavro %016x", c.Rabin, c.LegacyRabin, c.Codec.Rabin)
	}
	datum := map[string]any{"t": int64(1700000000000), "s": "x"}
	b, err := c.SingleFromNative([]byte("prefix"), datum)
	if err != nil {
		t.Fatal(err)
	}
	b = b[len("prefix"):]
	if n, rest, err := c.NativeFromSingle(b); err != nil || len(rest) != 0 || n.(map[string]any)["s"] != "x" {
		t.Fatalf("NativeFromSingle: %v %v %v", n, rest, err)
	}
	if _, _, legacy, err := c.NativeFromSingleOrLegacy(b); err != nil || legacy {
		t.Fatalf("spec record: legacy %v, %v", legacy, err)
	}
	// goavro's own encoding carries the legacy fingerprint.
	old, err := c.Codec.SingleFromNative(nil, datum)
	if err != nil {
		t.Fatal(err)
	}
	var wrong goavro.ErrWrongCodec
	if _, _, err := c.NativeFromSingle(old); !errors.As(err, &wrong) || uint64(wrong) != c.LegacyRabin {
		t.Fatalf("legacy record through NativeFromSingle: %v", err)
	}
	if n, _, legacy, err := c.NativeFromSingleOrLegacy(old); err != nil || !legacy || n.(map[string]any)["s"] != "x" {
		t.Fatalf("legacy record: %v %v %v", n, legacy, err)
	}
	if _, _, _, err := c.NativeFromSingleOrLegacy([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 2}); !errors.As(err, &wrong) {
		t.Fatalf("unknown fingerprint: %v", err)
	}
	var notSOE goavro.ErrNotSingleObjectEncoded
	if _, _, err := c.NativeFromSingle([]byte{1, 2}); !errors.As(err, &notSOE) {
		t.Fatalf("short record: %v", err)
	}
}
