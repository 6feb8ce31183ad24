package consentlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentstring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/tcfstring"
	"github.com/privacy-pipeline/pipeline/schemas"
)

var now = time.Now().UTC().Truncate(time.Millisecond)

func valid() Change {
	return Change{SubjectID: "cust-1", Purpose: purpose.Marketing, State: consent.Withdrawn, Jurisdiction: consent.VNDecree13,
		GPC: consent.GPCOn, Source: GPCSignal, PolicyVersion: "2026-11", Timestamp: now, ReceiptID: NewReceiptID()}
}

func profile() Change {
	return Change{SubjectID: "cust-2", Purpose: SubjectLevel, Jurisdiction: consent.CCPA, Source: Import,
		PolicyVersion: DefaultProfilePolicyVersion, Timestamp: now, ReceiptID: NewReceiptID()}
}

func TestRoundTrip(t *testing.T) {
	off := valid()
	off.GPC, off.Source = consent.GPCOff, WebForm
	none := valid()
	none.GPC, none.Source, none.Jurisdiction = consent.GPCNotGiven, MobileApp, consent.Unknown
	gpcOnly := profile()
	gpcOnly.Jurisdiction, gpcOnly.GPC, gpcOnly.Source = consent.Unknown, consent.GPCOn, GPCSignal
	both := profile()
	both.GPC = consent.GPCOff
	for _, c := range []Change{valid(), off, none, profile(), gpcOnly, both} {
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
}

// TestDecodeV1 decodes a record written with version 1 of the schema (as
// records already on the topic are): same fields, state not a union, no
// gpc.
func TestDecodeV1(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	for _, src := range []Source{WebForm, GPCSignal} {
		b, err := codecV1.SingleFromNative(nil, map[string]any{
			"subject_id": "cust/9", "purpose": "ai_training", "state": "denied", "jurisdiction": "ccpa", "source": string(src),
			"policy_version": "v1", "timestamp": at, "receipt_id": "r-1",
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		want := Change{SubjectID: "cust/9", Purpose: purpose.AITraining, State: consent.Denied, Jurisdiction: consent.CCPA,
			Source: src, PolicyVersion: "v1", Timestamp: at, ReceiptID: "r-1"}
		if src == GPCSignal {
			want.GPC = consent.GPCOn // a GPC signal records GPC on
		}
		if got != want {
			t.Fatalf("v1 record: got %+v\nwant %+v", got, want)
		}
		// The version-2 encoding of the same change is another record.
		b2, _ := Encode(&got)
		if string(b2[2:10]) == string(b[2:10]) {
			t.Fatal("v1 and v2 share a fingerprint")
		}
	}
	// A v1 codec cannot write a subject-level record; a v2 reader that
	// gets one with a state rejects it.
	b, _ := codec.SingleFromNative(nil, map[string]any{"subject_id": "s", "purpose": "", "state": goavro.Union(stateUnion, "granted"),
		"jurisdiction": "ccpa", "source": "import", "policy_version": "v", "timestamp": at, "receipt_id": "r", "gpc": nil})
	if _, err := Decode(b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("subject-level record with a state: %v", err)
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
		"bad gpc":         func(c *Change) { c.GPC = 7 },
		"bad jur":         func(c *Change) { c.Jurisdiction = 77 },
		"gpc_signal off":  func(c *Change) { c.GPC = consent.GPCOff },
		"gpc_signal none": func(c *Change) { c.GPC = consent.GPCNotGiven },
		"profile state":   func(c *Change) { *c = profile(); c.State = consent.Granted },
		"empty profile":   func(c *Change) { *c = profile(); c.Jurisdiction = consent.Unknown },
		"profile no pv":   func(c *Change) { *c = profile(); c.PolicyVersion = "" },
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
	jur := profile()
	jur.SubjectID = "a/b"
	gpc := jur
	gpc.Jurisdiction, gpc.GPC = consent.Unknown, consent.GPCOn
	both := jur
	both.GPC = consent.GPCOff
	choice := valid()
	choice.SubjectID = "a/b"
	want := map[string]*Change{"a/b/jurisdiction": &jur, "a/b/gpc": &gpc, "a/b/profile": &both, "a/b/marketing": &choice}
	keys := map[string]bool{}
	for _, k := range SubjectKeys("a/b") {
		keys[string(k)] = true
	}
	p := Partitioner().ForTopic("t")
	part := p.Partition(&kgo.Record{Key: Key("a/b", purpose.Analytics)}, 12)
	for k, c := range want {
		if string(c.Key()) != k || SubjectOfKey(c.Key()) != "a/b" || !keys[k] {
			t.Errorf("key %q for %q (in SubjectKeys: %v)", c.Key(), k, keys[k])
		}
		if got := p.Partition(&kgo.Record{Key: c.Key()}, 12); got != part {
			t.Errorf("%s: partition %d, the subject's others are on %d", k, got, part)
		}
	}
	if len(keys) != purpose.Count+3 || string(Key("a/b", SubjectLevel)) != "a/b/profile" {
		t.Fatalf("SubjectKeys %v", keys)
	}
}

func TestRecordsWriteACompanion(t *testing.T) {
	noExtra := valid()
	noExtra.Jurisdiction, noExtra.GPC, noExtra.Source = consent.Unknown, consent.GPCNotGiven, WebForm
	recs, err := Records("t", valid(), noExtra, profile())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range recs {
		keys = append(keys, string(r.Key))
		if r.Topic != "t" {
			t.Fatal("topic")
		}
	}
	// valid() carries vn_decree13 and GPC on: a profile companion follows it.
	if strings.Join(keys, ",") != "cust-1/marketing,cust-1/profile,cust-1/marketing,cust-2/jurisdiction" {
		t.Fatalf("keys %v", keys)
	}
	cp, err := Decode(recs[1].Value)
	if err != nil {
		t.Fatal(err)
	}
	c := valid()
	if !cp.IsSubjectLevel() || cp.Jurisdiction != c.Jurisdiction || cp.GPC != consent.GPCOn || cp.Timestamp != c.Timestamp || cp.Source != c.Source {
		t.Fatalf("companion %+v", cp)
	}
	// Applied after the choice, the companion changes nothing.
	var r consent.Record
	if !c.ApplyTo(&r) || cp.ApplyTo(&r) {
		t.Fatalf("companion changed the record: %+v", r)
	}
	if r.Jurisdiction != consent.VNDecree13 || !r.GPC || r.Purposes[purpose.Marketing].State != consent.Withdrawn {
		t.Fatalf("record %+v", r)
	}
	bad := valid()
	bad.SubjectID = ""
	if _, err := Records("t", profile(), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid change: %v", err)
	}
}

func TestInputChange(t *testing.T) {
	c, err := Input{SubjectID: "s", Jurisdiction: "ccpa", Source: "import"}.Change(now)
	if err != nil || !c.IsSubjectLevel() || c.Jurisdiction != consent.CCPA || c.PolicyVersion != DefaultProfilePolicyVersion || c.GPC != consent.GPCNotGiven {
		t.Fatalf("jurisdiction-only: %+v %v", c, err)
	}
	c, err = Input{SubjectID: "s", Source: "gpc_signal"}.Change(now)
	if err != nil || !c.IsSubjectLevel() || c.GPC != consent.GPCOn {
		t.Fatalf("gpc_signal alone: %+v %v", c, err)
	}
	c, err = Input{SubjectID: "s", Purpose: "marketing", State: "granted", Source: "web_form", PolicyVersion: "v", GPC: "FALSE"}.Change(now)
	if err != nil || c.IsSubjectLevel() || c.GPC != consent.GPCOff {
		t.Fatalf("choice with gpc: %+v %v", c, err)
	}
	for name, in := range map[string]Input{
		"nothing":              {SubjectID: "s", Source: "import"},
		"unknown jurisdiction": {SubjectID: "s", Jurisdiction: "unknown", Source: "import"},
		"gpc_signal off":       {SubjectID: "s", Source: "gpc_signal", GPC: "0"},
		"bad gpc":              {SubjectID: "s", Jurisdiction: "ccpa", Source: "import", GPC: "yes-secret-value"},
		"state only":           {SubjectID: "s", State: "granted", Jurisdiction: "ccpa", Source: "import", PolicyVersion: "v"},
		"purpose only":         {SubjectID: "s", Purpose: "analytics", Jurisdiction: "ccpa", Source: "import", PolicyVersion: "v"},
		"choice, no policy":    {SubjectID: "s", Purpose: "analytics", State: "granted", Source: "import"},
	} {
		if _, err := in.Change(now); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v", name, err)
		}
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

func TestParseCSVSubjectLevelAndGPC(t *testing.T) {
	in := "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp,gpc\n" +
		"c1,,,ccpa,import,,,\n" + // jurisdiction only
		"c2,,,,gpc_signal,,2026-01-02T03:04:05Z,\n" + // GPC signal only
		"c3,,,ccpa,import,v1,,true\n" + // both
		"c4,marketing,granted,,web_form,v1,,0\n" + // a choice that clears GPC
		"c5,,,,import,v1,,\n" + // nothing: rejected
		"c6,,,ccpa,import,v1,,maybe\n" + // bad gpc: rejected
		"c7,,granted,ccpa,import,v1,,\n" + // a state without a purpose: rejected
		"c8,,,unknown,gpc_signal,v1,,false\n" + // gpc_signal with gpc false: rejected
		"c9,,,ccpa,import,v1\n" // too few fields
	got, bad, err := ParseCSV(strings.NewReader(in), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("accepted %+v, errors %+v", got, bad)
	}
	if !got[0].IsSubjectLevel() || got[0].Jurisdiction != consent.CCPA || got[0].GPC != consent.GPCNotGiven {
		t.Errorf("c1 %+v", got[0])
	}
	if !got[1].IsSubjectLevel() || got[1].GPC != consent.GPCOn || got[1].Jurisdiction != consent.Unknown || got[1].Timestamp.Year() != 2026 {
		t.Errorf("c2 %+v", got[1])
	}
	if !got[2].IsSubjectLevel() || got[2].GPC != consent.GPCOn || got[2].Jurisdiction != consent.CCPA {
		t.Errorf("c3 %+v", got[2])
	}
	if got[3].IsSubjectLevel() || got[3].GPC != consent.GPCOff || got[3].Purpose != purpose.Marketing {
		t.Errorf("c4 %+v", got[3])
	}
	var lines []int
	for _, e := range bad {
		lines = append(lines, e.Line)
		if strings.Contains(e.Error, "maybe") {
			t.Errorf("line %d: the message echoes the value: %s", e.Line, e.Error)
		}
	}
	if fmt.Sprint(lines) != "[6 7 8 9 10]" {
		t.Fatalf("errors %+v", bad)
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
	in = `{"subject_id":"c1","jurisdiction":"ccpa","source":"import"}
{"subject_id":"c2","source":"import","gpc":true}
{"subject_id":"c3","purpose":"marketing","state":"granted","source":"web_form","policy_version":"v","gpc":"false"}
{"subject_id":"c4","jurisdiction":"ccpa","source":"import","gpc":null}
{"subject_id":"c5","jurisdiction":"ccpa","source":"import","gpc":1}
{"subject_id":"c6","source":"import","gpc":null}
{"subject_id":"c7","jurisdiction":"ccpa","source":"import","gpc":{}}
`
	got, bad, err = ParseJSONLines(strings.NewReader(in), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || len(bad) != 2 || bad[0].Line != 6 || bad[1].Line != 7 {
		t.Fatalf("got %+v, bad %+v", got, bad)
	}
	if got[1].GPC != consent.GPCOn || got[2].GPC != consent.GPCOff || got[3].GPC != consent.GPCNotGiven || got[4].GPC != consent.GPCOn {
		t.Fatalf("gpc values %+v", got)
	}
}

func TestGPCTextJSON(t *testing.T) {
	type w struct {
		G GPCText `json:"gpc,omitempty"`
	}
	for in, want := range map[GPCText]string{"": `{}`, "true": `{"gpc":true}`, "0": `{"gpc":false}`, "FALSE": `{"gpc":false}`} {
		b, err := json.Marshal(w{in})
		if err != nil || string(b) != want {
			t.Errorf("%q: %s %v, want %s", in, b, err, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	c := valid()
	b, _ := Encode(&c)
	f.Add(b)
	f.Add([]byte{0xC3, 0x01})
	p := profile()
	b, _ = Encode(&p)
	f.Add(b)
	b, _ = codecV1.SingleFromNative(nil, map[string]any{"subject_id": "s", "purpose": "analytics", "state": "granted",
		"jurisdiction": "gdpr", "source": "import", "policy_version": "v", "timestamp": now, "receipt_id": "r"})
	f.Add(b)
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
	f.Add("subject_id,purpose,state,jurisdiction,source,policy_version,timestamp,gpc\nc1,,,ccpa,import,,,1\n")
	f.Add(`{"subject_id":"c1","jurisdiction":"ccpa","source":"gpc_signal","gpc":true}`)
	tc := tcfstring.Encode(4, []int{1, 8, 9}, nil)
	f.Add(`{"subject_id":"c1","source":"import","policy_version":"v","tc_string":"` + tc + `"}`)
	f.Add("subject_id,purpose,state,jurisdiction,source,policy_version,timestamp,gpp_string,gpc\nc1,,,ccpa,import,v,,DBABLA~BVQqAAAAAgA.QA,\n")
	m, err := consentstring.Load(schemas.ConsentStringsJSON())
	if err != nil {
		f.Fatal(err)
	}
	expand := WithConsentStrings(func(kind, s string) (Expansion, error) {
		r, err := m.Expand(consentstring.Kind(kind), s)
		return Expansion{States: r.States, GPC: r.GPC, LastUpdated: r.LastUpdated}, err
	})
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func() ([]Change, []LineError, error){
			func() ([]Change, []LineError, error) { return ParseCSV(strings.NewReader(s), now) },
			func() ([]Change, []LineError, error) { return ParseJSONLines(strings.NewReader(s), now) },
			func() ([]Change, []LineError, error) { return ParseCSV(strings.NewReader(s), now, expand) },
			func() ([]Change, []LineError, error) { return ParseJSONLines(strings.NewReader(s), now, expand) },
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

// Records written before the pipeline used the specification's fingerprint
// carry goavro's (different for this schema: timestamp has a logical type);
// they stay readable, for both schema versions.
func TestDecodeLegacyFingerprint(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	if codec.Rabin == codec.LegacyRabin || codecV1.Rabin == codecV1.LegacyRabin {
		t.Fatal("the consent schemas' legacy fingerprints should differ from the specification's")
	}
	v2, err := codec.Codec.SingleFromNative(nil, map[string]any{
		"subject_id": "cust/9", "purpose": "analytics", "state": goavro.Union(stateUnion, "granted"), "jurisdiction": "gdpr",
		"source": string(WebForm), "policy_version": "v1", "timestamp": at, "receipt_id": "r-1", "gpc": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := codecV1.Codec.SingleFromNative(nil, map[string]any{
		"subject_id": "cust/9", "purpose": "analytics", "state": "granted", "jurisdiction": "gdpr", "source": string(WebForm),
		"policy_version": "v1", "timestamp": at, "receipt_id": "r-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{v2, v1} {
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("legacy record %d: %v", i, err)
		}
		if got.SubjectID != "cust/9" || got.State != consent.Granted || !got.Timestamp.Equal(at) {
			t.Fatalf("legacy record %d: %+v", i, got)
		}
	}
}
