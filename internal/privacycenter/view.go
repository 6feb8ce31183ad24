package privacycenter

import (
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/ropa"
)

// purposeView is one purpose as the customer page shows it, generated
// from the record of processing (ropa.Build: the policy and the raw
// schema), so the page and the record cannot say different things.
type purposeView struct {
	Name, Title, Description string
	LegalBasis               string
	RetentionDays            int
	Fields                   []fieldView
	NotUsed                  string
	// The subject's state, filled per request.
	State, StateText, Since string
	Granted                 bool
}

// fieldView is one field a purpose uses, and how.
type fieldView struct {
	Label, How string
	Explicit   bool
}

// describe renders the record's purposes in lang.
func describe(rec ropa.Record, lang string) []purposeView {
	out := make([]purposeView, 0, len(rec.Purposes))
	for _, p := range rec.Purposes {
		v := purposeView{Name: p.Name, Title: text(lang, "purpose."+p.Name, p.Name), RetentionDays: p.RetentionDays,
			Description: p.Description, LegalBasis: text(lang, "basis."+p.LegalBasis, p.LegalBasis)}
		if d, ok := catalogue[lang]["purpose_desc."+p.Name]; ok {
			v.Description = d
		}
		var unused []string
		for _, f := range p.Fields {
			label := text(lang, "field."+f.Field, f.Field)
			if f.Action == "drop" {
				unused = append(unused, label)
				continue
			}
			v.Fields = append(v.Fields, fieldView{Label: label, How: how(lang, f), Explicit: f.ExplicitConsent})
		}
		v.NotUsed = strings.Join(unused, ", ")
		out = append(out, v)
	}
	return out
}

// text is msg with a fallback for names the catalogue lacks (a policy
// newer than this build): the name itself.
func text(lang, key, fallback string) string {
	if s := msg(lang, key); s != key {
		return s
	}
	return fallback
}

// generalisations name a generalised field's outcome by the suffix of its
// output field (the policy's generalizer: fields/policy).
var generalisations = []string{"ip_prefix", "age_band", "geo_cell", "template", "prefix", "hour", "day", "month", "year"}

// how says in plain words what a purpose does with a field.
func how(lang string, f ropa.FieldUse) string {
	if f.Action == "generalize" {
		for _, g := range generalisations {
			if strings.HasSuffix(f.Output, "_"+g) {
				return msg(lang, "gen."+g)
			}
		}
	}
	return text(lang, "action."+f.Action, f.Detail)
}
