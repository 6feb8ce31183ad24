// Package partial is the wire format of the k-anonymity partials topic,
// between the two stages of the aggregates: processors/kanonagg (one
// state per input partition) publishes, for every window it closes, its
// level-0 contributions (cells with their events, sums and distinct subject
// ids) and, as it moves on, its progress (every window before a bound is
// closed on that partition); processors/kanonmerge merges them and
// releases a window once every input partition has passed it.
//
// A record is binary: the magic "KPT1", a kind byte ('C' cells, 'P'
// progress), the aggregate name, the input partition and the number of
// input partitions the publisher knows of; then, for progress, the bound
// (varint); for cells, the window start (varint), the key-id table of the
// identity domains its subject ids use (count, then per entry the
// partition-local domain as uvarint and the key id), and the cells (count,
// then per cell the values, events and quantised sum as varints, the sum
// as little-endian float64 bits, and the subject ids: a count, the first
// as uvarint, then the strictly positive differences as uvarints).
//
// Subject ids carry a partition-local identity domain in their top
// aggregate.DomainBits bits; the key-id table lets the merge stage
// renumber them in one table for every partition, so one person under two
// key ids is still counted once.
//
// It imports the standard library and internal/kanon/aggregate.
package partial

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
)

// Kinds of record.
const (
	// KindCells is a chunk of one partition's contributions to a window.
	KindCells byte = 'C'
	// KindProgress reports that a partition closed every window before a
	// bound.
	KindProgress byte = 'P'
)

const magic = "KPT1"

// Limits on decoded records.
const (
	// MaxPartitions bounds the input partitions of a record.
	MaxPartitions = aggregate.MaxShards
	// MaxString bounds an aggregate name, key id or dimension value.
	MaxString = 1 << 12
	// MaxDims bounds the values of a cell.
	MaxDims = 64
)

// KeyID names the pseudonym key of one partition-local identity domain.
type KeyID struct {
	// Domain is the partition-local domain (top bits of the subject ids).
	Domain uint16
	// ID is the key id (empty for domain 0, records without one).
	ID string
}

// Record is one record of the partials topic.
type Record struct {
	// Kind is KindCells or KindProgress.
	Kind byte
	// Aggregate names the aggregate (kanon.json) the record belongs to.
	Aggregate string
	// Partition is the input partition that publishes it; Partitions the
	// number of input partitions it knows of.
	Partition, Partitions int32
	// ClosedBefore (progress): every window starting before it is closed
	// on the partition.
	ClosedBefore int64
	// Start (cells) is the window start in unix ms.
	Start int64
	// KeyIDs (cells) maps the domains of the subject ids to key ids.
	KeyIDs []KeyID
	// Cells (cells) are contributions; one cell may be split over several
	// records (the events and sums are then in one of them).
	Cells []aggregate.PartialCell
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (r *Record) appendHeader(b []byte) []byte {
	b = append(b, magic...)
	b = append(b, r.Kind)
	b = appendString(b, r.Aggregate)
	b = binary.AppendUvarint(b, uint64(r.Partition))
	return binary.AppendUvarint(b, uint64(r.Partitions))
}

// AppendProgress appends the encoding of a progress record.
func AppendProgress(b []byte, aggregateName string, partition, partitions int32, closedBefore int64) []byte {
	r := Record{Kind: KindProgress, Aggregate: aggregateName, Partition: partition, Partitions: partitions}
	b = r.appendHeader(b)
	return binary.AppendVarint(b, closedBefore)
}

// cellSize is an upper bound of a cell's encoding without its subjects.
func cellSize(c *aggregate.PartialCell) int {
	n := 3*binary.MaxVarintLen64 + 8 + binary.MaxVarintLen64
	for _, v := range c.Values {
		n += binary.MaxVarintLen64 + len(v)
	}
	return n
}

// EncodeCells encodes the cells of one window as one or more records of at
// most maxBytes each (a cell whose subjects do not fit is split over
// records; the first part carries its events and sums) and calls emit with
// each; the slice is reused after emit returns. A cell that does not fit
// even without its subjects (its dimension values are too long) is not
// encoded: skipped lists their indexes, for the caller to count. When
// maxBytes cannot hold the header and key-id table at all, nothing is
// encoded and err says so.
func EncodeCells(aggregateName string, partition, partitions int32, start int64, keyIDs []KeyID, cells []aggregate.PartialCell, maxBytes int, emit func([]byte)) (skipped []int, err error) {
	r := Record{Kind: KindCells, Aggregate: aggregateName, Partition: partition, Partitions: partitions}
	head := r.appendHeader(nil)
	head = binary.AppendVarint(head, start)
	head = binary.AppendUvarint(head, uint64(len(keyIDs)))
	for _, k := range keyIDs {
		head = binary.AppendUvarint(head, uint64(k.Domain))
		head = appendString(head, k.ID)
	}
	var chunk []aggregate.PartialCell
	size := len(head) + binary.MaxVarintLen64
	var buf []byte
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		buf = append(buf[:0], head...)
		buf = binary.AppendUvarint(buf, uint64(len(chunk)))
		for i := range chunk {
			buf = appendCell(buf, &chunk[i])
		}
		emit(buf)
		chunk = chunk[:0]
		size = len(head) + binary.MaxVarintLen64
	}
	if len(head)+2*binary.MaxVarintLen64+cellSize(&aggregate.PartialCell{})+binary.MaxVarintLen64 > maxBytes {
		return nil, fmt.Errorf("partial: the header and key-id table do not fit in %d bytes", maxBytes)
	}
	for i, c := range cells {
		base := cellSize(&c)
		if len(head)+2*binary.MaxVarintLen64+base+binary.MaxVarintLen64 > maxBytes {
			skipped = append(skipped, i)
			continue
		}
		for first := true; first || len(c.Subjects) > 0; first = false {
			if size+base+binary.MaxVarintLen64 > maxBytes {
				flush()
			}
			room := (maxBytes - size - base) / binary.MaxVarintLen64
			part := c
			if len(c.Subjects) > room {
				part.Subjects = c.Subjects[:room]
			}
			c.Subjects = c.Subjects[len(part.Subjects):]
			c.Events, c.Sum, c.QSum = 0, 0, 0 // carried by the first part only
			chunk = append(chunk, part)
			size += base + len(part.Subjects)*binary.MaxVarintLen64
		}
	}
	flush()
	return skipped, nil
}

