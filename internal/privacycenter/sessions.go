package privacycenter

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sessions keeps the center's sessions and spent links in Redis, so that
// every consent-api replica sees them: a link opens one session once (a
// link replayed from a proxy log or a browser history is refused), a
// session lives as long as its link would have, and signing out ends it
// at once. The browser holds only a random session id; Redis holds its
// SHA-256 as the key, so a Redis dump gives no cookie.
type Sessions struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewSessions returns sessions under prefix (PIPELINE_PRIVACY_CENTER_KEY_PREFIX).
func NewSessions(rdb redis.UniversalClient, prefix string) *Sessions {
	return &Sessions{rdb: rdb, prefix: prefix}
}

// Session kinds: a customer's (the value is the subject id) and an
// operator's (the value is the SHA-256 of their bearer token, looked up
// in the principals file on every request).
const (
	kindCustomer = "customer"
	kindOperator = "operator"
)

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// ClaimLink marks a link token spent until it expires; false when it was
// spent already.
func (s *Sessions) ClaimLink(ctx context.Context, token string, until time.Time) (bool, error) {
	ttl := time.Until(until)
	if ttl <= 0 {
		return false, nil
	}
	ok, err := s.rdb.SetNX(ctx, s.prefix+"link:"+hashOf(token), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("privacycenter: claim link: %w", err)
	}
	return ok, nil
}

// Create starts a session of kind holding value for ttl and returns its id
// (256 random bits, base64url).
func (s *Sessions) Create(ctx context.Context, kind, value string, ttl time.Duration) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("privacycenter: session id: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	if err := s.rdb.Set(ctx, s.key(kind, id), value, ttl).Err(); err != nil {
		return "", fmt.Errorf("privacycenter: create session: %w", err)
	}
	return id, nil
}

// errNoSession: the id names no live session (unknown, expired or ended).
var errNoSession = errors.New("privacycenter: no such session")

// Get returns a live session's value.
func (s *Sessions) Get(ctx context.Context, kind, id string) (string, error) {
	if id == "" || len(id) > 64 {
		return "", errNoSession
	}
	v, err := s.rdb.Get(ctx, s.key(kind, id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", errNoSession
	}
	if err != nil {
		return "", fmt.Errorf("privacycenter: session: %w", err)
	}
	return v, nil
}

// Delete ends a session.
func (s *Sessions) Delete(ctx context.Context, kind, id string) error {
	if id == "" || len(id) > 64 {
		return nil
	}
	return s.rdb.Del(ctx, s.key(kind, id)).Err()
}

func (s *Sessions) key(kind, id string) string { return s.prefix + kind + ":" + hashOf(id) }
