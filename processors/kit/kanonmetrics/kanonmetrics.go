// Package kanonmetrics defines the Prometheus metrics that the three
// k-anonymity processors (processors/kanonagg, processors/kanonmerge,
// processors/kanonrec) share: one struct, registered once by whoever runs
// them, with labels that carry only bounded, non-personal values (output
// topics from kanon.json, fixed outcome names, field names).
//
// It imports prometheus/client_golang and processors/kit/writers (the
// writer schema lookups, counted with processor="kanon").
package kanonmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/processors/kit/writers"
)

const namespace = "pipeline"

// Metrics holds the metrics of the k-anonymity processors. Labels are the
// output topic (from kanon.json) and fixed outcome names.
type Metrics struct {
	// Events counts input events by outcome: accepted, late, bounded (DP
	// contribution bound), undecodable, incomplete (no time or subject).
	Events *prometheus.CounterVec
	// Rows counts aggregate rows by kind: released, margin, suppressed
	// (level-0 cells not released).
	Rows *prometheus.CounterVec
	// SuppressedEvents counts events in no released row after roll-up.
	SuppressedEvents *prometheus.CounterVec
	// MinSubjects is the smallest distinct-subject count of a released row
	// or cluster in the last closed window or released cluster.
	MinSubjects *prometheus.GaugeVec
	// Records counts record-level outcomes: released, reused (released into
	// an already published cluster), suppressed.
	Records *prometheus.CounterVec
	// InfoLoss is the running average information loss of released records
	// (NCP, 0 = exact, 1 = fully generalised).
	InfoLoss *prometheus.GaugeVec
	// Delay is the time records wait before their cluster is released.
	Delay *prometheus.HistogramVec
	// EpsilonSpent sums the differential privacy budget of closed windows.
	EpsilonSpent *prometheus.CounterVec
	// Restores counts partition states rebuilt from a checkpoint (after a
	// rebalance, a restart or an aborted transaction).
	Restores *prometheus.CounterVec
	// StateResets counts checkpoints that could not be used (configuration
	// changed or corrupt), after which a partition started afresh.
	StateResets *prometheus.CounterVec
	// StateUnreadable counts checkpoints that could not be read at all
	// (the merge stage then stops on that partition until an operator
	// decides, unless told to start afresh).
	StateUnreadable *prometheus.CounterVec
	// WatermarkCapped counts events stamped later than their record's log
	// time plus the allowed skew: they joined their window but could not
	// move the watermark (one outlier never closes windows early).
	WatermarkCapped *prometheus.CounterVec
	// WindowsRefused counts aggregate windows not released because the DP
	// period budget was spent.
	WindowsRefused *prometheus.CounterVec
	// KeptOutsideDomain counts kept values of record-level outputs that
	// were not in their field's declared domain and were published as null.
	KeptOutsideDomain *prometheus.CounterVec
	// MergePartials counts the records of the partials topic the merge
	// stage read, by outcome (cells, progress, late, undecodable,
	// invalid, unknown).
	MergePartials *prometheus.CounterVec
	// MergePending is the number of windows the merge stage holds until
	// every input partition has passed them.
	MergePending *prometheus.GaugeVec
	// ErasureNotices counts the erasure notices (privacy.erasures) a
	// k-anonymity processor read, by processor and outcome (applied,
	// unknown, not_applicable, malformed; see processors/kit/forget).
	ErasureNotices *prometheus.CounterVec
	// ErasureDropped counts what erasure notices removed or kept out, by
	// processor and what: held_records (CASTLE tuples never released),
	// window_events (events removed from open windows), late_records
	// (records of an erased subject arriving after its notice, kept out),
	// set_full (notices whose subject could not be remembered for later
	// records: the per-partition set was full).
	ErasureDropped *prometheus.CounterVec
	// WriterSchemas counts the lookups of the clean records' writer schema
	// ids (processor="kanon").
	WriterSchemas *writers.Metrics
}

