package export

import (
	"bytes"
	"encoding/json"

	"github.com/privacy-pipeline/pipeline/internal/consent"
)

// Version is the document format's version (the "v" field).
const Version = 1

// Reasons a document is incomplete (Document.IncompleteReason).
const (
	// ReasonMaxRecordsScanned: Options.MaxRecordsScanned records were read
	// before every partition reached its captured end.
	ReasonMaxRecordsScanned = "max_records_scanned"
	// ReasonMaxDuration: Options.MaxDuration passed before every
	// partition reached its captured end.
	ReasonMaxDuration = "max_duration"
	// ReasonMaxRecordsExported: the subject has more than
	// Options.MaxRecordsExported retained records; the first ones found
	// are in the document.
	ReasonMaxRecordsExported = "max_records_exported"
)

// Key states (DataKey.Status), as the data key store holds them.
const (
	// KeyLogged: the key is on privacy.keys (the source of truth).
	KeyLogged = "logged"
	// KeyUnlogged: created, not yet seen on privacy.keys by the key sync.
	KeyUnlogged = "unlogged"
	// KeyShredded: erased; never created again.
	KeyShredded = "shredded"
	// KeyAbsent: the subject never had a key of this id (its purpose
	// encrypts nothing, or nothing of it was published under this key).
	KeyAbsent = "absent"
)

// Decryption outcomes (Decrypted.Status).
const (
	// StatusDecrypted: Value (or ValueBase64) holds the plaintext.
	StatusDecrypted = "decrypted"
	// StatusKeyShredded: the subject's data key was shredded (erasure):
	// nobody can decrypt the value any more.
	StatusKeyShredded = "key_shredded"
	// StatusKeyAbsent: the data key store has no key of this id.
	StatusKeyAbsent = "key_absent"
	// StatusNoKEK: the exporter has no key-encryption key
	// (PIPELINE_KEK_FILE), so it cannot unwrap the data key.
	StatusNoKEK = "no_key_encryption_key"
	// StatusDataKeyMismatch: the record's pp-data-key header names another
	// key than the subject's own for this purpose and pseudonym key; the
	// value is not decrypted (a record pointing at another subject's key
	// never has that key used for this subject's export).
	StatusDataKeyMismatch = "data_key_mismatch"
	// StatusDoesNotDecrypt: the value does not decrypt with the subject's
	// key for this field (tampered, or another subject's ciphertext).
	StatusDoesNotDecrypt = "does_not_decrypt"
	// StatusUnknownSource: the writer schema does not say which raw field
	// the value was encrypted from (its associated data).
	StatusUnknownSource = "unknown_source_field"
)

// Document is the export of one data subject: everything the pipeline
// holds about it. Its JSON fields come in the order declared here (the
// package documentation describes each).
type Document struct {
	// V is the format version (Version).
	V int `json:"v"`
	// SubjectID is the raw subject id (the document goes to the subject).
	SubjectID string `json:"subject_id"`
	// GeneratedAt is when the export started (RFC 3339, UTC).
	GeneratedAt string `json:"generated_at"`
	// Complete is false when a bound stopped the scan of the clean
	// topics; IncompleteReason says which.
	Complete         bool   `json:"complete"`
	IncompleteReason string `json:"incomplete_reason,omitempty"`
	// Erased: the erasure ledger holds the subject's mark.
	Erased bool `json:"erased"`
	// HoldsData: the pipeline holds something about the subject (consent,
	// history, a data key in any state, a retained record, an erasure
	// mark). False for a subject the pipeline never saw.
	HoldsData bool `json:"holds_data"`
	// Notes explain the document in words (erased, nothing held, history
	// possibly truncated, pruning assumptions).
	Notes []string `json:"notes"`
	// Consent is the consent state and history.
	Consent Consent `json:"consent"`
	// Pseudonyms are per purpose and pseudonym key.
	Pseudonyms []Pseudonym `json:"pseudonyms"`
	// DataKeys are per purpose and pseudonym key.
	DataKeys []DataKey `json:"data_keys"`
	// Requests are the caller's, as given.
	Requests []json.RawMessage `json:"requests"`
	// Records are per clean topic.
	Records []TopicRecords `json:"records"`
	// Scan describes the scan and its bounds.
	Scan Scan `json:"scan"`
}

// Consent is the subject's consent as the consent store holds it.
type Consent struct {
	// State is the current record; nil when none is stored.
	State *ConsentState `json:"state"`
	// History is the change history, newest first, as the consent sync
	// keeps it (at most PIPELINE_CONSENT_HISTORY_CAP entries).
	History []consent.HistoryEntry `json:"history"`
}

// ConsentState is the current consent record.
type ConsentState struct {
	// Unreadable: a record is stored but does not parse (the pipeline
	// denies every purpose); the other fields are then empty.
	Unreadable bool `json:"unreadable"`
	// Jurisdiction is the recorded jurisdiction, and when it was recorded.
	Jurisdiction          string `json:"jurisdiction"`
	JurisdictionUpdatedAt string `json:"jurisdiction_updated_at"`
	// GPC is true when a Global Privacy Control signal is recorded.
	GPC          bool   `json:"gpc"`
	GPCUpdatedAt string `json:"gpc_updated_at"`
	// Version is the newest change applied (ms since the epoch): the
	// pp-consent-version of records decided on this state.
	Version int64 `json:"version"`
	// Purposes are in the fixed purpose order.
	Purposes []PurposeState `json:"purposes"`
}

// PurposeState is one purpose's current consent.
type PurposeState struct {
	// Purpose is the purpose's wire name.
	Purpose string `json:"purpose"`
	// State is unset, granted, denied or withdrawn.
	State string `json:"state"`
	// UpdatedAt is when it was set (RFC 3339; empty when never).
	UpdatedAt string `json:"updated_at"`
}

