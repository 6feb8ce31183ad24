package pseudonym

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors. Every validation error returned by this package wraps one
// of them, so callers can test with [errors.Is]. Error texts name purposes,
// key IDs, JSON field names and positions, but never secret material.
var (
	// ErrInvalidKeyring is wrapped by all errors of ParseKeyring,
	// LoadKeyring (for content problems) and GenerateKeyring.
	ErrInvalidKeyring = errors.New("pseudonym: invalid keyring")
	// ErrInvalidKey is wrapped by errors about a single malformed key.
	ErrInvalidKey = errors.New("pseudonym: invalid key")
)

// MaxKeyringFileSize is the largest keyring file LoadKeyring accepts.
const MaxKeyringFileSize = 1 << 20

const (
	maxPurposeLen = 64
	maxIDLen      = 128
)

// Keyring holds, per purpose name, exactly one active [Key] plus any number
// of older keys that are kept so that previously issued pseudonyms can still
// be attributed to their key during rotation.
//
// A Keyring is immutable after construction and safe for concurrent use.
// Its accessors return copies of the keys, so callers cannot modify it.
// Formatting and JSON-encoding a Keyring shows purposes and key IDs only.
type Keyring struct {
	byPurpose map[string]*purposeKeys
	purposes  []string // sorted
}

type purposeKeys struct {
	active int   // index into keys
	keys   []Key // in input order
}

// Active returns a copy of the active key of purpose, or false if the
// keyring has no key for that purpose. It is safe to call on a nil Keyring.
func (k *Keyring) Active(purpose string) (Key, bool) {
	if k == nil {
		return Key{}, false
	}
	pk, ok := k.byPurpose[purpose]
	if !ok {
		return Key{}, false
	}
	return pk.keys[pk.active].clone(), true
}

// Lookup returns a copy of the key of purpose whose ID is id, whether it is
// the active key or an older one, or false if there is no such key. It is
// safe to call on a nil Keyring.
func (k *Keyring) Lookup(purpose, id string) (Key, bool) {
	if k == nil {
		return Key{}, false
	}
	pk, ok := k.byPurpose[purpose]
	if !ok {
		return Key{}, false
	}
	for _, key := range pk.keys {
		if key.ID == id {
			return key.clone(), true
		}
	}
	return Key{}, false
}

// Keys returns copies of every key of purpose, the active one and the
// older ones, in the keyring's order (erasure shreds what the subject has
// under each of them). It is safe to call on a nil Keyring.
func (k *Keyring) Keys(purpose string) []Key {
	if k == nil {
		return nil
	}
	pk, ok := k.byPurpose[purpose]
	if !ok {
		return nil
	}
	out := make([]Key, len(pk.keys))
	for i, key := range pk.keys {
		out[i] = key.clone()
	}
	return out
}

// Purposes returns the purposes of the keyring in sorted order. The slice is
// a fresh copy owned by the caller.
func (k *Keyring) Purposes() []string {
	if k == nil {
		return nil
	}
	return slices.Clone(k.purposes)
}

// String returns a redacted description listing purposes and key IDs, the
// active key of each purpose marked with "(active)".
//
// String, GoString, Format, MarshalJSON and LogValue have value receivers so
// that a dereferenced Keyring is redacted as well.
func (k Keyring) String() string {
	var b strings.Builder
	b.WriteString("Keyring{")
	for i, p := range k.purposes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
		b.WriteString(":[")
		pk := k.byPurpose[p]
		for j, key := range pk.keys {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(key.ID)
			if j == pk.active {
				b.WriteString("(active)")
			}
		}
		b.WriteByte(']')
	}
	if len(k.purposes) > 0 {
		b.WriteString(", ")
	}
	b.WriteString("Secrets:" + redacted + "}")
	return b.String()
}

// GoString returns the same redacted description as String; it is used by
// the %#v verb.
func (k Keyring) GoString() string { return "pseudonym." + k.String() }

