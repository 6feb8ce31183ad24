package httpauth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Scope is one permission a principal may hold.
type Scope string

// The scopes. A principal with ScopeAdmin holds every scope; "consent:*"
// and "requests:*" hold every scope of their family.
const (
	// ScopeConsentRead reads a subject's consent and its history.
	ScopeConsentRead Scope = "consent:read"
	// ScopeConsentWrite sets and withdraws consent and records profiles.
	ScopeConsentWrite Scope = "consent:write"
	// ScopeConsentImport imports consents in bulk (many subjects at once).
	ScopeConsentImport Scope = "consent:import"
	// ScopeRequestsRead reads data-subject requests and their status.
	ScopeRequestsRead Scope = "requests:read"
	// ScopeRequestsWrite files data-subject requests (access, erasure).
	ScopeRequestsWrite Scope = "requests:write"
	// ScopeLinksWrite mints privacy-center links for customers the
	// deploying company's login has authenticated.
	ScopeLinksWrite Scope = "links:write"
	// ScopeAdmin holds every scope (and opens the privacy center's
	// operator view).
	ScopeAdmin Scope = "admin"
)

// Scopes are every scope a file may name, wildcards included.
var Scopes = []Scope{ScopeConsentRead, ScopeConsentWrite, ScopeConsentImport, "consent:*",
	ScopeRequestsRead, ScopeRequestsWrite, "requests:*", ScopeLinksWrite, ScopeAdmin}

// Principal is an authenticated caller: a name from the principals file
// (never a subject id), its scopes and how it authenticated.
type Principal struct {
	Name   string
	Scopes []Scope
	// Via is "token" or "mtls".
	Via string
}

// Allows reports whether p holds s, directly, through its family's
// wildcard or through admin.
func (p Principal) Allows(s Scope) bool {
	family, _, _ := strings.Cut(string(s), ":")
	for _, h := range p.Scopes {
		if h == s || h == ScopeAdmin || string(h) == family+":*" {
			return true
		}
	}
	return false
}

// TokenPrefix starts every token NewToken makes, so a leaked one is easy
// to find by secret scanners.
const TokenPrefix = "ppt_"

// TokenEntry is one bearer token of the principals file: only its SHA-256
// (a token is 256 random bits, so a fast hash is the right one: nothing
// to brute-force) is stored.
type TokenEntry struct {
	Principal string  `json:"principal"`
	Scopes    []Scope `json:"scopes"`
	// SHA256 is the hex SHA-256 of the token.
	SHA256 string `json:"sha256"`
	// Expires, when set (RFC 3339), ends the token's validity.
	Expires string `json:"expires,omitempty"`
	// Rate, when set, replaces the default requests per second of this
	// principal.
	Rate float64 `json:"rate,omitempty"`
}

// CertificateEntry grants scopes to a client certificate's subject
// (mutual TLS), written as Go's pkix.Name.String() prints it, e.g.
// "CN=crm-sync,O=Acme".
type CertificateEntry struct {
	Subject string  `json:"subject"`
	Scopes  []Scope `json:"scopes"`
	// Principal names the caller in logs and records; empty: the subject.
	Principal string  `json:"principal,omitempty"`
	Rate      float64 `json:"rate,omitempty"`
}

// File is the principals file (PIPELINE_CONSENT_API_AUTH_FILE).
type File struct {
	Tokens       []TokenEntry       `json:"tokens"`
	Certificates []CertificateEntry `json:"certificates"`
}

// principalName: a short name for logs and records.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func checkScopes(who string, ss []Scope) error {
	if len(ss) == 0 {
		return fmt.Errorf("%s has no scopes", who)
	}
	for _, s := range ss {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("%s has the unknown scope %q (known: %v)", who, s, Scopes)
		}
	}
	return nil
}

// Validate checks every entry: names, scopes, hashes, expiry, rates, and
// that no token hash or certificate subject appears twice.
func (f File) Validate() error {
	hashes := map[string]bool{}
	for i, t := range f.Tokens {
		who := fmt.Sprintf("token %d", i+1)
		if !validName(t.Principal) {
			return fmt.Errorf("%s: principal must be 1 to 128 printable characters", who)
		}
		who += fmt.Sprintf(" (principal %q)", t.Principal)
		if err := checkScopes(who, t.Scopes); err != nil {
			return err
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%s: sha256 must be 64 hex digits (the token itself never goes in this file)", who)
		}
		if hashes[strings.ToLower(t.SHA256)] {
			return fmt.Errorf("%s: the same token hash appears twice", who)
		}
		hashes[strings.ToLower(t.SHA256)] = true
		if t.Expires != "" {
			if _, err := time.Parse(time.RFC3339, t.Expires); err != nil {
				return fmt.Errorf("%s: expires must be RFC 3339 (2027-01-31T00:00:00Z)", who)
			}
		}
		if t.Rate < 0 {
			return fmt.Errorf("%s: rate must not be negative", who)
		}
	}
	subjects := map[string]bool{}
	for i, c := range f.Certificates {
		who := fmt.Sprintf("certificate %d", i+1)
		if !validName(c.Subject) || (c.Principal != "" && !validName(c.Principal)) {
			return fmt.Errorf("%s: subject (and principal) must be 1 to 128 printable characters", who)
		}
		if err := checkScopes(who, c.Scopes); err != nil {
			return err
		}
		if subjects[c.Subject] {
			return fmt.Errorf("%s: the subject %q appears twice", who, c.Subject)
		}
		subjects[c.Subject] = true
		if c.Rate < 0 {
			return fmt.Errorf("%s: rate must not be negative", who)
		}
	}
	return nil
}

// ParseFile parses and validates a principals file, strictly (unknown
// fields are refused).
func ParseFile(b []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("httpauth: principals file: %w", err)
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("httpauth: principals file: %w", err)
	}
	return f, nil
}

// ReadFile reads and parses a principals file; a missing file is an empty
// one only when allowMissing.
func ReadFile(path string, allowMissing bool) (File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && allowMissing {
		return File{}, nil
	}
	if err != nil {
		return File{}, fmt.Errorf("httpauth: %w", err)
	}
	return ParseFile(b)
}

// HashToken returns the hex SHA-256 of a token, as the file stores it.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// NewToken returns a fresh token (TokenPrefix and 256 random bits,
// base64url) and its file entry.
func NewToken(principal string, scopes []Scope, expires time.Time) (string, TokenEntry, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", TokenEntry{}, fmt.Errorf("httpauth: %w", err)
	}
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	e := TokenEntry{Principal: principal, Scopes: scopes, SHA256: HashToken(tok)}
	if !expires.IsZero() {
		e.Expires = expires.UTC().Format(time.RFC3339)
	}
	if err := (File{Tokens: []TokenEntry{e}}).Validate(); err != nil {
		return "", TokenEntry{}, fmt.Errorf("httpauth: %w", err)
	}
	return tok, e, nil
}
