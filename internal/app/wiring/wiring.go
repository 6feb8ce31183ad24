// Package wiring assembles the privacy processor from configuration: raw
// schema, policy, writer schemas, pseudonym keys, consent store and cache,
// metrics. cmd/pipeline, the embedded demo and the integration tests all
// build the processor through it, so they run the same thing.
//
// It imports the internal packages, go-redis and processors/privacy.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/codec/eventcodec"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
	"github.com/privacy-pipeline/pipeline/processors/kit/writers"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Privacy is an assembled privacy processor and what it was built from.
type Privacy struct {
	Processor *privacy.Processor
	Raw       *schemas.EventSchema
	Policy    *policy.Policy
	Keys      *pseudonym.Keyring
	Decoder   *eventcodec.Decoder
	Cache     *consentredis.Cache
	Store     *consentredis.RedisStore
	Metrics   *privacy.Metrics
	Topics    privacy.Topics
	// DataKeys is the data keys' store when the policy encrypts or
	// tokenizes a field (nil otherwise).
	DataKeys *keyredis.Store
}

// Deps are the externally owned parts.
type Deps struct {
	Redis    redis.UniversalClient
	Registry prometheus.Registerer
	Log      *slog.Logger
	// Keys, when set, is used instead of the configured keyring (the demo
	// generates one).
	Keys *pseudonym.Keyring
}

// LoadPolicy reads the configured policy file, or the checked-in one, and
// validates it against the raw schema.
func LoadPolicy(cfg config.Config) (*schemas.EventSchema, *policy.Policy, error) {
	raw, err := schemas.RawEvent()
	if err != nil {
		return nil, nil, err
	}
	data := schemas.PolicyJSON()
	if cfg.Privacy.PolicyFile != "" {
		if data, err = os.ReadFile(cfg.Privacy.PolicyFile); err != nil {
			return nil, nil, fmt.Errorf("policy file: %w", err)
		}
	}
	p, err := policy.Load(data, raw)
	if err != nil {
		return nil, nil, err
	}
	return raw, p, nil
}

