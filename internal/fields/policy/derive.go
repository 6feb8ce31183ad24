package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// OutField is one field of a purpose's clean record: where it comes from and
// how it is made.
type OutField struct {
	// Name is the clean field name, e.g. "birth_date_age_band".
	Name string
	// Source is the raw field it is made from.
	Source schemas.Field
	// SourceIndex is the position of Source in the raw schema's Fields.
	SourceIndex int
	// Rule is the policy rule that makes it.
	Rule Rule
	// Kind is the clean value kind. Every clean field is nullable.
	Kind schemas.Kind
}

// Derive returns the clean output fields of a purpose, in raw-schema order.
// The policy must have been validated against raw.
func (p *Policy) Derive(raw *schemas.EventSchema, pur purpose.Purpose) ([]OutField, error) {
	var out []OutField
	for i, f := range raw.Fields {
		r := p.Rule(pur, f.Path)
		if r.Action == Drop {
			continue
		}
		of := OutField{Source: f, SourceIndex: i, Rule: r}
		base := strings.ReplaceAll(f.Path, ".", "_")
		switch r.Action {
		case Keep:
			of.Name, of.Kind = base, f.Kind
		case Pseudonymize:
			of.Name, of.Kind = base+"_pseudonym", schemas.String
		case Mask:
			of.Name, of.Kind = base+"_masked", schemas.String
		case Redact:
			of.Name, of.Kind = base+"_redacted", schemas.String
		case Encrypt:
			of.Name, of.Kind = base+"_encrypted", schemas.String
		case Tokenize:
			of.Name, of.Kind = base+"_token", schemas.String
		case Generalize:
			k, err := generalizedKind(f, r)
			if err != nil {
				return nil, fmt.Errorf("policy: purpose %s: field %s: %w", pur, f.Path, err)
			}
			of.Name, of.Kind = base+"_"+r.To, k
		default:
			return nil, fmt.Errorf("policy: purpose %s: field %s: action %q cannot be derived", pur, f.Path, r.Action)
		}
		out = append(out, of)
	}
	return out, nil
}

// CleanRecordName is the Avro full name of a purpose's clean record.
func CleanRecordName(pur purpose.Purpose) string {
	return "privacy.clean." + pur.String() + ".CustomerEvent"
}

// CleanSchemaJSON renders the derived clean Avro schema of a purpose,
// deterministically (the checked-in files are compared byte for byte).
func CleanSchemaJSON(pur purpose.Purpose, fields []OutField) []byte {
	type avroField struct {
		Name           string `json:"name"`
		Type           any    `json:"type"`
		Default        any    `json:"default"`
		Doc            string `json:"doc"`
		Source         string `json:"source_field"`
		Action         string `json:"action"`
		Classification string `json:"classification"`
	}
	type avroRecord struct {
		Type      string      `json:"type"`
		Name      string      `json:"name"`
		Namespace string      `json:"namespace"`
		Doc       string      `json:"doc"`
		Fields    []avroField `json:"fields"`
	}
	rec := avroRecord{
		Type: "record", Name: "CustomerEvent", Namespace: "privacy.clean." + pur.String(),
		Doc: "Clean customer event for purpose " + pur.String() + ", derived from privacy.raw.CustomerEvent and schemas/policy.json by 'pipeline schemas generate'. Do not edit. Records are in the Confluent Schema Registry wire format (or Avro single-object encoded, PIPELINE_WIRE_FORMAT); headers carry the policy version, consent version and pseudonym key id.",
	}
	for _, f := range fields {
		rec.Fields = append(rec.Fields, avroField{
			Name: f.Name, Type: []any{"null", avroType(f.Kind)}, Default: nil,
			Doc: outDoc(f), Source: f.Source.Path, Action: describeRule(f.Rule),
			Classification: string(f.Source.Classification),
		})
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		panic(err) // static types only
	}
	return append(b, '\n')
}

func avroType(k schemas.Kind) any {
	switch k {
	case schemas.String:
		return "string"
	case schemas.Boolean:
		return "boolean"
	case schemas.Int:
		return "int"
	case schemas.Long:
		return "long"
	case schemas.Float:
		return "float"
	case schemas.Double:
		return "double"
	case schemas.Date:
		return map[string]any{"type": "int", "logicalType": "date"}
	case schemas.TimestampMillis:
		return map[string]any{"type": "long", "logicalType": "timestamp-millis"}
	case schemas.Geo:
		return map[string]any{"type": "record", "name": "GeoPoint", "fields": []any{
			map[string]any{"name": "lat", "type": "double"},
			map[string]any{"name": "lon", "type": "double"},
		}}
	}
	panic("policy: no Avro type for kind " + k.String())
}

func describeRule(r Rule) string {
	switch r.Action {
	case Generalize:
		s := "generalize:" + r.To
		if r.Length > 0 {
			s += fmt.Sprintf(":%d", r.Length)
		}
		if r.Precision > 0 {
			s += fmt.Sprintf(":%d", r.Precision)
		}
		return s
	case Mask:
		return "mask:" + r.Mask
	}
	return string(r.Action)
}

func outDoc(f OutField) string {
	switch f.Rule.Action {
	case Keep:
		return f.Source.Doc
	case Pseudonymize:
		return "Keyed HMAC-SHA256 pseudonym (per purpose key, id in header pp-key-id) of " + f.Source.Path + "."
	case Mask:
		return "Masked " + f.Source.Path + " (" + f.Rule.Mask + ")."
	case Redact:
		return f.Source.Path + " with e-mail addresses, phone numbers, card numbers and IP addresses replaced by [EMAIL], [PHONE], [CARD], [IP]."
	case Generalize:
		return f.Source.Path + " generalised to " + f.Rule.To + "."
	case Encrypt:
		return f.Source.Path + " encrypted (AES-256-GCM, randomised) with the subject's data key for this purpose, \"e1.\" + base64url; key id in header pp-data-key; unreadable once the subject is erased."
	case Tokenize:
		return f.Source.Path + " tokenized (AES-256-SIV, deterministic: equal values of one subject give equal tokens) with the subject's data key for this purpose, \"t1.\" + base64url; key id in header pp-data-key; unreadable once the subject is erased."
	}
	return ""
}
