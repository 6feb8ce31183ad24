// Package avroschema owns the Avro Parsing Canonical Form of a schema and
// its CRC-64-AVRO fingerprint, as the Avro specification defines them
// ("Parsing Canonical Form for Schemas" and "Schema Fingerprints"). Every
// fingerprint the pipeline writes into a single-object header or a pp-schema
// header, or looks a writer schema up by, comes from here, so it equals what
// Java Avro, fastavro and every other conforming implementation compute.
//
// goavro's Codec.Rabin is not used: goavro keeps {"type":"long"} for a
// primitive with a logical type where the canonical form has "long" (goavro
// issue 174), so its fingerprints of such schemas are not the standard ones.
//
// The canonical form applies the specification's transformations:
// PRIMITIVES ({"type":"int"} becomes "int"), FULLNAMES (names are written
// fully qualified, namespaces are dropped), STRIP (only type, name, fields,
// symbols, items, values and size are kept: doc, aliases, default, order,
// logicalType and every other attribute go), ORDER (name, type, fields,
// symbols, items, values, size), STRINGS (escapes are decoded), INTEGERS
// (size without quotes or leading zeros) and WHITESPACE (none). A named type
// seen before is written as its full name only.
//
// It imports only the standard library.
package avroschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrInvalidSchema is wrapped by every error of Canonical and Fingerprint:
// the input is not JSON, or not an Avro schema.
var ErrInvalidSchema = errors.New("avroschema: invalid schema")

// maxDepth bounds the nesting of schemas, so hostile input cannot exhaust
// the stack.
const maxDepth = 1000

// primitives are the Avro primitive type names.
var primitives = map[string]bool{
	"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true,
}

// Canonical returns the Parsing Canonical Form of an Avro schema given as
// JSON text.
func Canonical(schemaJSON []byte) ([]byte, error) {
	out, _, err := canonical(schemaJSON)
	return out, err
}

// Fingerprint returns the CRC-64-AVRO (Rabin) fingerprint of the schema's
// Parsing Canonical Form: the fingerprint of Avro single-object encoding,
// whose header carries it little-endian.
func Fingerprint(schemaJSON []byte) (uint64, error) {
	c, err := Canonical(schemaJSON)
	if err != nil {
		return 0, err
	}
	return Rabin(c), nil
}

// MustFingerprint is Fingerprint for schemas that are part of the program
// (checked in, or derived from checked-in files); it panics on an invalid
// schema.
func MustFingerprint(schemaJSON []byte) uint64 {
	fp, err := Fingerprint(schemaJSON)
	if err != nil {
		panic(err)
	}
	return fp
}

// canonical returns the canonical form, and whether it is ambiguous: a named
// type in the null namespace is nested in a namespaced one. The
// specification's canonical form drops namespaces, so parsing such a
// canonical form again puts that type in the enclosing namespace: its own
// canonical form differs (a known gap of the specification, which this
// package follows like Java Avro and fastavro do).
func canonical(schemaJSON []byte) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(schemaJSON))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, false, fmt.Errorf("%w: not JSON: %w", ErrInvalidSchema, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, fmt.Errorf("%w: trailing data after the schema", ErrInvalidSchema)
	}
	w := writer{names: map[string]bool{}, out: make([]byte, 0, len(schemaJSON))}
	if err := w.schema(root, "", 0); err != nil {
		return nil, false, err
	}
	return w.out, w.ambiguous, nil
}

// writer accumulates a canonical form.
type writer struct {
	out       []byte
	names     map[string]bool // full names of the named types defined so far
	ambiguous bool
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSchema, fmt.Sprintf(format, args...))
}

// schema writes one schema; ns is the namespace of the most tightly
// enclosing named type.
func (w *writer) schema(v any, ns string, depth int) error {
	if depth > maxDepth {
		return invalid("nested deeper than %d", maxDepth)
	}
	switch s := v.(type) {
	case string:
		return w.reference(s, ns)
	case []any:
		w.out = append(w.out, '[')
		for i, b := range s {
			if _, isUnion := b.([]any); isUnion {
				return invalid("a union immediately contains a union")
			}
			if i > 0 {
				w.out = append(w.out, ',')
			}
			if err := w.schema(b, ns, depth+1); err != nil {
				return err
			}
		}
		w.out = append(w.out, ']')
		return nil
	case map[string]any:
		t, ok := s["type"].(string)
		if !ok {
			return invalid("a schema object's \"type\" must be a string, got %s", jsonText(s["type"]))
		}
		switch t {
		case "record", "error":
			return w.named(s, "record", ns, depth)
		case "enum", "fixed":
			return w.named(s, t, ns, depth)
		case "array":
			return w.container(s, "items", ns, depth)
		case "map":
			return w.container(s, "values", ns, depth)
		default:
			// A primitive, or (as Java Avro accepts) {"type": "<defined name>"}.
			return w.reference(t, ns)
		}
	default:
		return invalid("a schema must be a string, an array or an object, got %s", jsonText(v))
	}
}

