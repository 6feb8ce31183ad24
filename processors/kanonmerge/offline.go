package kanonmerge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonagg"
	"github.com/privacy-pipeline/pipeline/processors/kit/shard"
)

// RunOffline runs both stages over a bounded input without Kafka and
// without restarts, as reference for tests and verifiers: first (in
// two-stage mode) processes each input partition's records in order, a
// tick at now closes every window (on all partitions in [0, partitions),
// with or without records; first needs an IdleClose), and merge processes
// the partials in the order they were published, with now as its wall
// clock (merge.UseClock). It returns the merge stage's
// outputs (the rows) and the partials.
func RunOffline(ctx context.Context, first *kanonagg.Processor, merge *Processor, in []processors.Record, partitions int32, now time.Time) (rows, partials []processors.Output, err error) {
	topics := first.Topics()
	if len(topics) != 1 {
		return nil, nil, fmt.Errorf("kanonmerge: the first stage is not in two-stage mode")
	}
	merge.UseClock(func() time.Time { return now })
	first.UseStore(shard.EmptyStore{})
	merge.UseStore(shard.EmptyStore{})
	byPart := map[int32][]processors.Record{}
	for _, r := range in {
		byPart[r.Partition] = append(byPart[r.Partition], r)
		partitions = max(partitions, r.Partition+1)
	}
	keep := func(b *processors.Batch) {
		for _, o := range b.Outputs {
			o.Key, o.Value = slices.Clone(o.Key), slices.Clone(o.Value)
			partials = append(partials, o)
		}
	}
	w := first.NewWorker()
	for p := range partitions {
		if len(byPart[p]) == 0 {
			continue
		}
		var b processors.Batch
		if err := w.Process(ctx, byPart[p], &b); err != nil {
			return nil, nil, err
		}
		keep(&b)
		w.Done(true)
	}
	all := make([]int32, partitions)
	for p := range all {
		all[p] = int32(p)
	}
	var b processors.Batch
	if err := w.(processors.Ticker).Tick(ctx, now, all, &b); err != nil {
		return nil, nil, err
	}
	keep(&b)
	w.Done(true)

	recs := make([]processors.Record, len(partials))
	for i, o := range partials {
		recs[i] = processors.Record{Topic: o.Topic, Partition: 0, Offset: int64(i), Key: o.Key, Value: o.Value}
	}
	mw := merge.NewWorker()
	var mb processors.Batch
	if len(recs) > 0 {
		if err := mw.Process(ctx, recs, &mb); err != nil {
			return nil, nil, err
		}
	}
	for _, o := range mb.Outputs {
		o.Key, o.Value = slices.Clone(o.Key), slices.Clone(o.Value)
		rows = append(rows, o)
	}
	mw.Done(true)
	return rows, partials, nil
}
