// Package kanonagg is the k-anonymous aggregates processor (SPEC 3.6): it
// reads one purpose's clean topic, groups events by generalised dimensions
// over tumbling event-time windows, and publishes to agg.<purpose>.<name>
// only the rows that cover at least k distinct subjects (pseudonyms, not
// events), with roll-up of suppressed cells, margins from released rows and
// optional differential privacy (package internal/kanon/aggregate does the
// arithmetic).
//
// The data path, top to bottom in Worker.Process:
//
//	clean record -> decode -> shard state (restored from its checkpoint) ->
//	per aggregate: Add to its window -> closed windows -> encode rows -> emit
//	-> checkpoint per touched partition
//
// Window state lives per input partition (a subject's events all share one
// partition, since clean topics are keyed by pseudonym) and survives
// restarts and rebalances through checkpoints written in the batch's
// transaction plus a replay of the open windows' input.
//
// With Config.PartialsTopic set (what internal/app/wiring always does), the
// processor is the first of two stages: a closing window is not released
// but published to the partials topic as its level-0 contributions
// (internal/kanon/partial: per cell the events, sums and distinct subject
// ids, after DP contribution bounding, which needs all of a subject's
// events and so belongs here), followed by the partition's progress (every
// window before a bound is closed here, also for partitions without an
// event in it; idle partitions report on ticks). processors/kanonmerge
// releases each window once every input partition has passed it, so a
// cell split over partitions is released when it reaches k in total.
// Without it, each partition releases its own rows (keys end in "#p<n>"),
// each with at least k distinct subjects of its own: the per-partition
// baseline the merge is measured against.
//
// It implements processors.Stateful and never imports a Kafka client.
package kanonagg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroenc"
	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/cleancodec"
	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/kanon/partial"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/forget"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/kit/shard"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
	"github.com/privacy-pipeline/pipeline/processors/kit/writers"
)

// Name is the processor's name.
const Name = "kanon-aggregates"

// Config configures the processor.
type Config struct {
	// Aggregates are the declared aggregates; they all read one purpose.
	Aggregates []kanonspec.Aggregate
	// Spec builds the hierarchies.
	Spec *kanonspec.Spec
	// K is the minimum number of distinct subjects per released row.
	K int
	// Window and AllowedLateness define the tumbling event-time windows.
	Window, AllowedLateness time.Duration
	// Rollup regroups suppressed cells one hierarchy level up.
	Rollup bool
	// IdleClose closes a window by the wall clock once it passes the
	// window's end plus AllowedLateness plus IdleClose, so an idle
	// partition still publishes; 0 disables it (windows close only as event
	// time advances).
	IdleClose time.Duration
	// WatermarkSkew bounds how far an event may move its partition's
	// watermark: at most its record's log time (the Kafka record timestamp)
	// plus this skew, so one event stamped in the future cannot close the
	// open windows and make the on-time events after it late. 0: the
	// default, 1 minute; negative: no bound (the watermark is the largest
	// event time, as before).
	WatermarkSkew time.Duration
	// DP, when not nil, adds differential privacy noise.
	DP *aggregate.DPConfig
	// TopicTemplate names the output topics ({purpose}, {name}); empty:
	// kanonspec.DefaultAggregateTopicTemplate.
	TopicTemplate string
	// StateTopic holds the checkpoints.
	StateTopic string
	// PartialsTopic, when set, receives the closed windows' partial
	// contributions and the partitions' progress instead of rows (the
	// first of two stages; see the package documentation).
	PartialsTopic string
	// Partitions is the number of input partitions (at least 1 with a
	// PartialsTopic), carried by progress records; a partition at or
	// beyond it reports partition+1 (partitions were added). The merge
	// stage waits for the count it reads from the broker.
	Partitions int32
	// PartialMaxBytes bounds one partials record (default 256 KiB, within
	// the producer's and the topic's limits).
	PartialMaxBytes int
	// Metrics may be nil.
	Metrics *kanonmetrics.Metrics
	// Log may be nil.
	Log *slog.Logger
	// Schemas frames the aggregate rows and resolves the clean records'
	// writer schema ids (zero: single-object encoding, no registry).
	Schemas writers.Schemas
	// NoticesTopic is the erasure notices topic (privacy.erasures), read
	// as a second input co-partitioned with the clean topic: a record of
	// it is a notice (see erasure.go). Empty: no notices.
	NoticesTopic string
	// ErasureGrace is how long, in the input's log time, an erased
	// pseudonym is kept out of later records (0: forget.DefaultGrace).
	ErasureGrace time.Duration
}