// LoadKeys reads the pseudonym keyring from PIPELINE_PSEUDONYM_KEYS_FILE or
// PIPELINE_PSEUDONYM_KEYS. Errors never contain key material.
func LoadKeys(cfg config.Config) (*pseudonym.Keyring, error) {
	switch {
	case cfg.Privacy.PseudonymKeysFile != "" && cfg.Privacy.PseudonymKeys != "":
		return nil, fmt.Errorf("set PIPELINE_PSEUDONYM_KEYS_FILE or PIPELINE_PSEUDONYM_KEYS, not both")
	case cfg.Privacy.PseudonymKeysFile != "":
		return pseudonym.LoadKeyring(cfg.Privacy.PseudonymKeysFile)
	case cfg.Privacy.PseudonymKeys != "":
		k, err := pseudonym.ParseKeyring([]byte(cfg.Privacy.PseudonymKeys))
		if err != nil {
			return nil, fmt.Errorf("PIPELINE_PSEUDONYM_KEYS: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("no pseudonym keys: set PIPELINE_PSEUDONYM_KEYS_FILE (see README, 'Pseudonym keys')")
}

// RedisOptions returns go-redis options for the configured address, ACL
// user and password (a password file is re-read at every new connection)
// and TLS (PIPELINE_REDIS_TLS_*, package tlsfiles).
func RedisOptions(cfg config.Config) (*redis.Options, error) {
	r := cfg.Redis
	// The processor retries with its own backoff (and reports itself paused),
	// so the client fails fast instead of retrying dials for seconds.
	o := &redis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
	if r.PasswordFile != "" {
		if _, err := tlsfiles.Secret(r.PasswordFile); err != nil {
			return nil, fmt.Errorf("redis password file: %w", err)
		}
		file, user := r.PasswordFile, r.Username
		o.Password = ""
		o.CredentialsProviderContext = func(context.Context) (string, string, error) {
			pw, err := tlsfiles.Secret(file)
			return user, pw, err
		}
	}
	if r.TLSOn() {
		tc, err := tlsfiles.Client(r.TLSCAFile, r.TLSCertFile, r.TLSKeyFile, r.TLSServerName)
		if err != nil {
			return nil, fmt.Errorf("redis TLS: %w", err)
		}
		o.TLSConfig = tc
	}
	return o, nil
}

// Topics returns the configured topic names.
func Topics(cfg config.Config) privacy.Topics {
	var t privacy.Topics
	for _, p := range purpose.All {
		t.Clean[p] = CleanTopic(cfg, p)
	}
	t.Quarantine, t.Keys, t.Audit = names(cfg).Quarantine, names(cfg).Keys, names(cfg).Audit
	return t
}

// Schemas returns what a processor needs from the schema registry
// (PIPELINE_WIRE_FORMAT, PIPELINE_SCHEMA_REGISTRY_*): the framer of its
// outputs, which registers their derived schemas under TopicNameStrategy
// subjects while ctx lasts (the Confluent wire format, the default), and
// the resolver of its inputs' writer schema ids. m may be nil.
func Schemas(ctx context.Context, cfg config.Config, m *writers.Metrics) (writers.Schemas, error) {
	s := writers.Schemas{Metrics: m}
	var cl *schemaregistry.Client
	if cfg.Schemas.Registry.Configured() {
		var err error
		if cl, err = cfg.Schemas.Registry.NewClient(); err != nil {
			return s, err
		}
		s.Registry = cl
	}
	switch cfg.Schemas.Format() {
	case wireformat.SingleObject:
		s.Framer = wireformat.SingleObjectFramer{}
	case wireformat.Confluent:
		if cl == nil {
			return s, ErrNoRegistry
		}
		s.Framer = cl.Framer(ctx)
	default:
		return s, fmt.Errorf("wiring: PIPELINE_WIRE_FORMAT %q: want confluent or single-object", cfg.Schemas.WireFormat)
	}
	return s, nil
}

// BuildPrivacy assembles the privacy processor; ctx bounds the
// registration of its clean schemas.
func BuildPrivacy(ctx context.Context, cfg config.Config, deps Deps) (*Privacy, error) {
	raw, pol, err := LoadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	keys := deps.Keys
	if keys == nil {
		if keys, err = LoadKeys(cfg); err != nil {
			return nil, err
		}
	}
	dec, err := eventcodec.NewDecoder(raw, schemas.RawEventSchemaJSON(), eventcodec.WithLimits(eventcodec.Limits{
		MaxRecordBytes: cfg.Privacy.MaxRecordBytes, MaxFieldBytes: cfg.Privacy.MaxFieldBytes,
		MaxPast: cfg.Privacy.MaxEventAge, MaxFuture: cfg.Privacy.MaxEventFuture,
	}))
	if err != nil {
		return nil, err
	}
	if cfg.Privacy.WriterSchemasDir != "" {
		if err := registerWriterSchemas(dec, cfg.Privacy.WriterSchemasDir); err != nil {
			return nil, err
		}
	}
	if deps.Redis == nil || deps.Registry == nil {
		return nil, fmt.Errorf("wiring: Redis and Registry are required")
	}
	store := consentredis.NewRedisStore(deps.Redis, consentredis.WithKeyPrefix(cfg.Consent.KeyPrefix),
		consentredis.WithRequireLoaded(cfg.Consent.RequireLoaded))
	cache := consentredis.NewCache(store, consentredis.WithTTL(cfg.Consent.CacheTTL), consentredis.WithMaxEntries(cfg.Consent.CacheSize))
	m := privacy.NewMetrics(deps.Registry)
	sch, err := Schemas(ctx, cfg, writers.NewMetrics(deps.Registry, privacy.Name))
	if err != nil {
		return nil, err
	}
	sch.InputSubject = wireformat.TopicSubject(cfg.Names.RawTopic)
	topics := Topics(cfg)
	pcfg := privacy.Config{
		Raw: raw, Policy: pol, Keys: keys, Decoder: dec, Consent: cache, Metrics: m, Topics: topics, Log: deps.Log,
		Limits: DefaultLimits(), Schemas: sch,
	}
	var dks *keyredis.Store
	if needsDataKeys(pol) {
		if dks, err = DataKeys(cfg, deps.Redis); err != nil {
			return nil, err
		}
		pcfg.DataKeys = dks
	}
	if check, err := ErasureCheck(cfg, deps.Redis); err != nil {
		return nil, err
	} else if check != nil {
		pcfg.Erased = check
	}
	proc, err := privacy.New(pcfg)
	if err != nil {
		return nil, err
	}
	return &Privacy{Processor: proc, Raw: raw, Policy: pol, Keys: keys, Decoder: dec, Cache: cache, Store: store, Metrics: m, Topics: topics, DataKeys: dks}, nil
}

// needsDataKeys reports whether some purpose encrypts or tokenizes.
func needsDataKeys(pol *policy.Policy) bool {
	for _, p := range purpose.All {
		if pol.NeedsDataKeys(p) {
			return true
		}
	}
	return false
}

// ErasureCheck returns the erasure ledger's lookup on rdb when
// PIPELINE_ERASURE_KEY_FILE is set (nil, nil otherwise): the subjects'
// keyed-hash marks, read from the data keys' store.
func ErasureCheck(cfg config.Config, rdb redis.UniversalClient) (*erasure.Check, error) {
	if cfg.Keys.ErasureKeyFile == "" {
		return nil, nil
	}
	l, err := erasure.LoadLedgerKey(cfg.Keys.ErasureKeyFile)
	if err != nil {
		return nil, fmt.Errorf("PIPELINE_ERASURE_KEY_FILE: %w", err)
	}
	keys, err := keyredis.New(keyredis.Config{Redis: rdb, Prefix: cfg.Keys.DataKeyPrefix})
	if err != nil {
		return nil, err
	}
	return &erasure.Check{Ledger: l, Keys: keys}, nil
}

// DataKeys returns the per-subject data keys' store on rdb, its key-
// encryption key read from PIPELINE_KEK_FILE.
func DataKeys(cfg config.Config, rdb redis.UniversalClient) (*keyredis.Store, error) {
	if cfg.Keys.KEKFile == "" {
		return nil, errors.New("wiring: the policy encrypts or tokenizes a field: set PIPELINE_KEK_FILE (make one with 'pipeline keys kek new --out FILE')")
	}
	kms, err := subjectkey.LoadKEKFile(cfg.Keys.KEKFile)
	if err != nil {
		return nil, fmt.Errorf("PIPELINE_KEK_FILE: %w", err)
	}
	// PIPELINE_CONSENT_REQUIRE_LOADED=false (the demo) also lets the data
	// keys be served before the key sync has loaded the key topic.
	return keyredis.New(keyredis.Config{Redis: rdb, Prefix: cfg.Keys.DataKeyPrefix, KMS: kms, CacheTTL: cfg.Keys.DataKeyCacheTTL,
		SkipLoadedCheck: !cfg.Consent.RequireLoaded})
}

// registerWriterSchemas registers every *.avsc in dir as a known writer
// schema (producers' evolved schemas).
func registerWriterSchemas(dec *eventcodec.Decoder, dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.avsc"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("writer schema: %w", err)
		}
		if _, err := dec.Register(b); err != nil {
			return fmt.Errorf("writer schema %s: %w", filepath.Base(p), err)
		}
	}
	return nil
}
