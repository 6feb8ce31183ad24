// Package ropa derives the record of processing activities (GDPR Art.
// 30(1)) from the checked-in declarations: the raw schema and its field
// classifications, the field policy (purposes, legal bases, retention,
// the action on every field), the k-anonymity specification and the
// declared topology (topics, their retention, the processors that read
// them) with, optionally, the ACL file's consumer principals. Nothing in
// the record is written by hand except the controller's identity and the
// declared transfers, which are inputs.
//
// It imports schemas, fields/policy, fields/purpose, kanon/kanonspec and
// topology (the declarations only: it opens no connection and calls no
// Apply). It never sees a key, a secret or a subject id.
package ropa

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

// Placeholders of the controller's identity, printed until the operator
// names the controller (pipeline ropa --controller, --contact, --dpo).
const (
	PlaceholderName    = "<controller's name: set with pipeline ropa --controller>"
	PlaceholderContact = "<controller's contact details: set with pipeline ropa --contact>"
	PlaceholderDPO     = "<data protection officer's contact, if one is designated: set with pipeline ropa --dpo>"
)

// NoTransfers is the transfers statement when none is declared.
const NoTransfers = "No transfer of personal data to a third country or an international organisation is declared. The pipeline itself sends data only to the Kafka cluster, Redis and schema registry it is configured with; declare any transfer (and its safeguards, Art. 46) with pipeline ropa --transfer."

// Controller identifies the controller (Art. 30(1)(a)).
type Controller struct {
	Name    string `json:"name"`
	Contact string `json:"contact"`
	DPO     string `json:"dpo"`
}

// Inputs are what the record is derived from.
type Inputs struct {
	// Controller is the controller's identity; empty fields print their
	// placeholder.
	Controller Controller
	// Transfers declares transfers to third countries or international
	// organisations, one description each (with the safeguards); none:
	// NoTransfers.
	Transfers []string
	// Raw is the classified raw schema.
	Raw *schemas.EventSchema
	// Policy is the validated field policy.
	Policy *policy.Policy
	// Names are the topology's names; Names.Kanon is the k-anonymity
	// specification (nil: none).
	Names topology.Names
	// Topology is the declared topology (its retention from the policy:
	// wiring.Topology).
	Topology topology.Topology
	// ACLs, when set, names the consumer principals of each purpose.
	ACLs *topology.ACLSpec
}

// Default returns the inputs of the checked-in record (docs/ropa.md): the
// embedded raw schema, policy and kanon.json, the default names, the
// topology with each purpose's retention from the policy, placeholders
// for the controller, no transfers and no ACL file.
func Default() (Inputs, error) {
	return DefaultWithPolicy(schemas.PolicyJSON())
}

// DefaultWithPolicy is Default with another policy file's content (a
// policy change must change the record).
func DefaultWithPolicy(policyJSON []byte) (Inputs, error) {
	raw, err := schemas.RawEvent()
	if err != nil {
		return Inputs{}, fmt.Errorf("ropa: %w", err)
	}
	pol, err := policy.Load(policyJSON, raw)
	if err != nil {
		return Inputs{}, fmt.Errorf("ropa: %w", err)
	}
	n := topology.DefaultNames()
	if n.Kanon, err = kanonspec.Default(); err != nil {
		return Inputs{}, fmt.Errorf("ropa: %w", err)
	}
	t := topology.Default(n, topology.Options{PurposeRetention: pol.RetentionByPurpose()})
	return Inputs{Raw: raw, Policy: pol, Names: n, Topology: t}, nil
}

// Record is the record of processing activities. Its JSON form is stable:
// fields in a fixed order, lists sorted (purposes and topics by name,
// personal data in raw-schema order).
type Record struct {
	Title         string     `json:"title"`
	GeneratedFrom []string   `json:"generated_from"`
	PolicyVersion string     `json:"policy_version"`
	KanonVersion  string     `json:"kanon_version,omitempty"`
	Controller    Controller `json:"controller"`
	// DataSubjects are the categories of data subjects (Art. 30(1)(c)).
	DataSubjects []SubjectCategory `json:"data_subjects"`
	// PersonalData are the categories of personal data: every leaf field
	// of the raw schema with its classification (Art. 30(1)(c)).
	PersonalData []DataCategory `json:"personal_data"`
	// Purposes are the processing purposes (Art. 30(1)(b)) with their
	// legal basis, fields, recipients (d) and retention (f).
	Purposes []Purpose `json:"purposes"`
	// Topics are every declared topic with its retention, writers and
	// readers (the storage locations).
	Topics []Topic `json:"topics"`
	// Transfers to third countries (Art. 30(1)(e)).
	Transfers Transfers `json:"transfers"`
	// SecurityMeasures are the technical and organisational measures the
	// pipeline implements (Art. 30(1)(g), Art. 32).
	SecurityMeasures []Measure `json:"security_measures"`
}

