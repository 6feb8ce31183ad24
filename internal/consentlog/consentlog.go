// Package consentlog is the consent topic's record: a consent change for one
// subject and one purpose (schemas/consent_record.avsc, in the spirit of
// ISO/IEC TS 27560 consent receipts), its validation, its Avro
// single-object encoding, its Kafka key and partitioning, and the parsing of
// bulk imports (CSV and JSON lines).
//
// Key and compaction: privacy.consent is compacted, and compaction keeps one
// record per key. A subject has one choice per purpose, so the key is
// "<subject>/<purpose>" (compaction keeps each purpose's latest choice),
// while the partitioner hashes the subject only: all of a subject's changes
// share a partition and stay in order.
//
// It imports consent, purpose, schemas, goavro and franz-go's kgo (for the
// partitioner).
package consentlog

import (
	"crypto/rand"
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

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Source is how a choice was collected.
type Source string

// Sources (the ConsentSource enum of the schema).
const (
	WebForm      Source = "web_form"
	MobileApp    Source = "mobile_app"
	SupportAgent Source = "support_agent"
	GPCSignal    Source = "gpc_signal"
	Import       Source = "import"
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

// Change is one consent change.
type Change struct {
	SubjectID     string
	Purpose       purpose.Purpose
	State         consent.State
	Jurisdiction  consent.Jurisdiction
	Source        Source
	PolicyVersion string
	Timestamp     time.Time
	ReceiptID     string
}

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

// Validate checks every field.
func (c *Change) Validate(now time.Time) error {
	if err := ValidateSubject(c.SubjectID); err != nil {
		return err
	}
	if !c.Purpose.Valid() {
		return invalid("unknown purpose")
	}
	if c.State != consent.Granted && c.State != consent.Denied && c.State != consent.Withdrawn {
		return invalid("state must be granted, denied or withdrawn")
	}
	if _, err := ParseSource(string(c.Source)); err != nil {
		return err
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
	return nil
}

// NewReceiptID returns a random receipt id.
func NewReceiptID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Key returns the Kafka key: "<subject>/<purpose>".
func Key(subject string, p purpose.Purpose) []byte { return []byte(subject + "/" + p.String()) }

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

var codec = func() *goavro.Codec {
	c, err := goavro.NewCodec(string(schemas.ConsentRecordSchemaJSON()))
	if err != nil {
		panic("consentlog: checked-in consent schema is invalid: " + err.Error())
	}
	return c
}()

// Encode returns the Avro single-object encoding of a valid change.
func Encode(c *Change) ([]byte, error) {
	if err := c.Validate(time.Now()); err != nil {
		return nil, err
	}
	return codec.SingleFromNative(nil, map[string]any{
		"subject_id": c.SubjectID, "purpose": c.Purpose.String(), "state": c.State.String(),
		"jurisdiction": c.Jurisdiction.String(), "source": string(c.Source), "policy_version": c.PolicyVersion,
		"timestamp": c.Timestamp.UTC(), "receipt_id": c.ReceiptID,
	})
}

// Decode parses and validates a record from the consent topic.
func Decode(b []byte) (Change, error) {
	native, rest, err := codec.NativeFromSingle(b)
	if err != nil || len(rest) != 0 {
		return Change{}, invalid("not a consent record")
	}
	m, _ := native.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	var c Change
	c.SubjectID, c.PolicyVersion, c.ReceiptID = str("subject_id"), str("policy_version"), str("receipt_id")
	if c.Purpose, err = purpose.Parse(str("purpose")); err != nil {
		return Change{}, invalid("unknown purpose %q", clip(str("purpose")))
	}
	if c.State, err = consent.ParseState(str("state")); err != nil {
		return Change{}, invalid("unknown state")
	}
	var ok bool
	if c.Jurisdiction, ok = consent.LookupJurisdiction(str("jurisdiction")); !ok {
		return Change{}, invalid("unknown jurisdiction %q", clip(str("jurisdiction")))
	}
	c.Source = Source(str("source"))
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
