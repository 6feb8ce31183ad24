// Package kanonmerge is the second stage of the k-anonymous aggregates
// (SPEC 3.6): it reads the partials topic that processors/aggregates
// writes in two-stage mode, merges every input partition's level-0
// contributions of a window (events and sums add, distinct subjects unite,
// per identity domain), and once every input partition has reported that
// it passed the window, releases it with the close logic of
// internal/kanon/aggregate (k distinct people counted in the largest
// identity domain, roll-up of suppressed cells, margins from released
// rows, optional DP with the period budget) and publishes the rows to
// agg.<purpose>.<name>, in the row format of processors/aggregates without
// the per-partition key suffix: one row per cell and window, for all
// partitions together.
//
// The data path, in Worker.Process:
//
//	partials record -> decode (internal/kanon/partial; undecodable:
//	counted, skipped) -> shard state of the partials partition (restored
//	from its checkpoint plus a replay of the pending windows' partials) ->
//	cells: renumber identity domains by key id, Merger.Add; progress:
//	Merger.Progress -> closed windows -> encode rows -> emit -> checkpoint
//
// All partials of one aggregate are keyed by its name and so land, in
// order, on one partition of the partials topic: its windows and its DP
// period ledger live in one state. A progress record follows the partials
// it covers in the same transaction, so when every input partition has
// passed a window its partials have all been read. The number of input
// partitions comes from the progress records (the largest count any
// reports, at least partition+1): when input partitions are added, windows
// wait for the new ones too, which report on their first record or idle
// tick.
//
// It implements processors.Stateful and never imports a Kafka client.
package kanonmerge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/partial"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/aggregates"
	"github.com/privacy-pipeline/pipeline/processors/shard"
	"github.com/privacy-pipeline/pipeline/processors/subject"
)

// Name is the processor's name.
const Name = "kanon-merge"

// Outcomes of partials records (label values of
// pipeline_kanon_merge_partials_total).
const (
	OutcomeCells       = "cells"       // merged into a pending window
	OutcomeProgress    = "progress"    // a partition's progress
	OutcomeLate        = "late"        // cells of a window already released
	OutcomeUndecodable = "undecodable" // not a partials record
	OutcomeInvalid     = "invalid"     // decodes, but its cells do not fit the aggregate
	OutcomeUnknown     = "unknown"     // names an aggregate not declared
)

// Outcomes lists the outcomes.
func Outcomes() []string {
	return []string{OutcomeCells, OutcomeProgress, OutcomeLate, OutcomeUndecodable, OutcomeInvalid, OutcomeUnknown}
}

// Config configures the processor.
type Config struct {
	// Release is the aggregates' configuration, the same as the first
	// stage's: the declared aggregates, k, window, roll-up, DP and output
	// topics (its StateTopic and PartialsTopic are the first stage's).
	Release aggregates.Config
	// StateTopic holds this processor's checkpoints.
	StateTopic string
	// Metrics may be nil.
	Metrics *metrics.Kanon
	// Log may be nil.
	Log *slog.Logger
}

// Processor is the merge processor.
type Processor struct {
	cfg    Config
	plans  []*aggregates.Plan
	byName map[string]int
	store  processors.StateStore
}

