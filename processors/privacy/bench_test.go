package privacy_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/schemas"
)

const benchBatch = 1000

func benchInput(b *testing.B) []processors.Record {
	enc, _ := producer.NewEncoder()
	now := time.Now()
	gen := synth.New(9, 500, now)
	recs := make([]processors.Record, benchBatch)
	for i := range recs {
		ev := gen.Event(i)
		v, err := enc.AppendEncoded(nil, &ev)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = processors.Record{Value: v}
	}
	return recs
}

// BenchmarkProcess measures the per-event cost of the privacy path: decode,
// cached consent, decision and policy for all five purposes, encode. Every
// subject is granted every purpose, so each event yields five clean records
// (the worst case). ns/op and allocs/op are per event. Records and outputs
// are single-object encoded.
func BenchmarkProcess(b *testing.B) { benchProcess(b, singleObject, nil) }

// BenchmarkProcessDataKeys is BenchmarkProcess with a policy that encrypts
// the e-mail address and tokenizes the phone number for personalization
// (the subjects' data keys logged and cached): what the encrypt and
// tokenize actions cost, as a ratio against BenchmarkProcess in the same
// run.
func BenchmarkProcessDataKeys(b *testing.B) {
	pol, kek, _ := pipelinetest.EncryptingPolicy(b)
	benchProcess(b, singleObject, nil, func(c *config.Config) { c.Privacy.PolicyFile, c.Keys.KEKFile = pol, kek })
}

// BenchmarkProcessConfluent is BenchmarkProcess in the Confluent wire
// format, in and out (an in-process registry; the raw schema's id is
// looked up in the warm-up batch, as on a processor's first batch).
func BenchmarkProcessConfluent(b *testing.B) {
	reg := srfake.New()
	defer reg.Close()
	rc := schemaregistry.Config{URL: []string{reg.URL()}, Timeout: 5 * time.Second, Compatibility: "BACKWARD", AutoRegister: true}
	cl, err := rc.NewClient()
	if err != nil {
		b.Fatal(err)
	}
	ss, err := cl.SR().CreateSchema(context.Background(), "raw.customer-events-value", sr.Schema{Schema: string(schemas.RawEventSchemaJSON())})
	if err != nil {
		b.Fatal(err)
	}
	benchProcess(b, config.Schemas{WireFormat: "confluent", Registry: rc}, func(r processors.Record) processors.Record { return confluent(r, uint32(ss.ID)) })
}

func benchProcess(b *testing.B, sch config.Schemas, frame func(processors.Record) processors.Record, opts ...func(*config.Config)) {
	mr := miniredis.RunT(b)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	cfg, _ := config.Load()
	cfg.Schemas = sch
	cfg.Consent.CacheTTL = time.Hour // measure the cached path
	cfg.Keys.DataKeyCacheTTL = time.Hour
	for _, o := range opts {
		o(&cfg)
	}
	keys, _ := pseudonym.GenerateKeyring(purpose.Names(), "bench")
	pp, err := wiring.BuildPrivacy(context.Background(), cfg, wiring.Deps{Redis: rdb, Registry: prometheus.NewRegistry(), Keys: keys, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		var r consent.Record
		for _, p := range purpose.All {
			r.Apply(p, consent.Granted, consent.GDPR, time.Now().UnixMilli())
		}
		pp.Store.Put(context.Background(), synth.SubjectID(i), &r)
	}
	pp.Store.MarkLoaded(context.Background())
	in := benchInput(b)
	if pp.DataKeys != nil { // create the keys, then log them as the key sync would
		pp.DataKeys.MarkLoaded(context.Background())
		var out processors.Batch
		if err := pp.Processor.NewWorker().Process(context.Background(), in, &out); err != nil {
			b.Fatal(err)
		}
		for _, o := range out.Outputs {
			if w, err := subjectkey.ParseWrapped(o.Value); err == nil && string(o.Key) == w.ID {
				pp.DataKeys.Put(context.Background(), w)
			}
		}
	}
	if frame != nil {
		for i := range in {
			in[i] = frame(in[i])
		}
	}
	w := pp.Processor.NewWorker()
	var out processors.Batch
	ctx := context.Background()
	if err := w.Process(ctx, in, &out); err != nil { // warm cache and buffers
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	outputs := 0
	for done := 0; done < b.N; done += benchBatch {
		out.Reset()
		n := min(benchBatch, b.N-done)
		if err := w.Process(ctx, in[:n], &out); err != nil {
			b.Fatal(err)
		}
		w.Done(true)
		outputs += out.Len()
	}
	// Every batch's outputs over every event (the last batch is usually
	// partial: dividing only its outputs by a full batch misreported this).
	b.ReportMetric(float64(outputs)/float64(b.N), "outputs/event")
}

// BenchmarkBaselineGoavroMaps is the naive way, measured in the same run for
// a ratio: goavro generic decode, then for each of five purposes build a
// map and encode it with goavro (no consent, no field actions).
func BenchmarkBaselineGoavroMaps(b *testing.B) {
	in := benchInput(b)
	rawCodec, _ := avrosingle.NewCodec(string(schemas.RawEventSchemaJSON()))
	clean := make([]*avrosingle.Codec, 0, purpose.Count)
	for _, p := range purpose.All {
		js, _ := schemas.CleanSchemaJSON(p.String())
		c, err := avrosingle.NewCodec(string(js))
		if err != nil {
			b.Fatal(err)
		}
		clean = append(clean, c)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		native, _, err := rawCodec.NativeFromSingle(in[i%benchBatch].Value)
		if err != nil {
			b.Fatal(err)
		}
		m := native.(map[string]any)
		for _, c := range clean {
			out := map[string]any{"event_id": goavro.Union("string", m["event_id"]), "event_type": goavro.Union("string", m["event_type"])}
			if buf, err = c.SingleFromNative(buf[:0], out); err != nil {
				b.Fatal(err)
			}
		}
	}
}
