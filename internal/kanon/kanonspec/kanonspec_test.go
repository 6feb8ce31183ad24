package kanonspec

import (
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/schemas"
)

func TestDefaultIsValidAndDerivedSchemasParse(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Aggregates) == 0 || s.Records == nil {
		t.Fatal("the checked-in spec declares no aggregate or no record stream")
	}
	derived, err := s.Derived()
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range derived {
		if _, err := goavro.NewCodec(string(b)); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		got, err := schemas.File(path)
		if err != nil || string(got) != string(b) {
			t.Errorf("%s is stale: run 'pipeline schemas generate'", path)
		}
	}
}

func TestKanonSchemaHasNoIdentifiers(t *testing.T) {
	s, _ := Default()
	b, err := s.Records.KanonSchemaJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, forbidden := range []string{"pseudonym", "message", "subject_id", "ip_address", "device"} {
		if strings.Contains(string(b), `"name": "`+forbidden) {
			t.Errorf("kanon schema has a field %q", forbidden)
		}
	}
}

// currencyQI is the last quasi-identifier of the checked-in spec, up to
// the keep list.
const currencyQI = `,
      {"field": "currency", "hierarchy": "currency"}
    ],
    "sensitive": "event_type",
    `

// noCurrency ends the quasi-identifiers without currency.
const noCurrency = `
    ],
    "sensitive": "event_type",
    `

func TestParseRejects(t *testing.T) {
	base := string(schemas.KanonJSON())
	const keepNone, keepCurrency = `"keep": []`, `{"field": "currency", "domain": "currency"}`
	keep := func(fields string) string { return `"keep": [` + fields + `]` }
	// Each case replaces c[0] by c[1], and c[2] by c[3] if given.
	cases := map[string][]string{
		"unknown field":       {`"version"`, `"bogus": 1, "version"`},
		"unknown hierarchy":   {`"hierarchy": "gender"}`, `"hierarchy": "nope"}`},
		"missing clean field": {`"field": "address_country", "hierarchy": "country"}`, `"field": "no_such_field", "hierarchy": "country"}`},
		// Kept fields that would link a released record back to one clean
		// record (SPEC 3.6, issue 11 defect 3).
		"keep a subject pseudonym": {keepNone, keep(`{"field": "subject_id_pseudonym", "domain": "event_type"}`)},
		"keep an event pseudonym":  {keepNone, keep(`{"field": "event_id_pseudonym", "domain": "event_type"}`)},
		"keep free text":           {keepNone, keep(`{"field": "message_redacted", "domain": "event_type"}`)},
		"keep an exact amount": {keepNone, keep(`{"field": "order_amount"}`),
			`{"field": "order_amount", "numeric": {"min": 0, "max": 1000}},`, ""},
		"keep an exact time": {keepNone, keep(`{"field": "event_time_hour"}`),
			`{"field": "event_time_hour", "numeric": {"span_hours": 168}},`, ""},
		"keep a quasi-identifier":  {keepNone, keep(`{"field": "gender", "domain": "gender"}`)},
		"keep a string, no domain": {currencyQI + keepNone, noCurrency + keep(`{"field": "currency"}`)},
		"keep, a prefix domain":    {currencyQI + keepNone, noCurrency + keep(`{"field": "currency", "domain": "postal_prefix_2"}`)},
		"keep, a huge domain":      {currencyQI + keepNone, noCurrency + keep(`{"field": "currency", "domain": "country"}`)},
		"keep, an unknown domain":  {currencyQI + keepNone, noCurrency + keep(`{"field": "currency", "domain": "nope"}`)},
		"keep a field twice":       {currencyQI + keepNone, noCurrency + keep(keepCurrency+", "+keepCurrency)},
		"bad aggregate name":       {`"name": "events_by_segment"`, `"name": "Bad Name"`},
		"numeric on a string":      {`{"field": "gender", "hierarchy": "gender"}`, `{"field": "gender", "numeric": {"span_hours": 1}}`},
		"time is not a time":       {`"time": "event_time"`, `"time": "order_amount"`},
		"missing hierarchy file":   {`"file": "hierarchies/gender.csv"`, `"file": "hierarchies/none.csv"`},
	}
	// The attacks above replace the currency quasi-identifier by a kept
	// field; that replacement itself is valid.
	if _, err := Parse([]byte(strings.Replace(base, currencyQI+keepNone, noCurrency+keep(keepCurrency), 1))); err != nil {
		t.Fatalf("keeping currency with its domain: %v", err)
	}
	for name, c := range cases {
		if !strings.Contains(base, c[0]) {
			t.Fatalf("%s: fixture text %q not in kanon.json", name, c[0])
		}
		text := strings.Replace(base, c[0], c[1], 1)
		if len(c) == 4 {
			if !strings.Contains(base, c[2]) {
				t.Fatalf("%s: fixture text %q not in kanon.json", name, c[2])
			}
			text = strings.Replace(text, c[2], c[3], 1)
		}
		_, err := Parse([]byte(text))
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		t.Logf("%s: %v", name, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(schemas.KanonJSON())
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":"1","aggregates":[{"name":"x","purpose":"analytics"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err == nil {
			if _, err := s.Derived(); err != nil {
				t.Fatalf("a valid spec must derive its schemas: %v", err)
			}
		}
	})
}
