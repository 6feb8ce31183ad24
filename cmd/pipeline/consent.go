package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/stream/opsserver"
)

func consentStore(cfg config.Config) (*consentredis.RedisStore, func(), error) {
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(ropts)
	return consentredis.NewRedisStore(rdb, consentredis.WithKeyPrefix(cfg.ConsentKeyPrefix), consentredis.WithRequireLoaded(cfg.ConsentRequireLoaded)),
		func() { rdb.Close() }, nil
}

// consentSetup loads the configuration, the logger and the consent store
// shared by consent-sync and consent-api.
func consentSetup(stderr io.Writer) (config.Config, *slog.Logger, *consentredis.RedisStore, func(), error) {
	cfg, err := config.Load()
	if err != nil {
		return cfg, nil, nil, nil, err
	}
	store, closeRedis, err := consentStore(cfg)
	if err != nil {
		return cfg, nil, nil, nil, err
	}
	return cfg, newLogger(stderr, cfg.LogLevel), store, closeRedis, nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func cmdRunConsentSync(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("consent-sync")
	rebuild := fs.Bool("rebuild", false, "restore Redis from the consent topic from scratch first")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, log, store, closeRedis, err := consentSetup(stderr)
	if err != nil {
		return err
	}
	defer closeRedis()
	reg := newRegistry()
	s, err := consentsync.New(consentsync.Config{Kafka: cfg.Kafka, Topic: cfg.ConsentTopic, Group: cfg.ConsentSyncGroup,
		Store: store, HistoryCap: cfg.ConsentHistoryCap, Log: log, Metrics: consentsync.NewMetrics(reg)})
	if err != nil {
		return err
	}
	httpAddr := cfg.OpsAddr("consent-sync")
	go opsserver.Serve(ctx, httpAddr, opsserver.Handler(reg, s.Ready), nil)
	log.Info("consent sync started", "topic", cfg.ConsentTopic, "rebuild", *rebuild, "http", httpAddr)
	return s.Run(ctx, *rebuild)
}

func cmdRunConsentAPI(ctx context.Context, stderr io.Writer) error {
	cfg, log, store, closeRedis, err := consentSetup(stderr)
	if err != nil {
		return err
	}
	defer closeRedis()
	cl, err := cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()),
		kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	api, err := consentapi.New(consentapi.Config{Producer: cl, Topic: cfg.ConsentTopic, Store: store, Log: log})
	if err != nil {
		return err
	}
	reg := newRegistry()
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.Handler())
	ops := opsserver.Handler(reg, func() bool { return cl.Ping(ctx) == nil })
	mux.Handle("/metrics", ops)
	mux.Handle("/healthz", ops)
	mux.Handle("/readyz", ops)
	log.Info("consent API started", "addr", cfg.ConsentAPIAddr, "topic", cfg.ConsentTopic)
	if err := opsserver.Serve(ctx, cfg.ConsentAPIAddr, mux, nil); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