// SubjectCategory is one category of data subjects.
type SubjectCategory struct {
	Category    string `json:"category"`
	Identifier  string `json:"identifier"`
	Description string `json:"description"`
}

// DataCategory is one field of the raw schema.
type DataCategory struct {
	Field          string `json:"field"`
	Type           string `json:"type"`
	Classification string `json:"classification"`
	// SensitiveCategory is the schema's sensitive_category (needs the
	// subject's explicit consent for a purpose).
	SensitiveCategory string `json:"sensitive_category,omitempty"`
	// SpecialCategory is true for a special category of Art. 9(1)
	// (health, biometric data).
	SpecialCategory bool   `json:"special_category"`
	Doc             string `json:"doc"`
}

// Purpose is one processing purpose.
type Purpose struct {
	Name          string `json:"name"`
	Description   string `json:"description"`
	LegalBasis    string `json:"legal_basis"`
	RetentionDays int    `json:"retention_days"`
	// Fields are every raw field, in raw-schema order, with what the
	// purpose receives of it ("drop": nothing).
	Fields []FieldUse `json:"fields"`
	// Recipients are the topics the purpose's data land in, with who
	// reads them.
	Recipients []Recipient `json:"recipients"`
}

// FieldUse is what one purpose does with one raw field.
type FieldUse struct {
	Field  string `json:"field"`
	Action string `json:"action"`
	// Detail says how (the generalisation target, the mask, the key).
	Detail string `json:"detail"`
	// Output is the clean field it becomes; empty when dropped.
	Output string `json:"output,omitempty"`
	// ExplicitConsent: the field is sensitive and reaches the purpose only
	// with the subject's explicit consent for it.
	ExplicitConsent bool `json:"explicit_consent,omitempty"`
	// Reason is the policy's stated reason for keeping an identifier.
	Reason string `json:"reason,omitempty"`
}

// Recipient is one topic a purpose's data land in.
type Recipient struct {
	Topic string `json:"topic"`
	// Transformation says what was done before the data reached it.
	Transformation string `json:"transformation"`
	// Fields are the fields its records carry.
	Fields []string `json:"fields"`
	// RetentionMS is the topic's retention.ms; Retention the same in days.
	RetentionMS int64  `json:"retention_ms"`
	Retention   string `json:"retention"`
	// Processors are the pipeline's processors that read it.
	Processors []string `json:"processors"`
	// Consumers are the ACL file's consumer principals that may read it
	// (null without an ACL file).
	Consumers []string `json:"consumers"`
}

// Topic is one declared topic.
type Topic struct {
	Name       string `json:"name"`
	Purpose    string `json:"purpose,omitempty"`
	Restricted bool   `json:"restricted"`
	Key        string `json:"key"`
	Holds      string `json:"holds"`
	Cleanup    string `json:"cleanup_policy"`
	// RetentionMS is the retention.ms the topology sets; -1 when it sets
	// none (a compacted topic keeps each key's latest record).
	RetentionMS int64    `json:"retention_ms"`
	Retention   string   `json:"retention"`
	Writers     []string `json:"writers"`
	Readers     []string `json:"readers"`
}

// Transfers are the declared transfers to third countries.
type Transfers struct {
	Declared  []string `json:"declared"`
	Statement string   `json:"statement"`
}

// Measure is one technical or organisational security measure.
type Measure struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// special are the sensitive categories that are special categories of
// personal data under Art. 9(1).
var special = map[string]bool{"health": true, "biometric": true, "genetic": true}

