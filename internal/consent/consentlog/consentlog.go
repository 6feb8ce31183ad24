// Package consentlog is the consent topic's record: a consent change
// (schemas/consent_record.avsc, in the spirit of ISO/IEC TS 27560 consent
// receipts), its validation, its Avro single-object encoding, its Kafka key
// and partitioning, and the parsing of bulk imports (CSV and JSON lines).
//
// A change is either a subject's choice for one purpose (a state, with
// optionally the subject's jurisdiction and Global Privacy Control value),
// or a subject-level change (Purpose SubjectLevel) that carries only the
// jurisdiction and/or the GPC value: a CCPA business can load its
// customers' jurisdictions without any per-purpose choice, and a GPC
// signal can be recorded on its own.
//
// Key and compaction: privacy.consent is compacted, and compaction keeps one
// record per key, so each key owns a fixed part of a subject's state and
// every record under it carries all of that part. A subject has one choice
// per purpose, so a choice's key is "<subject>/<purpose>"; a subject-level
// change's key names what it carries: "<subject>/jurisdiction",
// "<subject>/gpc", or "<subject>/profile" (both). A choice that also carries
// a jurisdiction or a GPC value is written with a subject-level companion
// (Records), so that compacting the choice away never loses them. The
// partitioner hashes the subject only: all of a subject's changes share a
// partition and stay in order.
//
// Version 2 of the schema made state optional and added gpc; records
// written with version 1 still decode (Decode picks the schema by its
// fingerprint). Records are written with the Avro specification's
// fingerprint; those written before, with goavro's legacy one, still decode.
//
// It imports consent, purpose, schemas, internal/codec/avrosingle, goavro
// and franz-go's kgo (for the partitioner and the records).
package consentlog

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Source is how a choice was collected.
type Source string

// Sources (the ConsentSource enum of the schema).
const (
	WebForm      Source = "web_form"
	MobileApp    Source = "mobile_app"
	SupportAgent Source = "support_agent"
	// GPCSignal: a Global Privacy Control signal; a change with this
	// source records GPC on (Change.GPC must be consent.GPCOn).
	GPCSignal Source = "gpc_signal"
	Import    Source = "import"
)

// Sources lists the valid sources.
var Sources = []Source{WebForm, MobileApp, SupportAgent, GPCSignal, Import}

// Limits of a valid change.
const (
	MaxSubjectLen       = 256
	MaxPolicyVersionLen = 64
	// MaxFuture bounds how far a change's timestamp may lie in the future.
	MaxFuture = 5 * time.Minute
)

// SubjectLevel is the Purpose of a subject-level change: one that carries
// only the subject's jurisdiction and/or GPC value, no per-purpose state.
const SubjectLevel purpose.Purpose = 255

// DefaultProfilePolicyVersion is the policy version a subject-level change
// gets when its input gives none (a jurisdiction is not a choice made on a
// privacy notice).
const DefaultProfilePolicyVersion = "unspecified"

// Change is one consent change.
type Change struct {
	SubjectID string
	// Purpose is the purpose of the choice, or SubjectLevel.
	Purpose purpose.Purpose
	// State is the choice; consent.Unset for a subject-level change.
	State consent.State
	// Jurisdiction is the subject's jurisdiction, consent.Unknown when the
	// change does not give it.
	Jurisdiction consent.Jurisdiction
	// GPC is the change's Global Privacy Control value, if any.
	GPC           consent.GPCValue
	Source        Source
	PolicyVersion string
	Timestamp     time.Time
	ReceiptID     string
	// Principal names who made the change (the API's authenticated
	// caller); it travels in the record's PrincipalHeader, not the Avro
	// value, and is empty for changes written before it was recorded.
	Principal string
	// Evidence is the consent string the change was read from
	// ("tcf:<TC string>" or "gpp:<GPP string>",
	// internal/consent/consentstring), empty otherwise. It travels in the
	// record's EvidenceHeader and the subject's history; it can be
	// personal data and is erased with the subject (the consent topic's
	// tombstones, the history's deletion).
	Evidence string
}

// EvidenceHeader is the consent record header carrying a change's
// Evidence.
const EvidenceHeader = "pp-consent-string"

