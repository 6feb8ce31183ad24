package cleancodec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
)

// Type is the value type of a clean field: the non-null branch of its
// ["null", T] union.
type Type uint8

// The supported field types.
const (
	TypeInvalid         Type = iota // the zero Type; never in a compiled schema
	TypeString                      // "string": Value.Bytes (valid UTF-8)
	TypeBytes                       // "bytes": Value.Bytes
	TypeInt                         // "int": Value.Num, within 32 bits
	TypeLong                        // "long": Value.Num
	TypeTimestampMillis             // long with logicalType timestamp-millis: Value.Num, ms since the Unix epoch (UTC)
	TypeFloat                       // "float": Value.F (a float32 widened exactly)
	TypeDouble                      // "double": Value.F
	TypeBoolean                     // "boolean": Value.Num, 0 or 1
)

var typeNames = [...]string{"invalid", "string", "bytes", "int", "long", "timestamp-millis", "float", "double", "boolean"}

// String returns the type's name as written in a schema (timestamp-millis
// for the logical type).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// avroName returns the Avro primitive name of the type's encoding.
func (t Type) avroName() string {
	if t == TypeTimestampMillis {
		return "long"
	}
	return t.String()
}

// Field is one field of a compiled clean schema.
type Field struct {
	// Name is the field's name.
	Name string
	// Type is the non-null branch of the field's ["null", T] union.
	Type Type
}

// schema is a parsed clean record schema of the supported shape.
type schema struct {
	fullName  string
	shortName string
	fields    []Field
	// fingerprint is the CRC-64-AVRO fingerprint of the schema's Parsing
	// Canonical Form (package avroschema).
	fingerprint uint64
}

// primitives maps the Avro primitive names this package supports to types.
var primitives = map[string]Type{
	"string": TypeString, "bytes": TypeBytes, "int": TypeInt, "long": TypeLong,
	"float": TypeFloat, "double": TypeDouble, "boolean": TypeBoolean,
}

// reservedNames may not be a record's short name: Avro forbids primitive
// names, and goavro (the reference codec of the tests and of the producer
// library) mishandles schema keywords equal to the record's short name.
var reservedNames = map[string]bool{
	"null": true, "string": true, "bytes": true, "int": true, "long": true, "float": true,
	"double": true, "boolean": true, "record": true, "enum": true, "array": true, "map": true,
	"fixed": true, "name": true, "type": true, "fields": true, "symbols": true, "items": true,
	"values": true, "size": true,
}

// parseSchema parses an Avro record schema whose every field is a
// ["null", T] union with T a supported primitive.
func parseSchema(schemaJSON []byte) (*schema, error) {
	dec := json.NewDecoder(bytes.NewReader(schemaJSON))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %w", ErrUnsupportedSchema, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the schema", ErrUnsupportedSchema)
	}
	rec, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: top level must be a record object", ErrUnsupportedSchema)
	}
	if t, _ := rec["type"].(string); t != "record" {
		return nil, fmt.Errorf("%w: top-level type must be \"record\", got %v", ErrUnsupportedSchema, rec["type"])
	}
	for _, k := range []string{"symbols", "items", "values", "size"} {
		if _, ok := rec[k]; ok {
			return nil, fmt.Errorf("%w: record has attribute %q", ErrUnsupportedSchema, k)
		}
	}
	name, ok := rec["name"].(string)
	if !ok || !avroschema.ValidFullName(name) {
		return nil, fmt.Errorf("%w: record name %v is not a valid Avro name", ErrUnsupportedSchema, rec["name"])
	}
	s := &schema{fullName: name, shortName: name}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		s.shortName = name[i+1:]
	} else if nsRaw, has := rec["namespace"]; has {
		ns, ok := nsRaw.(string)
		if !ok || (ns != "" && !avroschema.ValidFullName(ns)) {
			return nil, fmt.Errorf("%w: record namespace %v is not a valid Avro namespace", ErrUnsupportedSchema, nsRaw)
		}
		if ns != "" {
			s.fullName = ns + "." + name
		}
	}
	if reservedNames[s.shortName] {
		return nil, fmt.Errorf("%w: record name %q is reserved", ErrUnsupportedSchema, s.shortName)
	}
	rawFields, ok := rec["fields"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: record %s has no fields array", ErrUnsupportedSchema, s.fullName)
	}
	seen := make(map[string]bool, len(rawFields))
	for i, raw := range rawFields {
		f, err := parseField(raw, s.shortName)
		if err != nil {
			return nil, fmt.Errorf("%w (field #%d of %s)", err, i, s.fullName)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("%w: duplicate field %q in %s", ErrUnsupportedSchema, f.Name, s.fullName)
		}
		seen[f.Name] = true
		s.fields = append(s.fields, f)
	}
	fp, err := avroschema.Fingerprint(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedSchema, err)
	}
	s.fingerprint = fp
	return s, nil
}

