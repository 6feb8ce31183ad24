// Package kanonrec is the record-level k-anonymisation processor (SPEC
// 3.6): it reads one purpose's clean topic and publishes every record to
// clean.<purpose>.kanon only inside a cluster of at least k distinct
// subjects that share its generalised quasi-identifiers, within a delay of
// delta records, using CASTLE (package internal/kanon/castle). Outliers are
// suppressed and counted. Numeric quasi-identifiers become [min, max]
// ranges, categorical ones the lowest common ancestor in their hierarchy;
// identifiers, pseudonyms and free text are never copied. The kept fields
// (schemas/kanon.json) are copied only when their value is in the field's
// declared finite domain, so no kept value singles a record out; others are
// published as null and counted.
//
// The data path, top to bottom in Worker.Process:
//
//	clean record -> decode -> tuple (subject hash, QIs as numbers and
//	hierarchy nodes) -> shard's CASTLE -> released tuples -> encode with the
//	cluster's generalisation -> emit -> checkpoint per touched partition
//
// CASTLE state is per input partition and survives restarts and
// rebalances: the checkpoint holds the clusters (as input offsets), the
// published clusters kept for reuse and tau; held records are re-read from
// the input on restore.
//
// It implements processors.Stateful and never imports a Kafka client.
package kanonrec

import (
	"context"
	"crypto/rand"
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
	"github.com/privacy-pipeline/pipeline/internal/kanon/castle"
	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/forget"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/kit/shard"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
	"github.com/privacy-pipeline/pipeline/processors/kit/writers"
)

// Name is the processor's name.
const Name = "kanon-records"

