// Package privacy is the privacy processor: for each raw customer event it
// decodes and validates the record, looks up the subject's consent (one
// store round trip per batch), and for every purpose the consent allows
// applies that purpose's field policy, encodes the clean record and emits it
// to clean.<purpose>.customer-events keyed by the purpose's pseudonym, with
// provenance headers (SPEC 3.8). Records that cannot be decoded or validated
// are emitted to the quarantine topic with a reason code.
//
// The data path, top to bottom in Worker.Process:
//
//	raw bytes -> decode+validate -> consent lookup -> per purpose: decide ->
//	apply policy -> encode -> emit
//
// Records are framed (package wireformat) as Config.Schemas says: the
// Confluent wire format with a registry id by default in production, or
// single-object encoding. Raw records in either framing are accepted; the
// writer schema of a Confluent-framed record is looked up by id before its
// batch is decoded (processors/kit/writers).
//
// It implements processors.Processor and never imports a Kafka, Redis or
// schema registry client: consent comes through the ConsentLookup
// interface, the subjects' data keys (encrypt, tokenize) through
// DataKeyLookup, writer schemas through a wireformat.Resolver.
package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroenc"
	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/internal/codec/eventcodec"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/fieldaction"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/redact"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/writers"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Name is the processor's name.
const Name = "privacy"

// Quarantine header keys (the clean records' provenance headers are
// named in package processors).
const (
	HeaderQuarantineReason = "pp-quarantine-reason"
	HeaderSourceTopic      = "pp-source-topic"
	HeaderSourcePartition  = "pp-source-partition"
	HeaderSourceOffset     = "pp-source-offset"
	// HeaderSourceSize is the size in bytes of the quarantined record's
	// value; set on every quarantine record.
	HeaderSourceSize = "pp-source-size"
	// HeaderQuarantineForm is "bytes" when the quarantine record holds the
	// original value, "reference" when the value was too large for the
	// quarantine topic and only the reference (source topic, partition,
	// offset, size, reason) was published.
	HeaderQuarantineForm = "pp-quarantine-form"
)

// Limits bounds what one output record may weigh so that the broker and
// the producer accept it: the topic's max.message.bytes, and the producer's
// batch limit. The check runs before the transaction, so one big record
// never aborts a batch (SPEC 6). Zero means unbounded.
type Limits struct {
	// Quarantine bounds a quarantine record; a bad record larger than that
	// is quarantined as a reference, without its bytes.
	Quarantine int
	// Clean bounds a clean record of each purpose; an event whose clean
	// record would be larger is quarantined (as oversized) for every
	// purpose instead of being published for some.
	Clean [purpose.Count]int
}

// RecordOverhead is what a record costs in a batch besides its key, value
// and headers (length varints, attributes, timestamp and offset deltas),
// rounded up generously, plus one record batch header: a record whose user
// bytes plus this fit the limit fits alone in a batch.
const RecordOverhead = 512

