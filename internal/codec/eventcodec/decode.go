// Package eventcodec decodes and validates raw customer events. Records are
// framed (package wireformat) in either of the two framings SPEC 3a names:
// the Confluent Schema Registry wire format (magic 0, then the writer
// schema's registry id), as Confluent's AvroSerializer writes it, or Avro
// single-object encoding (marker C3 01, then the CRC-64-AVRO fingerprint of
// the writer schema's Parsing Canonical Form, as the Avro specification
// defines it: package internal/codec/avroschema). Producers can evolve
// their schema: every known writer schema is registered by fingerprint
// (Register) or by registry id (RegisterID; the caller resolves ids it
// does not know before decoding, processors/kit/writers), and its fields
// are mapped onto the classified raw schema (the source of truth). A writer field that the
// raw schema does not declare is unclassified: it is counted and never
// reaches a clean topic.
//
// Records written before the pipeline used the specification's fingerprint
// carry goavro's instead, which differs for schemas with a logical type
// (goavro issue 174). Each registered schema is also known by that legacy
// fingerprint, so nothing already produced is lost; such records are marked
// (Event.LegacyFingerprint) for the caller to count.
//
// Decoding uses goavro; validation enforces SPEC section 6 (subject id,
// sizes, UTF-8, timestamps). A record that fails gets a Reason, never a
// panic.
//
// It imports schemas, internal/codec/avroschema, internal/codec/wireformat
// and goavro (schema checks and the legacy fingerprint).
package eventcodec

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Reason is the outcome of decoding one record; anything but OK sends the
// record to quarantine with the reason's name in a header.
type Reason uint8

// Reasons.
const (
	OK Reason = iota
	NotAvro
	UnknownSchema
	MalformedAvro
	MissingSubject
	MissingEventID
	Oversized
	InvalidUTF8
	TimestampOutOfRange
	InvalidValue
	numReasons
)

var reasonNames = [numReasons]string{"ok", "not_avro", "unknown_schema", "malformed_avro", "missing_subject", "missing_event_id", "oversized", "invalid_utf8", "timestamp_out_of_range", "invalid_value"}

// String returns the reason code used in the quarantine header and metrics.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// QuarantineReasons lists every failure reason.
func QuarantineReasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := NotAvro; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// Value is one decoded leaf value.
type Value struct {
	Present bool    // false: null or absent from the writer schema
	Str     string  // string kinds
	Num     int64   // boolean (0/1), int, long, date (days), timestamp-millis
	F       float64 // float, double; latitude for geo
	F2      float64 // longitude for geo
}

// Event is one decoded, validated raw event.
type Event struct {
	// Values is indexed like the raw schema's Fields.
	Values []Value
	// Unclassified counts the non-null writer fields the raw schema does not declare.
	Unclassified int
	// Header names the writer schema: its registry id or fingerprint; set
	// whenever the record is framed, whatever Decode then returns.
	Header wireformat.Header
	// LegacyFingerprint is true when Header.Fingerprint is the legacy (goavro)
	// fingerprint of a registered writer schema rather than the
	// specification's; set whenever the schema was found, whatever Decode
	// then returns.
	LegacyFingerprint bool
}

// Limits bound what a valid record may hold.
type Limits struct {
	MaxRecordBytes int           // whole record (default 256 KiB)
	MaxFieldBytes  int           // one string field (default 16 KiB)
	MaxSubjectLen  int           // subject id (default 256)
	MaxPast        time.Duration // event_time no older than now-MaxPast (default 400 days)
	MaxFuture      time.Duration // event_time no later than now+MaxFuture (default 1 h)
}

// DefaultLimits are the limits used when a field of Limits is zero.
var DefaultLimits = Limits{MaxRecordBytes: 256 << 10, MaxFieldBytes: 16 << 10, MaxSubjectLen: 256, MaxPast: 400 * 24 * time.Hour, MaxFuture: time.Hour}

// Decoder decodes raw events written with any registered writer schema. It
// is safe for concurrent use.
type Decoder struct {
	raw    *schemas.EventSchema
	limits Limits
	now    func() time.Time

	// known are the writer schemas, read without a lock on every record
	// (two workers' reads would contend on a lock's cache line) and
	// replaced by a copy, under mu, when one is registered (rarely).
	known atomic.Pointer[known]
	mu    sync.Mutex

	subjectIdx, eventIDIdx, timeIdx int
}