func appendCell(b []byte, c *aggregate.PartialCell) []byte {
	b = binary.AppendUvarint(b, uint64(len(c.Values)))
	for _, v := range c.Values {
		b = appendString(b, v)
	}
	b = binary.AppendVarint(b, c.Events)
	b = binary.AppendVarint(b, c.QSum)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.Sum))
	b = binary.AppendUvarint(b, uint64(len(c.Subjects)))
	var prev uint64
	for i, s := range c.Subjects {
		if i == 0 {
			b = binary.AppendUvarint(b, s)
		} else {
			b = binary.AppendUvarint(b, s-prev)
		}
		prev = s
	}
	return b
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("partial: malformed record")

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (r *reader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail("bad unsigned number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of items of at least minBytes bytes each.
func (r *reader) count(minBytes int) int {
	n := r.uvarint(math.MaxInt32)
	if r.err == nil && n*uint64(minBytes) > uint64(len(r.b)) {
		r.fail("count beyond the record")
		return 0
	}
	return int(n)
}

func (r *reader) str() string {
	n := r.uvarint(MaxString)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail("truncated string")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Decode decodes a record. It never panics; any truncated, trailing,
// oversized or inconsistent input (subject ids not strictly increasing,
// negative events, a non-finite sum, a partition at or beyond a non-zero
// partition count the record itself claims, a partition or count beyond
// MaxPartitions) returns an error wrapping ErrMalformed. It cannot know the
// input's real partition count: the merge stage checks the partition and
// the count against it.
func Decode(b []byte) (Record, error) {
	var rec Record
	if len(b) < len(magic)+1 || string(b[:len(magic)]) != magic {
		return rec, fmt.Errorf("%w: not a partials record", ErrMalformed)
	}
	rec.Kind = b[len(magic)]
	r := &reader{b: b[len(magic)+1:]}
	rec.Aggregate = r.str()
	rec.Partition = int32(r.uvarint(MaxPartitions - 1))
	rec.Partitions = int32(r.uvarint(MaxPartitions))
	switch rec.Kind {
	case KindProgress:
		rec.ClosedBefore = r.varint()
	case KindCells:
		rec.Start = r.varint()
		if n := r.count(2); n > 0 {
			rec.KeyIDs = make([]KeyID, n)
			seen := map[uint16]bool{}
			for i := range rec.KeyIDs {
				d := uint16(r.uvarint(math.MaxUint16))
				if seen[d] {
					r.fail("a domain named twice")
				}
				seen[d] = true
				rec.KeyIDs[i] = KeyID{Domain: d, ID: r.str()}
			}
		}
		if n := r.count(12); n > 0 {
			rec.Cells = make([]aggregate.PartialCell, n)
			for i := range rec.Cells {
				decodeCell(r, &rec.Cells[i])
			}
		}
	default:
		return rec, fmt.Errorf("%w: unknown kind", ErrMalformed)
	}
	if r.err != nil {
		return Record{}, r.err
	}
	if len(r.b) != 0 {
		return Record{}, fmt.Errorf("%w: trailing bytes", ErrMalformed)
	}
	if rec.Aggregate == "" || (rec.Partitions != 0 && rec.Partition >= rec.Partitions) {
		return Record{}, fmt.Errorf("%w: no aggregate, or a partition outside the count", ErrMalformed)
	}
	return rec, nil
}

func decodeCell(r *reader, c *aggregate.PartialCell) {
	nv := int(r.uvarint(MaxDims))
	c.Values = make([]string, 0, nv)
	for range nv {
		c.Values = append(c.Values, r.str())
	}
	c.Events = r.varint()
	c.QSum = r.varint()
	if r.err == nil {
		if len(r.b) < 8 {
			r.fail("truncated sum")
			return
		}
		c.Sum = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
		r.b = r.b[8:]
	}
	if c.Events < 0 || math.IsNaN(c.Sum) || math.IsInf(c.Sum, 0) {
		r.fail("negative events or a non-finite sum")
	}
	n := r.count(1)
	if n > 0 {
		c.Subjects = make([]uint64, n)
	}
	var prev uint64
	for i := range c.Subjects {
		d := r.uvarint(math.MaxUint64)
		if i > 0 {
			if d == 0 || prev+d < prev {
				r.fail("subject ids not strictly increasing")
				return
			}
			d += prev
		}
		c.Subjects[i] = d
		prev = d
	}
}