// Processor is the aggregates processor.
type Processor struct {
	cfg     Config
	dec     *cleancodec.Decoder
	writers *writers.Writers
	plans   []*Plan
	store   processors.StateStore
	timeIdx int
	subjIdx int
}

// Plan is one aggregate's compiled configuration: its release rules
// (aggregate.Config), output topic and row encoding. processors/kanonmerge
// releases with the same plans.
type Plan struct {
	spec      kanonspec.Aggregate
	topic     string
	aggCfg    aggregate.Config
	dimIdx    []int
	amountIdx int
	frame     []byte // the rows' framing header (wireformat)
	schemaHdr []byte
	kHdr      []byte
	epsilon   float64
	k         int
}

// New validates the configuration and compiles the plans.
func New(cfg Config) (*Processor, error) {
	if len(cfg.Aggregates) == 0 || cfg.Spec == nil {
		return nil, errors.New("aggregates: no aggregate declared")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.WatermarkSkew == 0 {
		cfg.WatermarkSkew = time.Minute
	}
	if cfg.TopicTemplate == "" {
		cfg.TopicTemplate = kanonspec.DefaultAggregateTopicTemplate
	}
	if cfg.PartialMaxBytes <= 0 {
		cfg.PartialMaxBytes = DefaultPartialMaxBytes
	}
	if cfg.PartialMaxBytes < 1024 || cfg.PartialMaxBytes > MaxPartialMaxBytes {
		return nil, fmt.Errorf("aggregates: partial record limit must be between 1 KiB and %d bytes", MaxPartialMaxBytes)
	}
	if cfg.PartialsTopic != "" && cfg.Partitions < 1 {
		// Progress records carry the count; without it a partition would
		// report partition+1 and the merge could release before the others
		// have passed the window.
		return nil, errors.New("aggregates: two-stage mode needs the input partition count (Partitions >= 1)")
	}
	pur := cfg.Aggregates[0].Purpose
	dec, err := cleancodec.NewForPurpose(pur)
	if err != nil {
		return nil, fmt.Errorf("aggregates: %w", err)
	}
	p := &Processor{cfg: cfg, dec: dec, writers: cfg.Schemas.Writers(dec, cfg.Log)}
	p.timeIdx = dec.Field(cfg.Aggregates[0].Time)
	p.subjIdx = dec.Field(cfg.Aggregates[0].Subject)
	for _, a := range cfg.Aggregates {
		if a.Purpose != pur || dec.Field(a.Time) != p.timeIdx || dec.Field(a.Subject) != p.subjIdx {
			return nil, fmt.Errorf("aggregates: %s: every aggregate must share the purpose, time and subject fields", a.Name)
		}
		pl := &Plan{spec: a, topic: a.TopicFrom(cfg.TopicTemplate), amountIdx: -1}
		if a.Amount != "" {
			pl.amountIdx = dec.Field(a.Amount)
		}
		ac := aggregate.Config{K: cfg.K, Window: cfg.Window, AllowedLateness: cfg.AllowedLateness, Rollup: cfg.Rollup, DP: cfg.DP,
			Partials: cfg.PartialsTopic != ""}
		for _, d := range a.Dimensions {
			h, err := cfg.Spec.Build(d.Hierarchy)
			if err != nil {
				return nil, err
			}
			ac.Dims = append(ac.Dims, aggregate.Dim{Name: d.Field, Gen: h})
			pl.dimIdx = append(pl.dimIdx, dec.Field(d.Field))
		}
		if _, err := aggregate.New(ac); err != nil {
			return nil, fmt.Errorf("aggregates: %s: %w", a.Name, err)
		}
		pl.aggCfg = ac
		fp, err := avroschema.Fingerprint(a.AggregateSchemaJSON())
		if err != nil {
			return nil, fmt.Errorf("aggregates: %s schema: %w", a.Name, err)
		}
		if cfg.PartialsTopic == "" { // this processor writes the rows (else kanonmerge does, with its own plans)
			if pl.frame, err = cfg.Schemas.Frame(pl.topic, a.AggregateSchemaJSON()); err != nil {
				return nil, fmt.Errorf("aggregates: %s schema: %w", a.Name, err)
			}
		}
		pl.schemaHdr = []byte("privacy.agg." + a.Purpose + "." + a.Name + ".AggregateRow@" + strconv.FormatUint(fp, 16))
		pl.kHdr = strconv.AppendInt(nil, int64(cfg.K), 10)
		pl.k = cfg.K
		if cfg.DP != nil {
			pl.epsilon = cfg.DP.Epsilon
		}
		p.plans = append(p.plans, pl)
	}
	return p, nil
}

// Name implements processors.Processor.
func (p *Processor) Name() string { return Name }

// StateTopic implements processors.Stateful.
func (p *Processor) StateTopic() string { return p.cfg.StateTopic }

// UseStore implements processors.Stateful.
func (p *Processor) UseStore(s processors.StateStore) { p.store = s }

// DefaultPartialMaxBytes is the default bound of one partials record.
const DefaultPartialMaxBytes = 256 << 10

// MaxPartialMaxBytes bounds Config.PartialMaxBytes (and
// PIPELINE_KANON_PARTIAL_MAX_BYTES, which internal/app/config checks alike): a
// record's value, leaving room for its key and the batch overhead below
// internal/stream/runner.MaxRecordBytes (1,000,012, not imported: processors never
// import the runner) and the topic's default max.message.bytes.
const MaxPartialMaxBytes = 1_000_000

// Topics returns the output topics: the partials topic in two-stage mode,
// else the aggregate topics.
func (p *Processor) Topics() []string {
	if p.cfg.PartialsTopic != "" {
		return []string{p.cfg.PartialsTopic}
	}
	out := make([]string, len(p.plans))
	for i, pl := range p.plans {
		out[i] = pl.topic
	}
	return out
}

// state is one partition's aggregators, one per plan, with the stats as of
// the last committed batch (metrics are the difference).
type state struct {
	// domains numbers the pseudonym key ids of this partition exactly, so
	// one person under two keys is never counted twice (it is part of the
	// checkpoint).
	domains   subject.Domains
	aggs      []*aggregate.Aggregator
	committed []aggregate.Stats
	current   []aggregate.Stats
	// reported is each aggregator's progress last published (two-stage
	// mode; not checkpointed: a restored partition publishes it again,
	// which the merge stage ignores).
	reported []int64
	// erased are the pseudonyms erased in this partition (erasure.go),
	// kept out of later records and of replays; part of the checkpoint.
	erased forget.Set
	// rebuild marks open windows that still count an erased subject.
	rebuild bool
}

// NewWorker implements processors.Processor.
func (p *Processor) NewWorker() processors.Worker {
	w := &Worker{p: p, intern: map[string]string{}}
	w.shards = shard.New(p.store, w.load)
	w.pending = make([]counts, len(p.plans))
	return w
}

// counts are a batch's metric increments, applied when it commits.
type counts struct {
	undecodable, incomplete int64
	capped                  int64 // events whose watermark move was capped
	oversized               int64 // events of cells too large for a partials record
	delta                   aggregate.Stats
	minSubjects             int64
}

// Worker processes batches of one or more partitions.
type Worker struct {
	p       *Processor
	shards  *shard.Shards[state]
	rec     cleancodec.Record
	intern  map[string]string
	val     []byte
	key     []byte
	pending []counts
	input   int
	part    int32
	out     *processors.Batch
	plan    *Plan
	st      *state
	err     error // of an emit during Add or Advance
	keyIDs  []partial.KeyID
	doms    map[uint16]bool
	// erasure counts the batch's notices and what they dropped.
	erasure kanonmetrics.ErasureCounts
}

// load restores a partition's aggregators from its checkpoint.
func (w *Worker) load(ctx context.Context, partition int32, cp processors.Checkpoint, ok bool, replay func(func(processors.Record) error) error) (state, error) {
	st, err := w.fresh()
	if err != nil || !ok {
		return st, err
	}
	if m := w.p.cfg.Metrics; m != nil {
		m.Restores.WithLabelValues(Name).Inc()
	}
	if err := w.restore(&st, cp); err != nil {
		// The checkpoint cannot be used (the declared aggregates, k or the
		// window size changed, or it is corrupt): retrying would fail
		// forever, so start this partition afresh, loudly.
		w.p.cfg.Log.Warn("checkpoint unusable; the partition's open windows start afresh",
			"processor", Name, "partition", partition, "err", err)
		if m := w.p.cfg.Metrics; m != nil {
			m.StateResets.WithLabelValues(Name).Inc()
		}
		return w.fresh()
	}
	var ev aggregate.Event
	err = replay(func(r processors.Record) error {
		if err := w.p.writers.Prepare(ctx, []processors.Record{r}); err != nil {
			return err
		}
		if ok, _ := w.event(&st, r, &ev); !ok || w.erasedPseudonym(&st) {
			return nil
		}
		for i, a := range st.aggs {
			w.fillDims(w.p.plans[i], &ev)
			if _, err := a.Replay(ev); err != nil {
				return err
			}
		}
		return nil
	})
	return st, err
}

// fresh returns empty aggregators.
func (w *Worker) fresh() (state, error) {
	n := len(w.p.plans)
	st := state{aggs: make([]*aggregate.Aggregator, n), committed: make([]aggregate.Stats, n), current: make([]aggregate.Stats, n),
		reported: make([]int64, n)}
	for i := range st.reported {
		st.reported[i] = math.MinInt64
	}
	for i, pl := range w.p.plans {
		a, err := aggregate.New(pl.aggCfg)
		if err != nil {
			return st, err
		}
		st.aggs[i] = a
	}
	return st, nil
}

// restore loads a checkpoint into fresh aggregators.
func (w *Worker) restore(st *state, cp processors.Checkpoint) error {
	parts, doms, erased, err := splitState(cp.State, len(st.aggs))
	if err != nil {
		return err
	}
	st.domains, st.erased = doms, erased
	for i, a := range st.aggs {
		s, err := aggregate.UnmarshalState(parts[i])
		if err != nil {
			return fmt.Errorf("aggregate %s: %w", w.p.plans[i].spec.Name, err)
		}
		if err := a.Restore(s); err != nil {
			return fmt.Errorf("aggregate %s: %w", w.p.plans[i].spec.Name, err)
		}
		st.committed[i] = a.Stats()
	}
	return nil
}

// event decodes a record into ev (without dimensions); ok is false if it
// is undecodable (bad reports which) or has no time or subject (or a key id
// the partition's domain table cannot number: never counted, so never
// loosening k).
func (w *Worker) event(st *state, r processors.Record, ev *aggregate.Event) (ok, bad bool) {
	if err := w.p.dec.Decode(r.Value, &w.rec); err != nil {
		return false, true
	}
	t, s := w.rec.Values[w.p.timeIdx], w.rec.Values[w.p.subjIdx]
	if !t.Present || !s.Present || len(s.Bytes) == 0 {
		return false, false
	}
	dom, err := st.domains.Of(subject.KeyID(r.Headers))
	if err != nil {
		return false, false
	}
	*ev = aggregate.Event{Time: t.Num, Subject: subject.ID(dom, s.Bytes), Ref: r.Offset, Dims: ev.Dims[:0]}
	if skew := w.p.cfg.WatermarkSkew; skew >= 0 && !r.Timestamp.IsZero() {
		ev.MaxWatermark = r.Timestamp.Add(skew).UnixMilli()
	}
	return true, false
}

// str returns b as a string, interned so that repeated dimension values do
// not allocate.
func (w *Worker) str(b []byte) string {
	if s, ok := w.intern[string(b)]; ok {
		return s
	}
	if len(w.intern) >= 1<<16 {
		clear(w.intern)
	}
	s := string(b)
	w.intern[s] = s
	return s
}

// Unknown is the dimension value of a null field.
const Unknown = "unknown"

func (w *Worker) fillDims(pl *Plan, ev *aggregate.Event) {
	ev.Dims = ev.Dims[:0]
	for _, i := range pl.dimIdx {
		v := w.rec.Values[i]
		if !v.Present || len(v.Bytes) == 0 {
			ev.Dims = append(ev.Dims, Unknown)
			continue
		}
		ev.Dims = append(ev.Dims, w.str(v.Bytes))
	}
	ev.HasAmount, ev.Amount = false, 0
	if pl.amountIdx >= 0 {
		if v := w.rec.Values[pl.amountIdx]; v.Present {
			ev.HasAmount, ev.Amount = true, v.F
		}
	}
}

// Process implements processors.Worker.
func (w *Worker) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	w.out = out
	if err := w.p.writers.Prepare(ctx, in); err != nil {
		return err
	}
	var ev aggregate.Event
	var latest time.Time
	for i, r := range in {
		if w.isNotice(r) {
			if err := w.notice(ctx, in, i); err != nil {
				return err
			}
			continue
		}
		st, err := w.shards.Get(ctx, r)
		if err != nil {
			return err
		}
		if r.Timestamp.After(latest) {
			latest = r.Timestamp
		}
		w.input, w.part, w.st = i, r.Partition, st
		if ok, bad := w.event(st, r, &ev); !ok {
			// Counted, never silent: the privacy processor only publishes
			// valid records, so these mean a foreign producer.
			for j := range w.pending {
				if bad {
					w.pending[j].undecodable++
				} else {
					w.pending[j].incomplete++
				}
			}
			continue
		}
		if w.erasedPseudonym(st) {
			st.erased.KeptOut(forget.Hash(w.rec.Values[w.p.subjIdx].Bytes), r.Offset)
			w.erasure.LateRecords++
			continue
		}
		capped := ev.MaxWatermark != 0 && ev.Time > ev.MaxWatermark
		for j, a := range st.aggs {
			pl := w.p.plans[j]
			w.fillDims(pl, &ev)
			w.plan = pl
			if capped {
				w.pending[j].capped++
			}
			if _, err := a.Add(ev, w.emit); err != nil {
				return fmt.Errorf("aggregates: %s: %w", pl.spec.Name, err)
			}
			if err := w.takeErr(); err != nil {
				return err
			}
		}
	}
	w.shards.Touched(func(partition int32, next int64, st *state) {
		w.pruneErased(st, latest, next)
		w.checkpoint(partition, next, st)
	})
	return nil
}