// New validates the configuration.
func New(cfg Config) (*Processor, error) {
	if cfg.StateTopic == "" {
		return nil, errors.New("kanonmerge: no state topic")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	rel := cfg.Release
	rel.PartialsTopic, rel.Metrics = "", nil
	a, err := aggregates.New(rel)
	if err != nil {
		return nil, fmt.Errorf("kanonmerge: %w", err)
	}
	p := &Processor{cfg: cfg, plans: a.Plans(), byName: map[string]int{}}
	for i, pl := range p.plans {
		p.byName[pl.Name()] = i
	}
	return p, nil
}

// Name implements processors.Processor.
func (p *Processor) Name() string { return Name }

// StateTopic implements processors.Stateful.
func (p *Processor) StateTopic() string { return p.cfg.StateTopic }

// UseStore implements processors.Stateful.
func (p *Processor) UseStore(s processors.StateStore) { p.store = s }

// Topics returns the output topics.
func (p *Processor) Topics() []string {
	out := make([]string, len(p.plans))
	for i, pl := range p.plans {
		out[i] = pl.Topic()
	}
	return out
}

// state is one partials partition's mergers, one per aggregate (created
// on its first record), and the identity-domain table that numbers the
// key ids of every input partition alike.
type state struct {
	domains   subject.Domains
	mergers   []*aggregate.Merger
	committed []aggregate.Stats
	current   []aggregate.Stats
}

// counts are a batch's metric increments, applied when it commits.
type counts struct {
	outcomes map[string]int64
	delta    []aggregate.Stats
	min      []int64
}

// Worker processes batches of partials partitions.
type Worker struct {
	p       *Processor
	shards  *shard.Shards[state]
	pending counts
	out     *processors.Batch
	input   int
	plan    *aggregates.Plan
	key     []byte
	val     []byte
	cells   []aggregate.PartialCell
	remap   map[uint16]uint16
}

// NewWorker implements processors.Processor.
func (p *Processor) NewWorker() processors.Worker {
	w := &Worker{p: p, remap: map[uint16]uint16{}}
	w.shards = shard.New(p.store, w.load)
	w.resetCounts()
	return w
}

func (w *Worker) resetCounts() {
	n := len(w.p.plans)
	w.pending = counts{outcomes: map[string]int64{}, delta: make([]aggregate.Stats, n), min: make([]int64, n)}
}

func (w *Worker) fresh() state {
	n := len(w.p.plans)
	return state{mergers: make([]*aggregate.Merger, n), committed: make([]aggregate.Stats, n), current: make([]aggregate.Stats, n)}
}

// merger returns the state's merger of plan i, creating it.
func (w *Worker) merger(st *state, i int) (*aggregate.Merger, error) {
	if m := st.mergers[i]; m != nil {
		return m, nil
	}
	m, err := aggregate.NewMerger(w.p.plans[i].AggregateConfig())
	if err != nil {
		return nil, fmt.Errorf("kanonmerge: %s: %w", w.p.plans[i].Name(), err)
	}
	st.mergers[i] = m
	return m, nil
}

// load restores a partials partition's mergers from its checkpoint and
// replays the partials of their pending windows.
func (w *Worker) load(ctx context.Context, partition int32, cp processors.Checkpoint, ok bool, replay func(func(processors.Record) error) error) (state, error) {
	st := w.fresh()
	if !ok {
		return st, nil
	}
	if m := w.p.cfg.Metrics; m != nil {
		m.Restores.WithLabelValues(Name).Inc()
	}
	if err := w.restore(&st, cp); err != nil {
		w.p.cfg.Log.Warn("checkpoint unusable; the partition's pending windows start afresh",
			"processor", Name, "partition", partition, "err", err)
		if m := w.p.cfg.Metrics; m != nil {
			m.StateResets.WithLabelValues(Name).Inc()
		}
		return w.fresh(), nil
	}
	err := replay(func(r processors.Record) error {
		rec, err := partial.Decode(r.Value)
		if err != nil || rec.Kind != partial.KindCells {
			return nil
		}
		i, ok := w.p.byName[rec.Aggregate]
		if !ok || st.mergers[i] == nil {
			return nil
		}
		// Invalid cells were skipped (and counted) the first time too.
		if cells, err := w.renumber(&st, &rec); err == nil {
			_, _ = st.mergers[i].Replay(rec.Partition, rec.Start, cells, r.Offset)
		}
		return nil
	})
	return st, err
}

var errInvalid = errors.New("kanonmerge: invalid partial")

const (
	stateMagic  = "KMP1"
	maxMergers  = 1 << 12
	maxNameSize = 1 << 12
)

// restore decodes a checkpoint: the magic, the domain table, then per
// merger its aggregate's name and its merge state.
func (w *Worker) restore(st *state, cp processors.Checkpoint) error {
	b := cp.State
	if len(b) < len(stateMagic) || string(b[:len(stateMagic)]) != stateMagic {
		return errors.New("kanonmerge: not a merge checkpoint")
	}
	doms, rest, err := subject.DecodeDomains(b[len(stateMagic):])
	if err != nil {
		return fmt.Errorf("kanonmerge: %w", err)
	}
	st.domains = doms
	b = rest
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxMergers {
		return errors.New("kanonmerge: corrupt checkpoint")
	}
	b = b[k:]
	for range n {
		name, rest, ok := cut(b, maxNameSize)
		if !ok {
			return errors.New("kanonmerge: corrupt checkpoint")
		}
		ms, rest, ok := cut(rest, len(rest))
		if !ok {
			return errors.New("kanonmerge: corrupt checkpoint")
		}
		b = rest
		i, known := w.p.byName[string(name)]
		if !known {
			w.p.cfg.Log.Warn("checkpoint holds an aggregate no longer declared; dropped", "processor", Name)
			continue
		}
		s, err := aggregate.UnmarshalMergeState(ms)
		if err != nil {
			return fmt.Errorf("kanonmerge: %s: %w", name, err)
		}
		m, err := w.merger(st, i)
		if err != nil {
			return err
		}
		if err := m.Restore(s); err != nil {
			return fmt.Errorf("kanonmerge: %s: %w", name, err)
		}
		st.committed[i] = m.Stats()
	}
	if len(b) != 0 {
		return errors.New("kanonmerge: trailing bytes in checkpoint")
	}
	return nil
}

func cut(b []byte, limit int) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(limit) || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// renumber rewrites the cells' subject ids from the publishing
// partition's identity domains to this state's, by key id, so one key id
// has one domain whatever the partition and a person under two key ids
// still counts once. The cells are w.cells, valid until the next call.
func (w *Worker) renumber(st *state, rec *partial.Record) ([]aggregate.PartialCell, error) {
	clear(w.remap)
	for _, k := range rec.KeyIDs {
		d, err := st.domains.Of([]byte(k.ID))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errInvalid, err)
		}
		w.remap[k.Domain] = d
	}
	w.cells = w.cells[:0]
	const low = 64 - aggregate.DomainBits
	for _, c := range rec.Cells {
		ids := c.Subjects
		changed := false
		for _, s := range ids {
			if d := subject.Domain(s); w.remap[d] != d {
				changed = true
				break
			}
		}
		if changed {
			ids = make([]uint64, len(c.Subjects))
			for i, s := range c.Subjects {
				d, ok := w.remap[subject.Domain(s)]
				if !ok {
					return nil, fmt.Errorf("%w: a subject of an unnamed identity domain", errInvalid)
				}
				ids[i] = uint64(d)<<low | s&(1<<low-1)
			}
			slices.Sort(ids)
			ids = slices.Compact(ids)
		}
		c.Subjects = ids
		w.cells = append(w.cells, c)
	}
	return w.cells, nil
}