// RecordSize returns the bytes a record counts against the limits.
func RecordSize(key, value []byte, headers []processors.Header) int {
	n := len(key) + len(value) + RecordOverhead
	for _, h := range headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Topics names the output topics.
type Topics struct {
	// Clean is the clean topic of each purpose.
	Clean [purpose.Count]string
	// Quarantine receives records that could not be decoded or validated.
	Quarantine string
	// Keys receives the records of new data keys (privacy.keys); needed
	// when the policy encrypts or tokenizes a field.
	Keys string
	// Audit receives one audit record per processed batch (privacy.audit,
	// audit.go), in the batch's transaction; empty: none.
	Audit string
}

// complete reports whether every output is named.
func (t Topics) complete() bool {
	for _, c := range t.Clean {
		if c == "" {
			return false
		}
	}
	return t.Quarantine != ""
}

// ConsentLookup is the consent the processor decides on: a batched lookup
// (typically a cache in front of the consent store, consentredis.Cache)
// with invalidation generations, so that a batch whose subjects' consent
// changed after its lookup is redone instead of published. It is safe for
// concurrent use.
type ConsentLookup interface {
	// Lookup fills out[i] for subjects[i] with at most one store round
	// trip; on an error the caller must not decide.
	Lookup(ctx context.Context, subjects []string, out []consent.Lookup) (consent.LookupStats, error)
	// Generation returns the current invalidation generation.
	Generation() uint64
	// InvalidatedSince reports whether any of subjects was invalidated
	// after generation g.
	InvalidatedSince(g uint64, subjects []string) bool
}

// DataKeyLookup gives the subjects' data keys for the encrypt and tokenize
// actions (internal/keys/keyredis through wiring): one store round trip
// per batch, new keys created exactly once across replicas, shredded ids
// reported. It is safe for concurrent use.
type DataKeyLookup interface {
	// Get fills out for ids, index for index; on an error the caller must
	// not publish what needs them.
	Get(ctx context.Context, ids []string, out *subjectkey.Lookup) error
}

// Config holds the processor's dependencies.
type Config struct {
	Raw     *schemas.EventSchema
	Policy  *policy.Policy
	Keys    *pseudonym.Keyring
	Decoder *eventcodec.Decoder
	Consent ConsentLookup
	Metrics *Metrics
	Topics  Topics
	Log     *slog.Logger
	// BackoffMin and BackoffMax bound the retry delay while the consent
	// store cannot answer (defaults 50ms and 5s).
	BackoffMin, BackoffMax time.Duration
	// Limits are the output size limits at start; SetLimits updates them.
	Limits Limits
	// Schemas frames the clean records and resolves the raw records'
	// writer schema ids (zero: single-object encoding, no registry).
	Schemas writers.Schemas
	// DataKeys is required when the policy encrypts or tokenizes a field
	// (with Topics.Keys).
	DataKeys DataKeyLookup
	// Erased, when set, is the erasure ledger (PIPELINE_ERASURE_KEY_FILE):
	// an erased subject's events are denied with reason erased for every
	// purpose, whatever consent says, and no data key is created for it.
	Erased ErasureLookup
}

// ErasureLookup answers whether subjects were erased (internal/erasure
// Check through wiring: their keyed-hash marks, one store round trip per
// batch). It is safe for concurrent use.
type ErasureLookup interface {
	// Erased reports, index for index, whether each subject was erased.
	Erased(ctx context.Context, subjects []string) ([]bool, error)
}

// Processor is the privacy processor. Create it with New.
type Processor struct {
	cfg     Config
	plans   [purpose.Count]plan
	writers *writers.Writers
	paused  atomic.Int32
	limits  atomic.Pointer[Limits]

	subjectIdx, jurIdx, gpcIdx, timeIdx int
	// dataKeys: some purpose encrypts or tokenizes a field.
	dataKeys bool
	// memoSlots is the number of per-event memo slots (plan.memo).
	memoSlots int
	// knownIdx are the string direct identifiers of the raw schema; their
	// values are scrubbed from free text (contextual redaction).
	knownIdx []int
}

// plan is the compiled policy of one purpose.
type plan struct {
	purpose     purpose.Purpose
	topic       string
	fields      []policy.OutField
	fingerprint uint64 // of the clean schema (the provenance header names it)
	frame       []byte // the framing header of every record (wireformat)
	key         pseudonym.Key
	policyVer   []byte
	keyID       []byte
	schemaHdr   []byte
	// dataKeys: the purpose encrypts or tokenizes a field (its records
	// need the subject's data key and carry its id).
	dataKeys bool
	// memo[i] is fields[i]'s slot in the worker's per-event memo, or -1:
	// a mask, redaction or generalisation that another purpose's plan
	// makes too (the same raw field and rule: its clean bytes depend on
	// the event alone) is computed once per event and copied after that
	// (memoise).
	memo []int
	// cached[i]: fields[i] is a pseudonymised direct identifier (the
	// subject id, a device id): its values repeat with the person, so the
	// worker remembers their pseudonyms (pseudonym.Cache).
	cached []bool
}

// pseudonymCacheSlots is the size of each worker's pseudonym cache of one
// purpose and field (pseudonym.Cache: 88 bytes a slot, 1.4 MB).
const pseudonymCacheSlots = 1 << 14

// New compiles the policy into per-purpose plans. It fails when the policy,
// the keys or the clean schemas are inconsistent.
func New(cfg Config) (*Processor, error) {
	if cfg.Raw == nil || cfg.Policy == nil || cfg.Keys == nil || cfg.Decoder == nil || cfg.Consent == nil || cfg.Metrics == nil {
		return nil, errors.New("privacy: Config needs Raw, Policy, Keys, Decoder, Consent and Metrics")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 50 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	if !cfg.Topics.complete() {
		return nil, errors.New("privacy: Config.Topics must name every purpose's clean topic and the quarantine (the topology names them)")
	}
	if err := checkAudit(cfg); err != nil {
		return nil, err
	}
	p := &Processor{cfg: cfg,
		subjectIdx: cfg.Raw.Index("subject_id"), jurIdx: cfg.Raw.Index("jurisdiction"),
		gpcIdx: cfg.Raw.Index("gpc"), timeIdx: cfg.Raw.Index("event_time")}
	p.SetLimits(cfg.Limits)
	if p.subjectIdx < 0 || p.jurIdx < 0 || p.timeIdx < 0 {
		return nil, errors.New("privacy: raw schema lacks subject_id, jurisdiction or event_time")
	}
	for i, f := range cfg.Raw.Fields {
		if f.Classification == schemas.DirectIdentifier && f.Kind == schemas.String {
			p.knownIdx = append(p.knownIdx, i)
		}
	}
	for _, pur := range purpose.All {
		fields, err := cfg.Policy.Derive(cfg.Raw, pur)
		if err != nil {
			return nil, err
		}
		schema := policy.CleanSchemaJSON(pur, fields)
		fp, err := avroschema.Fingerprint(schema)
		if err != nil {
			return nil, fmt.Errorf("privacy: clean schema of %s: %w", pur, err)
		}
		frame, err := cfg.Schemas.Frame(cfg.Topics.Clean[pur], schema)
		if err != nil {
			return nil, fmt.Errorf("privacy: clean schema of %s: %w", pur, err)
		}
		key, ok := cfg.Keys.Active(pur.String())
		if !ok {
			return nil, fmt.Errorf("privacy: no active pseudonym key for purpose %s", pur)
		}
		p.plans[pur] = plan{
			purpose: pur, topic: cfg.Topics.Clean[pur], fields: fields, fingerprint: fp, frame: frame, key: key,
			policyVer: []byte(cfg.Policy.Version), keyID: []byte(key.ID),
			schemaHdr: []byte(policy.CleanRecordName(pur) + "@" + strconv.FormatUint(fp, 16)),
			dataKeys:  cfg.Policy.NeedsDataKeys(pur),
		}
		p.dataKeys = p.dataKeys || p.plans[pur].dataKeys
	}
	p.memoSlots = memoise(&p.plans)
	for pi := range p.plans {
		pl := &p.plans[pi]
		pl.cached = make([]bool, len(pl.fields))
		for fi, f := range pl.fields {
			pl.cached[fi] = f.Rule.Action == policy.Pseudonymize && f.Source.Classification == schemas.DirectIdentifier && f.Source.Kind == schemas.String
		}
	}
	if p.dataKeys && (cfg.DataKeys == nil || cfg.Topics.Keys == "") {
		return nil, errors.New("privacy: the policy encrypts or tokenizes a field: Config needs DataKeys and Topics.Keys (PIPELINE_KEK_FILE and the key topic)")
	}
	p.writers = writers.New(writers.Config{Resolver: cfg.Schemas.Registry, Decoder: cfg.Decoder, Metrics: cfg.Schemas.Metrics,
		Subject: cfg.Schemas.InputSubject, Log: cfg.Log, BackoffMin: cfg.BackoffMin, BackoffMax: cfg.BackoffMax})
	return p, nil
}

// memoise assigns the plans' shared field computations their memo slots
// (plan.memo) and returns how many there are. Only purpose-independent
// actions share a slot: mask, redact and generalize. Pseudonyms differ by
// purpose (each its own key), keep is a copy already, and encrypt and
// tokenize seal with a per-purpose associated context.
func memoise(plans *[purpose.Count]plan) int {
	type use struct {
		src  int
		rule policy.Rule
	}
	count := map[use]int{}
	keyOf := func(f *policy.OutField) (use, bool) {
		switch f.Rule.Action {
		case policy.Mask, policy.Redact, policy.Generalize:
			r := f.Rule
			r.Reason = "" // documentation only
			return use{f.SourceIndex, r}, true
		}
		return use{}, false
	}
	for pi := range plans {
		for fi := range plans[pi].fields {
			if k, ok := keyOf(&plans[pi].fields[fi]); ok {
				count[k]++
			}
		}
	}
	slot := map[use]int{}
	for pi := range plans {
		pl := &plans[pi]
		pl.memo = make([]int, len(pl.fields))
		for fi := range pl.fields {
			pl.memo[fi] = -1
			k, ok := keyOf(&pl.fields[fi])
			if !ok || count[k] < 2 {
				continue
			}
			if _, seen := slot[k]; !seen {
				slot[k] = len(slot)
			}
			pl.memo[fi] = slot[k]
		}
	}
	return len(slot)
}

// Name implements processors.Processor.
func (p *Processor) Name() string { return Name }

// Ready reports whether no worker is paused waiting for the consent store
// or the schema registry.
func (p *Processor) Ready() bool { return p.paused.Load() == 0 && !p.writers.Waiting() }

// SetLimits replaces the output size limits (the topics' configuration
// changed); safe to call while workers run.
func (p *Processor) SetLimits(l Limits) { p.limits.Store(&l) }

// OutputLimits returns the output size limits in force.
func (p *Processor) OutputLimits() Limits { return *p.limits.Load() }

// CleanFingerprint returns the fingerprint of a purpose's clean schema.
func (p *Processor) CleanFingerprint(pur purpose.Purpose) uint64 { return p.plans[pur].fingerprint }

// CleanFrame returns the framing header of a purpose's clean records.
func (p *Processor) CleanFrame(pur purpose.Purpose) []byte {
	return append([]byte(nil), p.plans[pur].frame...)
}

// NewWorker implements processors.Processor.
func (p *Processor) NewWorker() processors.Worker {
	w := &Worker{p: p, subjMap: map[string]int{}, memo: make([]memoEntry, p.memoSlots)}
	for _, pur := range purpose.All {
		pl := &p.plans[pur]
		w.pseud[pur] = pseudonym.New(pl.key)
		w.cache[pur] = make([]*pseudonym.Cache, len(pl.fields))
		for fi := range pl.fields {
			if pl.cached[fi] {
				w.cache[pur][fi] = pseudonym.NewCache(w.pseud[pur], pseudonymCacheSlots)
			}
		}
	}
	return w
}

// Worker processes batches; one per goroutine.
type Worker struct {
	p        *Processor
	events   []eventcodec.Event
	status   []eventcodec.Reason
	subjOf   []int
	subjects []string
	subjMap  map[string]int
	lookups  []consent.Lookup
	// erased[k]: subject k of the batch is in the erasure ledger.
	erased []bool
	pseud  [purpose.Count]*pseudonym.Pseudonymizer
	// cache[purpose][field]: the pseudonym cache of a plan's field, nil
	// where the plan does not cache it (plan.cached).
	cache [purpose.Count][]*pseudonym.Cache
	// cacheSeen are the caches' hits and misses already counted in the
	// metrics.
	cacheSeen [2]uint64
	val, key  []byte
	tmp       []byte
	tmp2      []byte
	counts    Counts
	gen       uint64 // cache invalidation generation before this batch's lookup
	limits    Limits // the output limits for this batch
	// Data keys of the batch: keyOf[purpose][subject] indexes keyIDs and
	// keys (-1: none needed), keyFirst is the first event that needs it.
	keyOf    [purpose.Count][]int
	keyIDs   []string
	keyFirst []int
	keys     subjectkey.Lookup
	idBuf    []byte
	audit    auditBatch // the batch's audit record (audit.go)
	// The per-event memo (plan.memo): memo[slot] holds the clean bytes of
	// a shared computation in memoBuf when its stamp is memoStamp, the
	// event being encoded.
	memo      []memoEntry
	memoBuf   []byte
	memoStamp uint64
}

// memoEntry is one memo slot: memoBuf[start:end] when stamp is current.
type memoEntry struct {
	stamp      uint64
	start, end int
}

var errNoDecision = errors.New("privacy: consent store unavailable")

// Process implements processors.Worker.
func (w *Worker) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	start := time.Now()
	p := w.p
	n := len(in)
	w.grow(n)
	w.counts = Counts{} // the tally of this batch only, recorded by Done
	w.limits = *p.limits.Load()

	// 1. Decode and validate; quarantine what fails. Writer schemas named
	// by registry id are looked up first (waiting while the registry
	// cannot answer).
	if err := p.writers.Prepare(ctx, in); err != nil {
		return err
	}
	clear(w.subjMap)
	w.subjects = w.subjects[:0]
	for i := range in {
		st := p.cfg.Decoder.Decode(in[i].Value, &w.events[i])
		w.status[i] = st
		if w.events[i].LegacyFingerprint {
			w.counts.Legacy++
		}
		if st != eventcodec.OK {
			w.quarantine(i, &in[i], st, out)
			continue
		}
		sub := w.events[i].Values[p.subjectIdx].Str
		k, ok := w.subjMap[sub]
		if !ok {
			k = len(w.subjects)
			w.subjMap[sub] = k
			w.subjects = append(w.subjects, sub)
		}
		w.subjOf[i] = k
	}

	// 2. Consent: one lookup for the batch; pause (never guess) while the
	// store cannot answer.
	if err := w.lookupConsent(ctx); err != nil {
		return err // Done(false) follows and drops the partial tally
	}
	// 2a. The erasure ledger (when configured): one lookup for the batch;
	// pause while it cannot answer. An erased subject's events are denied
	// (reason erased) for every purpose, and no key is created for it.
	if err := w.lookupErased(ctx); err != nil {
		return err
	}
	// 2b. Data keys of the (subject, purpose) pairs that consent allows and
	// whose policy encrypts or tokenizes: one lookup for the batch; pause
	// while the key store cannot answer (nothing is published
	// unencrypted); new keys' records go to the key topic in this batch.
	if p.dataKeys {
		if err := w.lookupDataKeys(ctx, out); err != nil {
			return err
		}
	}

	// 3. Per event and purpose: decide, apply policy, encode, emit.
	for i := range in {
		if w.status[i] != eventcodec.OK {
			continue
		}
		w.emitClean(i, &w.events[i], w.subjOf[i], &in[i], out)
		out.Ready() // the event's outputs are final: the runner may produce them now
	}
	// 4. The batch's decision summary, in its transaction.
	w.addAudit(in, out)

	w.counts.EventsIn = n
	p.cfg.Metrics.BatchSize.Observe(float64(n))
	p.cfg.Metrics.BatchSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// Current implements processors.Worker: false when a subject of the last
// batch had its consent changed (invalidated) after the batch's lookup, so
// its decisions may be stale; the runner then aborts and redoes the batch.
// This bounds how late a record can be published after a withdrawal by the
// invalidation's delivery, not by the batch's produce and commit time.
func (w *Worker) Current() bool {
	if len(w.subjects) == 0 {
		return true // no decision of this batch rests on consent
	}
	return !w.p.cfg.Consent.InvalidatedSince(w.gen, w.subjects)
}

// Done implements processors.Worker: the batch's tally reaches the metrics
// only when its outputs were committed, so the accounting stays exactly once
// when a transaction aborts and the batch is processed again.
func (w *Worker) Done(committed bool) {
	if committed {
		w.p.cfg.Metrics.Flush(&w.counts)
	}
	w.counts = Counts{}
	var hits, misses uint64
	for pur := range w.cache {
		for _, c := range w.cache[pur] {
			if c != nil {
				hits, misses = hits+c.Hits, misses+c.Misses
			}
		}
	}
	m := w.p.cfg.Metrics
	m.PseudonymCacheHits.Add(float64(hits - w.cacheSeen[0]))
	m.PseudonymCacheMisses.Add(float64(misses - w.cacheSeen[1]))
	w.cacheSeen = [2]uint64{hits, misses}
}

func (w *Worker) grow(n int) {
	if cap(w.events) < n {
		// Keep the decoded events' Values slices: they are reused.
		w.events = append(w.events[:cap(w.events)], make([]eventcodec.Event, n-cap(w.events))...)
	}
	if cap(w.status) < n {
		w.status = make([]eventcodec.Reason, n)
	}
	if cap(w.subjOf) < n {
		w.subjOf = make([]int, n)
	}
	w.events, w.status, w.subjOf = w.events[:n], w.status[:n], w.subjOf[:n]
}

// quarantine emits a bad record to the quarantine topic with its reason
// and source reference. A record larger than the quarantine topic accepts
// is quarantined as a reference only (no value): publishing its bytes would
// fail the produce, abort the transaction and stall every partition of the
// poll, over and over.
func (w *Worker) quarantine(i int, r *processors.Record, reason eventcodec.Reason, out *processors.Batch) {
	w.tmp = strconv.AppendInt(w.tmp[:0], int64(r.Partition), 10)
	part := len(w.tmp)
	w.tmp = strconv.AppendInt(w.tmp, r.Offset, 10)
	off := len(w.tmp)
	w.tmp = strconv.AppendInt(w.tmp, int64(len(r.Value)), 10)
	hs := [...]processors.Header{
		{Key: HeaderQuarantineReason, Value: reasonBytes[reason]},
		{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
		{Key: HeaderSourcePartition, Value: w.tmp[:part]},
		{Key: HeaderSourceOffset, Value: w.tmp[part:off]},
		{Key: HeaderSourceSize, Value: w.tmp[off:]},
		{Key: processors.HeaderProcessor, Value: processorName},
		{Key: HeaderQuarantineForm, Value: formBytes},
	}
	value := r.Value
	if lim := w.limits.Quarantine; lim > 0 && RecordSize(nil, value, hs[:]) > lim {
		value = nil
		hs[len(hs)-1].Value = formReference
		w.counts.AsReference++
	}
	out.Add(i, w.p.cfg.Topics.Quarantine, nil, value, hs[:]...)
	w.counts.Quarantined[reason]++
}

var (
	formBytes     = []byte("bytes")
	formReference = []byte("reference")
	processorName = []byte(Name)
	reasonBytes   = func() [16][]byte {
		var b [16][]byte
		for r := eventcodec.OK; int(r) < 16; r++ {
			b[r] = []byte(r.String())
		}
		return b
	}()
)

// lookupErased fills w.erased for the batch's subjects (all false without
// a ledger), retrying with backoff while the ledger cannot answer.
func (w *Worker) lookupErased(ctx context.Context) error {
	p := w.p
	w.erased = resizeBools(w.erased, len(w.subjects))
	if p.cfg.Erased == nil || len(w.subjects) == 0 {
		return nil
	}
	err := p.untilAnswered(ctx, p.cfg.Metrics.ErasureLedgerErrors, "erasure ledger unavailable; pausing until it answers", func() error {
		got, err := p.cfg.Erased.Erased(ctx, w.subjects)
		if err == nil && len(got) != len(w.subjects) {
			err = fmt.Errorf("privacy: erasure ledger answered %d of %d subjects", len(got), len(w.subjects))
		}
		if err == nil {
			copy(w.erased, got)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errNoDecision, err)
	}
	return nil
}

// resizeBools returns b with length n, all false.
func resizeBools(b []bool, n int) []bool {
	if cap(b) < n {
		b = make([]bool, n)
	}
	b = b[:n]
	clear(b)
	return b
}

func (w *Worker) lookupConsent(ctx context.Context) error {
	p := w.p
	if cap(w.lookups) < len(w.subjects) {
		w.lookups = make([]consent.Lookup, len(w.subjects))
	}
	w.lookups = w.lookups[:len(w.subjects)]
	// The generation is taken for every batch, also one without a decodable
	// subject: Current compares against it, and a stale generation from an
	// earlier batch (or from before a full invalidation at start or after a
	// Redis reconnect) must never make a batch look outdated forever.
	w.gen = p.cfg.Consent.Generation()
	if len(w.subjects) == 0 {
		return nil
	}
	err := p.untilAnswered(ctx, p.cfg.Metrics.ConsentStoreErrors, "consent store unavailable; pausing until it answers", func() error {
		st, err := p.cfg.Consent.Lookup(ctx, w.subjects, w.lookups)
		p.cfg.Metrics.ConsentCacheHits.Add(float64(st.Hits))
		p.cfg.Metrics.ConsentCacheMisses.Add(float64(st.Misses))
		if st.Misses > 0 {
			p.cfg.Metrics.ConsentLookup.Observe(st.StoreLatency.Seconds())
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errNoDecision, err)
	}
	return nil
}

// untilAnswered calls fn until it succeeds, waiting with exponential
// backoff between attempts (BackoffMin to BackoffMax). While it fails the
// processor is paused (not ready, the paused gauge set), every failure is
// counted on errs and the first is logged with msg; the error names the
// store operation, never a subject. It returns ctx's error if ctx ends
// first.
func (p *Processor) untilAnswered(ctx context.Context, errs prometheus.Counter, msg string, fn func() error) error {
	backoff := p.cfg.BackoffMin
	paused := false
	defer func() {
		if paused && p.paused.Add(-1) == 0 {
			p.cfg.Metrics.Paused.Set(0)
		}
	}()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		errs.Inc()
		if !paused {
			paused = true
			p.paused.Add(1)
			p.cfg.Metrics.Paused.Set(1)
			p.cfg.Log.Warn(msg, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, p.cfg.BackoffMax)
	}
}

// emitClean decides and emits the clean record of every purpose of one
// event. Its tally is kept aside until the event is complete: an event
// whose clean record would not fit its topic is withdrawn from every
// purpose and quarantined as oversized instead, so it ends in exactly one
// outcome.
func (w *Worker) emitClean(i int, ev *eventcodec.Event, subj int, in *processors.Record, out *processors.Batch) {
	p := w.p
	lk := &w.lookups[subj]
	jur, _ := consent.LookupJurisdiction(ev.Values[p.jurIdx].Str)
	gpc := p.gpcIdx >= 0 && ev.Values[p.gpcIdx].Num == 1
	first := len(out.Outputs)
	var decided [purpose.Count]consent.Decision
	var sensitive [purpose.Count]int
	erased := w.erased[subj]
	w.memoStamp++ // a new event: no memo slot holds its bytes yet
	w.memoBuf = w.memoBuf[:0]
	for pi := range p.plans {
		pl := &p.plans[pi]
		if erased { // the ledger wins over any consent record
			decided[pl.purpose] = consent.Decision{Reason: consent.ReasonErased}
			continue
		}
		d := lk.Decide(jur, gpc, pl.purpose)
		decided[pl.purpose] = d
		if !d.Allowed {
			continue
		}
		if !lk.Found { // unreachable: Decide denies every unknown subject
			decided[pl.purpose] = consent.Decision{Reason: consent.ReasonUnknownSubject}
			continue
		}
		var dk *subjectkey.DataKey
		if pl.dataKeys {
			ki := w.keyOf[pl.purpose][subj]
			if ki < 0 || w.keys.Shredded[ki] || w.keys.Keys[ki] == nil {
				// Erased: its key is shredded, nothing about it is
				// published again (ki < 0 is unreachable: fail closed).
				decided[pl.purpose] = consent.Decision{Reason: consent.ReasonErased}
				continue
			}
			dk = w.keys.Keys[ki]
		}
		sensitive[pl.purpose] = w.encode(pl, ev, d.Explicit, dk)
		// Provenance: the consent state the decision was made on.
		w.tmp = strconv.AppendInt(w.tmp[:0], lk.Record.Version, 10)
		hs := [...]processors.Header{
			{Key: processors.HeaderPolicyVersion, Value: pl.policyVer},
			{Key: processors.HeaderConsentVersion, Value: w.tmp},
			{Key: processors.HeaderConsentBasis, Value: basisBytes[d.Reason]},
			{Key: processors.HeaderKeyID, Value: pl.keyID},
			{Key: processors.HeaderSchema, Value: pl.schemaHdr},
			{Key: processors.HeaderDataKey},
		}
		nh := len(hs) - 1
		if dk != nil {
			hs[nh].Value = unsafe.Slice(unsafe.StringData(dk.ID()), len(dk.ID()))
			nh++
		}
		if lim := w.limits.Clean[pl.purpose]; lim > 0 && RecordSize(w.key, w.val, hs[:nh]) > lim {
			clear(out.Outputs[first:]) // withdraw what this event already emitted
			out.Outputs = out.Outputs[:first]
			w.quarantine(i, in, eventcodec.Oversized, out)
			return
		}
		out.Add(i, pl.topic, w.key, w.val, hs[:nh]...)
	}
	w.counts.Unclassified += ev.Unclassified
	for pi := range p.plans {
		pur := p.plans[pi].purpose
		d := &decided[pur]
		switch {
		case d.Allowed:
			w.counts.Published[pur]++
			w.counts.Sensitive[pur] += sensitive[pur]
		default:
			w.counts.Denied[pur][d.Reason]++
			if d.GPC != consent.GPCNone {
				w.counts.GPC[pur][d.GPC]++
			}
		}
	}
}

// basisBytes is the consent basis header of each allowing reason, indexed
// by reason (an array: no map lookup per record).
var basisBytes = func() (b [consent.ReasonErased + 1][]byte) {
	b[consent.ReasonGranted] = []byte(consent.ReasonGranted.String())
	b[consent.ReasonDefaultAllowed] = []byte(consent.ReasonDefaultAllowed.String())
	return b
}()

// encode writes the clean record of one purpose into w.val and its key
// (the subject pseudonym) into w.key, and returns how many sensitive fields
// it withheld for lack of explicit consent.
//
// dk is the subject's data key for the purpose when the policy encrypts or
// tokenizes a field.
func (w *Worker) encode(pl *plan, ev *eventcodec.Event, explicit bool, dk *subjectkey.DataKey) (sensitive int) {
	ps := w.pseud[pl.purpose]
	eventTime := ev.Values[w.p.timeIdx].Num
	w.val = append(w.val[:0], pl.frame...)
	w.key = w.key[:0]
	for fi := range pl.fields {
		f := &pl.fields[fi]
		v := &ev.Values[f.SourceIndex]
		if !v.Present {
			w.val = avroenc.AppendNull(w.val)
			continue
		}
		if f.Source.Classification == schemas.Sensitive && !explicit {
			// Sensitive categories need explicit consent everywhere (SPEC 3.2).
			w.val = avroenc.AppendNull(w.val)
			sensitive++
			continue
		}
		slot := pl.memo[fi]
		if slot >= 0 {
			if m := &w.memo[slot]; m.stamp == w.memoStamp {
				w.val = append(w.val, w.memoBuf[m.start:m.end]...)
				continue
			}
		}
		mark := len(w.val)
		r := &f.Rule
		switch r.Action {
		case policy.Keep:
			w.val = avroenc.AppendNonNull(w.val)
			w.val = appendValue(w.val, f.Source.Kind, v)
		case policy.Pseudonymize:
			if c := w.cache[pl.purpose][fi]; c != nil {
				w.tmp = c.Append(w.tmp[:0], f.Source.Path, v.Str)
			} else {
				w.tmp = ps.Append(w.tmp[:0], f.Source.Path, v.Str)
			}
			if f.SourceIndex == w.p.subjectIdx {
				w.key = append(w.key, w.tmp...)
			}
			w.val = appendStringBytes(avroenc.AppendNonNull(w.val), w.tmp)
		case policy.Mask:
			switch r.Mask {
			case policy.MaskEmail:
				w.tmp = fieldaction.AppendMaskEmail(w.tmp[:0], v.Str)
			case policy.MaskPhone:
				w.tmp = fieldaction.AppendMaskPhone(w.tmp[:0], v.Str)
			case policy.MaskCard:
				w.tmp = fieldaction.AppendMaskCard(w.tmp[:0], v.Str)
			default:
				w.tmp = fieldaction.AppendMaskKeepLast(w.tmp[:0], v.Str, r.Keep)
			}
			w.val = appendStringBytes(avroenc.AppendNonNull(w.val), w.tmp)
		case policy.Redact:
			w.tmp, _ = redact.AppendRedacted(w.tmp[:0], v.Str)
			w.scrubKnown(ev)
			w.val = appendStringBytes(avroenc.AppendNonNull(w.val), w.tmp)
		case policy.Generalize:
			w.val = w.generalize(w.val, f, v, eventTime)
		case policy.Encrypt, policy.Tokenize:
			w.val = appendSealed(w.val, dk, r.Action, f.Source.Path, v.Str)
		default: // unreachable after validation; fail closed
			w.val = avroenc.AppendNull(w.val)
		}
		if slot >= 0 {
			start := len(w.memoBuf)
			w.memoBuf = append(w.memoBuf, w.val[mark:]...)
			w.memo[slot] = memoEntry{stamp: w.memoStamp, start: start, end: len(w.memoBuf)}
		}
	}
	return sensitive
}

func (w *Worker) generalize(dst []byte, f *policy.OutField, v *eventcodec.Value, eventTime int64) []byte {
	r := &f.Rule
	ok := true
	switch r.To {
	case policy.ToAgeBand:
		return appendString(avroenc.AppendNonNull(dst), fieldaction.AgeBand(int32(v.Num), eventTime))
	case policy.ToYear:
		y := int32(0)
		if f.Source.Kind == schemas.Date {
			y = fieldaction.DateToYear(int32(v.Num))
		} else {
			y = int32(time.UnixMilli(v.Num).UTC().Year())
		}
		return avroenc.AppendInt(avroenc.AppendNonNull(dst), y)
	case policy.ToMonth:
		days := int32(v.Num)
		if f.Source.Kind == schemas.TimestampMillis {
			days = int32(floorDiv(v.Num, 86_400_000))
		}
		w.tmp = fieldaction.AppendDateToMonth(w.tmp[:0], days)
	case policy.ToDay:
		return avroenc.AppendLong(avroenc.AppendNonNull(dst), fieldaction.TimestampToDay(v.Num))
	case policy.ToHour:
		return avroenc.AppendLong(avroenc.AppendNonNull(dst), fieldaction.TimestampToHour(v.Num))
	case policy.ToPrefix:
		w.tmp = fieldaction.AppendPostalPrefix(w.tmp[:0], v.Str, r.Length)
	case policy.ToGeoCell:
		w.tmp, ok = fieldaction.AppendGeoCell(w.tmp[:0], v.F, v.F2, r.Precision)
	case policy.ToIPPrefix:
		w.tmp, ok = fieldaction.AppendIPPrefix(w.tmp[:0], v.Str)
	case policy.ToTemplate:
		w.tmp, ok = fieldaction.AppendURLTemplate(w.tmp[:0], v.Str)
	default:
		ok = false
	}
	if !ok { // not generalisable (e.g. an invalid IP): withhold rather than leak
		return avroenc.AppendNull(dst)
	}
	return appendStringBytes(avroenc.AppendNonNull(dst), w.tmp)
}

// redactedToken replaces the event's own identifiers found in free text.
const redactedToken = "[REDACTED]"

// scrubKnown removes from w.tmp (redacted free text) every occurrence of the
// event's own direct identifiers, and of each word of at least 3 bytes of
// them (a message that says "I'm Jane" next to name "Jane Doe"). Pattern
// detectors cannot find names; the event itself tells us what to look for.
func (w *Worker) scrubKnown(ev *eventcodec.Event) {
	for _, idx := range w.p.knownIdx {
		v := &ev.Values[idx]
		if !v.Present {
			continue
		}
		w.replaceAll(v.Str)
		rest := v.Str
		for rest != "" { // words, without allocating
			i := strings.IndexAny(rest, " \t-.,@")
			word := rest
			if i >= 0 {
				word, rest = rest[:i], rest[i+1:]
			} else {
				rest = ""
			}
			if word != v.Str {
				w.replaceAll(word)
			}
		}
	}
}

func (w *Worker) replaceAll(s string) {
	if len(s) < 3 || len(w.tmp) < len(s) {
		return
	}
	text := unsafe.String(unsafe.SliceData(w.tmp), len(w.tmp))
	i := strings.Index(text, s)
	if i < 0 {
		return
	}
	w.tmp2 = w.tmp2[:0]
	for i >= 0 {
		w.tmp2 = append(w.tmp2, text[:i]...)
		w.tmp2 = append(w.tmp2, redactedToken...)
		text = text[i+len(s):]
		i = strings.Index(text, s)
	}
	w.tmp2 = append(w.tmp2, text...)
	w.tmp, w.tmp2 = w.tmp2, w.tmp
}

func appendValue(dst []byte, k schemas.Kind, v *eventcodec.Value) []byte {
	switch k {
	case schemas.String:
		return appendString(dst, v.Str)
	case schemas.Boolean:
		return avroenc.AppendBool(dst, v.Num == 1)
	case schemas.Int, schemas.Date:
		return avroenc.AppendInt(dst, int32(v.Num))
	case schemas.Long, schemas.TimestampMillis:
		return avroenc.AppendLong(dst, v.Num)
	case schemas.Float:
		return avroenc.AppendFloat(dst, float32(v.F))
	case schemas.Double:
		return avroenc.AppendDouble(dst, v.F)
	case schemas.Geo:
		return avroenc.AppendDouble(avroenc.AppendDouble(dst, v.F), v.F2)
	}
	panic("privacy: unsupported kind " + k.String()) // excluded by policy validation
}

func appendString(dst []byte, s string) []byte      { return avroenc.AppendString(dst, s) }
func appendStringBytes(dst []byte, b []byte) []byte { return avroenc.AppendBytes(dst, b) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// appendSealed appends field's encrypt or tokenize value under dk (a null
// when there is no key or sealing fails: fail closed, never the
// plaintext).
func appendSealed(dst []byte, dk *subjectkey.DataKey, action policy.Action, field, value string) []byte {
	if dk == nil {
		return avroenc.AppendNull(dst)
	}
	pt := unsafe.Slice(unsafe.StringData(value), len(value))
	var s string
	var err error
	if action == policy.Encrypt {
		s, err = dk.Encrypt(pt, field)
	} else {
		s, err = dk.Tokenize(pt, field)
	}
	if err != nil {
		return avroenc.AppendNull(dst)
	}
	return appendString(avroenc.AppendNonNull(dst), s)
}

// lookupDataKeys finds the data keys the batch needs: for each subject and
// each purpose whose policy encrypts or tokenizes and whose consent allows
// one of the subject's events, the key named by the subject's pseudonym.
// One store lookup for the batch, retried with backoff (the processor
// pauses, as for consent: nothing is published unencrypted); the records
// of keys the key topic does not have yet are added to the batch, so they
// commit with the ciphertexts made with them.
func (w *Worker) lookupDataKeys(ctx context.Context, out *processors.Batch) error {
	p := w.p
	w.keyIDs, w.keyFirst = w.keyIDs[:0], w.keyFirst[:0]
	for pi := range p.plans {
		if !p.plans[pi].dataKeys {
			continue
		}
		ko := w.keyOf[pi]
		if cap(ko) < len(w.subjects) {
			ko = make([]int, len(w.subjects))
		}
		ko = ko[:len(w.subjects)]
		for k := range ko {
			ko[k] = -1
		}
		w.keyOf[pi] = ko
	}
	for i := range w.events {
		if w.status[i] != eventcodec.OK {
			continue
		}
		ev := &w.events[i]
		k := w.subjOf[i]
		lk := &w.lookups[k]
		if !lk.Found || w.erased[k] {
			continue
		}
		jur, _ := consent.LookupJurisdiction(ev.Values[p.jurIdx].Str)
		gpc := p.gpcIdx >= 0 && ev.Values[p.gpcIdx].Num == 1
		for pi := range p.plans {
			pl := &p.plans[pi]
			if !pl.dataKeys || w.keyOf[pi][k] >= 0 || !lk.Decide(jur, gpc, pl.purpose).Allowed {
				continue
			}
			w.tmp = w.pseud[pl.purpose].Append(w.tmp[:0], "subject_id", w.subjects[k])
			w.idBuf = subjectkey.AppendID(w.idBuf[:0], pl.purpose.String(), pl.key.ID, w.tmp)
			w.keyOf[pi][k] = len(w.keyIDs)
			w.keyIDs = append(w.keyIDs, string(w.idBuf))
			w.keyFirst = append(w.keyFirst, i)
		}
	}
	if len(w.keyIDs) == 0 {
		return nil
	}
	err := p.untilAnswered(ctx, p.cfg.Metrics.DataKeyStoreErrors, "data key store unavailable; pausing until it answers", func() error {
		return p.cfg.DataKeys.Get(ctx, w.keyIDs, &w.keys)
	})
	if err != nil {
		return fmt.Errorf("privacy: data key store unavailable: %w", err)
	}
	p.cfg.Metrics.DataKeysCreated.Add(float64(w.keys.Created))
	first := map[string]int{}
	for j, id := range w.keyIDs {
		first[id] = w.keyFirst[j]
	}
	for _, wk := range w.keys.Unlogged {
		b, err := wk.Marshal()
		if err != nil {
			return err
		}
		out.Add(first[wk.ID], p.cfg.Topics.Keys, []byte(wk.ID), b, processors.Header{Key: processors.HeaderProcessor, Value: processorName})
	}
	return nil
}
