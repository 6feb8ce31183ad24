package privacy

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/codec/eventcodec"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
)

// namespace prefixes every metric name.
const namespace = "pipeline"

// Metrics holds the privacy processor's metrics, with every label
// combination resolved up front so the hot path never hashes labels.
type Metrics struct {
	EventsIn            prometheus.Counter
	Published           [purpose.Count]prometheus.Counter
	Denied              [purpose.Count][]prometheus.Counter // indexed by consent.Reason
	Quarantined         []prometheus.Counter                // indexed by eventcodec.Reason
	UnclassifiedDropped prometheus.Counter
	// LegacyFingerprint counts raw records whose writer schema was found by
	// its legacy (goavro) fingerprint instead of the Avro specification's
	// (see eventcodec): producers still to be upgraded.
	LegacyFingerprint prometheus.Counter
	SensitiveDropped  [purpose.Count]prometheus.Counter
	// GPCApplied counts every denial decided by a Global Privacy Control
	// signal, per purpose and where the signal came from (indexed by
	// consent.GPCSource).
	GPCApplied [purpose.Count][]prometheus.Counter
	// QuarantinedAsReference counts quarantined records whose bytes the
	// quarantine topic could not hold: a reference was published instead.
	QuarantinedAsReference prometheus.Counter
	ConsentCacheHits       prometheus.Counter
	ConsentCacheMisses     prometheus.Counter
	ConsentStoreErrors     prometheus.Counter
	// PseudonymCacheHits and PseudonymCacheMisses count the pseudonyms of
	// direct identifiers answered by a worker's pseudonym cache and
	// computed (pseudonym.Cache), aborted batches included: work done.
	PseudonymCacheHits, PseudonymCacheMisses prometheus.Counter
	// DataKeyStoreErrors counts failed data key lookups (the processor
	// pauses); DataKeysCreated the subjects' data keys made here.
	DataKeyStoreErrors prometheus.Counter
	DataKeysCreated    prometheus.Counter
	// ErasureLedgerErrors counts failed erasure ledger lookups (the
	// processor pauses).
	ErasureLedgerErrors prometheus.Counter
	ConsentLookup       prometheus.Histogram
	BatchSeconds        prometheus.Histogram
	BatchSize           prometheus.Histogram
	Paused              prometheus.Gauge
}

