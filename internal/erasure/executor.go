package erasure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
)

// ExecutorConfig configures an Executor.
type ExecutorConfig struct {
	// Producer is a transactional client (kgo.TransactionalID) built with
	// Partitioner(ConsentTopic): the executor's records go where their
	// writers put the records they replace.
	Producer *kgo.Client
	// ConsentTopic, KeysTopic and ErasuresTopic are privacy.consent,
	// privacy.keys and privacy.erasures.
	ConsentTopic, KeysTopic, ErasuresTopic string
	// AuditTopic is privacy.audit: every erasure writes its audit record
	// (internal/audit, kind erasure) in its transaction.
	AuditTopic string
	// Service names the writer in the audit record (its key); default
	// "erasure".
	Service string
	// Consent is the consent store (its state and history are deleted).
	Consent *consentredis.RedisStore
	// Keys is the data keys' store (the keys are shredded, the ledger mark
	// set: a mark is stored as a shredded id, so one MGET answers both).
	Keys *keyredis.Store
	// Keyring is the pseudonym keyring (every key of it is planned).
	Keyring *pseudonym.Keyring
	// Ledger computes the subject's mark.
	Ledger *Ledger
	// Settle is how long Erase waits after deleting the consent state
	// before it returns: the processors' consent cache TTL
	// (PIPELINE_CONSENT_CACHE_TTL), so that when Erase returns no cache
	// still holds the subject's consent and every event processed from
	// then on is denied.
	Settle time.Duration
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Executor carries out erasures. It is safe for one goroutine at a time
// (one transactional producer).
type Executor struct{ cfg ExecutorConfig }

// NewExecutor returns an Executor.
func NewExecutor(cfg ExecutorConfig) (*Executor, error) {
	if cfg.Producer == nil || cfg.Consent == nil || cfg.Keys == nil || cfg.Keyring == nil || cfg.Ledger == nil ||
		cfg.ConsentTopic == "" || cfg.KeysTopic == "" || cfg.ErasuresTopic == "" || cfg.AuditTopic == "" {
		return nil, errors.New("erasure: ExecutorConfig needs Producer, the four topics (consent, keys, erasures, audit), Consent, Keys, Keyring and Ledger")
	}
	if cfg.Service == "" {
		cfg.Service = "erasure"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Executor{cfg: cfg}, nil
}

// Partitioner routes the executor's records as their writers route what
// they replace (a tombstone only compacts away a record of its own
// partition): consent tombstones by subject (consentlog.Partitioner),
// every other record by key (Kafka's default, as the processors' runner
// does).
func Partitioner(consentTopic string) kgo.Partitioner {
	return topicPartitioner{consent: consentTopic, byConsent: consentlog.Partitioner(), def: kgo.StickyKeyPartitioner(nil)}
}

type topicPartitioner struct {
	consent        string
	byConsent, def kgo.Partitioner
}

func (p topicPartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == p.consent {
		return p.byConsent.ForTopic(t)
	}
	return p.def.ForTopic(t)
}

// LedgerRecord is the value of a ledger mark's record on the key topic
// (never a tombstone: compaction keeps it, and the key sync restores the
// mark from it).
type LedgerRecord struct {
	V        int    `json:"v"`
	ErasedMS int64  `json:"erased_ms"`
	Request  string `json:"request,omitempty"`
}

// NoticeRecord is the value of an erasure notice on privacy.erasures
// (keyed by the pseudonym).
type NoticeRecord struct {
	Notice
	ErasedMS int64  `json:"erased_ms"`
	Request  string `json:"request,omitempty"`
}

// Result is what one erasure did.
type Result struct {
	Plan Plan
	// RedisKeysDeleted counts the consent record and history keys removed.
	RedisKeysDeleted int64
	// Records counts what was committed to Kafka (tombstones, the ledger
	// record, the notices).
	Records int
}

// Erase erases subject (request is the request id, carried in the
// ledger record and the notices):
//
//  1. in Redis, its data keys are shredded and its ledger mark set, so
//     the processors stop encrypting for it at once (their caches within
//     PIPELINE_DATA_KEY_CACHE_TTL) and never create a key for it again;
//  2. in one Kafka transaction: the ledger record and a tombstone per
//     data key on the key topic, a tombstone per key of the subject on the
//     consent topic (compaction then removes the raw id from the log), and
//     one notice per purpose pseudonym on privacy.erasures, and the
//     erasure's audit record on privacy.audit (its ledger mark, the
//     request id and what it removed; no raw id);
//  3. in Redis, its consent record and history are deleted (after the
//     commit: until then a failed erasure leaves consent as it was), the
//     caches are told, and Erase waits Settle: from its return on, no
//     processor publishes an event about the subject.
//
// It is idempotent: a retry after a failure at any step ends in the same
// state.
func (e *Executor) Erase(ctx context.Context, subject, request string) (Result, error) {
	p, err := PlanFor(subject, e.cfg.Keyring, e.cfg.Ledger)
	if err != nil {
		return Result{}, err
	}
	res := Result{Plan: p}
	if err := e.cfg.Keys.Shred(ctx, append(append([]string(nil), p.DataKeys...), p.Mark)...); err != nil {
		return res, fmt.Errorf("erasure: %s: %w", p.Mark, err)
	}
	now := e.cfg.Now().UnixMilli()
	ledger, _ := json.Marshal(LedgerRecord{V: 1, ErasedMS: now, Request: request})
	recs := []*kgo.Record{{Topic: e.cfg.KeysTopic, Key: []byte(p.Mark), Value: ledger}}
	for _, id := range p.DataKeys {
		recs = append(recs, &kgo.Record{Topic: e.cfg.KeysTopic, Key: []byte(id)})
	}
	for _, k := range p.ConsentKeys {
		recs = append(recs, &kgo.Record{Topic: e.cfg.ConsentTopic, Key: k})
	}
	for _, n := range p.Notices {
		v, _ := json.Marshal(NoticeRecord{Notice: n, ErasedMS: now, Request: request})
		recs = append(recs, &kgo.Record{Topic: e.cfg.ErasuresTopic, Key: []byte(n.Pseudonym), Value: v})
	}
	ar := audit.Erasure(time.UnixMilli(now), e.cfg.Service, "", audit.ErasureSummary{Request: request, SubjectRef: p.Mark,
		KeysShredded: len(p.DataKeys), KeyTombstones: len(p.DataKeys), ConsentTombstones: len(p.ConsentKeys), Notices: len(p.Notices)})
	av, err := audit.Encode(ar)
	if err != nil {
		return res, fmt.Errorf("erasure: %s: audit record: %w", p.Mark, err)
	}
	recs = append(recs, &kgo.Record{Topic: e.cfg.AuditTopic, Key: ar.Key(), Value: av})
	if err := e.commit(ctx, recs); err != nil {
		return res, fmt.Errorf("erasure: %s: %w", p.Mark, err)
	}
	res.Records = len(recs)
	n, err := e.cfg.Consent.Delete(ctx, subject)
	res.RedisKeysDeleted = n
	if err != nil {
		return res, fmt.Errorf("erasure: %s: %w", p.Mark, err)
	}
	select {
	case <-ctx.Done():
		return res, fmt.Errorf("erasure: %s: %w", p.Mark, ctx.Err())
	case <-time.After(e.cfg.Settle):
	}
	return res, nil
}

// commit produces recs in one transaction.
func (e *Executor) commit(ctx context.Context, recs []*kgo.Record) error {
	cl := e.cfg.Producer
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	perr := cl.ProduceSync(ctx, recs...).FirstErr()
	commit := kgo.TryCommit
	if perr != nil {
		commit = kgo.TryAbort
	}
	if err := cl.EndTransaction(ctx, commit); err != nil {
		return errors.Join(perr, err)
	}
	return perr
}
