// Package cleancodec decodes the records of the clean topics
// (clean.<purpose>.customer-events) for downstream processors, such as the
// k-anonymity processors.
//
// Clean records are framed as processors/privacy writes them (package
// wireformat): in the Confluent Schema Registry wire format (magic 0, the
// writer schema's registry id), the default, or Avro single-object encoded
// (the marker C3 01, the little-endian CRC-64-AVRO fingerprint of the writer
// schema's Parsing Canonical Form, package internal/codec/avroschema), then
// the Avro binary body. A Decoder is built from one reader schema (normally
// schemas.CleanSchemaJSON(purpose)) and knows any number of writer schemas by
// fingerprint (the reader schema itself, also under the legacy goavro
// fingerprint that records written before the pipeline used the
// specification's carry, and e.g. older versions of the same purpose's
// schema) and by registry id (RegisterID; the caller resolves ids it does
// not know before decoding, processors/kit/writers). Writer fields are mapped onto the reader's fields by name,
// following Avro schema resolution: a reader field that the writer lacks is
// not Present, an extra writer field is skipped, and the Avro promotions
// (int to long, float or double; long to float or double; float to double;
// string to bytes and back) apply.
//
// Only the shape of the clean schemas is supported: a record whose every
// field is a union ["null", T], T one of string, bytes, int, long (optionally
// with logicalType timestamp-millis), float, double and boolean. Any other
// schema is rejected when the Decoder is built, with ErrUnsupportedSchema.
//
// Decoding is compiled, allocation-free and bounded: each field costs at most
// a few bytes of varint and one length check, so hostile input costs time
// linear in its length. Bad input returns a *DecodeError that wraps a
// sentinel error (ErrNotFramed, ErrUnknownSchema, ErrTruncated,
// ErrBadLength, ErrBadVarint, ErrBadUnion, ErrBadValue, ErrInvalidUTF8 or
// ErrTrailingBytes); never a panic. String and bytes values alias the input
// record (see Value).
//
// It imports the standard library, package schemas, internal/codec/wireformat,
// internal/codec/avroschema (the fingerprints) and internal/codec/avrosingle
// (the legacy fingerprint, computed by goavro when a Decoder is built; goavro
// decodes nothing here: it is the tests' reference codec).
package cleancodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Errors of schema construction. They are wrapped with details.
var (
	// ErrUnsupportedSchema: the schema is not JSON, or not a record whose
	// every field is a ["null", T] union of a supported primitive.
	ErrUnsupportedSchema = errors.New("cleancodec: unsupported schema")
	// ErrIncompatibleSchema: a writer schema does not resolve to the reader
	// schema (different record name, or a field whose type cannot be promoted).
	ErrIncompatibleSchema = errors.New("cleancodec: writer schema incompatible with the reader schema")
)

// Errors of Decode, wrapped in a *DecodeError. Every one but
// ErrNotFramed and ErrUnknownSchema also matches ErrMalformed with
// errors.Is.
var (
	// ErrNotFramed: the record starts with neither framing's header.
	ErrNotFramed = errors.New("cleancodec: not a framed Avro record (neither Confluent magic 0 and schema id nor single-object C3 01 and fingerprint)")
	// ErrUnknownSchema: no registered writer schema has the record's
	// fingerprint or registry id.
	ErrUnknownSchema = errors.New("cleancodec: unknown writer schema")
	// ErrMalformed matches every error about a record's header or body
	// being malformed; it is never returned itself.
	ErrMalformed = errors.New("cleancodec: malformed record")
	// ErrTruncated: the record ends inside its header or a value.
	ErrTruncated = errors.New("cleancodec: record truncated")
	// ErrBadLength: a string or bytes length is negative or runs past the
	// end of the record.
	ErrBadLength = errors.New("cleancodec: invalid length")
	// ErrBadVarint: a varint is longer than ten bytes or overflows 64 bits.
	ErrBadVarint = errors.New("cleancodec: invalid varint")
	// ErrBadUnion: a union branch index other than 0 (null) or 1.
	ErrBadUnion = errors.New("cleancodec: invalid union branch index")
	// ErrBadValue: a boolean byte other than 0 or 1, or an int outside 32 bits.
	ErrBadValue = errors.New("cleancodec: invalid value")
	// ErrInvalidUTF8: a string value is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("cleancodec: string is not valid UTF-8")
	// ErrTrailingBytes: bytes remain after the last field.
	ErrTrailingBytes = errors.New("cleancodec: trailing bytes after the record")
)

