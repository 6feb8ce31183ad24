package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/opsserver"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
)

func cmdRunPrivacy(ctx context.Context, stderr io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	reg := newRegistry()
	pp, err := wiring.BuildPrivacy(cfg, wiring.Deps{Redis: rdb, Registry: reg, Log: log})
	if err != nil {
		return err
	}
	rn, err := runner.New(runner.Config{Conn: cfg.Kafka, Group: cfg.GroupID, Input: cfg.RawTopic,
		Workers: cfg.Workers, MaxPollRecords: cfg.MaxPollRecords, Log: log, Metrics: runner.NewMetrics(reg),
		TransactionalID: cfg.TransactionalID, TransactionTimeout: cfg.TransactionTimeout,
		SessionTimeout: cfg.SessionTimeout, AbortAlertAfter: cfg.AbortAlertAfter}, pp.Processor)
	if err != nil {
		return err
	}
	// Output size limits from the real topics (max.message.bytes), so a
	// record the quarantine topic cannot hold is quarantined as a reference
	// before the transaction instead of failing it.
	adm, err := cfg.Kafka.NewAdmin()
	if err != nil {
		return err
	}
	defer adm.Close()
	go wiring.FollowLimits(ctx, adm, pp, cfg.LimitsRefresh, log)
	httpAddr := cfg.OpsAddr("privacy")
	// Ready: connected, owning partitions, and able to decide (consent store up).
	ready := func() bool { return rn.Ready() && pp.Processor.Ready() }
	errc := make(chan error, 2)
	go func() { errc <- opsserver.Serve(ctx, httpAddr, opsserver.Handler(reg, ready), nil) }()
	go func() { errc <- rn.Run(ctx) }()
	go consentredis.FollowInvalidations(ctx, pp.Store, pp.Cache, log)
	log.Info("privacy processor started", "brokers", cfg.Kafka.Brokers, "group", cfg.GroupID,
		"input", cfg.RawTopic, "http", httpAddr, "policy_version", pp.Policy.Version)
	err = <-errc
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("run privacy: %w", err)
	}
	<-ctx.Done()
	// SIGTERM: the runner finishes or aborts its open transaction and leaves
	// the group (Run returns after that); wait for it.
	<-errc
	log.Info("privacy processor stopped", "committed_records", rn.Committed(), "aborted_transactions", rn.Aborted())
	return nil
}
