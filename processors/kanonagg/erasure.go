package kanonagg

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/forget"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
)

// Erasure notices (SPEC 3.5, GDPR Art. 17 and 19). The runner delivers
// the records of Config.NoticesTopic, co-partitioned with the clean topic
// (both keyed by the pseudonym, same partition count, assigned together),
// to the worker of the clean partition they share a number with, in the
// batch's transaction. A notice of this processor's purpose:
//
//   - adds the pseudonym's hash to the partition's erased set: a record of
//     it that arrives later (the clean topic behind the notice topic) is
//     kept out and counted (late_records), and so is every record of it a
//     replay offers, until the input has moved ErasureGrace past the
//     notice;
//   - when an open window counts the subject, rebuilds the partition's
//     open windows exactly as a restart would - the aggregators' current
//     checkpoint, then a replay of the open windows' input without the
//     erased pseudonyms - so every cell forgets the subject: its distinct
//     count, its events, its amounts (sums are not separable per subject,
//     so only a replay removes them exactly) and, with DP, its
//     contribution bounds (window_events counts the events removed);
//     consecutive notices of a partition share one rebuild;
//   - touches the partition, so its next checkpoint, in the same
//     transaction, holds the erased set.
//
// What it cannot do: windows already closed were published as partials
// (two-stage mode: the merge stage still counts the subject's hashed id
// in the windows it has not released yet, until it releases them) or as
// rows; released rows are k-anonymous counts (and DP-noised when
// configured: noise already drawn and budget already spent are not
// undone) and no longer attributable to the subject. A notice of another
// purpose changes nothing (not_applicable); a malformed one is counted
// and skipped.

// isNotice reports whether r comes from the notices topic.
func (w *Worker) isNotice(r processors.Record) bool {
	return w.p.cfg.NoticesTopic != "" && r.Topic == w.p.cfg.NoticesTopic
}

// notice applies the notice in[i] to its partition's state; the open
// windows are rebuilt once the partition's run of notices ends.
func (w *Worker) notice(ctx context.Context, in []processors.Record, i int) error {
	r := in[i]
	if err := w.applyNotice(ctx, r); err != nil {
		return err
	}
	if i+1 < len(in) && w.isNotice(in[i+1]) && in[i+1].Partition == r.Partition {
		return nil // the next notice of the partition rebuilds
	}
	st, ok := w.shards.Lookup(r.Partition)
	if !ok || !st.rebuild {
		return nil
	}
	return w.rebuild(ctx, r.Partition, st)
}

// applyNotice decodes a notice and records it in its partition's state.
func (w *Worker) applyNotice(ctx context.Context, r processors.Record) error {
	n, err := forget.Decode(r.Value)
	if err != nil {
		w.erasure.Malformed++
		return nil
	}
	if n.Purpose != w.p.cfg.Aggregates[0].Purpose {
		w.erasure.NotApplicable++
		return nil
	}
	// A partition without state yet gets one: the erased set must outlive
	// this batch for records of the subject still on their way.
	if err := w.shards.Open(ctx, r.Partition); err != nil {
		return err
	}
	st, ok := w.shards.Lookup(r.Partition)
	if !ok {
		return nil
	}
	w.shards.Touch(r.Partition)
	ps := []byte(n.Pseudonym)
	next, _ := w.shards.Next(r.Partition)
	if !st.erased.Add(forget.Hash(ps), r.Timestamp.UnixMilli(), next) {
		w.erasure.SetFull++
	}
	var events int64
	st.domains.Each(func(dom uint16) {
		id := subject.ID(dom, ps)
		for _, a := range st.aggs {
			events += a.Contributions(id)
		}
	})
	if events == 0 {
		w.erasure.Unknown++
		return nil
	}
	w.erasure.Applied++
	w.erasure.WindowEvents += events
	st.rebuild = true
	return nil
}

// erasedPseudonym reports whether the decoded record (w.rec) is of an
// erased pseudonym of the partition.
func (w *Worker) erasedPseudonym(st *state) bool {
	return st.erased.Len() > 0 && st.erased.Has(forget.Hash(w.rec.Values[w.p.subjIdx].Bytes))
}

// rebuild rebuilds a partition's open windows without its erased
// pseudonyms: the state a restart would restore now, from a checkpoint of
// the current aggregators and a replay of their open windows' input
// (which load filters by the erased set).
func (w *Worker) rebuild(ctx context.Context, partition int32, st *state) error {
	next, ok := w.shards.Next(partition)
	if !ok {
		return nil
	}
	from := next
	var b []byte
	for _, a := range st.aggs {
		if ref, ok := a.ReplayFrom(); ok && ref < from {
			from = ref
		}
		s := aggregate.MarshalState(a.Checkpoint())
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, domainsMarker)
	b = st.domains.AppendEncode(b)
	if st.erased.Len() > 0 {
		b = append(b, erasedMarker)
		b = st.erased.AppendEncode(b)
	}
	fresh, err := w.fresh()
	if err != nil {
		return err
	}
	if err := w.restore(&fresh, processors.Checkpoint{Partition: partition, Next: next, ReplayFrom: from, State: b}); err != nil {
		// The open windows cannot be restored as they are (as a restart
		// would find): start them afresh, as load does, keeping the
		// partition's key domains and erased set. Dropping windows never
		// loosens k, and retrying would fail forever.
		w.p.cfg.Log.Warn("open windows cannot be rebuilt without an erased subject; the partition's open windows start afresh",
			"processor", Name, "partition", partition, "err", err)
		if m := w.p.cfg.Metrics; m != nil {
			m.StateResets.WithLabelValues(Name).Inc()
		}
		if fresh, err = w.fresh(); err != nil {
			return err
		}
		// Stats restart from zero with the aggregators (their baseline
		// too: a counter never goes back), as after load's reset.
		fresh.domains, fresh.erased, fresh.reported = st.domains, st.erased, st.reported
		*st = fresh
		return nil
	}
	var ev aggregate.Event
	err = w.p.store.Replay(ctx, partition, from, next, func(r processors.Record) error {
		if err := w.p.writers.Prepare(ctx, []processors.Record{r}); err != nil {
			return err
		}
		if ok, _ := w.event(&fresh, r, &ev); !ok || w.erasedPseudonym(&fresh) {
			return nil
		}
		for i, a := range fresh.aggs {
			w.fillDims(w.p.plans[i], &ev)
			if _, err := a.Replay(ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("aggregates: erasure: replay: %w", err)
	}
	// The metrics' baseline and the progress already published stay.
	fresh.committed, fresh.current, fresh.reported = st.committed, st.current, st.reported
	*st = fresh
	return nil
}

// pruneErased forgets the erased pseudonyms whose notices the input has
// passed by the grace and whose records no replay of the open windows
// (from their first input offset) can offer again.
func (w *Worker) pruneErased(st *state, latest time.Time, next int64) {
	if st.erased.Len() == 0 || latest.IsZero() {
		return
	}
	from := next
	for _, a := range st.aggs {
		if ref, ok := a.ReplayFrom(); ok && ref < from {
			from = ref
		}
	}
	g := w.p.cfg.ErasureGrace
	if g <= 0 {
		g = forget.DefaultGrace
	}
	st.erased.Prune(latest.UnixMilli(), g, from)
}

// erasedMarker introduces the erased set after the identity-domain table.
const erasedMarker = 'E'
