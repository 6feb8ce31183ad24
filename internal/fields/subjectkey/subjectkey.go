// Package subjectkey holds the per-subject data keys behind the encrypt and
// tokenize field actions (SPEC 3.5, 4): crypto-shredding, where erasing a
// subject deletes its keys and every ciphertext made with them becomes
// noise, in every log and every copy downstream.
//
// A data key belongs to one subject and one purpose (so two purposes'
// ciphertexts share nothing) and has two Tink primitives: AES-256-GCM for
// encrypt (randomised) and AES-256-SIV for tokenize (deterministic: equal
// values of one subject give equal tokens, so joins and group-bys keep
// working within a purpose). Its stored form, Wrapped, holds both keysets
// encrypted by a key-encryption key (KMS) with the key's id as associated
// data, so a wrapped key cannot be replayed under another id. The
// cryptography is Tink's (github.com/tink-crypto/tink-go): no mode is
// written here.
//
// The package knows nothing of Kafka, Redis or subjects' ids: a key id is
// an opaque name chosen by the key store (never a raw subject id).
package subjectkey

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// KMS wraps and unwraps data keys: a key-encryption key. FileKMS is the
// built-in one; a Vault Transit or cloud KMS key plugs in through the same
// interface (Tink's KMS integrations return one).
type KMS = tink.AEADWithContext

// Prefixes of the field values the actions write (version 1).
const (
	// EncryptedPrefix starts an encrypt value: "e1." + base64url(ciphertext).
	EncryptedPrefix = "e1."
	// TokenPrefix starts a tokenize value: "t1." + base64url(ciphertext).
	TokenPrefix = "t1."
)

// Limits of what the parsers accept (bad input is refused, never
// allocated without bound).
const (
	// MaxIDLen bounds a key id.
	MaxIDLen = 200
	// MaxWrappedLen bounds a wrapped key record.
	MaxWrappedLen = 8 << 10
	// MaxValueLen bounds an encrypted or tokenized field value.
	MaxValueLen = 1 << 20
)

// Errors a caller can tell apart.
var (
	// ErrMalformed: a wrapped key or a field value that does not parse.
	ErrMalformed = errors.New("subjectkey: malformed")
	// ErrDecrypt: a value that does not decrypt with this key for this
	// field (another subject's, another field's, tampered, or erased).
	ErrDecrypt = errors.New("subjectkey: does not decrypt")
)

// DataKey is one subject's key for one purpose, unwrapped. It never shows
// its key material: %v and String print its id only.
type DataKey struct {
	id    string
	aead  tink.AEAD
	daead tink.DeterministicAEAD
}

// Wrapped is a data key's stored form (the value of its privacy.keys
// record and its Redis cache entry): both keysets encrypted by the KMS,
// with the id as associated data.
type Wrapped struct {
	// ID names the key (the privacy.keys record key).
	ID string
	// Created is when the key was made.
	Created time.Time
	// AEAD and DAEAD are the encrypted Tink keysets (binary).
	AEAD, DAEAD []byte
}

// Lookup is what a key store found for a batch's key ids, index for
// index (internal/keys/keyredis fills it; the privacy processor reads it).
type Lookup struct {
	// Keys are the data keys; nil where the id was shredded.
	Keys []*DataKey
	// Shredded marks the ids that were erased.
	Shredded []bool
	// Unlogged are the wrapped keys not yet on the key topic: the caller
	// writes their records in the same transaction as what it encrypts.
	Unlogged []Wrapped
	// Hits, Fetched and Created count the ids served from memory, read
	// from the store, and created by this lookup.
	Hits, Fetched, Created int
}

