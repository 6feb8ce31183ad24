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
}

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
	}
	for _, o := range []string{"committed", "aborted", "error"} {
		m.Transactions.WithLabelValues(o)
	}
	for _, r := range AbortReasons() {
		m.Aborts.WithLabelValues(r)
	}
	reg.MustRegister(m.Transactions, m.Assigned, m.Aborts, m.ConsecutiveAborts, m.Lag)
	return m
}
