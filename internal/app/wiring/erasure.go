package wiring

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
)

// Erase erases one subject with the configuration's stores and topics
// ('pipeline erase'): the pseudonym keyring (PIPELINE_PSEUDONYM_KEYS_FILE)
// names its data keys under every key, the ledger key
// (PIPELINE_ERASURE_KEY_FILE) its mark; the Kafka writes are one
// transaction (transactional id PIPELINE_TRANSACTIONAL_ID, else
// "privacy-pipeline-erasure-<host>").
func Erase(ctx context.Context, cfg config.Config, subject, request string) (erasure.Result, error) {
	if cfg.Keys.ErasureKeyFile == "" {
		return erasure.Result{}, errors.New("wiring: set PIPELINE_ERASURE_KEY_FILE (make one with 'pipeline keys ledger new --out FILE')")
	}
	ledger, err := erasure.LoadLedgerKey(cfg.Keys.ErasureKeyFile)
	if err != nil {
		return erasure.Result{}, fmt.Errorf("PIPELINE_ERASURE_KEY_FILE: %w", err)
	}
	keys, err := LoadKeys(cfg)
	if err != nil {
		return erasure.Result{}, err
	}
	ropts, err := RedisOptions(cfg)
	if err != nil {
		return erasure.Result{}, err
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	dks, err := keyredis.New(keyredis.Config{Redis: rdb, Prefix: cfg.Keys.DataKeyPrefix})
	if err != nil {
		return erasure.Result{}, err
	}
	txn := cfg.Runner.TransactionalID
	if txn == "" {
		host, _ := os.Hostname()
		txn = "privacy-pipeline-erasure-" + host
	}
	cl, err := cfg.Kafka.NewClient(kgo.TransactionalID(txn), kgo.RecordPartitioner(erasure.Partitioner(cfg.Names.ConsentTopic)))
	if err != nil {
		return erasure.Result{}, err
	}
	defer cl.Close()
	n := names(cfg)
	ex, err := erasure.NewExecutor(erasure.ExecutorConfig{Producer: cl, ConsentTopic: n.Consent, KeysTopic: n.Keys, ErasuresTopic: n.Erasures, AuditTopic: n.Audit,
		Consent: consentredis.NewRedisStore(rdb, consentredis.WithKeyPrefix(cfg.Consent.KeyPrefix)), Keys: dks, Keyring: keys, Ledger: ledger,
		Settle: cfg.Consent.CacheTTL})
	if err != nil {
		return erasure.Result{}, err
	}
	return ex.Erase(ctx, subject, request)
}
