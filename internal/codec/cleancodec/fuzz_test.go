package cleancodec

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
)

// FuzzDecode decodes arbitrary bytes with the decoder of one of the test
// schemas (every purpose's clean schema and the all-types schema, each with
// an evolved writer schema): Decode must not panic; when it accepts a record,
// goavro must accept it too with the same values; when it rejects one that
// goavro accepts, the reason must be one where this package is stricter than
// goavro (invalid UTF-8, an over-long varint, an int outside 32 bits). The
// same body behind a Confluent header naming the same writer schema by
// registry id must decode exactly alike.
func FuzzDecode(f *testing.F) {
	tss := testSchemas(f)
	decs := make([]*Decoder, len(tss))
	oracles := make([]*oracle, len(tss))
	ids := make([]map[uint64]uint32, len(tss)) // fingerprint -> registry id, per decoder
	rng := rand.New(rand.NewPCG(7, 8))
	for i, ts := range tss {
		decs[i] = newTestDecoder(f, ts)
		oracles[i] = newOracle(f, ts)
		ids[i] = map[uint64]uint32{}
		for j, w := range append([][]byte{ts.reader}, ts.writers...) {
			fp, err := decs[i].RegisterID(uint32(j+1), w)
			if err != nil {
				f.Fatal(err)
			}
			ids[i][fp] = uint32(j + 1)
		}
		for _, w := range append([][]byte{ts.reader}, ts.writers...) {
			enc := newEncoder(f, w)
			for _, nullPct := range []int{0, 50, 100} {
				f.Add(uint8(i), enc.random(f, rng, nullPct))
			}
		}
	}
	f.Add(uint8(len(tss)-1), allTypesRecord(f, decs[len(tss)-1]))
	f.Fuzz(func(t *testing.T, sel uint8, b []byte) {
		i := int(sel) % len(decs)
		d, o := decs[i], oracles[i]
		var r Record
		err := d.Decode(b, &r)
		if h, ok := wireformat.Parse(b); ok && h.Format == wireformat.SingleObject {
			if id, ok := ids[i][h.Fingerprint]; ok {
				var rc Record
				errc := d.Decode(append(wireformat.AppendConfluent(nil, id), b[wireformat.SingleObjectHeaderLen:]...), &rc)
				var de, dec *DecodeError
				errors.As(err, &de)
				errors.As(errc, &dec)
				if (err == nil) != (errc == nil) || (de != nil && (dec == nil || de.Err != dec.Err)) {
					t.Fatalf("single-object: %v; Confluent: %v", err, errc)
				}
				if err == nil {
					if e := equalValues(d.fields, rc.Values, r.Values); e != nil {
						t.Fatalf("the framings decode differently: %v", e)
					}
				}
			}
		}
		want, oerr := o.decode(b)
		if err == nil {
			if oerr != nil {
				t.Fatalf("Decode accepts what goavro rejects (%v)", oerr)
			}
			if e := equalValues(d.fields, r.Values, want); e != nil {
				t.Fatal(e)
			}
			return
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("error %v is not a *DecodeError", err)
		}
		known := false
		for _, s := range []error{ErrNotFramed, ErrUnknownSchema, ErrTruncated, ErrBadLength, ErrBadVarint,
			ErrBadUnion, ErrBadValue, ErrInvalidUTF8, ErrTrailingBytes} {
			known = known || de.Err == s
		}
		if !known {
			t.Fatalf("unexpected error %v", err)
		}
		if oerr == nil && !errors.Is(err, ErrInvalidUTF8) && !errors.Is(err, ErrBadVarint) && !errors.Is(err, ErrBadValue) {
			t.Fatalf("Decode rejects what goavro accepts: %v", err)
		}
		for _, v := range r.Values {
			if !isZero(v) {
				t.Fatalf("value left after error: %+v", v)
			}
		}
	})
}
