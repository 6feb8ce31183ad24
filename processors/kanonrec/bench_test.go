package kanonrec

import (
	"context"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/processors"
)

// BenchmarkProcess is the per-record cost of the CASTLE processor (k=10,
// delta=1000): decode, clustering, splits, encoding released records,
// checkpointing, in batches of 1,000.
func BenchmarkProcess(b *testing.B) {
	recs := encodeAll(b, synth(1, 20000, 2000))
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	p := newProc(b, 10, 1000, store)
	w := p.NewWorker()
	var out processors.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		lo := i % len(recs)
		hi := min(lo+1000, len(recs), lo+b.N-i)
		if lo == 0 {
			w = p.NewWorker()
		}
		out.Reset()
		if err := w.Process(context.Background(), recs[lo:hi], &out); err != nil {
			b.Fatal(err)
		}
		w.Done(true)
	}
}

// BenchmarkBaselineGoavroDecode decodes the same records with goavro into
// generic maps: the same-run baseline for BenchmarkProcess.
func BenchmarkBaselineGoavroDecode(b *testing.B) {
	recs := encodeAll(b, synth(1, 20000, 2000))
	sch, _ := cleanSchema()
	codec, err := avrosingle.NewCodec(sch)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := codec.NativeFromSingle(recs[i%len(recs)].Value); err != nil {
			b.Fatal(err)
		}
	}
}
