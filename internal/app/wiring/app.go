package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/serve"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/keys/keysync"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
)

// The commands 'pipeline run' starts, by name.
const (
	CommandPrivacy      = "privacy"
	CommandConsentSync  = "consent-sync"
	CommandConsentAPI   = "consent-api"
	CommandKanon        = "kanon"
	CommandKanonRecords = "kanon-records"
)

// Commands are the names 'pipeline run' accepts.
var Commands = []string{CommandPrivacy, CommandConsentSync, CommandConsentAPI, CommandRequests, CommandKanon, CommandKanonRecords}

// Sections returns the configuration sections a command reads (Ops and
// Names always); config.Load validates only those.
func Sections(command string) []config.Section {
	switch command {
	case CommandPrivacy:
		return []config.Section{config.SectionKafka, config.SectionRedis, config.SectionRunner, config.SectionPrivacy, config.SectionKeys, config.SectionConsent, config.SectionSchemas}
	case CommandConsentSync:
		return []config.Section{config.SectionKafka, config.SectionRedis, config.SectionKeys, config.SectionConsent}
	case CommandConsentAPI:
		return []config.Section{config.SectionKafka, config.SectionRedis, config.SectionKeys, config.SectionRequests, config.SectionConsent}
	case CommandRequests:
		return []config.Section{config.SectionKafka, config.SectionRedis, config.SectionRunner, config.SectionPrivacy, config.SectionKeys,
			config.SectionRequests, config.SectionConsent, config.SectionSchemas}
	case CommandKanon:
		return []config.Section{config.SectionKafka, config.SectionRunner, config.SectionKanon, config.SectionSchemas}
	case CommandKanonRecords:
		return []config.Section{config.SectionKafka, config.SectionRunner, config.SectionCastle, config.SectionSchemas}
	}
	return config.AllSections
}

// RunnerConfig is the one place a runner's configuration is built from the
// pipeline's: the connection, the group and input, and PIPELINE_WORKERS,
// _MAX_POLL_RECORDS, _TRANSACTIONAL_ID, _TRANSACTION_TIMEOUT,
// _SESSION_TIMEOUT, _ABORT_ALERT_AFTER and _TICK_IDLE_AFTER. Callers set
// what is theirs (metrics, a commit hook, a clock) on the result.
func RunnerConfig(cfg config.Config, group, input string, log *slog.Logger) runner.Config {
	r := cfg.Runner
	return runner.Config{Conn: cfg.Kafka, Group: group, Input: input, Log: log,
		Workers: r.Workers, MaxPollRecords: r.MaxPollRecords, ProducerLinger: RunnerLinger(r.ProducerLinger),
		TransactionalID: r.TransactionalID, TransactionTimeout: r.TransactionTimeout, SessionTimeout: r.SessionTimeout,
		AbortAlertAfter: r.AbortAlertAfter, IdleAfter: r.TickIdleAfter}
}

// RunnerLinger maps PIPELINE_PRODUCER_LINGER to runner.Config's
// ProducerLinger, where zero means the default: 0 (no wait) becomes
// negative.
func RunnerLinger(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// NewRegistry returns a registry with the Go and process collectors, for
// one command's /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// App is one command, assembled: its services, its endpoints and what it
// logs when it starts and stops. Run serves it until ctx ends.
type App struct {
	// Name is the command (wiring.Command*).
	Name     string
	title    string // of the start and stop log lines
	services []serve.Service
	opts     serve.Options
	log      *slog.Logger
	started  []any
	stopped  func() []any
	closers  []func()
}

// Ready reports whether every service is ready (or the command's own
// readiness, when it has one): what /readyz answers.
func (a *App) Ready() bool {
	if a.opts.Ready != nil {
		return a.opts.Ready()
	}
	for _, s := range a.services {
		if !s.Ready() {
			return false
		}
	}
	return true
}

// Run serves the command until ctx ends (nil) or a service fails, then
// closes its clients.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	a.log.Info(a.title+" started", a.started...)
	err := serve.Run(ctx, a.opts, a.services...)
	if a.stopped != nil {
		a.log.Info(a.title+" stopped", a.stopped()...)
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", a.Name, err)
	}
	return nil
}

