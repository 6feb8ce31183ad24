package requests

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestDeadlinesPerRegime: GDPR counts calendar months (31 January + 1
// month is the last day of February, not a day of March), its extension
// two more; CCPA 45 days plus 45 and a receipt confirmation within 10
// business days; Decree 13 72 hours and no extension.
func TestDeadlinesPerRegime(t *testing.T) {
	for _, c := range []struct {
		r                 Regime
		at, want, extends string
		confirm           string
	}{
		{GDPR, "2027-01-31T10:00:00Z", "2027-02-28T10:00:00Z", "2027-04-28T10:00:00Z", ""},
		{GDPR, "2028-01-31T10:00:00Z", "2028-02-29T10:00:00Z", "2028-04-29T10:00:00Z", ""},
		{GDPR, "2026-12-03T06:00:00Z", "2027-01-03T06:00:00Z", "2027-03-03T06:00:00Z", ""},
		// Thursday 3 December: 10 business days end on Thursday 17.
		{CCPA, "2026-12-03T06:00:00Z", "2027-01-17T06:00:00Z", "2027-03-03T06:00:00Z", "2026-12-17T06:00:00Z"},
		{PDPA, "2026-12-03T06:00:00Z", "2027-01-02T06:00:00Z", "2027-02-01T06:00:00Z", ""},
		{VNDecree13, "2026-12-03T06:00:00Z", "2026-12-06T06:00:00Z", "", ""},
	} {
		at := day(c.at)
		if got := c.r.Deadline(at); !got.Equal(day(c.want)) {
			t.Errorf("%s from %s: deadline %s, want %s", c.r, c.at, got, c.want)
		}
		ext, ok := c.r.Extend(c.r.Deadline(at))
		if ok != (c.extends != "") || ok && !ext.Equal(day(c.extends)) {
			t.Errorf("%s: extension %s %v, want %q", c.r, ext, ok, c.extends)
		}
		if got := c.r.ConfirmBy(at); c.confirm == "" && !got.IsZero() || c.confirm != "" && !got.Equal(day(c.confirm)) {
			t.Errorf("%s: confirm by %s, want %q", c.r, got, c.confirm)
		}
	}
}

// TestTransitions walks a request through its life and tries the
// transitions that must be refused: running an unverified request,
// extending twice or past the deadline, refusing without a reason,
// reopening a finished one.
func TestTransitions(t *testing.T) {
	now := day("2026-12-03T06:00:00Z")
	r, err := New(NewID(), Erasure, "subject-1", GDPR, "api", "ops", false, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Runnable() {
		t.Fatal("an unverified request is runnable")
	}
	if _, err := r.Start("fulfil", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("started unverified: %v", err)
	}
	if r, err = r.Verify("privacy-team", now); err != nil || !r.Runnable() {
		t.Fatal(err)
	}
	if _, err := r.Extend("ops", " ", now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("extended without a reason: %v", err)
	}
	if _, err := r.Extend("ops", "complex", r.Deadline().Add(time.Second)); !errors.Is(err, ErrTransition) {
		t.Fatalf("extended past the deadline: %v", err)
	}
	if r, err = r.Extend("ops", "many systems to search", now); err != nil || !r.Deadline().Equal(day("2027-03-03T06:00:00Z")) {
		t.Fatalf("%v %s", err, r.Deadline())
	}
	if _, err := r.Extend("ops", "again", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("extended twice: %v", err)
	}
	if r, err = r.Start("fulfil", now); err != nil {
		t.Fatal(err)
	}
	if r, err = r.Finish("fulfil", map[string]int64{"records": 3}, now); err != nil || r.Open() || r.Version != 5 {
		t.Fatalf("%v %+v", err, r)
	}
	if _, err := r.Refuse("ops", "late", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("refused a finished request: %v", err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(r.Marshal())
	if err != nil || back.Version != r.Version || back.Result["records"] != 3 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	a := r.Anonymise("er1.AAAAAAAAAAAAAAAAAAAAAA")
	if a.Subject != "" || a.SubjectMark == "" || a.Validate() != nil || strings.Contains(string(a.Marshal()), "subject-1") {
		t.Fatalf("anonymised: %+v", a)
	}
	if _, err := New(NewID(), Erasure, "subject-1", VNDecree13, "api", "ops", true, now); err != nil {
		t.Fatal(err)
	}
	d13, _ := New(NewID(), Access, "subject-1", VNDecree13, "api", "ops", true, now)
	if _, err := d13.Extend("ops", "busy", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("extended a Decree 13 request: %v", err)
	}
}

// TestFilingShapes reads our shape and the Data Rights Protocol's, and
// refuses what is malformed with a message that names the problem.
func TestFilingShapes(t *testing.T) {
	f, err := ParseFiling([]byte(`{"regime":"ccpa","id":"ticket-7","verified":true}`), Erasure, GDPR)
	if err != nil || f.Kind != Erasure || f.Regime != CCPA || f.ID != "rq_c_ticket-7" || !f.Verified || f.Source != "api" {
		t.Fatalf("%v %+v", err, f)
	}
	f, err = ParseFiling(nil, Access, GDPR)
	if err != nil || f.Kind != Access || f.Regime != GDPR || f.ID != "" {
		t.Fatalf("%v %+v", err, f)
	}
	drp := `{"drp.version":"1.0","exercise":"deletion","regime":"ccpa","agent-request-id":"a-1",
	 "status_callback":"https://agent.example/status","name":"CANARY Name","email":"canary@example.com","relationships":[]}`
	f, err = ParseFiling([]byte(drp), "", GDPR)
	if err != nil || f.Kind != Erasure || f.Regime != CCPA || f.ID != "rq_c_drp-a-1" || f.Source != "drp" || f.Verified {
		t.Fatalf("%v %+v", err, f)
	}
	if strings.Contains(strings.ToLower(f.AgentRequestID+f.StatusCallback), "canary") {
		t.Fatal("an identity attribute was kept")
	}
	f, err = ParseFiling([]byte(`{"exercise":["access:specific"]}`), "", GDPR)
	if err != nil || f.Kind != Access || f.Regime != Voluntary {
		t.Fatalf("%v %+v", err, f)
	}
	for body, want := range map[string]string{
		`[1]`:                                  "not a JSON object",
		`{"kind":"erasure","extra":1}`:         "unknown field",
		`{"kind":"export"}`:                    "kind",
		`{"kind":"access"}`:                    "on the erasure route",
		`{"regime":"mars"}`:                    "regime",
		`{"id":"a b"}`:                         "id must be",
		`{"exercise":"sale:opt-out"}`:          "consent choice",
		`{"exercise":"correction"}`:            "exercise",
		`{"exercise":["access","deletion"]}`:   "one right",
		`{"exercise":"deletion","regime":"x"}`: "regime",
		`{} {}`:                                "JSON object",
	} {
		_, err := ParseFiling([]byte(body), Erasure, GDPR)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// TestRecordsRefused: a record on privacy.requests that is not a valid
// request (a forged status without a reason, an unknown kind, an oversized
// or trailing body, a control character in the subject) is refused before
// anything acts on it.
func TestRecordsRefused(t *testing.T) {
	now := day("2026-12-03T06:00:00Z")
	good, _ := New(NewID(), Access, "s", GDPR, "topic", "ops", true, now)
	for name, mut := range map[string]func(r *Request){
		"version":   func(r *Request) { r.V = 2 },
		"kind":      func(r *Request) { r.Kind = "delete-all" },
		"status":    func(r *Request) { r.Status = "finished" },
		"refusal":   func(r *Request) { r.Status = Refused },
		"id":        func(r *Request) { r.ID = "../../x" },
		"subject":   func(r *Request) { r.Subject = "a\nb" },
		"nosubject": func(r *Request) { r.Subject = "" },
		"deadline":  func(r *Request) { r.DeadlineMS = r.ReceivedMS - 1 },
	} {
		r := good
		mut(&r)
		if _, err := Parse(r.Marshal()); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: accepted: %v", name, err)
		}
	}
	if _, err := Parse(append(good.Marshal(), " {}"...)); err == nil {
		t.Error("trailing data accepted")
	}
	if _, err := Parse([]byte(`{"v":1,"subject_id":"` + strings.Repeat("x", MaxRecord) + `"}`)); err == nil {
		t.Error("an oversized record accepted")
	}
}

func FuzzParse(f *testing.F) {
	r, _ := New("rq_c_x", Erasure, "s", GDPR, "api", "p", true, time.UnixMilli(1_700_000_000_000))
	f.Add(r.Marshal())
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		back, err := Parse(r.Marshal())
		if err != nil || back.ID != r.ID || back.Status != r.Status || back.Subject != r.Subject {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseFiling(f *testing.F) {
	f.Add([]byte(`{"kind":"erasure","regime":"gdpr","id":"t-1","verified":true}`))
	f.Add([]byte(`{"drp.version":"1.0","exercise":"deletion","regime":"ccpa","agent-request-id":"a"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := ParseFiling(b, "", GDPR)
		if err != nil {
			return
		}
		if fl.check("") != nil || fl.ID != "" && !ValidID(fl.ID) {
			t.Fatalf("accepted an invalid filing %+v", fl)
		}
		if _, err := New(NewID(), fl.Kind, "s", fl.Regime, fl.Source, "p", fl.Verified, time.Now()); err != nil {
			t.Fatalf("a parsed filing does not make a request: %v", err)
		}
	})
}