// NewPrivacy creates and registers the privacy processor's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "events_in_total",
			Help: "Raw events read by the privacy processor."}),
		UnclassifiedDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "unclassified_fields_dropped_total",
			Help: "Non-null fields of writer schemas that the classified raw schema does not declare; dropped (fail closed)."}),
		LegacyFingerprint: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "legacy_fingerprint_total",
			Help: "Raw records whose writer schema was recognised by its legacy goavro fingerprint, not the Avro specification's; decoded as usual. Producers still writing it should upgrade."}),
		ConsentCacheHits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "consent_cache_hits_total",
			Help: "Consent lookups answered by the local cache."}),
		ConsentCacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "consent_cache_misses_total",
			Help: "Consent lookups sent to the consent store."}),
		PseudonymCacheHits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "pseudonym_cache_hits_total",
			Help: "Pseudonyms of direct identifiers (subject id, device id) answered by a worker's pseudonym cache."}),
		PseudonymCacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "pseudonym_cache_misses_total",
			Help: "Pseudonyms of direct identifiers computed (HMAC-SHA256) and remembered: not in the worker's pseudonym cache."}),
		ConsentStoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "consent_store_errors_total",
			Help: "Failed consent store round trips; the processor pauses and retries, it never decides without an answer."}),
		DataKeyStoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "data_key_store_errors_total",
			Help: "Failed data key store round trips; the processor pauses and retries, it never publishes an encrypted or tokenized field without its key."}),
		DataKeysCreated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "data_keys_created_total",
			Help: "Per-subject data keys created by this process (once per subject and purpose across replicas)."}),
		ErasureLedgerErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "erasure_ledger_errors_total",
			Help: "Failed erasure ledger round trips; the processor pauses and retries, it never publishes without knowing whether a subject was erased."}),
		ConsentLookup: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "consent_store_lookup_seconds",
			Help: "Latency of one consent store round trip (one per batch).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		BatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "batch_process_seconds",
			Help: "Time to process one batch (decode, consent, policy, encode), without producing.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "batch_records",
			Help: "Input records per processed batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 16)}),
		QuarantinedAsReference: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "quarantined_as_reference_total",
			Help: "Quarantined records too large for the quarantine topic, published as a reference (source topic, partition, offset, size, reason) without their bytes."}),
		Paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "consent_paused",
			Help: "1 while processing is paused because the consent store cannot answer."}),
	}
	published := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "published_total",
		Help: "Clean records published, per purpose."}, []string{"purpose"})
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "denied_total",
		Help: "Events not published for a purpose, per purpose and consent reason."}, []string{"purpose", "reason"})
	quarantined := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "quarantined_total",
		Help: "Raw records sent to quarantine, per reason code."}, []string{"reason"})
	sensitive := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sensitive_fields_dropped_total",
		Help: "Sensitive-category fields withheld for lack of explicit consent, per purpose."}, []string{"purpose"})
	gpc := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "gpc_applied_total",
		Help: "Decisions in which a Global Privacy Control signal denied a purpose, per purpose and source (event, record, event_and_record)."}, []string{"purpose", "source"})
	for _, p := range purpose.All {
		m.GPCApplied[p] = make([]prometheus.Counter, consent.GPCBoth+1)
		if p == purpose.Marketing || p == purpose.ThirdPartySharing {
			for _, src := range consent.GPCSources() {
				m.GPCApplied[p][src] = gpc.WithLabelValues(p.String(), src.String())
			}
		}
		m.Published[p] = published.WithLabelValues(p.String())
		m.SensitiveDropped[p] = sensitive.WithLabelValues(p.String())
		m.Denied[p] = make([]prometheus.Counter, consent.ReasonErased+1)
		for _, r := range consent.DenialReasons() {
			m.Denied[p][r] = denied.WithLabelValues(p.String(), r.String())
		}
	}
	reasons := eventcodec.QuarantineReasons()
	m.Quarantined = make([]prometheus.Counter, len(reasons)+1)
	for _, r := range reasons {
		m.Quarantined[r] = quarantined.WithLabelValues(r.String())
	}
	reg.MustRegister(m.EventsIn, m.UnclassifiedDropped, m.LegacyFingerprint, m.ConsentCacheHits, m.ConsentCacheMisses, m.PseudonymCacheHits, m.PseudonymCacheMisses,
		m.ConsentStoreErrors, m.DataKeyStoreErrors, m.DataKeysCreated, m.ErasureLedgerErrors, m.ConsentLookup, m.BatchSeconds, m.BatchSize, m.Paused, m.QuarantinedAsReference,
		published, denied, quarantined, sensitive, gpc)
	return m
}

// Counts is a worker-local tally of one batch, flushed once per batch.
type Counts struct {
	EventsIn     int
	Published    [purpose.Count]int
	Denied       [purpose.Count][consent.ReasonErased + 1]int
	Quarantined  [16]int
	Unclassified int
	// Legacy counts records decoded through a legacy writer fingerprint.
	Legacy    int
	Sensitive [purpose.Count]int
	GPC       [purpose.Count][consent.GPCBoth + 1]int
	// AsReference counts quarantined records published as a reference.
	AsReference int
}

// Flush adds the tally to the metrics and zeroes it.
func (m *Metrics) Flush(c *Counts) {
	m.EventsIn.Add(float64(c.EventsIn))
	m.UnclassifiedDropped.Add(float64(c.Unclassified))
	if c.Legacy > 0 {
		m.LegacyFingerprint.Add(float64(c.Legacy))
	}
	for _, p := range purpose.All {
		if n := c.Published[p]; n > 0 {
			m.Published[p].Add(float64(n))
		}
		if n := c.Sensitive[p]; n > 0 {
			m.SensitiveDropped[p].Add(float64(n))
		}
		for r, n := range c.Denied[p] {
			if n > 0 {
				m.Denied[p][r].Add(float64(n))
			}
		}
		for src, n := range c.GPC[p] {
			if n > 0 && m.GPCApplied[p][src] != nil {
				m.GPCApplied[p][src].Add(float64(n))
			}
		}
	}
	if c.AsReference > 0 {
		m.QuarantinedAsReference.Add(float64(c.AsReference))
	}
	for r, n := range c.Quarantined {
		if n > 0 && r < len(m.Quarantined) && m.Quarantined[r] != nil {
			m.Quarantined[r].Add(float64(n))
		}
	}
	*c = Counts{}
}