type writer struct {
	codec *goavro.Codec // the reference codec: schema checks and the legacy fingerprint
	root  *node         // the compiled decoder
}

// known are the registered writer schemas; never modified once published
// in Decoder.known.
type known struct {
	writers map[uint64]entry   // by fingerprint (single-object)
	ids     map[uint32]*writer // by registry id (Confluent)
}

// update publishes a copy of the known writers changed by fn.
func (d *Decoder) update(fn func(k *known)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.known.Load()
	k := &known{writers: maps.Clone(old.writers), ids: maps.Clone(old.ids)}
	fn(k)
	d.known.Store(k)
}

// entry is a writer schema under one of its fingerprints.
type entry struct {
	w      *writer
	legacy bool // the key is goavro's fingerprint, not the specification's
}

// Option configures a Decoder.
type Option func(*Decoder)

// WithLimits sets the validation limits (zero fields take defaults).
func WithLimits(l Limits) Option { return func(d *Decoder) { d.limits = l } }

// WithClock replaces time.Now for timestamp validation, for tests.
func WithClock(now func() time.Time) Option { return func(d *Decoder) { d.now = now } }

// NewDecoder returns a decoder that knows the raw schema itself as a writer
// schema.
func NewDecoder(raw *schemas.EventSchema, rawSchemaJSON []byte, opts ...Option) (*Decoder, error) {
	d := &Decoder{raw: raw, limits: DefaultLimits, now: time.Now}
	d.known.Store(&known{writers: map[uint64]entry{}, ids: map[uint32]*writer{}})
	for _, o := range opts {
		o(d)
	}
	l := &d.limits
	def := DefaultLimits
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = def.MaxRecordBytes
	}
	if l.MaxFieldBytes <= 0 {
		l.MaxFieldBytes = def.MaxFieldBytes
	}
	if l.MaxSubjectLen <= 0 {
		l.MaxSubjectLen = def.MaxSubjectLen
	}
	if l.MaxPast <= 0 {
		l.MaxPast = def.MaxPast
	}
	if l.MaxFuture <= 0 {
		l.MaxFuture = def.MaxFuture
	}
	d.subjectIdx, d.eventIDIdx, d.timeIdx = raw.Index("subject_id"), raw.Index("event_id"), raw.Index("event_time")
	if d.subjectIdx < 0 || d.eventIDIdx < 0 || d.timeIdx < 0 {
		return nil, fmt.Errorf("eventcodec: raw schema lacks subject_id, event_id or event_time")
	}
	if _, err := d.Register(rawSchemaJSON); err != nil {
		return nil, err
	}
	return d, nil
}

// Register adds a writer schema and returns its fingerprint (the Avro
// specification's, avroschema.Fingerprint). The schema is also known by its
// legacy goavro fingerprint when that differs, unless another registered
// schema has it as its specification fingerprint. A writer field
// that the raw schema declares must have the same kind; the required fields
// subject_id, event_id, event_time and jurisdiction must be present.
func (d *Decoder) Register(writerSchemaJSON []byte) (uint64, error) {
	w, fp, err := d.compile(writerSchemaJSON)
	if err != nil {
		return 0, err
	}
	d.update(func(k *known) {
		k.writers[fp] = entry{w: w}
		if old := w.codec.Rabin; old != fp {
			if e, taken := k.writers[old]; !taken || e.legacy {
				k.writers[old] = entry{w: w, legacy: true}
			}
		}
	})
	return fp, nil
}

// RegisterID adds a writer schema under its schema registry id, with the
// checks of Register; a schema registered before (by fingerprint or under
// another id) is compiled once. It returns the schema's fingerprint.
func (d *Decoder) RegisterID(id uint32, writerSchemaJSON []byte) (uint64, error) {
	fp, err := avroschema.Fingerprint(writerSchemaJSON)
	if err != nil {
		return 0, fmt.Errorf("eventcodec: writer schema: %w", err)
	}
	e := d.known.Load().writers[fp]
	w := e.w
	if w == nil || e.legacy {
		if w, _, err = d.compile(writerSchemaJSON); err != nil {
			return 0, err
		}
	}
	d.update(func(k *known) { k.ids[id] = w })
	return fp, nil
}

