package wiring

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/serve"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/export"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/fulfil"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestapi"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"

	"github.com/twmb/franz-go/pkg/kgo"
)

// CommandRequests carries out data-subject requests ('pipeline run
// requests').
const CommandRequests = "requests"

// requestsService: privacy.requests followed, verified requests carried
// out with the erasure executor and the exporter.
func (a *App) requestsService(ctx context.Context, cfg config.Config, reg prometheus.Registerer) error {
	rdb, err := a.redisClient(cfg)
	if err != nil {
		return err
	}
	svc, closeSvc, err := BuildRequests(ctx, cfg, rdb, reg, a.log)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, closeSvc)
	a.services = []serve.Service{serve.Func("requests", svc.Run, svc.Ready)}
	a.started = []any{"topic", cfg.Names.RequestsTopic, "group", cfg.Names.RequestsGroup}
	a.stopped = func() []any { return []any{"requests_done", svc.Done()} }
	return nil
}

// BuildRequests assembles the requests service ('pipeline run requests')
// on rdb: the request store (PIPELINE_REQUEST_KEY_PREFIX), the erasure
// executor (NewEraser; transactional id PIPELINE_TRANSACTIONAL_ID, else
// the requests group and the host name, which the topology's ACLs grant),
// the exporter (NewExporter) and the ledger's marks. The returned function
// closes what it opened.
func BuildRequests(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, reg prometheus.Registerer, log *slog.Logger) (*fulfil.Service, func(), error) {
	ledger, err := erasure.LoadLedgerKey(cfg.Keys.ErasureKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("PIPELINE_ERASURE_KEY_FILE: %w", err)
	}
	txn := cfg.Runner.TransactionalID
	if txn == "" {
		host, _ := os.Hostname()
		txn = cfg.Names.RequestsGroup + "-" + host
	}
	ex, closeEx, err := NewEraser(cfg, txn)
	if err != nil {
		return nil, nil, err
	}
	b, closeB, err := NewExporter(ctx, cfg, export.Options{})
	if err != nil {
		closeEx()
		return nil, nil, err
	}
	closeAll := func() { closeB(); closeEx() }
	svc, err := fulfil.New(fulfil.Config{Kafka: cfg.Kafka, Topic: cfg.Names.RequestsTopic, Group: cfg.Names.RequestsGroup,
		Store: requestredis.New(rdb, cfg.Requests.KeyPrefix), Eraser: eraser{ex}, Exporter: exporter{b}, Mark: ledger.Mark,
		ExportTTL: cfg.Requests.ExportTTL, AuditTopic: cfg.Names.AuditTopic, Heartbeat: cfg.Requests.HeartbeatInterval,
		Metrics: fulfil.NewMetrics(reg), Log: log})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return svc, closeAll, nil
}

// eraser adapts the erasure executor to fulfil.Eraser.
type eraser struct{ ex *erasure.Executor }

func (e eraser) Erase(ctx context.Context, subject, request string) (map[string]int64, error) {
	res, err := e.ex.Erase(ctx, subject, request)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"consent_keys": int64(len(res.Plan.ConsentKeys)), "data_keys": int64(len(res.Plan.DataKeys)),
		"notices": int64(len(res.Plan.Notices)), "records": int64(res.Records), "redis_keys_deleted": res.RedisKeysDeleted}, nil
}

// exporter adapts the export builder to fulfil.Exporter.
type exporter struct{ b *export.Builder }

func (x exporter) Export(ctx context.Context, subject string, reqs []requests.Request, progress func(float64)) ([]byte, map[string]int64, error) {
	raw := make([]json.RawMessage, len(reqs))
	for i, r := range reqs {
		raw[i] = r.Marshal()
	}
	doc, err := x.b.Build(ctx, export.Request{Subject: subject, Requests: raw}, func(p export.Progress) { progress(p.Fraction()) })
	if err != nil {
		return nil, nil, err
	}
	b, err := doc.JSON()
	if err != nil {
		return nil, nil, err
	}
	n := int64(0)
	for _, t := range doc.Records {
		n += int64(len(t.Records))
	}
	sum := map[string]int64{"records": n, "erased": b2i(doc.Erased), "holds_data": b2i(doc.HoldsData), "complete": b2i(doc.Complete)}
	return b, sum, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// RequestsAPI returns the requests API for the consent API's server (the
// same guard, the ledger check when configured; Register adds its
// routes) and the function that closes its producer.
func RequestsAPI(cfg config.Config, store *requestredis.Store, guard *httpauth.Guard, check *erasure.Check, log *slog.Logger) (*requestapi.Server, func(), error) {
	cl, err := cfg.Kafka.NewClient(kgo.ProducerLinger(0))
	if err != nil {
		return nil, nil, err
	}
	rc := requestapi.Config{Producer: cl, Topic: cfg.Names.RequestsTopic, Store: store, Guard: guard, AuditTopic: cfg.Names.AuditTopic,
		DefaultRegime: requests.Regime(cfg.Requests.DefaultRegime), Log: log}
	if check != nil {
		rc.Ledger, rc.Mark = check, check.Ledger.Mark
	}
	s, err := requestapi.New(rc)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	return s, cl.Close, nil
}

func requestsAPI(cfg config.Config, store *requestredis.Store, guard *httpauth.Guard, check *erasure.Check, a *App) (*requestapi.Server, error) {
	s, closeAPI, err := RequestsAPI(cfg, store, guard, check, a.log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeAPI)
	return s, nil
}
