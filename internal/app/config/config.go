// Package config reads the pipeline's configuration from PIPELINE_*
// environment variables (caarlos0/env), one nested struct per concern:
// Ops, Names, Kafka (internal/stream/kafkaconn), Redis, Runner, Privacy,
// Consent, Kanon, Castle, Schemas (the wire format and the schema
// registry, internal/schemaregistry). The variable names stay flat; each command loads
// and validates only the sections it uses (Load), so a bad value of one
// command's setting never stops another. Every variable is documented in
// the README with its default. Secrets (the pseudonym keys, the Redis
// password) are read from files or the environment and never printed:
// Config has no String method that would show them, and Redacted returns a
// printable copy.
//
// It imports caarlos0/env, kafkaconn, schemaregistry and wireformat.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
)

// Config is the whole configuration, one nested struct per concern. The
// variable names are flat (PIPELINE_KANON_K, PIPELINE_CONSENT_CACHE_TTL):
// a section either adds a prefix (envPrefix) or keeps its fields' own
// names. A command loads and validates only the sections it uses (Load),
// so a bad PIPELINE_CASTLE_* value cannot stop the consent API.
type Config struct {
	// Ops is what every command reads: log level and ops address.
	Ops Ops
	// Names are the topics and consumer groups (wiring.Names maps them to
	// the topology, which owns the defaults).
	Names Names
	// Kafka is the connection to the cluster, PIPELINE_KAFKA_* (the seed
	// brokers are PIPELINE_KAFKA_BROKERS); every Kafka client is built
	// from it.
	Kafka kafkaconn.Config `envPrefix:"KAFKA_"`
	// Redis is the consent store's connection, PIPELINE_REDIS_*.
	Redis Redis `envPrefix:"REDIS_"`
	// Runner tunes the exactly-once runner of every stream processor.
	Runner Runner
	// Privacy configures the privacy processor.
	Privacy Privacy
	// Keys configures the per-subject data keys and the erasure ledger.
	Keys Keys
	// Requests configures the data-subject requests.
	Requests Requests
	// Consent configures the consent store, its cache, sync and API,
	// PIPELINE_CONSENT_*.
	Consent Consent `envPrefix:"CONSENT_"`
	// PrivacyCenter configures the privacy center the consent API serves
	// under /privacy/, PIPELINE_PRIVACY_CENTER_*.
	PrivacyCenter PrivacyCenter `envPrefix:"PRIVACY_CENTER_"`
	// Kanon configures the k-anonymous aggregates, PIPELINE_KANON_*.
	Kanon Kanon `envPrefix:"KANON_"`
	// Castle configures record-level k-anonymisation, PIPELINE_CASTLE_*.
	Castle Castle `envPrefix:"CASTLE_"`
	// Schemas is the outputs' wire format and the schema registry,
	// PIPELINE_WIRE_FORMAT and PIPELINE_SCHEMA_REGISTRY_*.
	Schemas Schemas
}

// Schemas is how records are framed and where their schemas are
// registered (SPEC 3a).
type Schemas struct {
	// WireFormat frames the outputs (clean, agg and kanon topics):
	// "confluent" (magic byte 0 and the schema's registry id; needs a
	// registry) or "single-object" (Avro single-object encoding, no
	// registry). The raw input accepts both, whatever this says.
	WireFormat string `env:"WIRE_FORMAT" envDefault:"confluent"`
	// Registry is the schema registry, PIPELINE_SCHEMA_REGISTRY_*: needed
	// with the Confluent wire format, and for Confluent-framed raw input.
	Registry schemaregistry.Config `envPrefix:"SCHEMA_REGISTRY_"`
}

// Format returns the parsed wire format.
func (s Schemas) Format() wireformat.Format {
	f, _ := wireformat.ParseFormat(s.WireFormat)
	return f
}

