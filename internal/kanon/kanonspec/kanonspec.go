// Package kanonspec reads and validates schemas/kanon.json, the declaration
// of the k-anonymity outputs (SPEC 3.6): which aggregates are computed from
// which purpose's clean topic, over which dimensions and hierarchies, and
// which quasi-identifiers the record-level CASTLE stream generalises. It
// derives the Avro schemas of those outputs, so they are checked in and
// checked for staleness like the clean schemas.
//
// It imports the standard library, kanon/hierarchy, purpose and schemas.
package kanonspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Spec is the parsed kanon.json.
type Spec struct {
	Version     string                   `json:"version"`
	Doc         string                   `json:"doc"`
	Hierarchies map[string]HierarchySpec `json:"hierarchies"`
	Aggregates  []Aggregate              `json:"aggregates"`
	Records     *Records                 `json:"records"`
}

// HierarchySpec declares a generalisation hierarchy: an ARX-format CSV file
// (value;level1;...;*) relative to the schemas directory, or a truncation
// hierarchy for prefix codes.
type HierarchySpec struct {
	File     string    `json:"file,omitempty"`
	Truncate *Truncate `json:"truncate,omitempty"`
}

// Truncate is a hierarchy that removes one trailing character per level.
type Truncate struct {
	// Length is the length of a full code.
	Length int `json:"length"`
	// Alphabet is the number of possible characters per position (for the
	// information loss of a prefix).
	Alphabet int `json:"alphabet"`
}

// Aggregate declares one k-anonymous aggregate topic agg.<purpose>.<name>.
type Aggregate struct {
	Name       string      `json:"name"`
	Purpose    string      `json:"purpose"`
	Doc        string      `json:"doc"`
	Time       string      `json:"time"`
	Subject    string      `json:"subject"`
	Amount     string      `json:"amount"`
	Dimensions []Dimension `json:"dimensions"`
}

// Dimension is one grouping dimension of an aggregate.
type Dimension struct {
	Field     string `json:"field"`
	Hierarchy string `json:"hierarchy"`
}

// Records declares the record-level CASTLE stream clean.<purpose>.kanon.
type Records struct {
	Purpose          string            `json:"purpose"`
	Doc              string            `json:"doc"`
	Subject          string            `json:"subject"`
	QuasiIdentifiers []QuasiIdentifier `json:"quasi_identifiers"`
	// Sensitive is the attribute l-diversity counts (when l > 1).
	Sensitive string `json:"sensitive"`
	// Keep lists the non-identifying fields copied as they are, each
	// with its finite domain.
	Keep []Kept `json:"keep"`
}

// Kept is a field of the record-level stream copied as it is. A string
// field names its Domain, a file hierarchy whose leaves are the values it
// may carry (at most MaxKeptDomain); a value outside the domain is
// published as null. A kept value is the same for many records, so it
// cannot link a released record back to one clean record (SPEC 3.6).
type Kept struct {
	Field  string `json:"field"`
	Domain string `json:"domain,omitempty"`
}

// MaxKeptDomain bounds the number of values a kept field's domain may hold:
// a kept field of higher cardinality would single records out.
const MaxKeptDomain = 64

// QuasiIdentifier is one generalised attribute of the record-level stream:
// categorical (Hierarchy) or numeric.
type QuasiIdentifier struct {
	Field     string   `json:"field"`
	Hierarchy string   `json:"hierarchy,omitempty"`
	Numeric   *Numeric `json:"numeric,omitempty"`
}

// Numeric describes a numeric quasi-identifier. Its information loss is the
// published range's width over the domain width; a timestamp's domain is a
// span of hours.
type Numeric struct {
	SpanHours float64 `json:"span_hours,omitempty"`
	Min       float64 `json:"min,omitempty"`
	Max       float64 `json:"max,omitempty"`
}

// Width returns the domain width used for information loss (milliseconds
// for a span of hours).
func (n Numeric) Width() float64 {
	if n.SpanHours > 0 {
		return n.SpanHours * 3600 * 1000
	}
	return n.Max - n.Min
}

// Default topic name templates of the outputs.
const (
	DefaultAggregateTopicTemplate = "agg.{purpose}.{name}"
	DefaultKanonTopicTemplate     = "clean.{purpose}.kanon"
)

// Topic returns the default topic name, agg.<purpose>.<name>.
func (a Aggregate) Topic() string { return a.TopicFrom(DefaultAggregateTopicTemplate) }

