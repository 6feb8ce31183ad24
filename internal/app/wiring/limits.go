package wiring

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/topology"
)

// DefaultLimits bounds every output by the producer's own record limit
// (runner.MaxRecordBytes): what holds before the topics' configuration is
// known, and for topics that cannot be described.
func DefaultLimits() privacy.Limits {
	l := privacy.Limits{Quarantine: runner.MaxRecordBytes}
	for _, p := range purpose.All {
		l.Clean[p] = runner.MaxRecordBytes
	}
	return l
}

// TopicLimits returns the output limits of the privacy processor's topics:
// for each, the smaller of its max.message.bytes on the broker and the
// producer's record limit. A topic that cannot be described keeps the
// producer's limit, and the error says which.
func TopicLimits(ctx context.Context, adm *kadm.Client, t privacy.Topics) (privacy.Limits, error) {
	names := []string{t.Quarantine}
	for _, p := range purpose.All {
		names = append(names, t.Clean[p])
	}
	maxes, err := topology.MaxMessageBytes(ctx, adm, names...)
	l := DefaultLimits()
	pick := func(topic string, cur int) int {
		if n, ok := maxes[topic]; ok && n < cur {
			return n
		}
		return cur
	}
	l.Quarantine = pick(t.Quarantine, l.Quarantine)
	for _, p := range purpose.All {
		l.Clean[p] = pick(t.Clean[p], l.Clean[p])
	}
	return l, err
}

// FollowLimits sets the processor's output limits from the real topics now
// and every interval until ctx ends, so a change of a topic's
// max.message.bytes is honoured without a restart. It logs when it cannot
// read them (the producer's own limit applies meanwhile) and when they
// change.
func FollowLimits(ctx context.Context, adm *kadm.Client, pp *Privacy, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var last privacy.Limits
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := TopicLimits(rctx, adm, pp.Topics)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("cannot read the output topics' max.message.bytes; bounding outputs by the producer's limit", "err", err)
		}
		pp.Processor.SetLimits(l)
		if l != last {
			log.Info("output record limits", "quarantine_bytes", l.Quarantine, "clean_bytes", l.Clean)
			last = l
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