// Tally is the accounting of a privacy processor, read back from its
// metrics: every input ends as published or denied for each purpose, or
// quarantined.
type Tally struct {
	EventsIn            int                       `json:"events_in"`
	Published           map[string]int            `json:"published"`
	Denied              map[string]map[string]int `json:"denied"`
	Quarantined         map[string]int            `json:"quarantined"`
	UnclassifiedDropped int                       `json:"unclassified_dropped"`
	// LegacyFingerprint counts inputs recognised by a legacy writer
	// fingerprint (outside the accounting identity: they are decoded as usual).
	LegacyFingerprint int `json:"legacy_fingerprint"`
	// GPCApplied counts, per purpose and source, the denials a Global
	// Privacy Control signal decided (a subset of Denied[p]["gpc_opt_out"]).
	GPCApplied map[string]map[string]int `json:"gpc_applied"`
}

// ReadTally reads the tally from a registry holding the Privacy metrics.
func ReadTally(g prometheus.Gatherer) (Tally, error) {
	snap, err := metrics.Snapshot(g)
	if err != nil {
		return Tally{}, err
	}
	t := Tally{
		EventsIn: int(snap[namespace+"_events_in_total"]), Published: map[string]int{},
		Denied: map[string]map[string]int{}, Quarantined: map[string]int{},
		UnclassifiedDropped: int(snap[namespace+"_unclassified_fields_dropped_total"]),
		LegacyFingerprint:   int(snap[namespace+"_legacy_fingerprint_total"]),
		GPCApplied:          map[string]map[string]int{},
	}
	for _, p := range purpose.Names() {
		t.Published[p] = int(snap[namespace+"_published_total{purpose="+p+"}"])
		t.Denied[p] = map[string]int{}
		for _, r := range consent.DenialReasons() {
			if n := int(snap[namespace+"_denied_total{purpose="+p+",reason="+r.String()+"}"]); n > 0 {
				t.Denied[p][r.String()] = n
			}
		}
		for _, src := range consent.GPCSources() {
			if n := int(snap[namespace+"_gpc_applied_total{purpose="+p+",source="+src.String()+"}"]); n > 0 {
				if t.GPCApplied[p] == nil {
					t.GPCApplied[p] = map[string]int{}
				}
				t.GPCApplied[p][src.String()] = n
			}
		}
	}
	for _, r := range eventcodec.QuarantineReasons() {
		if n := int(snap[namespace+"_quarantined_total{reason="+r.String()+"}"]); n > 0 {
			t.Quarantined[r.String()] = n
		}
	}
	return t, nil
}

// QuarantinedTotal sums the quarantine reasons.
func (t Tally) QuarantinedTotal() int {
	n := 0
	for _, v := range t.Quarantined {
		n += v
	}
	return n
}

// DeniedTotal sums the denial reasons of a purpose.
func (t Tally) DeniedTotal(p string) int {
	n := 0
	for _, v := range t.Denied[p] {
		n += v
	}
	return n
}

// Check verifies the accounting identity of SPEC 6: for every purpose,
// published + denied = events_in - quarantined.
func (t Tally) Check() error {
	q := t.QuarantinedTotal()
	var errs []error
	for _, p := range purpose.Names() {
		if d := t.DeniedTotal(p); t.Published[p]+d != t.EventsIn-q {
			errs = append(errs, fmt.Errorf("purpose %s: published %d + denied %d != events_in %d - quarantined %d", p, t.Published[p], d, t.EventsIn, q))
		}
		g := 0
		for _, n := range t.GPCApplied[p] {
			g += n
		}
		if g != t.Denied[p]["gpc_opt_out"] {
			errs = append(errs, fmt.Errorf("purpose %s: %d GPC applications counted for %d gpc_opt_out denials", p, g, t.Denied[p]["gpc_opt_out"]))
		}
	}
	return errors.Join(errs...)
}
