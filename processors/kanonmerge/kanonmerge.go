// Package kanonmerge is the second stage of the k-anonymous aggregates
// (SPEC 3.6): it reads the partials topic that processors/kanonagg
// writes in two-stage mode, merges every input partition's level-0
// contributions of a window (events and sums add, distinct subjects unite,
// per identity domain), and once every input partition has reported that
// it passed the window, releases it with the close logic of
// internal/kanon/aggregate (k distinct people counted in the largest
// identity domain, roll-up of suppressed cells, margins from released
// rows, optional DP with the period budget) and publishes the rows to
// agg.<purpose>.<name>, in the row format of processors/kanonagg without
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
// order, on the one partition of the partials topic (topology declares it
// with exactly one, never more): its windows and its DP period ledger live
// in one state. A progress record follows the partials it covers in the
// same transaction, so when every input partition has passed a window its
// partials have all been read. The number of input partitions is the
// input topic's real count (Config.InputPartitions, read from the broker
// at start and again when a record names a partition beyond it), never a
// count a record claims: when input partitions are added, windows wait for
// the new ones too, which report on their first record or idle tick.
//
// Bad input gets a counted outcome and changes nothing: a record naming a
// partition the input does not have, claiming more partitions than it has,
// a window or progress bound beyond the allowed future skew of the wall
// clock, a subject of an identity domain its key-id table does not name,
// or more key ids than a record may carry is invalid; a window beyond
// aggregate.MaxPending pending windows, or key ids beyond the domain
// table's bound, is refused. Key ids enter the checkpointed domain table
// only from accepted records.
//
// It implements processors.Stateful and never imports a Kafka client.
package kanonmerge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/partial"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonagg"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/kit/shard"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
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
	OutcomeInvalid     = "invalid"     // decodes, but does not fit the aggregate or the input (see the package doc)
	OutcomeUnknown     = "unknown"     // names an aggregate not declared
	OutcomeRefused     = "refused"     // valid, but beyond the bound of pending windows or key ids
)

// Bounds of the merge state, so its checkpoint stays far below the state
// topic's record limit.
const (
	// MaxKeyIDsPerRecord bounds the key-id table of one partials record.
	MaxKeyIDsPerRecord = 64
	// MaxDomains bounds the identity-domain table of the merge state
	// (pseudonym key ids over all input partitions and rotations).
	MaxDomains = 1024
)

// Config configures the processor.
type Config struct {
	// Release is the aggregates' configuration, the same as the first
	// stage's: the declared aggregates, k, window, roll-up, DP and output
	// topics (its StateTopic and PartialsTopic are the first stage's).
	Release kanonagg.Config
	// StateTopic holds this processor's checkpoints.
	StateTopic string
	// InputPartitions returns the real partition count of the first
	// stage's input topic (internal/app/wiring reads it from the broker). It
	// is called on the first batch and again, at most once a batch, when
	// a record names a partition or a count beyond the known one.
	InputPartitions func(ctx context.Context) (int32, error)
	// Now is the wall clock (nil: time.Now), which bounds how far in the
	// future a window or a progress bound may be.
	Now func() time.Time
	// DiscardUnreadableState starts a partials partition afresh when its
	// checkpoint cannot be read, forgetting its release horizon, instead
	// of failing (the default: an operator decides; see the README).
	DiscardUnreadableState bool
	// Metrics may be nil.
	Metrics *kanonmetrics.Metrics
	// Log may be nil.
	Log *slog.Logger
}

// Processor is the merge processor.
type Processor struct {
	cfg    Config
	plans  []*kanonagg.Plan
	byName map[string]int
	store  processors.StateStore
	known  atomic.Int32 // the input's partition count; 0 before the first read
	skewMs int64        // the future skew allowed past the wall clock
}

