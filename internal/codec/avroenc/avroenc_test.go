package avroenc

import (
	"math"
	"testing"

	"github.com/linkedin/goavro/v2"
)

// TestMatchesGoavro checks every writer against goavro, the reference codec.
func TestMatchesGoavro(t *testing.T) {
	schema := `{"type":"record","name":"R","fields":[
	 {"name":"s","type":["null","string"]},{"name":"l","type":["null","long"]},
	 {"name":"i","type":["null","int"]},{"name":"b","type":["null","boolean"]},
	 {"name":"d","type":["null","double"]},{"name":"f","type":["null","float"]},
	 {"name":"n","type":["null","string"]}]}`
	codec, err := goavro.NewCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		s string
		l int64
		i int32
		d float64
	}{{"", 0, 0, 0}, {"héllo", -1, 1, 1.5}, {string(make([]byte, 300)), math.MaxInt64, math.MinInt32, math.Inf(-1)}, {"x", math.MinInt64, math.MaxInt32, -0.0}} {
		var b []byte
		b = AppendString(AppendNonNull(b), v.s)
		b = AppendLong(AppendNonNull(b), v.l)
		b = AppendInt(AppendNonNull(b), v.i)
		b = AppendBool(AppendNonNull(b), true)
		b = AppendDouble(AppendNonNull(b), v.d)
		b = AppendFloat(AppendNonNull(b), float32(v.d))
		b = AppendNull(b)
		want, err := codec.BinaryFromNative(nil, map[string]any{
			"s": goavro.Union("string", v.s), "l": goavro.Union("long", v.l), "i": goavro.Union("int", v.i),
			"b": goavro.Union("boolean", true), "d": goavro.Union("double", v.d), "f": goavro.Union("float", float32(v.d)), "n": nil,
		})
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != string(want) {
			t.Fatalf("mismatch for %+v:\n got %x\nwant %x", v.l, b, want)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendString(buf[:0], "analytics-pseudonym-value")
	}
}