// Close closes the command's clients (Run does it; call it only when Run
// is never called).
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// AppOptions are what a command passes besides the configuration.
type AppOptions struct {
	// Log is the command's logger.
	Log *slog.Logger
	// Rebuild makes consent-sync restore Redis from the consent topic
	// from scratch first.
	Rebuild bool
	// Bound, when set, receives the ops address once it listens.
	Bound chan<- string
}

// NewApp assembles a command of 'pipeline run' (wiring.Commands).
func NewApp(ctx context.Context, command string, cfg config.Config, o AppOptions) (*App, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	reg := NewRegistry()
	a := &App{Name: command, log: o.Log, opts: serve.Options{Addr: cfg.OpsAddr(command), Registry: reg, Bound: o.Bound, Log: o.Log}}
	var err error
	switch command {
	case CommandPrivacy:
		err = a.privacy(ctx, cfg, reg)
	case CommandConsentSync:
		err = a.consentSync(cfg, reg, o.Rebuild)
	case CommandConsentAPI:
		err = a.consentAPI(ctx, cfg, reg)
	case CommandRequests:
		err = a.requestsService(ctx, cfg, reg)
	case CommandKanon:
		err = a.kanon(ctx, cfg, reg)
	case CommandKanonRecords:
		err = a.kanonRecords(ctx, cfg, reg)
	default:
		err = fmt.Errorf("unknown command %q", command)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	a.title = map[string]string{CommandPrivacy: "privacy processor", CommandConsentSync: "consent sync", CommandConsentAPI: "consent API", CommandRequests: "requests service",
		CommandKanon: "k-anonymity processor", CommandKanonRecords: "k-anonymity processor"}[command]
	if command != CommandConsentAPI {
		a.started = append(a.started, "http", a.opts.Addr)
	}
	return a, nil
}

// redisClient opens the consent store's Redis client, closed with the app.
func (a *App) redisClient(cfg config.Config) (*redis.Client, error) {
	ropts, err := RedisOptions(cfg)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(ropts)
	a.closers = append(a.closers, func() { rdb.Close() })
	return rdb, nil
}

// privacy: the runner, the follower of the output topics' size limits and
// the follower of consent invalidations; ready when the runner owns
// partitions and the processor can decide (consent store up).
func (a *App) privacy(ctx context.Context, cfg config.Config, reg *prometheus.Registry) error {
	rdb, err := a.redisClient(cfg)
	if err != nil {
		return err
	}
	pp, err := BuildPrivacy(ctx, cfg, Deps{Redis: rdb, Registry: reg, Log: a.log})
	if err != nil {
		return err
	}
	rc := RunnerConfig(cfg, cfg.Names.GroupID, cfg.Names.RawTopic, a.log)
	rc.Metrics = runner.NewMetrics(reg)
	rn, err := runner.New(rc, pp.Processor)
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
	a.closers = append(a.closers, adm.Close)
	a.services = []serve.Service{
		serve.Func("privacy", rn.Run, func() bool { return rn.Ready() && pp.Processor.Ready() }),
		serve.Func("limits", func(ctx context.Context) error {
			FollowLimits(ctx, adm, pp, cfg.Privacy.LimitsRefresh, a.log)
			return nil
		}, nil),
		serve.Func("invalidations", func(ctx context.Context) error {
			consentredis.FollowInvalidations(ctx, pp.Store, pp.Cache, a.log)
			return nil
		}, nil),
	}
	a.started = []any{"brokers", cfg.Kafka.Brokers, "group", cfg.Names.GroupID, "input", cfg.Names.RawTopic,
		"policy_version", pp.Policy.Version}
	a.stopped = func() []any {
		return []any{"committed_records", rn.Committed(), "aborted_transactions", rn.Aborted()}
	}
	return nil
}

// consentStore opens the consent store (Redis), closed with the app.
func (a *App) consentStore(cfg config.Config) (*consentredis.RedisStore, error) {
	rdb, err := a.redisClient(cfg)
	if err != nil {
		return nil, err
	}
	return consentredis.NewRedisStore(rdb, consentredis.WithKeyPrefix(cfg.Consent.KeyPrefix),
		consentredis.WithRequireLoaded(cfg.Consent.RequireLoaded)), nil
}

// consentSync: the topic materialised into Redis.
func (a *App) consentSync(cfg config.Config, reg *prometheus.Registry, rebuild bool) error {
	store, err := a.consentStore(cfg)
	if err != nil {
		return err
	}
	s, err := consentsync.New(consentsync.Config{Kafka: cfg.Kafka, Topic: cfg.Names.ConsentTopic, Group: cfg.Names.ConsentSyncGroup,
		Store: store, HistoryCap: cfg.Consent.HistoryCap, Log: a.log, Metrics: consentsync.NewMetrics(reg)})
	if err != nil {
		return err
	}
	// The key sync follows privacy.keys into Redis in the same command:
	// both are "Redis caches of a compacted topic", with one deployment.
	// It moves wrapped bytes only and needs no key-encryption key.
	keys, err := keyredis.New(keyredis.Config{Redis: store.Client(), Prefix: cfg.Keys.DataKeyPrefix})
	if err != nil {
		return err
	}
	ks, err := keysync.New(keysync.Config{Kafka: cfg.Kafka, Topic: cfg.Names.KeysTopic, Group: cfg.Names.KeySyncGroup,
		Store: keys, Log: a.log, Metrics: keysync.NewMetrics(reg), Heartbeat: cfg.Keys.HeartbeatInterval})
	if err != nil {
		return err
	}
	a.services = []serve.Service{
		serve.Func("consent-sync", func(ctx context.Context) error { return s.Run(ctx, rebuild) }, s.Ready),
		serve.Func("key-sync", ks.Run, ks.Ready),
	}
	a.started = []any{"topic", cfg.Names.ConsentTopic, "keys_topic", cfg.Names.KeysTopic, "rebuild", rebuild}
	return nil
}

// consentAPI: the HTTP API on PIPELINE_CONSENT_API_ADDR, with the
// operational endpoints on the same address (over TLS when configured),
// every route guarded (APIGuard); ready while the producer reaches the
// cluster.
func (a *App) consentAPI(ctx context.Context, cfg config.Config, reg prometheus.Registerer) error {
	guard, tc, err := APIGuard(cfg.Consent.API, a.log, reg)
	if err != nil {
		return err
	}
	store, err := a.consentStore(cfg)
	if err != nil {
		return err
	}
	cl, err := cfg.Kafka.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	a.closers = append(a.closers, cl.Close)
	var ledger consentapi.Ledger
	var marks consentapi.Marks                      // the audit records' subject reference
	check, err := ErasureCheck(cfg, store.Client()) // erased subjects' changes are refused
	if err != nil {
		return err
	} else if check != nil {
		ledger, marks = check, check.Ledger
	}
	mapping, err := ConsentStrings(cfg)
	if err != nil {
		return err
	}
	acfg := consentapi.Config{Producer: cl, Topic: cfg.Names.ConsentTopic, Store: store, Guard: guard, Ledger: ledger, Log: a.log,
		AuditTopic: names(cfg).Audit, Marks: marks, ConsentStrings: mapping}
	api, err := consentapi.New(acfg)
	if err != nil {
		return err
	}
	// The requests API shares the server, the guard and the ledger: its
	// routes are more specific than the consent API's "/v1/".
	rapi, err := requestsAPI(cfg, requestredis.New(store.Client(), cfg.Requests.KeyPrefix), guard, check, a)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.Handler())
	rapi.Register(mux)
	a.opts.Addr, a.opts.TLS = cfg.Consent.APIAddr, tc
	a.opts.Mount = map[string]http.Handler{"/v1/": mux}
	center, err := PrivacyCenter(cfg, api, rapi, guard, store.Client(), reg, a.log)
	if err != nil {
		return err
	}
	if center != nil {
		center.RegisterLinks(mux)
		a.opts.Mount["/privacy/"] = center.Handler()
	}
	a.opts.Ready = func() bool {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return cl.Ping(pctx) == nil
	}
	a.started = []any{"addr", cfg.Consent.APIAddr, "topic", cfg.Names.ConsentTopic, "tls", tc != nil, "auth", cfg.Consent.API.Auth,
		"privacy_center", center != nil}
	if tc == nil {
		a.log.Warn("the consent API serves plain HTTP: set PIPELINE_CONSENT_API_TLS_CERT_FILE and _KEY_FILE unless a proxy in front terminates TLS")
	}
	return nil
}

