// Package writers makes the writer schemas of a batch known to a decoder
// before the processor decodes it. A Confluent-framed record names its
// writer schema by registry id; the first time a processor sees an id, it
// asks the registry (through a wireformat.Resolver) and registers the
// schema with its decoder, so decoding itself stays pure and fast.
//
// Each outcome is counted (Metrics) and bounded:
//   - an id the registry does not have, or whose schema the decoder
//     refuses (not a schema of this topic), is remembered as refused for a
//     while (Config.RetryAfter), so a flood of bad ids costs one lookup per
//     id, and their records are the decoder's unknown schemas (quarantined
//     or counted by the processor);
//   - the input topic's own subject (Config.Subject, "<topic>-value", where
//     a producer using TopicNameStrategy registers) is read first, in one
//     request, at most once a second: every id registered there is known
//     without a lookup of its own, so a flood of foreign ids cannot crowd
//     out a producer's real schema;
//   - at most Config.MaxLookups other new ids are looked up per batch, the
//     ids named by most records first: a batch of records that each name a
//     different id cannot turn one poll into thousands of registry calls;
//     the records past the budget are unknown schemas for this batch (the
//     same record is looked up when it is seen again in a later batch);
//   - while the registry cannot answer, the batch waits with backoff, as
//     for the consent store: a record is never declared bad because the
//     registry was down.
//
// It imports processors, internal/codec/wireformat and prometheus.
package writers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/processors"
)

// SubjectResolver is a Resolver that can also list the schemas registered
// under a subject, by id, in one request (schemaregistry.Client).
type SubjectResolver interface {
	wireformat.Resolver
	SubjectSchemas(ctx context.Context, subject string) (map[uint32][]byte, error)
}

// Decoder is the part of a decoder (eventcodec.Decoder, cleancodec.Decoder)
// that knows writer schemas by registry id.
type Decoder interface {
	KnownID(id uint32) bool
	RegisterID(id uint32, writerSchemaJSON []byte) (uint64, error)
}

// Outcomes of a lookup, the values of Metrics.Lookups' outcome label.
const (
	OutcomeRegistered = "registered"  // the schema was found and registered with the decoder
	OutcomeUnknown    = "unknown"     // the registry has no schema with this id
	OutcomeRefused    = "refused"     // the decoder cannot use the schema (not this topic's)
	OutcomeOverBudget = "over_budget" // not looked up: the batch's lookup budget was spent
	OutcomeError      = "error"       // the registry could not answer (the batch waits and retries)
)

// Metrics counts lookups. Create it with NewMetrics.
type Metrics struct {
	// Lookups counts registry lookups and skipped ones by outcome.
	Lookups *prometheus.CounterVec
	// Waiting is 1 while a batch waits for the registry.
	Waiting prometheus.Gauge
}

// NewMetrics registers the metrics of one processor's writer schemas on
// reg, with a constant label processor=name (so processors sharing a
// registry, as in the demo, each have their own series).
func NewMetrics(reg prometheus.Registerer, processor string) *Metrics {
	labels := prometheus.Labels{"processor": processor}
	m := &Metrics{
		Lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Name: "writer_schema_lookups_total",
			Help:        "Schema registry lookups of writer schema ids the processor did not know, by outcome (registered, unknown, refused, over_budget, error).",
			ConstLabels: labels}, []string{"outcome"}),
		Waiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pipeline", Name: "writer_schema_registry_waiting",
			Help: "1 while a batch waits for the schema registry to answer.", ConstLabels: labels}),
	}
	for _, o := range []string{OutcomeRegistered, OutcomeUnknown, OutcomeRefused, OutcomeOverBudget, OutcomeError} {
		m.Lookups.WithLabelValues(o)
	}
	reg.MustRegister(m.Lookups, m.Waiting)
	return m
}