// DecodeError describes why a record could not be decoded. Err is one of
// the Decode sentinel errors.
type DecodeError struct {
	// Err is the sentinel error: ErrNotFramed, ErrUnknownSchema,
	// ErrTruncated, ErrBadLength, ErrBadVarint, ErrBadUnion, ErrBadValue,
	// ErrInvalidUTF8 or ErrTrailingBytes.
	Err error
	// Writer names the record's writer schema, when its header was read.
	Writer wireformat.Header
	// Field is the writer field being decoded, or "" for header and trailing errors.
	Field string
	// Offset is the byte offset in the record where the failing item starts.
	Offset int
}

// Error returns a description with the field and offset.
func (e *DecodeError) Error() string {
	switch {
	case e.Field != "":
		return fmt.Sprintf("%v (field %q, offset %d, writer schema %s)", e.Err, e.Field, e.Offset, e.Writer)
	case errors.Is(e.Err, ErrUnknownSchema):
		return fmt.Sprintf("%v (%s)", e.Err, e.Writer)
	default:
		return fmt.Sprintf("%v (offset %d)", e.Err, e.Offset)
	}
}

// Unwrap returns the sentinel error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is makes every malformed-record error match ErrMalformed.
func (e *DecodeError) Is(target error) bool {
	return target == ErrMalformed && e.Err != ErrNotFramed && e.Err != ErrUnknownSchema
}

// Value is one decoded field value. Which of Bytes, Num and F holds it
// depends on the reader field's Type:
//   - TypeString, TypeBytes: Bytes;
//   - TypeInt, TypeLong, TypeTimestampMillis (ms since the Unix epoch, UTC),
//     TypeBoolean (0 or 1): Num;
//   - TypeFloat, TypeDouble: F.
type Value struct {
	// Present is false when the value is null or the writer schema lacks the field.
	Present bool
	// Bytes aliases the record passed to Decode (never copied): it is valid
	// while that record's bytes are unchanged. Its capacity is capped at its
	// length, so appending to it never writes into the record. A string is
	// valid UTF-8. Convert with string(v.Bytes) when a string must outlive
	// the record; map lookups m[string(v.Bytes)] do not allocate.
	Bytes []byte
	// Num holds integers, timestamps and booleans.
	Num int64
	// F holds floats (widened exactly from float32) and doubles. NaN and
	// infinities are passed through as written.
	F float64
}

// Str returns the string or bytes value as a new string (it allocates; see
// Bytes for allocation-free uses).
func (v Value) Str() string { return string(v.Bytes) }

// Bool returns a boolean value.
func (v Value) Bool() bool { return v.Num != 0 }

// Record is one decoded clean record. Reuse one Record across Decode calls
// to decode without allocating.
type Record struct {
	// Values is indexed like the Decoder's Fields (use Decoder.Field).
	Values []Value
	// Writer names the writer schema (its fingerprint or registry id).
	Writer wireformat.Header
}

// Decoder decodes clean records into the fields of its reader schema. It is
// safe for concurrent use, including Register during Decode.
type Decoder struct {
	name    string // the reader record's short name
	fields  []Field
	index   map[string]int
	readFP  uint64
	readPln *plan

	mu      sync.Mutex                       // serialises Register and RegisterID
	writers atomic.Pointer[map[uint64]*plan] // by fingerprint
	ids     atomic.Pointer[map[uint32]*plan] // by registry id
}

// plan decodes one writer schema's body into the reader's slots.
type plan struct {
	ops []op
}

// op decodes one writer field.
type op struct {
	wt   Type   // the writer's type: how the value is encoded
	rt   Type   // the reader's type, when slot >= 0
	slot int    // reader field index, or -1 to skip
	name string // writer field name, for errors
}

// New returns a Decoder for the reader schema readerSchemaJSON, knowing the
// reader schema itself and the given writer schemas (e.g. older versions of
// the same purpose's schema) by fingerprint.
func New(readerSchemaJSON []byte, writerSchemaJSON ...[]byte) (*Decoder, error) {
	s, err := parseSchema(readerSchemaJSON)
	if err != nil {
		return nil, fmt.Errorf("cleancodec: reader schema: %w", err)
	}
	d := &Decoder{name: s.shortName, fields: s.fields, index: make(map[string]int, len(s.fields))}
	for i, f := range s.fields {
		d.index[f.Name] = i
	}
	d.readFP = s.fingerprint
	d.readPln, err = d.compile(s)
	if err != nil {
		return nil, err // cannot happen: a schema resolves to itself
	}
	m := map[uint64]*plan{d.readFP: d.readPln}
	if legacy, err := avrosingle.NewCodec(string(readerSchemaJSON)); err == nil && legacy.LegacyRabin != d.readFP {
		m[legacy.LegacyRabin] = d.readPln // records written before the specification's fingerprint
	}
	d.writers.Store(&m)
	ids := map[uint32]*plan{}
	d.ids.Store(&ids)
	for i, w := range writerSchemaJSON {
		if _, err := d.Register(w); err != nil {
			return nil, fmt.Errorf("cleancodec: writer schema #%d: %w", i, err)
		}
	}
	return d, nil
}