// kanon: the aggregates' two stages in one process, each in its own
// consumer group and transactions: kanon-aggregates (clean input ->
// partials) and kanon-merge (partials -> rows). They are one feature with
// one configuration; running them together keeps every deployment, the
// chaos test and the demo whole, and a replica scales stage 1 while stage
// 2 (the partials topic's one partition) runs on whichever replica owns
// it; stage 2 reads the input's real partition count from the broker
// itself. Their runner metrics carry a processor label; /readyz needs
// stage 1 ready and stage 2 connected and not failing to commit.
func (a *App) kanon(ctx context.Context, cfg config.Config, reg *prometheus.Registry) error {
	spec, err := LoadKanonSpec(cfg)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n, err := InputPartitions(lctx, cfg, spec)
	cancel()
	if err != nil {
		return fmt.Errorf("input partitions: %w", err)
	}
	switch {
	case cfg.Kanon.InputPartitions == 0:
		cfg.Kanon.InputPartitions = n
	case cfg.Kanon.InputPartitions > n:
		// The merge stage waits for the real count and counts records
		// claiming more as invalid: they would all be lost.
		return fmt.Errorf("PIPELINE_KANON_INPUT_PARTITIONS=%d, but the input has %d partitions", cfg.Kanon.InputPartitions, n)
	}
	m := kanonmetrics.New(reg)
	first, err := BuildAggregates(ctx, cfg, spec, m, a.log)
	if err != nil {
		return err
	}
	merge, err := BuildKanonMerge(ctx, cfg, spec, m, a.log)
	if err != nil {
		return err
	}
	newRunner := func(proc processors.Processor, input, notices, group, suffix string) (*runner.Runner, error) {
		rc := RunnerConfig(cfg, group, input, a.log)
		rc.Notices = notices
		if rc.TransactionalID != "" {
			rc.TransactionalID += suffix
		}
		rc.Metrics = runner.NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"processor": proc.Name()}, reg))
		return runner.New(rc, proc)
	}
	rn1, err := newRunner(first.Processor, first.Input, first.Notices, first.Group, "")
	if err != nil {
		return err
	}
	rn2, err := newRunner(merge.Processor, merge.Input, merge.Notices, merge.Group, "-merge")
	if err != nil {
		return err
	}
	a.services = []serve.Service{serve.Func(first.Processor.Name(), rn1.Run, rn1.Ready), serve.Func(merge.Processor.Name(), rn2.Run, nil)}
	a.opts.Ready = func() bool {
		n, _ := rn2.AbortStreak()
		return rn1.Ready() && rn2.Running() && n < cfg.Runner.AbortAlertAfter
	}
	a.started = []any{"processor", first.Processor.Name(), "merge", merge.Processor.Name(),
		"input", first.Input, "notices", first.Notices, "partials", merge.Input, "input_partitions", cfg.Kanon.InputPartitions,
		"group", first.Group, "merge_group", merge.Group, "spec", spec.String()}
	a.stopped = func() []any {
		return []any{"processor", first.Processor.Name(), "committed_records", rn1.Committed(),
			"merged_records", rn2.Committed(), "aborted_transactions", rn1.Aborted() + rn2.Aborted()}
	}
	return nil
}

// kanonRecords: record-level k-anonymisation (CASTLE).
func (a *App) kanonRecords(ctx context.Context, cfg config.Config, reg *prometheus.Registry) error {
	spec, err := LoadKanonSpec(cfg)
	if err != nil {
		return err
	}
	rec, err := BuildAnonymize(ctx, cfg, spec, kanonmetrics.New(reg), a.log)
	if err != nil {
		return err
	}
	rc := RunnerConfig(cfg, rec.Group, rec.Input, a.log)
	rc.Notices = rec.Notices
	rc.Metrics = runner.NewMetrics(reg)
	rn, err := runner.New(rc, rec.Processor)
	if err != nil {
		return err
	}
	a.services = []serve.Service{serve.Func(rec.Processor.Name(), rn.Run, rn.Ready)}
	a.started = []any{"processor", rec.Processor.Name(), "input", rec.Input, "notices", rec.Notices, "group", rec.Group, "spec", spec.String()}
	a.stopped = func() []any {
		return []any{"processor", rec.Processor.Name(), "committed_records", rn.Committed(), "aborted_transactions", rn.Aborted()}
	}
	return nil
}
