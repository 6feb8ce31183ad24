package cleancodec

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// FuzzDecode decodes arbitrary bytes with the decoder of one of the test
// schemas (every purpose's clean schema and the all-types schema, each with
// an evolved writer schema): Decode must not panic; when it accepts a record,
// goavro must accept it too with the same values; when it rejects one that
// goavro accepts, the reason must be one where this package is stricter than
// goavro (invalid UTF-8, an over-long varint, an int outside 32 bits).
func FuzzDecode(f *testing.F) {
	tss := testSchemas(f)
	decs := make([]*Decoder, len(tss))
	oracles := make([]*oracle, len(tss))
	rng := rand.New(rand.NewPCG(7, 8))
	for i, ts := range tss {
		decs[i] = newTestDecoder(f, ts)
		oracles[i] = newOracle(f, ts)
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
