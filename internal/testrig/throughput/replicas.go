package throughput

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupDone reports whether a group's committed offsets have reached the
// end of every partition of the raw topic.
func (b *bench) groupDone(ctx context.Context, group string) (bool, error) {
	ends, err := b.adm.ListEndOffsets(ctx, b.cfg.Names.RawTopic)
	if err != nil {
		return false, fmt.Errorf("bench throughput: %w", err)
	}
	fetched, err := b.adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, fmt.Errorf("bench throughput: %w", err)
	}
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := fetched.Lookup(o.Topic, o.Partition); !ok || c.At < o.Offset {
			done = false
		}
	})
	return done, nil
}

// replicas runs a runner mode as Options.Replicas runner instances in
// this process, in one consumer group, each with its own transactional id
// and (the job) its own processor, consent cache and registry, as
// separate processes would have. The clock starts at the first committed
// batch once every replica has partitions (the joins' rebalances are left
// out), or, when the run ended before that, at the first committed batch.
func (b *bench) replicas(ctx context.Context, m Mode, group string, st *start) (int64, error) {
	n := max(1, b.opt.Replicas)
	counter := &atomic.Int64{}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, n)
	var rns []*runner.Runner
	for i := range n {
		proc, err := b.processor(ctx, m, counter)
		if err != nil {
			return 0, err
		}
		rc := wiring.RunnerConfig(b.cfg, group, b.cfg.Names.RawTopic, slog.New(slog.DiscardHandler))
		rc.TransactionalID = fmt.Sprintf("%s-r%d", group, i)
		rc.OnCommit = b.commits.hook(nil)
		rn, err := runner.New(rc, proc)
		if err != nil {
			return 0, err
		}
		rns = append(rns, rn)
		go func() { errc <- rn.Run(rctx) }()
	}
	cleanTopics := b.cleanTopics()
	before := b.commits.total(cleanTopics...)
	var first start
	running := n
	for {
		var c uint64
		all := true
		for _, rn := range rns {
			c += rn.Committed()
			all = all && rn.Assigned() > 0
		}
		if c > 0 {
			first.mark(int64(c))
			if all {
				st.mark(int64(c))
			}
		}
		// The replicas' committed counts may overshoot across a
		// rebalance; the group's offsets at the raw topic's end (it is
		// not transactional: its end offsets are its record counts) say
		// that every event is committed.
		if int(c) >= b.opt.Events {
			done, err := b.groupDone(ctx, group)
			if err != nil {
				return 0, err
			}
			if done {
				break
			}
		}
		select {
		case err := <-errc:
			return 0, fmt.Errorf("a replica stopped: %w", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if st.at.IsZero() {
		*st = first
		b.logf("%s: the run ended before every replica had partitions; measured from the first committed batch", m)
	}
	stop()
	for ; running > 0; running-- {
		if err := <-errc; err != nil {
			return 0, err
		}
	}
	var aborted uint64
	for _, rn := range rns {
		aborted += rn.Aborted()
	}
	if aborted > 0 {
		b.logf("%s: %d replicas, %d transactions aborted (rebalances)", m, n, aborted)
	}
	if m == Job {
		// Read back (read_committed) what the clean topics hold, against
		// what the runners reported committed.
		hooked := b.commits.total(cleanTopics...) - before
		var held int64
		if err := kafkaio.Scan(ctx, b.cfg.Kafka, func(*kgo.Record) { held++ }, cleanTopics...); err != nil {
			return 0, err
		}
		out := held - b.cleanHeld
		b.cleanHeld = held
		if out != hooked {
			b.logf("%s: the clean topics hold %d new records, the runners reported %d committed", m, out, hooked)
		}
		return out, nil
	}
	return counter.Load(), nil
}

// cleanTopics are the job's five output topics.
func (b *bench) cleanTopics() []string {
	var ts []string
	for _, p := range purpose.All {
		ts = append(ts, wiring.CleanTopic(b.cfg, p))
	}
	return ts
}