// NewDataKey makes a fresh data key named id and returns it with its
// wrapped form.
func NewDataKey(ctx context.Context, kms KMS, id string, now time.Time) (*DataKey, Wrapped, error) {
	if err := checkID(id); err != nil {
		return nil, Wrapped{}, err
	}
	ah, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, Wrapped{}, fmt.Errorf("subjectkey: new key: %w", err)
	}
	dh, err := keyset.NewHandle(daead.AESSIVKeyTemplate())
	if err != nil {
		return nil, Wrapped{}, fmt.Errorf("subjectkey: new key: %w", err)
	}
	w := Wrapped{ID: id, Created: now.UTC().Truncate(time.Millisecond)}
	for _, p := range []struct {
		h   *keyset.Handle
		out *[]byte
	}{{ah, &w.AEAD}, {dh, &w.DAEAD}} {
		var buf bytes.Buffer
		if err := p.h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), kms, associated(id)); err != nil {
			return nil, Wrapped{}, fmt.Errorf("subjectkey: wrap key %s: %w", id, err)
		}
		*p.out = buf.Bytes()
	}
	k, err := newDataKey(id, ah, dh)
	if err != nil {
		return nil, Wrapped{}, err
	}
	return k, w, nil
}

// Unwrap decrypts a wrapped key with the KMS. A key wrapped under another
// id, or by a key-encryption key the KMS does not hold, fails.
func Unwrap(ctx context.Context, kms KMS, w Wrapped) (*DataKey, error) {
	if err := checkID(w.ID); err != nil {
		return nil, err
	}
	var hs [2]*keyset.Handle
	for i, b := range [][]byte{w.AEAD, w.DAEAD} {
		h, err := keyset.ReadWithContext(ctx, keyset.NewBinaryReader(bytes.NewReader(b)), kms, associated(w.ID))
		if err != nil {
			return nil, fmt.Errorf("subjectkey: unwrap key %s: %w", w.ID, err)
		}
		hs[i] = h
	}
	return newDataKey(w.ID, hs[0], hs[1])
}

func newDataKey(id string, ah, dh *keyset.Handle) (*DataKey, error) {
	a, err := aead.New(ah)
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key %s: %w", id, err)
	}
	d, err := daead.New(dh)
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key %s: %w", id, err)
	}
	return &DataKey{id: id, aead: a, daead: d}, nil
}

// LedgerPrefix starts the key of an erasure ledger record on the key
// topic (internal/erasure writes them, the key sync restores them): the
// key topic holds wrapped data keys and these, nothing else.
const LedgerPrefix = "er1."

// IsLedgerKey reports whether a key-topic record key is an erasure ledger
// mark rather than a data key's id.
func IsLedgerKey(id string) bool { return strings.HasPrefix(id, LedgerPrefix) }

// ID names the data key of one subject for one purpose, from what a clean
// record already carries: "dk1." + purpose + "." + the pseudonym key id
// (header pp-key-id) + "." + the subject's pseudonym (the record key). It
// holds no raw id, differs per purpose (two purposes' keys share no name),
// and lets an authorised consumer find a record's key from the record.
// After a pseudonym key rotation a subject gets a new data key under the
// new pseudonym; erasure shreds the subject's keys under every pseudonym
// key of the keyring.
func ID(purpose, pseudonymKeyID, subjectPseudonym string) string {
	return "dk1." + purpose + "." + pseudonymKeyID + "." + subjectPseudonym
}

// AppendID appends ID(purpose, pseudonymKeyID, subjectPseudonym) to dst.
func AppendID(dst []byte, purpose, pseudonymKeyID string, subjectPseudonym []byte) []byte {
	dst = append(dst, "dk1."...)
	dst = append(dst, purpose...)
	dst = append(dst, '.')
	dst = append(dst, pseudonymKeyID...)
	dst = append(dst, '.')
	return append(dst, subjectPseudonym...)
}

// associated is the wrap's associated data: the key id, so a wrapped
// keyset cannot be stored under another subject's id.
func associated(id string) []byte { return []byte("pp-subject-key\x00" + id) }

// fieldData is a field value's associated data: the field's path, so a
// ciphertext cannot be moved to another field.
func fieldData(field string) []byte { return []byte("pp-field\x00" + field) }

// ID returns the key's id.
func (k *DataKey) ID() string { return k.id }

// String names the key, never its material.
func (k *DataKey) String() string { return "subjectkey.DataKey{" + k.id + "}" }

// GoString is String (for %#v).
func (k *DataKey) GoString() string { return k.String() }