// Process implements processors.Worker.
func (w *Worker) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	w.out = out
	for i, r := range in {
		st, err := w.shards.Get(ctx, r)
		if err != nil {
			return err
		}
		w.input = i
		rec, err := partial.Decode(r.Value)
		if err != nil {
			// Counted, never fatal: only the first stage writes here.
			w.pending.outcomes[OutcomeUndecodable]++
			continue
		}
		j, ok := w.p.byName[rec.Aggregate]
		if !ok {
			w.pending.outcomes[OutcomeUnknown]++
			continue
		}
		m, err := w.merger(st, j)
		if err != nil {
			return err
		}
		w.plan = w.p.plans[j]
		if rec.Kind == partial.KindProgress {
			w.pending.outcomes[OutcomeProgress]++
			if err := m.Progress(rec.Partition, rec.Partitions, rec.ClosedBefore, r.Offset, w.emit); err != nil {
				return fmt.Errorf("kanonmerge: %s: %w", rec.Aggregate, err)
			}
			continue
		}
		cells, err := w.renumber(st, &rec)
		if err != nil {
			w.pending.outcomes[OutcomeInvalid]++
			continue
		}
		switch o, err := m.Add(rec.Partition, rec.Start, cells, r.Offset); {
		case err != nil:
			w.pending.outcomes[OutcomeInvalid]++
		case o == aggregate.Late:
			w.pending.outcomes[OutcomeLate]++
		default:
			w.pending.outcomes[OutcomeCells]++
		}
	}
	w.shards.Touched(w.checkpoint)
	return nil
}

// emit encodes a released window's rows.
func (w *Worker) emit(cw aggregate.ClosedWindow) {
	pl := w.plan
	for _, row := range cw.Rows {
		w.key, w.val = pl.AppendRow(w.key[:0], w.val[:0], cw, row, -1)
		w.out.Add(w.input, pl.Topic(), w.key, w.val, pl.Headers()...)
	}
}

