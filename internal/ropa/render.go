package ropa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// JSON renders the record as indented JSON, byte for byte the same for the
// same inputs (fixed field order, sorted lists), ending in a newline.
func (r Record) JSON() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		panic(err) // static types only
	}
	return b.Bytes()
}

// cell escapes a value for a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(line(s), "|", `\|`)
	if s == "" {
		return "-"
	}
	return s
}

// line keeps a free-text value on one line, so that no value (a policy
// description, a controller's name) can start a heading, a list item or a
// table row of its own.
func line(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ", ")
}

// Markdown renders the record as a Markdown document, deterministically.
func (r Record) Markdown() []byte {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# %s\n\n", r.Title)
	p("Derived from %s (policy version %s", strings.Join(r.GeneratedFrom, ", "), line(r.PolicyVersion))
	if r.KanonVersion != "" {
		p(", kanon.json version %s", line(r.KanonVersion))
	}
	p(") by `pipeline ropa`. Do not edit: regenerate with `make schemas`; a stale copy fails `TestRecordUpToDate` (internal/ropa).\n\n")

	p("## Controller (Art. 30(1)(a))\n\n")
	p("- Name: %s\n- Contact: %s\n- Data protection officer: %s\n\n", line(r.Controller.Name), line(r.Controller.Contact), line(r.Controller.DPO))

	p("## Purposes and legal bases (Art. 30(1)(b))\n\n")
	p("| Purpose | Description | Legal basis | Retention |\n|---|---|---|---|\n")
	for _, pp := range r.Purposes {
		p("| %s | %s | %s | %d days |\n", pp.Name, cell(pp.Description), cell(pp.LegalBasis), pp.RetentionDays)
	}
	p("\n")

	p("## Categories of data subjects and personal data (Art. 30(1)(c))\n\n")
	for _, s := range r.DataSubjects {
		p("- **%s** (identified by `%s`): %s\n", s.Category, s.Identifier, line(s.Description))
	}
	p("\n| Field | Type | Classification | Sensitive category | Art. 9 special category | Description |\n|---|---|---|---|---|---|\n")
	for _, d := range r.PersonalData {
		special := "no"
		if d.SpecialCategory {
			special = "yes"
		}
		p("| `%s` | %s | %s | %s | %s | %s |\n", d.Field, d.Type, cell(d.Classification), cell(d.SensitiveCategory), special, cell(d.Doc))
	}
	p("\nSensitive fields reach a purpose only with the subject's explicit consent for that purpose.\n\n")

	p("## What each purpose receives, and its recipients (Art. 30(1)(c), (d))\n\n")
	for _, pp := range r.Purposes {
		p("### %s\n\n%s Legal basis: %s. Retention: %d days.\n\n", pp.Name, line(pp.Description), line(pp.LegalBasis), pp.RetentionDays)
		p("| Raw field | Action | How | Clean field |\n|---|---|---|---|\n")
		for _, f := range pp.Fields {
			how := f.Detail
			if f.ExplicitConsent {
				how += "; only with explicit consent"
			}
			if f.Reason != "" {
				how += "; reason: " + f.Reason
			}
			out := "-"
			if f.Output != "" {
				out = "`" + f.Output + "`"
			}
			p("| `%s` | %s | %s | %s |\n", f.Field, f.Action, cell(how), out)
		}
		p("\n")
		for _, rc := range pp.Recipients {
			consumers := "the consumers the ACL file grants purpose " + pp.Name + " (run with --acls to list them)"
			if rc.Consumers != nil {
				consumers = list(rc.Consumers)
			}
			p("- **`%s`** (retention %s): %s.\n  - Fields: %s\n  - Read by processors: %s; consumers: %s\n",
				rc.Topic, rc.Retention, line(rc.Transformation), line(list(rc.Fields)), list(rc.Processors), line(consumers))
		}
		p("\n")
	}

	p("## Transfers to third countries or international organisations (Art. 30(1)(e))\n\n%s\n\n", r.Transfers.Statement)
	for _, t := range r.Transfers.Declared {
		p("- %s\n", line(t))
	}
	if len(r.Transfers.Declared) > 0 {
		p("\n")
	}

	p("## Retention per topic (Art. 30(1)(f))\n\n")
	p("| Topic | Purpose | Restricted | Cleanup | Retention | Written by | Read by | Holds |\n|---|---|---|---|---|---|---|---|\n")
	for _, t := range r.Topics {
		restricted := "no"
		if t.Restricted {
			restricted = "yes"
		}
		p("| `%s` | %s | %s | %s | %s | %s | %s | %s |\n", t.Name, cell(t.Purpose), restricted, cell(t.Cleanup), cell(t.Retention),
			cell(list(t.Writers)), cell(list(t.Readers)), cell(t.Key+": "+t.Holds))
	}
	p("\n")

	p("## Technical and organisational security measures (Art. 30(1)(g), Art. 32)\n\n")
	for _, m := range r.SecurityMeasures {
		p("- **%s.** %s\n", m.Name, line(m.Description))
	}
	return []byte(b.String())
}