// KnownID reports whether a writer schema is registered under this id.
func (d *Decoder) KnownID(id uint32) bool {
	return d.known.Load().ids[id] != nil
}

// compile checks a writer schema against the raw schema and compiles it.
func (d *Decoder) compile(writerSchemaJSON []byte) (*writer, uint64, error) {
	ws, err := schemas.ParseEventSchema(writerSchemaJSON, schemas.ParseOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("eventcodec: writer schema: %w", err)
	}
	codec, err := goavro.NewCodec(string(writerSchemaJSON))
	if err != nil {
		return nil, 0, fmt.Errorf("eventcodec: writer schema: %w", err)
	}
	fp, err := avroschema.Fingerprint(writerSchemaJSON)
	if err != nil {
		return nil, 0, fmt.Errorf("eventcodec: writer schema: %w", err)
	}
	root, err := compileWriter(d.raw, writerSchemaJSON)
	if err != nil {
		return nil, 0, fmt.Errorf("eventcodec: writer schema: %w", err)
	}
	seen := map[string]bool{}
	for _, f := range ws.Fields {
		idx := d.raw.Index(f.Path)
		if idx >= 0 {
			if rf := d.raw.Fields[idx]; rf.Kind != f.Kind {
				return nil, 0, fmt.Errorf("eventcodec: writer field %s is %s, the raw schema says %s", f.Path, f.Kind, rf.Kind)
			}
			seen[f.Path] = true
		}
	}
	for _, req := range []string{"subject_id", "event_id", "event_time", "jurisdiction"} {
		if !seen[req] {
			return nil, 0, fmt.Errorf("eventcodec: writer schema lacks required field %s", req)
		}
	}
	return &writer{codec: codec, root: root}, fp, nil
}

// Decode decodes and validates one record into ev (whose Values are reused).
// String values alias b: they are valid only as long as b is unchanged.
func (d *Decoder) Decode(b []byte, ev *Event) (reason Reason) {
	n := len(d.raw.Fields)
	if cap(ev.Values) < n {
		ev.Values = make([]Value, n)
	}
	ev.Values = ev.Values[:n]
	clear(ev.Values)
	ev.Unclassified = 0
	ev.Header = wireformat.Header{}
	ev.LegacyFingerprint = false
	if len(b) > d.limits.MaxRecordBytes {
		return Oversized
	}
	h, ok := wireformat.Parse(b)
	if !ok {
		return NotAvro
	}
	ev.Header = h
	var w *writer
	w, ev.LegacyFingerprint = d.writerOf(h)
	if w == nil {
		return UnknownSchema
	}
	defer func() {
		if recover() != nil { // defensive: a decoder bug must not crash the processor
			reason = MalformedAvro
		}
	}()
	r := reader{b: b[h.Len():], d: d, ev: ev, budget: d.limits.MaxRecordBytes}
	r.decode(w.root)
	if r.reason != OK {
		return r.reason
	}
	if r.pos != len(r.b) {
		return MalformedAvro // trailing bytes
	}
	return d.validate(ev)
}

// writerOf returns the writer schema a header names (nil when unknown) and
// whether it was found by its legacy fingerprint.
func (d *Decoder) writerOf(h wireformat.Header) (*writer, bool) {
	k := d.known.Load()
	if h.Format == wireformat.Confluent {
		return k.ids[h.ID], false
	}
	e := k.writers[h.Fingerprint]
	return e.w, e.legacy
}

func (d *Decoder) validate(ev *Event) Reason {
	sub := ev.Values[d.subjectIdx]
	if !sub.Present || strings.TrimSpace(sub.Str) == "" {
		return MissingSubject
	}
	if len(sub.Str) > d.limits.MaxSubjectLen {
		return Oversized
	}
	if id := ev.Values[d.eventIDIdx]; !id.Present || id.Str == "" {
		return MissingEventID
	}
	now := d.now()
	t := ev.Values[d.timeIdx].Num
	if t < now.Add(-d.limits.MaxPast).UnixMilli() || t > now.Add(d.limits.MaxFuture).UnixMilli() {
		return TimestampOutOfRange
	}
	return OK
}
