package eventcodec

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/privacy-pipeline/pipeline/schemas"
)

// A compiled decoder: the writer schema becomes a tree of nodes that read
// Avro binary straight into Event.Values, with no generic maps and no
// allocations. Strings alias the input bytes (zero copy).

type opcode uint8

const (
	opNull opcode = iota
	opBoolean
	opInt
	opLong
	opFloat
	opDouble
	opBytes
	opString
	opRecord
	opEnum
	opFixed
	opArray
	opMap
	opUnion
	opGeo // a {lat, lon} record decoded as one leaf
)

type node struct {
	op       opcode
	size     int     // fixed size; enum symbol count
	children []*node // record fields, union branches
	items    *node   // array items, map values
	latFirst bool    // geo: field order in the writer schema
	// leaf mapping
	slot         int // index in Event.Values, or -1
	kind         schemas.Kind
	unclassified bool // a writer leaf the raw schema does not declare
}

type compiler struct {
	raw   *schemas.EventSchema
	named map[string]*node
}

// compileWriter builds the decode tree of a writer record schema.
func compileWriter(raw *schemas.EventSchema, schemaJSON []byte) (*node, error) {
	var root any
	if err := json.Unmarshal(schemaJSON, &root); err != nil {
		return nil, err
	}
	c := &compiler{raw: raw, named: map[string]*node{}}
	return c.compile(root, "", "", true)
}

func fullName(name, ns string) string {
	if strings.Contains(name, ".") || ns == "" {
		return name
	}
	return ns + "." + name
}

// compile turns a schema into a node. path is the leaf path of the field
// whose type this is ("" for the top record); leafCtx is true when a leaf
// at this path should map to a slot.
func (c *compiler) compile(t any, ns, path string, top bool) (*node, error) {
	switch v := t.(type) {
	case string:
		return c.primitive(v, ns, path)
	case []any:
		u := &node{op: opUnion, slot: -1}
		for _, b := range v {
			bn, err := c.compile(b, ns, path, false)
			if err != nil {
				return nil, err
			}
			u.children = append(u.children, bn)
		}
		if len(u.children) == 0 {
			return nil, fmt.Errorf("empty union at %s", path)
		}
		// A union that is not ["null", T] is a leaf of Kind Other: if the
		// raw schema does not declare it, it is unclassified as a whole.
		if !isNullable(v) && !top && path != "" {
			c.markLeaf(u, path, schemas.Other)
			for _, ch := range u.children {
				clearLeaf(ch)
			}
		}
		return u, nil
	case map[string]any:
		typ, _ := v["type"].(string)
		if n, _ := v["namespace"].(string); n != "" {
			ns = n
		}
		switch typ {
		case "record", "error":
			name, _ := v["name"].(string)
			fields, _ := v["fields"].([]any)
			full := fullName(name, ns)
			if !top && path != "" && isGeoRecord(fields) {
				g := &node{op: opGeo, slot: -1}
				if f0, _ := fields[0].(map[string]any); f0["name"] == "lat" {
					g.latFirst = true
				}
				c.markLeaf(g, path, schemas.Geo)
				c.named[full] = g
				return g, nil
			}
			r := &node{op: opRecord, slot: -1}
			c.named[full] = r
			recNS := ns
			if i := strings.LastIndexByte(full, '.'); i >= 0 {
				recNS = full[:i]
			}
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				fname, _ := fm["name"].(string)
				if fname == "" {
					return nil, fmt.Errorf("field without name in %s", full)
				}
				p := fname
				if path != "" {
					p = path + "." + fname
				}
				fn, err := c.compile(fm["type"], recNS, p, false)
				if err != nil {
					return nil, err
				}
				r.children = append(r.children, fn)
			}
			return r, nil
		case "enum":
			syms, _ := v["symbols"].([]any)
			n := &node{op: opEnum, size: len(syms), slot: -1}
			c.named[fullName(str(v["name"]), ns)] = n
			c.markLeaf(n, path, schemas.Other)
			return n, nil
		case "fixed":
			size, _ := v["size"].(float64)
			n := &node{op: opFixed, size: int(size), slot: -1}
			c.named[fullName(str(v["name"]), ns)] = n
			c.markLeaf(n, path, schemas.Other)
			return n, nil
		case "array", "map":
			items, err := c.compile(firstOf(v["items"], v["values"]), ns, "", false)
			if err != nil {
				return nil, err
			}
			n := &node{op: opArray, items: items, slot: -1}
			if typ == "map" {
				n.op = opMap
			}
			c.markLeaf(n, path, schemas.Other)
			return n, nil
		default:
			n, err := c.primitive(typ, ns, path)
			if err != nil {
				return nil, err
			}
			switch str(v["logicalType"]) {
			case "date":
				if n.op == opInt {
					c.markLeaf(n, path, schemas.Date)
				}
			case "timestamp-millis":
				if n.op == opLong {
					c.markLeaf(n, path, schemas.TimestampMillis)
				}
			}
			return n, nil
		}
	}
	return nil, fmt.Errorf("unsupported schema at %s", path)
}

