// Package schemas holds the project's Avro schemas and field policy, and the
// parsed, classified view of the raw customer-event schema.
//
// The checked-in files are the single source of truth:
//   - customer_event.avsc: the raw event schema; every leaf field carries its
//     privacy classification (attribute "classification") and, for sensitive
//     fields, its category (attribute "sensitive_category");
//   - consent_record.avsc: one consent change, as published to privacy.consent;
//   - policy.json: the action per purpose and field (see package policy);
//   - clean/<purpose>.customer-events.avsc: the clean schema of each purpose,
//     derived from the raw schema and the policy (never edited by hand; a test
//     fails when one is stale);
//   - kanon.json: the k-anonymity outputs (aggregates and the record-level
//     CASTLE stream), their quasi-identifiers and hierarchies (see package
//     internal/kanon/kanonspec), with hierarchies/*.csv;
//   - agg/<purpose>.<name>.avsc and clean/<purpose>.kanon.avsc: the schemas
//     of those outputs, derived from kanon.json and the clean schemas.
//
// This package imports only the standard library.
package schemas

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

//go:embed customer_event.avsc consent_record.avsc policy.json consent-strings.json clean/*.avsc kanon.json hierarchies/*.csv agg/*.avsc
var files embed.FS

// RawEventSchemaJSON returns the raw customer-event schema as checked in.
func RawEventSchemaJSON() []byte { return mustRead("customer_event.avsc") }

// ConsentRecordSchemaJSON returns the consent-record schema as checked in.
func ConsentRecordSchemaJSON() []byte { return mustRead("consent_record.avsc") }

// PolicyJSON returns the checked-in field policy.
func PolicyJSON() []byte { return mustRead("policy.json") }

// ConsentStringsJSON returns the checked-in mapping of TCF and GPP consent
// strings to the purposes (internal/consent/consentstring).
func ConsentStringsJSON() []byte { return mustRead("consent-strings.json") }

// KanonJSON returns the checked-in k-anonymity specification (kanon.json).
func KanonJSON() []byte { return mustRead("kanon.json") }

// File returns a checked-in file by its path relative to this directory
// (for example "hierarchies/country.csv").
func File(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("schemas: no checked-in file %q: %w", name, err)
	}
	return b, nil
}

// AggregateSchemaFile returns the checked-in schema file name of the
// aggregate topic agg.<purpose>.<name>, relative to this directory.
func AggregateSchemaFile(purpose, name string) string {
	return "agg/" + purpose + "." + name + ".avsc"
}

// KanonSchemaFile returns the checked-in schema file name of the
// record-level k-anonymous topic clean.<purpose>.kanon.
func KanonSchemaFile(purpose string) string {
	return "clean/" + purpose + ".kanon.avsc"
}

// CleanSchemaFile returns the checked-in clean schema file name of a purpose,
// relative to this directory.
func CleanSchemaFile(purpose string) string {
	return "clean/" + purpose + ".customer-events.avsc"
}

// CleanSchemaJSON returns the checked-in derived clean schema of a purpose.
func CleanSchemaJSON(purpose string) ([]byte, error) {
	b, err := files.ReadFile(CleanSchemaFile(purpose))
	if err != nil {
		return nil, fmt.Errorf("schemas: no checked-in clean schema for purpose %q: %w", purpose, err)
	}
	return b, nil
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("schemas: embedded file missing: " + name) // a build defect, not input
	}
	return b
}

// Classification is the privacy class of a field.
type Classification string

// The classifications a field may carry.
const (
	DirectIdentifier Classification = "direct_identifier"
	QuasiIdentifier  Classification = "quasi_identifier"
	Sensitive        Classification = "sensitive"
	Behavioural      Classification = "behavioural"
	Technical        Classification = "technical"
	FreeText         Classification = "free_text"
)

var validClassifications = map[Classification]bool{
	DirectIdentifier: true, QuasiIdentifier: true, Sensitive: true,
	Behavioural: true, Technical: true, FreeText: true,
}

// SensitiveCategories are the special categories that need explicit consent
// in every jurisdiction (SPEC 3.2).
var SensitiveCategories = []string{"precise_location", "financial", "biometric", "health"}

// Kind is the value kind of a leaf field, as far as field actions care.
type Kind uint8

// Leaf kinds. Other covers types that no action supports (arrays, maps,
// bytes, fixed, enums, nested records without classification): such fields
// may appear in a writer schema but are always unclassified.
const (
	Other Kind = iota
	String
	Boolean
	Int
	Long
	Float
	Double
	Date            // int, logicalType date (days since the epoch)
	TimestampMillis // long, logicalType timestamp-millis
	Geo             // record {lat: double, lon: double}
)

var kindNames = [...]string{"other", "string", "boolean", "int", "long", "float", "double", "date", "timestamp-millis", "geo"}

// String returns the kind's name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Field is one leaf field of an event schema.
type Field struct {
	// Path is the dotted path from the top record, e.g. "address.postal_code".
	Path string
	// Kind is the value kind.
	Kind Kind
	// Nullable is true when the field (or one of its enclosing records) may be null.
	Nullable bool
	// Classification is the privacy class; empty when unclassified.
	Classification Classification
	// SensitiveCategory is set for sensitive fields, e.g. "financial".
	SensitiveCategory string
	// Doc is the field's documentation.
	Doc string
}

// EventSchema is the parsed, classified view of a record schema.
type EventSchema struct {
	// Name is the full name of the record.
	Name string
	// Fields are the leaf fields in schema order.
	Fields []Field
	byPath map[string]int
}