// Encrypt returns field's encrypt value: randomised (equal plaintexts give
// different values), EncryptedPrefix + base64url.
func (k *DataKey) Encrypt(plaintext []byte, field string) (string, error) {
	ct, err := k.aead.Encrypt(plaintext, fieldData(field))
	if err != nil {
		return "", fmt.Errorf("subjectkey: encrypt %s: %w", field, err)
	}
	return EncryptedPrefix + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Tokenize returns field's tokenize value: deterministic for this key and
// field (equal plaintexts give equal tokens), TokenPrefix + base64url.
func (k *DataKey) Tokenize(plaintext []byte, field string) (string, error) {
	ct, err := k.daead.EncryptDeterministically(plaintext, fieldData(field))
	if err != nil {
		return "", fmt.Errorf("subjectkey: tokenize %s: %w", field, err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Decrypt returns the plaintext of an encrypt or tokenize value of field.
// A malformed value is ErrMalformed; one that is not this key's for this
// field is ErrDecrypt.
func (k *DataKey) Decrypt(value, field string) ([]byte, error) {
	kind, ct, err := ParseValue(value)
	if err != nil {
		return nil, err
	}
	var pt []byte
	if kind == EncryptedPrefix {
		pt, err = k.aead.Decrypt(ct, fieldData(field))
	} else {
		pt, err = k.daead.DecryptDeterministically(ct, fieldData(field))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: key %s, field %s", ErrDecrypt, k.id, field)
	}
	return pt, nil
}

// ParseValue splits an encrypt or tokenize value into its prefix
// (EncryptedPrefix or TokenPrefix) and ciphertext.
func ParseValue(value string) (kind string, ciphertext []byte, err error) {
	if len(value) > MaxValueLen {
		return "", nil, fmt.Errorf("%w: a value of %d bytes (at most %d)", ErrMalformed, len(value), MaxValueLen)
	}
	for _, p := range []string{EncryptedPrefix, TokenPrefix} {
		if rest, ok := strings.CutPrefix(value, p); ok {
			ct, err := base64.RawURLEncoding.DecodeString(rest)
			if err != nil || len(ct) == 0 {
				return "", nil, fmt.Errorf("%w: not base64url after %q", ErrMalformed, p)
			}
			return p, ct, nil
		}
	}
	return "", nil, fmt.Errorf("%w: a value starts with %q or %q", ErrMalformed, EncryptedPrefix, TokenPrefix)
}

// wrappedJSON is Wrapped on the wire, version 1.
type wrappedJSON struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Created int64  `json:"created_ms"`
	AEAD    []byte `json:"aead"`
	DAEAD   []byte `json:"daead"`
}

// Marshal encodes the wrapped key: JSON, version 1, keysets in base64.
func (w Wrapped) Marshal() ([]byte, error) {
	if err := checkID(w.ID); err != nil {
		return nil, err
	}
	return json.Marshal(wrappedJSON{V: 1, ID: w.ID, Created: w.Created.UnixMilli(), AEAD: w.AEAD, DAEAD: w.DAEAD})
}

// ParseWrapped decodes Marshal's output strictly: an unknown version or
// field, a missing keyset, an oversized record or trailing data is
// ErrMalformed.
func ParseWrapped(b []byte) (Wrapped, error) {
	if len(b) > MaxWrappedLen {
		return Wrapped{}, fmt.Errorf("%w: a wrapped key of %d bytes (at most %d)", ErrMalformed, len(b), MaxWrappedLen)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j wrappedJSON
	if err := dec.Decode(&j); err != nil {
		return Wrapped{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Wrapped{}, fmt.Errorf("%w: data after the wrapped key", ErrMalformed)
	}
	switch {
	case j.V != 1:
		return Wrapped{}, fmt.Errorf("%w: version %d (this build reads 1)", ErrMalformed, j.V)
	case len(j.AEAD) == 0 || len(j.DAEAD) == 0:
		return Wrapped{}, fmt.Errorf("%w: a keyset is missing", ErrMalformed)
	}
	if err := checkID(j.ID); err != nil {
		return Wrapped{}, err
	}
	return Wrapped{ID: j.ID, Created: time.UnixMilli(j.Created).UTC(), AEAD: j.AEAD, DAEAD: j.DAEAD}, nil
}

func checkID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty key id", ErrMalformed)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: a key id of %d bytes (at most %d)", ErrMalformed, len(id), MaxIDLen)
	case strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return fmt.Errorf("%w: a key id is printable ASCII without spaces", ErrMalformed)
	}
	return nil
}