func (c *compiler) primitive(name, ns, path string) (*node, error) {
	kinds := map[string]struct {
		op   opcode
		kind schemas.Kind
	}{
		"null": {opNull, schemas.Other}, "boolean": {opBoolean, schemas.Boolean}, "int": {opInt, schemas.Int},
		"long": {opLong, schemas.Long}, "float": {opFloat, schemas.Float}, "double": {opDouble, schemas.Double},
		"bytes": {opBytes, schemas.Other}, "string": {opString, schemas.String},
	}
	if k, ok := kinds[name]; ok {
		n := &node{op: k.op, slot: -1}
		if k.op != opNull {
			c.markLeaf(n, path, k.kind)
		}
		return n, nil
	}
	if n, ok := c.named[fullName(name, ns)]; ok {
		return n, nil
	}
	if n, ok := c.named[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("unknown type %q at %s", name, path)
}

// markLeaf maps a leaf node at path to its raw slot, or marks it unclassified.
func (c *compiler) markLeaf(n *node, path string, kind schemas.Kind) {
	if path == "" {
		return
	}
	n.kind = kind
	if i := c.raw.Index(path); i >= 0 && c.raw.Fields[i].Kind == kind {
		n.slot, n.unclassified = i, false
		return
	}
	n.slot, n.unclassified = -1, true
}

func clearLeaf(n *node) { n.slot, n.unclassified = -1, false }

func isNullable(u []any) bool {
	if len(u) != 2 {
		return false
	}
	return u[0] == "null" || u[1] == "null"
}

func isGeoRecord(fields []any) bool {
	if len(fields) != 2 {
		return false
	}
	names := map[string]bool{}
	for _, f := range fields {
		fm, _ := f.(map[string]any)
		if fm["type"] != "double" {
			return false
		}
		names[str(fm["name"])] = true
	}
	return names["lat"] && names["lon"]
}

func firstOf(a, b any) any {
	if a != nil {
		return a
	}
	return b
}

func str(v any) string { s, _ := v.(string); return s }

// reader decodes Avro binary from b.
type reader struct {
	b      []byte
	pos    int
	d      *Decoder
	ev     *Event
	reason Reason
	budget int // bounds work on zero-size array/map items
}

func (r *reader) fail(reason Reason) {
	if r.reason == OK {
		r.reason = reason
	}
}

func (r *reader) long() int64 {
	var u uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.pos >= len(r.b) {
			r.fail(MalformedAvro)
			return 0
		}
		c := r.b[r.pos]
		r.pos++
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1)
		}
	}
	r.fail(MalformedAvro)
	return 0
}