// MaxEvidenceLen bounds Evidence (a consent string of 16 KiB and its
// kind).
const MaxEvidenceLen = 16<<10 + 8

// EvidenceOf returns the evidence a consent record's header carries, or
// "".
func EvidenceOf(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == EvidenceHeader {
			return string(h.Value)
		}
	}
	return ""
}

// PrincipalHeader is the consent record header naming the principal that
// made the change.
const PrincipalHeader = "pp-principal"

// PrincipalOf returns the principal a consent record's header names, or
// "".
func PrincipalOf(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == PrincipalHeader {
			return string(h.Value)
		}
	}
	return ""
}

// IsSubjectLevel reports whether c is a subject-level change.
func (c *Change) IsSubjectLevel() bool { return c.Purpose == SubjectLevel }

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid consent change")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidateSubject checks a subject id: 1-256 bytes of valid UTF-8 without
// control characters. Messages never echo the id.
func ValidateSubject(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return invalid("subject id is empty")
	case len(s) > MaxSubjectLen:
		return invalid("subject id is longer than %d bytes", MaxSubjectLen)
	case !utf8.ValidString(s):
		return invalid("subject id is not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid("subject id contains control characters")
	}
	return nil
}

// ParseSource parses a source name.
func ParseSource(s string) (Source, error) {
	for _, v := range Sources {
		if string(v) == s {
			return v, nil
		}
	}
	return "", invalid("unknown source %q (want web_form, mobile_app, support_agent, gpc_signal or import)", clip(s))
}

// Validate checks every field. A subject-level change has no state and
// needs a jurisdiction other than unknown, or a GPC value; a change with
// source gpc_signal needs GPC on.
func (c *Change) Validate(now time.Time) error {
	if err := ValidateSubject(c.SubjectID); err != nil {
		return err
	}
	if j, ok := consent.LookupJurisdiction(c.Jurisdiction.String()); !ok || j != c.Jurisdiction {
		return invalid("unknown jurisdiction")
	}
	if c.GPC != consent.GPCNotGiven && !c.GPC.Given() {
		return invalid("gpc must be on, off or not given")
	}
	switch {
	case c.IsSubjectLevel():
		if c.State != consent.Unset {
			return invalid("a subject-level change (no purpose) carries no state")
		}
		if c.Jurisdiction == consent.Unknown && !c.GPC.Given() {
			return invalid("a subject-level change (no purpose) needs a jurisdiction other than unknown, or a gpc value")
		}
	case !c.Purpose.Valid():
		return invalid("unknown purpose")
	case c.State != consent.Granted && c.State != consent.Denied && c.State != consent.Withdrawn:
		return invalid("state must be granted, denied or withdrawn")
	}
	if _, err := ParseSource(string(c.Source)); err != nil {
		return err
	}
	if c.Source == GPCSignal && c.GPC != consent.GPCOn {
		return invalid("source gpc_signal records a GPC signal: gpc must be true")
	}
	if v := c.PolicyVersion; strings.TrimSpace(v) == "" || len(v) > MaxPolicyVersionLen || !utf8.ValidString(v) {
		return invalid("policy_version must be 1-%d bytes of text", MaxPolicyVersionLen)
	}
	if c.Timestamp.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || c.Timestamp.After(now.Add(MaxFuture)) {
		return invalid("timestamp must be after 2000-01-01 and not in the future")
	}
	if c.ReceiptID == "" || len(c.ReceiptID) > 64 {
		return invalid("receipt_id must be 1-64 bytes")
	}
	if e := c.Evidence; len(e) > MaxEvidenceLen || !utf8.ValidString(e) || strings.IndexFunc(e, unicode.IsControl) >= 0 ||
		(e != "" && !strings.HasPrefix(e, "tcf:") && !strings.HasPrefix(e, "gpp:")) {
		return invalid("evidence must be tcf:<TC string> or gpp:<GPP string> of at most %d bytes", MaxEvidenceLen)
	}
	return nil
}

