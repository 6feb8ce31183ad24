// Package pseudonym computes keyed pseudonyms for personal identifiers.
//
// A pseudonym is HMAC-SHA256(secret, domain || 0x00 || value), truncated to
// its first 16 bytes (128 bits) and encoded as unpadded base64url, which
// always yields [EncodedLen] (22) characters. Plain (unkeyed) hashing is
// deliberately not offered: identifiers such as e-mail addresses or phone
// numbers have so little entropy that an unkeyed hash is trivially reversed
// by enumeration, whereas a keyed pseudonym cannot be recomputed without the
// secret, and destroying the secret makes the pseudonyms unlinkable.
//
// Keys are organised in a [Keyring]: per processing purpose (analytics,
// personalization, ai_training, marketing, third_party_sharing, ...) there
// is exactly one active key, used for new pseudonyms, plus any number of
// older keys kept for rotation. Using a separate key per purpose keeps the
// pseudonyms of one purpose unlinkable to those of another.
//
// Secret material is never printed: [Key] and [Keyring] implement
// [fmt.Formatter], [fmt.Stringer], [fmt.GoStringer], [json.Marshaler] and
// [slog.LogValuer] with redacted output, and no error returned by this
// package contains secret bytes. Note that fmt cannot call these methods on
// a Key stored in an unexported struct field of another type, so such a
// struct printed with %v would still expose the raw Secret bytes; do not
// print structs that embed keys.
//
// A [Pseudonymizer] is not safe for concurrent use; create one per worker
// goroutine. Its [Pseudonymizer.Append] method reuses a single HMAC state
// and does not allocate when dst has spare capacity of [EncodedLen] bytes.
package pseudonym

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
)

// MinSecretLen is the minimum length in bytes of a [Key] secret (256 bits,
// the output size of SHA-256).
const MinSecretLen = 32

// redacted is what is printed in place of secret material.
const redacted = "[redacted]"

// Key is one HMAC secret together with its public key identifier (for
// example "analytics-2026-11"). The ID may be logged and stored next to
// pseudonyms; the Secret must never leave the process.
//
// Every formatting path of Key (fmt verbs, String, GoString, JSON, slog)
// redacts the Secret. The Secret of a valid key is at least [MinSecretLen]
// bytes long.
type Key struct {
	// ID is the public identifier of the key.
	ID string
	// Secret is the HMAC key. It must be at least MinSecretLen bytes.
	Secret []byte
}

// String returns a redacted description of the key, for example
// `Key{ID:analytics-2026-11, Secret:[redacted]}`.
func (k Key) String() string {
	return "Key{ID:" + k.ID + ", Secret:" + redacted + "}"
}

// GoString returns a redacted Go-syntax-like description of the key; it is
// used by the %#v verb.
func (k Key) GoString() string {
	return "pseudonym.Key{ID:" + strconv.Quote(k.ID) + ", Secret:" + redacted + "}"
}

// Format implements [fmt.Formatter] so that every verb (%v, %+v, %#v, %s,
// %q, %x, %d, ...) prints the redacted form and never the secret bytes.
func (k Key) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(k.GoString()))
	case verb == 'q':
		_, _ = f.Write([]byte(strconv.Quote(k.String())))
	default:
		_, _ = f.Write([]byte(k.String()))
	}
}

// MarshalJSON implements [json.Marshaler]. Only the key ID is encoded:
// {"id":"analytics-2026-11","secret":"[redacted]"}.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}{k.ID, redacted})
}

// LogValue implements [slog.LogValuer] so that structured logging of a Key
// records only its ID.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("secret", redacted))
}

// validate checks the key without ever mentioning its secret contents.
func (k Key) validate() error {
	if k.ID == "" {
		return fmt.Errorf("%w: key ID is empty", ErrInvalidKey)
	}
	if len(k.Secret) < MinSecretLen {
		return fmt.Errorf("%w: key %q: secret is %d bytes, need at least %d",
			ErrInvalidKey, k.ID, len(k.Secret), MinSecretLen)
	}
	return nil
}

// clone returns a copy of k with its own Secret backing array.
func (k Key) clone() Key {
	return Key{ID: k.ID, Secret: append([]byte(nil), k.Secret...)}
}