// Config configures Writers.
type Config struct {
	// Resolver finds schemas by id. Nil: ids are never looked up (a
	// processor without a registry knows only single-object writers).
	Resolver wireformat.Resolver
	// Decoder receives the schemas.
	Decoder Decoder
	// Subject is the input topic's TopicNameStrategy subject, read first
	// when the Resolver is a SubjectResolver ("": none).
	Subject string
	// Metrics may be nil.
	Metrics *Metrics
	// Log may be nil. It receives ids and decoder errors (schema field
	// names), never record contents.
	Log *slog.Logger
	// BackoffMin and BackoffMax bound the wait while the registry cannot
	// answer (defaults 50ms and 5s).
	BackoffMin, BackoffMax time.Duration
	// RetryAfter is how long a refused or unknown id stays so (default 1m).
	RetryAfter time.Duration
	// MaxLookups bounds the new ids looked up per batch (default 64).
	MaxLookups int
	// MaxRefused bounds the remembered refused ids (default 65536; when
	// full, the oldest half is forgotten).
	MaxRefused int
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Writers resolves the unknown writer schema ids of batches. It is safe for
// concurrent use by the workers of one processor.
type Writers struct {
	cfg     Config
	mu      sync.Mutex
	refused map[uint32]time.Time // id -> when it may be looked up again
	readAt  time.Time            // when Subject was last read
	waiting atomic.Int32
}

// New returns Writers for cfg.
func New(cfg Config) *Writers {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 50 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Minute
	}
	if cfg.MaxLookups <= 0 {
		cfg.MaxLookups = 64
	}
	if cfg.MaxRefused <= 0 {
		cfg.MaxRefused = 1 << 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Writers{cfg: cfg, refused: map[uint32]time.Time{}}
}

// Waiting reports whether a batch is waiting for the registry (the
// processor is then not ready).
func (w *Writers) Waiting() bool { return w.waiting.Load() > 0 }

// Prepare looks up, and registers with the decoder, the writer schema of
// every Confluent-framed record of the batch whose id the decoder does not
// know and that is not refused. It returns an error only when ctx ends
// while the registry cannot answer; the batch must then be retried.
func (w *Writers) Prepare(ctx context.Context, in []processors.Record) error {
	if w.cfg.Resolver == nil {
		return nil
	}
	now := w.cfg.Now()
	pending := w.pending(in, now)
	if len(pending) == 0 {
		return nil
	}
	if w.readSubject(ctx, now) {
		pending = w.pending(in, now)
	}
	for n, id := range pending {
		if n >= w.cfg.MaxLookups {
			w.count(OutcomeOverBudget, len(pending)-n)
			w.cfg.Log.Warn("writer schema lookups over the batch's budget; their records are unknown schemas in this batch",
				"looked_up", n, "skipped", len(pending)-n)
			break
		}
		if err := w.resolve(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// pending returns the unknown, unrefused ids of a batch, the ids named by
// most records first.
func (w *Writers) pending(in []processors.Record, now time.Time) []uint32 {
	var counts map[uint32]int
	for i := range in {
		h, ok := wireformat.Parse(in[i].Value)
		if !ok || h.Format != wireformat.Confluent || w.cfg.Decoder.KnownID(h.ID) {
			continue
		}
		if counts == nil {
			counts = map[uint32]int{}
		}
		counts[h.ID]++
	}
	ids := make([]uint32, 0, len(counts))
	for id := range counts {
		if !w.isRefused(id, now) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uint32) int {
		if c := counts[b] - counts[a]; c != 0 {
			return c
		}
		return int(a) - int(b)
	})
	return ids
}

// readSubject registers every schema of the input topic's subject, at most
// once a second; it reports whether it read it. A registry that cannot
// answer is not waited for here (the lookups that follow wait).
func (w *Writers) readSubject(ctx context.Context, now time.Time) bool {
	sr, ok := w.cfg.Resolver.(SubjectResolver)
	if !ok || w.cfg.Subject == "" {
		return false
	}
	w.mu.Lock()
	if now.Sub(w.readAt) < time.Second {
		w.mu.Unlock()
		return false
	}
	w.readAt = now
	w.mu.Unlock()
	all, err := sr.SubjectSchemas(ctx, w.cfg.Subject)
	if err != nil {
		if !errors.Is(err, wireformat.ErrUnknownID) {
			w.cfg.Log.Warn("reading the input's subject failed; looking ids up one by one", "subject", w.cfg.Subject, "err", err)
		}
		return false
	}
	for id, schema := range all {
		if w.cfg.Decoder.KnownID(id) {
			continue
		}
		if _, err := w.cfg.Decoder.RegisterID(id, schema); err != nil {
			w.refuse(id)
			w.count(OutcomeRefused, 1)
			w.cfg.Log.Warn("writer schema refused; its records are unknown schemas", "schema_id", id, "subject", w.cfg.Subject, "err", err)
			continue
		}
		w.count(OutcomeRegistered, 1)
		w.cfg.Log.Info("writer schema registered", "schema_id", id, "subject", w.cfg.Subject)
	}
	return true
}

// resolve looks one id up, waiting while the registry cannot answer.
func (w *Writers) resolve(ctx context.Context, id uint32) error {
	backoff := w.cfg.BackoffMin
	waiting := false
	defer func() {
		if waiting && w.waiting.Add(-1) == 0 && w.cfg.Metrics != nil {
			w.cfg.Metrics.Waiting.Set(0)
		}
	}()
	for {
		schema, err := w.cfg.Resolver.SchemaByID(ctx, id)
		switch {
		case err == nil:
			if _, err := w.cfg.Decoder.RegisterID(id, schema); err != nil {
				w.refuse(id)
				w.count(OutcomeRefused, 1)
				w.cfg.Log.Warn("writer schema refused; its records are unknown schemas", "schema_id", id, "err", err)
				return nil
			}
			w.count(OutcomeRegistered, 1)
			w.cfg.Log.Info("writer schema registered", "schema_id", id)
			return nil
		case errors.Is(err, wireformat.ErrUnknownID):
			w.refuse(id)
			w.count(OutcomeUnknown, 1)
			return nil
		}
		w.count(OutcomeError, 1)
		if !waiting {
			waiting = true
			w.waiting.Add(1)
			if w.cfg.Metrics != nil {
				w.cfg.Metrics.Waiting.Set(1)
			}
			w.cfg.Log.Warn("schema registry unavailable; waiting until it answers", "schema_id", id, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("writers: schema id %d: %w: %w", id, err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, w.cfg.BackoffMax)
	}
}

func (w *Writers) isRefused(id uint32, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.refused[id]
	if ok && now.After(until) {
		delete(w.refused, id)
		return false
	}
	return ok
}

func (w *Writers) refuse(id uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.refused) >= w.cfg.MaxRefused {
		// Forget the half that expires first.
		var cut time.Time
		times := make([]time.Time, 0, len(w.refused))
		for _, t := range w.refused {
			times = append(times, t)
		}
		slices.SortFunc(times, time.Time.Compare)
		cut = times[len(times)/2]
		for k, t := range w.refused {
			if !t.After(cut) {
				delete(w.refused, k)
			}
		}
	}
	w.refused[id] = w.cfg.Now().Add(w.cfg.RetryAfter)
}

func (w *Writers) count(outcome string, n int) {
	if w.cfg.Metrics != nil {
		w.cfg.Metrics.Lookups.WithLabelValues(outcome).Add(float64(n))
	}
}

// Schemas is what a processor needs from the schema registry, as one
// Config field: the framer of its outputs and the resolver of its inputs'
// writer schema ids. The zero value frames with single-object encoding and
// resolves nothing.
type Schemas struct {
	// Framer frames the outputs (nil: single-object encoding); it is asked
	// once per output topic, when the processor is built.
	Framer wireformat.Framer
	// Registry resolves the writer schema ids of Confluent-framed inputs
	// (nil: only single-object inputs can be decoded).
	Registry wireformat.Resolver
	// Metrics counts the lookups (may be nil).
	Metrics *Metrics
	// InputSubject is the input topic's TopicNameStrategy subject (see
	// Config.Subject).
	InputSubject string
}

// Frame returns the framing header of the records of topic, written with
// schema.
func (s Schemas) Frame(topic string, schemaJSON []byte) ([]byte, error) {
	f := s.Framer
	if f == nil {
		f = wireformat.SingleObjectFramer{}
	}
	return f.Frame(topic, schemaJSON)
}

// Writers returns the Writers that resolve ids for dec.
func (s Schemas) Writers(dec Decoder, log *slog.Logger) *Writers {
	return New(Config{Resolver: s.Registry, Decoder: dec, Metrics: s.Metrics, Log: log, Subject: s.InputSubject})
}
