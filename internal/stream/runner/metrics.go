package runner

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the runner's metrics.
type Metrics struct {
	// Transactions counts ended transactions by outcome: committed,
	// aborted, error.
	Transactions *prometheus.CounterVec
	// Assigned is the number of input partitions this replica owns.
	Assigned prometheus.Gauge
	// Aborts counts transactions that did not commit, by reason (see
	// AbortReasons).
	Aborts *prometheus.CounterVec
	// ConsecutiveAborts is the number of transactions in a row that did
	// not commit (0 after a commit).
	ConsecutiveAborts prometheus.Gauge
	// Lag is, per owned input partition, the records after the last one
	// this replica fetched (last stable offset minus the next offset):
	// what autoscaling on lag (an HPA through a metrics adapter) and the
	// lag alert read. Labels: the input topic and the partition number,
	// both bounded by the topology.
	Lag *prometheus.GaugeVec
	// Phase is the time one batch's transaction spends in each phase, by
	// phase: process (the workers), produce (handing the outputs to the
	// producer) and commit (ending the transaction: flushing the outputs,
	// committing the offsets). Their sum, and the poll size, is what a
	// record waits at least between its arrival and its visibility to
	// read_committed consumers.
	Phase *prometheus.HistogramVec
}

// The phases of Metrics.Phase.
const (
	PhaseProcess = "process"
	PhaseProduce = "produce"
	PhaseCommit  = "commit"
)

// NewMetrics creates and registers the runner's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Name: "transactions_total",
			Help: "Read-process-write transactions ended, by outcome (committed, aborted, error)."}, []string{"outcome"}),
		Assigned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pipeline", Name: "assigned_partitions",
			Help: "Input partitions assigned to this replica."}),
		Aborts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Name: "transaction_aborts_total",
			Help: "Transactions that did not commit, by reason (stale_consent, process_error, produce_error, group_changed, end_error, begin_error)."}, []string{"reason"}),
		ConsecutiveAborts: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pipeline", Name: "transactions_consecutive_aborts",
			Help: "Transactions in a row that did not commit; 0 after a commit. /readyz fails once it reaches PIPELINE_ABORT_ALERT_AFTER for one reason."}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "pipeline", Name: "consumer_lag",
			Help: "Records of an owned input partition after the last one fetched (last stable offset minus the next offset)."}, []string{"topic", "partition"}),
		Phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "pipeline", Name: "transaction_phase_seconds",
			Help:    "Time one batch's transaction spends processing, producing and committing (flush and end), by phase.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"phase"}),
	}
	for _, ph := range []string{PhaseProcess, PhaseProduce, PhaseCommit} {
		m.Phase.WithLabelValues(ph)
	}
	for _, o := range []string{"committed", "aborted", "error"} {
		m.Transactions.WithLabelValues(o)
	}
	for _, r := range AbortReasons() {
		m.Aborts.WithLabelValues(r)
	}
	reg.MustRegister(m.Transactions, m.Assigned, m.Aborts, m.ConsecutiveAborts, m.Lag, m.Phase)
	return m
}
