// Package erasure plans what erasing a data subject removes (SPEC 3.5):
// every key of the subject on the consent topic, every data key it has
// under each pseudonym key of the keyring (so that a pseudonym key
// rotation leaves none behind), one notice per purpose pseudonym for
// downstream stores (GDPR Art. 19), and its mark in the erasure ledger (a
// keyed hash, so the ledger holds no raw id).
//
// Planning is pure: it needs the subject id, the pseudonym keyring and the
// ledger key, and touches no store. Carrying a plan out (tombstones,
// shreds, Redis deletions, notices, in one transaction) is the erasure
// executor's job.
package erasure

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
)

// MarkPrefix starts a ledger mark (version 1); marks are the keys of the
// ledger's records on the key topic.
const MarkPrefix = subjectkey.LedgerPrefix

// LedgerKeyLen is the length in bytes of the ledger key.
const LedgerKeyLen = 32

// Ledger computes the marks of the erasure ledger: HMAC-SHA256 of the
// subject id under the ledger key, truncated to 128 bits, base64url. The
// mark is one-way (the ledger holds no id, and without the key a list of
// candidate ids cannot be tested against it) and stable across pseudonym
// key rotations. It never prints its key.
type Ledger struct {
	key []byte
}

// NewLedger returns a ledger over key (LedgerKeyLen bytes or more).
func NewLedger(key []byte) (*Ledger, error) {
	if len(key) < LedgerKeyLen {
		return nil, fmt.Errorf("erasure: a ledger key of %d bytes (at least %d)", len(key), LedgerKeyLen)
	}
	return &Ledger{key: append([]byte(nil), key...)}, nil
}

// LoadLedgerKey reads a ledger key file (PIPELINE_ERASURE_KEY_FILE): the
// key in base64, one line, as GenerateLedgerKeyFile writes it.
func LoadLedgerKey(path string) (*Ledger, error) {
	s, err := tlsfiles.Secret(path)
	if err != nil {
		return nil, fmt.Errorf("erasure: ledger key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("erasure: ledger key %s is not base64", path)
	}
	return NewLedger(key)
}

// GenerateLedgerKeyFile writes a new random ledger key to path, mode
// 0600, refusing to replace an existing file (a new key would forget
// every erasure).
func GenerateLedgerKeyFile(path string) error {
	key := make([]byte, LedgerKeyLen)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("erasure: ledger key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("erasure: ledger key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(path)
		return fmt.Errorf("erasure: ledger key %s: %w", path, err)
	}
	return nil
}

// Mark returns the ledger mark of a subject.
func (l *Ledger) Mark(subject string) string {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte("pp-erased\x00"))
	m.Write([]byte(subject))
	return MarkPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// String names the ledger, never its key.
func (l *Ledger) String() string { return "erasure.Ledger{[redacted]}" }

// GoString is String (for %#v).
func (l *Ledger) GoString() string { return l.String() }

// Notice is one erasure notice for privacy.erasures: a downstream store
// that holds records of the purpose, keyed by the pseudonym, deletes
// them. It carries no raw id.
type Notice struct {
	Purpose string `json:"purpose"`
	// KeyID is the pseudonym key (header pp-key-id of the records).
	KeyID string `json:"key_id"`
	// Pseudonym is the subject's pseudonym under it (the records' key).
	Pseudonym string `json:"pseudonym"`
	// DataKey is the shredded data key's id.
	DataKey string `json:"data_key"`
}

// Plan is what erasing one subject removes.
type Plan struct {
	// Mark is the subject's erasure ledger mark.
	Mark string
	// ConsentKeys are every key of the subject on the consent topic (to
	// tombstone) and of its consent state in Redis.
	ConsentKeys [][]byte
	// DataKeys are the ids of every data key the subject can have (to
	// tombstone on the key topic and shred in Redis).
	DataKeys []string
	// Notices are one per purpose and pseudonym key.
	Notices []Notice
}

// PlanFor plans the erasure of subject with every key of the keyring.
func PlanFor(subject string, keys *pseudonym.Keyring, l *Ledger) (Plan, error) {
	if err := consentlog.ValidateSubject(subject); err != nil {
		return Plan{}, fmt.Errorf("erasure: %w", err)
	}
	if l == nil || keys == nil {
		return Plan{}, errors.New("erasure: a plan needs the keyring and the ledger")
	}
	p := Plan{Mark: l.Mark(subject), ConsentKeys: consentlog.SubjectKeys(subject)}
	var buf []byte
	for _, pur := range keys.Purposes() {
		for _, k := range keys.Keys(pur) {
			buf = pseudonym.New(k).Append(buf[:0], "subject_id", subject)
			ps := string(buf)
			id := subjectkey.ID(pur, k.ID, ps)
			p.DataKeys = append(p.DataKeys, id)
			p.Notices = append(p.Notices, Notice{Purpose: pur, KeyID: k.ID, Pseudonym: ps, DataKey: id})
		}
	}
	return p, nil
}

// String describes the plan without the subject's consent keys (which
// hold its raw id).
func (p Plan) String() string {
	return fmt.Sprintf("erasure.Plan{mark: %s, consent keys: %d, data keys: %d, notices: %d}",
		p.Mark, len(p.ConsentKeys), len(p.DataKeys), len(p.Notices))
}

// IsMark reports whether s has the form of a ledger mark.
func IsMark(s string) bool {
	rest, ok := strings.CutPrefix(s, MarkPrefix)
	if !ok || len(rest) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

// Check answers whether subjects were erased: their ledger marks, as the
// key store holds them (one MGET). It implements consentapi.Ledger.
type Check struct {
	Ledger *Ledger
	Keys   interface {
		Shredded(ctx context.Context, ids []string) ([]bool, error)
	}
}

// Erased reports, index for index, whether each subject was erased.
func (c Check) Erased(ctx context.Context, subjects []string) ([]bool, error) {
	marks := make([]string, len(subjects))
	for i, s := range subjects {
		marks[i] = c.Ledger.Mark(s)
	}
	return c.Keys.Shredded(ctx, marks)
}