// Format implements [fmt.Formatter] so that every verb prints the redacted
// description and never secret bytes.
func (k Keyring) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(k.GoString()))
	case verb == 'q':
		_, _ = f.Write([]byte(strconv.Quote(k.String())))
	default:
		_, _ = f.Write([]byte(k.String()))
	}
}

// MarshalJSON implements [json.Marshaler]. It encodes the keyring in the
// ParseKeyring layout but with every secret replaced by "[redacted]", so the
// output describes the keyring without being loadable.
func (k Keyring) MarshalJSON() ([]byte, error) {
	type entry struct {
		Purpose string `json:"purpose"`
		ID      string `json:"id"`
		Secret  string `json:"secret"`
		Active  bool   `json:"active"`
	}
	out := struct {
		Keys []entry `json:"keys"`
	}{Keys: []entry{}}
	for _, p := range k.purposes {
		pk := k.byPurpose[p]
		for j, key := range pk.keys {
			out.Keys = append(out.Keys, entry{p, key.ID, redacted, j == pk.active})
		}
	}
	return json.Marshal(out)
}

// LogValue implements [slog.LogValuer]; it logs the redacted description.
func (k Keyring) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ParseKeyring parses a JSON keyring of the form
//
//	{"keys": [
//	  {"purpose": "analytics", "id": "analytics-2026-11", "secret": "<base64 std>", "active": true},
//	  {"purpose": "analytics", "id": "analytics-2026-10", "secret": "<base64 std>"}
//	]}
//
// The fields "purpose", "id" and "secret" are required, "active" defaults to
// false. Secrets use standard padded base64 and must decode to at least
// [MinSecretLen] bytes. Purposes consist of 1-64 characters [a-z0-9_-]; key
// IDs of 1-128 characters [A-Za-z0-9._-] and are unique across the keyring.
// Every purpose needs exactly one active key, and no two keys may share a
// secret (that would make pseudonyms linkable across keys or purposes).
// Unknown or repeated fields and trailing data are rejected.
//
// Errors wrap [ErrInvalidKeyring] and never contain secret material (nor
// any other raw input text apart from validated purposes and IDs).
func ParseKeyring(data []byte) (*Keyring, error) {
	// Validate syntax first, reporting only the offset: the standard
	// library's messages quote offending input characters.
	var whole json.RawMessage
	if err := json.Unmarshal(data, &whole); err != nil {
		return nil, sanitizeJSONError(err, "document")
	}

	var entries []json.RawMessage
	err := decodeObject(whole, "document", func(name string, v json.RawMessage) error {
		if name != "keys" {
			return invalid("unknown top-level field %s", fieldName(name))
		}
		if err := json.Unmarshal(v, &entries); err != nil || entries == nil {
			return invalid(`field "keys" must be a JSON array of objects`)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, invalid(`field "keys" is missing or empty`)
	}

	keys := make([]keyEntry, 0, len(entries))
	for i, raw := range entries {
		e, err := parseEntry(i, raw)
		if err != nil {
			for _, k := range keys {
				clear(k.key.Secret)
			}
			return nil, err
		}
		keys = append(keys, e)
	}
	kr, err := build(keys)
	if err != nil {
		for _, k := range keys {
			clear(k.key.Secret)
		}
		return nil, err
	}
	return kr, nil
}

// LoadKeyring reads the keyring file at path and parses it with
// [ParseKeyring]. Errors name the path but never include file contents;
// I/O errors are wrapped with %w (so errors.Is(err, fs.ErrNotExist) works),
// content errors wrap [ErrInvalidKeyring]. Files larger than
// [MaxKeyringFileSize] are rejected.
func LoadKeyring(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pseudonym: load keyring %q: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyringFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("pseudonym: load keyring %q: %w", path, unwrapPathError(err))
	}
	defer clear(data)
	if len(data) > MaxKeyringFileSize {
		return nil, fmt.Errorf("pseudonym: load keyring %q: %w: file larger than %d bytes",
			path, ErrInvalidKeyring, MaxKeyringFileSize)
	}
	kr, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("pseudonym: load keyring %q: %w", path, err)
	}
	return kr, nil
}