// parseField parses one field.
func parseField(raw any, recordShortName string) (Field, error) {
	fm, ok := raw.(map[string]any)
	if !ok {
		return Field{}, fmt.Errorf("%w: field is not an object", ErrUnsupportedSchema)
	}
	name, ok := fm["name"].(string)
	if !ok || !avroschema.ValidName(name) {
		return Field{}, fmt.Errorf("%w: field name %v is not a valid Avro name", ErrUnsupportedSchema, fm["name"])
	}
	if name == recordShortName {
		return Field{}, fmt.Errorf("%w: field %q has the record's name", ErrUnsupportedSchema, name)
	}
	for _, k := range []string{"namespace", "fields", "symbols", "items", "values", "size"} {
		if _, ok := fm[k]; ok {
			return Field{}, fmt.Errorf("%w: field %q has attribute %q", ErrUnsupportedSchema, name, k)
		}
	}
	u, ok := fm["type"].([]any)
	if !ok || len(u) != 2 {
		return Field{}, fmt.Errorf("%w: field %q: type must be a union [\"null\", T], got %s", ErrUnsupportedSchema, name, jsonText(fm["type"]))
	}
	if n, _ := u[0].(string); n != "null" {
		return Field{}, fmt.Errorf("%w: field %q: the union's first branch must be \"null\", got %s", ErrUnsupportedSchema, name, jsonText(u[0]))
	}
	t, err := parseBranch(u[1])
	if err != nil {
		return Field{}, fmt.Errorf("%w: field %q: %w", ErrUnsupportedSchema, name, err)
	}
	return Field{Name: name, Type: t}, nil
}

// parseBranch parses the non-null branch of a field's union.
func parseBranch(b any) (Type, error) {
	switch v := b.(type) {
	case string:
		t, ok := primitives[v]
		if !ok {
			return 0, fmt.Errorf("unsupported type %q (want string, long, double, int, boolean, float or bytes)", v)
		}
		return t, nil
	case map[string]any:
		tn, _ := v["type"].(string)
		t, ok := primitives[tn]
		if !ok {
			return 0, fmt.Errorf("unsupported type %s", jsonText(v))
		}
		for _, k := range []string{"name", "namespace", "fields", "symbols", "items", "values", "size"} {
			if _, ok := v[k]; ok {
				return 0, fmt.Errorf("primitive type %s has attribute %q", jsonText(v), k)
			}
		}
		if lt, has := v["logicalType"]; has {
			if lt != "timestamp-millis" || t != TypeLong {
				return 0, fmt.Errorf("unsupported logical type %s (only timestamp-millis on long)", jsonText(v))
			}
			t = TypeTimestampMillis
		}
		return t, nil
	default:
		return 0, fmt.Errorf("unsupported type %s", jsonText(b))
	}
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// SchemaFingerprint returns the single-object fingerprint of a clean schema:
// the CRC-64-AVRO (Rabin) fingerprint of its Parsing Canonical Form, as the
// Avro specification defines it (package avroschema; a logical type such as
// timestamp-millis is not part of the canonical form). It equals bytes 2..9
// of the records processors/privacy writes. The schema must have the shape
// New accepts.
func SchemaFingerprint(schemaJSON []byte) (uint64, error) {
	s, err := parseSchema(schemaJSON)
	if err != nil {
		return 0, err
	}
	return s.fingerprint, nil
}
