package aggregate

import (
	"errors"
	"fmt"
	"time"
)

// Record is one input record of [SuppressionShares].
type Record struct {
	// Subject is a hash of the record's subject.
	Subject uint64
	// Dims are the level-0 dimension values in config order.
	Dims []string
}

// KShare is the suppression of one K in [SuppressionShares].
type KShare struct {
	// K is the K evaluated.
	K int
	// Records is the number of records.
	Records int64
	// SuppressedL0 is the share of records in cells suppressed at level 0.
	SuppressedL0 float64
	// SuppressedRollup is the share of records in no released row after
	// roll-up over the full lattice chain.
	SuppressedRollup float64
	// RowsReleased counts released rows per lattice level.
	RowsReleased []int64
}

// SuppressionShares is an offline helper for evaluation tools: it feeds
// records in order through an aggregator (without DP) with synthetic
// times, record i at time i ms, and reports for every k in ks the share
// of records suppressed at level 0 and after roll-up. windowRecords is the
// tumbling window size in records; 0 treats the whole input as one
// window. With no records the shares are 0.
func SuppressionShares(dims []Dim, records []Record, ks []int, windowRecords int) ([]KShare, error) {
	if windowRecords < 0 {
		return nil, errors.New("aggregate: window size in records must be >= 0")
	}
	n := windowRecords
	if n == 0 {
		n = max(1, len(records))
	}
	if int64(n) > maxDuration.Milliseconds() || int64(len(records)) > maxTime {
		return nil, errors.New("aggregate: input too large")
	}
	out := make([]KShare, 0, len(ks))
	for _, k := range ks {
		if k < 1 {
			return nil, fmt.Errorf("aggregate: k %d must be at least 1", k)
		}
		a, err := New(Config{K: k, Window: time.Duration(n) * time.Millisecond, Dims: dims, Rollup: true})
		if err != nil {
			return nil, err
		}
		for i, r := range records {
			if _, err := a.Add(Event{Time: int64(i), Subject: r.Subject, Dims: r.Dims, Ref: int64(i)}, nil); err != nil {
				return nil, fmt.Errorf("aggregate: record %d: %w", i, err)
			}
		}
		if err := a.Flush(nil); err != nil {
			return nil, err
		}
		st := a.Stats()
		ks := KShare{K: k, Records: st.EventsAccepted, RowsReleased: st.RowsReleased}
		if st.EventsAccepted > 0 {
			ks.SuppressedL0 = float64(st.EventsSuppressedL0) / float64(st.EventsAccepted)
			ks.SuppressedRollup = float64(st.EventsSuppressedFinal) / float64(st.EventsAccepted)
		}
		out = append(out, ks)
	}
	return out, nil
}