// GenerateKeyring returns a keyring with one fresh, random, active
// 32-byte key per purpose, read from crypto/rand. The key ID is
// purpose + "-" + idSuffix (or just purpose when idSuffix is empty). It is
// meant for the embedded demo and tests: pseudonyms made with a generated
// keyring cannot be reproduced after the process exits.
func GenerateKeyring(purposes []string, idSuffix string) (*Keyring, error) {
	if len(purposes) == 0 {
		return nil, invalid("no purposes given")
	}
	seen := make(map[string]bool, len(purposes))
	for i, p := range purposes {
		if !validName(p, maxPurposeLen, isPurposeByte) {
			return nil, invalid("purposes[%d]: purpose must be 1-%d characters [a-z0-9_-]", i, maxPurposeLen)
		}
		if seen[p] {
			return nil, invalid("purposes[%d]: purpose %q is listed more than once", i, p)
		}
		seen[p] = true
		if !validName(generatedID(p, idSuffix), maxIDLen, isIDByte) {
			return nil, invalid("purposes[%d] (purpose %q): key ID must be 1-%d characters [A-Za-z0-9._-]; check idSuffix",
				i, p, maxIDLen)
		}
	}
	keys := make([]keyEntry, 0, len(purposes))
	for _, p := range purposes {
		secret := make([]byte, MinSecretLen)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("pseudonym: generate keyring: %w", err)
		}
		keys = append(keys, keyEntry{purpose: p, key: Key{ID: generatedID(p, idSuffix), Secret: secret}, active: true})
	}
	return build(keys)
}

func generatedID(purpose, idSuffix string) string {
	if idSuffix == "" {
		return purpose
	}
	return purpose + "-" + idSuffix
}

type keyEntry struct {
	index   int
	purpose string
	key     Key
	active  bool
}

func parseEntry(i int, raw json.RawMessage) (keyEntry, error) {
	e := keyEntry{index: i}
	var secretB64 string
	var havePurpose, haveID, haveSecret bool
	where := "keys[" + strconv.Itoa(i) + "]"
	err := decodeObject(raw, where, func(name string, v json.RawMessage) error {
		switch name {
		case "purpose":
			havePurpose = true
			if json.Unmarshal(v, &e.purpose) != nil {
				return invalid(`%s: field "purpose" must be a string`, where)
			}
		case "id":
			haveID = true
			if json.Unmarshal(v, &e.key.ID) != nil {
				return invalid(`%s: field "id" must be a string`, where)
			}
		case "secret":
			haveSecret = true
			if json.Unmarshal(v, &secretB64) != nil {
				return invalid(`%s: field "secret" must be a string`, where)
			}
		case "active":
			if json.Unmarshal(v, &e.active) != nil {
				return invalid(`%s: field "active" must be a boolean`, where)
			}
		default:
			return invalid("%s: unknown field %s", where, fieldName(name))
		}
		return nil
	})
	if err != nil {
		return keyEntry{}, err
	}

	switch {
	case !havePurpose || e.purpose == "":
		return keyEntry{}, invalid(`%s: field "purpose" is missing or empty`, where)
	case !validName(e.purpose, maxPurposeLen, isPurposeByte):
		return keyEntry{}, invalid(`%s: field "purpose" must be 1-%d characters [a-z0-9_-]`, where, maxPurposeLen)
	}
	where += " (purpose " + strconv.Quote(e.purpose) + ")"
	switch {
	case !haveID || e.key.ID == "":
		return keyEntry{}, invalid(`%s: field "id" is missing or empty`, where)
	case !validName(e.key.ID, maxIDLen, isIDByte):
		return keyEntry{}, invalid(`%s: field "id" must be 1-%d characters [A-Za-z0-9._-]`, where, maxIDLen)
	}
	where = "keys[" + strconv.Itoa(i) + "] (purpose " + strconv.Quote(e.purpose) + ", id " + strconv.Quote(e.key.ID) + ")"
	if !haveSecret || secretB64 == "" {
		return keyEntry{}, invalid(`%s: field "secret" is missing or empty`, where)
	}
	secret, err := base64.StdEncoding.DecodeString(secretB64)
	if err != nil {
		// The decoder error only carries an offset, but even that is a
		// hint about the secret; do not propagate it.
		return keyEntry{}, invalid(`%s: field "secret" is not valid standard (padded) base64`, where)
	}
	if len(secret) < MinSecretLen {
		clear(secret)
		return keyEntry{}, invalid(`%s: secret decodes to %d bytes, need at least %d`, where, len(secret), MinSecretLen)
	}
	e.key.Secret = secret
	return e, nil
}

