package throughput

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
)

// replicas runs a runner mode as Options.Replicas runner instances in
// this process, in one consumer group, each with its own transactional id
// and (the job) its own processor, consent cache and registry, as
// separate processes would have. The clock starts at the first committed
// batch once every replica has partitions (the joins' rebalances are left
// out), or, when the run ended before that, at the first committed batch.
func (b *bench) replicas(ctx context.Context, m Mode, group string, round int, st *start) (int64, error) {
	n := max(1, b.opt.Replicas)
	counter := &atomic.Int64{}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, n)
	var rns []*runner.Runner
	for i := range n {
		var proc processors.Processor
		if m == Job {
			pp, err := wiring.BuildPrivacy(ctx, b.cfg, wiring.Deps{Redis: b.rdb, Registry: b.jobRegistry(), Keys: b.keys})
			if err != nil {
				return 0, err
			}
			proc = pp.Processor
		} else {
			proc = &fanout{outs: b.outs, n: counter}
		}
		rc := wiring.RunnerConfig(b.cfg, group, b.cfg.Names.RawTopic, slog.New(slog.DiscardHandler))
		rc.TransactionalID = fmt.Sprintf("%s-r%d", group, i)
		rn, err := runner.New(rc, proc)
		if err != nil {
			return 0, err
		}
		rns = append(rns, rn)
		go func() { errc <- rn.Run(rctx) }()
	}
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
		if int(c) >= b.opt.Events {
			break
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
	if m == Job {
		return b.countOut(ctx, round)
	}
	return counter.Load(), nil
}
