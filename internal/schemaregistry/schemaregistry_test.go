package schemaregistry

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/schemas"
)

func testConfig(url string) Config {
	return Config{URL: []string{url}, Timeout: 5 * time.Second, Compatibility: "BACKWARD", AutoRegister: true}
}

func TestValidate(t *testing.T) {
	ok := testConfig("http://registry:8081")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	const secret = "canary-registry-password-3f1"
	for name, c := range map[string]Config{
		"not http":              {URL: []string{"ftp://x"}, Timeout: time.Second, Compatibility: "BACKWARD"},
		"no host":               {URL: []string{"http://"}, Timeout: time.Second, Compatibility: "BACKWARD"},
		"credentials in URL":    {URL: []string{"https://user:" + secret + "@registry"}, Timeout: time.Second, Compatibility: "BACKWARD"},
		"unknown level":         {URL: ok.URL, Timeout: time.Second, Compatibility: "SOMETIMES"},
		"cert without key":      {URL: ok.URL, Timeout: time.Second, Compatibility: "FULL", CertFile: "c.pem"},
		"password twice":        {URL: ok.URL, Timeout: time.Second, Compatibility: "FULL", Password: secret, PasswordFile: "p"},
		"token and basic auth":  {URL: ok.URL, Timeout: time.Second, Compatibility: "FULL", TokenFile: "t", Username: "u"},
		"no timeout":            {URL: ok.URL, Compatibility: "FULL"},
		"unparsable with creds": {URL: []string{"http://u:" + secret + "@[::1"}, Timeout: time.Second, Compatibility: "FULL"},
	} {
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	if r := (Config{Password: secret}).Redacted(); r.Password == secret {
		t.Error("Redacted keeps the password")
	}
	if _, err := (Config{Timeout: time.Second, Compatibility: "BACKWARD"}).NewClient(); err == nil || !strings.Contains(err.Error(), "PIPELINE_SCHEMA_REGISTRY_URL") {
		t.Errorf("NewClient without a URL: %v", err)
	}
}

// TestFramerRegistersUnderTheTopicSubject: the header is magic 0 and the id
// registered under "<topic>-value"; a second Frame asks nothing (cached);
// without auto-registration an unregistered schema is an error that says
// what to run, and a registered one is looked up.
func TestFramerRegistersUnderTheTopicSubject(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	var requests atomic.Int32
	reg.Intercept(func(http.ResponseWriter, *http.Request) bool { requests.Add(1); return false })
	cl, err := testConfig(reg.URL()).NewClient()
	if err != nil {
		t.Fatal(err)
	}
	schema, _ := schemas.CleanSchemaJSON("analytics")
	ctx := context.Background()
	hdr, err := cl.Framer(ctx).Frame("clean.analytics.customer-events", schema)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := wireformat.Parse(hdr)
	if !ok || h.Format != wireformat.Confluent || len(hdr) != 5 {
		t.Fatalf("header % x", hdr)
	}
	ss, err := cl.SR().SchemaByVersion(ctx, "clean.analytics.customer-events-value", -1)
	if err != nil || uint32(ss.ID) != h.ID {
		t.Fatalf("subject's latest: %+v %v, header id %d", ss, err, h.ID)
	}
	before := requests.Load()
	if again, err := cl.Framer(ctx).Frame("clean.analytics.customer-events", schema); err != nil || string(again) != string(hdr) || requests.Load() != before {
		t.Fatalf("second Frame: % x %v, %d more requests", again, err, requests.Load()-before)
	}

	ro := testConfig(reg.URL())
	ro.AutoRegister = false
	rcl, err := ro.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rcl.Framer(ctx).Frame("clean.marketing.customer-events", schema); err == nil || !strings.Contains(err.Error(), "topology apply") {
		t.Fatalf("lookup of an unregistered schema: %v", err)
	}
	if got, err := rcl.Framer(ctx).Frame("clean.analytics.customer-events", schema); err != nil || string(got) != string(hdr) {
		t.Fatalf("lookup of the registered schema: % x %v", got, err)
	}
}

// TestSchemaByID: a known id gives its schema; an unknown one is
// ErrUnknownID (definite); a registry that cannot be reached is not.
func TestSchemaByID(t *testing.T) {
	reg := srfake.New()
	cl, err := testConfig(reg.URL()).NewClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ss, err := cl.SR().CreateSchema(ctx, "raw.customer-events-value", sr.Schema{Schema: string(schemas.RawEventSchemaJSON())})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.SchemaByID(ctx, uint32(ss.ID))
	if err != nil || !strings.Contains(string(got), "CustomerEvent") {
		t.Fatalf("SchemaByID(%d): %v", ss.ID, err)
	}
	if _, err := cl.SchemaByID(ctx, 4242); !errors.Is(err, wireformat.ErrUnknownID) {
		t.Fatalf("unknown id: %v, want ErrUnknownID", err)
	}
	reg.Close()
	if got, err := cl.SchemaByID(ctx, uint32(ss.ID)); err != nil || len(got) == 0 {
		t.Fatalf("cached id with the registry gone: %v", err)
	}
	if _, err := cl.SchemaByID(ctx, 7); err == nil || errors.Is(err, wireformat.ErrUnknownID) {
		t.Fatalf("registry down: %v, want an error that is not ErrUnknownID", err)
	}
}

// TestCredentialsAreSentAndNeverShown: basic auth from a password file
// reaches the registry; a wrong password fails without showing it.
func TestCredentialsAreSentAndNeverShown(t *testing.T) {
	const secret = "canary-registry-password-9c2"
	reg := srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("pipeline:"+secret))))
	defer reg.Close()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte(secret+"\n"), 0o600)
	os.WriteFile(bad, []byte("wrong-"+secret), 0o600)
	c := testConfig(reg.URL())
	c.Username, c.PasswordFile = "pipeline", good
	cl, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	schema, _ := schemas.CleanSchemaJSON("analytics")
	if _, err := cl.Framer(context.Background()).Frame("t", schema); err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	c.PasswordFile = bad
	cl, _ = c.NewClient()
	_, err = cl.Framer(context.Background()).Frame("t2", schema)
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// TestApply on the fake registry: new subjects are registered, the raw
// subject seeded, a second apply changes nothing. (The refusal of an
// incompatible change needs a registry that checks compatibility: the
// integration test TestTopologyApplyRefusesIncompatibleChange runs it
// against Apicurio.)
func TestApply(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	cl, err := testConfig(reg.URL()).NewClient()
	if err != nil {
		t.Fatal(err)
	}
	clean, _ := schemas.CleanSchemaJSON("analytics")
	subjects := []Subject{{Name: "raw-value", Schema: schemas.RawEventSchemaJSON(), SeedOnly: true}, {Name: "clean-value", Schema: clean}}
	rep, err := cl.Apply(context.Background(), subjects)
	if err != nil || strings.Count(rep.String(), "registered id") != 2 {
		t.Fatalf("first apply: %v\n%s", err, rep)
	}
	rep, err = cl.Apply(context.Background(), subjects)
	if err != nil || !strings.Contains(rep.String(), "clean-value: unchanged") || !strings.Contains(rep.String(), "left as it is") {
		t.Fatalf("second apply: %v\n%s", err, rep)
	}
	for _, r := range cl.SR().Compatibility(context.Background(), "clean-value") {
		if r.Err != nil || r.Level != sr.CompatBackward {
			t.Fatalf("compatibility of clean-value: %v %v", r.Level, r.Err)
		}
	}
}

func TestDescribeChanges(t *testing.T) {
	old := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"},{"name":"c","type":["null","long"]}]}`
	neu := `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"c","type":["null","long"]},{"name":"d","type":"double"}]}`
	if got, want := describeChanges([]byte(old), []byte(neu)), `field a: "int" -> "string"; added: d; removed: b`; got != want {
		t.Fatalf("describeChanges = %q, want %q", got, want)
	}
	if describeChanges([]byte(`"string"`), []byte(neu)) != "" {
		t.Fatal("a non-record schema has changes")
	}
}

// FuzzDescribeChanges: registry answers are untrusted; the field diff
// never panics and is empty unless both are record schemas.
func FuzzDescribeChanges(f *testing.F) {
	clean, _ := schemas.CleanSchemaJSON("analytics")
	f.Add(clean, schemas.RawEventSchemaJSON())
	f.Add([]byte(`{"type":"record","fields":[{"name":"a","type":{}}]}`), []byte(`{"type":"record"}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := describeChanges(a, b)
		if _, ok := recordFields(a); !ok && d != "" {
			t.Fatalf("changes %q from a non-record schema", d)
		}
	})
}
