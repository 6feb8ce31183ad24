package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Defaults of Options.
const (
	// DefaultMaxRecordsScanned bounds the records read per export.
	DefaultMaxRecordsScanned = 5_000_000
	// DefaultMaxDuration bounds an export's time.
	DefaultMaxDuration = 10 * time.Minute
	// DefaultMaxRecordsExported bounds the subject's records in a document.
	DefaultMaxRecordsExported = 100_000
	// DefaultProgressEvery is the least interval between progress calls.
	DefaultProgressEvery = time.Second
)

// ErrInvalidRequest is returned (wrapped) for a request that cannot be
// exported: an empty or invalid subject id, a request entry that is not
// JSON.
var ErrInvalidRequest = errors.New("export: invalid request")

// ConsentStore is what the exporter reads of the consent store
// (consentredis.RedisStore).
type ConsentStore interface {
	// Lookup fills out[i] for subjects[i] (one round trip); it fails while
	// the store is not loaded.
	Lookup(ctx context.Context, subjects []string, out []consent.Lookup) error
	// History returns the subject's changes, newest first.
	History(ctx context.Context, subject string) ([]consent.HistoryEntry, error)
}

// KeyStates reads data key states (keyredis.Store.State): "missing",
// "unlogged", "logged" or "shredded".
type KeyStates interface {
	State(ctx context.Context, id string) (string, error)
}

// KeyGetter unwraps data keys (keyredis.Store.Get, with its KMS). The
// exporter calls it only for ids whose state is logged or unlogged, so it
// creates no key (with keyredis's loaded check on, which wiring keeps).
type KeyGetter interface {
	Get(ctx context.Context, ids []string, r *subjectkey.Lookup) error
}

// ErasureCheck answers whether subjects were erased (erasure.Check).
type ErasureCheck interface {
	Erased(ctx context.Context, subjects []string) ([]bool, error)
}

