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
	txn := cfg.Runner.TransactionalID
	if txn == "" {
		host, _ := os.Hostname()
		txn = "privacy-pipeline-erasure-" + host
	}
	ex, closeEx, err := NewEraser(cfg, txn)
	if err != nil {
		return erasure.Result{}, err
	}
	defer closeEx()
	return ex.Erase(ctx, subject, request)
}

// NewEraser builds the erasure executor from the configuration's stores
// and topics (see Erase) with the transactional id txn; the returned
// function closes its clients.
func NewEraser(cfg config.Config, txn string) (*erasure.Executor, func(), error) {
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
	ropts, err := RedisOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(ropts)
	dks, err := keyredis.New(keyredis.Config{Redis: rdb, Prefix: cfg.Keys.DataKeyPrefix})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	cl, err := cfg.Kafka.NewClient(kgo.TransactionalID(txn), kgo.RecordPartitioner(erasure.Partitioner(cfg.Names.ConsentTopic)))
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	closeAll := func() { cl.Close(); rdb.Close() }
	n := names(cfg)
	ex, err := erasure.NewExecutor(erasure.ExecutorConfig{Producer: cl, ConsentTopic: n.Consent, KeysTopic: n.Keys, ErasuresTopic: n.Erasures, AuditTopic: n.Audit,
		Consent: consentredis.NewRedisStore(rdb, consentredis.WithKeyPrefix(cfg.Consent.KeyPrefix)), Keys: dks, Keyring: keys, Ledger: ledger,
		Settle: cfg.Consent.CacheTTL})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return ex, closeAll, nil
}