// Build derives the record.
func Build(in Inputs) (Record, error) {
	if in.Raw == nil || in.Policy == nil {
		return Record{}, errors.New("ropa: the raw schema and the policy are required")
	}
	if err := in.Topology.Validate(); err != nil {
		return Record{}, fmt.Errorf("ropa: %w", err)
	}
	r := Record{
		Title:         "Record of processing activities (GDPR Art. 30(1)): the privacy pipeline",
		GeneratedFrom: []string{"schemas/customer_event.avsc", "schemas/policy.json", "schemas/kanon.json", "topology.Default"},
		PolicyVersion: in.Policy.Version,
		Controller:    in.Controller,
	}
	if in.ACLs != nil {
		r.GeneratedFrom = append(r.GeneratedFrom, "the ACL file (topology apply --acls)")
	}
	if in.Names.Kanon != nil {
		r.KanonVersion = in.Names.Kanon.Version
	}
	if r.Controller.Name == "" {
		r.Controller.Name = PlaceholderName
	}
	if r.Controller.Contact == "" {
		r.Controller.Contact = PlaceholderContact
	}
	if r.Controller.DPO == "" {
		r.Controller.DPO = PlaceholderDPO
	}
	subject, _ := in.Raw.Field("subject_id")
	r.DataSubjects = []SubjectCategory{{
		Category:    "customers",
		Identifier:  "subject_id",
		Description: "The persons the customer events of " + in.Names.Raw + " are about (" + in.Raw.Name + "): " + subject.Doc,
	}}
	for _, f := range in.Raw.Fields {
		r.PersonalData = append(r.PersonalData, DataCategory{
			Field: f.Path, Type: f.Kind.String(), Classification: string(f.Classification),
			SensitiveCategory: f.SensitiveCategory, SpecialCategory: special[f.SensitiveCategory], Doc: f.Doc,
		})
	}
	topics := map[string]*Topic{}
	for _, tp := range in.Topology.Topics {
		t := &Topic{Name: tp.Name, Purpose: tp.Purpose, Restricted: tp.Restricted, Key: tp.Key, Holds: tp.Holds,
			Cleanup: tp.Configs["cleanup.policy"], RetentionMS: -1, Writers: []string{}, Readers: []string{}}
		if v, ok := tp.Configs["retention.ms"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				t.RetentionMS = n
			}
		}
		t.Retention = retention(t.RetentionMS, t.Cleanup) + compaction(tp.Configs)
		if tp.External {
			if in.ACLs == nil {
				t.Writers = append(t.Writers, "external producers (the ACL file's producers)")
			} else {
				for _, pr := range in.ACLs.Producers {
					t.Writers = append(t.Writers, "producer "+pr)
				}
			}
		}
		topics[tp.Name] = t
	}
	for _, p := range in.Topology.Processors {
		for _, out := range p.Outputs {
			topics[out].Writers = append(topics[out].Writers, "processor "+p.Name)
		}
		for _, rd := range slices.Concat(p.Inputs, p.Reads) {
			topics[rd].Readers = append(topics[rd].Readers, "processor "+p.Name)
		}
	}
	consumers := consumersByPurpose(in.ACLs)
	for _, t := range topics {
		if t.Purpose != "" {
			for _, c := range consumers[t.Purpose] {
				t.Readers = append(t.Readers, "consumer "+c)
			}
			if in.ACLs == nil {
				t.Readers = append(t.Readers, "consumers granted purpose "+t.Purpose+" in the ACL file")
			}
		}
		slices.Sort(t.Writers)
		t.Writers = slices.Compact(t.Writers)
		slices.Sort(t.Readers)
		t.Readers = slices.Compact(t.Readers)
		r.Topics = append(r.Topics, *t)
	}
	slices.SortFunc(r.Topics, func(a, b Topic) int { return strings.Compare(a.Name, b.Name) })

	for _, p := range purpose.All {
		pp, err := buildPurpose(in, p, topics, consumers)
		if err != nil {
			return Record{}, err
		}
		r.Purposes = append(r.Purposes, pp)
	}
	slices.SortFunc(r.Purposes, func(a, b Purpose) int { return strings.Compare(a.Name, b.Name) })
	r.Transfers = Transfers{Declared: slices.Sorted(slices.Values(in.Transfers)), Statement: NoTransfers}
	if r.Transfers.Declared == nil {
		r.Transfers.Declared = []string{}
	}
	if len(in.Transfers) > 0 {
		r.Transfers.Statement = "Transfers declared by the controller (pipeline ropa --transfer); the pipeline itself sends data only to the Kafka cluster, Redis and schema registry it is configured with."
	}
	r.SecurityMeasures = measures(in, r)
	return r, nil
}

