package eventcodec

import (
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// The reference path: goavro's generic decode, walked into an Event. The
// differential fuzz test checks the compiled decoder against it.

func (d *Decoder) goavroRejectsDuplicateMapKey(b []byte) bool {
	h, _ := wireformat.Parse(b)
	w, _ := d.writerOf(h)
	_, _, err := w.codec.NativeFromBinary(b[h.Len():])
	return err != nil && strings.Contains(err.Error(), "duplicate key")
}

// decodeWithGoavro decodes like Decode but with goavro.
func (d *Decoder) decodeWithGoavro(b []byte, ev *Event) Reason {
	n := len(d.raw.Fields)
	ev.Values = make([]Value, n)
	ev.Unclassified = 0
	if len(b) > d.limits.MaxRecordBytes {
		return Oversized
	}
	h, ok := wireformat.Parse(b)
	if !ok {
		return NotAvro
	}
	w, _ := d.writerOf(h)
	if w == nil {
		return UnknownSchema
	}
	native, rest, err := w.codec.NativeFromBinary(b[h.Len():])
	if err != nil || len(rest) != 0 {
		return MalformedAvro
	}
	top, ok := native.(map[string]any)
	if !ok {
		return MalformedAvro
	}
	ws, _ := schemas.ParseEventSchema([]byte(w.codec.Schema()), schemas.ParseOptions{})
	for _, f := range ws.Fields {
		v, present := lookup(top, strings.Split(f.Path, "."))
		if !present {
			continue
		}
		idx := d.raw.Index(f.Path)
		if idx < 0 {
			ev.Unclassified++
			continue
		}
		val, r := d.convert(v, f.Kind)
		if r != OK {
			return r
		}
		ev.Values[idx] = val
	}
	return d.validate(ev)
}

// lookup walks a goavro native value along a field path. goavro represents a
// non-null union value as a one-entry map keyed by the branch type name.
func lookup(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, name := range path {
		rec, ok := unwrap(cur).(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok := rec[name]
		if !ok {
			if len(rec) == 1 { // union-wrapped record
				for _, inner := range rec {
					if r2, ok := inner.(map[string]any); ok {
						v, ok = r2[name]
						if !ok {
							return nil, false
						}
					}
				}
			} else {
				return nil, false
			}
		}
		cur = v
	}
	cur = unwrap(cur)
	return cur, cur != nil
}

func unwrap(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, inner := range m {
			if isBranchName(k) {
				return inner
			}
		}
	}
	return v
}

// isBranchName reports whether a map key names a union branch rather than a
// record field: primitive and logical names, or dotted full names.
func isBranchName(k string) bool {
	switch k {
	case "string", "boolean", "int", "long", "float", "double", "bytes", "null", "int.date", "long.timestamp-millis":
		return true
	}
	return strings.Contains(k, ".")
}

func (d *Decoder) convert(v any, kind schemas.Kind) (Value, Reason) {
	switch kind {
	case schemas.String:
		s, ok := v.(string)
		if !ok {
			return Value{}, MalformedAvro
		}
		_ = time.Time{}
		if len(s) > d.limits.MaxFieldBytes {
			return Value{}, Oversized
		}
		if !utf8.ValidString(s) {
			return Value{}, InvalidUTF8
		}
		return Value{Present: true, Str: s}, OK
	case schemas.Boolean:
		b, ok := v.(bool)
		if !ok {
			return Value{}, MalformedAvro
		}
		var n int64
		if b {
			n = 1
		}
		return Value{Present: true, Num: n}, OK
	case schemas.Int:
		n, ok := v.(int32)
		if !ok {
			return Value{}, MalformedAvro
		}
		return Value{Present: true, Num: int64(n)}, OK
	case schemas.Long:
		n, ok := v.(int64)
		if !ok {
			return Value{}, MalformedAvro
		}
		return Value{Present: true, Num: n}, OK
	case schemas.Float:
		f, ok := v.(float32)
		if !ok || math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return Value{}, InvalidValue
		}
		return Value{Present: true, F: float64(f)}, OK
	case schemas.Double:
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return Value{}, InvalidValue
		}
		return Value{Present: true, F: f}, OK
	case schemas.Date:
		t, ok := v.(time.Time)
		if !ok {
			return Value{}, MalformedAvro
		}
		return Value{Present: true, Num: int64(math.Floor(float64(t.Unix()) / 86400))}, OK
	case schemas.TimestampMillis:
		t, ok := v.(time.Time)
		if !ok {
			return Value{}, MalformedAvro
		}
		return Value{Present: true, Num: t.UnixMilli()}, OK
	case schemas.Geo:
		m, ok := v.(map[string]any)
		if !ok {
			return Value{}, MalformedAvro
		}
		lat, ok1 := m["lat"].(float64)
		lon, ok2 := m["lon"].(float64)
		if !ok1 || !ok2 || !(lat >= -90 && lat <= 90) || !(lon >= -180 && lon <= 180) {
			return Value{}, InvalidValue
		}
		return Value{Present: true, F: lat, F2: lon}, OK
	}
	return Value{}, MalformedAvro
}

var _ = utf8.ValidString