// checkpoint adds a partition's state to the batch, and its stats since
// the last commit to the pending metrics.
func (w *Worker) checkpoint(partition int32, next int64, st *state) {
	from := next
	b := append(w.val[:0], stateMagic...)
	b = st.domains.AppendEncode(b)
	n := 0
	for _, m := range st.mergers {
		if m != nil {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i, m := range st.mergers {
		if m == nil {
			continue
		}
		st.current[i] = m.Stats()
		addDelta(&w.pending.delta[i], st.current[i], st.committed[i])
		if ms := st.current[i].MinReleasedSubjects; ms > 0 {
			w.pending.min[i] = ms
		}
		if ref, ok := m.ReplayFrom(); ok && ref < from {
			from = ref
		}
		name := w.p.plans[i].Name()
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		ms := aggregate.MarshalMergeState(m.Checkpoint())
		b = binary.AppendUvarint(b, uint64(len(ms)))
		b = append(b, ms...)
	}
	w.val = b
	w.out.AddCheckpoint(processors.Checkpoint{Partition: partition, Next: next, ReplayFrom: from, State: b})
}

// addDelta adds to d what cur gained over last.
func addDelta(d *aggregate.Stats, cur, last aggregate.Stats) {
	d.WindowsClosed += cur.WindowsClosed - last.WindowsClosed
	d.MarginRows += cur.MarginRows - last.MarginRows
	d.CellsSuppressed += cur.CellsSuppressed - last.CellsSuppressed
	d.EventsSuppressedFinal += cur.EventsSuppressedFinal - last.EventsSuppressedFinal
	d.EpsilonSpent += cur.EpsilonSpent - last.EpsilonSpent
	d.WindowsRefused += cur.WindowsRefused - last.WindowsRefused
	var rel int64
	for _, n := range cur.RowsReleased {
		rel += n
	}
	for _, n := range last.RowsReleased {
		rel -= n
	}
	if len(d.RowsReleased) == 0 {
		d.RowsReleased = []int64{0}
	}
	d.RowsReleased[0] += rel
}

// Done implements processors.Worker: metrics count committed batches only.
func (w *Worker) Done(committed bool) {
	if committed {
		w.flushMetrics()
		w.shards.Touched(func(_ int32, _ int64, st *state) { copy(st.committed, st.current) })
	}
	w.shards.Done(committed)
	w.resetCounts()
}

func (w *Worker) flushMetrics() {
	m := w.p.cfg.Metrics
	if m == nil {
		return
	}
	for o, n := range w.pending.outcomes {
		m.MergePartials.WithLabelValues(o).Add(float64(n))
	}
	for i, d := range w.pending.delta {
		out := w.p.plans[i].Topic()
		if len(d.RowsReleased) > 0 {
			m.Rows.WithLabelValues(out, "released").Add(float64(d.RowsReleased[0]))
		}
		m.Rows.WithLabelValues(out, "margin").Add(float64(d.MarginRows))
		m.Rows.WithLabelValues(out, "suppressed").Add(float64(d.CellsSuppressed))
		m.SuppressedEvents.WithLabelValues(out).Add(float64(d.EventsSuppressedFinal))
		m.EpsilonSpent.WithLabelValues(out).Add(d.EpsilonSpent)
		m.WindowsRefused.WithLabelValues(out).Add(float64(d.WindowsRefused))
		if w.pending.min[i] > 0 {
			m.MinSubjects.WithLabelValues(out).Set(float64(w.pending.min[i]))
		}
	}
	// All of an aggregate's partials are on one partition: the merger
	// that moved holds all of its pending windows.
	w.shards.Touched(func(_ int32, _ int64, st *state) {
		for i, mg := range st.mergers {
			if mg != nil {
				m.MergePending.WithLabelValues(w.p.plans[i].Topic()).Set(float64(mg.Pending()))
			}
		}
	})
}

// Current implements processors.Worker: aggregates do not depend on
// consent decisions made after their input was published.
func (w *Worker) Current() bool { return true }

// Forget implements processors.StatefulWorker.
func (w *Worker) Forget(partition int32) { w.shards.Forget(partition) }
