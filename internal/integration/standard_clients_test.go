package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/processors"
)

// TestStandardClientsEndToEnd is SPEC 3a with no code of ours at either
// end, on the real broker and the real registry (Apicurio):
// examples/python/producer.py publishes raw events with confluent-kafka's
// AvroSerializer (the Confluent wire format, its schema auto-registered
// under <raw topic>-value); the privacy processor (Confluent-framed
// outputs, its derived schemas registered at start) processes them; and
// examples/python/consumer.py reads every clean topic with confluent-kafka's
// AvroDeserializer, read_committed. Every event reaches every purpose (all
// consent granted), keyed by the purpose's pseudonym, with the fields of
// the derived schema, the provenance headers and no raw identifier; the id
// in each record is the one registered under <topic>-value, whose schema
// is the derived one.
func TestStandardClientsEndToEnd(t *testing.T) {
	py := pythonPath(t)
	reg := registryClient(t)
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const n = 40
	prefix := fmt.Sprintf("e2e-py-%06x", rand.Uint32()&0xffffff)
	produced := runPythonProducer(t, py, r.cfg.Kafka.Brokers, r.cfg.Names.RawTopic,
		"--count", fmt.Sprint(n), "--subject-prefix", prefix, "--seed", "3", "--jurisdiction", "gdpr")
	if len(produced) != n {
		t.Fatalf("producer.py reported %d events, want %d", len(produced), n)
	}
	var all consent.Record
	now := time.Now()
	for _, p := range purpose.All {
		all.Apply(p, consent.Granted, consent.GDPR, now.Add(-time.Minute).UnixMilli())
	}
	subs, recs := make([]string, n), make([]consent.Record, n)
	for i := range subs {
		subs[i], recs[i] = fmt.Sprintf("%s-%d", prefix, i), all
	}
	if err := r.pp.Store.PutMany(ctx, subs, recs); err != nil {
		t.Fatal(err)
	}

	r.start()
	r.waitCaughtUp(2 * time.Minute)
	snap := r.snapshot()
	if q := sumOf(snap, "pipeline_quarantined_total{"); q != 0 {
		t.Fatalf("%v of the Python producer's records were quarantined (metrics %v)", q, snap)
	}

	// What producer.py writes into identifying fields; a purpose whose
	// policy does not keep the field verbatim must never show it.
	var topics []string
	for _, p := range purpose.All {
		topics = append(topics, strings.ReplaceAll(r.cfg.Names.CleanTopicTemplate, "{purpose}", p.String()))
	}
	read := readAllWithPythonConsumer(t, n+5, topics...)
	markers := map[string]string{"email": "customer", // the local part: a masked email keeps only its first letter
		"name": "Customer ", "phone": "+49 30", "address.street": "Example Street"}
	for _, p := range purpose.All {
		topic := topics[p]
		got := read[topic]
		// Every event is published, except that the producer's Global
		// Privacy Control signals (about 10%) deny marketing and
		// third-party sharing.
		published := snap["pipeline_published_total{purpose="+p.String()+"}"]
		gpc := snap["pipeline_denied_total{purpose="+p.String()+",reason=gpc_opt_out}"]
		if denied := sumOf(snap, "pipeline_denied_total{purpose="+p.String()+","); published+denied != n || denied != gpc {
			t.Fatalf("%s: %v published, %v denied (%v by GPC), want all %d published or denied by GPC", topic, published, denied, gpc, n)
		}
		if len(got) != int(published) {
			t.Fatalf("%s: the Python consumer read %d records, the processor published %v", topic, len(got), published)
		}
		key, _ := r.keys.Active(p.String())
		ps := pseudonym.New(key)
		wantKeys, wantEvents := map[string]bool{}, map[string]bool{}
		for id, ev := range produced {
			wantKeys[string(ps.Append(nil, "subject_id", ev.SubjectID))] = true
			wantEvents[string(ps.Append(nil, "event_id", id))] = true
		}
		fields, err := r.pp.Policy.Derive(r.pp.Raw, p)
		if err != nil {
			t.Fatal(err)
		}
		var wantFields []string
		for _, f := range fields {
			wantFields = append(wantFields, f.Name)
		}
		slices.Sort(wantFields)
		for _, rec := range got {
			if rec.Key == nil || !wantKeys[*rec.Key] {
				t.Fatalf("%s: key %v is not the purpose pseudonym of a produced subject", topic, rec.Key)
			}
			if id, _ := rec.Value["event_id_pseudonym"].(string); !wantEvents[id] {
				t.Fatalf("%s: event_id_pseudonym %q is not the pseudonym of a produced event", topic, id)
			}
			var names []string
			for name := range rec.Value {
				names = append(names, name)
			}
			slices.Sort(names)
			if !slices.Equal(names, wantFields) {
				t.Fatalf("%s: fields %v, want the derived schema's %v", topic, names, wantFields)
			}
			for _, h := range []string{processors.HeaderPolicyVersion, processors.HeaderConsentVersion, processors.HeaderKeyID, processors.HeaderSchema} {
				if rec.Headers[h] == "" {
					t.Fatalf("%s: header %s missing (%v)", topic, h, rec.Headers)
				}
			}
			text, _ := json.Marshal(rec)
			if strings.Contains(string(text), prefix+"-") {
				t.Fatalf("%s: a raw subject id reached the clean record %s", topic, text)
			}
			for field, raw := range markers {
				if r.pp.Policy.Rule(p, field).Action != policy.Keep && strings.Contains(string(text), raw) {
					t.Fatalf("%s: the raw %s (%q) reached the clean record, which the policy forbids: %s", topic, field, raw, text)
				}
			}
		}
		// The id every record carries is the registered schema of the
		// topic's subject, and that schema is the derived one.
		frame := r.pp.Processor.CleanFrame(p)
		h, ok := wireformat.Parse(frame)
		if !ok || h.Format != wireformat.Confluent {
			t.Fatalf("%s: the processor frames with % x, want the Confluent wire format", topic, frame)
		}
		ss, err := reg.SchemaByVersion(ctx, wireformat.TopicSubject(topic), -1)
		if err != nil {
			t.Fatalf("%s: nothing registered under its subject: %v", topic, err)
		}
		if uint32(ss.ID) != h.ID {
			t.Fatalf("%s: records carry id %d, the subject's latest is %d", topic, h.ID, ss.ID)
		}
		gotFP, err1 := avroschema.Fingerprint([]byte(ss.Schema.Schema))
		wantFP, err2 := avroschema.Fingerprint(policy.CleanSchemaJSON(p, fields))
		if err1 != nil || err2 != nil || gotFP != wantFP {
			t.Fatalf("%s: registered schema %016x, derived %016x (%v %v)", topic, gotFP, wantFP, err1, err2)
		}
		t.Logf("%s: %d records read by confluent-kafka's AvroDeserializer; schema id %d under %s", topic, len(got), h.ID, wireformat.TopicSubject(topic))
	}
	// The raw schema's id was looked up once and registered with the
	// decoder (the first batch), never refused.
	if got := snap["pipeline_writer_schema_lookups_total{outcome=registered,processor=privacy}"]; got < 1 {
		t.Errorf("writer schema lookups registered = %v, want at least 1", got)
	}
	for _, o := range []string{"unknown", "refused", "over_budget"} {
		if got := snap["pipeline_writer_schema_lookups_total{outcome="+o+",processor=privacy}"]; got != 0 {
			t.Errorf("writer schema lookups %s = %v, want 0", o, got)
		}
	}
}

// sumOf adds up the series of a snapshot whose key starts with prefix (a
// metric name: all its series; "name{a=x,": those with a=x first).
func sumOf(snap map[string]float64, prefix string) float64 {
	var n float64
	for k, v := range snap {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}
