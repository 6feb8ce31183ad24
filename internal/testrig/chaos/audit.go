package chaos

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
)

// AuditResult compares the privacy processor's committed audit records
// (privacy.audit, read_committed) with the run: under SIGKILLs, scaling
// and restarts, every raw record is summarised exactly once (a batch that
// aborted left no record, a redone batch one), and the published counts
// they add up to are what the clean topics hold.
type AuditResult struct {
	// Records counts the batch records, Events the raw records they
	// summarise; Expected is the raw records produced.
	Records  int `json:"records"`
	Events   int `json:"events"`
	Expected int `json:"expected"`
	// Overlaps counts input ranges of a partition that two committed
	// records both claim (a batch summarised twice).
	Overlaps int `json:"overlaps"`
	// PublishedDiffer counts the purposes whose audited published total
	// differs from what their clean topic holds.
	PublishedDiffer int `json:"published_differ"`
}

// OK reports whether the audit trail matches the run.
func (a AuditResult) OK() bool {
	return a.Records > 0 && a.Events == a.Expected && a.Overlaps == 0 && a.PublishedDiffer == 0
}

// verifyAudit reads the audit topic and checks it against the run and the
// clean topics' verified counts.
func (r *run) verifyAudit(ctx context.Context, purposes map[string]PurposeResult) (*AuditResult, error) {
	res := &AuditResult{Expected: r.opt.Events}
	ranges := map[int32][][2]int64{}
	published := map[string]int{}
	var decodeErr error
	err := kafkaio.Scan(ctx, r.cfg.Kafka, func(rec *kgo.Record) {
		ar, err := audit.Decode(rec.Value)
		if err != nil {
			decodeErr = err
			return
		}
		if ar.Kind != audit.KindBatch {
			return
		}
		res.Records++
		res.Events += ar.Batch.Events
		for _, in := range ar.Batch.Inputs {
			ranges[in.Partition] = append(ranges[in.Partition], [2]int64{in.Offsets[0], in.Offsets[1]})
		}
		for p, pc := range ar.Batch.Purposes {
			published[p] += pc.Published
		}
	}, r.cfg.Names.AuditTopic)
	if err != nil {
		return res, err
	}
	if decodeErr != nil {
		return res, fmt.Errorf("chaos: %s holds a record the audit format refuses: %w", r.cfg.Names.AuditTopic, decodeErr)
	}
	for _, rs := range ranges {
		slices.SortFunc(rs, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
		for i := 1; i < len(rs); i++ {
			if rs[i][0] <= rs[i-1][1] {
				res.Overlaps++
			}
		}
	}
	for p, pr := range purposes {
		if published[p] != pr.Published {
			res.PublishedDiffer++
		}
	}
	r.logf("verified %s: %+v", r.cfg.Names.AuditTopic, *res)
	return res, nil
}
