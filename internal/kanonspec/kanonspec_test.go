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

func TestParseRejects(t *testing.T) {
	base := string(schemas.KanonJSON())
	cases := map[string][2]string{
		"unknown field":          {`"version"`, `"bogus": 1, "version"`},
		"unknown hierarchy":      {`"hierarchy": "gender"}`, `"hierarchy": "nope"}`},
		"missing clean field":    {`"field": "address_country", "hierarchy": "country"}`, `"field": "no_such_field", "hierarchy": "country"}`},
		"keep a pseudonym":       {`"keep": ["event_type"`, `"keep": ["subject_id_pseudonym", "event_type"`},
		"keep free text":         {`"keep": ["event_type"`, `"keep": ["message_redacted", "event_type"`},
		"bad aggregate name":     {`"name": "events_by_segment"`, `"name": "Bad Name"`},
		"numeric on a string":    {`{"field": "gender", "hierarchy": "gender"}`, `{"field": "gender", "numeric": {"span_hours": 1}}`},
		"time is not a time":     {`"time": "event_time"`, `"time": "order_amount"`},
		"missing hierarchy file": {`"file": "hierarchies/gender.csv"`, `"file": "hierarchies/none.csv"`},
	}
	for name, c := range cases {
		if !strings.Contains(base, c[0]) {
			t.Fatalf("%s: fixture text %q not in kanon.json", name, c[0])
		}
		if _, err := Parse([]byte(strings.Replace(base, c[0], c[1], 1))); err == nil {
			t.Errorf("%s: accepted", name)
		}
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
