package privacycenter

import (
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"

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
	// The subject's state, filled per request: their choice (State:
	// granted, withdrawn, denied or unset), whether the purpose uses their
	// data now (InUse, consent.Decide on the stored state) and, when that
	// is not what their choice alone says, why (Effect).
	State, StateText, Since string
	Granted                 bool
	InUse                   bool
	Effect                  string
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

// recordOf rebuilds the decision's input from the API's state (gpc: the
// signal recorded, or just now).
func recordOf(st consentapi.State, found, gpc bool) *consent.Record {
	if !found {
		return nil
	}
	rec := &consent.Record{GPC: gpc}
	rec.Jurisdiction, _ = consent.ParseJurisdiction(st.Jurisdiction)
	for _, p := range purpose.All {
		if ps, ok := st.Purposes[p.String()]; ok {
			rec.Purposes[p].State, _ = consent.ParseState(ps.State)
		}
	}
	return rec
}

// effect fills whether the purpose uses the subject's data now, as the
// privacy processor decides it (consent.Decide on the stored record, no
// event claim), and the switch: on when it does, or when the customer's
// own grant is held off by their GPC signal.
func (s *Server) effect(p *purposeView, rec *consent.Record, lang string) {
	pp, err := purpose.Parse(p.Name)
	if err != nil {
		return
	}
	d := consent.Decide(rec, consent.Unknown, false, pp)
	p.InUse = d.Allowed
	p.Granted = d.Allowed || (p.State == "granted" && d.Reason == consent.ReasonGPCOptOut)
	switch {
	case d.Reason == consent.ReasonGPCOptOut:
		p.Effect = msg(lang, "effect_gpc")
	case d.Allowed && p.State != "granted":
		p.Effect = msg(lang, "effect_default")
	}
}