// Pseudonym is the subject's pseudonym under one pseudonym key: the key
// of its records on the purpose's clean topic.
type Pseudonym struct {
	// Purpose and KeyID name the pseudonym key; Active is true for the
	// purpose's active key (false for a rotated-out one).
	Purpose string `json:"purpose"`
	KeyID   string `json:"key_id"`
	Active  bool   `json:"active"`
	// Pseudonym is the subject's pseudonym under the key.
	Pseudonym string `json:"pseudonym"`
}

// DataKey is the subject's data key for one purpose and pseudonym key.
type DataKey struct {
	// Purpose and KeyID name the pseudonym key the data key belongs to.
	Purpose string `json:"purpose"`
	KeyID   string `json:"key_id"`
	// ID is the data key's id (subjectkey.ID): the pp-data-key header of
	// the records encrypted with it.
	ID string `json:"id"`
	// Status is logged, unlogged, shredded or absent.
	Status string `json:"status"`
}

// TopicRecords is what one clean topic retains of the subject.
type TopicRecords struct {
	// Topic is the clean topic, Purpose its purpose.
	Topic   string `json:"topic"`
	Purpose string `json:"purpose"`
	// Exists is false when the topic does not exist on the cluster.
	Exists bool `json:"exists"`
	// Partitions is the partition count of the topic; Scanned are the
	// partitions read (all of them without pruning).
	Partitions int             `json:"partitions"`
	Scanned    []PartitionScan `json:"scanned"`
	// RecordsScanned counts the records read (every subject's);
	// Matched the subject's; Undecodable the subject's records that did
	// not decode (skipped).
	RecordsScanned int64 `json:"records_scanned"`
	Matched        int64 `json:"matched"`
	Undecodable    int64 `json:"undecodable"`
	// Complete: every scanned partition was read to its captured end.
	Complete bool `json:"complete"`
	// Records are the subject's decoded records, in offset order per
	// partition.
	Records []Record `json:"records"`
}

// PartitionScan is one partition's range: from its start offset to the
// end captured when the export started (the last stable offset), and
// how far the scan got (Reached == End when complete).
type PartitionScan struct {
	// Partition is the partition number.
	Partition int32 `json:"partition"`
	// Start is its first offset, End the captured end (exclusive),
	// Reached the offset after the last one read.
	Start   int64 `json:"start"`
	End     int64 `json:"end"`
	Reached int64 `json:"reached"`
}

// Record is one of the subject's retained clean records.
type Record struct {
	// Topic, Partition and Offset locate the record; Timestamp is its
	// log time (RFC 3339, UTC).
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp string `json:"timestamp"`
	// Key is the record's key: the subject's pseudonym.
	Key string `json:"key"`
	// Provenance is from the record's headers.
	Provenance Provenance `json:"provenance"`
	// Writer names the writer schema (registry id or fingerprint).
	Writer string `json:"writer_schema"`
	// Value is the record's fields in writer-schema order, as stored:
	// encrypted fields as their "e1." ciphertext, tokens as tokens.
	Value Fields `json:"value"`
	// Decrypted holds the plaintext of each encrypted field, or why not.
	Decrypted []Decrypted `json:"decrypted,omitempty"`
}

// Provenance is the record's provenance headers (SPEC 3.8).
type Provenance struct {
	// PolicyVersion is pp-policy-version.
	PolicyVersion string `json:"policy_version"`
	// ConsentVersion is pp-consent-version, ConsentBasis pp-consent-basis.
	ConsentVersion string `json:"consent_version"`
	ConsentBasis   string `json:"consent_basis,omitempty"`
	// KeyID is pp-key-id (the pseudonym key).
	KeyID string `json:"key_id"`
	// DataKey is pp-data-key (records with encrypted fields).
	DataKey string `json:"data_key,omitempty"`
	// Schema is pp-schema.
	Schema string `json:"schema,omitempty"`
}

// Decrypted is one encrypted field's plaintext (Status decrypted) or why
// it is not given.
type Decrypted struct {
	// Field is the clean field, SourceField the raw field it was
	// encrypted from.
	Field       string `json:"field"`
	SourceField string `json:"source_field"`
	// Status is one of the Status* values.
	Status string `json:"status"`
	// Value is the plaintext when it is valid UTF-8; ValueBase64 otherwise.
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

// Scan describes the scan of the clean topics and its bounds.
type Scan struct {
	// PartitionPruning: only the partitions the subject's pseudonyms hash
	// to were read (Options.FullScan off); PartitionCounts are the
	// partition counts assumed for the hashing (the topics' current ones
	// and Options.PartitionCounts).
	PartitionPruning bool `json:"partition_pruning"`
	// RecordsScanned counts the records read (every subject's, every
	// topic); OffsetsToScan the offsets between the scanned partitions'
	// starts and captured ends.
	RecordsScanned int64 `json:"records_scanned"`
	OffsetsToScan  int64 `json:"offsets_to_scan"`
	// DurationMS is how long the export took.
	DurationMS int64 `json:"duration_ms"`
	// MaxRecords, MaxDurationMS and MaxExported are the bounds in force.
	MaxRecords    int64 `json:"max_records_scanned"`
	MaxDurationMS int64 `json:"max_duration_ms"`
	MaxExported   int   `json:"max_records_exported"`
}

// Field is one named value of a record.
type Field struct {
	// Name is the field's name in the writer schema.
	Name string
	// Value is its JSON value.
	Value any
}

// Fields is a record's values in schema order; it encodes as a JSON
// object whose members keep that order.
type Fields []Field

// MarshalJSON writes the fields as one object, in order.
func (fs Fields) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.Name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// JSON returns the document, indented, with a final newline.
func (d *Document) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
