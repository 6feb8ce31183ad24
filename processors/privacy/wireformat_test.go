package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

// confluentHarness runs the processor with the Confluent wire format on an
// in-process registry, with the raw schema registered under the raw topic's
// subject as AvroSerializer registers it; lookups counts the registry
// requests made after the processor was built.
func confluentHarness(t *testing.T) (h *harness, reg *srfake.Registry, rawID uint32, lookups *atomic.Int32) {
	t.Helper()
	reg = srfake.New()
	t.Cleanup(reg.Close)
	lookups = &atomic.Int32{}
	reg.Intercept(func(http.ResponseWriter, *http.Request) bool { lookups.Add(1); return false })
	rc := schemaregistry.Config{URL: []string{reg.URL()}, Timeout: 2 * time.Second, Compatibility: "BACKWARD", AutoRegister: true}
	cl, err := rc.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.SR().CreateSchema(context.Background(), wireformat.TopicSubject(topology.DefaultRawTopic), sr.Schema{Schema: string(schemas.RawEventSchemaJSON())})
	if err != nil {
		t.Fatal(err)
	}
	h = newHarnessWith(t, config.Schemas{WireFormat: "confluent", Registry: rc})
	lookups.Store(0) // registering the outputs' schemas is not a lookup
	return h, reg, uint32(ss.ID), lookups
}

// subjectRead is what reading a subject's schemas costs franz-go's sr
// client: the version list, then the versions.
const subjectRead = 2

// confluent reframes a single-object raw record as AvroSerializer writes it.
func confluent(r processors.Record, id uint32) processors.Record {
	r.Value = append(wireformat.AppendConfluent(nil, id), r.Value[wireformat.SingleObjectHeaderLen:]...)
	return r
}

// TestConfluentInAndOut: a raw record in the Confluent wire format is
// processed exactly like its single-object form (the same outputs, byte
// for byte); every clean record starts with magic 0 and the id registered
// under its topic's subject.
func TestConfluentInAndOut(t *testing.T) {
	h, reg, rawID, lookups := confluentHarness(t)
	ev := producer.Event{EventID: "e-1", SubjectID: "s-1", EventType: "purchase", EventTime: h.now, Jurisdiction: "gdpr",
		Email: "someone@example.com", Name: "Some One"}
	h.grantAll(t, "s-1", consent.GDPR)
	single := h.record(t, ev)
	a := h.process(t, single)
	b := h.process(t, confluent(single, rawID), confluent(single, rawID))
	if n := lookups.Load(); n != subjectRead {
		t.Fatalf("%d registry requests for one id, want %d (the raw subject's schemas, read once)", n, subjectRead)
	}
	if len(a.Outputs) != purpose.Count || len(b.Outputs) != 2*purpose.Count {
		t.Fatalf("outputs: %d single-object, %d Confluent (two records)", len(a.Outputs), len(b.Outputs))
	}
	cl, _ := (schemaregistry.Config{URL: []string{reg.URL()}, Timeout: time.Second, Compatibility: "BACKWARD"}).NewClient()
	for _, o := range a.Outputs {
		i := slices.IndexFunc(b.Outputs, func(c processors.Output) bool { return c.Topic == o.Topic })
		c := b.Outputs[i]
		hdr, ok := wireformat.Parse(c.Value)
		if !ok || hdr.Format != wireformat.Confluent {
			t.Fatalf("%s: output % x... is not Confluent-framed", c.Topic, c.Value[:5])
		}
		ss, err := cl.SR().SchemaByVersion(context.Background(), wireformat.TopicSubject(c.Topic), -1)
		if err != nil || uint32(ss.ID) != hdr.ID {
			t.Fatalf("%s: framed with id %d, its subject's latest is %+v (%v)", c.Topic, hdr.ID, ss.ID, err)
		}
		if o.Topic != c.Topic || !bytes.Equal(o.Key, c.Key) || !bytes.Equal(o.Value, c.Value) {
			t.Fatalf("%s: the Confluent-framed input gave another output than the single-object one", c.Topic)
		}
	}
}

// TestFloodOfUnknownSchemaIDs is the attack: a poll in which every record
// names a different registry id the registry does not have. Each is
// quarantined unknown_schema (nothing lost, the valid record beside them
// published), the batch does not wait, and the registry is asked at most
// the per-batch budget of lookups (64), each id at most once. The valid
// record, whose id is registered under the raw topic's subject, is never
// crowded out: the subject is read before any id is looked up.
func TestFloodOfUnknownSchemaIDs(t *testing.T) {
	h, _, rawID, lookups := confluentHarness(t)
	h.grantAll(t, "s-1", consent.GDPR)
	good := h.record(t, producer.Event{EventID: "e-1", SubjectID: "s-1", EventType: "login", EventTime: h.now, Jurisdiction: "gdpr"})
	var in []processors.Record
	for i := range 500 {
		in = append(in, confluent(good, rawID+1000+uint32(i)))
	}
	in = append(in, confluent(good, rawID))
	start := time.Now()
	out := h.process(t, in...)
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the flood took %v", d)
	}
	quarantined, published := 0, 0
	for _, o := range out.Outputs {
		if o.Topic == topology.DefaultQuarantineTopic {
			quarantined++
			continue
		}
		published++
	}
	if quarantined != 500 || published != purpose.Count {
		t.Fatalf("%d quarantined, %d published, want 500 and %d", quarantined, published, purpose.Count)
	}
	first := lookups.Load()
	if first != subjectRead+64 {
		t.Fatalf("%d registry requests for one batch, want the raw subject (%d) and the budget of 64", first, subjectRead)
	}
	h.process(t, in...)
	if n := lookups.Load() - first; n != 64 && n != subjectRead+64 {
		t.Fatalf("%d requests for the second batch, want 64 new ids (none asked twice), and the subject if a second passed", n)
	}
	text := h.metricsText(t)
	for _, want := range []string{`pipeline_quarantined_total{reason="unknown_schema"} 1000`, `pipeline_writer_schema_lookups_total{outcome="unknown",processor="privacy"}`,
		`pipeline_writer_schema_lookups_total{outcome="over_budget",processor="privacy"}`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestRegistryDownWaitsNeverQuarantines: while the registry cannot answer,
// a batch naming an unknown id waits (the processor is not ready) and,
// when its context ends, fails to be retried: no record is quarantined or
// published because the registry was down.
func TestRegistryDownWaitsNeverQuarantines(t *testing.T) {
	h, reg, rawID, _ := confluentHarness(t)
	h.grantAll(t, "s-1", consent.GDPR)
	rec := confluent(h.record(t, producer.Event{EventID: "e-1", SubjectID: "s-1", EventType: "login", EventTime: h.now, Jurisdiction: "gdpr"}), rawID)
	reg.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out processors.Batch
	w := h.pp.Processor.NewWorker()
	done := make(chan error, 1)
	go func() { done <- w.Process(ctx, []processors.Record{rec}, &out) }()
	deadline := time.Now().Add(10 * time.Second)
	for h.pp.Processor.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the processor stayed ready while the registry was down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	err := <-done
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Process with the registry down: %v, want the context's end", err)
	}
	w.Done(false)
	if len(out.Outputs) != 0 {
		t.Fatalf("%d outputs while the registry was down", len(out.Outputs))
	}
	if text := pipelinetest.MetricsText(t, h.reg); strings.Contains(text, `pipeline_quarantined_total{reason="unknown_schema"} 1`) {
		t.Fatal("a record was quarantined because the registry was down")
	}
}