// Config configures the processor.
type Config struct {
	// Records is the declared record-level stream.
	Records kanonspec.Records
	// Spec builds the hierarchies.
	Spec *kanonspec.Spec
	// K, Delta, Beta, Mu, L and MaxReuse are CASTLE's parameters.
	K, Delta, Beta, Mu, L, MaxReuse int
	// MaxDelay bounds, in time, how long a record is held: older ones are
	// decided (released or suppressed) as if delta had been reached, at the
	// end of a batch or on a tick of an idle partition. 0: only delta.
	MaxDelay time.Duration
	// Seed, when not 0, makes the random choice among reusable published
	// clusters reproducible: each partition's and identity domain's CASTLE
	// is seeded from it, so a run equals an Offline run over the same input.
	// For verification only: 0 (a random seed per CASTLE) in production,
	// since a known seed lets a reader predict which cluster a record joins.
	Seed uint64
	// Topic is the output topic; empty: the default clean.<purpose>.kanon.
	Topic string
	// StateTopic holds the checkpoints.
	StateTopic string
	// Metrics may be nil.
	Metrics *kanonmetrics.Metrics
	// Log may be nil.
	Log *slog.Logger
	// Schemas frames the output records and resolves the clean records'
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

// Processor is the record-level k-anonymisation processor.
type Processor struct {
	cfg         Config
	dec         *cleancodec.Decoder
	writers     *writers.Writers
	frame       []byte // the output's framing header (wireformat)
	store       processors.StateStore
	topic       string
	fingerprint uint64
	schemaHdr   []byte
	kHdr        []byte
	subjIdx     int
	sensIdx     int
	qis         []qi
	keep        []keptField
	numQIs      int
	catQIs      int
}

// qi is one compiled quasi-identifier.
type qi struct {
	field   string
	idx     int
	numeric bool
	// scale converts a numeric value to CASTLE's unit (hours for a
	// timestamp, so ranges and domains stay small numbers).
	scale float64
	// min and width are the initial domain in CASTLE's unit (a timestamp's
	// starts at 0, the time base); a null value counts as min.
	min, width float64
	float      bool // a float or double field (Value.F), else Value.Num
	h          hierarchy.Hierarchy
}

type keptField struct {
	name   string
	idx    int
	typ    cleancodec.Type
	domain hierarchy.Hierarchy // nil for a boolean
}

const msPerHour = 3600 * 1000

// New validates the configuration and compiles it.
func New(cfg Config) (*Processor, error) {
	if cfg.Spec == nil || len(cfg.Records.QuasiIdentifiers) == 0 {
		return nil, errors.New("anonymize: no record-level stream declared")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	dec, err := cleancodec.NewForPurpose(cfg.Records.Purpose)
	if err != nil {
		return nil, fmt.Errorf("anonymize: %w", err)
	}
	if cfg.Topic == "" {
		cfg.Topic = cfg.Records.Topic()
	}
	p := &Processor{cfg: cfg, dec: dec, topic: cfg.Topic, subjIdx: dec.Field(cfg.Records.Subject), sensIdx: -1}
	if cfg.Records.Sensitive != "" {
		p.sensIdx = dec.Field(cfg.Records.Sensitive)
	}
	fields := dec.Fields()
	for _, q := range cfg.Records.QuasiIdentifiers {
		c := qi{field: q.Field, idx: dec.Field(q.Field)}
		if c.idx < 0 {
			return nil, fmt.Errorf("anonymize: quasi-identifier %s is not in the clean schema", q.Field)
		}
		if q.Numeric != nil {
			c.numeric, c.scale, c.min, c.width = true, 1, q.Numeric.Min, q.Numeric.Width()
			c.float = fields[c.idx].Type == cleancodec.TypeDouble || fields[c.idx].Type == cleancodec.TypeFloat
			if fields[c.idx].Type == cleancodec.TypeTimestampMillis {
				c.scale, c.width = 1.0/msPerHour, q.Numeric.Width()/msPerHour
			}
			p.numQIs++
		} else {
			if c.h, err = cfg.Spec.Build(q.Hierarchy); err != nil {
				return nil, err
			}
			p.catQIs++
		}
		p.qis = append(p.qis, c)
	}
	for _, k := range cfg.Records.Keep {
		i := dec.Field(k.Field)
		if i < 0 {
			return nil, fmt.Errorf("anonymize: kept field %s is not in the clean schema", k.Field)
		}
		kf := keptField{name: k.Field, idx: i, typ: fields[i].Type}
		switch {
		case k.Domain != "":
			if kf.domain, err = cfg.Spec.Build(k.Domain); err != nil {
				return nil, fmt.Errorf("anonymize: kept field %s: %w", k.Field, err)
			}
		case kf.typ != cleancodec.TypeBoolean:
			// kanonspec rejects this; a hand-built spec must not bypass it.
			return nil, fmt.Errorf("anonymize: kept field %s has no finite domain", k.Field)
		}
		p.keep = append(p.keep, kf)
	}
	if _, err := castle.New(p.castleConfig(1)); err != nil {
		return nil, fmt.Errorf("anonymize: %w", err)
	}
	sch, err := cfg.Records.KanonSchemaJSON()
	if err != nil {
		return nil, err
	}
	fp, err := avroschema.Fingerprint(sch)
	if err != nil {
		return nil, fmt.Errorf("anonymize: schema: %w", err)
	}
	p.fingerprint = fp
	if p.frame, err = cfg.Schemas.Frame(cfg.Topic, sch); err != nil {
		return nil, fmt.Errorf("anonymize: schema: %w", err)
	}
	p.writers = cfg.Schemas.Writers(dec, cfg.Log)
	p.schemaHdr = []byte("privacy.clean." + cfg.Records.Purpose + ".kanon.KAnonymousEvent@" + strconv.FormatUint(fp, 16))
	p.kHdr = strconv.AppendInt(nil, int64(cfg.K), 10)
	return p, nil
}

// castleConfig returns CASTLE's configuration with a seed.
func (p *Processor) castleConfig(seed uint64) castle.Config {
	c := castle.Config{K: p.cfg.K, Delta: p.cfg.Delta, Beta: p.cfg.Beta, Mu: p.cfg.Mu, L: p.cfg.L, MaxReuse: p.cfg.MaxReuse, Seed: seed}
	for _, q := range p.qis {
		if q.numeric {
			// The domain starts one width wide and extends with the data.
			c.QIs = append(c.QIs, castle.QI{Name: q.field, Kind: castle.Numeric, Min: q.min, Max: q.min + q.width})
			continue
		}
		c.QIs = append(c.QIs, castle.QI{Name: q.field, Kind: castle.Categorical, Hierarchy: q.h})
	}
	return c
}

// Name implements processors.Processor.
func (p *Processor) Name() string { return Name }

// Topic returns the output topic.
func (p *Processor) Topic() string { return p.topic }

// StateTopic implements processors.Stateful.
func (p *Processor) StateTopic() string { return p.cfg.StateTopic }

// UseStore implements processors.Stateful.
func (p *Processor) UseStore(s processors.StateStore) { p.store = s }

// held is what a held record needs at release: its kept fields (encoded)
// and arrival time.
type held struct {
	kept    []byte
	arrived time.Time
}

// state is one partition's CASTLE per identity domain (pseudonym key; see
// domains.go) and its held records.
type state struct {
	partition int32
	// ids numbers the pseudonym key ids of this partition exactly (part
	// of the checkpoint); domains holds one CASTLE per numbered domain.
	ids     subject.Domains
	domains []domainCastle
	retired castle.Stats // counters of domains no longer kept
	held    map[int64]held
	// erased are the pseudonyms erased in this partition (erasure.go),
	// kept out of later records; part of the checkpoint.
	erased    forget.Set
	committed castle.Stats
	current   castle.Stats
}

// NewWorker implements processors.Processor.
func (p *Processor) NewWorker() processors.Worker {
	w := &Worker{p: p}
	w.shards = shard.New(p.store, w.load)
	w.tuple.Num = make([]float64, p.numQIs)
	w.tuple.Cat = make([]hierarchy.Node, p.catQIs)
	w.outside = make([]int64, len(p.keep))
	return w
}

// Worker processes batches of one or more partitions.
type Worker struct {
	p      *Processor
	shards *shard.Shards[state]
	rec    cleancodec.Record
	tuple  castle.Tuple
	val    []byte
	ckpt   []byte
	out    *processors.Batch
	st     *state
	input  int
	now    time.Time
	delays []float64
	bad    struct{ undecodable, incomplete int64 }
	// erasure counts the batch's notices and what they dropped.
	erasure erasureCounts
	// outside counts, per kept field, values outside its domain.
	outside []int64
	// trace receives every released record with its input (Offline).
	trace func(partition int32, offset int64, value []byte)
}

// timeBase offsets timestamps so numeric values stay small: hours since
// 2020-01-01.
var timeBase = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// toTuple decodes a record into w.tuple; ok false if undecodable (bad) or
// without subject (or with a key id the partition's domain table cannot
// number: never clustered, so never loosening k).
func (w *Worker) toTuple(st *state, r processors.Record) (ok, bad bool) {
	if err := w.p.dec.Decode(r.Value, &w.rec); err != nil {
		return false, true
	}
	s := w.rec.Values[w.p.subjIdx]
	if !s.Present || len(s.Bytes) == 0 {
		return false, false
	}
	dom, err := st.ids.Of(subject.KeyID(r.Headers))
	if err != nil {
		return false, false
	}
	t := &w.tuple
	t.Ref, t.Subject, t.Sensitive = r.Offset, subject.ID(dom, s.Bytes), 0
	if w.p.sensIdx >= 0 {
		if v := w.rec.Values[w.p.sensIdx]; v.Present {
			t.Sensitive = subject.Hash(v.Bytes)
		}
	}
	ni, ci := 0, 0
	for _, q := range w.p.qis {
		v := w.rec.Values[q.idx]
		if q.numeric {
			x := q.min
			switch {
			case !v.Present:
			case q.float:
				x = v.F
			case q.scale != 1:
				x = float64(v.Num-timeBase) * q.scale
			default:
				x = float64(v.Num)
			}
			t.Num[ni] = x
			ni++
			continue
		}
		n := q.h.RootNode() // null or unknown: fully generalised
		if v.Present {
			if leaf, ok := q.h.Lookup(string(v.Bytes)); ok {
				n = leaf
			}
		}
		t.Cat[ci] = n
		ci++
	}
	return true, false
}

// keptValues encodes the kept fields of the decoded record (nullable
// unions, in schema order): a string outside its field's domain is null,
// and counted in w.outside when count is set (not on a replay).
func (w *Worker) keptValues(dst []byte, count bool) []byte {
	for i, k := range w.p.keep {
		v := w.rec.Values[k.idx]
		if !v.Present {
			dst = avroenc.AppendNull(dst)
			continue
		}
		if k.domain != nil {
			if _, ok := k.domain.Lookup(string(v.Bytes)); !ok {
				if count {
					w.outside[i]++
				}
				dst = avroenc.AppendNull(dst)
				continue
			}
			dst = avroenc.AppendNonNull(dst)
			dst = avroenc.AppendBytes(dst, v.Bytes)
			continue
		}
		dst = avroenc.AppendNonNull(dst)
		dst = avroenc.AppendBool(dst, v.Num != 0) // New admits only booleans without a domain
	}
	return dst
}

// load restores a partition's CASTLE from its checkpoint and a replay of
// the held records.
func (w *Worker) load(ctx context.Context, partition int32, cp processors.Checkpoint, ok bool, replay func(func(processors.Record) error) error) (state, error) {
	st := state{partition: partition, held: map[int64]held{}}
	if !ok {
		return st, nil
	}
	if m := w.p.cfg.Metrics; m != nil {
		m.Restores.WithLabelValues(Name).Inc()
	}
	// The domain table comes first: the replay numbers key ids with it,
	// as the run that wrote the checkpoint did.
	ids, err := decodeIDs(cp.State)
	if err != nil {
		w.p.cfg.Log.Warn("checkpoint unusable; the partition's clusters start afresh",
			"processor", Name, "partition", partition, "err", err)
		if m := w.p.cfg.Metrics; m != nil {
			m.StateResets.WithLabelValues(Name).Inc()
		}
		return st, nil
	}
	st.ids = ids
	tuples := map[int64]castle.Tuple{}
	err = replay(func(r processors.Record) error {
		if err := w.p.writers.Prepare(ctx, []processors.Record{r}); err != nil {
			return err
		}
		if ok, _ := w.toTuple(&st, r); !ok {
			return nil
		}
		t := w.tuple
		t.Num, t.Cat = append([]float64(nil), t.Num...), append([]hierarchy.Node(nil), t.Cat...)
		tuples[r.Offset] = t
		st.held[r.Offset] = held{kept: w.keptValues(nil, false), arrived: r.Timestamp}
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := w.restore(&st, cp.State, tuples); err != nil {
		// The checkpoint cannot be used (k, delta, the split or the
		// quasi-identifiers changed, or it is corrupt): retrying would fail
		// forever, so start afresh, loudly. The records it held (at most
		// delta) are not released; they stay in the clean topic.
		w.p.cfg.Log.Warn("checkpoint unusable; the partition's clusters start afresh",
			"processor", Name, "partition", partition, "replayed_records", len(tuples), "err", err)
		if m := w.p.cfg.Metrics; m != nil {
			m.StateResets.WithLabelValues(Name).Inc()
		}
		return state{partition: partition, held: map[int64]held{}}, nil
	}
	// Keep only what CASTLE still holds.
	keepRefs := map[int64]bool{}
	for _, ref := range st.heldRefs() {
		keepRefs[ref] = true
	}
	for ref := range st.held {
		if !keepRefs[ref] {
			delete(st.held, ref)
		}
	}
	st.committed = st.stats()
	return st, nil
}

// restore rebuilds every domain's CASTLE from a checkpoint.
func (w *Worker) restore(st *state, b []byte, tuples map[int64]castle.Tuple) error {
	doms, retired, erased, err := decodeState(b)
	if err != nil {
		return err
	}
	st.erased = erased
	lookup := func(ref int64) (castle.Tuple, bool) {
		t, ok := tuples[ref]
		return t, ok
	}
	for _, d := range doms {
		c, err := castle.New(w.p.castleConfig(w.p.seed(st.partition, d.dom)))
		if err != nil {
			return err
		}
		if err := c.Restore(d.snap, lookup); err != nil {
			return err
		}
		st.domains = append(st.domains, domainCastle{dom: d.dom, c: c})
	}
	st.retired = retired
	return nil
}

// seed returns the seed of a new CASTLE (its random reuse choice): random,
// or derived from Config.Seed, the partition and the identity domain.
func (p *Processor) seed(partition int32, dom uint16) uint64 {
	if p.cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return binary.LittleEndian.Uint64(b[:])
	}
	x := p.cfg.Seed ^ uint64(uint32(partition))<<16 ^ uint64(dom)
	// splitmix64 finaliser: distinct inputs, well-spread seeds.
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Process implements processors.Worker.
func (w *Worker) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	w.out = out
	if err := w.p.writers.Prepare(ctx, in); err != nil {
		return err
	}
	var latest time.Time
	for i, r := range in {
		if w.isNotice(r) {
			if err := w.notice(ctx, r); err != nil {
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
		ok, bad := w.toTuple(st, r)
		if !ok {
			if bad {
				w.bad.undecodable++
			} else {
				w.bad.incomplete++
			}
			continue
		}
		if w.erasedRecord(st, r.Offset) {
			continue
		}
		st.held[r.Offset] = held{kept: w.keptValues(nil, true), arrived: r.Timestamp}
		w.st, w.input, w.now = st, i, r.Timestamp
		c, err := w.castleFor(st, subject.Domain(w.tuple.Subject))
		if err != nil {
			return fmt.Errorf("anonymize: %w", err)
		}
		if err := c.Push(w.tuple, w.emit); err != nil {
			return fmt.Errorf("anonymize: %w", err)
		}
	}
	w.shards.Touched(func(partition int32, next int64, st *state) {
		w.expire(st, latest)
		w.pruneErased(st, latest)
		w.checkpoint(partition, next, st)
	})
	return nil
}

// expire decides the records of a shard held longer than MaxDelay at now;
// it reports whether any was.
func (w *Worker) expire(st *state, now time.Time) bool {
	if w.p.cfg.MaxDelay <= 0 || now.IsZero() {
		return false
	}
	limit := now.Add(-w.p.cfg.MaxDelay)
	w.st, w.now = st, now
	expired := func(ref int64) bool {
		h, ok := st.held[ref]
		return ok && !h.arrived.IsZero() && h.arrived.Before(limit)
	}
	n := 0
	for _, d := range st.domains {
		n += d.c.Expire(expired, w.emit)
	}
	return n > 0
}

// Tick implements processors.Ticker: on the partitions the runner names
// (idle and caught up; restoring those it has not loaded yet), records held
// longer than MaxDelay are decided even though no record arrives.
func (w *Worker) Tick(ctx context.Context, now time.Time, partitions []int32, out *processors.Batch) error {
	if w.p.cfg.MaxDelay <= 0 {
		return nil
	}
	w.out, w.input = out, 0
	// Only the partitions the runner names (idle, caught up): a lagging
	// partition's held records wait for its own input.
	for _, p := range partitions {
		if err := w.shards.Ensure(ctx, p); err != nil {
			return err
		}
		if st, ok := w.shards.Lookup(p); ok && w.expire(st, now) {
			w.shards.Touch(p)
		}
	}
	w.shards.Touched(w.checkpoint)
	return nil
}

// checkpoint adds a partition's CASTLE state to the batch.
func (w *Worker) checkpoint(partition int32, next int64, st *state) {
	from := next
	if ref, ok := st.minHeldRef(); ok && ref < from {
		from = ref
	}
	w.ckpt = appendState(w.ckpt[:0], st)
	w.out.AddCheckpoint(processors.Checkpoint{Partition: partition, Next: next, ReplayFrom: from, State: w.ckpt})
	st.current = st.stats()
}

// emit publishes a released record (or drops a suppressed one).
func (w *Worker) emit(o castle.Output) {
	h, ok := w.st.held[o.Ref]
	delete(w.st.held, o.Ref)
	if o.Suppressed || o.Gen == nil || !ok {
		return
	}
	if !h.arrived.IsZero() && !w.now.IsZero() {
		w.delays = append(w.delays, w.now.Sub(h.arrived).Seconds())
	}
	id := strconv.AppendUint(nil, o.ClusterID, 16)
	b := append(w.val[:0], w.p.frame...)
	b = avroenc.AppendBytes(b, id)
	b = avroenc.AppendInt(b, int32(w.p.cfg.K))
	b = avroenc.AppendDouble(b, o.Gen.InfoLoss)
	ni, ci := 0, 0
	for _, q := range w.p.qis {
		if q.numeric {
			lo, hi := o.Gen.Lo[ni], o.Gen.Hi[ni]
			ni++
			switch {
			case q.float:
				b = avroenc.AppendDouble(b, lo)
				b = avroenc.AppendDouble(b, hi)
			case q.scale != 1:
				b = avroenc.AppendLong(b, timeBase+int64(math.Round(lo/q.scale)))
				b = avroenc.AppendLong(b, timeBase+int64(math.Round(hi/q.scale)))
			default:
				b = avroenc.AppendLong(b, int64(lo))
				b = avroenc.AppendLong(b, int64(hi))
			}
			continue
		}
		b = avroenc.AppendString(b, q.h.Label(o.Gen.Cat[ci]))
		ci++
	}
	b = append(b, h.kept...)
	w.val = b
	if w.trace != nil {
		w.trace(w.st.partition, o.Ref, b)
	}
	w.out.Add(w.input, w.p.topic, id, b,
		processors.Header{Key: processors.HeaderSchema, Value: w.p.schemaHdr},
		processors.Header{Key: processors.HeaderK, Value: w.p.kHdr})
}

// Done implements processors.Worker: metrics count committed batches only.
func (w *Worker) Done(committed bool) {
	if committed {
		m := w.p.cfg.Metrics
		w.shards.Touched(func(_ int32, _ int64, st *state) {
			if m != nil {
				cur, last := st.current, st.committed
				m.Records.WithLabelValues(w.p.topic, "released").Add(float64(cur.Released - cur.Reused - (last.Released - last.Reused)))
				m.Records.WithLabelValues(w.p.topic, "reused").Add(float64(cur.Reused - last.Reused))
				m.Records.WithLabelValues(w.p.topic, "suppressed").Add(float64(cur.Suppressed - last.Suppressed))
				if cur.Released > 0 {
					m.InfoLoss.WithLabelValues(w.p.topic).Set(cur.InfoLossSum / float64(cur.Released))
				}
			}
			st.committed = st.current
		})
		if m != nil {
			for _, d := range w.delays {
				m.Delay.WithLabelValues(w.p.topic).Observe(d)
			}
			m.Events.WithLabelValues(w.p.topic, "undecodable").Add(float64(w.bad.undecodable))
			m.Events.WithLabelValues(w.p.topic, "incomplete").Add(float64(w.bad.incomplete))
			for i, n := range w.outside {
				if n > 0 {
					m.KeptOutsideDomain.WithLabelValues(w.p.topic, w.p.keep[i].name).Add(float64(n))
				}
			}
		}
	}
	if committed {
		w.erasure.Flush(w.p.cfg.Metrics, Name)
	}
	w.erasure = erasureCounts{}
	clear(w.outside)
	w.delays = w.delays[:0]
	w.bad.undecodable, w.bad.incomplete = 0, 0
	w.shards.Done(committed)
}

// Current implements processors.Worker.
func (w *Worker) Current() bool { return true }

// Forget implements processors.StatefulWorker.
func (w *Worker) Forget(partition int32) { w.shards.Forget(partition) }