// NewForPurpose returns a Decoder for the checked-in clean schema of a
// purpose (its wire name, e.g. "analytics"), plus the given writer schemas.
func NewForPurpose(purpose string, writerSchemaJSON ...[]byte) (*Decoder, error) {
	b, err := schemas.CleanSchemaJSON(purpose)
	if err != nil {
		return nil, fmt.Errorf("cleancodec: %w", err)
	}
	return New(b, writerSchemaJSON...)
}

// Register adds a writer schema and returns its fingerprint. Its record must
// have the reader's (unqualified) name, and each field that the reader also
// has must have the same type or one that Avro promotes to the reader's.
// Registering a known schema again is a no-op.
func (d *Decoder) Register(writerSchemaJSON []byte) (uint64, error) {
	s, err := parseSchema(writerSchemaJSON)
	if err != nil {
		return 0, err
	}
	fp := s.fingerprint
	p, err := d.compile(s)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.writers.Load()
	if _, ok := old[fp]; ok {
		return fp, nil
	}
	m := make(map[uint64]*plan, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[fp] = p
	d.writers.Store(&m)
	return fp, nil
}

// RegisterID adds a writer schema under its schema registry id, with the
// checks of Register, and returns its fingerprint. Registering an id again
// replaces nothing: the first schema stays (a registry never reuses an id).
func (d *Decoder) RegisterID(id uint32, writerSchemaJSON []byte) (uint64, error) {
	s, err := parseSchema(writerSchemaJSON)
	if err != nil {
		return 0, err
	}
	p, err := d.compile(s)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.ids.Load()
	if _, ok := old[id]; ok {
		return s.fingerprint, nil
	}
	m := make(map[uint32]*plan, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[id] = p
	d.ids.Store(&m)
	return s.fingerprint, nil
}

// KnownID reports whether a writer schema is registered under this id.
func (d *Decoder) KnownID(id uint32) bool {
	_, ok := (*d.ids.Load())[id]
	return ok
}

// compile resolves a writer schema against the reader's fields.
func (d *Decoder) compile(w *schema) (*plan, error) {
	if w.shortName != d.name {
		return nil, fmt.Errorf("%w: writer record %s, reader record %s", ErrIncompatibleSchema, w.shortName, d.name)
	}
	p := &plan{ops: make([]op, len(w.fields))}
	for i, f := range w.fields {
		o := op{wt: f.Type, slot: -1, name: f.Name}
		if j, ok := d.index[f.Name]; ok {
			rt := d.fields[j].Type
			if !promotable(f.Type, rt) {
				return nil, fmt.Errorf("%w: field %q is %s in the writer, %s in the reader", ErrIncompatibleSchema, f.Name, f.Type, rt)
			}
			o.slot, o.rt = j, rt
		}
		p.ops[i] = o
	}
	return p, nil
}

// promotable reports whether Avro schema resolution reads a writer value of
// type w as type r. Logical types resolve by their underlying type.
func promotable(w, r Type) bool {
	base := func(t Type) Type {
		if t == TypeTimestampMillis {
			return TypeLong
		}
		return t
	}
	w, r = base(w), base(r)
	switch {
	case w == r:
		return true
	case w == TypeInt:
		return r == TypeLong || r == TypeFloat || r == TypeDouble
	case w == TypeLong:
		return r == TypeFloat || r == TypeDouble
	case w == TypeFloat:
		return r == TypeDouble
	case w == TypeString:
		return r == TypeBytes
	case w == TypeBytes:
		return r == TypeString
	}
	return false
}

// Fields returns a copy of the reader schema's fields, in schema order: the
// indexes of Record.Values.
func (d *Decoder) Fields() []Field { return append([]Field(nil), d.fields...) }

// NumFields returns the number of reader fields.
func (d *Decoder) NumFields() int { return len(d.fields) }

// Field returns the index in Record.Values of the named reader field, or -1.
func (d *Decoder) Field(name string) int {
	if i, ok := d.index[name]; ok {
		return i
	}
	return -1
}

// Fingerprint returns the reader schema's single-object fingerprint.
func (d *Decoder) Fingerprint() uint64 { return d.readFP }

// Known reports whether a writer schema with this fingerprint is registered.
func (d *Decoder) Known(fingerprint uint64) bool {
	_, ok := (*d.writers.Load())[fingerprint]
	return ok
}

// Decode decodes one framed record b into r, reusing r.Values. It
// does not allocate when r.Values has room for NumFields values (after the
// first call), unless it fails. Bytes values alias b. On error, r holds no
// Present value and the error is a *DecodeError.
func (d *Decoder) Decode(b []byte, r *Record) error {
	n := len(d.fields)
	if cap(r.Values) < n {
		r.Values = make([]Value, n)
	}
	r.Values = r.Values[:n]
	clear(r.Values)
	r.Writer = wireformat.Header{}
	h, ok := wireformat.Parse(b)
	if !ok {
		if (len(b) > 0 && b[0] == wireformat.ConfluentMagic) || (len(b) >= 2 && b[0] == wireformat.SingleObjectMagic[0] && b[1] == wireformat.SingleObjectMagic[1]) {
			return &DecodeError{Err: ErrTruncated, Offset: len(b)}
		}
		return &DecodeError{Err: ErrNotFramed}
	}
	var p *plan
	switch {
	case h.Format == wireformat.Confluent:
		p = (*d.ids.Load())[h.ID]
	case h.Fingerprint == d.readFP:
		p = d.readPln
	default:
		p = (*d.writers.Load())[h.Fingerprint]
	}
	if p == nil {
		return &DecodeError{Err: ErrUnknownSchema, Writer: h}
	}
	pos, i, err := p.decode(b, h.Len(), r.Values)
	if err == nil && pos != len(b) {
		err, i = ErrTrailingBytes, -1
	}
	if err != nil {
		clear(r.Values)
		e := &DecodeError{Err: err, Writer: h, Offset: pos}
		if i >= 0 {
			e.Field = p.ops[i].name
		}
		return e
	}
	r.Writer = h
	return nil
}

// decode reads the body from b[pos:] into vals. On error it returns the
// offset of the failing item and the index of the failing op.
func (p *plan) decode(b []byte, pos int, vals []Value) (int, int, error) {
	for i := range p.ops {
		o := &p.ops[i]
		// The union branch: 0 (null) or 2 (zig-zag 1), or a longer varint.
		if pos >= len(b) {
			return pos, i, ErrTruncated
		}
		start := pos
		switch b[pos] {
		case 0:
			pos++
			continue
		case 2:
			pos++
		default:
			idx, np, err := readLong(b, pos)
			if err != nil {
				return start, i, err
			}
			switch idx {
			case 0:
				pos = np
				continue
			case 1:
				pos = np
			default:
				return start, i, ErrBadUnion
			}
		}
		v := Value{Present: true}
		switch o.wt {
		case TypeString, TypeBytes:
			l, np, err := readLong(b, pos)
			if err != nil {
				return pos, i, err
			}
			if l < 0 || l > int64(len(b)-np) {
				return pos, i, ErrBadLength
			}
			end := np + int(l)
			s := b[np:end:end]
			pos = end
			if o.slot < 0 {
				continue
			}
			if o.rt == TypeString && !utf8.Valid(s) {
				return np, i, ErrInvalidUTF8
			}
			v.Bytes = s
		case TypeInt, TypeLong, TypeTimestampMillis:
			x, np, err := readLong(b, pos)
			if err != nil {
				return pos, i, err
			}
			if o.wt == TypeInt && (x < math.MinInt32 || x > math.MaxInt32) {
				return pos, i, ErrBadValue
			}
			pos = np
			switch o.rt {
			case TypeFloat:
				v.F = float64(float32(x))
			case TypeDouble:
				v.F = float64(x)
			default:
				v.Num = x
			}
		case TypeFloat:
			if len(b)-pos < 4 {
				return pos, i, ErrTruncated
			}
			v.F = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[pos:])))
			pos += 4
		case TypeDouble:
			if len(b)-pos < 8 {
				return pos, i, ErrTruncated
			}
			v.F = math.Float64frombits(binary.LittleEndian.Uint64(b[pos:]))
			pos += 8
		case TypeBoolean:
			if pos >= len(b) {
				return pos, i, ErrTruncated
			}
			if b[pos] > 1 {
				return pos, i, ErrBadValue
			}
			v.Num = int64(b[pos])
			pos++
		}
		if o.slot >= 0 {
			vals[o.slot] = v
		}
	}
	return pos, -1, nil
}

// readLong reads a zig-zag varint long at b[pos:] and returns it and the
// offset after it.
func readLong(b []byte, pos int) (int64, int, error) {
	var u uint64
	for shift := uint(0); ; shift += 7 {
		if pos >= len(b) {
			return 0, pos, ErrTruncated
		}
		c := b[pos]
		pos++
		if shift == 63 && c > 1 {
			return 0, pos, ErrBadVarint
		}
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), pos, nil
		}
	}
}