// Config configures a Builder. Kafka, Topics, Consent, Keys, Keyring and
// Erased are required.
type Config struct {
	// Kafka is the connection: each Build opens its own read_committed
	// consumer and admin client from it and closes them.
	Kafka kafkaconn.Config
	// Topics maps each purpose (wire name) to its clean topic.
	Topics map[string]string
	// Consent is the consent store.
	Consent ConsentStore
	// Keys reads data key states; DataKeys unwraps them (nil: no
	// key-encryption key, encrypted fields are reported, not decrypted).
	Keys     KeyStates
	DataKeys KeyGetter
	// Keyring is the pseudonym keyring (every key of it: a subject's
	// records under a rotated key are still found).
	Keyring *pseudonym.Keyring
	// Erased is the erasure ledger check.
	Erased ErasureCheck
	// Raw and Policy (optional) give the derived clean schemas of
	// single-object framed records and the raw field of each encrypted
	// field when a writer schema does not carry it.
	Raw    *schemas.EventSchema
	Policy *policy.Policy
	// Resolver finds writer schemas by registry id (Confluent-framed
	// records); nil: only single-object records decode.
	Resolver wireformat.Resolver
	// HistoryCap is the consent history cap (PIPELINE_CONSENT_HISTORY_CAP),
	// to say when the history may be truncated; 0: not said.
	HistoryCap int
	// Options bound the scan.
	Options Options
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Options bound the cost of one export and choose its scan.
type Options struct {
	// MaxRecordsScanned stops the scan after this many records read, every
	// subject's counted (DefaultMaxRecordsScanned when 0).
	MaxRecordsScanned int64
	// MaxDuration stops the scan after this long (DefaultMaxDuration when
	// 0).
	MaxDuration time.Duration
	// MaxRecordsExported stops after this many of the subject's records
	// (DefaultMaxRecordsExported when 0), bounding the document's size.
	MaxRecordsExported int
	// FullScan reads every partition of every clean topic instead of
	// only those the subject's pseudonyms hash to.
	FullScan bool
	// PartitionCounts are earlier partition counts of the clean topics
	// (after ops added partitions, older records of a key stay in the
	// partition the old count chose): the partitions of the subject's
	// pseudonyms under each of them are read too.
	PartitionCounts []int
	// ProgressEvery is the least interval between progress calls while a
	// topic is read (DefaultProgressEvery when 0); the first and last
	// call of each topic are always made.
	ProgressEvery time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxRecordsScanned <= 0 {
		o.MaxRecordsScanned = DefaultMaxRecordsScanned
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = DefaultMaxDuration
	}
	if o.MaxRecordsExported <= 0 {
		o.MaxRecordsExported = DefaultMaxRecordsExported
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	return o
}

// Request is one export request.
type Request struct {
	// Subject is the raw subject id.
	Subject string
	// Requests are the subject's data-subject requests as the request
	// store holds them (each a JSON value), copied into the document.
	Requests []json.RawMessage
}

// Progress reports a scan's progress: offsets read of one topic and of
// all, out of the offsets between the scanned partitions' starts and
// captured ends.
type Progress struct {
	// Topic is the topic of this call; Scanned and Total its offsets.
	Topic          string
	Scanned, Total int64
	// AllScanned and AllTotal are over every topic of the export.
	AllScanned, AllTotal int64
	// RecordsScanned counts the records read so far (every topic).
	RecordsScanned int64
}

// Fraction is the share of every topic's offsets read, 0 to 1 (1 when
// there is nothing to read): a request's progress.
func (p Progress) Fraction() float64 {
	if p.AllTotal <= 0 {
		return 1
	}
	return min(1, float64(p.AllScanned)/float64(p.AllTotal))
}

// Builder builds export documents. It is safe for concurrent use: each
// Build opens its own clients.
type Builder struct {
	cfg Config
}

// New returns a Builder.
func New(cfg Config) (*Builder, error) {
	if len(cfg.Kafka.Brokers) == 0 || len(cfg.Topics) == 0 || cfg.Consent == nil || cfg.Keys == nil || cfg.Keyring == nil || cfg.Erased == nil {
		return nil, errors.New("export: Config needs Kafka, Topics, Consent, Keys, Keyring and Erased")
	}
	if (cfg.Raw == nil) != (cfg.Policy == nil) {
		return nil, errors.New("export: Config.Raw and Config.Policy go together")
	}
	cfg.Options = cfg.Options.withDefaults()
	for _, n := range cfg.Options.PartitionCounts {
		if n <= 0 {
			return nil, fmt.Errorf("export: a partition count of %d", n)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Builder{cfg: cfg}, nil
}

// identity is one pseudonym of the subject: what finds its records.
type identity struct {
	purpose, keyID, pseudonym, dataKey string
}

// Build exports the subject of req. progress (optional) is called while
// the clean topics are read. An invalid request is ErrInvalidRequest; a
// store or broker that cannot answer, or ctx ending, is an error (never a
// silently partial document); a bound that stops the scan gives a
// document with Complete false and the reason.
func (b *Builder) Build(ctx context.Context, req Request, progress func(Progress)) (Document, error) {
	if err := consentlog.ValidateSubject(req.Subject); err != nil {
		return Document{}, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	for i, r := range req.Requests {
		if !json.Valid(r) {
			return Document{}, fmt.Errorf("%w: request %d is not JSON", ErrInvalidRequest, i)
		}
	}
	start := b.cfg.Now()
	doc := Document{V: Version, SubjectID: req.Subject, GeneratedAt: start.UTC().Format(time.RFC3339Nano), Complete: true,
		Notes: []string{}, Pseudonyms: []Pseudonym{}, DataKeys: []DataKey{}, Requests: []json.RawMessage{}, Records: []TopicRecords{},
		Consent: Consent{History: []consent.HistoryEntry{}}}
	doc.Requests = append(doc.Requests, req.Requests...)

	erased, err := b.cfg.Erased.Erased(ctx, []string{req.Subject})
	if err != nil {
		return Document{}, fmt.Errorf("export: erasure ledger: %w", err)
	}
	doc.Erased = len(erased) == 1 && erased[0]

	if err := b.consent(ctx, req.Subject, &doc); err != nil {
		return Document{}, err
	}
	ids := b.identities(req.Subject, &doc)
	keys, err := b.dataKeys(ctx, ids, &doc)
	if err != nil {
		return Document{}, err
	}
	sc := &scan{b: b, ids: ids, keys: keys, progress: progress, doc: &doc}
	if err := sc.run(ctx); err != nil {
		return Document{}, err
	}
	doc.Scan.DurationMS = b.cfg.Now().Sub(start).Milliseconds()
	b.notes(&doc)
	return doc, nil
}

// consent fills the consent state and history.
func (b *Builder) consent(ctx context.Context, subject string, doc *Document) error {
	out := make([]consent.Lookup, 1)
	if err := b.cfg.Consent.Lookup(ctx, []string{subject}, out); err != nil {
		return fmt.Errorf("export: consent store: %w", err)
	}
	if l := out[0]; l.Found {
		st := &ConsentState{Unreadable: l.Corrupt, Purposes: []PurposeState{}}
		if !l.Corrupt {
			r := l.Record
			st.Jurisdiction, st.JurisdictionUpdatedAt = r.Jurisdiction.String(), formatMillis(r.JurisdictionMs)
			st.GPC, st.GPCUpdatedAt, st.Version = r.GPC, formatMillis(r.GPCMs), r.Version
			for _, p := range purpose.All {
				ps := r.Purposes[p]
				st.Purposes = append(st.Purposes, PurposeState{Purpose: p.String(), State: ps.State.String(), UpdatedAt: formatMillis(ps.UpdatedMs)})
			}
		}
		doc.Consent.State = st
	}
	h, err := b.cfg.Consent.History(ctx, subject)
	if err != nil {
		return fmt.Errorf("export: consent history: %w", err)
	}
	doc.Consent.History = append(doc.Consent.History, h...)
	return nil
}

// identities computes the subject's pseudonym under every key of the
// keyring, for the purposes that have a clean topic or a key.
func (b *Builder) identities(subject string, doc *Document) []identity {
	var ids []identity
	var buf []byte
	for _, pur := range b.purposes() {
		active, _ := b.cfg.Keyring.Active(pur)
		for _, k := range b.cfg.Keyring.Keys(pur) {
			buf = pseudonym.New(k).Append(buf[:0], "subject_id", subject)
			ps := string(buf)
			ids = append(ids, identity{purpose: pur, keyID: k.ID, pseudonym: ps, dataKey: subjectkey.ID(pur, k.ID, ps)})
			doc.Pseudonyms = append(doc.Pseudonyms, Pseudonym{Purpose: pur, KeyID: k.ID, Active: k.ID == active.ID, Pseudonym: ps})
		}
	}
	return ids
}

// purposes are the five purposes in their fixed order, then any other
// purpose of the keyring (sorted).
func (b *Builder) purposes() []string {
	out := purpose.Names()
	for _, p := range b.cfg.Keyring.Purposes() {
		if _, err := purpose.Parse(p); err != nil {
			out = append(out, p)
		}
	}
	return out
}

// dataKeys reports each data key's state and unwraps the live ones.
func (b *Builder) dataKeys(ctx context.Context, ids []identity, doc *Document) (map[string]keyState, error) {
	keys := map[string]keyState{}
	var live []string
	for _, id := range ids {
		st, err := b.cfg.Keys.State(ctx, id.dataKey)
		if err != nil {
			return nil, fmt.Errorf("export: data key store: %w", err)
		}
		if st == "missing" {
			st = KeyAbsent
		}
		doc.DataKeys = append(doc.DataKeys, DataKey{Purpose: id.purpose, KeyID: id.keyID, ID: id.dataKey, Status: st})
		keys[id.dataKey] = keyState{status: st}
		if st == KeyLogged || st == KeyUnlogged {
			live = append(live, id.dataKey)
		}
	}
	if len(live) == 0 || b.cfg.DataKeys == nil {
		return keys, nil
	}
	var lk subjectkey.Lookup
	if err := b.cfg.DataKeys.Get(ctx, live, &lk); err != nil {
		return nil, fmt.Errorf("export: data keys: %w", err)
	}
	for i, id := range live {
		ks := keys[id]
		switch {
		case lk.Shredded[i]: // shredded since its state was read
			ks.status = KeyShredded
		default:
			ks.key = lk.Keys[i]
		}
		keys[id] = ks
	}
	return keys, nil
}

type keyState struct {
	status string
	key    *subjectkey.DataKey
}

// notes explains the document and sets HoldsData.
func (b *Builder) notes(doc *Document) {
	held := doc.Erased || doc.Consent.State != nil || len(doc.Consent.History) > 0
	for _, k := range doc.DataKeys {
		held = held || k.Status != KeyAbsent
	}
	for _, t := range doc.Records {
		held = held || t.Matched > 0
	}
	doc.HoldsData = held
	if doc.Erased {
		doc.Notes = append(doc.Notes, "The subject was erased: its data keys are shredded, so no encrypted value of its records can be decrypted by anyone any more; "+
			"its consent state, history and tokens were deleted and its consent records tombstoned; the erasure ledger keeps a keyed hash of its id (no raw id) so that it is never re-keyed. "+
			"Records listed below are what the clean topics still retain, keyed by pseudonym, until their retention expires (fields the policy keeps in clear stay readable there until then); erasure notices were published for downstream stores.")
	}
	if !held {
		doc.Notes = append(doc.Notes, "The pipeline holds nothing about this subject: no consent state or history, no data key, no retained record in the clean topics scanned, no erasure.")
	}
	if b.cfg.HistoryCap > 0 && len(doc.Consent.History) >= b.cfg.HistoryCap {
		doc.Notes = append(doc.Notes, fmt.Sprintf("The consent history keeps the last %d changes; older ones are no longer held.", b.cfg.HistoryCap))
	}
	if doc.Scan.PartitionPruning {
		doc.Notes = append(doc.Notes, "Only the partitions the subject's pseudonyms hash to were read (Kafka's default key partitioner, which the pipeline's producers use), for the topics' current partition counts and the configured earlier ones.")
	}
	doc.Notes = append(doc.Notes, "Scanned: the clean topics. Not scanned: the raw and quarantine topics, restricted to the pipeline, which may hold the subject's events as received for their short retention; "+
		"the k-anonymous outputs (agg.*, kanon), which hold no record of one person.")
	if !doc.Complete {
		doc.Notes = append(doc.Notes, "The scan stopped at a bound ("+doc.IncompleteReason+") before reaching the end of every partition: the records below are not all the subject's retained records.")
	}
}

func formatMillis(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}