// New validates the configuration.
func New(cfg Config) (*Processor, error) {
	if cfg.StateTopic == "" {
		return nil, errors.New("kanonmerge: no state topic")
	}
	if cfg.InputPartitions == nil {
		return nil, errors.New("kanonmerge: no source of the input partition count")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	rel := cfg.Release
	rel.PartialsTopic, rel.Metrics = "", nil
	a, err := kanonagg.New(rel)
	if err != nil {
		return nil, fmt.Errorf("kanonmerge: %w", err)
	}
	p := &Processor{cfg: cfg, plans: a.Plans(), byName: map[string]int{}}
	// A first-stage window closes at most WatermarkSkew past the log time
	// of a record (and the log time is the producer's clock): a window or
	// a bound beyond now plus that, a window and the lateness (and a
	// minute for clocks) is not of this input. Without a watermark bound
	// (negative skew), a day.
	skew := rel.WatermarkSkew
	switch {
	case skew == 0:
		skew = time.Minute
	case skew < 0:
		skew = 24 * time.Hour
	}
	p.skewMs = (skew + rel.Window + rel.AllowedLateness + time.Minute).Milliseconds()
	for i, pl := range p.plans {
		p.byName[pl.Name()] = i
	}
	return p, nil
}

// UseClock replaces the wall clock (Config.Now), for runs that simulate
// time (the offline reference, tests that stand for a downtime with a
// clock set ahead). Call it before NewWorker.
func (p *Processor) UseClock(now func() time.Time) { p.cfg.Now = now }

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
	plan    *kanonagg.Plan
	key     []byte
	val     []byte
	cells   []aggregate.PartialCell
	remap   map[uint16]uint16
	used    map[uint16]bool
	// refreshed: the input partition count was read in this batch.
	refreshed bool
}