// takeErr returns and clears the error of the last emits.
func (w *Worker) takeErr() error {
	err := w.err
	w.err = nil
	return err
}

// addDelta adds the stats gained since the last commit to c.
func addDelta(c *counts, cur, last aggregate.Stats) {
	d := &c.delta
	d.EventsAccepted += cur.EventsAccepted - last.EventsAccepted
	d.EventsLate += cur.EventsLate - last.EventsLate
	d.EventsBounded += cur.EventsBounded - last.EventsBounded
	d.WindowsClosed += cur.WindowsClosed - last.WindowsClosed
	d.MarginRows += cur.MarginRows - last.MarginRows
	d.CellsSuppressed += cur.CellsSuppressed - last.CellsSuppressed
	d.EventsSuppressedFinal += cur.EventsSuppressedFinal - last.EventsSuppressedFinal
	d.EpsilonSpent += cur.EpsilonSpent - last.EpsilonSpent
	d.WindowsRefused += cur.WindowsRefused - last.WindowsRefused
	var rel, lastRel int64
	for _, n := range cur.RowsReleased {
		rel += n
	}
	for _, n := range last.RowsReleased {
		lastRel += n
	}
	d.EventsSuppressedL0 += cur.EventsSuppressedL0 - last.EventsSuppressedL0
	if cur.MinReleasedSubjects > 0 {
		c.minSubjects = cur.MinReleasedSubjects
	}
	if len(d.RowsReleased) == 0 {
		d.RowsReleased = []int64{0}
	}
	d.RowsReleased[0] += rel - lastRel
}

