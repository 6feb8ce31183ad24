// Package policy parses and validates the field policy (schemas/policy.json):
// for each purpose and each classified field of the raw schema, one action of
// SPEC section 4. It also derives each purpose's clean output fields and the
// clean Avro schema from the raw schema and the policy.
//
// It imports schemas and purpose only; it knows nothing of Kafka, Redis or
// consent.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Action is what happens to a field for a purpose.
type Action string

// The field actions of SPEC section 4.
const (
	Keep         Action = "keep"
	Drop         Action = "drop"
	Pseudonymize Action = "pseudonymize"
	Mask         Action = "mask"
	Generalize   Action = "generalize"
	Redact       Action = "redact"
	// Encrypt and Tokenize use the subject's data key for the purpose
	// (crypto-shredding, internal/fields/subjectkey): Encrypt is randomised,
	// Tokenize deterministic (joins and group-bys within the purpose keep
	// working). Both are reversible with the key until the subject is
	// erased.
	Encrypt  Action = "encrypt"
	Tokenize Action = "tokenize"
)

// Generalisation targets (Rule.To).
const (
	ToAgeBand  = "age_band" // date -> "25-34"
	ToYear     = "year"     // date or timestamp -> int year
	ToMonth    = "month"    // date or timestamp -> "2024-05"
	ToDay      = "day"      // timestamp -> timestamp truncated to the day
	ToHour     = "hour"     // timestamp -> timestamp truncated to the hour
	ToPrefix   = "prefix"   // string -> first Length alphanumerics (postal codes)
	ToGeoCell  = "geo_cell" // {lat,lon} -> geohash of Precision characters
	ToIPPrefix = "ip_prefix"
	// ToTemplate: URL -> scheme://host/path template (id-like and
	// account-scoped segments replaced by ":id", query and fragment dropped).
	ToTemplate = "template"
)

// Mask kinds (Rule.Mask).
const (
	MaskEmail    = "email"
	MaskPhone    = "phone"
	MaskCard     = "card"
	MaskKeepLast = "keep_last"
)