// build checks cross-entry constraints and assembles the keyring.
func build(entries []keyEntry) (*Keyring, error) {
	kr := &Keyring{byPurpose: make(map[string]*purposeKeys)}
	ids := make(map[string]int, len(entries))
	for i, e := range entries {
		if j, dup := ids[e.key.ID]; dup {
			return nil, invalid("keys[%d] and keys[%d] both use key id %q", j, i, e.key.ID)
		}
		ids[e.key.ID] = i
		for j := range i {
			if subtle.ConstantTimeCompare(entries[j].key.Secret, e.key.Secret) == 1 {
				return nil, invalid("keys[%d] (id %q) reuses the secret of keys[%d] (id %q); every key needs its own secret",
					i, e.key.ID, j, entries[j].key.ID)
			}
		}
		pk := kr.byPurpose[e.purpose]
		if pk == nil {
			pk = &purposeKeys{active: -1}
			kr.byPurpose[e.purpose] = pk
			kr.purposes = append(kr.purposes, e.purpose)
		}
		if e.active {
			if pk.active >= 0 {
				return nil, invalid("purpose %q has more than one active key (%q and %q)",
					e.purpose, pk.keys[pk.active].ID, e.key.ID)
			}
			pk.active = len(pk.keys)
		}
		pk.keys = append(pk.keys, e.key)
	}
	slices.Sort(kr.purposes)
	for _, p := range kr.purposes {
		if kr.byPurpose[p].active < 0 {
			return nil, invalid("purpose %q has no active key", p)
		}
	}
	return kr, nil
}

// decodeObject walks a JSON object (whose syntax is already known to be
// valid), calling fn for each member. Repeated member names are rejected.
func decodeObject(raw json.RawMessage, where string, fn func(name string, v json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return invalid("%s must be a JSON object", where)
	}
	seen := make(map[string]bool, 4)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid("%s must be a JSON object", where)
		}
		name, _ := tok.(string)
		if seen[name] {
			return invalid("%s: field %s appears more than once", where, fieldName(name))
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return invalid("%s must be a JSON object", where)
		}
		if err := fn(name, v); err != nil {
			return err
		}
	}
	return nil
}

// sanitizeJSONError converts an encoding/json error into one that does not
// quote input characters.
func sanitizeJSONError(err error, where string) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("%s is not valid JSON (syntax error at byte offset %d)", where, se.Offset)
	}
	return invalid("%s is not valid JSON", where)
}

// fieldName quotes a JSON member name for an error message, unless it does
// not look like a field name (it might be a misplaced secret).
func fieldName(name string) string {
	if len(name) <= 24 && validName(name, 24, isIDByte) {
		return strconv.Quote(name)
	}
	return "(name not shown)"
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidKeyring}, args...)...)
}

func validName(s string, maxLen int, ok func(byte) bool) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isPurposeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.'
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