// reference writes a primitive or a reference to a named type defined
// before. A short name is looked up in the enclosing namespace, then in the
// null namespace (as Java Avro does).
func (w *writer) reference(name, ns string) error {
	if primitives[name] {
		w.out = strconv.AppendQuote(w.out, name)
		return nil
	}
	full := name
	if ns != "" && !strings.Contains(name, ".") {
		full = ns + "." + name
	}
	if !w.names[full] {
		if !w.names[name] {
			return invalid("unknown type %q", name)
		}
		full = name
	}
	w.out = append(w.out, '"')
	w.out = append(w.out, full...)
	w.out = append(w.out, '"')
	return nil
}

// container writes an array or a map.
func (w *writer) container(s map[string]any, key, ns string, depth int) error {
	sub, ok := s[key]
	if !ok {
		return invalid("%s schema without %q", s["type"], key)
	}
	w.out = append(w.out, `{"type":"`...)
	w.out = append(w.out, s["type"].(string)...)
	w.out = append(w.out, `","`...)
	w.out = append(w.out, key...)
	w.out = append(w.out, `":`...)
	if err := w.schema(sub, ns, depth+1); err != nil {
		return err
	}
	w.out = append(w.out, '}')
	return nil
}

// named writes the definition of a record, enum or fixed type.
func (w *writer) named(s map[string]any, kind, ns string, depth int) error {
	name, ok := s["name"].(string)
	if !ok {
		return invalid("%s without a string \"name\"", kind)
	}
	full, space := name, ns
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		space = name[:i]
	} else {
		switch nsv := s["namespace"].(type) {
		case nil: // absent or null: the enclosing namespace
		case string:
			space = nsv
		default:
			return invalid("%s %q: namespace must be a string, got %s", kind, name, jsonText(nsv))
		}
		if space != "" {
			full = space + "." + name
		}
	}
	if !ValidFullName(full) {
		return invalid("%q is not a valid Avro name", full)
	}
	if short := full[strings.LastIndexByte(full, '.')+1:]; primitives[short] {
		return invalid("%s name %q is a primitive type name", kind, full)
	}
	if w.names[full] {
		return invalid("type %q defined twice", full)
	}
	w.names[full] = true
	if space == "" && ns != "" {
		w.ambiguous = true
	}
	w.out = append(w.out, `{"name":"`...)
	w.out = append(w.out, full...)
	w.out = append(w.out, `","type":"`...)
	w.out = append(w.out, kind...)
	w.out = append(w.out, `",`...)
	switch kind {
	case "record":
		fields, ok := s["fields"].([]any)
		if !ok {
			return invalid("record %q without a \"fields\" array", full)
		}
		w.out = append(w.out, `"fields":[`...)
		seen := make(map[string]bool, len(fields))
		for i, f := range fields {
			fm, ok := f.(map[string]any)
			if !ok {
				return invalid("record %q: field #%d is not an object", full, i)
			}
			fname, ok := fm["name"].(string)
			if !ok || !ValidName(fname) {
				return invalid("record %q: field #%d: %s is not a valid Avro name", full, i, jsonText(fm["name"]))
			}
			if seen[fname] {
				return invalid("record %q: field %q twice", full, fname)
			}
			seen[fname] = true
			ft, ok := fm["type"]
			if !ok {
				return invalid("record %q: field %q without a type", full, fname)
			}
			if i > 0 {
				w.out = append(w.out, ',')
			}
			w.out = append(w.out, `{"name":"`...)
			w.out = append(w.out, fname...)
			w.out = append(w.out, `","type":`...)
			if err := w.schema(ft, space, depth+1); err != nil {
				return err
			}
			w.out = append(w.out, '}')
		}
		w.out = append(w.out, "]}"...)
	case "enum":
		symbols, ok := s["symbols"].([]any)
		if !ok {
			return invalid("enum %q without a \"symbols\" array", full)
		}
		w.out = append(w.out, `"symbols":[`...)
		seen := make(map[string]bool, len(symbols))
		for i, sym := range symbols {
			str, ok := sym.(string)
			if !ok || !ValidName(str) {
				return invalid("enum %q: symbol %s is not a valid Avro name", full, jsonText(sym))
			}
			if seen[str] {
				return invalid("enum %q: symbol %q twice", full, str)
			}
			seen[str] = true
			if i > 0 {
				w.out = append(w.out, ',')
			}
			w.out = append(w.out, '"')
			w.out = append(w.out, str...)
			w.out = append(w.out, '"')
		}
		w.out = append(w.out, "]}"...)
	case "fixed":
		size, err := fixedSize(s["size"])
		if err != nil {
			return invalid("fixed %q: %v", full, err)
		}
		w.out = append(w.out, `"size":`...)
		w.out = strconv.AppendInt(w.out, size, 10)
		w.out = append(w.out, '}')
	}
	return nil
}

// fixedSize reads the size of a fixed type: a non-negative JSON integer, or
// (INTEGERS: quotes are eliminated) a string holding one.
func fixedSize(v any) (int64, error) {
	var text string
	switch s := v.(type) {
	case json.Number:
		text = string(s)
	case string:
		text = s
	default:
		return 0, fmt.Errorf("size must be an integer, got %s", jsonText(v))
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q is not a non-negative integer", text)
	}
	return n, nil
}

// ValidName reports whether s is an Avro name: [A-Za-z_][A-Za-z0-9_]*.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidFullName reports whether s is a dot-separated sequence of Avro
// names.
func ValidFullName(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if !ValidName(part) {
			return false
		}
	}
	return true
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
