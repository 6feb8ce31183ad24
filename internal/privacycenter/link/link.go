// Package link is the customer's way into the privacy center (issue 17):
// a short-lived link token that the deploying company's own login mints
// once it has authenticated the customer, and that the privacy center
// opens to know whose choices it shows. The token is sealed with an AEAD
// (a Tink keyset, AES-256-GCM), so the subject id never appears in a URL,
// a log or a browser history in clear, and a token cannot be forged,
// altered or moved to another subject without the key.
//
// Token: "pl1." followed by the unpadded base64url encoding of the Tink
// ciphertext of (version byte 1, issued at and expires at as big-endian
// Unix milliseconds, subject id bytes), with the associated data
// AssociatedData. Open refuses, each with its own error: a malformed or
// oversized token, one that does not authenticate (forged, tampered, or
// sealed with another key), one issued in the future beyond Skew, one
// expired, and one whose lifetime exceeds the sealer's MaxTTL (a token
// minted by a misconfigured issuer is not honoured for longer than
// policy allows).
package link

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// Prefix starts every token; it names the format's version.
const Prefix = "pl1."

// AssociatedData binds a ciphertext to its use: a key shared with another
// use cannot turn that use's ciphertexts into links.
var AssociatedData = []byte("privacy-pipeline privacy-center link v1")

// Limits of a token.
const (
	// MaxSubjectLen bounds the subject id (as the decoder does raw
	// events' subject ids).
	MaxSubjectLen = 256
	// MaxTokenLen bounds what Open reads.
	MaxTokenLen = 1024
	// DefaultMaxTTL is the longest lifetime honoured unless configured.
	DefaultMaxTTL = 30 * time.Minute
	// Skew is how far in the future a token's issue time may be (the
	// issuer's clock ahead of ours).
	Skew = 30 * time.Second
)

const version = 1

// The reasons Open refuses a token. They name no subject.
var (
	ErrMalformed = errors.New("link: malformed token")
	ErrForged    = errors.New("link: token does not authenticate")
	ErrExpired   = errors.New("link: token expired")
	ErrFuture    = errors.New("link: token issued in the future")
	ErrTooLong   = errors.New("link: token lifetime exceeds the maximum")
)

// Claims are what an opened token says.
type Claims struct {
	Subject         string
	Issued, Expires time.Time
}

// Sealer mints and opens tokens with one AEAD. It is safe for concurrent
// use.
type Sealer struct {
	a      tink.AEAD
	maxTTL time.Duration
	now    func() time.Time
}

// Option configures a Sealer.
type Option func(*Sealer)

// WithMaxTTL sets the longest lifetime minted or honoured (default
// DefaultMaxTTL).
func WithMaxTTL(d time.Duration) Option { return func(s *Sealer) { s.maxTTL = d } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Sealer) { s.now = now } }

// New returns a sealer of a.
func New(a tink.AEAD, opts ...Option) (*Sealer, error) {
	if a == nil {
		return nil, errors.New("link: no AEAD")
	}
	s := &Sealer{a: a, maxTTL: DefaultMaxTTL, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.maxTTL <= 0 {
		return nil, errors.New("link: the maximum lifetime must be positive")
	}
	return s, nil
}

// Mint returns a token for subject valid for ttl from now (at most the
// maximum lifetime).
func (s *Sealer) Mint(subject string, ttl time.Duration) (string, error) {
	if err := checkSubject(subject); err != nil {
		return "", err
	}
	if ttl <= 0 || ttl > s.maxTTL {
		return "", fmt.Errorf("link: lifetime %s is not in (0, %s]", ttl, s.maxTTL)
	}
	now := s.now()
	pt := make([]byte, 0, 17+len(subject))
	pt = append(pt, version)
	pt = binary.BigEndian.AppendUint64(pt, uint64(now.UnixMilli()))
	pt = binary.BigEndian.AppendUint64(pt, uint64(now.Add(ttl).UnixMilli()))
	pt = append(pt, subject...)
	ct, err := s.a.Encrypt(pt, AssociatedData)
	if err != nil {
		return "", fmt.Errorf("link: seal: %w", err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Open checks a token and returns its claims.
func (s *Sealer) Open(token string) (Claims, error) {
	if len(token) > MaxTokenLen || !strings.HasPrefix(token, Prefix) {
		return Claims{}, ErrMalformed
	}
	ct, err := base64.RawURLEncoding.DecodeString(token[len(Prefix):])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	pt, err := s.a.Decrypt(ct, AssociatedData)
	if err != nil {
		return Claims{}, ErrForged
	}
	if len(pt) < 18 || pt[0] != version {
		return Claims{}, ErrMalformed // authentic but not ours: a newer format
	}
	c := Claims{
		Issued:  time.UnixMilli(int64(binary.BigEndian.Uint64(pt[1:9]))),
		Expires: time.UnixMilli(int64(binary.BigEndian.Uint64(pt[9:17]))),
		Subject: string(pt[17:]),
	}
	if checkSubject(c.Subject) != nil {
		return Claims{}, ErrMalformed
	}
	now := s.now()
	switch {
	case c.Expires.Sub(c.Issued) > s.maxTTL || !c.Expires.After(c.Issued):
		return Claims{}, ErrTooLong
	case c.Issued.After(now.Add(Skew)):
		return Claims{}, ErrFuture
	case !now.Before(c.Expires):
		return Claims{}, ErrExpired
	}
	return c, nil
}

func checkSubject(subject string) error {
	// The consent API's rule (consentlog.ValidateSubject): a link is only
	// minted for a subject the API can act on.
	if strings.TrimSpace(subject) == "" || len(subject) > MaxSubjectLen || !utf8.ValidString(subject) || strings.IndexFunc(subject, unicode.IsControl) >= 0 {
		return fmt.Errorf("link: a subject id must be 1-%d bytes of UTF-8, not blank, without control characters", MaxSubjectLen)
	}
	return nil
}
