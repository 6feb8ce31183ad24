package kanonrec

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// LinkageStats is the outcome of the linkage attack of SPEC 3.6 on the
// record-level output.
type LinkageStats struct {
	// Released is the number of released records attacked.
	Released int
	// Unique counts released records that join to exactly one clean
	// record, and so to its pseudonym and exact values. SPEC 3.6 bounds
	// Unique/Released by 1/k.
	Unique int
	// MinMatches is the smallest number of clean records a released record
	// joins to (0 only if the released record is not from this input).
	MinMatches int
}

// Share returns Unique/Released (0 when nothing was released).
func (s LinkageStats) Share() float64 {
	if s.Released == 0 {
		return 0
	}
	return float64(s.Unique) / float64(s.Released)
}

// Linkage attacks released records (single-object Avro values of the
// output topic) with the clean records they were made from (values of the
// purpose's clean topic), as a reader of both topics would: each released
// record is joined to every clean record that agrees with its kept values
// (after the same domain filter) and lies inside its generalised
// quasi-identifiers (numeric ranges contain the value, a categorical label
// is the value or one of its ancestors). extra, when not nil, adds a
// condition to the join of released record i (a test uses it to show what
// an exact field would give away).
func Linkage(p *Processor, released, clean [][]byte, extra func(i int, cl map[string]any) bool) (LinkageStats, error) {
	outSchema, err := p.cfg.Records.KanonSchemaJSON()
	if err != nil {
		return LinkageStats{}, err
	}
	outCodec, err := avrosingle.NewCodec(string(outSchema))
	if err != nil {
		return LinkageStats{}, fmt.Errorf("anonymize: linkage: %w", err)
	}
	cleanSchema, err := schemas.CleanSchemaJSON(p.cfg.Records.Purpose)
	if err != nil {
		return LinkageStats{}, err
	}
	cleanCodec, err := avrosingle.NewCodec(string(cleanSchema))
	if err != nil {
		return LinkageStats{}, fmt.Errorf("anonymize: linkage: %w", err)
	}
	// Index the clean records by their kept values as published, each with
	// its quasi-identifiers as numbers and as the labels that cover them.
	byKept := map[string][]linkRecord{}
	for _, b := range clean {
		native, _, err := cleanCodec.NativeFromFramed(b)
		if err != nil {
			continue // undecodable input is never released
		}
		m := native.(map[string]any)
		key := p.keptKey(m, true)
		byKept[key] = append(byKept[key], p.linkRecord(m))
	}
	st := LinkageStats{MinMatches: -1}
	lo, hi := make([]float64, p.numQIs), make([]float64, p.numQIs)
	labels := make([]string, p.catQIs)
	for i, b := range released {
		native, _, err := outCodec.NativeFromFramed(b)
		if err != nil {
			return st, fmt.Errorf("anonymize: linkage: released record: %w", err)
		}
		rel := native.(map[string]any)
		ni, ci := 0, 0
		for _, q := range p.qis {
			if q.numeric {
				lo[ni], hi[ni] = number(rel[q.field+"_min"]), number(rel[q.field+"_max"])
				ni++
				continue
			}
			labels[ci], _ = rel[q.field].(string)
			if labels[ci] == q.h.Label(q.h.RootNode()) {
				labels[ci] = "" // covers everything
			}
			ci++
		}
		n := 0
		for _, cl := range byKept[p.keptKey(rel, false)] {
			if cl.inside(lo, hi, labels) && (extra == nil || extra(i, cl.m)) {
				n++
			}
		}
		st.Released++
		if n == 1 {
			st.Unique++
		}
		if st.MinMatches < 0 || n < st.MinMatches {
			st.MinMatches = n
		}
	}
	return st, nil
}

// linkRecord is a clean record as the linkage attack compares it.
type linkRecord struct {
	m    map[string]any
	nums []float64  // numeric quasi-identifiers in published units
	anc  [][]string // per categorical quasi-identifier, the labels below the root that cover it
}

func (p *Processor) linkRecord(m map[string]any) linkRecord {
	r := linkRecord{m: m}
	for _, q := range p.qis {
		v := unwrap(m[q.field])
		if q.numeric {
			x := q.min
			switch {
			case v != nil:
				x = number(v)
			case q.scale != 1:
				x = float64(timeBase)
			}
			r.nums = append(r.nums, x)
			continue
		}
		var anc []string
		if s, ok := v.(string); ok {
			root := q.h.Label(q.h.RootNode())
			for l := range q.h.Levels() {
				if g := q.h.Generalize(s, l); g != root {
					anc = append(anc, g)
				}
			}
		}
		r.anc = append(r.anc, anc)
	}
	return r
}

// inside reports whether the record lies inside a released record's
// generalisation: numeric ranges [lo, hi] and categorical labels ("" for
// the root, which covers everything).
func (r *linkRecord) inside(lo, hi []float64, labels []string) bool {
	for j, x := range r.nums {
		if x < lo[j] || x > hi[j] {
			return false
		}
	}
	for j, label := range labels {
		if label != "" && !slices.Contains(r.anc[j], label) {
			return false
		}
	}
	return true
}

// keptKey renders a record's kept values; for a clean record (filter) a
// value outside its domain renders as null, as the processor publishes it.
func (p *Processor) keptKey(m map[string]any, filter bool) string {
	var b strings.Builder
	for _, k := range p.keep {
		v := unwrap(m[k.name])
		if s, ok := v.(string); ok && filter && k.domain != nil {
			if _, in := k.domain.Lookup(s); !in {
				v = nil
			}
		}
		fmt.Fprintf(&b, "%v\x00", v)
	}
	return b.String()
}

// unwrap returns the value of a goavro union (or the value itself).
func unwrap(v any) any {
	if m, ok := v.(map[string]any); ok {
		for _, x := range m {
			return x
		}
		return nil
	}
	return v
}

// number converts a decoded Avro number or timestamp to CASTLE-free units
// (milliseconds for a timestamp).
func number(v any) float64 {
	switch x := unwrap(v).(type) {
	case float64:
		return x
	case float32:
		return float64(x)
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case time.Time:
		return float64(x.UnixMilli())
	}
	return 0
}
