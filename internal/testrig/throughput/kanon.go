package throughput

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
)

// The k-anonymity modes (d): the processors that read the clean topics
// the job wrote, each from the start of its input in a fresh group. The
// aggregates' merge stage reads the partials of the first stage, not a
// clean topic, and is not measured.
const (
	// KanonAggregates is the k-anonymous aggregates' first stage
	// (kanon-aggregates: the analytics clean topic -> partial windows).
	KanonAggregates Mode = "kanon_aggregates"
	// KanonRecords is the record-level k-anonymisation (CASTLE: the
	// ai_training clean topic -> kanon records).
	KanonRecords Mode = "kanon_records"
)

// KanonModes are the k-anonymity runs, after the job in each round.
var KanonModes = []Mode{KanonAggregates, KanonRecords}

// modes are the runs of each round.
func (b *bench) modes() []Mode {
	if len(b.opt.Modes) > 0 {
		return b.opt.Modes
	}
	if b.opt.Kanon {
		return append(append([]Mode(nil), Modes...), KanonModes...)
	}
	return Modes
}

// OrderedModes returns the modes a result holds, in the order of the runs.
func (r Result) OrderedModes() []Mode {
	var out []Mode
	for _, m := range append(append([]Mode(nil), Modes...), KanonModes...) {
		if _, ok := r.Modes[m]; ok {
			out = append(out, m)
		}
	}
	return out
}

// kanonStall ends a k-anonymity run that stopped short of its input:
// no input record committed for this long.
const kanonStall = 30 * time.Second

// kanon runs one k-anonymity processor from the start of its clean input
// until it has committed every record the job committed to it so far
// (commits); the measurement ends at its last commit.
func (b *bench) kanon(ctx context.Context, m Mode, group string, st *start) (int64, error) {
	spec, err := wiring.LoadKanonSpec(b.cfg)
	if err != nil {
		return 0, err
	}
	cfg := b.cfg
	cfg.Kanon.InputPartitions = b.opt.Partitions
	var proc processors.Processor
	var input, notices string
	switch m {
	case KanonAggregates:
		a, err := wiring.BuildAggregates(ctx, cfg, spec, nil, nil)
		if err != nil {
			return 0, err
		}
		proc, input, notices = a.Processor, a.Input, a.Notices
	default:
		a, err := wiring.BuildAnonymize(ctx, cfg, spec, nil, nil)
		if err != nil {
			return 0, err
		}
		proc, input, notices = a.Processor, a.Input, a.Notices
	}
	rc := wiring.RunnerConfig(cfg, group, input, slog.New(slog.DiscardHandler))
	rc.TransactionalID, rc.Notices = group, notices
	target := b.commits.topic(input)
	if target == 0 {
		return 0, fmt.Errorf("%s: the job committed nothing to %s (run the job first)", proc.Name(), input)
	}
	rn, err := runner.New(rc, proc)
	if err != nil {
		return 0, err
	}
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- rn.Run(rctx) }()
	last, lastAt := uint64(0), time.Now()
	started := time.Now()
	for {
		c := rn.Committed()
		if c > 0 {
			st.mark(int64(c))
		}
		if c != last {
			last, lastAt = c, time.Now()
			st.end, st.endCPU, st.total = lastAt, cpuTicks(), int64(c)
		}
		if int64(c) >= target {
			break
		}
		if c > 0 && time.Since(lastAt) > kanonStall {
			b.logf("%s: stopped at %d of %d records for %s; measured to its last commit", m, c, target, kanonStall)
			break
		}
		if c == 0 && time.Since(started) > time.Minute {
			stop()
			<-errc
			return 0, fmt.Errorf("%s committed nothing of %s in a minute", proc.Name(), input)
		}
		select {
		case err := <-errc:
			stop()
			return 0, fmt.Errorf("runner stopped: %w", err)
		case <-ctx.Done():
			stop()
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	stop()
	if err := <-errc; err != nil {
		return 0, err
	}
	if n := rn.Aborted(); n > 0 {
		b.logf("%s: %d transactions aborted", m, n)
	}
	return int64(last), nil
}
