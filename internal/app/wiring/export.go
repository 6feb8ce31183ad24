package wiring

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/export"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
)

// NewExporter builds the access and portability exporter from the
// configuration's stores and topics, as Erase does: the consent store
// (PIPELINE_CONSENT_KEY_PREFIX), the data keys (PIPELINE_DATA_KEY_PREFIX;
// with PIPELINE_KEK_FILE their values decrypt, without it they are
// reported, not decrypted), the pseudonym keyring, the erasure ledger
// (PIPELINE_ERASURE_KEY_FILE, required: an export of an erased subject
// must say so), the policy and the schema registry (the writer schemas of
// Confluent-framed clean records), and the clean topics' names. opts
// bounds each export (zero values: the package defaults); ctx is not kept
// (nothing is fetched at construction). The returned
// function closes its Redis client.
func NewExporter(ctx context.Context, cfg config.Config, opts export.Options) (*export.Builder, func(), error) {
	if cfg.Keys.ErasureKeyFile == "" {
		return nil, nil, errors.New("wiring: set PIPELINE_ERASURE_KEY_FILE (make one with 'pipeline keys ledger new --out FILE')")
	}
	ledger, err := erasure.LoadLedgerKey(cfg.Keys.ErasureKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("PIPELINE_ERASURE_KEY_FILE: %w", err)
	}
	keys, err := LoadKeys(cfg)
	if err != nil {
		return nil, nil, err
	}
	raw, pol, err := LoadPolicy(cfg)
	if err != nil {
		return nil, nil, err
	}
	ropts, err := RedisOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(ropts)
	// The loaded check stays on (never SkipLoadedCheck): the exporter
	// unwraps only keys it saw stored, and on a cache not loaded from the
	// key topic Get refuses instead of creating one.
	kc := keyredis.Config{Redis: rdb, Prefix: cfg.Keys.DataKeyPrefix, CacheTTL: cfg.Keys.DataKeyCacheTTL}
	if cfg.Keys.KEKFile != "" {
		if kc.KMS, err = subjectkey.LoadKEKFile(cfg.Keys.KEKFile); err != nil {
			rdb.Close()
			return nil, nil, fmt.Errorf("PIPELINE_KEK_FILE: %w", err)
		}
	}
	dks, err := keyredis.New(kc)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	ecfg := export.Config{Kafka: cfg.Kafka, Topics: map[string]string{},
		Consent: consentredis.NewRedisStore(rdb, consentredis.WithKeyPrefix(cfg.Consent.KeyPrefix), consentredis.WithRequireLoaded(cfg.Consent.RequireLoaded)),
		Keys:    dks, Keyring: keys, Erased: erasure.Check{Ledger: ledger, Keys: dks}, Raw: raw, Policy: pol,
		HistoryCap: cfg.Consent.HistoryCap, Options: opts}
	if kc.KMS != nil {
		ecfg.DataKeys = dks
	}
	for _, p := range purpose.All {
		ecfg.Topics[p.String()] = CleanTopic(cfg, p)
	}
	if cfg.Schemas.Registry.Configured() {
		cl, err := cfg.Schemas.Registry.NewClient()
		if err != nil {
			rdb.Close()
			return nil, nil, err
		}
		ecfg.Resolver = cl
	}
	b, err := export.New(ecfg)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return b, func() { rdb.Close() }, nil
}
