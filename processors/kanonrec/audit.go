package kanonrec

import (
	"context"
	"fmt"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Audit is the independent check of a record-level run against its input.
type Audit struct {
	// Published is the number of records the run published; Expected the
	// number an uninterrupted Offline run over the same input releases.
	Published, Expected int
	// Extra counts published records the uninterrupted run did not
	// release (duplicated or foreign); Missing the converse (lost).
	Extra, Missing int
	// Groups is the number of clusters a reader can tell apart (cluster
	// id and generalised quasi-identifiers); UnderK counts those with
	// fewer than k distinct subjects, read from the input records the
	// offline run's lineage names.
	Groups, UnderK int
	// MinSubjects is the smallest number of distinct subjects of a group.
	MinSubjects int
	// Linkage is the linkage attack on the published records.
	Linkage LinkageStats
}

// OK reports whether the run was exactly once, k-anonymous and linkable
// in at most 1/k of its records.
func (a Audit) OK(k int) bool {
	return a.Extra == 0 && a.Missing == 0 && a.UnderK == 0 && a.Published > 0 &&
		a.Linkage.Share() <= 1/float64(k) && a.Linkage.MinMatches >= 1
}

// String summarises the audit for logs (counts only).
func (a Audit) String() string {
	return fmt.Sprintf("published %d (uninterrupted run %d, extra %d, missing %d); %d groups, %d under k, fewest subjects %d; linkage: %d of %d join one clean record, fewest matches %d",
		a.Published, a.Expected, a.Extra, a.Missing, a.Groups, a.UnderK, a.MinSubjects, a.Linkage.Unique, a.Linkage.Released, a.Linkage.MinMatches)
}

// AuditRun checks what a run published (values of the output topic)
// against its input (the clean records, as read back from their topic):
// the published records equal those an uninterrupted Offline run releases
// (the run must use the same Config.Seed, and its records span less than
// MaxDelay); every group of the offline run a reader can tell apart holds
// at least k distinct subjects; and the Linkage attack. Subjects are read
// from the input with a generic Avro decoder, not the processor's.
func AuditRun(ctx context.Context, p *Processor, input []processors.Record, published [][]byte) (Audit, error) {
	var a Audit
	want, err := Offline(ctx, p, input)
	if err != nil {
		return a, err
	}
	a.Published, a.Expected = len(published), len(want)
	count := map[string]int{}
	for _, v := range published {
		count[string(v)]++
	}
	for _, l := range want {
		count[string(l.Value)]--
	}
	for _, n := range count {
		if n > 0 {
			a.Extra += n
		} else {
			a.Missing -= n
		}
	}
	cleanSchema, err := schemas.CleanSchemaJSON(p.cfg.Records.Purpose)
	if err != nil {
		return a, err
	}
	cleanCodec, err := avrosingle.NewCodec(string(cleanSchema))
	if err != nil {
		return a, fmt.Errorf("anonymize: audit: %w", err)
	}
	outSchema, err := p.cfg.Records.KanonSchemaJSON()
	if err != nil {
		return a, err
	}
	outCodec, err := avrosingle.NewCodec(string(outSchema))
	if err != nil {
		return a, fmt.Errorf("anonymize: audit: %w", err)
	}
	type at struct {
		partition int32
		offset    int64
	}
	subjectOf := map[at]string{}
	clean := make([][]byte, 0, len(input))
	for _, r := range input {
		clean = append(clean, r.Value)
		native, _, err := cleanCodec.NativeFromFramed(r.Value)
		if err != nil {
			continue
		}
		if s, ok := unwrap(native.(map[string]any)[p.cfg.Records.Subject]).(string); ok {
			subjectOf[at{r.Partition, r.Offset}] = s
		}
	}
	groups := map[string]map[string]bool{}
	for _, l := range want {
		native, _, err := outCodec.NativeFromFramed(l.Value)
		if err != nil {
			return a, fmt.Errorf("anonymize: audit: a released record does not decode: %w", err)
		}
		m := native.(map[string]any)
		var key strings.Builder
		fmt.Fprintf(&key, "%v|", m["cluster_id"])
		for _, q := range p.cfg.Records.QuasiIdentifiers {
			if q.Numeric != nil {
				fmt.Fprintf(&key, "%v|%v|", m[q.Field+"_min"], m[q.Field+"_max"])
				continue
			}
			fmt.Fprintf(&key, "%v|", m[q.Field])
		}
		g := groups[key.String()]
		if g == nil {
			g = map[string]bool{}
			groups[key.String()] = g
		}
		g[subjectOf[at{l.Partition, l.Offset}]] = true
	}
	a.Groups, a.MinSubjects = len(groups), -1
	for _, g := range groups {
		if len(g) < p.cfg.K {
			a.UnderK++
		}
		if a.MinSubjects < 0 || len(g) < a.MinSubjects {
			a.MinSubjects = len(g)
		}
	}
	if a.Linkage, err = Linkage(p, published, clean, nil); err != nil {
		return a, err
	}
	return a, nil
}
