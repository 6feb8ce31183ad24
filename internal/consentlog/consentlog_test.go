package consentlog

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/purpose"
)

var now = time.Now().UTC().Truncate(time.Millisecond)

func valid() Change {
	return Change{SubjectID: "cust-1", Purpose: purpose.Marketing, State: consent.Withdrawn, Jurisdiction: consent.VNDecree13,
		Source: GPCSignal, PolicyVersion: "2026-11", Timestamp: now, ReceiptID: NewReceiptID()}
}

func TestRoundTrip(t *testing.T) {
	c := valid()
	b, err := Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Fatalf("got %+v want %+v", got, c)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]func(*Change){
		"empty subject":   func(c *Change) { c.SubjectID = " " },
		"long subject":    func(c *Change) { c.SubjectID = strings.Repeat("x", 257) },
		"control char":    func(c *Change) { c.SubjectID = "a\nb" },
		"bad utf8":        func(c *Change) { c.SubjectID = "\xff" },
		"unset state":     func(c *Change) { c.State = consent.Unset },
		"bad purpose":     func(c *Change) { c.Purpose = 42 },
		"bad source":      func(c *Change) { c.Source = "carrier_pigeon" },
		"no policy":       func(c *Change) { c.PolicyVersion = "" },
		"future":          func(c *Change) { c.Timestamp = now.Add(time.Hour) },
		"ancient":         func(c *Change) { c.Timestamp = time.Unix(0, 0) },
		"missing receipt": func(c *Change) { c.ReceiptID = "" },
	}
	for name, mutate := range cases {
		c := valid()
		mutate(&c)
		if err := c.Validate(now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v", name, err)
		}
		if _, err := Encode(&c); err == nil {
			t.Errorf("%s: encoded an invalid change", name)
		}
	}
	c := valid()
	c.SubjectID = "secret-subject-zq"
	c.Timestamp = now.Add(time.Hour)
	if err := c.Validate(now); strings.Contains(err.Error(), "secret-subject-zq") {
		t.Fatal("error echoes the subject id")
	}
}

func TestKeyAndPartitioning(t *testing.T) {
	if SubjectOfKey(Key("a/b", purpose.Analytics)) != "a/b" {
		t.Fatal("subject with a slash")
	}
}

func TestParseCSV(t *testing.T) {
	in := "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp\n" +
		"c1,analytics,granted,gdpr,web_form,v1,\n" +
		"c2,telepathy,granted,gdpr,web_form,v1,\n" +
		"c3,marketing,maybe,gdpr,web_form,v1,\n" +
		",marketing,granted,gdpr,web_form,v1,\n" +
		"c5,marketing,withdrawn,mars,web_form,v1,\n" +
		"c6,marketing,withdrawn,ccpa,import,v1,2026-01-02T03:04:05Z\n" +
		"c7,too,few\n"
	got, bad, err := ParseCSV(strings.NewReader(in), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Timestamp.Year() != 2026 || got[1].Jurisdiction != consent.CCPA {
		t.Fatalf("accepted %+v", got)
	}
	lines := []int{}
	for _, e := range bad {
		lines = append(lines, e.Line)
	}
	if len(bad) != 5 || lines[0] != 3 || lines[4] != 8 {
		t.Fatalf("errors %+v", bad)
	}
	if _, _, err := ParseCSV(strings.NewReader("a,b\n"), now); err == nil {
		t.Fatal("wrong header accepted")
	}
}

func TestParseJSONLines(t *testing.T) {
	in := `{"subject_id":"c1","purpose":"ai_training","state":"denied","jurisdiction":"pdpa","source":"mobile_app","policy_version":"v2"}
not json
{"subject_id":"c2","purpose":"ai_training","state":"denied","source":"mobile_app","policy_version":"v2","extra":1}

{"subject_id":"c3","purpose":"ai_training","state":"granted","source":"mobile_app","policy_version":""}
`
	got, bad, err := ParseJSONLines(strings.NewReader(in), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(bad) != 3 || bad[0].Line != 2 || bad[2].Line != 5 {
		t.Fatalf("got %d, bad %+v", len(got), bad)
	}
}

func FuzzDecode(f *testing.F) {
	c := valid()
	b, _ := Encode(&c)
	f.Add(b)
	f.Add([]byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err == nil {
			if err := c.Validate(time.Now()); err != nil {
				t.Fatalf("decoded an invalid change: %v", err)
			}
		}
	})
}

func FuzzParseImports(f *testing.F) {
	f.Add("subject_id,purpose,state,jurisdiction,source,policy_version,timestamp\nc1,analytics,granted,gdpr,web_form,v1,\n")
	f.Add(`{"subject_id":"c1","purpose":"analytics","state":"granted","source":"web_form","policy_version":"v"}`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func() ([]Change, []LineError, error){
			func() ([]Change, []LineError, error) { return ParseCSV(strings.NewReader(s), now) },
			func() ([]Change, []LineError, error) { return ParseJSONLines(strings.NewReader(s), now) },
		} {
			got, _, _ := parse()
			for _, c := range got {
				if err := c.Validate(now); err != nil {
					t.Fatalf("accepted an invalid change: %v", err)
				}
			}
		}
	})
}