// checkpoint adds the state of one partition to the batch, and its stats
// since the last commit to the pending metrics.
func (w *Worker) checkpoint(partition int32, next int64, st *state) {
	for j, a := range st.aggs {
		st.current[j] = a.Stats()
		addDelta(&w.pending[j], st.current[j], st.committed[j])
	}
	from := next
	buf := w.val[:0]
	for _, a := range st.aggs {
		if ref, ok := a.ReplayFrom(); ok && ref < from {
			from = ref
		}
		b := aggregate.MarshalState(a.Checkpoint())
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	buf = append(buf, domainsMarker)
	buf = st.domains.AppendEncode(buf)
	if st.erased.Len() > 0 {
		buf = append(buf, erasedMarker)
		buf = st.erased.AppendEncode(buf)
	}
	w.val = buf
	w.out.AddCheckpoint(processors.Checkpoint{Partition: partition, Next: next, ReplayFrom: from, State: buf})
	if w.p.cfg.PartialsTopic != "" {
		w.progress(partition, st)
	}
}

// partitions returns the input partition count a record of partition
// reports.
func (w *Worker) partitions(partition int32) int32 { return max(w.p.cfg.Partitions, partition+1) }

// progress publishes, after the batch's partials, how far each aggregator
// of the partition has closed its windows, when that moved.
func (w *Worker) progress(partition int32, st *state) {
	for j, a := range st.aggs {
		cb := a.ClosedBefore()
		if cb <= st.reported[j] {
			continue
		}
		st.reported[j] = cb
		pl := w.p.plans[j]
		w.val = partial.AppendProgress(w.val[:0], pl.spec.Name, partition, w.partitions(partition), cb)
		w.out.Add(w.input, w.p.cfg.PartialsTopic, []byte(pl.spec.Name), w.val)
	}
}

// emitPartial publishes a closed window's contributions (two-stage mode),
// with the key ids of the identity domains its subjects use, keyed by the
// aggregate so that all of one aggregate's partials land on one partition
// of the partials topic, in order.
func (w *Worker) emitPartial(cw aggregate.ClosedWindow) {
	pl := w.plan
	if w.doms == nil {
		w.doms = map[uint16]bool{}
	}
	clear(w.doms)
	w.keyIDs = w.keyIDs[:0]
	for _, c := range cw.Cells {
		for _, s := range c.Subjects {
			d := subject.Domain(s)
			if w.doms[d] {
				continue
			}
			w.doms[d] = true
			id, ok := w.st.domains.KeyOf(d)
			if !ok {
				// A domain number reserved by an older checkpoint has no key
				// id: a name of its own, unique to this partition.
				id = "\x00partition-" + strconv.Itoa(int(w.part)) + "-domain-" + strconv.Itoa(int(d))
			}
			w.keyIDs = append(w.keyIDs, partial.KeyID{Domain: d, ID: id})
		}
	}
	key := []byte(pl.spec.Name)
	skipped, err := partial.EncodeCells(pl.spec.Name, w.part, w.partitions(w.part), cw.Start, w.keyIDs, cw.Cells, w.p.cfg.PartialMaxBytes,
		func(b []byte) { w.out.Add(w.input, w.p.cfg.PartialsTopic, key, b) })
	// What does not fit in a partials record is dropped and counted
	// (oversized), never retried: the same window would fail again. Its
	// people are then counted nowhere, so no row has fewer than k.
	c := &w.pending[w.planIndex(pl)]
	if err != nil {
		for i := range cw.Cells {
			c.oversized += cw.Cells[i].Events
		}
		return
	}
	for _, i := range skipped {
		c.oversized += cw.Cells[i].Events
	}
}

func (w *Worker) planIndex(pl *Plan) int {
	for i, p := range w.p.plans {
		if p == pl {
			return i
		}
	}
	return 0
}

// domainsMarker introduces the identity-domain table after the
// aggregators' states; a checkpoint without it (written before the table
// existed) restores with an empty table, which the replay fills.
const domainsMarker = 'D'

// splitState splits a checkpoint into the aggregators' states and the
// identity-domain table.
func splitState(b []byte, n int) ([][]byte, subject.Domains, forget.Set, error) {
	parts := make([][]byte, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, subject.Domains{}, forget.Set{}, errors.New("aggregates: corrupt checkpoint")
		}
		parts = append(parts, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) == 0 {
		return parts, subject.Domains{}, forget.Set{}, nil
	}
	if b[0] != domainsMarker {
		return nil, subject.Domains{}, forget.Set{}, errors.New("aggregates: checkpoint has trailing bytes (the declared aggregates changed?)")
	}
	doms, rest, err := subject.DecodeDomains(b[1:])
	if err != nil {
		return nil, subject.Domains{}, forget.Set{}, fmt.Errorf("aggregates: %w", err)
	}
	var erased forget.Set
	if len(rest) > 0 && rest[0] == erasedMarker {
		if erased, rest, err = forget.DecodeSet(rest[1:]); err != nil {
			return nil, subject.Domains{}, forget.Set{}, fmt.Errorf("aggregates: %w", err)
		}
	}
	if len(rest) != 0 {
		return nil, subject.Domains{}, forget.Set{}, errors.New("aggregates: checkpoint has trailing bytes (the declared aggregates changed?)")
	}
	return parts, doms, erased, nil
}

// emit encodes a closed window's rows, or its partials in two-stage mode.
func (w *Worker) emit(cw aggregate.ClosedWindow) {
	if w.p.cfg.PartialsTopic != "" {
		w.emitPartial(cw)
		return
	}
	pl := w.plan
	for _, row := range cw.Rows {
		w.key, w.val = pl.AppendRow(w.key[:0], w.val[:0], cw, row, w.part)
		w.out.Add(w.input, pl.topic, w.key, w.val, pl.Headers()...)
	}
}

// Plans returns the compiled aggregates, in declaration order.
func (p *Processor) Plans() []*Plan { return p.plans }

// Name returns the aggregate's name (kanon.json).
func (pl *Plan) Name() string { return pl.spec.Name }

// Topic returns the aggregate's output topic.
func (pl *Plan) Topic() string { return pl.topic }

// AggregateConfig returns the aggregate's release rules.
func (pl *Plan) AggregateConfig() aggregate.Config { return pl.aggCfg }

// Headers returns the headers of the aggregate's rows.
func (pl *Plan) Headers() []processors.Header {
	return []processors.Header{{Key: processors.HeaderSchema, Value: pl.schemaHdr}, {Key: processors.HeaderK, Value: pl.kHdr}}
}

// AppendRow appends a row's key to key and its Avro single-object value to
// val. The key is "<window start>/<level>[/margin[:<dimension>]]/<values
// joined by />", plus "#p<partition>" when partition >= 0 (per-partition
// rows, which a reader must sum; merged rows have none).
func (pl *Plan) AppendRow(key, val []byte, cw aggregate.ClosedWindow, row aggregate.Row, partition int32) ([]byte, []byte) {
	k := key
	k = strconv.AppendInt(k, cw.Start, 10)
	k = append(k, '/')
	k = strconv.AppendInt(k, int64(row.Level), 10)
	marginOf := ""
	if row.Margin {
		k = append(k, "/margin"...)
		if row.MarginDim >= 0 && row.MarginDim < len(pl.spec.Dimensions) {
			marginOf = pl.spec.Dimensions[row.MarginDim].Field
			k = append(k, ':')
			k = append(k, marginOf...)
		}
	}
	for _, v := range row.Values {
		k = append(k, '/')
		k = append(k, v...)
	}
	if partition >= 0 {
		// Each input partition (shard) publishes its own rows; the shard
		// makes the key unique.
		k = append(k, "#p"...)
		k = strconv.AppendInt(k, int64(partition), 10)
	}
	b := append(val, pl.frame...)
	b = avroenc.AppendLong(b, cw.Start)
	b = avroenc.AppendLong(b, cw.End)
	b = avroenc.AppendInt(b, int32(row.Level))
	b = avroenc.AppendBool(b, row.Margin)
	b = avroenc.AppendString(b, marginOf)
	for _, v := range row.Values {
		b = avroenc.AppendString(b, v)
	}
	b = avroenc.AppendLong(b, row.Events)
	b = avroenc.AppendLong(b, row.Subjects)
	b = avroenc.AppendDouble(b, row.Sum)
	b = avroenc.AppendBool(b, row.Noisy)
	b = avroenc.AppendInt(b, int32(pl.k))
	b = avroenc.AppendDouble(b, pl.epsilon)
	return k, b
}

// Done implements processors.Worker: metrics count committed batches only.
func (w *Worker) Done(committed bool) {
	if committed {
		w.erasure.Flush(w.p.cfg.Metrics, Name)
		w.flushMetrics()
		w.shards.Touched(func(_ int32, _ int64, st *state) { copy(st.committed, st.current) })
	}
	w.shards.Done(committed)
	w.erasure = kanonmetrics.ErasureCounts{}
	for i := range w.pending {
		w.pending[i] = counts{}
	}
}

func (w *Worker) flushMetrics() {
	m := w.p.cfg.Metrics
	if m == nil {
		return
	}
	for i, c := range w.pending {
		out := w.p.plans[i].topic
		d := c.delta
		m.Events.WithLabelValues(out, "accepted").Add(float64(d.EventsAccepted - d.EventsBounded))
		m.Events.WithLabelValues(out, "late").Add(float64(d.EventsLate))
		m.Events.WithLabelValues(out, "bounded").Add(float64(d.EventsBounded))
		m.Events.WithLabelValues(out, "undecodable").Add(float64(c.undecodable))
		m.Events.WithLabelValues(out, "incomplete").Add(float64(c.incomplete))
		if c.oversized > 0 {
			m.Events.WithLabelValues(out, "oversized").Add(float64(c.oversized))
		}
		m.WatermarkCapped.WithLabelValues(out).Add(float64(c.capped))
		AddReleaseMetrics(m, out, d, c.minSubjects)
	}
}

// AddReleaseMetrics records what closing windows released into an
// aggregate topic (rows, margins, suppressed cells and events, DP budget,
// refused windows, smallest released row): the same figures whichever
// stage closes the windows. minSubjects 0 leaves the gauge alone.
func AddReleaseMetrics(m *kanonmetrics.Metrics, out string, d aggregate.Stats, minSubjects int64) {
	if len(d.RowsReleased) > 0 {
		m.Rows.WithLabelValues(out, "released").Add(float64(d.RowsReleased[0]))
	}
	m.Rows.WithLabelValues(out, "margin").Add(float64(d.MarginRows))
	m.Rows.WithLabelValues(out, "suppressed").Add(float64(d.CellsSuppressed))
	m.SuppressedEvents.WithLabelValues(out).Add(float64(d.EventsSuppressedFinal))
	m.EpsilonSpent.WithLabelValues(out).Add(d.EpsilonSpent)
	m.WindowsRefused.WithLabelValues(out).Add(float64(d.WindowsRefused))
	if minSubjects > 0 {
		m.MinSubjects.WithLabelValues(out).Set(float64(minSubjects))
	}
}

// Tick implements processors.Ticker: it closes, on the partitions the
// runner names (idle and caught up; restoring those it has not loaded
// yet), the windows that the wall clock has passed by IdleClose. Other
// loaded partitions are left alone: a lagging partition's backlog closes on
// its own event time, never by the wall clock (SPEC 3.6).
func (w *Worker) Tick(ctx context.Context, now time.Time, partitions []int32, out *processors.Batch) error {
	if w.p.cfg.IdleClose <= 0 {
		return nil
	}
	w.out, w.input = out, 0
	wm := now.Add(-w.p.cfg.IdleClose).UnixMilli()
	for _, partition := range partitions {
		ensure := w.shards.Ensure
		if w.p.cfg.PartialsTopic != "" {
			// The merge stage waits for every input partition: an idle one
			// without any state yet must still report its progress.
			ensure = w.shards.Open
		}
		if err := ensure(ctx, partition); err != nil {
			return err
		}
		st, ok := w.shards.Lookup(partition)
		if !ok {
			continue
		}
		w.part, w.st = partition, st
		for j, a := range st.aggs {
			w.plan = w.p.plans[j]
			before := a.Stats().WindowsClosed
			if err := a.Advance(wm, w.emit); err != nil {
				return fmt.Errorf("aggregates: %s: %w", w.plan.spec.Name, err)
			}
			if err := w.takeErr(); err != nil {
				return err
			}
			moved := w.p.cfg.PartialsTopic != "" && a.ClosedBefore() > st.reported[j]
			if a.Stats().WindowsClosed != before || moved {
				w.shards.Touch(partition)
			}
		}
	}
	w.shards.Touched(w.checkpoint)
	return nil
}

// Current implements processors.Worker: aggregates do not depend on
// consent decisions made after their input was published.
func (w *Worker) Current() bool { return true }

// Forget implements processors.StatefulWorker.
func (w *Worker) Forget(partition int32) { w.shards.Forget(partition) }
