// Package avrosingle is goavro with the Avro specification's single-object
// fingerprint. goavro's own single-object encoding (Codec.SingleFromNative,
// Codec.NativeFromSingle) uses goavro's fingerprint, which is not the
// specification's for schemas with a logical type (goavro issue 174); a
// Codec here encodes with goavro's BinaryFromNative behind a header carrying
// the fingerprint of internal/codec/avroschema, and decodes such records.
//
// It is for the places that use goavro as their codec (the producer library,
// the consent log, test rigs and tests); the hot paths write with
// internal/codec/avroenc and read with their compiled decoders.
//
// It imports goavro, internal/codec/avroschema and internal/codec/wireformat.
package avrosingle

import (
	"encoding/binary"
	"fmt"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
)

// Codec is a goavro codec whose single-object encoding carries the
// specification's fingerprint. The embedded goavro codec still serves
// everything else (BinaryFromNative, NativeFromBinary, Schema, ...). It is
// safe for concurrent use.
type Codec struct {
	*goavro.Codec
	// Rabin is the schema's CRC-64-AVRO fingerprint as the specification
	// defines it (avroschema.Fingerprint). It shadows goavro's Codec.Rabin,
	// which is LegacyRabin.
	Rabin uint64
	// LegacyRabin is goavro's fingerprint of the schema, which records
	// written before the pipeline used the specification's carry. It equals
	// Rabin for schemas without a logical type.
	LegacyRabin uint64
}

// NewCodec parses a schema with goavro and computes its fingerprints.
func NewCodec(schemaJSON string) (*Codec, error) {
	c, err := goavro.NewCodec(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("avrosingle: %w", err)
	}
	return Wrap(c, []byte(schemaJSON))
}

// Wrap gives an existing goavro codec of schemaJSON (e.g. one made by
// goavro.NewCodecForStandardJSONFull) the specification's single-object
// fingerprint.
func Wrap(c *goavro.Codec, schemaJSON []byte) (*Codec, error) {
	fp, err := avroschema.Fingerprint(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("avrosingle: %w", err)
	}
	return &Codec{Codec: c, Rabin: fp, LegacyRabin: c.Rabin}, nil
}

// SingleFromNative appends the single-object encoding of datum to buf: the
// marker C3 01, the little-endian specification fingerprint, then the Avro
// binary encoding. On error buf is returned unchanged.
func (c *Codec) SingleFromNative(buf []byte, datum any) ([]byte, error) {
	out, err := c.BinaryFromNative(wireformat.AppendSingleObject(buf, c.Rabin), datum)
	if err != nil {
		return buf, fmt.Errorf("avrosingle: %w", err)
	}
	return out, nil
}

// NativeFromSingle decodes a single-object record written with this schema
// and the specification's fingerprint, returning the datum and the bytes
// after it. A record with another fingerprint fails with
// goavro.ErrWrongCodec, as goavro's own method does.
func (c *Codec) NativeFromSingle(buf []byte) (any, []byte, error) {
	native, rest, _, err := c.decode(buf, false)
	return native, rest, err
}

// NativeFromSingleOrLegacy is NativeFromSingle that also accepts records
// carrying LegacyRabin (goavro's fingerprint, written before the pipeline
// used the specification's); legacy reports that it did.
func (c *Codec) NativeFromSingleOrLegacy(buf []byte) (native any, rest []byte, legacy bool, err error) {
	return c.decode(buf, true)
}

func (c *Codec) decode(buf []byte, acceptLegacy bool) (any, []byte, bool, error) {
	if len(buf) < 10 || buf[0] != wireformat.SingleObjectMagic[0] || buf[1] != wireformat.SingleObjectMagic[1] {
		return nil, buf, false, fmt.Errorf("avrosingle: %w", goavro.ErrNotSingleObjectEncoded("no single-object header"))
	}
	fp := binary.LittleEndian.Uint64(buf[2:10])
	legacy := false
	if fp != c.Rabin {
		if !acceptLegacy || fp != c.LegacyRabin {
			return nil, buf, false, fmt.Errorf("avrosingle: %w", goavro.ErrWrongCodec(fp))
		}
		legacy = true
	}
	native, rest, err := c.NativeFromBinary(buf[10:])
	if err != nil {
		return nil, buf, false, fmt.Errorf("avrosingle: %w", err)
	}
	return native, rest, legacy, nil
}

// NativeFromFramed decodes a record in either framing (package wireformat):
// single-object with this schema's fingerprint, or the Confluent wire
// format with any registry id, whose schema the caller vouches is this
// codec's (a rig or test reading a topic whose writer schema it knows; a
// consumer that does not know it resolves the id in the registry). It
// returns the datum and the header.
func (c *Codec) NativeFromFramed(buf []byte) (any, wireformat.Header, error) {
	h, ok := wireformat.Parse(buf)
	if !ok {
		return nil, h, fmt.Errorf("avrosingle: %w", goavro.ErrNotSingleObjectEncoded("neither a Confluent nor a single-object header"))
	}
	if h.Format == wireformat.SingleObject {
		native, _, err := c.NativeFromSingle(buf)
		return native, h, err
	}
	native, rest, err := c.NativeFromBinary(buf[h.Len():])
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%d trailing bytes", len(rest))
	}
	if err != nil {
		return nil, h, fmt.Errorf("avrosingle: %w", err)
	}
	return native, h, nil
}
