// Package config reads the pipeline's configuration from PIPELINE_*
// environment variables (caarlos0/env). Every variable is documented in the
// README with its default. Secrets (the pseudonym keys, the Redis password)
// are read from files or the environment and never printed: Config has no
// String method that would show them, and Redacted returns a printable copy.
//
// It imports caarlos0/env, purpose and kafkaconn.
package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
)

// Config is the whole configuration.
type Config struct {
	// Kafka is the connection to the cluster, PIPELINE_KAFKA_* (the seed
	// brokers are PIPELINE_KAFKA_BROKERS); every Kafka client is built
	// from it.
	Kafka     kafkaconn.Config `envPrefix:"KAFKA_"`
	RedisAddr string           `env:"REDIS_ADDR" envDefault:"localhost:6379"`
	// RedisPassword is secret; prefer RedisPasswordFile.
	RedisPassword     string `env:"REDIS_PASSWORD"`
	RedisPasswordFile string `env:"REDIS_PASSWORD_FILE"`

	RawTopic           string `env:"RAW_TOPIC" envDefault:"raw.customer-events"`
	ConsentTopic       string `env:"CONSENT_TOPIC" envDefault:"privacy.consent"`
	ConsentSyncGroup   string `env:"CONSENT_SYNC_GROUP" envDefault:"privacy-pipeline-consent-sync"`
	ConsentAPIAddr     string `env:"CONSENT_API_ADDR" envDefault:":8080"`
	ConsentHistoryCap  int    `env:"CONSENT_HISTORY_CAP" envDefault:"1000"`
	CleanTopicTemplate string `env:"CLEAN_TOPIC_TEMPLATE" envDefault:"clean.{purpose}.customer-events"`
	QuarantineTopic    string `env:"QUARANTINE_TOPIC" envDefault:"quarantine.customer-events"`
	GroupID            string `env:"GROUP_ID" envDefault:"privacy-pipeline-privacy"`
	Workers            int    `env:"WORKERS" envDefault:"0"`
	MaxPollRecords     int    `env:"MAX_POLL_RECORDS" envDefault:"5000"`
	// HTTPAddr is where /metrics, /healthz and /readyz are served; empty:
	// the command's own default port (DefaultHTTPAddr), so processes of
	// different commands on one host do not collide.
	HTTPAddr string `env:"HTTP_ADDR"`
	// AbortAlertAfter is how many transactions in a row may abort for the
	// same reason before a replica warns and reports itself not ready.
	AbortAlertAfter int `env:"ABORT_ALERT_AFTER" envDefault:"5"`
	// TickIdleAfter is how long an input partition must go without a
	// record, and be caught up, before time-driven work (idle window
	// close, CASTLE's max delay) acts on it.
	TickIdleAfter time.Duration `env:"TICK_IDLE_AFTER" envDefault:"10s"`
	// LimitsRefresh is how often the privacy processor re-reads its output
	// topics' max.message.bytes.
	LimitsRefresh time.Duration `env:"LIMITS_REFRESH" envDefault:"1m"`
	// TransactionalID identifies this replica's transactions; empty: group,
	// hostname and a random suffix. Stable per replica (pod name) lets a
	// restarted replica abort its predecessor's open transaction at once.
	TransactionalID    string        `env:"TRANSACTIONAL_ID"`
	TransactionTimeout time.Duration `env:"TRANSACTION_TIMEOUT" envDefault:"10s"`
	SessionTimeout     time.Duration `env:"SESSION_TIMEOUT" envDefault:"10s"`
	LogLevel           string        `env:"LOG_LEVEL" envDefault:"info"`

	// PseudonymKeysFile is a JSON keyring (see README); PseudonymKeys holds
	// the same JSON inline. One of them is required by 'pipeline run'.
	PseudonymKeysFile string `env:"PSEUDONYM_KEYS_FILE"`
	PseudonymKeys     string `env:"PSEUDONYM_KEYS"`

	PolicyFile       string        `env:"POLICY_FILE"`
	WriterSchemasDir string        `env:"WRITER_SCHEMAS_DIR"`
	ConsentCacheTTL  time.Duration `env:"CONSENT_CACHE_TTL" envDefault:"250ms"`
	ConsentCacheSize int           `env:"CONSENT_CACHE_SIZE" envDefault:"100000"`
	ConsentKeyPrefix string        `env:"CONSENT_KEY_PREFIX" envDefault:"pp:consent:"`
	// ConsentRequireLoaded makes lookups fail (pause) while the store's
	// loaded marker is missing, e.g. after Redis restarted empty.
	ConsentRequireLoaded bool          `env:"CONSENT_REQUIRE_LOADED" envDefault:"true"`
	MaxRecordBytes       int           `env:"MAX_RECORD_BYTES" envDefault:"262144"`
	MaxFieldBytes        int           `env:"MAX_FIELD_BYTES" envDefault:"16384"`
	MaxEventAge          time.Duration `env:"MAX_EVENT_AGE" envDefault:"9600h"`
	MaxEventFuture       time.Duration `env:"MAX_EVENT_FUTURE" envDefault:"1h"`

	// StateTopicTemplate names a stateful processor's checkpoint topic.
	StateTopicTemplate string `env:"STATE_TOPIC_TEMPLATE" envDefault:"privacy.state.{processor}"`
	// AggTopicTemplate names the aggregate topics, KanonTopicTemplate the
	// record-level k-anonymous topic.
	AggTopicTemplate   string `env:"AGG_TOPIC_TEMPLATE" envDefault:"agg.{purpose}.{name}"`
	KanonTopicTemplate string `env:"KANON_TOPIC_TEMPLATE" envDefault:"clean.{purpose}.kanon"`
	// KanonSpecFile replaces the checked-in schemas/kanon.json.
	KanonSpecFile string `env:"KANON_SPEC_FILE"`

	// k-anonymous aggregates (pipeline run kanon).
	KanonAggregatesGroup string        `env:"KANON_AGGREGATES_GROUP" envDefault:"privacy-pipeline-kanon-aggregates"`
	KanonK               int           `env:"KANON_K" envDefault:"11"`
	KanonWindow          time.Duration `env:"KANON_WINDOW" envDefault:"1h"`
	KanonAllowedLateness time.Duration `env:"KANON_ALLOWED_LATENESS" envDefault:"10m"`
	KanonRollup          bool          `env:"KANON_ROLLUP" envDefault:"true"`
	KanonIdleClose       time.Duration `env:"KANON_IDLE_CLOSE" envDefault:"5m"`
	// KanonWatermarkSkew bounds an event's move of the watermark to its
	// record's log time plus this; negative: unbounded.
	KanonWatermarkSkew   time.Duration `env:"KANON_WATERMARK_SKEW" envDefault:"1m"`
	KanonDPEpsilon       float64       `env:"KANON_DP_EPSILON" envDefault:"0"`
	KanonDPDelta         float64       `env:"KANON_DP_DELTA" envDefault:"1e-6"`
	KanonDPMaxCells      int           `env:"KANON_DP_MAX_CELLS_PER_SUBJECT" envDefault:"4"`
	KanonDPMaxEventsCell int           `env:"KANON_DP_MAX_EVENTS_PER_CELL" envDefault:"5"`
	KanonDPMaxAmount     float64       `env:"KANON_DP_MAX_AMOUNT" envDefault:"1000"`
	// KanonDPPeriodEpsilon caps the DP budget per subject per
	// KanonDPPeriod (0: no cap); windows past it are refused.
	KanonDPPeriodEpsilon float64       `env:"KANON_DP_PERIOD_EPSILON" envDefault:"0"`
	KanonDPPeriod        time.Duration `env:"KANON_DP_PERIOD" envDefault:"720h"`
	// KanonMergeGroup is the consumer group of the aggregates' merge stage
	// (it reads the partials topic, privacy.state.kanon-partials by the
	// state template).
	KanonMergeGroup string `env:"KANON_MERGE_GROUP" envDefault:"privacy-pipeline-kanon-merge"`
	// KanonInputPartitions is the number of partitions of the aggregates'
	// clean input, which the merge stage waits for; 0: 'pipeline run
	// kanon' reads it from the broker at start.
	KanonInputPartitions int `env:"KANON_INPUT_PARTITIONS" envDefault:"0"`
	// KanonMergeDiscardState lets the merge stage start a partials
	// partition afresh when its checkpoint cannot be read, forgetting its
	// release horizon and DP ledger; false: it stops on that partition
	// (an error, a log line, pipeline_kanon_state_unreadable_total) until
	// an operator decides.
	KanonMergeDiscardState bool `env:"KANON_MERGE_DISCARD_STATE" envDefault:"false"`
	// KanonPartialMaxBytes bounds one record of the partials topic (a
	// window's cells are split over as many as needed).
	KanonPartialMaxBytes int `env:"KANON_PARTIAL_MAX_BYTES" envDefault:"262144"`

	// Record-level k-anonymisation (pipeline run castle).
	CastleGroup    string        `env:"CASTLE_GROUP" envDefault:"privacy-pipeline-kanon-records"`
	CastleK        int           `env:"CASTLE_K" envDefault:"10"`
	CastleDelta    int           `env:"CASTLE_DELTA" envDefault:"1000"`
	CastleBeta     int           `env:"CASTLE_BETA" envDefault:"50"`
	CastleMu       int           `env:"CASTLE_MU" envDefault:"100"`
	CastleL        int           `env:"CASTLE_L" envDefault:"1"`
	CastleMaxReuse int           `env:"CASTLE_MAX_REUSE" envDefault:"1000"`
	CastleMaxDelay time.Duration `env:"CASTLE_MAX_DELAY" envDefault:"1h"`
	// CastleSeed, when not 0, makes CASTLE's random choice among reusable
	// clusters reproducible (verification runs only; see anonymize.Config).
	CastleSeed uint64 `env:"CASTLE_SEED" envDefault:"0"`
}

