package kanonrec

import (
	"context"
	"math"
	"time"

	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/forget"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
)

// Erasure notices (SPEC 3.5, GDPR Art. 17 and 19). The runner delivers
// the records of Config.NoticesTopic, co-partitioned with the clean topic
// (both keyed by the pseudonym, same partition count, assigned together),
// to the worker of the clean partition they share a number with, in the
// batch's transaction. A notice of this processor's purpose:
//
//   - drops every held CASTLE tuple of the pseudonym, in every identity
//     domain of the partition: never released, never suppressed, and a
//     cluster that reached k only with it waits for other subjects;
//   - adds the pseudonym's hash to the partition's erased set, so a record
//     of it that arrives later (the clean topic behind the notice topic) is
//     kept out and counted (late_records), until the input has moved
//     ErasureGrace past the notice;
//   - touches the partition, so its next checkpoint - in the same
//     transaction - no longer refers to the subject's records.
//
// What it cannot do: records already released are k-anonymous (in a
// cluster of at least k distinct subjects, generalised) and no longer
// attributable to the subject; the published clusters kept for reuse are
// generalisations without subjects. A notice of another purpose changes
// nothing (not_applicable); a malformed one is counted and skipped.

type erasureCounts = kanonmetrics.ErasureCounts

// isNotice reports whether r comes from the notices topic.
func (w *Worker) isNotice(r processors.Record) bool {
	return w.p.cfg.NoticesTopic != "" && r.Topic == w.p.cfg.NoticesTopic
}

// notice applies one erasure notice to its partition's state.
func (w *Worker) notice(ctx context.Context, r processors.Record) error {
	n, err := forget.Decode(r.Value)
	if err != nil {
		w.erasure.Malformed++
		return nil
	}
	if n.Purpose != w.p.cfg.Records.Purpose {
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
	dropped := 0
	for _, d := range st.domains {
		dropped += d.c.Drop(subject.ID(d.dom, ps), func(ref int64) { delete(st.held, ref) })
	}
	if dropped == 0 {
		w.erasure.Unknown++
		return nil
	}
	w.erasure.Applied++
	w.erasure.HeldRecords += int64(dropped)
	return nil
}

// erasedRecord reports whether the decoded record (w.rec) is of an erased
// pseudonym of the partition, counting it.
func (w *Worker) erasedRecord(st *state, offset int64) bool {
	if st.erased.Len() == 0 {
		return false
	}
	h := forget.Hash(w.rec.Values[w.p.subjIdx].Bytes)
	if !st.erased.Has(h) {
		return false
	}
	st.erased.KeptOut(h, offset)
	w.erasure.LateRecords++
	return true
}

// pruneErased forgets the erased pseudonyms whose notices the input has
// passed by the grace.
func (w *Worker) pruneErased(st *state, latest time.Time) {
	if st.erased.Len() == 0 || latest.IsZero() {
		return
	}
	g := w.p.cfg.ErasureGrace
	if g <= 0 {
		g = forget.DefaultGrace
	}
	// A restore replays held records only through the CASTLE snapshot,
	// which no longer refers to the subject's: only time matters here.
	st.erased.Prune(latest.UnixMilli(), g, math.MaxInt64)
}
