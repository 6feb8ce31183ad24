package ropa

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

var update = flag.Bool("update", false, "rewrite docs/ropa.md and docs/ropa.json")

func root(name string) string { return filepath.Join("..", "..", name) }

func build(t *testing.T, in Inputs) Record {
	t.Helper()
	r, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func defaults(t *testing.T) Inputs {
	t.Helper()
	in, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestRecordUpToDate fails when the checked-in record of processing
// activities (docs/ropa.md, docs/ropa.json) is stale: a schema, policy,
// kanon.json or topology change that was not regenerated. Regenerate with
// make schemas (or go test ./internal/ropa -run TestRecordUpToDate -update).
func TestRecordUpToDate(t *testing.T) {
	in := defaults(t)
	if *update {
		r := build(t, in)
		for file, data := range map[string][]byte{MarkdownFile: r.Markdown(), JSONFile: r.JSON()} {
			if err := os.WriteFile(root(file), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	md, _ := os.ReadFile(root(MarkdownFile))
	js, _ := os.ReadFile(root(JSONFile))
	if err := Check(in, md, js); err != nil {
		t.Error(err)
	}
}

// TestPolicyChangeMakesTheRecordStale (attack: a purpose's retention is
// shortened, or a field starts reaching a purpose, and the record the
// controller shows a regulator keeps the old promise): the staleness
// check fails on the checked-in files for each such change.
func TestPolicyChangeMakesTheRecordStale(t *testing.T) {
	md, err := os.ReadFile(root(MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(root(JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	pol := string(schemas.PolicyJSON())
	for name, changed := range map[string]string{
		"retention":   strings.Replace(pol, `"retention_days": 90`, `"retention_days": 60`, 1),
		"new field":   strings.Replace(pol, `"card_number": {"action": "mask", "mask": "card"}`, `"card_number": {"action": "mask", "mask": "card"}, "gpc": {"action": "keep"}`, 1),
		"description": strings.Replace(pol, "Direct marketing campaigns by e-mail.", "Direct marketing campaigns by e-mail and SMS.", 1),
	} {
		if changed == pol {
			t.Fatalf("%s: the change did not apply to the policy", name)
		}
		in, err := DefaultWithPolicy([]byte(changed))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		err = Check(in, md, js)
		if err == nil || !strings.Contains(err.Error(), MarkdownFile) || !strings.Contains(err.Error(), JSONFile) {
			t.Errorf("%s: the changed policy left the record current: %v", name, err)
		}
	}
}

// TestEveryPurposeAndEveryRawField (attack: a field the policy does not
// list is silently missing from the record, so nobody sees it is
// dropped, or a purpose is left out): every purpose is listed with every
// raw field exactly once, a field the policy does not list as "drop"
// with no clean field, and every other one with the clean field the
// derived schema has.
func TestEveryPurposeAndEveryRawField(t *testing.T) {
	in := defaults(t)
	r := build(t, in)
	md := string(r.Markdown())
	var names []string
	for _, p := range r.Purposes {
		names = append(names, p.Name)
	}
	for _, p := range purpose.All {
		if !slices.Contains(names, p.String()) {
			t.Errorf("purpose %s missing", p)
		}
	}
	if len(r.PersonalData) != len(in.Raw.Fields) {
		t.Errorf("%d personal data categories, the raw schema has %d fields", len(r.PersonalData), len(in.Raw.Fields))
	}
	for _, p := range r.Purposes {
		pur, _ := purpose.Parse(p.Name)
		derived, err := in.Policy.Derive(in.Raw, pur)
		if err != nil {
			t.Fatal(err)
		}
		outputs := map[string]string{}
		for _, f := range derived {
			outputs[f.Source.Path] = f.Name
		}
		if got, want := len(p.Fields), len(in.Raw.Fields); got != want {
			t.Fatalf("%s: %d fields, the raw schema has %d", p.Name, got, want)
		}
		for i, f := range in.Raw.Fields {
			fu := p.Fields[i]
			if fu.Field != f.Path {
				t.Fatalf("%s: field %d is %s, want %s (raw-schema order)", p.Name, i, fu.Field, f.Path)
			}
			_, listed := in.Policy.Purposes[p.Name].Fields[f.Path]
			if !listed && (fu.Action != "drop" || fu.Output != "") {
				t.Errorf("%s: %s is not in the policy but shown as %s -> %q", p.Name, f.Path, fu.Action, fu.Output)
			}
			if fu.Output != outputs[f.Path] {
				t.Errorf("%s: %s: clean field %q, the derived schema has %q", p.Name, f.Path, fu.Output, outputs[f.Path])
			}
			if f.Classification == schemas.Sensitive && fu.Action != "drop" && !fu.ExplicitConsent {
				t.Errorf("%s: sensitive %s not marked explicit consent", p.Name, f.Path)
			}
		}
		if !strings.Contains(md, "### "+p.Name+"\n") {
			t.Errorf("markdown has no section for %s", p.Name)
		}
	}
	// address.street is in no purpose: dropped everywhere, and said so.
	if n := strings.Count(md, "| `address.street` | drop |"); n != purpose.Count {
		t.Errorf("address.street shown dropped %d times, want %d", n, purpose.Count)
	}
	// precise location is sensitive; card_number too.
	for _, d := range r.PersonalData {
		if (d.Field == "location" || d.Field == "card_number") && (d.Classification != "sensitive" || d.SensitiveCategory == "") {
			t.Errorf("%s: %+v", d.Field, d)
		}
	}
}

// TestRecipientsAndRetentionFollowTheTopology: each purpose's recipients
// are its clean topic and the k-anonymity outputs derived from it, with
// the purpose's retention, and the processors the topology says read
// them.
func TestRecipientsAndRetentionFollowTheTopology(t *testing.T) {
	r := build(t, defaults(t))
	want := map[string][]string{
		"analytics":           {"agg.analytics.events_by_segment", "clean.analytics.customer-events"},
		"ai_training":         {"clean.ai_training.customer-events", "clean.ai_training.kanon"},
		"marketing":           {"clean.marketing.customer-events"},
		"personalization":     {"clean.personalization.customer-events"},
		"third_party_sharing": {"clean.third_party_sharing.customer-events"},
	}
	for _, p := range r.Purposes {
		var got []string
		for _, rc := range p.Recipients {
			got = append(got, rc.Topic)
			if rc.RetentionMS != int64(p.RetentionDays)*24*3600*1000 {
				t.Errorf("%s: %s retention %d ms, the purpose keeps %d days", p.Name, rc.Topic, rc.RetentionMS, p.RetentionDays)
			}
			if len(rc.Fields) == 0 {
				t.Errorf("%s: %s lists no fields", p.Name, rc.Topic)
			}
		}
		if !slices.Equal(got, want[p.Name]) {
			t.Errorf("%s: recipients %v, want %v", p.Name, got, want[p.Name])
		}
		if p.Name == "analytics" && !slices.Contains(p.Recipients[1].Processors, topology.KanonAggregates) {
			t.Errorf("analytics clean topic: readers %v lack %s", p.Recipients[1].Processors, topology.KanonAggregates)
		}
	}
}

// TestConsumersFromTheACLFile (attack: a consumer principal granted one
// purpose shows up as a recipient of another, or of a restricted topic):
// with the example ACL file, each consumer is listed only on its own
// purposes' topics.
func TestConsumersFromTheACLFile(t *testing.T) {
	in := defaults(t)
	spec, err := topology.ReadACLSpec(root("deploy/acls.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	in.ACLs = &spec
	r := build(t, in)
	for _, p := range r.Purposes {
		for _, rc := range p.Recipients {
			switch p.Name {
			case "analytics":
				if !slices.Equal(rc.Consumers, []string{"User:analytics-team"}) {
					t.Errorf("%s: consumers %v", rc.Topic, rc.Consumers)
				}
			case "ai_training":
				if !slices.Equal(rc.Consumers, []string{"User:ml-training"}) {
					t.Errorf("%s: consumers %v", rc.Topic, rc.Consumers)
				}
			default:
				if len(rc.Consumers) != 0 {
					t.Errorf("%s: consumers %v", rc.Topic, rc.Consumers)
				}
			}
		}
	}
	for _, tp := range r.Topics {
		if tp.Restricted {
			for _, rd := range tp.Readers {
				if strings.HasPrefix(rd, "consumer") {
					t.Errorf("restricted %s read by %s", tp.Name, rd)
				}
			}
		}
	}
}

// TestJSONIsStableAndMachineReadable: the JSON form decodes back to the
// same record, is byte-identical across builds, and its lists are sorted.
func TestJSONIsStableAndMachineReadable(t *testing.T) {
	in := defaults(t)
	in.Transfers = []string{"b: US, SCCs", "a: CH, adequacy"}
	a, b := build(t, in).JSON(), build(t, in).JSON()
	if !bytes.Equal(a, b) {
		t.Fatal("two builds differ")
	}
	var back Record
	dec := json.NewDecoder(bytes.NewReader(a))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.JSON(), a) {
		t.Fatal("the JSON does not round-trip")
	}
	if !slices.IsSortedFunc(back.Purposes, func(x, y Purpose) int { return strings.Compare(x.Name, y.Name) }) ||
		!slices.IsSortedFunc(back.Topics, func(x, y Topic) int { return strings.Compare(x.Name, y.Name) }) ||
		!slices.IsSorted(back.Transfers.Declared) {
		t.Error("lists not sorted")
	}
	if back.Controller.Name != PlaceholderName {
		t.Errorf("controller %q, want the placeholder", back.Controller.Name)
	}
}

// TestNoKeyMaterialInTheRecord (attack: the record, meant for a
// regulator's eyes and checked in, carries a pseudonym key, a data key or
// a password): the checked-in record holds no secret-looking value: no
// long base64 or hex run and no secret field of a keyring.
func TestNoKeyMaterialInTheRecord(t *testing.T) {
	r := build(t, defaults(t))
	for name, doc := range map[string]string{"markdown": string(r.Markdown()), "json": string(r.JSON())} {
		for _, w := range strings.FieldsFunc(doc, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=')
		}) {
			if len(w) >= 24 && strings.ContainsAny(w, "0123456789") {
				t.Errorf("%s: secret-looking run %q", name, w)
			}
		}
		for _, bad := range []string{`"secret"`, "BEGIN ", "password=", "keyset"} {
			if strings.Contains(strings.ToLower(doc), strings.ToLower(bad)) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

// TestExplicitDropIsNotCalledUnlisted: a field the policy lists with
// action drop is shown as dropped by the policy, a field it leaves out as
// not listed; both reach no clean field.
func TestExplicitDropIsNotCalledUnlisted(t *testing.T) {
	pol := strings.Replace(string(schemas.PolicyJSON()), `"card_number": {"action": "mask", "mask": "card"}`, `"card_number": {"action": "mask", "mask": "card"}, "gpc": {"action": "drop"}`, 1)
	in, err := DefaultWithPolicy([]byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	r := build(t, in)
	for _, p := range r.Purposes {
		for _, f := range p.Fields {
			if f.Field != "gpc" {
				continue
			}
			explicit := p.Name == "third_party_sharing"
			if f.Action != "drop" || f.Output != "" || strings.Contains(f.Detail, "policy says drop") != explicit {
				t.Errorf("%s: gpc %+v", p.Name, f)
			}
		}
	}
}

// FuzzRecordFromPolicy (attack: a policy whose description, legal basis
// or reason holds newlines and Markdown forges a section, a table row or
// a purpose of the record, or a policy the validator accepts makes the
// record fail or leave a field out): for every policy the validator
// accepts, the record builds, its JSON is valid and round-trips, every
// purpose lists every raw field once, and the Markdown has exactly its
// own sections and one table row per raw field and purpose.
func FuzzRecordFromPolicy(f *testing.F) {
	pol := string(schemas.PolicyJSON())
	f.Add(pol)
	f.Add(strings.Replace(pol, "Direct marketing campaigns by e-mail.", `x\n## Controller (Art. 30(1)(a))\n| `+"`address.street`"+` | keep | x | y |`, 1))
	f.Add(strings.Replace(pol, `"legal_basis": "consent"`, `"legal_basis": "legitimate interest\n\n### analytics"`, 1))
	f.Add(strings.Replace(pol, `"reason": "greeting the customer by name in personalised pages they asked for"`, `"reason": "a | b\n| c"`, 1))
	raw, err := schemas.RawEvent()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, policyJSON string) {
		in, err := DefaultWithPolicy([]byte(policyJSON))
		if err != nil {
			return // the validator refused it: no record
		}
		r, err := Build(in)
		if err != nil {
			t.Fatalf("a valid policy failed the record: %v", err)
		}
		js := r.JSON()
		var back Record
		if err := json.Unmarshal(js, &back); err != nil || !bytes.Equal(back.JSON(), js) {
			t.Fatalf("JSON does not round-trip: %v", err)
		}
		if len(r.Purposes) != purpose.Count {
			t.Fatalf("%d purposes", len(r.Purposes))
		}
		for _, p := range r.Purposes {
			if len(p.Fields) != len(raw.Fields) {
				t.Fatalf("%s: %d fields", p.Name, len(p.Fields))
			}
		}
		md := string(r.Markdown())
		var sections, subsections, fieldRows int
		for _, l := range strings.Split(md, "\n") {
			switch {
			case strings.HasPrefix(l, "## "):
				sections++
			case strings.HasPrefix(l, "### "):
				subsections++
			case strings.HasPrefix(l, "| `") && strings.Count(l, "|")-strings.Count(l, `\|`) == 5:
				fieldRows++ // a purpose's field table row (4 cells)
			}
		}
		if sections != 7 || subsections != purpose.Count || fieldRows != purpose.Count*len(raw.Fields) {
			t.Fatalf("markdown has %d sections, %d purposes, %d field rows; want 7, %d, %d", sections, subsections, fieldRows, purpose.Count, purpose.Count*len(raw.Fields))
		}
	})
}