// Rule is the action for one field and purpose, with its parameters.
type Rule struct {
	Action    Action `json:"action"`
	To        string `json:"to,omitempty"`
	Length    int    `json:"length,omitempty"`
	Precision int    `json:"precision,omitempty"`
	Mask      string `json:"mask,omitempty"`
	Keep      int    `json:"keep,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// PurposePolicy is the policy of one purpose.
type PurposePolicy struct {
	Description   string          `json:"description"`
	LegalBasis    string          `json:"legal_basis"`
	RetentionDays int             `json:"retention_days"`
	Fields        map[string]Rule `json:"fields"`
}

// Policy is the whole field policy.
type Policy struct {
	Version  string                   `json:"version"`
	Doc      string                   `json:"doc,omitempty"`
	Purposes map[string]PurposePolicy `json:"purposes"`
}

// Parse decodes a policy strictly: unknown JSON keys are errors.
func Parse(data []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &p, nil
}

// Load parses and validates a policy against the raw schema.
func Load(data []byte, raw *schemas.EventSchema) (*Policy, error) {
	p, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(raw); err != nil {
		return nil, err
	}
	return p, nil
}

// NeedsDataKeys reports whether a purpose encrypts or tokenizes a field
// (its records need the subject's data key).
func (p *Policy) NeedsDataKeys(pur purpose.Purpose) bool {
	for _, r := range p.Purposes[pur.String()].Fields {
		if r.Action == Encrypt || r.Action == Tokenize {
			return true
		}
	}
	return false
}

// RetentionByPurpose returns each purpose's retention_days as a duration,
// by the purpose's wire name: how long the purpose's topics keep a record
// (topology.Options.PurposeRetention).
func (p *Policy) RetentionByPurpose() map[string]time.Duration {
	out := make(map[string]time.Duration, len(p.Purposes))
	for name, pp := range p.Purposes {
		if pp.RetentionDays > 0 {
			out[name] = time.Duration(pp.RetentionDays) * 24 * time.Hour
		}
	}
	return out
}

// Rule returns the rule of a field for a purpose; a field that is not listed
// is dropped.
func (p *Policy) Rule(pur purpose.Purpose, path string) Rule {
	if r, ok := p.Purposes[pur.String()].Fields[path]; ok {
		return r
	}
	return Rule{Action: Drop}
}

// Validate checks the policy against the raw schema and returns every problem
// found, joined.
func (p *Policy) Validate(raw *schemas.EventSchema) error {
	var errs []error
	if strings.TrimSpace(p.Version) == "" {
		errs = append(errs, errors.New("policy: version is empty"))
	}
	for name := range p.Purposes {
		if _, err := purpose.Parse(name); err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
	}
	for _, pur := range purpose.All {
		pp, ok := p.Purposes[pur.String()]
		if !ok {
			errs = append(errs, fmt.Errorf("policy: purpose %s is missing (list it, even with no fields)", pur))
			continue
		}
		if pp.RetentionDays <= 0 {
			errs = append(errs, fmt.Errorf("policy: purpose %s: retention_days must be positive", pur))
		}
		paths := make([]string, 0, len(pp.Fields))
		for path := range pp.Fields {
			paths = append(paths, path)
		}
		sort.Strings(paths)
		for _, path := range paths {
			f, ok := raw.Field(path)
			if !ok {
				errs = append(errs, fmt.Errorf("policy: purpose %s: unknown field %q", pur, path))
				continue
			}
			if err := checkRule(f, pp.Fields[path]); err != nil {
				errs = append(errs, fmt.Errorf("policy: purpose %s: field %s: %w", pur, path, err))
			}
		}
		if r, ok := pp.Fields["subject_id"]; !ok || r.Action != Pseudonymize {
			errs = append(errs, fmt.Errorf("policy: purpose %s: subject_id must be pseudonymize (clean topics are keyed by the pseudonym)", pur))
		}
		if r, ok := pp.Fields["event_id"]; ok && r.Action == Keep {
			errs = append(errs, fmt.Errorf("policy: purpose %s: event_id kept as is would let clean topics of different purposes be joined; pseudonymize it", pur))
		}
	}
	return errors.Join(errs...)
}

func checkRule(f schemas.Field, r Rule) error {
	need := func(ok bool, format string, args ...any) error {
		if ok {
			return nil
		}
		return fmt.Errorf(format, args...)
	}
	switch r.Action {
	case Keep:
		if (f.Classification == schemas.DirectIdentifier || f.Classification == schemas.FreeText) && strings.TrimSpace(r.Reason) == "" {
			return fmt.Errorf("keeping a %s as is needs a stated reason", f.Classification)
		}
		if f.Path == "subject_id" {
			return errors.New("the raw subject id never reaches a clean topic")
		}
		return nil
	case Drop:
		return nil
	case Pseudonymize:
		return need(f.Kind == schemas.String, "pseudonymize needs a string field, this one is %s", f.Kind)
	case Mask:
		if f.Kind != schemas.String {
			return fmt.Errorf("mask needs a string field, this one is %s", f.Kind)
		}
		switch r.Mask {
		case MaskEmail, MaskPhone, MaskCard:
			return nil
		case MaskKeepLast:
			return need(r.Keep >= 0 && r.Keep <= 8, "keep_last needs 0 <= keep <= 8")
		}
		return fmt.Errorf("unknown mask %q (want email, phone, card or keep_last)", r.Mask)
	case Generalize:
		_, err := generalizedKind(f, r)
		return err
	case Redact:
		return need(f.Kind == schemas.String, "redact needs a string field, this one is %s", f.Kind)
	case Encrypt, Tokenize:
		if f.Path == "subject_id" {
			return fmt.Errorf("%s of the subject id: clean topics are keyed by its pseudonym, and the data key id is derived from it", r.Action)
		}
		return need(f.Kind == schemas.String, "%s needs a string field, this one is %s", r.Action, f.Kind)
	case "":
		return errors.New("action is empty")
	}
	return fmt.Errorf("unknown action %q (want keep, drop, pseudonymize, mask, generalize, redact, encrypt, tokenize)", r.Action)
}

// generalizedKind returns the output kind of a generalisation, or why it does
// not apply to the field.
func generalizedKind(f schemas.Field, r Rule) (schemas.Kind, error) {
	bad := fmt.Errorf("generalize to %q does not apply to a %s field", r.To, f.Kind)
	switch r.To {
	case ToAgeBand:
		if f.Kind == schemas.Date {
			return schemas.String, nil
		}
	case ToYear:
		if f.Kind == schemas.Date || f.Kind == schemas.TimestampMillis {
			return schemas.Int, nil
		}
	case ToMonth:
		if f.Kind == schemas.Date || f.Kind == schemas.TimestampMillis {
			return schemas.String, nil
		}
	case ToDay, ToHour:
		if f.Kind == schemas.TimestampMillis {
			return schemas.TimestampMillis, nil
		}
	case ToPrefix:
		if f.Kind != schemas.String {
			return 0, bad
		}
		if r.Length < 1 || r.Length > 10 {
			return 0, errors.New("generalize to prefix needs 1 <= length <= 10")
		}
		return schemas.String, nil
	case ToGeoCell:
		if f.Kind != schemas.Geo {
			return 0, bad
		}
		if r.Precision < 1 || r.Precision > 6 {
			return 0, errors.New("generalize to geo_cell needs 1 <= precision <= 6 (6 is about 1.2 km x 0.6 km)")
		}
		return schemas.String, nil
	case ToIPPrefix, ToTemplate:
		if f.Kind == schemas.String {
			return schemas.String, nil
		}
	default:
		return 0, fmt.Errorf("unknown generalisation %q (want age_band, year, month, day, hour, prefix, geo_cell, ip_prefix, template)", r.To)
	}
	return 0, bad
}
