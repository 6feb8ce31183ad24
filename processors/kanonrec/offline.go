package kanonrec

import (
	"context"
	"fmt"
	"slices"

	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/shard"
)

// Lineage is one record an Offline run released and the input record it
// came from.
type Lineage struct {
	// Partition and Offset locate the input record.
	Partition int32
	Offset    int64
	// Value is the released record, as published.
	Value []byte
}

// Offline runs the processor over recs as one uninterrupted replica without
// Kafka or checkpoints: each partition's records in offset order, as one
// batch. It returns every released record with the input record it came
// from, a link no published record carries. Verifiers use it as the ground
// truth of k-anonymity, and, with Config.Seed set, as the reference an
// exactly-once run over the same input must equal record for record, as
// long as MaxDelay decides nothing mid-stream (its records span less than
// MaxDelay): a batch decides the records held longer than MaxDelay at its
// end, so there the batch boundaries matter.
func Offline(ctx context.Context, p *Processor, recs []processors.Record) ([]Lineage, error) {
	q := *p
	q.store = shard.EmptyStore{}
	w := q.NewWorker().(*Worker)
	var out []Lineage
	w.trace = func(partition int32, offset int64, value []byte) {
		out = append(out, Lineage{Partition: partition, Offset: offset, Value: slices.Clone(value)})
	}
	byPart := map[int32][]processors.Record{}
	for _, r := range recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	parts := make([]int32, 0, len(byPart))
	for part := range byPart {
		parts = append(parts, part)
	}
	slices.Sort(parts)
	for _, part := range parts {
		in := byPart[part]
		slices.SortFunc(in, func(a, b processors.Record) int { return int(a.Offset - b.Offset) })
		var b processors.Batch
		if err := w.Process(ctx, in, &b); err != nil {
			return nil, fmt.Errorf("anonymize: offline run, partition %d: %w", part, err)
		}
		w.Done(true)
	}
	return out, nil
}