func consumersByPurpose(acls *topology.ACLSpec) map[string][]string {
	out := map[string][]string{}
	if acls == nil {
		return out
	}
	for _, c := range acls.Consumers {
		for _, p := range c.Purposes {
			out[p] = append(out[p], c.Principal)
		}
	}
	for p := range out {
		slices.Sort(out[p])
	}
	return out
}

func buildPurpose(in Inputs, p purpose.Purpose, topics map[string]*Topic, consumers map[string][]string) (Purpose, error) {
	pp := in.Policy.Purposes[p.String()]
	out := Purpose{Name: p.String(), Description: pp.Description, LegalBasis: pp.LegalBasis, RetentionDays: pp.RetentionDays}
	derived, err := in.Policy.Derive(in.Raw, p)
	if err != nil {
		return out, fmt.Errorf("ropa: %w", err)
	}
	outputs := map[string]string{}
	var cleanFields []string
	for _, f := range derived {
		outputs[f.Source.Path] = f.Name
		cleanFields = append(cleanFields, f.Name)
	}
	for _, f := range in.Raw.Fields {
		rule := in.Policy.Rule(p, f.Path)
		fu := FieldUse{Field: f.Path, Action: string(rule.Action), Detail: detail(rule), Output: outputs[f.Path], Reason: rule.Reason}
		if _, listed := pp.Fields[f.Path]; listed && rule.Action == policy.Drop {
			fu.Detail = "dropped (the policy says drop), never reaches the purpose"
		}
		fu.ExplicitConsent = f.Classification == schemas.Sensitive && rule.Action != policy.Drop
		out.Fields = append(out.Fields, fu)
	}
	clean := in.Names.Clean(p)
	add := func(topic, transformation string, fields []string) {
		t, ok := topics[topic]
		if !ok {
			return
		}
		rc := Recipient{Topic: topic, Transformation: transformation, Fields: fields, RetentionMS: t.RetentionMS, Retention: t.Retention,
			Processors: []string{}, Consumers: nil}
		for _, rd := range t.Readers {
			if name, ok := strings.CutPrefix(rd, "processor "); ok {
				rc.Processors = append(rc.Processors, name)
			}
		}
		if in.ACLs != nil {
			rc.Consumers = append([]string{}, consumers[p.String()]...)
		}
		out.Recipients = append(out.Recipients, rc)
	}
	add(clean, "the field policy of purpose "+p.String()+" (the fields above), after the subject's consent for the purpose is checked; keyed by the purpose's pseudonym", cleanFields)
	if k := in.Names.Kanon; k != nil {
		for _, a := range k.Aggregates {
			if a.Purpose != p.String() {
				continue
			}
			fields, err := avroFields(a.AggregateSchemaJSON())
			if err != nil {
				return out, err
			}
			add(a.TopicFrom(in.Names.AggTemplate), "k-anonymous aggregate "+a.Name+" of "+clean+" (processors "+topology.KanonAggregates+" and "+topology.KanonMerge+"): rows of at least k distinct subjects (PIPELINE_KANON_K) per event-time window over dimensions generalised by their hierarchies, suppressed cells rolled up; no identifier or pseudonym", fields)
		}
		if rec := k.Records; rec != nil && rec.Purpose == p.String() {
			schema, err := rec.KanonSchemaJSON()
			if err != nil {
				return out, fmt.Errorf("ropa: %w", err)
			}
			fields, err := avroFields(schema)
			if err != nil {
				return out, err
			}
			add(rec.TopicFrom(in.Names.KanonTemplate), "record-level k-anonymisation (CASTLE, processor "+topology.KanonRecords+") of "+clean+": each record's quasi-identifiers generalised to those of a cluster of at least k distinct subjects (PIPELINE_CASTLE_K), outliers suppressed; no identifier, pseudonym or free text", fields)
		}
	}
	slices.SortFunc(out.Recipients, func(a, b Recipient) int { return strings.Compare(a.Topic, b.Topic) })
	return out, nil
}

