// Package avroenc writes Avro binary encoding for the primitive types the
// clean schemas use (the framing header before it is package wireformat's).
// It lets the hot path
// encode a compiled plan straight into a byte buffer, with no generic maps
// and no allocations; tests check its output against goavro, the reference
// codec.
//
// It imports only the standard library.
package avroenc

import (
	"encoding/binary"
	"math"
)

// AppendLong appends a zig-zag varint long.
func AppendLong(dst []byte, v int64) []byte {
	u := uint64((v << 1) ^ (v >> 63))
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

// AppendInt appends a zig-zag varint int.
func AppendInt(dst []byte, v int32) []byte { return AppendLong(dst, int64(v)) }

// AppendBool appends a boolean.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// AppendDouble appends an IEEE 754 double, little-endian.
func AppendDouble(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

// AppendFloat appends an IEEE 754 float, little-endian.
func AppendFloat(dst []byte, v float32) []byte {
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
}

// AppendString appends a length-prefixed string.
func AppendString(dst []byte, s string) []byte {
	dst = AppendLong(dst, int64(len(s)))
	return append(dst, s...)
}

// AppendBytes appends length-prefixed bytes.
func AppendBytes(dst []byte, b []byte) []byte {
	dst = AppendLong(dst, int64(len(b)))
	return append(dst, b...)
}

// AppendNull appends the null branch (index 0) of a ["null", T] union.
func AppendNull(dst []byte) []byte { return append(dst, 0) }

// AppendNonNull appends the index of the second branch (1) of a ["null", T]
// union; the value follows.
func AppendNonNull(dst []byte) []byte { return append(dst, 2) } // zig-zag(1) = 2
