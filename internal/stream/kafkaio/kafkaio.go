// Package kafkaio holds small Kafka helpers shared by the demo, the CLI and
// the tests: produce many records and wait, count records in topics, read a
// topic to its end with read_committed.
//
// It imports franz-go (kgo, kadm) and kafkaconn.
package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
)

// ProduceAll produces records asynchronously and waits for every ack.
func ProduceAll(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	wg.Add(len(recs))
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("kafkaio: produce: %w", first)
	}
	return nil
}

// EndOffsets returns the sum of end offsets per topic (the record count of a
// topic that only ever received non-transactional appends).
func EndOffsets(ctx context.Context, cl *kgo.Client, topics ...string) (map[string]int64, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafkaio: list end offsets: %w", err)
	}
	out := map[string]int64{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", o.Topic, o.Partition, o.Err))
			return
		}
		out[o.Topic] += o.Offset
	})
	return out, errors.Join(errs...)
}

// ReadAll reads every committed record of the topics, from the start to the
// end offsets observed at call time, and returns them in per-partition order.
// Its clients are built from conn.
func ReadAll(ctx context.Context, conn kafkaconn.Config, topics ...string) ([]*kgo.Record, error) {
	var out []*kgo.Record
	err := Scan(ctx, conn, func(r *kgo.Record) { out = append(out, r) }, topics...)
	return out, err
}

// Scan calls fn for every committed record of the topics (read_committed),
// from the start to the end offsets observed at call time, without keeping
// them. Its clients are built from conn.
func Scan(ctx context.Context, conn kafkaconn.Config, fn func(*kgo.Record), topics ...string) error {
	adm, err := conn.NewAdmin()
	if err != nil {
		return fmt.Errorf("kafkaio: %w", err)
	}
	defer adm.Close()
	// A topic that cannot be listed (missing, or not authorised for this
	// principal) is an error, never an empty read.
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("kafkaio: list end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("kafkaio: list start offsets: %w", err)
	}
	want := map[string]map[int32]int64{}
	pending := 0
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > s.Offset {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]int64{}
			}
			want[o.Topic][o.Partition] = o.Offset
			pending++
		}
	})
	if pending == 0 {
		return nil
	}
	// Control records (transaction markers) are kept so that a partition
	// whose last offset is a commit marker is seen to reach its end; they
	// are not returned.
	cl, err := conn.NewClient(kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return fmt.Errorf("kafkaio: %w", err)
	}
	defer cl.Close()
	idle := time.Now()
	for pending > 0 {
		if time.Since(idle) > 2*time.Minute {
			return errors.New("kafkaio: no progress reading to the end offsets for 2 minutes")
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fs.NumRecords() > 0 {
			idle = time.Now()
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if !r.Attrs.IsControl() {
					fn(r)
				}
			}
			end, ok := want[p.Topic][p.Partition]
			if ok && len(p.Records) > 0 && p.Records[len(p.Records)-1].Offset+1 >= end {
				delete(want[p.Topic], p.Partition)
				pending--
			}
		})
	}
	return nil
}

// HeartbeatKey is the record key of compaction heartbeats: tombstones a
// service writes to every partition of a compacted topic it owns, so that
// a quiet partition's active segment still rolls (Kafka rolls a segment
// only when a record is appended past segment.ms, and never compacts the
// active one) and a replaced value is compacted away within the topic's
// bounds. Readers skip them; compaction drops them.
const HeartbeatKey = "pp-heartbeat"

// Heartbeat writes one heartbeat round: a tombstone under HeartbeatKey to
// every partition of topic, with cl (built with kgo.ManualPartitioner).
// It returns how many were written.
func Heartbeat(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	tds, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		err = tds.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("kafkaio: heartbeat on %s: %w", topic, err)
	}
	var recs []*kgo.Record
	for _, p := range tds[topic].Partitions.Numbers() {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(HeartbeatKey)})
	}
	res := cl.ProduceSync(ctx, recs...)
	n := 0
	for _, r := range res {
		if r.Err == nil {
			n++
		}
	}
	if err := res.FirstErr(); err != nil {
		return n, fmt.Errorf("kafkaio: heartbeat on %s: %w", topic, err)
	}
	return n, nil
}
