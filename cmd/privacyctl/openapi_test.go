package main

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/privacy-pipeline/pipeline/internal/requests"
)

// loadOpenAPI parses docs/openapi.yaml.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid YAML: %v", err)
	}
	return doc
}

// obj returns the mapping at a path of keys, failing the test if absent.
func obj(t *testing.T, v any, keys ...string) map[string]any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not a mapping", strings.Join(keys, "."))
		}
		v = m[k]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: missing or not a mapping", strings.Join(keys, "."))
	}
	return m
}

// strs converts a YAML sequence of scalars to strings.
func strs(v any) []string {
	seq, _ := v.([]any)
	out := make([]string, 0, len(seq))
	for _, x := range seq {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// resolve follows a local "$ref" ("#/components/...") once.
func resolve(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	if !strings.HasPrefix(ref, "#/") {
		t.Fatalf("non-local $ref %q", ref)
	}
	return obj(t, doc, strings.Split(strings.TrimPrefix(ref, "#/"), "/")...)
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

func TestOpenAPIVersionAndOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	if v := fmt.Sprint(doc["openapi"]); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi version %q, want 3.x", v)
	}
	var got []string
	paths := obj(t, doc, "paths")
	for path, item := range paths {
		for method := range item.(map[string]any) {
			if slices.Contains(httpMethods, method) {
				got = append(got, strings.ToUpper(method)+" "+path)
			}
		}
	}
	want := []string{
		"PUT /v1/subjects/{subject}/consents/{purpose}",
		"POST /v1/subjects/{subject}/consents/{purpose}/withdraw",
		"PUT /v1/subjects/{subject}/profile",
		"GET /v1/subjects/{subject}/consents",
		"GET /v1/subjects/{subject}/consents/history",
		"POST /v1/consents/import",
		"POST /v1/subjects/{subject}/consent-strings",
		"POST /v1/privacy-center/links",
		"POST /v1/subjects/{subject}/requests",
		"GET /v1/subjects/{subject}/requests",
		"POST /v1/subjects/{subject}/erasure",
		"POST /v1/subjects/{subject}/export",
		"GET /v1/requests",
		"GET /v1/requests/{id}",
		"GET /v1/requests/{id}/export",
		"POST /v1/requests/{id}/verify",
		"POST /v1/requests/{id}/extend",
		"POST /v1/requests/{id}/refuse",
		"GET /healthz",
		"GET /readyz",
		"GET /metrics",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("operations\n got %q\nwant %q", got, want)
	}
}

// names converts a model's string enum to strings.
func names[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func TestOpenAPIEnums(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := obj(t, doc, "components", "schemas")
	want := map[string][]string{
		"Purpose":           contractPurposes,
		"ConsentState":      contractStates,
		"PurposeStateValue": append(slices.Clone(contractStates), "unset"),
		"Jurisdiction":      contractJurisdictions,
		"Source":            contractSources,
		// the data-subject requests, from the model (internal/requests)
		"RequestKind":        names(requests.Kinds),
		"RequestRegime":      names(requests.Regimes),
		"RequestStatus":      names(requests.Statuses),
		"RequestSource":      {"api", "drp", "topic"},
		"DRPStatusValue":     {"open", "in_progress", "fulfilled", "denied"},
		"RequestErrorReason": {"erased", "not_ready", "refused", "expired"},
		"ResponseShape":      {"drp"},
		// consentstring.Kind and privacycenter.Languages
		"ConsentStringKind": {"tcf", "gpp"},
		"PageLanguage":      {"en", "vi"},
	}
	if !slices.Equal(regimes, names(requests.Regimes)) {
		t.Errorf("privacyctl's regimes %v are not the model's %v", regimes, requests.Regimes)
	}
	for name, values := range want {
		got := strs(obj(t, schemas, name)["enum"])
		if !slices.Equal(sorted(got), sorted(values)) {
			t.Errorf("schema %s enum %q, want %q", name, got, values)
		}
	}
	// No other enum anywhere (an inline copy could drift).
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "enum" {
					name, _ := strings.CutPrefix(path, ".components.schemas.")
					if _, ok := want[name]; !ok {
						t.Errorf("%s: an enum outside the named schemas above: %v", path, c)
					}
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	walk("", doc)
}

func TestOpenAPIContract(t *testing.T) {
	doc := loadOpenAPI(t)
	paths := obj(t, doc, "paths")

	// Every $ref resolves.
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["$ref"]; ok {
				resolve(t, doc, x)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)

	// Every path template variable is a required path parameter, and
	// {purpose} uses the Purpose enum.
	tmpl := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range paths {
		declared := map[string]map[string]any{}
		params, _ := item.(map[string]any)["parameters"].([]any)
		for _, p := range params {
			p := resolve(t, doc, p)
			if p["in"] == "path" {
				declared[fmt.Sprint(p["name"])] = p
			}
		}
		for _, m := range tmpl.FindAllStringSubmatch(path, -1) {
			p, ok := declared[m[1]]
			if !ok || p["required"] != true {
				t.Errorf("%s: {%s} is not a required path parameter", path, m[1])
				continue
			}
			if m[1] == "purpose" && obj(t, p, "schema")["$ref"] != "#/components/schemas/Purpose" {
				t.Errorf("%s: {purpose} does not use the Purpose schema", path)
			}
		}
		if len(declared) != len(tmpl.FindAllString(path, -1)) {
			t.Errorf("%s: path parameters %v do not match the template", path, declared)
		}
		if !strings.Contains(path, "{") && item.(map[string]any)["parameters"] != nil {
			t.Errorf("%s: parameters on a path without variables", path)
		}
	}

	// The subject id and policy version constraints.
	schemas := obj(t, doc, "components", "schemas")
	if s := obj(t, schemas, "SubjectId"); s["minLength"] != 1 || s["maxLength"] != 256 {
		t.Errorf("SubjectId %v", s)
	}
	if s := obj(t, schemas, "PolicyVersion"); s["minLength"] != 1 || s["maxLength"] != 64 {
		t.Errorf("PolicyVersion %v", s)
	}

	// Request bodies: strict JSON for set and withdraw, CSV or JSON lines
	// for import.
	set := obj(t, paths, "/v1/subjects/{subject}/consents/{purpose}", "put")
	setBody := resolve(t, doc, obj(t, set, "requestBody", "content", "application/json", "schema"))
	if setBody["additionalProperties"] != false || !slices.Equal(sorted(strs(setBody["required"])), sorted([]string{"state", "jurisdiction", "source", "policy_version"})) {
		t.Errorf("SetConsentRequest: %v", setBody)
	}
	if _, ok := obj(t, set, "responses")["202"]; !ok {
		t.Error("PUT answers 202")
	}
	withdraw := obj(t, paths, "/v1/subjects/{subject}/consents/{purpose}/withdraw", "post")
	if obj(t, withdraw, "requestBody")["required"] != false {
		t.Error("the withdraw body is optional")
	}
	profile := obj(t, paths, "/v1/subjects/{subject}/profile", "put")
	profileBody := resolve(t, doc, obj(t, profile, "requestBody", "content", "application/json", "schema"))
	if profileBody["additionalProperties"] != false || !slices.Equal(strs(profileBody["required"]), []string{"source"}) {
		t.Errorf("ProfileRequest: %v", profileBody)
	}
	if _, ok := obj(t, profile, "responses")["202"]; !ok {
		t.Error("PUT profile answers 202")
	}
	// Every write on a subject documents the Sec-GPC header.
	for _, op := range []map[string]any{set, withdraw, profile} {
		var found bool
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			p := resolve(t, doc, p)
			found = found || (p["in"] == "header" && p["name"] == "Sec-GPC")
		}
		if !found {
			t.Errorf("%s does not document the Sec-GPC header", op["operationId"])
		}
	}
	imp := obj(t, paths, "/v1/consents/import", "post")
	var types []string
	for ct := range obj(t, imp, "requestBody", "content") {
		types = append(types, ct)
	}
	if !slices.Equal(sorted(types), []string{"application/x-ndjson", "text/csv"}) {
		t.Errorf("import content types %q", types)
	}
	get := obj(t, paths, "/v1/subjects/{subject}/consents", "get")
	if _, ok := obj(t, get, "responses")["404"]; !ok {
		t.Error("GET consents documents its 404")
	}

	// Every API operation documents errors with the Error schema.
	errSchema := obj(t, schemas, "Error")
	if !slices.Equal(strs(errSchema["required"]), []string{"error"}) || obj(t, errSchema, "properties", "error")["type"] != "string" {
		t.Errorf("Error schema %v", errSchema)
	}
	for path, item := range paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for method, op := range item.(map[string]any) {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			responses := obj(t, op, "responses")
			for _, code := range []string{"4XX", "5XX"} {
				r := resolve(t, doc, responses[code])
				if r == nil || obj(t, r, "content", "application/json", "schema")["$ref"] != "#/components/schemas/Error" {
					t.Errorf("%s %s: %s does not answer the Error schema", method, path, code)
				}
			}
		}
	}
}

// TestCLIBodiesMatchOpenAPI checks every JSON field privacyctl sends or
// reads against the schema of its operation in docs/openapi.yaml: a field
// the contract does not have, or a required one the client cannot send or
// read, fails.
func TestCLIBodiesMatchOpenAPI(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := obj(t, doc, "components", "schemas")
	for _, c := range []struct {
		schema string
		v      any
	}{
		{"SetConsentRequest", setRequest{}},
		{"WithdrawRequest", withdrawRequest{}},
		{"ProfileRequest", profileRequest{}},
		{"ConsentReceipt", receipt{}},
		{"ProfileReceipt", profileReceipt{}},
		{"SubjectConsent", subjectConsent{}},
		{"PurposeState", purposeState{}},
		{"ConsentHistory", consentHistory{}},
		{"ConsentChange", consentChange{}},
		{"ImportResult", importResult{}},
		{"ImportLineError", lineError{}},
	} {
		sch := obj(t, schemas, c.schema)
		props := obj(t, sch, "properties")
		fields := jsonFields(reflect.TypeOf(c.v))
		for _, f := range fields {
			if _, ok := props[f]; !ok {
				t.Errorf("%s: privacyctl has field %q, the contract does not", c.schema, f)
			}
		}
		for _, r := range strs(sch["required"]) {
			if !slices.Contains(fields, r) {
				t.Errorf("%s: the contract requires %q, privacyctl has no such field", c.schema, r)
			}
		}
	}
}

// jsonFields returns the JSON names of a struct's fields.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
