package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/twmb/franz-go/pkg/sr"
)

// registryClient returns a franz-go schema registry client for
// PIPELINE_SCHEMA_REGISTRY_URL (the Confluent-compatible API of the Apicurio
// Registry that scripts/services starts), failing under CI when it is
// missing and skipping (loudly) elsewhere.
func registryClient(t testing.TB) *sr.Client {
	t.Helper()
	url := os.Getenv("PIPELINE_SCHEMA_REGISTRY_URL")
	if url == "" {
		msg := "registry tests need a real schema registry: run 'make test', or eval \"$(scripts/services up)\" first"
		missing(t, msg)
	}
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// userSchema is an Avro record User with the given extra fields (JSON).
func userSchema(fields ...string) sr.Schema {
	all := append([]string{`{"name":"id","type":"string"}`}, fields...)
	return sr.Schema{Type: sr.TypeAvro, Schema: `{"type":"record","name":"User","namespace":"pipeline.it","fields":[` + strings.Join(all, ",") + `]}`}
}

// TestRegistryAvroBackwardCompatibility registers an Avro schema under a
// TopicNameStrategy subject, sets the subject to BACKWARD, registers a
// compatible evolution (a field added with a default) and shows that a
// type change is refused, by the compatibility check and by the register
// call, with a verdict that names the problem.
func TestRegistryAvroBackwardCompatibility(t *testing.T) {
	cl := registryClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := fmt.Sprintf("it-registry-%06x", rand.Uint32()&0xffffff)
	subject := topic + "-value" // TopicNameStrategy
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cl.DeleteSubject(ctx, subject, sr.SoftDelete); err != nil {
			t.Logf("soft-deleting %s: %v", subject, err)
		}
		if _, err := cl.DeleteSubject(ctx, subject, sr.HardDelete); err != nil {
			t.Logf("deleting %s: %v", subject, err)
		}
	})

	v1 := userSchema(`{"name":"name","type":"string"}`)
	s1, err := cl.CreateSchema(ctx, subject, v1)
	if err != nil {
		t.Fatalf("registering v1 under %s: %v", subject, err)
	}
	if s1.ID <= 0 {
		t.Fatalf("v1: id %d, want > 0", s1.ID)
	}
	t.Logf("registry: %s v1 id %d version %d", subject, s1.ID, s1.Version)

	for _, r := range cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject) {
		if r.Err != nil {
			t.Fatalf("setting %s to BACKWARD: %v", subject, r.Err)
		}
	}
	for _, r := range cl.Compatibility(ctx, subject) {
		if r.Err != nil || r.Level != sr.CompatBackward {
			t.Fatalf("compatibility of %s: %v %v, want BACKWARD", subject, r.Level, r.Err)
		}
	}

	// A field added with a default: new readers can read old records.
	v2 := userSchema(`{"name":"name","type":"string"}`, `{"name":"email","type":"string","default":""}`)
	if res, err := cl.CheckCompatibility(ctx, subject, -1, v2); err != nil || !res.Is {
		t.Fatalf("v2 (field added with a default) against v1: compatible=%v %v, want compatible", res.Is, err)
	}
	s2, err := cl.CreateSchema(ctx, subject, v2)
	if err != nil {
		t.Fatalf("registering the compatible v2: %v", err)
	}
	if s2.ID == s1.ID || s2.Version != s1.Version+1 {
		t.Fatalf("v2: id %d version %d, want a new id (v1 has %d) and version %d", s2.ID, s2.Version, s1.ID, s1.Version+1)
	}
	t.Logf("registry: %s v2 id %d version %d", subject, s2.ID, s2.Version)

	// A type change (string -> int): v3 cannot read v2's records.
	v3 := userSchema(`{"name":"name","type":"int"}`, `{"name":"email","type":"string","default":""}`)
	res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subject, -1, v3)
	if err != nil {
		t.Fatalf("checking v3: %v", err)
	}
	if res.Is {
		t.Fatal("v3 (name: string -> int) checked compatible under BACKWARD")
	}
	// Apicurio answers the verbose check with "reason" (Confluent: "messages",
	// which is what sr decodes), so read the raw answer for the verdict text.
	var raw map[string]any
	if err := cl.Do(sr.WithParams(ctx, sr.Verbose), http.MethodPost, "/compatibility/subjects/"+subject+"/versions/latest", v3, &raw); err != nil {
		t.Fatalf("checking v3 (raw): %v", err)
	}
	verdict := fmt.Sprint(raw["reason"]) + strings.Join(res.Messages, "; ")
	t.Logf("registry: check verdict on v3: %s", verdict)
	if !strings.Contains(verdict, "INT") || !strings.Contains(verdict, "STRING") {
		t.Errorf("check verdict %q does not name the type change (INT vs STRING)", verdict)
	}

	_, err = cl.CreateSchema(ctx, subject, v3)
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("registering the incompatible v3: %v, want a registry error", err)
	}
	t.Logf("registry: register refused v3: HTTP %d, error_code %d: %s", re.StatusCode, re.ErrorCode, re.Message)
	if re.StatusCode != http.StatusConflict {
		t.Errorf("register v3: HTTP %d, want 409", re.StatusCode)
	}
	if !strings.Contains(re.Message, "INT not compatible with writer type: STRING") {
		t.Errorf("register v3: message %q does not name the type change", re.Message)
	}
	if vs, err := cl.SubjectVersions(ctx, subject); err != nil || len(vs) != 2 {
		t.Errorf("versions of %s after the refused v3: %v %v, want 2", subject, vs, err)
	}
}

// TestReplicasRegisterTheSameSchemaAtOnce is the scale-out race: replicas
// starting together register the same derived schema under the same new
// subject at the same moment. Apicurio answers all but one "already
// exists" (HTTP 409); every replica must still start, framing with the
// one id, and none may call the schema incompatible.
func TestReplicasRegisterTheSameSchemaAtOnce(t *testing.T) {
	registryClient(t)
	topic := fmt.Sprintf("it-race-%06x", rand.Uint32()&0xffffff)
	schema, err := schemas.CleanSchemaJSON("analytics")
	if err != nil {
		t.Fatal(err)
	}
	const replicas = 8
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		frame []byte
		err   error
	}
	results := make(chan result, replicas)
	start := make(chan struct{})
	for range replicas {
		cl, err := schemaregistry.Config{URL: []string{os.Getenv("PIPELINE_SCHEMA_REGISTRY_URL")}, Timeout: 10 * time.Second,
			Compatibility: "BACKWARD", AutoRegister: true}.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			<-start
			f, err := cl.Framer(ctx).Frame(topic, schema)
			results <- result{f, err}
		}()
	}
	close(start)
	var first []byte
	for range replicas {
		r := <-results
		if r.err != nil {
			t.Fatalf("a replica could not start: %v", r.err)
		}
		if first == nil {
			first = r.frame
		} else if !bytes.Equal(first, r.frame) {
			t.Fatalf("replicas frame with % x and % x", first, r.frame)
		}
	}
	t.Logf("%d replicas registered %s-value at once: one id, % x", replicas, topic, first)
}
