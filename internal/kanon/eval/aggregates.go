package eval

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
)

// DefaultAggregateDims are the dimensions of the aggregate evaluation:
// a typical demographic breakdown (age with the ARX bands 5, 10, 20 years
// as roll-up levels, sex, race and marital status).
var DefaultAggregateDims = []string{"age", "sex", "race", "marital-status"}

// AggregateShare is the suppression of the aggregates for one k and one
// window size.
type AggregateShare struct {
	// WindowRecords is the tumbling window size in records; 0 is the whole
	// file as one window.
	WindowRecords int `json:"window_records"`
	// SuppressedL0 is the share of records in cells with fewer than k
	// distinct subjects at the finest level.
	SuppressedL0 float64 `json:"suppressed_share"`
	// SuppressedRollup is the share of records in no released row after
	// rolling suppressed cells up the hierarchies.
	SuppressedRollup float64 `json:"suppressed_share_after_rollup"`
}

// AggregateResult is the aggregate evaluation of one k.
type AggregateResult struct {
	K             int              `json:"k"`
	Shares        []AggregateShare `json:"windows"`
	RecordsPerSec float64          `json:"records_per_s"`
}

// Aggregates runs the k-anonymous aggregator over ds in file order (one
// subject per row) for every k and window size, grouping by dims (names
// from CategoricalNames or "age"; the age hierarchy is read from dir).
func Aggregates(ds *Dataset, dir string, dims []string, ks, windows []int) ([]AggregateResult, error) {
	if ds == nil || len(ds.Records) == 0 {
		return nil, fmt.Errorf("eval: empty dataset")
	}
	var age *hierarchy.Tree
	type col struct {
		cat int // index into Record.Cat, or -1 for age
	}
	var cols []col
	var adims []aggregate.Dim
	for _, d := range dims {
		if d == "age" {
			if age == nil {
				t, err := hierarchy.LoadARX(filepath.Join(dir, "adult_hierarchy_age.csv"))
				if err != nil {
					return nil, fmt.Errorf("eval: age hierarchy: %w", err)
				}
				age = t
			}
			cols = append(cols, col{cat: -1})
			adims = append(adims, aggregate.Dim{Name: d, Gen: age})
			continue
		}
		i := slices.Index(CategoricalNames[:], d)
		if i < 0 {
			return nil, fmt.Errorf("eval: unknown dimension %q (want age or one of %v)", d, CategoricalNames)
		}
		cols = append(cols, col{cat: i})
		adims = append(adims, aggregate.Dim{Name: d, Gen: ds.Hierarchies[i]})
	}
	recs := make([]aggregate.Record, len(ds.Records))
	for i, r := range ds.Records {
		vals := make([]string, len(cols))
		for j, c := range cols {
			if c.cat < 0 {
				vals[j] = strconv.Itoa(int(r.Num[Age]))
				continue
			}
			vals[j] = ds.Hierarchies[c.cat].Label(r.Cat[c.cat])
		}
		// One subject per row: the row index is the subject.
		recs[i] = aggregate.Record{Subject: uint64(i) + 1, Dims: vals}
	}
	out := make([]AggregateResult, 0, len(ks))
	for _, k := range ks {
		res := AggregateResult{K: k}
		start := time.Now()
		for _, w := range windows {
			sh, err := aggregate.SuppressionShares(adims, recs, []int{k}, w)
			if err != nil {
				return nil, err
			}
			res.Shares = append(res.Shares, AggregateShare{WindowRecords: w, SuppressedL0: sh[0].SuppressedL0, SuppressedRollup: sh[0].SuppressedRollup})
		}
		if el := time.Since(start).Seconds(); el > 0 {
			res.RecordsPerSec = float64(int64(float64(len(recs)*len(windows)) / el))
		}
		out = append(out, res)
	}
	return out, nil
}