// TopicFrom fills a template containing {purpose} and {name}.
func (a Aggregate) TopicFrom(template string) string {
	return strings.NewReplacer("{purpose}", a.Purpose, "{name}", a.Name).Replace(template)
}

// Topic returns the default topic name, clean.<purpose>.kanon.
func (r Records) Topic() string { return r.TopicFrom(DefaultKanonTopicTemplate) }

// TopicFrom fills a template containing {purpose}.
func (r Records) TopicFrom(template string) string {
	return strings.ReplaceAll(template, "{purpose}", r.Purpose)
}

// Default returns the checked-in specification, validated.
func Default() (*Spec, error) { return Parse(schemas.KanonJSON()) }

// CleanField is one field of a derived clean schema.
type CleanField struct {
	Name           string
	Type           string // string, long, double, int, boolean, float
	Logical        string // e.g. timestamp-millis
	Classification string
	Action         string // the policy action that derived it, e.g. keep or pseudonymize
}

// CleanFields returns the fields of a purpose's checked-in clean schema.
func CleanFields(purpose string) ([]CleanField, error) {
	b, err := schemas.CleanSchemaJSON(purpose)
	if err != nil {
		return nil, err
	}
	var rec struct {
		Fields []struct {
			Name           string            `json:"name"`
			Type           []json.RawMessage `json:"type"`
			Classification string            `json:"classification"`
			Action         string            `json:"action"`
		} `json:"fields"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("kanonspec: clean schema %s: %w", purpose, err)
	}
	out := make([]CleanField, 0, len(rec.Fields))
	for _, f := range rec.Fields {
		cf := CleanField{Name: f.Name, Classification: f.Classification, Action: f.Action}
		if len(f.Type) == 2 {
			var prim string
			if json.Unmarshal(f.Type[1], &prim) == nil {
				cf.Type = prim
			} else {
				var lt struct {
					Type    string `json:"type"`
					Logical string `json:"logicalType"`
				}
				if json.Unmarshal(f.Type[1], &lt) == nil {
					cf.Type, cf.Logical = lt.Type, lt.Logical
				}
			}
		}
		out = append(out, cf)
	}
	return out, nil
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// Parse parses and validates a specification against the checked-in clean
// schemas and hierarchy files.
func Parse(b []byte) (*Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("kanonspec: %w", err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Spec) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("kanonspec: "+format, a...)) }
	if s.Version == "" {
		add("version is required")
	}
	for name, h := range s.Hierarchies {
		switch {
		case (h.File == "") == (h.Truncate == nil):
			add("hierarchy %s: give exactly one of file and truncate", name)
		case h.File != "":
			if _, err := s.Build(name); err != nil {
				add("%v", err)
			}
		case h.Truncate.Length < 1 || h.Truncate.Alphabet < 2:
			add("hierarchy %s: truncate needs length >= 1 and alphabet >= 2", name)
		}
	}
	fieldsOf := map[string]map[string]CleanField{}
	fields := func(purpose string) map[string]CleanField {
		if m, ok := fieldsOf[purpose]; ok {
			return m
		}
		list, err := CleanFields(purpose)
		if err != nil {
			add("%v", err)
		}
		m := map[string]CleanField{}
		for _, f := range list {
			m[f.Name] = f
		}
		fieldsOf[purpose] = m
		return m
	}
	hier := func(where, name string) {
		if _, ok := s.Hierarchies[name]; !ok {
			add("%s: unknown hierarchy %q", where, name)
		}
	}
	seen := map[string]bool{}
	for _, a := range s.Aggregates {
		where := "aggregate " + a.Name
		if _, err := purpose.Parse(a.Purpose); err != nil {
			add("%s: %v", where, err)
			continue
		}
		if a.Purpose != s.Aggregates[0].Purpose {
			add("%s: every aggregate must read the same purpose (one processor consumes one clean topic)", where)
		}
		if !nameRE.MatchString(a.Name) || seen[a.Topic()] {
			add("%s: name must be unique and match %s", where, nameRE)
		}
		seen[a.Topic()] = true
		fs := fields(a.Purpose)
		need := func(field, kind string, types ...string) {
			f, ok := fs[field]
			switch {
			case field == "" && kind == "amount":
			case !ok:
				add("%s: %s field %q is not in the %s clean schema", where, kind, field, a.Purpose)
			case len(types) > 0 && !slices.Contains(types, f.Type):
				add("%s: %s field %q has type %s, want %v", where, kind, field, f.Type, types)
			}
		}
		need(a.Time, "time", "long")
		if f := fs[a.Time]; f.Logical != "timestamp-millis" {
			add("%s: time field %q must be a timestamp-millis", where, a.Time)
		}
		need(a.Subject, "subject", "string")
		need(a.Amount, "amount", "double", "float", "long", "int")
		if len(a.Dimensions) == 0 {
			add("%s: at least one dimension is required", where)
		}
		dims := map[string]bool{}
		for _, d := range a.Dimensions {
			need(d.Field, "dimension", "string")
			hier(where+" dimension "+d.Field, d.Hierarchy)
			if dims[d.Field] || reservedAggField(d.Field) {
				add("%s: dimension %q repeated or reserved", where, d.Field)
			}
			dims[d.Field] = true
		}
	}
	if r := s.Records; r != nil {
		where := "records"
		if _, err := purpose.Parse(r.Purpose); err != nil {
			return errors.Join(append(errs, fmt.Errorf("kanonspec: %s: %w", where, err))...)
		}
		fs := fields(r.Purpose)
		if f, ok := fs[r.Subject]; !ok || f.Type != "string" {
			add("%s: subject field %q must be a string field of the %s clean schema", where, r.Subject, r.Purpose)
		}
		if len(r.QuasiIdentifiers) == 0 {
			add("%s: at least one quasi-identifier is required", where)
		}
		qis := map[string]bool{}
		for _, q := range r.QuasiIdentifiers {
			f, ok := fs[q.Field]
			w := where + " quasi-identifier " + q.Field
			switch {
			case !ok:
				add("%s: not in the %s clean schema", w, r.Purpose)
			case qis[q.Field]:
				add("%s: repeated", w)
			case (q.Hierarchy == "") == (q.Numeric == nil):
				add("%s: give exactly one of hierarchy and numeric", w)
			case q.Numeric != nil && !slices.Contains([]string{"long", "int", "double", "float"}, f.Type):
				add("%s: numeric needs a number field, not %s", w, f.Type)
			case q.Numeric != nil && q.Numeric.Width() <= 0:
				add("%s: numeric needs span_hours > 0 or max > min", w)
			case q.Hierarchy != "":
				hier(w, q.Hierarchy)
				if f.Type != "string" {
					add("%s: a hierarchy needs a string field, not %s", w, f.Type)
				}
			}
			qis[q.Field] = true
		}
		if r.Sensitive != "" {
			if _, ok := fs[r.Sensitive]; !ok {
				add("%s: sensitive field %q is not in the %s clean schema", where, r.Sensitive, r.Purpose)
			}
		}
		kept := map[string]bool{}
		for _, k := range r.Keep {
			f, ok := fs[k.Field]
			w := where + " kept field " + strconv.Quote(k.Field)
			switch {
			case !ok:
				add("%s: not in the %s clean schema", w, r.Purpose)
			case qis[k.Field] || kept[k.Field]:
				add("%s: repeated or a quasi-identifier", w)
			case f.Classification != "behavioural" && f.Classification != "technical":
				// Identifiers, quasi-identifiers, sensitive fields and free
				// text would defeat the generalisation.
				add("%s: is %s; only behavioural and technical fields may be kept", w, f.Classification)
			case f.Action == "pseudonymize":
				add("%s: a pseudonym is unique per subject (high cardinality); it can never be kept", w)
			case f.Logical != "" || slices.Contains([]string{"long", "int", "double", "float"}, f.Type):
				add("%s: an exact %s links a record back to the clean topic; declare it a numeric quasi-identifier (published as a range)", w, f.Type)
			case f.Type == "boolean":
				if k.Domain != "" {
					add("%s: a boolean needs no domain", w)
				}
			case f.Type != "string":
				add("%s: type %s cannot be kept", w, f.Type)
			case k.Domain == "":
				add("%s: a kept string needs a finite domain (a file hierarchy of its values), or it may be free-form or high-cardinality", w)
			default:
				s.checkDomain(w, k.Domain, add)
			}
			kept[k.Field] = true
		}
	}
	return errors.Join(errs...)
}

// checkDomain checks that a kept field's domain is a file hierarchy of at
// most MaxKeptDomain values.
func (s *Spec) checkDomain(where, name string, add func(string, ...any)) {
	h, ok := s.Hierarchies[name]
	switch {
	case !ok:
		add("%s: unknown domain %q", where, name)
	case h.File == "":
		add("%s: domain %q must be a file hierarchy listing the values", where, name)
	default:
		t, err := s.Build(name)
		switch {
		case err != nil:
			// Reported for the hierarchy itself.
		case t.TotalLeaves() > MaxKeptDomain:
			add("%s: domain %q has %d values, more than %d: high cardinality", where, name, t.TotalLeaves(), MaxKeptDomain)
		}
	}
}

func reservedAggField(name string) bool {
	switch name {
	case "window_start", "window_end", "level", "margin", "margin_of", "events", "subjects", "amount_sum", "noisy", "k", "epsilon":
		return true
	}
	return false
}

// Hierarchy returns the hierarchy spec and, for a file hierarchy, its
// checked-in contents.
func (s *Spec) Hierarchy(name string) (HierarchySpec, []byte, error) {
	h, ok := s.Hierarchies[name]
	if !ok {
		return h, nil, fmt.Errorf("kanonspec: unknown hierarchy %q", name)
	}
	if h.File == "" {
		return h, nil, nil
	}
	b, err := schemas.File(h.File)
	return h, b, err
}

type avroField struct {
	Name    string `json:"name"`
	Type    any    `json:"type"`
	Default any    `json:"default,omitempty"`
	Doc     string `json:"doc"`
}

type avroRecord struct {
	Type      string      `json:"type"`
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Doc       string      `json:"doc"`
	Fields    []avroField `json:"fields"`
}

var tsMillis = map[string]any{"type": "long", "logicalType": "timestamp-millis"}

func render(rec avroRecord) []byte {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		panic(err) // static types only
	}
	return append(b, '\n')
}

// AggregateSchemaJSON derives the Avro schema of an aggregate topic. Field
// order is the encoding order.
func (a Aggregate) AggregateSchemaJSON() []byte {
	rec := avroRecord{Type: "record", Name: "AggregateRow", Namespace: "privacy.agg." + a.Purpose + "." + a.Name,
		Doc: a.Doc + " k-anonymous: every row covers at least k distinct subjects (field k). Rows of suppressed cells are never published; with roll-up their contributions are regrouped one hierarchy level up (field level). Margin rows (margin=true) are computed only from released rows. Derived from schemas/kanon.json by 'pipeline schemas generate'. Do not edit."}
	rec.Fields = append(rec.Fields,
		avroField{Name: "window_start", Type: tsMillis, Doc: "Start of the tumbling event-time window (inclusive)."},
		avroField{Name: "window_end", Type: tsMillis, Doc: "End of the window (exclusive)."},
		avroField{Name: "level", Type: "int", Doc: "Generalisation level of the dimensions: 0 as in the clean topic, higher is coarser (roll-up)."},
		avroField{Name: "margin", Type: "boolean", Doc: "True for a margin row: a total over released rows only; dimensions not totalled over are '*'."},
		avroField{Name: "margin_of", Type: "string", Doc: "For a margin row, the dimension it breaks down ('' for the grand total); '' for other rows."},
	)
	for _, d := range a.Dimensions {
		rec.Fields = append(rec.Fields, avroField{Name: d.Field, Type: "string",
			Doc: "Dimension " + d.Field + " generalised with hierarchy " + d.Hierarchy + " at the row's level; '*' means all."})
	}
	rec.Fields = append(rec.Fields,
		avroField{Name: "events", Type: "long", Doc: "Number of events (noisy when noisy=true)."},
		avroField{Name: "subjects", Type: "long", Doc: "Number of distinct subjects (pseudonyms), at least k (noisy when noisy=true). On a margin row, the sum of the subjects of the released rows it totals: an upper bound of its people (one in several rows counts in each), never the exact union, which differencing against the rows could turn into a group smaller than k."},
		avroField{Name: "amount_sum", Type: "double", Doc: "Sum of " + orNone(a.Amount) + " (clamped and noisy when noisy=true)."},
		avroField{Name: "noisy", Type: "boolean", Doc: "True when differential privacy noise was added."},
		avroField{Name: "k", Type: "int", Doc: "The k the row was released under."},
		avroField{Name: "epsilon", Type: "double", Doc: "Differential privacy budget per window and subject; 0 when off."},
	)
	return render(rec)
}

func orNone(s string) string {
	if s == "" {
		return "nothing (always 0)"
	}
	return s
}

// KanonSchemaJSON derives the Avro schema of clean.<purpose>.kanon.
func (r Records) KanonSchemaJSON() ([]byte, error) {
	fields, err := CleanFields(r.Purpose)
	if err != nil {
		return nil, err
	}
	byName := map[string]CleanField{}
	for _, f := range fields {
		byName[f.Name] = f
	}
	rec := avroRecord{Type: "record", Name: "KAnonymousEvent", Namespace: "privacy.clean." + r.Purpose + ".kanon",
		Doc: r.Doc + " k-anonymous per CASTLE (Cao et al., IEEE TDSC 2011): every record shares its generalised quasi-identifiers with records of at least k distinct subjects (field k), released within a bounded delay; outliers are suppressed. Numeric quasi-identifiers are [min, max] ranges, categorical ones the lowest common ancestor in their hierarchy ('*' = any). No identifier, pseudonym or free text. Derived from schemas/kanon.json by 'pipeline schemas generate'. Do not edit."}
	rec.Fields = append(rec.Fields,
		avroField{Name: "cluster_id", Type: "string", Doc: "Id of the published cluster (equivalence class) the record belongs to."},
		avroField{Name: "k", Type: "int", Doc: "The k the record was released under."},
		avroField{Name: "info_loss", Type: "double", Doc: "Information loss of the cluster's generalisation (0 = exact, 1 = fully generalised; NCP per Cao et al.)."},
	)
	for _, q := range r.QuasiIdentifiers {
		f := byName[q.Field]
		if q.Numeric != nil {
			var t any = f.Type
			if f.Logical != "" {
				t = map[string]any{"type": f.Type, "logicalType": f.Logical}
			}
			null := ""
			if f.Logical == "" {
				null = " (a record without one counts as " + strconv.FormatFloat(q.Numeric.Min, 'g', -1, 64) + ")"
			}
			rec.Fields = append(rec.Fields,
				avroField{Name: q.Field + "_min", Type: t, Doc: "Lower bound of the cluster's range of " + q.Field + null + "."},
				avroField{Name: q.Field + "_max", Type: t, Doc: "Upper bound of the cluster's range of " + q.Field + null + "."})
			continue
		}
		rec.Fields = append(rec.Fields, avroField{Name: q.Field, Type: "string",
			Doc: q.Field + " generalised to the lowest common ancestor of the cluster in hierarchy " + q.Hierarchy + "."})
	}
	for _, k := range r.Keep {
		f := byName[k.Field]
		doc := "Copied from the clean topic (" + f.Classification + ")."
		if k.Domain != "" {
			doc = "Copied from the clean topic (" + f.Classification + ") when it is one of the values of domain " + k.Domain + " (schemas/kanon.json); null otherwise."
		}
		rec.Fields = append(rec.Fields, avroField{Name: k.Field, Type: []any{"null", f.Type}, Default: json.RawMessage("null"), Doc: doc})
	}
	return render(rec), nil
}

// Derived returns every derived schema file (path relative to the schemas
// directory) and its contents.
func (s *Spec) Derived() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, a := range s.Aggregates {
		out[schemas.AggregateSchemaFile(a.Purpose, a.Name)] = a.AggregateSchemaJSON()
	}
	if s.Records != nil {
		b, err := s.Records.KanonSchemaJSON()
		if err != nil {
			return nil, err
		}
		out[schemas.KanonSchemaFile(s.Records.Purpose)] = b
	}
	return out, nil
}

// String summarises the spec for logs.
func (s *Spec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kanon %s:", s.Version)
	for _, a := range s.Aggregates {
		fmt.Fprintf(&b, " %s", a.Topic())
	}
	if s.Records != nil {
		fmt.Fprintf(&b, " %s", s.Records.Topic())
	}
	return b.String()
}

// Build returns a new instance of a declared hierarchy. Dynamic hierarchies
// (truncation) intern the values they see, so build one per use.
func (s *Spec) Build(name string) (hierarchy.Hierarchy, error) {
	h, b, err := s.Hierarchy(name)
	if err != nil {
		return nil, err
	}
	if h.Truncate != nil {
		t, err := hierarchy.NewTruncation(h.Truncate.Length, h.Truncate.Alphabet)
		if err != nil {
			return nil, fmt.Errorf("kanonspec: hierarchy %s: %w", name, err)
		}
		return t, nil
	}
	t, err := hierarchy.ParseARX(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("kanonspec: hierarchy %s (%s): %w", name, h.File, err)
	}
	return t, nil
}
