package audit

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// BatchCounts is a batch summary in the form a processor fills per batch
// without allocating: slices it keeps and refills (Reset), names that are
// constants. AppendBatch writes it; Summary returns the decoded form.
type BatchCounts struct {
	Inputs        []InputRange
	Events        int
	PolicyVersion string
	// HasConsent says whether ConsentMin and ConsentMax hold the range of
	// consent versions decided on.
	HasConsent             bool
	ConsentMin, ConsentMax int64
	Purposes               []PurposeTally
	Quarantined            []Count
	Unclassified           int
}

// InputRange is one input partition's offsets in a batch, [First, Last].
type InputRange struct {
	Topic       string
	Partition   int32
	First, Last int64
}

// PurposeTally is one purpose's outcomes.
type PurposeTally struct {
	Purpose           string
	Published         int
	Denied            []Count
	SensitiveWithheld int
}

// Count is a named count (a reason and how often).
type Count struct {
	Name string
	N    int
}

// Reset empties c, keeping its slices' memory.
func (c *BatchCounts) Reset() {
	for i := range c.Purposes {
		c.Purposes[i].Denied = c.Purposes[i].Denied[:0]
	}
	*c = BatchCounts{Inputs: c.Inputs[:0], Purposes: c.Purposes[:0], Quarantined: c.Quarantined[:0]}
}

// Note adds one input offset of a partition to the ranges.
func (c *BatchCounts) Note(topic string, partition int32, offset int64) {
	if n := len(c.Inputs); n > 0 && c.Inputs[n-1].Partition == partition && c.Inputs[n-1].Topic == topic {
		in := &c.Inputs[n-1] // the common case: a run of one partition
		in.First, in.Last = min(in.First, offset), max(in.Last, offset)
		return
	}
	for i := range c.Inputs {
		in := &c.Inputs[i]
		if in.Partition == partition && in.Topic == topic {
			in.First, in.Last = min(in.First, offset), max(in.Last, offset)
			return
		}
	}
	c.Inputs = append(c.Inputs, InputRange{Topic: topic, Partition: partition, First: offset, Last: offset})
}

// AddPurpose appends a purpose's tally, reusing the memory of an earlier
// batch's, and returns it for its denials.
func (c *BatchCounts) AddPurpose(name string, published, sensitive int) *PurposeTally {
	if len(c.Purposes) < cap(c.Purposes) {
		c.Purposes = c.Purposes[:len(c.Purposes)+1]
		p := &c.Purposes[len(c.Purposes)-1]
		*p = PurposeTally{Purpose: name, Published: published, Denied: p.Denied[:0], SensitiveWithheld: sensitive}
		return p
	}
	c.Purposes = append(c.Purposes, PurposeTally{Purpose: name, Published: published, SensitiveWithheld: sensitive})
	return &c.Purposes[len(c.Purposes)-1]
}

// Summary returns the decoded form of c (zero counts left out, as
// AppendBatch leaves them out).
func (c *BatchCounts) Summary() BatchSummary {
	s := BatchSummary{Events: c.Events, PolicyVersion: c.PolicyVersion, Purposes: map[string]PurposeCounts{}, Unclassified: c.Unclassified}
	for _, in := range c.Inputs {
		s.Inputs = append(s.Inputs, Input{Topic: in.Topic, Partition: in.Partition, Offsets: []int64{in.First, in.Last}})
	}
	if c.HasConsent {
		s.ConsentVersions = &VersionRange{Min: c.ConsentMin, Max: c.ConsentMax}
	}
	for _, p := range c.Purposes {
		pc := PurposeCounts{Published: p.Published, SensitiveWithheld: p.SensitiveWithheld}
		for _, d := range p.Denied {
			if d.N != 0 {
				if pc.Denied == nil {
					pc.Denied = map[string]int{}
				}
				pc.Denied[d.Name] += d.N
			}
		}
		s.Purposes[p.Purpose] = pc
	}
	for _, q := range c.Quarantined {
		if q.N != 0 {
			if s.Quarantined == nil {
				s.Quarantined = map[string]int{}
			}
			s.Quarantined[q.Name] += q.N
		}
	}
	return s
}

