package runner

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the runner's metrics.
type Metrics struct {
	// Transactions counts ended transactions by outcome: committed,
	// aborted, error.
	Transactions *prometheus.CounterVec
	// Assigned is the number of input partitions this replica owns.
	Assigned prometheus.Gauge
}

// NewMetrics creates and registers the runner's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Name: "transactions_total",
			Help: "Read-process-write transactions ended, by outcome (committed, aborted, error)."}, []string{"outcome"}),
		Assigned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pipeline", Name: "assigned_partitions",
			Help: "Input partitions assigned to this replica."}),
	}
	for _, o := range []string{"committed", "aborted", "error"} {
		m.Transactions.WithLabelValues(o)
	}
	reg.MustRegister(m.Transactions, m.Assigned)
	return m
}