func (r *reader) take(n int64) []byte {
	if n < 0 || n > int64(len(r.b)-r.pos) {
		r.fail(MalformedAvro)
		return nil
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s
}

// decode reads the value of n from the input: records and unions walk
// their children; a scalar, an array or a map is read and checked, then
// stored (marked present in its raw slot, or counted as unclassified).
// After a failure (r.reason set) it reads nothing more.
func (r *reader) decode(n *node) {
	if r.reason != OK {
		return
	}
	var v Value
	switch n.op {
	case opNull:
		return
	case opRecord:
		for _, ch := range n.children {
			r.decode(ch)
		}
		return
	case opUnion:
		// The branch index, then the branch. Read here rather than by a
		// call of its own: most fields are nullable unions.
		i := r.long()
		if r.reason != OK {
			return
		}
		if i < 0 || i >= int64(len(n.children)) {
			r.fail(MalformedAvro)
			return
		}
		br := n.children[i]
		if n.unclassified && br.op != opNull {
			r.ev.Unclassified++ // a non-null branch the raw schema does not declare
		}
		r.decode(br)
		return
	case opArray, opMap:
		r.blocks(n) // then stored like a scalar: a whole array may be a field
	case opBoolean, opInt, opLong:
		r.integer(n, &v)
	case opFloat, opDouble:
		r.float(n, &v)
	case opBytes, opString:
		// Read here rather than by a call of its own: strings are most
		// of an event. One that maps to a raw field must fit
		// MaxFieldBytes and be valid UTF-8; Str aliases the input.
		s := r.take(r.long())
		if r.reason != OK || n.slot < 0 {
			break
		}
		if len(s) > r.d.limits.MaxFieldBytes {
			r.fail(Oversized)
		} else if !utf8.Valid(s) {
			r.fail(InvalidUTF8)
		} else if len(s) > 0 {
			v.Str = unsafe.String(&s[0], len(s))
		}
	case opGeo:
		r.geo(n, &v)
	case opEnum:
		if i := r.long(); i < 0 || i >= int64(n.size) {
			r.fail(MalformedAvro)
		}
	case opFixed:
		r.take(int64(n.size))
	}
	if r.reason != OK {
		return
	}
	r.store(n, &v)
}

// integer reads a boolean (one byte, 0 or 1), an int (a zig-zag varint
// within 32 bits) or a long into v.Num.
func (r *reader) integer(n *node, v *Value) {
	switch n.op {
	case opBoolean:
		b := r.take(1)
		if b == nil {
			return
		}
		if b[0] > 1 {
			r.fail(MalformedAvro)
			return
		}
		v.Num = int64(b[0])
	case opInt:
		x := r.long()
		if x < math.MinInt32 || x > math.MaxInt32 {
			r.fail(MalformedAvro)
			return
		}
		v.Num = x
	default:
		v.Num = r.long()
	}
}

// float reads a float or a double into v.F. A float must be finite; so
// must a double that maps to a raw field.
func (r *reader) float(n *node, v *Value) {
	if n.op == opFloat {
		b := r.take(4)
		if b == nil {
			return
		}
		v.F = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			r.fail(InvalidValue)
		}
		return
	}
	b := r.take(8)
	if b == nil {
		return
	}
	v.F = math.Float64frombits(binary.LittleEndian.Uint64(b))
	if n.slot >= 0 && (math.IsNaN(v.F) || math.IsInf(v.F, 0)) {
		r.fail(InvalidValue)
	}
}

// geo reads a {lat, lon} record (two doubles, in the writer's order) into
// v.F (latitude) and v.F2 (longitude); both must be in range.
func (r *reader) geo(n *node, v *Value) {
	b := r.take(16)
	if b == nil {
		return
	}
	a := math.Float64frombits(binary.LittleEndian.Uint64(b))
	c := math.Float64frombits(binary.LittleEndian.Uint64(b[8:]))
	if !n.latFirst {
		a, c = c, a
	}
	if !(a >= -90 && a <= 90) || !(c >= -180 && c <= 180) {
		r.fail(InvalidValue)
		return
	}
	v.F, v.F2 = a, c
}

// blocks reads the blocks of an array or a map (a map item is a key, then
// the value) until the empty block that ends it. The item count, summed
// over blocks, is bounded by r.budget so zero-size items cannot make a
// short record cost unbounded work.
func (r *reader) blocks(n *node) {
	for {
		count := r.long()
		if r.reason != OK || count == 0 {
			return
		}
		if count < 0 {
			count = -count
			r.long() // block size in bytes
		}
		if count > int64(r.budget) {
			r.fail(MalformedAvro)
			return
		}
		r.budget -= int(count)
		for i := int64(0); i < count && r.reason == OK; i++ {
			if n.op == opMap {
				r.take(r.long())
			}
			r.decode(n.items)
		}
	}
}

// store puts a leaf's value in its raw slot, or counts an unclassified
// leaf.
func (r *reader) store(n *node, v *Value) {
	switch {
	case n.slot >= 0:
		v.Present = true
		r.ev.Values[n.slot] = *v
	case n.unclassified:
		r.ev.Unclassified++
	}
}