// avroFields returns the top-level field names of a derived Avro record
// schema.
func avroFields(schema []byte) ([]string, error) {
	var rec struct {
		Fields []struct {
			Name string `json:"name"`
		} `json:"fields"`
	}
	if err := json.Unmarshal(schema, &rec); err != nil {
		return nil, fmt.Errorf("ropa: derived schema: %w", err)
	}
	names := make([]string, len(rec.Fields))
	for i, f := range rec.Fields {
		names[i] = f.Name
	}
	return names, nil
}

// detail describes a rule's effect in words.
func detail(r policy.Rule) string {
	switch r.Action {
	case policy.Drop:
		return "not listed in the policy: dropped, never reaches the purpose"
	case policy.Keep:
		return "kept as is"
	case policy.Pseudonymize:
		return "keyed HMAC-SHA256 pseudonym under the purpose's own key (rotatable keyring; key id in header pp-key-id)"
	case policy.Mask:
		if r.Mask == policy.MaskKeepLast {
			return fmt.Sprintf("masked, the last %d characters kept", r.Keep)
		}
		return "masked (" + r.Mask + ")"
	case policy.Redact:
		return "free text with e-mail addresses, phone numbers, card numbers and IP addresses replaced"
	case policy.Encrypt:
		return "encrypted (AES-256-GCM) with the subject's own data key for the purpose; unreadable after erasure (crypto-shredding)"
	case policy.Tokenize:
		return "tokenized (AES-256-SIV, deterministic within the purpose) with the subject's own data key for the purpose; unreadable after erasure (crypto-shredding)"
	case policy.Generalize:
		switch r.To {
		case policy.ToAgeBand:
			return "generalised to an age band"
		case policy.ToYear, policy.ToMonth, policy.ToDay, policy.ToHour:
			return "generalised to the " + r.To
		case policy.ToPrefix:
			return fmt.Sprintf("generalised to its first %d letters and digits", r.Length)
		case policy.ToGeoCell:
			return fmt.Sprintf("generalised to a geohash cell of %d characters", r.Precision)
		case policy.ToIPPrefix:
			return "generalised to its network prefix"
		case policy.ToTemplate:
			return "generalised to the URL's template (ids replaced, query and fragment dropped)"
		}
		return "generalised to " + r.To
	}
	return string(r.Action)
}

// compaction renders the compaction bounds a compacted topic declares.
func compaction(configs map[string]string) string {
	if !strings.Contains(configs["cleanup.policy"], "compact") {
		return ""
	}
	var parts []string
	if v, ok := configs["min.compaction.lag.ms"]; ok && v != "0" {
		parts = append(parts, "every record kept at least "+msText(v))
	}
	if v, ok := configs["max.compaction.lag.ms"]; ok {
		s := "a replaced or tombstoned record due for compaction within " + msText(v) + " (max.compaction.lag.ms)"
		if seg, ok := configs["segment.ms"]; ok {
			s += ", segments rolled every " + msText(seg)
		}
		parts = append(parts, s)
	}
	if v, ok := configs["delete.retention.ms"]; ok {
		parts = append(parts, "tombstones kept "+msText(v))
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

func msText(v string) string {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return v + " ms"
	}
	return retention(n, "delete")
}

// retention renders a retention.ms for people.
func retention(ms int64, cleanup string) string {
	switch {
	case ms < 0 && strings.Contains(cleanup, "compact"):
		return "compacted: each key's latest record is kept until it is replaced or tombstoned"
	case ms < 0:
		return "the broker's default"
	}
	d := time.Duration(ms) * time.Millisecond
	if d%(24*time.Hour) == 0 && d > 0 {
		days := int64(d / (24 * time.Hour))
		if days == 1 {
			return "1 day"
		}
		return strconv.FormatInt(days, 10) + " days"
	}
	if d%time.Hour == 0 && d > 0 {
		if d == time.Hour {
			return "1 hour"
		}
		return strconv.FormatInt(int64(d/time.Hour), 10) + " hours"
	}
	return d.String()
}