// ApplyTo merges c into rec with the newer-wins rules of consent.Record
// (Apply for a choice, ApplyProfile for the jurisdiction and GPC value)
// and reports whether rec changed. consent-sync's Lua script applies the
// same rules in Redis.
func (c *Change) ApplyTo(rec *consent.Record) bool {
	ms := c.Timestamp.UnixMilli()
	if c.IsSubjectLevel() {
		return rec.ApplyProfile(c.Jurisdiction, c.GPC, ms)
	}
	a := rec.Apply(c.Purpose, c.State, c.Jurisdiction, ms)
	b := rec.ApplyProfile(consent.Unknown, c.GPC, ms)
	return a || b
}

// NewReceiptID returns a random receipt id.
func NewReceiptID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Key suffixes of subject-level records.
const (
	keyJurisdiction = "jurisdiction"
	keyGPC          = "gpc"
	keyProfile      = "profile"
)

// Key returns the Kafka key of a subject's choice for purpose p:
// "<subject>/<purpose>". For SubjectLevel it returns "<subject>/profile",
// the key of a subject-level record carrying both a jurisdiction and a GPC
// value; use Change.Key for any change.
func Key(subject string, p purpose.Purpose) []byte {
	if p == SubjectLevel {
		return []byte(subject + "/" + keyProfile)
	}
	return []byte(subject + "/" + p.String())
}

// Key returns the Kafka key of c: "<subject>/<purpose>" for a choice;
// "<subject>/jurisdiction", "<subject>/gpc" or "<subject>/profile" for a
// subject-level change carrying a jurisdiction, a GPC value, or both.
func (c *Change) Key() []byte {
	if !c.IsSubjectLevel() {
		return Key(c.SubjectID, c.Purpose)
	}
	switch {
	case c.Jurisdiction == consent.Unknown:
		return []byte(c.SubjectID + "/" + keyGPC)
	case !c.GPC.Given():
		return []byte(c.SubjectID + "/" + keyJurisdiction)
	}
	return []byte(c.SubjectID + "/" + keyProfile)
}

// SubjectKeys returns every key a subject's changes can have (to tombstone
// them all on erasure).
func SubjectKeys(subject string) [][]byte {
	keys := make([][]byte, 0, purpose.Count+3)
	for _, p := range purpose.All {
		keys = append(keys, Key(subject, p))
	}
	for _, s := range []string{keyJurisdiction, keyGPC, keyProfile} {
		keys = append(keys, []byte(subject+"/"+s))
	}
	return keys
}

// SubjectOfKey returns the subject of a key.
func SubjectOfKey(key []byte) string {
	k := string(key)
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		return k[:i]
	}
	return k
}

// Partitioner hashes only the subject part of the key, so a subject's
// changes for every purpose share one partition.
func Partitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int {
			h := fnv.New32a()
			h.Write([]byte(SubjectOfKey(r.Key)))
			return int(h.Sum32() % uint32(n))
		}
	})
}

// Companion returns the subject-level copy of a choice that carries a
// jurisdiction or a GPC value (same subject, jurisdiction, GPC value,
// source, policy version, timestamp and receipt id), and false for any
// other change. Written after the choice, it keeps those values in the
// compacted topic when a later choice for the same purpose replaces the
// first; applied after it, it changes nothing (same timestamps).
func (c *Change) Companion() (Change, bool) {
	if c.IsSubjectLevel() || (c.Jurisdiction == consent.Unknown && !c.GPC.Given()) {
		return Change{}, false
	}
	cp := *c
	cp.Purpose, cp.State = SubjectLevel, consent.Unset
	return cp, true
}

// Records returns the Kafka records that write changes to topic, in order:
// each change, then its subject-level companion if it has one (see
// Companion). Every change is validated; the first invalid one is an error.
func Records(topic string, changes ...Change) ([]*kgo.Record, error) {
	recs := make([]*kgo.Record, 0, len(changes))
	for i := range changes {
		c := &changes[i]
		v, err := Encode(c)
		if err != nil {
			return nil, err
		}
		var hs []kgo.RecordHeader
		if c.Principal != "" {
			hs = append(hs, kgo.RecordHeader{Key: PrincipalHeader, Value: []byte(c.Principal)})
		}
		if c.Evidence != "" {
			hs = append(hs, kgo.RecordHeader{Key: EvidenceHeader, Value: []byte(c.Evidence)})
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: c.Key(), Value: v, Headers: hs})
		if cp, ok := c.Companion(); ok {
			v, err := Encode(&cp)
			if err != nil {
				return nil, err
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: cp.Key(), Value: v, Headers: hs})
		}
	}
	return recs, nil
}

