package fulfil

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/requests"
)

// Due buckets of the open requests' gauge, by days left to the deadline.
var dueBuckets = []struct {
	label string
	days  float64
}{{"overdue", 0}, {"1d", 1}, {"3d", 3}, {"7d", 7}, {"30d", 30}, {"later", 1e9}}

// Outcomes of the records read from privacy.requests.
var outcomes = []string{"filed", "seen", "conflict", "malformed", "tombstone"}

// Metrics are the requests service's metrics (no label holds a subject or
// a request id).
type Metrics struct {
	// Records counts the records of privacy.requests by outcome: filed (a
	// new request), seen (a replay or the service's own change), conflict
	// (a request id reused for another request), malformed, tombstone.
	Records *prometheus.CounterVec
	// Done counts requests carried out, by kind and regime.
	Done *prometheus.CounterVec
	// Failures counts failed attempts (retried), by kind.
	Failures *prometheus.CounterVec
	// Pauses counts interruptions (a store or the broker not answering).
	Pauses prometheus.Counter
	// Seconds is the time from receipt to done, by kind.
	Seconds *prometheus.HistogramVec
	// Open is the open requests by kind, regime and days left (due).
	Open *prometheus.GaugeVec
	// Rebuilds counts rebuilds of the store from the request log.
	Rebuilds prometheus.Counter
	// Heartbeats counts compaction heartbeats written to the request
	// topic; HeartbeatFailures the rounds that failed.
	Heartbeats, HeartbeatFailures prometheus.Counter
	// MinDaysLeft is the least days left of any open request (negative:
	// overdue; +Inf: none open).
	MinDaysLeft prometheus.Gauge
}

// NewMetrics creates and registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "records_total",
			Help: "Records of privacy.requests by outcome: filed, seen (a replay or an own change), conflict (an id reused for another request), malformed, tombstone."}, []string{"outcome"}),
		Done: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "done_total",
			Help: "Data-subject requests carried out, by kind and regime."}, []string{"kind", "regime"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "failures_total",
			Help: "Failed attempts to carry out a request (retried), by kind."}, []string{"kind"}),
		Pauses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "pauses_total",
			Help: "Interruptions of the requests service (a store or the broker not answering); it resumes where it was."}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "pipeline", Subsystem: "requests", Name: "fulfil_seconds",
			Help:    "Time from a request's receipt to done, by kind.",
			Buckets: []float64{1, 10, 60, 600, 3600, 86400, 7 * 86400, 30 * 86400, 90 * 86400}}, []string{"kind"}),
		Open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "pipeline", Subsystem: "requests", Name: "open",
			Help: "Open data-subject requests by kind, regime and days left to the deadline (due: overdue, 1d, 3d, 7d, 30d, later)."}, []string{"kind", "regime", "due"}),
		Rebuilds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "rebuilds_total",
			Help: "Rebuilds of the request store (Redis) from the whole request log, when its loaded marker was missing."}),
		Heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "heartbeats_total",
			Help: "Compaction heartbeat tombstones written to the request topic (one per partition per round): they roll quiet partitions' segments, so an erased subject's raw-id request records are compacted away."}),
		HeartbeatFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "requests", Name: "heartbeat_failures_total",
			Help: "Heartbeat rounds on the request topic that failed (retried at the next interval)."}),
		MinDaysLeft: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pipeline", Subsystem: "requests", Name: "min_days_left",
			Help: "Least days left to the deadline of any open request (negative: overdue; +Inf: none open)."}),
	}
	reg.MustRegister(m.Records, m.Done, m.Failures, m.Pauses, m.Seconds, m.Open, m.MinDaysLeft, m.Rebuilds, m.Heartbeats, m.HeartbeatFailures)
	for _, o := range outcomes {
		m.Records.WithLabelValues(o)
	}
	m.MinDaysLeft.Set(posInf)
	m.SetOpen(nil, time.Now())
	return m
}

var posInf = func() float64 { var z float64; return 1 / z }()

// Outcome counts one record's outcome.
func (m *Metrics) Outcome(o string) { m.Records.WithLabelValues(o).Inc() }

// SetOpen sets the open gauges from the open requests at now: every
// (kind, regime, due) series is written, zeros included, so a bucket
// that empties reads 0 rather than its last value.
func (m *Metrics) SetOpen(open []requests.Request, now time.Time) {
	type key struct {
		k   requests.Kind
		r   requests.Regime
		due string
	}
	n := map[key]float64{}
	least := posInf
	for _, r := range open {
		left := r.DaysLeft(now)
		least = min(least, left)
		for _, b := range dueBuckets {
			if left < b.days {
				n[key{r.Kind, r.Regime, b.label}]++
				break
			}
		}
	}
	for _, k := range requests.Kinds {
		for _, r := range requests.Regimes {
			for _, b := range dueBuckets {
				m.Open.WithLabelValues(string(k), string(r), b.label).Set(n[key{k, r, b.label}])
			}
		}
	}
	m.MinDaysLeft.Set(least)
}
