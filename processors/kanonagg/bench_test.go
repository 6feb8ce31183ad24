package kanonagg

import (
	"context"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// BenchmarkProcess is the per-event cost of the aggregates processor:
// decode, window state, distinct-subject sets, closing windows, encoding
// rows, checkpointing, in batches of 1,000.
func BenchmarkProcess(b *testing.B) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	evs := synth(1, 20000, 2000, start)
	recs := records(encodeAll(b, evs))
	store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
	p := newProc(b, 11, store)
	w := p.NewWorker()
	var out processors.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		lo := i % len(recs)
		hi := min(lo+1000, len(recs), lo+b.N-i)
		in := recs[lo:hi]
		if lo == 0 {
			// Start over with a fresh worker so offsets and event times
			// increase again (the timer keeps running: it is part of the cost).
			w = p.NewWorker()
		}
		out.Reset()
		if err := w.Process(context.Background(), in, &out); err != nil {
			b.Fatal(err)
		}
		w.Done(true)
	}
}

// BenchmarkBaselineGoavroDecode decodes the same records with goavro into
// generic maps: the same-run baseline for BenchmarkProcess.
func BenchmarkBaselineGoavroDecode(b *testing.B) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	vals := encodeAll(b, synth(1, 20000, 2000, start))
	sch, _ := schemas.CleanSchemaJSON("analytics")
	codec, err := avrosingle.NewCodec(string(sch))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := codec.NativeFromSingle(vals[i%len(vals)]); err != nil {
			b.Fatal(err)
		}
	}
}
