// Package wireformat frames Avro records on Kafka. Two framings exist
// (SPEC section 3a):
//
//   - the Confluent Schema Registry wire format: magic byte 0, then the
//     writer schema's registry id as a 4-byte big-endian integer, then the
//     Avro binary body. It is what Confluent's serializers, Spark, Flink,
//     ksqlDB, kcat and Kafka Connect read and write, and the default of
//     every output topic;
//   - Avro single-object encoding: the marker C3 01, then the little-endian
//     CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form
//     (package avroschema), then the body. It needs no registry.
//
// Decoders call Parse to learn which writer schema a record names; the
// raw input accepts both framings. Writers get the bytes that start every
// record of a topic from a Framer; SingleObject needs nothing, the
// registry's framer (internal/registry) registers the schema. A Resolver
// finds a writer schema by registry id.
//
// It imports only the standard library and package avroschema.
package wireformat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
)

// Format is a framing.
type Format uint8

// The framings. The zero Format is not one.
const (
	// Confluent is the Confluent Schema Registry wire format.
	Confluent Format = iota + 1
	// SingleObject is Avro single-object encoding.
	SingleObject
)

// String returns the name used in configuration (PIPELINE_WIRE_FORMAT).
func (f Format) String() string {
	switch f {
	case Confluent:
		return "confluent"
	case SingleObject:
		return "single-object"
	}
	return fmt.Sprintf("wireformat(%d)", uint8(f))
}

// ParseFormat parses a configured framing name.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "confluent":
		return Confluent, nil
	case "single-object":
		return SingleObject, nil
	}
	return 0, fmt.Errorf("wireformat: unknown wire format %q (want confluent or single-object)", s)
}

// Header lengths.
const (
	// ConfluentHeaderLen is magic byte 0 and the 4-byte schema id.
	ConfluentHeaderLen = 5
	// SingleObjectHeaderLen is the marker C3 01 and the 8-byte fingerprint.
	SingleObjectHeaderLen = 10
)

// ConfluentMagic is the first byte of a Confluent-framed record.
const ConfluentMagic byte = 0

// SingleObjectMagic is the two-byte marker of single-object encoding.
var SingleObjectMagic = [2]byte{0xC3, 0x01}

// AppendConfluent appends magic byte 0 and the big-endian schema id.
func AppendConfluent(dst []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, ConfluentMagic), id)
}

// AppendSingleObject appends the single-object marker and the
// little-endian fingerprint.
func AppendSingleObject(dst []byte, fingerprint uint64) []byte {
	return binary.LittleEndian.AppendUint64(append(dst, SingleObjectMagic[0], SingleObjectMagic[1]), fingerprint)
}

// Header is the framing of one record: which writer schema it names.
type Header struct {
	// Format is the framing.
	Format Format
	// ID is the registry schema id (Confluent).
	ID uint32
	// Fingerprint is the writer schema's fingerprint (SingleObject).
	Fingerprint uint64
}

// Len returns the header's length in bytes.
func (h Header) Len() int {
	if h.Format == Confluent {
		return ConfluentHeaderLen
	}
	return SingleObjectHeaderLen
}

// String names the writer schema for logs and errors ("id 7",
// "fingerprint 5643d3a87d13e168").
func (h Header) String() string {
	if h.Format == Confluent {
		return fmt.Sprintf("id %d", h.ID)
	}
	return fmt.Sprintf("fingerprint %016x", h.Fingerprint)
}

// Parse reads the header at the start of b. ok is false when b starts
// with neither framing or is shorter than its header.
func Parse(b []byte) (h Header, ok bool) {
	switch {
	case len(b) >= ConfluentHeaderLen && b[0] == ConfluentMagic:
		return Header{Format: Confluent, ID: binary.BigEndian.Uint32(b[1:5])}, true
	case len(b) >= SingleObjectHeaderLen && b[0] == SingleObjectMagic[0] && b[1] == SingleObjectMagic[1]:
		return Header{Format: SingleObject, Fingerprint: binary.LittleEndian.Uint64(b[2:10])}, true
	}
	return Header{}, false
}

// Framer gives the header that starts every record written to a topic with
// a schema. It is asked once per topic and schema, when a processor is
// built; a registry's framer may register the schema then.
type Framer interface {
	Frame(topic string, schemaJSON []byte) ([]byte, error)
}

// SingleObjectFramer frames with single-object encoding: the header is the
// schema's fingerprint, whatever the topic.
type SingleObjectFramer struct{}

// Frame implements Framer.
func (SingleObjectFramer) Frame(_ string, schemaJSON []byte) ([]byte, error) {
	fp, err := avroschema.Fingerprint(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("wireformat: %w", err)
	}
	return AppendSingleObject(nil, fp), nil
}

// ErrUnknownID is returned (wrapped) by a Resolver for an id the registry
// does not have: a definite answer, unlike a registry that cannot be
// reached.
var ErrUnknownID = errors.New("wireformat: the schema registry has no schema with this id")

// Resolver finds a writer schema by registry id. It returns the schema's
// JSON, an error wrapping ErrUnknownID when the registry has no such id, or
// another error when the registry cannot answer (the caller waits and
// retries: it must not treat the record as bad).
type Resolver interface {
	SchemaByID(ctx context.Context, id uint32) ([]byte, error)
}

// TopicSubject returns the TopicNameStrategy subject of a topic's record
// values: "<topic>-value".
func TopicSubject(topic string) string { return topic + "-value" }