// New creates and registers the k-anonymity metrics.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		WriterSchemas: writers.NewMetrics(reg, "kanon"),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_events_total",
			Help: "Input events of the k-anonymity processors by output and outcome (accepted, late, bounded, undecodable, incomplete)."}, []string{"output", "outcome"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_rows_total",
			Help: "Aggregate rows by output and kind (released, margin, suppressed)."}, []string{"output", "kind"}),
		SuppressedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_suppressed_events_total",
			Help: "Events in no released aggregate row after roll-up."}, []string{"output"}),
		MinSubjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "kanon_min_subjects",
			Help: "Smallest number of distinct subjects in a released row or cluster since start; never below k."}, []string{"output"}),
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_records_total",
			Help: "Record-level k-anonymisation outcomes (released, reused, suppressed)."}, []string{"output", "outcome"}),
		InfoLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "kanon_info_loss",
			Help: "Average information loss of released records since start (NCP: 0 exact, 1 fully generalised)."}, []string{"output"}),
		Delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "kanon_delay_seconds",
			Help:    "Time between a record's arrival and its release in a k-anonymous cluster.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"output"}),
		EpsilonSpent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_dp_epsilon_spent_total",
			Help: "Differential privacy budget of closed windows (per subject present in all of them)."}, []string{"output"}),
		Restores: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_restores_total",
			Help: "Partition states rebuilt from a checkpoint and a replay of the input."}, []string{"processor"}),
		StateResets: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_state_resets_total",
			Help: "Checkpoints that could not be used (configuration changed, or corrupt): the partition's state started afresh."}, []string{"processor"}),
		StateUnreadable: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_state_unreadable_total",
			Help: "Checkpoints that could not be read (corrupt): the merge stage does not process the partition (each attempt counts) unless PIPELINE_KANON_MERGE_DISCARD_STATE is set."}, []string{"processor"}),
		WatermarkCapped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_watermark_capped_total",
			Help: "Events stamped later than their record's log time plus PIPELINE_KANON_WATERMARK_SKEW: added to their window, but not allowed to move the watermark."}, []string{"output"}),
		WindowsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_windows_refused_total",
			Help: "Aggregate windows not released because the differential privacy budget of the period (PIPELINE_KANON_DP_PERIOD_EPSILON) was spent."}, []string{"output"}),
		MergePartials: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_merge_partials_total",
			Help: "Partials-topic records read by the aggregates' merge stage, by outcome (cells, progress, late, undecodable, invalid, unknown, refused)."}, []string{"outcome"}),
		MergePending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "kanon_merge_pending_windows",
			Help: "Aggregate windows the merge stage holds until every input partition has passed them."}, []string{"output"}),
		KeptOutsideDomain: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_kept_outside_domain_total",
			Help: "Kept values of a record-level output outside their field's declared domain (schemas/kanon.json), published as null."}, []string{"output", "field"}),
		ErasureNotices: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_erasure_notices_total",
			Help: "Erasure notices read by the k-anonymity processors, by outcome (applied: state of the subject dropped; unknown: nothing held; not_applicable: another purpose; malformed: skipped)."}, []string{"processor", "outcome"}),
		ErasureDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kanon_erasure_dropped_total",
			Help: "State entries of erased subjects dropped by the k-anonymity processors (held_records, window_events, late_records; set_full: a subject not remembered for later records)."}, []string{"processor", "what"}),
	}
	reg.MustRegister(m.Events, m.Rows, m.SuppressedEvents, m.MinSubjects, m.Records, m.InfoLoss, m.Delay, m.EpsilonSpent, m.Restores, m.StateResets, m.StateUnreadable, m.WatermarkCapped, m.WindowsRefused,
		m.MergePartials, m.MergePending, m.KeptOutsideDomain, m.ErasureNotices, m.ErasureDropped)
	return m
}

// WriterSchemaMetrics returns m.WriterSchemas, or nil for a nil m.
func (m *Metrics) WriterSchemaMetrics() *writers.Metrics {
	if m == nil {
		return nil
	}
	return m.WriterSchemas
}

// ErasureCounts are one batch's erasure-notice counts, added to the
// metrics when the batch commits (Flush). The zero value is empty.
type ErasureCounts struct {
	// Applied, Unknown, NotApplicable and Malformed count notices by
	// outcome (processors/kit/forget).
	Applied, Unknown, NotApplicable, Malformed int64
	// HeldRecords, WindowEvents, LateRecords and SetFull count what the
	// notices dropped (see Metrics.ErasureDropped).
	HeldRecords, WindowEvents, LateRecords, SetFull int64
}

// Flush adds c to m's erasure metrics for processor (m may be nil).
func (c *ErasureCounts) Flush(m *Metrics, processor string) {
	if m == nil || *c == (ErasureCounts{}) {
		return
	}
	for _, o := range []struct {
		v     *prometheus.CounterVec
		label string
		n     int64
	}{
		{m.ErasureNotices, "applied", c.Applied}, {m.ErasureNotices, "unknown", c.Unknown},
		{m.ErasureNotices, "not_applicable", c.NotApplicable}, {m.ErasureNotices, "malformed", c.Malformed},
		{m.ErasureDropped, "held_records", c.HeldRecords}, {m.ErasureDropped, "window_events", c.WindowEvents},
		{m.ErasureDropped, "late_records", c.LateRecords}, {m.ErasureDropped, "set_full", c.SetFull},
	} {
		if o.n > 0 {
			o.v.WithLabelValues(processor, o.label).Add(float64(o.n))
		}
	}
}