// Validate checks the wire format and the registry settings. (That the
// Confluent wire format has a registry is checked where a processor is
// built: the commands that write no output need none.)
func (s Schemas) Validate() error {
	if _, err := wireformat.ParseFormat(s.WireFormat); err != nil {
		return fmt.Errorf("config: PIPELINE_WIRE_FORMAT: %w", err)
	}
	if err := s.Registry.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Ops is read by every command.
type Ops struct {
	// HTTPAddr is where /metrics, /healthz and /readyz are served; empty:
	// the command's own default port (DefaultHTTPAddrs), so processes of
	// different commands on one host do not collide.
	HTTPAddr string `env:"HTTP_ADDR"`
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Names are the topics and consumer groups. The defaults are the SPEC
// section 2 names that topology.DefaultNames holds (a test of wiring keeps
// the two equal).
type Names struct {
	RawTopic           string `env:"RAW_TOPIC" envDefault:"raw.customer-events"`
	ConsentTopic       string `env:"CONSENT_TOPIC" envDefault:"privacy.consent"`
	CleanTopicTemplate string `env:"CLEAN_TOPIC_TEMPLATE" envDefault:"clean.{purpose}.customer-events"`
	QuarantineTopic    string `env:"QUARANTINE_TOPIC" envDefault:"quarantine.customer-events"`
	// KeysTopic holds the wrapped per-subject data keys (encrypt, tokenize).
	KeysTopic string `env:"KEYS_TOPIC" envDefault:"privacy.keys"`
	// ErasuresTopic receives the erasure notices (one per purpose
	// pseudonym).
	ErasuresTopic string `env:"ERASURES_TOPIC" envDefault:"privacy.erasures"`
	// AuditTopic receives the audit records (internal/audit): the privacy
	// processor's batch summaries, the consent API's changes, erasures.
	AuditTopic string `env:"AUDIT_TOPIC" envDefault:"privacy.audit"`
	// RequestsTopic is the data-subject requests' log (compacted, keyed
	// by request id); RequestsGroup the group of 'pipeline run requests'.
	RequestsTopic string `env:"REQUESTS_TOPIC" envDefault:"privacy.requests"`
	RequestsGroup string `env:"REQUESTS_GROUP" envDefault:"privacy-pipeline-requests"`
	// StateTopicTemplate names a stateful processor's checkpoint topic.
	StateTopicTemplate string `env:"STATE_TOPIC_TEMPLATE" envDefault:"privacy.state.{processor}"`
	// AggTopicTemplate names the aggregate topics, KanonTopicTemplate the
	// record-level k-anonymous topic.
	AggTopicTemplate   string `env:"AGG_TOPIC_TEMPLATE" envDefault:"agg.{purpose}.{name}"`
	KanonTopicTemplate string `env:"KANON_TOPIC_TEMPLATE" envDefault:"clean.{purpose}.kanon"`
	// KanonSpecFile replaces the checked-in schemas/kanon.json (which
	// declares the k-anonymous outputs and their topics).
	KanonSpecFile string `env:"KANON_SPEC_FILE"`

	// GroupID is the privacy processor's consumer group.
	GroupID          string `env:"GROUP_ID" envDefault:"privacy-pipeline-privacy"`
	ConsentSyncGroup string `env:"CONSENT_SYNC_GROUP" envDefault:"privacy-pipeline-consent-sync"`
	// KeySyncGroup is the group of the key sync (in 'pipeline run
	// consent-sync'), which follows the key topic into Redis.
	KeySyncGroup string `env:"KEY_SYNC_GROUP" envDefault:"privacy-pipeline-key-sync"`
	// KanonAggregatesGroup and KanonMergeGroup are the aggregates' two
	// stages' groups (the merge stage reads the partials topic,
	// privacy.state.kanon-partials by the state template).
	KanonAggregatesGroup string `env:"KANON_AGGREGATES_GROUP" envDefault:"privacy-pipeline-kanon-aggregates"`
	KanonMergeGroup      string `env:"KANON_MERGE_GROUP" envDefault:"privacy-pipeline-kanon-merge"`
	CastleGroup          string `env:"CASTLE_GROUP" envDefault:"privacy-pipeline-kanon-records"`
}

// Redis is the consent store's connection.
type Redis struct {
	// Addr is host:port of the consent store.
	Addr string `env:"ADDR" envDefault:"localhost:6379"`
	// Username is the Redis ACL user (empty: the default user).
	Username string `env:"USERNAME"`
	// Password is secret; prefer PasswordFile (re-read at every new
	// connection, so a rotated password is used without a restart).
	Password     string `env:"PASSWORD"`
	PasswordFile string `env:"PASSWORD_FILE"`
	// TLS turns TLS on (also on when a CA or client certificate is set).
	TLS bool `env:"TLS"`
	// TLSCAFile verifies the server (default: the system roots);
	// TLSCertFile and TLSKeyFile are a client certificate; TLSServerName
	// overrides the name verified.
	TLSCAFile     string `env:"TLS_CA_FILE"`
	TLSCertFile   string `env:"TLS_CERT_FILE"`
	TLSKeyFile    string `env:"TLS_KEY_FILE"`
	TLSServerName string `env:"TLS_SERVER_NAME"`
}

// TLSOn reports whether the connection uses TLS.
func (r Redis) TLSOn() bool { return r.TLS || r.TLSCAFile != "" || r.TLSCertFile != "" }

// Runner tunes the exactly-once runner.
type Runner struct {
	Workers        int `env:"WORKERS" envDefault:"0"`
	MaxPollRecords int `env:"MAX_POLL_RECORDS" envDefault:"5000"`
	// AbortAlertAfter is how many transactions in a row may abort for the
	// same reason before a replica warns and reports itself not ready.
	AbortAlertAfter int `env:"ABORT_ALERT_AFTER" envDefault:"5"`
	// TickIdleAfter is how long an input partition must go without a
	// record, and be caught up, before time-driven work (idle window
	// close, CASTLE's max delay) acts on it.
	TickIdleAfter time.Duration `env:"TICK_IDLE_AFTER" envDefault:"10s"`
	// TransactionalID identifies this replica's transactions; empty: group,
	// hostname and a random suffix. Stable per replica (pod name) lets a
	// restarted replica abort its predecessor's open transaction at once.
	TransactionalID    string        `env:"TRANSACTIONAL_ID"`
	TransactionTimeout time.Duration `env:"TRANSACTION_TIMEOUT" envDefault:"10s"`
	SessionTimeout     time.Duration `env:"SESSION_TIMEOUT" envDefault:"10s"`
	// ProducerLinger is how long the runner's producer waits to fill a
	// batch before sending it (0: no wait): the latency-for-throughput
	// knob, with MaxPollRecords (README, Performance).
	ProducerLinger time.Duration `env:"PRODUCER_LINGER" envDefault:"5ms"`
}

// Privacy configures the privacy processor.
type Privacy struct {
	// PseudonymKeysFile is a JSON keyring (see README); PseudonymKeys holds
	// the same JSON inline. One of them is required by 'pipeline run'.
	PseudonymKeysFile string `env:"PSEUDONYM_KEYS_FILE"`
	PseudonymKeys     string `env:"PSEUDONYM_KEYS"`
	PolicyFile        string `env:"POLICY_FILE"`
	WriterSchemasDir  string `env:"WRITER_SCHEMAS_DIR"`
	// LimitsRefresh is how often the privacy processor re-reads its output
	// topics' max.message.bytes.
	LimitsRefresh  time.Duration `env:"LIMITS_REFRESH" envDefault:"1m"`
	MaxRecordBytes int           `env:"MAX_RECORD_BYTES" envDefault:"262144"`
	MaxFieldBytes  int           `env:"MAX_FIELD_BYTES" envDefault:"16384"`
	MaxEventAge    time.Duration `env:"MAX_EVENT_AGE" envDefault:"9600h"`
	MaxEventFuture time.Duration `env:"MAX_EVENT_FUTURE" envDefault:"1h"`
}

// Keys configures the per-subject data keys and the erasure ledger: read
// by the privacy processor, consent-sync (the key sync), the consent API
// (the ledger check) and 'pipeline erase'.
type Keys struct {
	// KEKFile is the key-encryption key of the per-subject data keys (a
	// Tink keyset file, 'pipeline keys kek new'); required when the policy
	// encrypts or tokenizes a field. PIPELINE_KEK_FILE.
	KEKFile string `env:"KEK_FILE"`
	// DataKeyPrefix is the Redis key prefix of the data keys' cache.
	DataKeyPrefix string `env:"DATA_KEY_PREFIX" envDefault:"pp:dk:"`
	// DataKeyCacheTTL bounds how long an unwrapped data key is used from
	// memory (and so how long another replica's shred goes unseen).
	DataKeyCacheTTL time.Duration `env:"DATA_KEY_CACHE_TTL" envDefault:"1m"`
	// ErasureKeyFile is the erasure ledger's key ('pipeline keys ledger
	// new'); 'pipeline erase' needs it, and the consent API refuses
	// changes for erased subjects with it. PIPELINE_ERASURE_KEY_FILE.
	ErasureKeyFile string `env:"ERASURE_KEY_FILE"`
	// HeartbeatInterval is how often the key sync writes a heartbeat
	// tombstone to every partition of the key topic, so that quiet
	// partitions' segments roll and a shredded key is compacted away within
	// the bound stated in topology.Default; 0 (or less) writes none.
	// PIPELINE_KEY_HEARTBEAT_INTERVAL.
	HeartbeatInterval time.Duration `env:"KEY_HEARTBEAT_INTERVAL" envDefault:"1m"`
}

// Requests configures the data-subject requests: their store in Redis,
// the regime of a request that names none, and how long an export can be
// downloaded. Read by 'pipeline run requests' and the consent API (which
// serves the requests API).
type Requests struct {
	// KeyPrefix is the Redis key prefix of the requests' state.
	// PIPELINE_REQUEST_KEY_PREFIX.
	KeyPrefix string `env:"REQUEST_KEY_PREFIX" envDefault:"pp:rq:"`
	// DefaultRegime applies to a request that names none (gdpr, ccpa,
	// pdpa, vn_decree13, voluntary). PIPELINE_REQUEST_DEFAULT_REGIME.
	DefaultRegime string `env:"REQUEST_DEFAULT_REGIME" envDefault:"gdpr"`
	// ExportTTL is how long a finished export can be downloaded before
	// its document is deleted. PIPELINE_EXPORT_TTL.
	ExportTTL time.Duration `env:"EXPORT_TTL" envDefault:"168h"`
	// HeartbeatInterval is how often 'pipeline run requests' writes a
	// compaction heartbeat to every partition of the request topic (0:
	// never). PIPELINE_REQUEST_HEARTBEAT_INTERVAL.
	HeartbeatInterval time.Duration `env:"REQUEST_HEARTBEAT_INTERVAL" envDefault:"1m"`
}

// Validate checks the requests' settings.
func (r Requests) Validate() error {
	switch r.DefaultRegime {
	case "gdpr", "ccpa", "pdpa", "vn_decree13", "voluntary":
	default:
		return fmt.Errorf("config: PIPELINE_REQUEST_DEFAULT_REGIME %q: want gdpr, ccpa, pdpa, vn_decree13 or voluntary", r.DefaultRegime)
	}
	if r.ExportTTL < time.Minute {
		return errors.New("config: PIPELINE_EXPORT_TTL: at least 1m")
	}
	if r.KeyPrefix == "" {
		return errors.New("config: PIPELINE_REQUEST_KEY_PREFIX: empty")
	}
	return nil
}

// Consent configures the consent store (key layout, loaded marker), the
// privacy processor's cache of it, the sync's history and the API.
type Consent struct {
	APIAddr string `env:"API_ADDR" envDefault:":8080"`
	// API secures the consent API, PIPELINE_CONSENT_API_*.
	API        ConsentAPI    `envPrefix:"API_"`
	HistoryCap int           `env:"HISTORY_CAP" envDefault:"1000"`
	CacheTTL   time.Duration `env:"CACHE_TTL" envDefault:"250ms"`
	CacheSize  int           `env:"CACHE_SIZE" envDefault:"100000"`
	KeyPrefix  string        `env:"KEY_PREFIX" envDefault:"pp:consent:"`
	// RequireLoaded makes lookups fail (pause) while the store's loaded
	// marker is missing, e.g. after Redis restarted empty.
	RequireLoaded bool `env:"REQUIRE_LOADED" envDefault:"true"`
	// StringsFile maps TCF and GPP consent strings to the purposes
	// (internal/consent/consentstring); empty: the checked-in
	// schemas/consent-strings.json. PIPELINE_CONSENT_STRINGS_FILE.
	StringsFile string `env:"STRINGS_FILE"`
}

// ConsentAPI secures the consent API (pipeline run consent-api): its TLS
// listener, how callers authenticate, the principals file and the rate
// limits. It is checked when the API starts (wiring), so no other command
// needs these files.
type ConsentAPI struct {
	// TLSCertFile and TLSKeyFile, set together, serve the API (and its
	// operational endpoints) over TLS; renewed files are picked up
	// without a restart.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// TLSClientCAFile, with TLS, verifies client certificates against
	// this CA (mutual TLS; needed by Auth mtls).
	TLSClientCAFile string `env:"TLS_CLIENT_CA_FILE"`
	// Auth is how callers authenticate: token, mtls, token,mtls or none.
	Auth string `env:"AUTH" envDefault:"token"`
	// AuthFile is the principals file: hashed tokens and certificate
	// subjects with their scopes, read again when it changes.
	AuthFile string `env:"AUTH_FILE"`
	// RateLimit and RateBurst limit each principal's requests per second.
	RateLimit float64 `env:"RATE_LIMIT" envDefault:"50"`
	RateBurst int     `env:"RATE_BURST" envDefault:"100"`
	// LogKeyFile keys the subject hash of the access log (a secret); empty:
	// a random key per process.
	LogKeyFile string `env:"LOG_KEY_FILE"`
}

// PrivacyCenter configures the customers' privacy center and the privacy
// team's view (internal/privacycenter), served by the consent API.
type PrivacyCenter struct {
	// LinkKeyFile is the Tink keyset that seals the customers' link
	// tokens ('pipeline keys link new'); empty: no privacy center (the
	// /privacy/ pages and the links route are not served).
	LinkKeyFile string `env:"LINK_KEY_FILE"`
	// LinkMaxTTL is the longest lifetime of a link minted or honoured.
	LinkMaxTTL time.Duration `env:"LINK_MAX_TTL" envDefault:"30m"`
	// MetricsURLs are the /metrics endpoints the operator view sums (the
	// privacy, kanon and requests replicas), comma-separated.
	MetricsURLs []string `env:"METRICS_URLS" envSeparator:","`
	// PublicURL is the center's external base URL (the links route's
	// answer starts with it); empty: a relative URL.
	PublicURL string `env:"PUBLIC_URL"`
	// SecureCookies marks the session cookies Secure on a plain HTTP
	// listener too (behind a proxy that terminates TLS).
	SecureCookies bool `env:"SECURE_COOKIES" envDefault:"false"`
	// KeyPrefix is the Redis key prefix of the sessions and spent links.
	KeyPrefix string `env:"KEY_PREFIX" envDefault:"pp:pc:"`
	// ClientIPHeader names the header the trusted proxy in front sets to
	// the client's address (its last value counts), e.g. X-Forwarded-For;
	// empty: the connection's address.
	ClientIPHeader string `env:"CLIENT_IP_HEADER"`
}

// Validate checks the link lifetime and the URLs.
func (p PrivacyCenter) Validate() error {
	if p.KeyPrefix == "" {
		return errors.New("config: PIPELINE_PRIVACY_CENTER_KEY_PREFIX: empty")
	}
	if p.LinkMaxTTL < time.Minute || p.LinkMaxTTL > 24*time.Hour {
		return errors.New("config: PIPELINE_PRIVACY_CENTER_LINK_MAX_TTL: from 1m to 24h")
	}
	for _, u := range append(slices.Clone(p.MetricsURLs), p.PublicURL) {
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil {
			return errors.New("config: PIPELINE_PRIVACY_CENTER_METRICS_URLS and _PUBLIC_URL take http(s)://host[:port]/path URLs without credentials")
		}
	}
	return nil
}

// Kanon configures the k-anonymous aggregates (pipeline run kanon).
type Kanon struct {
	K               int           `env:"K" envDefault:"11"`
	Window          time.Duration `env:"WINDOW" envDefault:"1h"`
	AllowedLateness time.Duration `env:"ALLOWED_LATENESS" envDefault:"10m"`
	Rollup          bool          `env:"ROLLUP" envDefault:"true"`
	IdleClose       time.Duration `env:"IDLE_CLOSE" envDefault:"5m"`
	// WatermarkSkew bounds an event's move of the watermark to its
	// record's log time plus this; negative: unbounded.
	WatermarkSkew   time.Duration `env:"WATERMARK_SKEW" envDefault:"1m"`
	DPEpsilon       float64       `env:"DP_EPSILON" envDefault:"0"`
	DPDelta         float64       `env:"DP_DELTA" envDefault:"1e-6"`
	DPMaxCells      int           `env:"DP_MAX_CELLS_PER_SUBJECT" envDefault:"4"`
	DPMaxEventsCell int           `env:"DP_MAX_EVENTS_PER_CELL" envDefault:"5"`
	DPMaxAmount     float64       `env:"DP_MAX_AMOUNT" envDefault:"1000"`
	// DPPeriodEpsilon caps the DP budget per subject per DPPeriod (0: no
	// cap); windows past it are refused.
	DPPeriodEpsilon float64       `env:"DP_PERIOD_EPSILON" envDefault:"0"`
	DPPeriod        time.Duration `env:"DP_PERIOD" envDefault:"720h"`
	// InputPartitions is the number of partitions of the aggregates' clean
	// input, which the merge stage waits for; 0: 'pipeline run kanon'
	// reads it from the broker at start.
	InputPartitions int `env:"INPUT_PARTITIONS" envDefault:"0"`
	// MergeDiscardState lets the merge stage start a partials partition
	// afresh when its checkpoint cannot be read, forgetting its release
	// horizon and DP ledger; false: it stops on that partition (an error,
	// a log line, pipeline_kanon_state_unreadable_total) until an operator
	// decides.
	MergeDiscardState bool `env:"MERGE_DISCARD_STATE" envDefault:"false"`
	// PartialMaxBytes bounds one record of the partials topic (a window's
	// cells are split over as many as needed).
	PartialMaxBytes int `env:"PARTIAL_MAX_BYTES" envDefault:"262144"`
}

// Castle configures record-level k-anonymisation (pipeline run
// kanon-records).
type Castle struct {
	K        int           `env:"K" envDefault:"10"`
	Delta    int           `env:"DELTA" envDefault:"1000"`
	Beta     int           `env:"BETA" envDefault:"50"`
	Mu       int           `env:"MU" envDefault:"100"`
	L        int           `env:"L" envDefault:"1"`
	MaxReuse int           `env:"MAX_REUSE" envDefault:"1000"`
	MaxDelay time.Duration `env:"MAX_DELAY" envDefault:"1h"`
	// Seed, when not 0, makes CASTLE's random choice among reusable
	// clusters reproducible (verification runs only; see kanonrec.Config).
	Seed uint64 `env:"SEED" envDefault:"0"`
}

// envOptions are the options Load parses the environment with.
func envOptions() env.Options { return env.Options{Prefix: "PIPELINE_"} }

// Section names one concern of the configuration, for Load.
type Section int

// The sections a command can load. Ops and Names are always loaded.
const (
	SectionKafka Section = iota
	SectionRedis
	SectionRunner
	SectionPrivacy
	SectionConsent
	SectionKanon
	SectionCastle
	SectionSchemas
	// SectionKeys is the data keys and the erasure ledger.
	SectionKeys
	// SectionRequests is the data-subject requests.
	SectionRequests
)

// AllSections are every section (the demo and the tests load them all).
var AllSections = []Section{SectionKafka, SectionRedis, SectionRunner, SectionPrivacy, SectionKeys, SectionRequests, SectionConsent, SectionKanon, SectionCastle, SectionSchemas}

// Load reads the environment for the named sections (none: all of them)
// and validates what it read. Every other section keeps its defaults, and
// its variables are not even parsed, so a command fails only on its own
// settings.
func Load(sections ...Section) (Config, error) {
	if len(sections) == 0 {
		sections = AllSections
	}
	var c Config
	// Defaults everywhere, from an empty environment.
	if err := env.ParseWithOptions(&c, env.Options{Prefix: "PIPELINE_", Environment: map[string]string{}}); err != nil {
		return c, fmt.Errorf("config: defaults: %w", err)
	}
	parse := func(v any, prefix string) error {
		if err := env.ParseWithOptions(v, env.Options{Prefix: "PIPELINE_" + prefix}); err != nil {
			return fmt.Errorf("config: %w", nameVariable(v, "PIPELINE_"+prefix, err))
		}
		return nil
	}
	if err := parse(&c.Ops, ""); err != nil {
		return c, err
	}
	if err := parse(&c.Names, ""); err != nil {
		return c, err
	}
	for _, sec := range sections {
		var err error
		switch sec {
		case SectionKafka:
			err = parse(&c.Kafka, "KAFKA_")
		case SectionRedis:
			err = parse(&c.Redis, "REDIS_")
		case SectionRunner:
			err = parse(&c.Runner, "")
		case SectionPrivacy:
			err = parse(&c.Privacy, "")
		case SectionKeys:
			err = parse(&c.Keys, "")
		case SectionRequests:
			err = parse(&c.Requests, "")
		case SectionConsent:
			err = parse(&c.Consent, "CONSENT_")
		case SectionKanon:
			err = parse(&c.Kanon, "KANON_")
		case SectionCastle:
			err = parse(&c.Castle, "CASTLE_")
		case SectionSchemas:
			if err = parse(&c.Schemas, ""); err == nil {
				err = parse(&c.Schemas.Registry, "SCHEMA_REGISTRY_")
			}
		default:
			err = fmt.Errorf("config: unknown section %d", sec)
		}
		if err != nil {
			return c, err
		}
	}
	return c, c.Validate(sections...)
}

// nameVariable turns env's "parse error on field K" into the variable's
// name (PIPELINE_CASTLE_K) for the section v read with prefix.
func nameVariable(v any, prefix string, err error) error {
	var pe env.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	f, ok := reflect.TypeOf(v).Elem().FieldByName(pe.Name)
	if !ok {
		return err
	}
	key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return fmt.Errorf("%s%s: %w", prefix, key, pe.Err)
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

// Validate checks, for the named sections (none: all) and always for
// Names, the values that env parsing cannot.
func (c Config) Validate(sections ...Section) error {
	if len(sections) == 0 {
		sections = AllSections
	}
	if err := c.Names.Validate(); err != nil {
		return err
	}
	for _, sec := range sections {
		var err error
		switch sec {
		case SectionKafka:
			if err = c.Kafka.Validate(); err != nil {
				err = fmt.Errorf("config: %w", err)
			}
		case SectionRedis:
			err = c.Redis.Validate()
		case SectionRunner:
			err = c.Runner.Validate()
		case SectionPrivacy:
			err = c.Privacy.Validate()
		case SectionRequests:
			err = c.Requests.Validate()
		case SectionConsent:
			if err = c.Consent.Validate(); err == nil {
				err = c.PrivacyCenter.Validate()
			}
		case SectionKanon:
			err = c.Kanon.Validate()
		case SectionCastle:
			err = c.Castle.Validate()
		case SectionSchemas:
			err = c.Schemas.Validate()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the name templates.
func (n Names) Validate() error {
	if !strings.Contains(n.CleanTopicTemplate, "{purpose}") {
		return fmt.Errorf("config: PIPELINE_CLEAN_TOPIC_TEMPLATE must contain {purpose}")
	}
	if !strings.Contains(n.StateTopicTemplate, "{processor}") {
		return fmt.Errorf("config: PIPELINE_STATE_TOPIC_TEMPLATE must contain {processor}")
	}
	if !strings.Contains(n.AggTopicTemplate, "{name}") || !strings.Contains(n.KanonTopicTemplate, "{purpose}") {
		return fmt.Errorf("config: PIPELINE_AGG_TOPIC_TEMPLATE must contain {name} and PIPELINE_KANON_TOPIC_TEMPLATE {purpose}")
	}
	return nil
}

// Validate checks that the password comes from one place and that the TLS
// files can be read (naming them, never a secret).
func (r Redis) Validate() error {
	if r.Password != "" && r.PasswordFile != "" {
		return fmt.Errorf("config: set PIPELINE_REDIS_PASSWORD or PIPELINE_REDIS_PASSWORD_FILE, not both")
	}
	if r.PasswordFile != "" {
		if _, err := tlsfiles.Secret(r.PasswordFile); err != nil {
			return fmt.Errorf("config: PIPELINE_REDIS_PASSWORD_FILE: %w", err)
		}
	}
	if r.TLSOn() {
		if _, err := tlsfiles.Client(r.TLSCAFile, r.TLSCertFile, r.TLSKeyFile, r.TLSServerName); err != nil {
			return fmt.Errorf("config: PIPELINE_REDIS_TLS_*: %w", err)
		}
	}
	return nil
}

// Validate checks the abort streak and the linger.
func (r Runner) Validate() error {
	if r.AbortAlertAfter < 1 {
		return fmt.Errorf("config: PIPELINE_ABORT_ALERT_AFTER must be at least 1")
	}
	if r.ProducerLinger < 0 || r.ProducerLinger > time.Second {
		return fmt.Errorf("config: PIPELINE_PRODUCER_LINGER must be between 0 and 1s")
	}
	return nil
}

// Validate checks the limits' refresh.
func (p Privacy) Validate() error {
	if p.LimitsRefresh <= 0 {
		return fmt.Errorf("config: PIPELINE_LIMITS_REFRESH must be positive")
	}
	return nil
}

// Validate checks the cache bounds.
func (c Consent) Validate() error {
	if c.CacheTTL <= 0 || c.CacheSize <= 0 {
		return fmt.Errorf("config: PIPELINE_CONSENT_CACHE_TTL and PIPELINE_CONSENT_CACHE_SIZE must be positive")
	}
	return nil
}

// Validate checks k, the windows, differential privacy and the partials.
func (k Kanon) Validate() error {
	if k.K < 2 {
		return fmt.Errorf("config: PIPELINE_KANON_K must be at least 2")
	}
	if k.Window <= 0 || k.AllowedLateness < 0 {
		return fmt.Errorf("config: PIPELINE_KANON_WINDOW must be positive and PIPELINE_KANON_ALLOWED_LATENESS not negative")
	}
	if k.DPEpsilon < 0 || (k.DPEpsilon > 0 && (k.DPDelta <= 0 || k.DPDelta >= 1 || k.DPMaxCells < 1 || k.DPMaxEventsCell < 1 || k.DPMaxAmount < 0)) {
		return fmt.Errorf("config: differential privacy needs PIPELINE_KANON_DP_EPSILON > 0, 0 < PIPELINE_KANON_DP_DELTA < 1 and positive contribution bounds")
	}
	if k.InputPartitions < 0 || k.PartialMaxBytes < 1024 || k.PartialMaxBytes > 1_000_000 {
		return fmt.Errorf("config: PIPELINE_KANON_INPUT_PARTITIONS must not be negative and PIPELINE_KANON_PARTIAL_MAX_BYTES between 1024 and 1000000")
	}
	return nil
}

// Validate checks CASTLE's parameters.
func (c Castle) Validate() error {
	if c.K < 2 {
		return fmt.Errorf("config: PIPELINE_CASTLE_K must be at least 2")
	}
	if c.Delta < c.K || c.Beta < 1 || c.Mu < 1 || c.L < 1 || c.MaxReuse < 0 || c.MaxDelay < 0 {
		return fmt.Errorf("config: CASTLE needs PIPELINE_CASTLE_DELTA >= PIPELINE_CASTLE_K, and positive BETA, MU and L")
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
	"requests":      ":9468",
}

// OpsAddr returns the address of a command's /metrics, /healthz and
// /readyz: PIPELINE_HTTP_ADDR when set, else the command's default.
func (c Config) OpsAddr(command string) string {
	if c.Ops.HTTPAddr != "" {
		return c.Ops.HTTPAddr
	}
	if a, ok := DefaultHTTPAddrs[command]; ok {
		return a
	}
	return ":9464"
}

// Redacted returns a copy safe to print: secrets are replaced.
func (c Config) Redacted() Config {
	if c.Redis.Password != "" {
		c.Redis.Password = "[redacted]"
	}
	if c.Privacy.PseudonymKeys != "" {
		c.Privacy.PseudonymKeys = "[redacted]"
	}
	c.Schemas.Registry = c.Schemas.Registry.Redacted()
	c.Kafka = c.Kafka.Redacted()
	return c
}
