package consentapi

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/tcfstring"
)

// evidence returns, per written consent record, its change and the
// consent string it keeps.
func (e *env) evidence(t *testing.T) (changes []consentlog.Change, ev []string) {
	t.Helper()
	recs, err := kafkaio.ReadAll(context.Background(), kafkaconn.Config{Brokers: e.brokers}, "privacy.consent")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		c, err := consentlog.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, c)
		ev = append(ev, consentlog.EvidenceOf(r))
	}
	return changes, ev
}

// TestConsentStringRecordsChoicesWithEvidence: a TC string posted for a
// subject records a choice per mapped purpose (granted where all its TCF
// purposes have consent, denied otherwise), each record keeping the string
// as evidence; the answer says what was recorded and never echoes the
// string or the subject.
func TestConsentStringRecordsChoicesWithEvidence(t *testing.T) {
	e := newEnv(t)
	tc := tcfstring.Encode(4, []int{1, 8, 9, 10}, nil)
	code, body := e.do(t, "POST", "/v1/subjects/c1/consent-strings", "application/json", `{"tc_string":"`+tc+`","jurisdiction":"gdpr"}`)
	if code != 202 {
		t.Fatalf("%d %s", code, body)
	}
	var rc StringReceipt
	if err := json.Unmarshal([]byte(body), &rc); err != nil {
		t.Fatal(err)
	}
	if rc.States["analytics"] != "granted" || rc.States["ai_training"] != "granted" || rc.States["marketing"] != "denied" || len(rc.Receipts) != 5 || rc.Kind != "tcf" {
		t.Fatalf("%+v", rc)
	}
	if strings.Contains(body, tc) {
		t.Fatal("the answer echoes the string")
	}
	changes, ev := e.evidence(t)
	n := 0
	for i, c := range changes {
		if c.IsSubjectLevel() {
			continue // the jurisdiction's companion record
		}
		n++
		if ev[i] != "tcf:"+tc || !strings.HasPrefix(c.PolicyVersion, "consent-strings:") || c.Source != consentlog.WebForm {
			t.Fatalf("record %d: evidence %q, %+v", i, ev[i], c)
		}
	}
	if n != 5 {
		t.Fatalf("%d purpose records", n)
	}
}

// TestConsentStringRefusals: garbage, a pre-v2.2 TC string, both kinds at
// once, a string with a purpose, an unknown field and an oversized body
// are refused with a 4xx that names the problem, and nothing is written.
func TestConsentStringRefusals(t *testing.T) {
	e := newEnv(t)
	old := tcfstring.Encode(2, []int{1}, nil)
	tc := tcfstring.Encode(4, []int{1}, nil)
	for _, c := range []struct{ body, want string }{
		{`{"tc_string":"garbage!"}`, "malformed"},
		{`{"tc_string":"` + tc[:12] + `\n` + tc[12:] + `"}`, "alphabet"},
		{`{"tc_string":"` + old + `"}`, "predates"},
		{`{"tc_string":"` + old + `","gpp_string":"DBABMA~x"}`, "not both"},
		{`{}`, "give tc_string or gpp_string"},
		{`{"tc_string":"x","purpose":"analytics"}`, "malformed JSON"},
		{`{"gpp_string":"D0SSSSSSSCSSSS00"}`, "Fibonacci"},
		{`{"tc_string":"` + strings.Repeat("C", 20<<10) + `"}`, "larger than"},
	} {
		code, body := e.do(t, "POST", "/v1/subjects/c1/consent-strings", "application/json", c.body)
		if code < 400 || code >= 500 || !strings.Contains(body, c.want) {
			t.Errorf("%.60s: %d %s (want %q)", c.body, code, body, c.want)
		}
	}
	if w := e.written(t); len(w) != 0 {
		t.Fatalf("%d records written", len(w))
	}
}

// TestImportWithConsentStrings: an import line may carry a tc_string or
// gpp_string instead of a purpose and state (JSON lines and CSV); a bad
// string rejects its line only.
func TestImportWithConsentStrings(t *testing.T) {
	e := newEnv(t)
	tc := tcfstring.Encode(5, []int{1, 3, 4}, nil)
	lines := `{"subject_id":"c1","jurisdiction":"gdpr","source":"import","policy_version":"cmp-1","timestamp":"2026-11-01T10:00:00Z","tc_string":"` + tc + `"}
{"subject_id":"c2","jurisdiction":"gdpr","source":"import","policy_version":"cmp-1","timestamp":"2026-11-01T10:00:00Z","tc_string":"nope"}
`
	code, body := e.do(t, "POST", "/v1/consents/import", "application/x-ndjson", lines)
	var res ImportResult
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || res.Accepted != 5 || res.Rejected != 1 || res.Errors[0].Line != 2 {
		t.Fatalf("%d %s", code, body)
	}
	csv := "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp,tc_string\n" +
		"c3,,,gdpr,import,cmp-1,2026-11-01T10:00:00Z," + tc + "\n" +
		"c4,analytics,granted,gdpr,import,cmp-1,2026-11-01T10:00:00Z,\n"
	code, body = e.do(t, "POST", "/v1/consents/import", "text/csv", csv)
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || res.Accepted != 6 || res.Rejected != 0 {
		t.Fatalf("csv: %d %s", code, body)
	}
	changes, ev := e.evidence(t)
	marketing := 0
	for i, c := range changes {
		if c.SubjectID == "c4" && ev[i] != "" {
			t.Fatal("a plain line kept evidence")
		}
		if (c.SubjectID == "c1" || c.SubjectID == "c3") && !c.IsSubjectLevel() && c.Purpose.String() == "marketing" {
			if c.State.String() != "granted" || ev[i] != "tcf:"+tc {
				t.Fatalf("%+v %q", c, ev[i])
			}
			marketing++
		}
	}
	if marketing != 2 {
		t.Fatalf("%d marketing grants", marketing)
	}
}

// TestOldConsentStringDoesNotOutweighNewerChoices: a TC string last
// updated three months ago records its choices at that day's end, not
// now, so consent-sync's newer-wins keeps a withdrawal made since.
func TestOldConsentStringDoesNotOutweighNewerChoices(t *testing.T) {
	e := newEnv(t)
	then := time.Now().AddDate(0, -3, 0)
	tc := tcfstring.EncodeAt(then, 4, []int{1, 3, 4}, nil)
	if code, body := e.do(t, "POST", "/v1/subjects/c1/consent-strings", "application/json", `{"tc_string":"`+tc+`"}`); code != 202 {
		t.Fatalf("%d %s", code, body)
	}
	for _, c := range e.written(t) {
		if d := c.Timestamp.Sub(then); d < 0 || d > 24*time.Hour+time.Second {
			t.Fatalf("stamped %s for a string of %s", c.Timestamp, then)
		}
	}
}