// NewWorker implements processors.Processor.
func (p *Processor) NewWorker() processors.Worker {
	w := &Worker{p: p, remap: map[uint16]uint16{}, used: map[uint16]bool{}}
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
		if m := w.p.cfg.Metrics; m != nil {
			m.StateUnreadable.WithLabelValues(Name).Inc()
		}
		if !w.p.cfg.DiscardUnreadableState {
			// Starting afresh would forget the release horizon: a late
			// partial could then re-release a released window (two
			// releases of one cell differ by a few people) and the DP
			// period budget would restart. An operator decides.
			w.p.cfg.Log.Error("checkpoint unreadable; not processing the partials partition (set PIPELINE_KANON_MERGE_DISCARD_STATE=true to start it afresh, forgetting what was released)",
				"processor", Name, "partition", partition, "err", err)
			return st, fmt.Errorf("kanonmerge: partition %d: checkpoint unreadable: %w", partition, err)
		}
		w.p.cfg.Log.Warn("checkpoint unreadable; the partition starts afresh, forgetting its release horizon (PIPELINE_KANON_MERGE_DISCARD_STATE)",
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
		// Only what was accepted the first time: invalid and refused
		// records were skipped (and counted) then, late ones are not in a
		// pending window.
		m := st.mergers[i]
		if w.validCells(&st, m, &rec, math.MaxInt64) != "" || m.Late(rec.Start) {
			return nil
		}
		if cells, err := w.renumber(&st, &rec); err == nil {
			_, _ = m.Replay(rec.Partition, rec.Start, cells, r.Offset)
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
		if err := m.Restore(s); errors.Is(err, aggregate.ErrOtherConfig) {
			// K, the window or the levels changed: the pending windows
			// start afresh, but the release horizon and the DP ledger
			// stay, so nothing released is ever released again.
			st.mergers[i] = nil
			if m, err = w.merger(st, i); err != nil {
				return err
			}
			if err := m.RestoreHorizon(s); err != nil {
				return fmt.Errorf("kanonmerge: %s: %w", name, err)
			}
			w.p.cfg.Log.Warn("checkpoint of another configuration (k, window or roll-up changed): pending windows dropped, release horizon and DP ledger kept",
				"processor", Name, "aggregate", string(name))
			if m := w.p.cfg.Metrics; m != nil {
				m.StateResets.WithLabelValues(Name).Inc()
			}
		} else if err != nil {
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

// validCells checks a cells record against the merger and the input
// without changing anything; it returns the outcome of a record that is
// not accepted ("" for one that may be added). limit bounds the window
// start.
func (w *Worker) validCells(st *state, m *aggregate.Merger, rec *partial.Record, limit int64) string {
	if rec.Start > limit || len(rec.KeyIDs) > MaxKeyIDsPerRecord {
		return OutcomeInvalid
	}
	if err := m.Check(rec.Partition, rec.Start, rec.Cells); err != nil {
		if errors.Is(err, aggregate.ErrRefused) {
			return OutcomeRefused
		}
		return OutcomeInvalid
	}
	// Every subject's identity domain must be named by the record.
	clear(w.remap)
	for _, k := range rec.KeyIDs {
		if len(k.ID) > subject.MaxKeyIDLen {
			return OutcomeInvalid
		}
		w.remap[k.Domain] = 0
	}
	clear(w.used)
	for _, c := range rec.Cells {
		for _, s := range c.Subjects {
			d := subject.Domain(s)
			if _, ok := w.remap[d]; !ok {
				return OutcomeInvalid
			}
			w.used[d] = true
		}
	}
	if m.Late(rec.Start) {
		return ""
	}
	// The key ids the record would add to the table, which is bounded.
	n := 0
	for _, k := range rec.KeyIDs {
		if _, ok := st.domains.Lookup(k.ID); !ok && w.used[k.Domain] {
			n++
		}
	}
	if st.domains.Len()+n > MaxDomains {
		return OutcomeRefused
	}
	return ""
}

// renumber rewrites the cells' subject ids from the publishing
// partition's identity domains to this state's, by key id, so one key id
// has one domain whatever the partition and a person under two key ids
// still counts once; only the key ids its subjects use are numbered. Call
// it only for a record validCells accepted (it uses w.used). The cells are
// w.cells, valid until the next call.
func (w *Worker) renumber(st *state, rec *partial.Record) ([]aggregate.PartialCell, error) {
	clear(w.remap)
	for _, k := range rec.KeyIDs {
		if !w.used[k.Domain] {
			continue
		}
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
			if d, ok := w.remap[subject.Domain(s)]; !ok || d != subject.Domain(s) {
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

// partitions returns the input's partition count, reading it when it is
// not known yet or, once a batch, when rec names a partition or count
// beyond it (partitions were added, or the record is forged).
func (w *Worker) partitions(ctx context.Context, rec *partial.Record) (int32, error) {
	known := w.p.known.Load()
	if known > 0 && (rec.Partition < known && rec.Partitions <= known || w.refreshed) {
		return known, nil
	}
	n, err := w.p.cfg.InputPartitions(ctx)
	if err != nil {
		return 0, fmt.Errorf("kanonmerge: input partition count: %w", err)
	}
	if n < 1 || n > aggregate.MaxShards {
		return 0, fmt.Errorf("kanonmerge: input partition count %d out of range", n)
	}
	w.refreshed = true
	w.p.known.Store(n)
	return n, nil
}

// Process implements processors.Worker.
func (w *Worker) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	w.out = out
	w.refreshed = false
	limit := satAdd(w.p.cfg.Now().UnixMilli(), w.p.skewMs)
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
		known, err := w.partitions(ctx, &rec)
		if err != nil {
			return err
		}
		if rec.Partition >= known || rec.Partitions > known {
			w.pending.outcomes[OutcomeInvalid]++
			continue
		}
		m, err := w.merger(st, j)
		if err != nil {
			return err
		}
		if err := m.SetShards(known); err != nil {
			return err
		}
		w.plan = w.p.plans[j]
		if rec.Kind == partial.KindProgress {
			if rec.ClosedBefore > limit {
				w.pending.outcomes[OutcomeInvalid]++
				continue
			}
			w.pending.outcomes[OutcomeProgress]++
			if err := m.Progress(rec.Partition, rec.ClosedBefore, r.Offset, w.emit); err != nil {
				return fmt.Errorf("kanonmerge: %s: %w", rec.Aggregate, err)
			}
			continue
		}
		if o := w.validCells(st, m, &rec, limit); o != "" {
			w.pending.outcomes[o]++
			continue
		}
		cells := rec.Cells
		if !m.Late(rec.Start) {
			if cells, err = w.renumber(st, &rec); err != nil {
				w.pending.outcomes[OutcomeInvalid]++
				continue
			}
		}
		switch o, err := m.Add(rec.Partition, rec.Start, cells, r.Offset); {
		case errors.Is(err, aggregate.ErrRefused):
			w.pending.outcomes[OutcomeRefused]++
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

func satAdd(x, y int64) int64 {
	if y > 0 && x > math.MaxInt64-y {
		return math.MaxInt64
	}
	return x + y
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
		kanonagg.AddReleaseMetrics(m, w.p.plans[i].Topic(), d, w.pending.min[i])
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