// envOptions are the options Load parses the environment with.
func envOptions() env.Options { return env.Options{Prefix: "PIPELINE_"} }

// Load reads the environment.
func Load() (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, envOptions()); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, c.Validate()
}

// EnvVars returns the names of the environment variables Load reads,
// nested settings (PIPELINE_KAFKA_*) included, in field order.
func EnvVars() []string {
	ps, err := env.GetFieldParamsWithOptions(&Config{}, envOptions())
	if err != nil {
		panic(fmt.Sprintf("config: the env tags of Config: %v", err)) // a programming error, caught by the tests
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Key
	}
	return out
}

// Validate checks values that env parsing cannot.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if !strings.Contains(c.CleanTopicTemplate, "{purpose}") {
		return fmt.Errorf("config: PIPELINE_CLEAN_TOPIC_TEMPLATE must contain {purpose}")
	}
	if c.ConsentCacheTTL <= 0 || c.ConsentCacheSize <= 0 {
		return fmt.Errorf("config: PIPELINE_CONSENT_CACHE_TTL and PIPELINE_CONSENT_CACHE_SIZE must be positive")
	}
	if !strings.Contains(c.StateTopicTemplate, "{processor}") {
		return fmt.Errorf("config: PIPELINE_STATE_TOPIC_TEMPLATE must contain {processor}")
	}
	if !strings.Contains(c.AggTopicTemplate, "{name}") || !strings.Contains(c.KanonTopicTemplate, "{purpose}") {
		return fmt.Errorf("config: PIPELINE_AGG_TOPIC_TEMPLATE must contain {name} and PIPELINE_KANON_TOPIC_TEMPLATE {purpose}")
	}
	if c.KanonK < 2 || c.CastleK < 2 {
		return fmt.Errorf("config: PIPELINE_KANON_K and PIPELINE_CASTLE_K must be at least 2")
	}
	if c.KanonWindow <= 0 || c.KanonAllowedLateness < 0 {
		return fmt.Errorf("config: PIPELINE_KANON_WINDOW must be positive and PIPELINE_KANON_ALLOWED_LATENESS not negative")
	}
	if c.KanonDPEpsilon < 0 || (c.KanonDPEpsilon > 0 && (c.KanonDPDelta <= 0 || c.KanonDPDelta >= 1 || c.KanonDPMaxCells < 1 || c.KanonDPMaxEventsCell < 1 || c.KanonDPMaxAmount < 0)) {
		return fmt.Errorf("config: differential privacy needs PIPELINE_KANON_DP_EPSILON > 0, 0 < PIPELINE_KANON_DP_DELTA < 1 and positive contribution bounds")
	}
	if c.KanonInputPartitions < 0 || c.KanonPartialMaxBytes < 1024 || c.KanonPartialMaxBytes > 1_000_000 {
		return fmt.Errorf("config: PIPELINE_KANON_INPUT_PARTITIONS must not be negative and PIPELINE_KANON_PARTIAL_MAX_BYTES between 1024 and 1000000")
	}
	if c.CastleDelta < c.CastleK || c.CastleBeta < 1 || c.CastleMu < 1 || c.CastleL < 1 || c.CastleMaxReuse < 0 || c.CastleMaxDelay < 0 {
		return fmt.Errorf("config: CASTLE needs PIPELINE_CASTLE_DELTA >= PIPELINE_CASTLE_K, and positive BETA, MU and L")
	}
	if c.AbortAlertAfter < 1 || c.LimitsRefresh <= 0 {
		return fmt.Errorf("config: PIPELINE_ABORT_ALERT_AFTER must be at least 1 and PIPELINE_LIMITS_REFRESH positive")
	}
	if c.RedisPassword != "" && c.RedisPasswordFile != "" {
		return fmt.Errorf("config: set PIPELINE_REDIS_PASSWORD or PIPELINE_REDIS_PASSWORD_FILE, not both")
	}
	return nil
}

// DefaultHTTPAddrs are the commands' own default addresses of the
// operational endpoints (PIPELINE_HTTP_ADDR unset). The consent API serves
// them on its API address instead.
var DefaultHTTPAddrs = map[string]string{
	"privacy":       ":9464",
	"consent-sync":  ":9465",
	"kanon":         ":9466",
	"kanon-records": ":9467",
}

// OpsAddr returns the address of a command's /metrics, /healthz and
// /readyz: PIPELINE_HTTP_ADDR when set, else the command's default.
func (c Config) OpsAddr(command string) string {
	if c.HTTPAddr != "" {
		return c.HTTPAddr
	}
	if a, ok := DefaultHTTPAddrs[command]; ok {
		return a
	}
	return ":9464"
}

// CleanTopic returns the clean topic of a purpose.
func (c Config) CleanTopic(p purpose.Purpose) string {
	return strings.ReplaceAll(c.CleanTopicTemplate, "{purpose}", p.String())
}

// Redacted returns a copy safe to print: secrets are replaced.
func (c Config) Redacted() Config {
	if c.RedisPassword != "" {
		c.RedisPassword = "[redacted]"
	}
	if c.PseudonymKeys != "" {
		c.PseudonymKeys = "[redacted]"
	}
	return c
}