//go:embed consent_record.v1.avsc
var schemaV1 string

func mustCodec(schema, what string) *avrosingle.Codec {
	c, err := avrosingle.NewCodec(schema)
	if err != nil {
		panic("consentlog: " + what + " is invalid: " + err.Error())
	}
	return c
}

var (
	// codec is schemas/consent_record.avsc (version 2), the one written.
	codec = mustCodec(string(schemas.ConsentRecordSchemaJSON()), "checked-in consent schema")
	// codecV1 reads records written before version 2.
	codecV1 = mustCodec(schemaV1, "version-1 consent schema")
)

const stateUnion = "privacy.consent.ConsentState"

// Encode returns the Avro single-object encoding (schema version 2) of a
// valid change.
func Encode(c *Change) ([]byte, error) {
	if err := c.Validate(time.Now()); err != nil {
		return nil, err
	}
	p, st := "", any(nil)
	if !c.IsSubjectLevel() {
		p, st = c.Purpose.String(), goavro.Union(stateUnion, c.State.String())
	}
	var gpc any
	if c.GPC.Given() {
		gpc = goavro.Union("boolean", c.GPC == consent.GPCOn)
	}
	return codec.SingleFromNative(nil, map[string]any{
		"subject_id": c.SubjectID, "purpose": p, "state": st,
		"jurisdiction": c.Jurisdiction.String(), "source": string(c.Source), "policy_version": c.PolicyVersion,
		"timestamp": c.Timestamp.UTC(), "receipt_id": c.ReceiptID, "gpc": gpc,
	})
}

// Decode parses and validates a record from the consent topic, written
// with schema version 2 or 1. A record with source gpc_signal records GPC
// on even when its gpc field is null (and always in version 1, which had
// no gpc field).
func Decode(b []byte) (Change, error) {
	// Either schema version, with the specification's fingerprint or the
	// one goavro wrote before (the topic is compacted: old records stay).
	native, rest, _, err := codec.NativeFromSingleOrLegacy(b)
	v1 := false
	if err != nil {
		native, rest, _, err = codecV1.NativeFromSingleOrLegacy(b)
		v1 = true
	}
	if err != nil || len(rest) != 0 {
		return Change{}, invalid("not a consent record")
	}
	m, _ := native.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	var c Change
	c.SubjectID, c.PolicyVersion, c.ReceiptID = str("subject_id"), str("policy_version"), str("receipt_id")
	state := str("state")
	if !v1 {
		state = ""
		if u, ok := m["state"].(map[string]any); ok {
			state, _ = u[stateUnion].(string)
		}
		if u, ok := m["gpc"].(map[string]any); ok {
			on, _ := u["boolean"].(bool)
			c.GPC = consent.GPCOf(on)
		}
	}
	switch p := str("purpose"); {
	case p == "" && !v1:
		c.Purpose = SubjectLevel
		if state != "" {
			return Change{}, invalid("a subject-level record carries no state")
		}
	default:
		if c.Purpose, err = purpose.Parse(p); err != nil {
			return Change{}, invalid("unknown purpose %q", clip(p))
		}
		if c.State, err = consent.ParseState(state); err != nil {
			return Change{}, invalid("unknown state")
		}
	}
	var ok bool
	if c.Jurisdiction, ok = consent.LookupJurisdiction(str("jurisdiction")); !ok {
		return Change{}, invalid("unknown jurisdiction %q", clip(str("jurisdiction")))
	}
	c.Source = Source(str("source"))
	if c.Source == GPCSignal && c.GPC == consent.GPCNotGiven {
		c.GPC = consent.GPCOn
	}
	c.Timestamp, _ = m["timestamp"].(time.Time)
	if err := c.Validate(time.Now()); err != nil {
		return Change{}, err
	}
	return c, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