// countsOf is the inverse of Summary, names in sorted order.
func countsOf(s *BatchSummary) BatchCounts {
	c := BatchCounts{Events: s.Events, PolicyVersion: s.PolicyVersion, Unclassified: s.Unclassified}
	for _, in := range s.Inputs {
		c.Inputs = append(c.Inputs, InputRange{Topic: in.Topic, Partition: in.Partition, First: in.Offsets[0], Last: in.Offsets[1]})
	}
	if v := s.ConsentVersions; v != nil {
		c.HasConsent, c.ConsentMin, c.ConsentMax = true, v.Min, v.Max
	}
	for _, name := range sortedKeys(s.Purposes) {
		pc := s.Purposes[name]
		p := c.AddPurpose(name, pc.Published, pc.SensitiveWithheld)
		for _, r := range sortedKeys(pc.Denied) {
			p.Denied = append(p.Denied, Count{r, pc.Denied[r]})
		}
	}
	for _, r := range sortedKeys(s.Quarantined) {
		c.Quarantined = append(c.Quarantined, Count{r, s.Quarantined[r]})
	}
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AppendBatch appends the JSON of a batch record to dst (the same
// document Encode writes for it). It allocates nothing once dst has room;
// names and counts are written as given (Validate is the reader's check,
// and the privacy processor's tests decode what it writes).
func AppendBatch(dst []byte, at time.Time, processor string, c *BatchCounts) []byte {
	dst = append(dst, `{"v":1,"kind":"batch","time_ms":`...)
	dst = strconv.AppendInt(dst, at.UnixMilli(), 10)
	dst = append(dst, `,"processor":`...)
	dst = appendString(dst, processor)
	dst = append(dst, `,"batch":{"inputs":[`...)
	for i, in := range c.Inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"topic":`...)
		dst = appendString(dst, in.Topic)
		dst = append(dst, `,"partition":`...)
		dst = strconv.AppendInt(dst, int64(in.Partition), 10)
		dst = append(dst, `,"offsets":[`...)
		dst = strconv.AppendInt(dst, in.First, 10)
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, in.Last, 10)
		dst = append(dst, "]}"...)
	}
	dst = append(dst, `],"events":`...)
	dst = strconv.AppendInt(dst, int64(c.Events), 10)
	dst = append(dst, `,"policy_version":`...)
	dst = appendString(dst, c.PolicyVersion)
	if c.HasConsent {
		dst = append(dst, `,"consent_versions":{"min":`...)
		dst = strconv.AppendInt(dst, c.ConsentMin, 10)
		dst = append(dst, `,"max":`...)
		dst = strconv.AppendInt(dst, c.ConsentMax, 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"purposes":{`...)
	for i, p := range c.Purposes {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, p.Purpose)
		dst = append(dst, `:{"published":`...)
		dst = strconv.AppendInt(dst, int64(p.Published), 10)
		dst = appendCounts(dst, `,"denied":{`, p.Denied)
		if p.SensitiveWithheld != 0 {
			dst = append(dst, `,"sensitive_withheld":`...)
			dst = strconv.AppendInt(dst, int64(p.SensitiveWithheld), 10)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, '}')
	dst = appendCounts(dst, `,"quarantined":{`, c.Quarantined)
	if c.Unclassified != 0 {
		dst = append(dst, `,"unclassified_dropped":`...)
		dst = strconv.AppendInt(dst, int64(c.Unclassified), 10)
	}
	return append(dst, "}}"...)
}

// appendCounts appends open, the non-zero counts and "}" (nothing when
// every count is zero).
func appendCounts(dst []byte, open string, cs []Count) []byte {
	n := 0
	for _, c := range cs {
		if c.N == 0 {
			continue
		}
		if n == 0 {
			dst = append(dst, open...)
		} else {
			dst = append(dst, ',')
		}
		n++
		dst = appendString(dst, c.Name)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(c.N), 10)
	}
	if n > 0 {
		dst = append(dst, '}')
	}
	return dst
}

// appendString appends s as a JSON string (invalid UTF-8 becomes U+FFFD,
// as encoding/json writes it).
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, `\u202`...)
			dst = append(dst, hex[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
