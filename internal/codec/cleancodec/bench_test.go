package cleancodec

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkDecode decodes goavro-written records of each test schema: all
// fields set ("full"), a third null ("mixed"), and written with the evolved
// writer schema ("evolved"). goavro's own decode of the full record is the
// same-run baseline.
func BenchmarkDecode(b *testing.B) {
	for _, ts := range testSchemas(b) {
		d := newTestDecoder(b, ts)
		rng := rand.New(rand.NewPCG(9, 10))
		enc := newEncoder(b, ts.reader)
		recs := []struct {
			name string
			rec  []byte
		}{
			{"full", enc.random(b, rng, 0)},
			{"mixed", enc.random(b, rng, 33)},
			{"evolved", newEncoder(b, ts.writers[0]).random(b, rng, 0)},
		}
		for _, c := range recs {
			b.Run(ts.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(c.rec)))
				var r Record
				for b.Loop() {
					if err := d.Decode(c.rec, &r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(ts.name+"/goavro-full", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(recs[0].rec)))
			for b.Loop() {
				if _, _, err := enc.codec.NativeFromSingle(recs[0].rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
