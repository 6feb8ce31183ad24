package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/stream/opsserver"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
)

// cmdRunKanon runs one of the k-anonymity processors: "kanon" (aggregates:
// both stages, kanon-aggregates and kanon-merge, in one process) or
// "kanon-records" (CASTLE).
func cmdRunKanon(ctx context.Context, which string, stderr io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	spec, err := wiring.LoadKanonSpec(cfg)
	if err != nil {
		return err
	}
	reg := newRegistry()
	m := kanonmetrics.New(reg)
	var proc processors.Processor
	var input, group string
	switch which {
	case "kanon":
		return runAggregates(ctx, cfg, spec, reg, m, log)
	default:
		a, err := wiring.BuildAnonymize(cfg, spec, m, log)
		if err != nil {
			return err
		}
		proc, input, group = a.Processor, a.Input, a.Group
	}
	rn, err := runner.New(runner.Config{Conn: cfg.Kafka, Group: group, Input: input,
		Workers: cfg.Workers, MaxPollRecords: cfg.MaxPollRecords, Log: log, Metrics: runner.NewMetrics(reg),
		TransactionalID: cfg.TransactionalID, TransactionTimeout: cfg.TransactionTimeout,
		SessionTimeout: cfg.SessionTimeout, AbortAlertAfter: cfg.AbortAlertAfter, IdleAfter: cfg.TickIdleAfter}, proc)
	if err != nil {
		return err
	}
	httpAddr := cfg.OpsAddr(which)
	errc := make(chan error, 2)
	go func() { errc <- opsserver.Serve(ctx, httpAddr, opsserver.Handler(reg, rn.Ready), nil) }()
	go func() { errc <- rn.Run(ctx) }()
	log.Info("k-anonymity processor started", "processor", proc.Name(), "input", input, "group", group,
		"spec", spec.String(), "http", httpAddr)
	err = <-errc
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("run %s: %w", which, err)
	}
	<-ctx.Done()
	<-errc
	log.Info("k-anonymity processor stopped", "processor", proc.Name(), "committed_records", rn.Committed(), "aborted_transactions", rn.Aborted())
	return nil
}

// runAggregates runs the aggregates' two stages in one process, each in
// its own consumer group and transactions: kanon-aggregates (clean input
// -> partials) and kanon-merge (partials -> rows). They are one feature
// with one configuration; running them together keeps every deployment,
// the chaos test and the demo whole, and a replica scales stage 1 while
// stage 2 (the partials topic's one partition) runs on whichever replica
// owns it; stage 2 reads the input's real partition count from the
// broker itself. Their runner metrics carry a processor label; /readyz needs stage
// 1 ready and stage 2 connected and not failing to commit.
func runAggregates(ctx context.Context, cfg config.Config, spec *kanonspec.Spec, reg *prometheus.Registry, m *kanonmetrics.Metrics, log *slog.Logger) error {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n, err := wiring.InputPartitions(lctx, cfg, spec)
	cancel()
	if err != nil {
		return fmt.Errorf("run kanon: input partitions: %w", err)
	}
	switch {
	case cfg.KanonInputPartitions == 0:
		cfg.KanonInputPartitions = n
	case cfg.KanonInputPartitions > n:
		// The merge stage waits for the real count and counts records
		// claiming more as invalid: they would all be lost.
		return fmt.Errorf("run kanon: PIPELINE_KANON_INPUT_PARTITIONS=%d, but the input has %d partitions", cfg.KanonInputPartitions, n)
	}
	first, err := wiring.BuildAggregates(cfg, spec, m, log)
	if err != nil {
		return err
	}
	merge, err := wiring.BuildKanonMerge(cfg, spec, m, log)
	if err != nil {
		return err
	}
	newRunner := func(proc processors.Processor, input, group string, suffix string) (*runner.Runner, error) {
		tid := cfg.TransactionalID
		if tid != "" {
			tid += suffix
		}
		rm := runner.NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"processor": proc.Name()}, reg))
		return runner.New(runner.Config{Conn: cfg.Kafka, Group: group, Input: input,
			Workers: cfg.Workers, MaxPollRecords: cfg.MaxPollRecords, Log: log, Metrics: rm,
			TransactionalID: tid, TransactionTimeout: cfg.TransactionTimeout,
			SessionTimeout: cfg.SessionTimeout, AbortAlertAfter: cfg.AbortAlertAfter, IdleAfter: cfg.TickIdleAfter}, proc)
	}
	rn1, err := newRunner(first.Processor, first.Input, first.Group, "")
	if err != nil {
		return err
	}
	rn2, err := newRunner(merge.Processor, merge.Input, merge.Group, "-merge")
	if err != nil {
		return err
	}
	ready := func() bool {
		n, _ := rn2.AbortStreak()
		return rn1.Ready() && rn2.Running() && n < cfg.AbortAlertAfter
	}
	httpAddr := cfg.OpsAddr("kanon")
	errc := make(chan error, 3)
	go func() { errc <- opsserver.Serve(ctx, httpAddr, opsserver.Handler(reg, ready), nil) }()
	go func() { errc <- rn1.Run(ctx) }()
	go func() { errc <- rn2.Run(ctx) }()
	log.Info("k-anonymity processor started", "processor", first.Processor.Name(), "merge", merge.Processor.Name(),
		"input", first.Input, "partials", merge.Input, "input_partitions", cfg.KanonInputPartitions,
		"group", first.Group, "merge_group", merge.Group, "spec", spec.String(), "http", httpAddr)
	err = <-errc
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("run kanon: %w", err)
	}
	<-ctx.Done()
	<-errc
	<-errc
	log.Info("k-anonymity processor stopped", "processor", first.Processor.Name(), "committed_records", rn1.Committed(),
		"merged_records", rn2.Committed(), "aborted_transactions", rn1.Aborted()+rn2.Aborted())
	return nil
}