// Field returns the leaf field with the given path.
func (s *EventSchema) Field(path string) (Field, bool) {
	i, ok := s.byPath[path]
	if !ok {
		return Field{}, false
	}
	return s.Fields[i], true
}

// Index returns the position of a leaf path in Fields, or -1.
func (s *EventSchema) Index(path string) int {
	if i, ok := s.byPath[path]; ok {
		return i
	}
	return -1
}

// Paths returns all leaf paths in schema order.
func (s *EventSchema) Paths() []string {
	out := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		out[i] = f.Path
	}
	return out
}

// ParseOptions tunes ParseEventSchema.
type ParseOptions struct {
	// RequireClassification makes an unclassified leaf field an error (true
	// for the checked-in source of truth, false for producers' writer schemas).
	RequireClassification bool
}

// ParseEventSchema parses an Avro record schema into its classified leaf fields.
func ParseEventSchema(schemaJSON []byte, opt ParseOptions) (*EventSchema, error) {
	var root map[string]any
	if err := json.Unmarshal(schemaJSON, &root); err != nil {
		return nil, fmt.Errorf("schemas: not a JSON schema: %w", err)
	}
	if t, _ := root["type"].(string); t != "record" {
		return nil, fmt.Errorf("schemas: top-level type must be record, got %v", root["type"])
	}
	name, _ := root["name"].(string)
	if ns, _ := root["namespace"].(string); ns != "" && !strings.Contains(name, ".") {
		name = ns + "." + name
	}
	s := &EventSchema{Name: name, byPath: map[string]int{}}
	if err := s.walk(root, "", false, opt); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *EventSchema) walk(rec map[string]any, prefix string, nullable bool, opt ParseOptions) error {
	fields, ok := rec["fields"].([]any)
	if !ok {
		return fmt.Errorf("schemas: record %q has no fields", prefix)
	}
	for _, raw := range fields {
		fm, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("schemas: malformed field in record %q", prefix)
		}
		fname, _ := fm["name"].(string)
		if fname == "" {
			return fmt.Errorf("schemas: field without name in record %q", prefix)
		}
		path := fname
		if prefix != "" {
			path = prefix + "." + fname
		}
		class := Classification(str(fm["classification"]))
		if class != "" && !validClassifications[class] {
			return fmt.Errorf("schemas: field %s: unknown classification %q", path, class)
		}
		typ, isNull := unwrapNullable(fm["type"])
		nullableHere := nullable || isNull
		kind := kindOf(typ)
		if sub, ok := typ.(map[string]any); ok && str(sub["type"]) == "record" && kind != Geo {
			if class != "" {
				return fmt.Errorf("schemas: field %s: classification belongs on the leaf fields of a nested record", path)
			}
			if err := s.walk(sub, path, nullableHere, opt); err != nil {
				return err
			}
			continue
		}
		// A geo record is a leaf: its lat/lon are classified as one.
		f := Field{Path: path, Kind: kind, Nullable: nullableHere, Classification: class,
			SensitiveCategory: str(fm["sensitive_category"]), Doc: str(fm["doc"])}
		if class == Sensitive {
			if !contains(SensitiveCategories, f.SensitiveCategory) {
				return fmt.Errorf("schemas: field %s: sensitive field needs sensitive_category in %v", path, SensitiveCategories)
			}
		} else if f.SensitiveCategory != "" {
			return fmt.Errorf("schemas: field %s: sensitive_category on a %q field", path, class)
		}
		if class != "" && kind == Other {
			return fmt.Errorf("schemas: field %s: classified fields must be a primitive, a date, a timestamp-millis or a {lat,lon} record", path)
		}
		if opt.RequireClassification && class == "" {
			return fmt.Errorf("schemas: field %s has no classification", path)
		}
		s.byPath[path] = len(s.Fields)
		s.Fields = append(s.Fields, f)
	}
	return nil
}

// unwrapNullable returns the non-null branch of a ["null", T] union.
func unwrapNullable(t any) (any, bool) {
	u, ok := t.([]any)
	if !ok {
		return t, false
	}
	if len(u) == 2 {
		if str(u[0]) == "null" {
			return u[1], true
		}
		if str(u[1]) == "null" {
			return u[0], true
		}
	}
	return u, false // other unions: Kind Other
}

func kindOf(t any) Kind {
	switch v := t.(type) {
	case string:
		switch v {
		case "string":
			return String
		case "boolean":
			return Boolean
		case "int":
			return Int
		case "long":
			return Long
		case "float":
			return Float
		case "double":
			return Double
		}
		return Other
	case map[string]any:
		base := str(v["type"])
		switch str(v["logicalType"]) {
		case "date":
			if base == "int" {
				return Date
			}
		case "timestamp-millis":
			if base == "long" {
				return TimestampMillis
			}
		}
		if base == "record" && isGeo(v) {
			return Geo
		}
		if base == "record" {
			return Other
		}
		if _, isObj := v["logicalType"]; !isObj {
			return kindOf(base)
		}
	}
	return Other
}

func isGeo(rec map[string]any) bool {
	fields, _ := rec["fields"].([]any)
	if len(fields) != 2 {
		return false
	}
	names := []string{}
	for _, f := range fields {
		fm, _ := f.(map[string]any)
		if str(fm["type"]) != "double" {
			return false
		}
		names = append(names, str(fm["name"]))
	}
	sort.Strings(names)
	return names[0] == "lat" && names[1] == "lon"
}

func str(v any) string { s, _ := v.(string); return s }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RawEvent parses the checked-in raw customer-event schema, requiring every
// leaf to be classified.
func RawEvent() (*EventSchema, error) {
	return ParseEventSchema(RawEventSchemaJSON(), ParseOptions{RequireClassification: true})
}
