package policy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/schemas"
)

var update = flag.Bool("update", false, "rewrite the derived clean schemas in schemas/clean")

func loadChecked(t *testing.T) (*schemas.EventSchema, *Policy) {
	t.Helper()
	raw, err := schemas.RawEvent()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(schemas.PolicyJSON(), raw)
	if err != nil {
		t.Fatalf("checked-in policy is invalid: %v", err)
	}
	return raw, p
}

// TestCleanSchemasUpToDate fails when a checked-in derived clean schema is
// stale. Regenerate with: go run ./cmd/pipeline schemas generate
// (or go test ./internal/fields/policy -run TestCleanSchemasUpToDate -update).
func TestCleanSchemasUpToDate(t *testing.T) {
	raw, p := loadChecked(t)
	for _, pur := range purpose.All {
		fields, err := p.Derive(raw, pur)
		if err != nil {
			t.Fatal(err)
		}
		want := CleanSchemaJSON(pur, fields)
		if _, err := goavro.NewCodec(string(want)); err != nil {
			t.Fatalf("%s: derived schema is not valid Avro: %v", pur, err)
		}
		if *update {
			path := filepath.Join("..", "..", "schemas", schemas.CleanSchemaFile(pur.String()))
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := schemas.CleanSchemaJSON(pur.String())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("schemas/%s is stale: run 'go run ./cmd/pipeline schemas generate'", schemas.CleanSchemaFile(pur.String()))
		}
	}
}

func TestDerivedFieldsNeverCarryRawDirectIdentifiers(t *testing.T) {
	raw, p := loadChecked(t)
	for _, pur := range purpose.All {
		fields, _ := p.Derive(raw, pur)
		for _, f := range fields {
			if f.Source.Path == "subject_id" && f.Rule.Action != Pseudonymize {
				t.Errorf("%s: subject_id is %s", pur, f.Rule.Action)
			}
			if f.Source.Classification == schemas.DirectIdentifier && f.Rule.Action == Keep && f.Rule.Reason == "" {
				t.Errorf("%s: %s kept without reason", pur, f.Source.Path)
			}
		}
	}
}

func TestValidateRejects(t *testing.T) {
	raw, _ := loadChecked(t)
	base := func(fields string) string {
		var b strings.Builder
		b.WriteString(`{"version":"t","purposes":{`)
		for i, pur := range purpose.All {
			if i > 0 {
				b.WriteString(",")
			}
			f := `"subject_id":{"action":"pseudonymize"}`
			if pur == purpose.Analytics && fields != "" {
				f += "," + fields
			}
			b.WriteString(`"` + pur.String() + `":{"retention_days":30,"fields":{` + f + `}}`)
		}
		b.WriteString("}}")
		return b.String()
	}
	cases := []struct{ name, policy, want string }{
		{"unknown field", base(`"shoe_size":{"action":"keep"}`), `unknown field "shoe_size"`},
		{"unknown action", base(`"email":{"action":"scramble"}`), `unknown action "scramble"`},
		{"direct identifier kept without reason", base(`"email":{"action":"keep"}`), "needs a stated reason"},
		{"free text kept without reason", base(`"message":{"action":"keep"}`), "needs a stated reason"},
		{"generalize wrong type", base(`"email":{"action":"generalize","to":"age_band"}`), "does not apply"},
		{"unknown generalisation", base(`"birth_date":{"action":"generalize","to":"decade"}`), "unknown generalisation"},
		{"prefix without length", base(`"address.postal_code":{"action":"generalize","to":"prefix"}`), "length"},
		{"mask non-string", base(`"order_amount":{"action":"mask","mask":"card"}`), "mask needs a string"},
		{"unknown mask", base(`"email":{"action":"mask","mask":"stars"}`), "unknown mask"},
		{"encrypt non-string", base(`"order_amount":{"action":"encrypt"}`), "encrypt needs a string"},
		{"tokenize non-string", base(`"birth_date":{"action":"tokenize"}`), "tokenize needs a string"},
		{"unknown purpose", strings.Replace(base(""), `"marketing"`, `"telepathy"`, 1), `unknown purpose "telepathy"`},
		{"missing version", strings.Replace(base(""), `"version":"t"`, `"version":""`, 1), "version is empty"},
		{"subject kept", strings.Replace(base(""), `"subject_id":{"action":"pseudonymize"}`, `"subject_id":{"action":"keep","reason":"x"}`, 1), "subject_id must be pseudonymize"},
		{"event id kept", base(`"event_id":{"action":"keep"}`), "event_id kept as is"},
		{"unknown json key", strings.Replace(base(""), `"version"`, `"colour":1,"version"`, 1), "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load([]byte(c.policy), raw)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
		})
	}
	if _, err := Load([]byte(base(`"email":{"action":"keep","reason":"needed for delivery"}`)), raw); err != nil {
		t.Fatalf("valid policy rejected: %v", err)
	}
}

// TestEncryptAndTokenizeDerive: encrypt and tokenize are accepted on
// string fields and derive nullable string fields named _encrypted and
// _token; the purpose then needs data keys, the others do not.
func TestEncryptAndTokenizeDerive(t *testing.T) {
	raw, _ := loadChecked(t)
	doc := `{"version":"t","purposes":{`
	for i, pur := range purpose.All {
		if i > 0 {
			doc += ","
		}
		f := `"subject_id":{"action":"pseudonymize"}`
		if pur == purpose.Personalization {
			f += `,"email":{"action":"encrypt"},"phone":{"action":"tokenize"}`
		}
		doc += `"` + pur.String() + `":{"retention_days":30,"fields":{` + f + `}}`
	}
	p, err := Load([]byte(doc+`}}`), raw)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := p.Derive(raw, purpose.Personalization)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]schemas.Kind{}
	for _, f := range fields {
		names[f.Name] = f.Kind
	}
	if names["email_encrypted"] != schemas.String || names["phone_token"] != schemas.String {
		t.Fatalf("derived %v", names)
	}
	if !p.NeedsDataKeys(purpose.Personalization) || p.NeedsDataKeys(purpose.Analytics) {
		t.Fatal("NeedsDataKeys")
	}
	if _, err := Load([]byte(strings.Replace(doc+`}}`, `"subject_id":{"action":"pseudonymize"},"email"`, `"subject_id":{"action":"encrypt"},"email"`, 1)), raw); err == nil {
		t.Fatal("encrypting the subject id was accepted")
	}
}
