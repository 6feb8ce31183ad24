package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/privacy-pipeline/pipeline/internal/config"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/opsserver"
	"github.com/privacy-pipeline/pipeline/internal/runner"
	"github.com/privacy-pipeline/pipeline/internal/wiring"
	"github.com/privacy-pipeline/pipeline/processors"
)

// cmdRunKanon runs one of the k-anonymity processors: "kanon" (aggregates)
// or "kanon-records" (CASTLE).
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
	m := metrics.NewKanon(reg)
	var proc processors.Processor
	var input, group string
	switch which {
	case "kanon":
		a, err := wiring.BuildAggregates(cfg, spec, m, log)
		if err != nil {
			return err
		}
		proc, input, group = a.Processor, a.Input, a.Group
	default:
		a, err := wiring.BuildAnonymize(cfg, spec, m, log)
		if err != nil {
			return err
		}
		proc, input, group = a.Processor, a.Input, a.Group
	}
	rn, err := runner.New(runner.Config{Brokers: cfg.KafkaBrokers, Group: group, Input: input,
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
