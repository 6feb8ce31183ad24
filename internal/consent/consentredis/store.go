package consentredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/consent"
)

// Store answers consent lookups. Implementations make at most one round trip
// per call, whatever the number of subjects.
type Store interface {
	// Lookup fills out[i] for subjects[i]; len(out) >= len(subjects).
	Lookup(ctx context.Context, subjects []string, out []consent.Lookup) error
	// Put stores a subject's whole record.
	Put(ctx context.Context, subject string, rec *consent.Record) error
}

// DefaultKeyPrefix prefixes every consent key in Redis.
const DefaultKeyPrefix = "pp:consent:"

// RedisStore keeps one string key per subject (prefix + subject id) holding
// the encoded consent.Record, and fetches a batch with a single MGET.
//
// Redis is a cache of the consent topic: after a restart without
// persistence, or a FLUSHALL, it is empty, and an empty store would make
// every subject look unknown. Whoever loads the store completely (the
// consent sync, or a seeding tool) sets a marker key with MarkLoaded; every
// lookup fetches the marker in the same MGET and fails with ErrNotLoaded
// while it is missing, so processors pause instead of deciding on missing
// data.
type RedisStore struct {
	client        redis.UniversalClient
	prefix        string
	marker        string
	requireLoaded bool
}

// ErrNotLoaded is returned by lookups while the store's loaded marker is missing.
var ErrNotLoaded = errors.New("consent: store not loaded (marker key missing: Redis restarted empty or is being rebuilt)")

// RedisOption configures a RedisStore.
type RedisOption func(*RedisStore)

// WithKeyPrefix sets the key prefix (default DefaultKeyPrefix).
func WithKeyPrefix(p string) RedisOption { return func(s *RedisStore) { s.prefix = p } }

// WithRequireLoaded sets whether lookups fail while the loaded marker is
// missing (default true).
func WithRequireLoaded(b bool) RedisOption { return func(s *RedisStore) { s.requireLoaded = b } }

// NewRedisStore returns a store on an existing go-redis client.
func NewRedisStore(client redis.UniversalClient, opts ...RedisOption) *RedisStore {
	s := &RedisStore{client: client, prefix: DefaultKeyPrefix, requireLoaded: true}
	for _, o := range opts {
		o(s)
	}
	// The marker lies outside the subject key space: prefix "pp:consent:"
	// gives marker "pp:consent-loaded", which no prefix+subject can equal.
	s.marker = strings.TrimSuffix(s.prefix, ":") + "-loaded"
	return s
}

// Prefix returns the subject key prefix.
func (s *RedisStore) Prefix() string { return s.prefix }

// HistoryKey returns the key of a subject's change history (a list).
func (s *RedisStore) HistoryKey(subject string) string {
	return strings.TrimSuffix(s.prefix, ":") + "-history:" + subject
}

// History returns a subject's change history, newest first, as the consent
// sync appended it; entries that do not parse are left out.
func (s *RedisStore) History(ctx context.Context, subject string) ([]consent.HistoryEntry, error) {
	raw, err := s.client.LRange(ctx, s.HistoryKey(subject), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("consent: redis LRANGE history: %w", err)
	}
	entries := make([]consent.HistoryEntry, 0, len(raw))
	for _, e := range raw {
		var he consent.HistoryEntry
		if json.Unmarshal([]byte(e), &he) == nil {
			entries = append(entries, he)
		}
	}
	return entries, nil
}

// Client returns the Redis client.
func (s *RedisStore) Client() redis.UniversalClient { return s.client }

// MarkerKey returns the key of the loaded marker.
func (s *RedisStore) MarkerKey() string { return s.marker }

// MarkLoaded records that the store holds a complete copy of consent.
func (s *RedisStore) MarkLoaded(ctx context.Context) error {
	if err := s.client.Set(ctx, s.marker, time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return fmt.Errorf("consent: redis SET marker: %w", err)
	}
	return nil
}

// Key returns the Redis key of a subject.
func (s *RedisStore) Key(subject string) string { return s.prefix + subject }

// Lookup implements Store with one MGET.
func (s *RedisStore) Lookup(ctx context.Context, subjects []string, out []consent.Lookup) error {
	if len(subjects) == 0 {
		return nil
	}
	keys := make([]string, len(subjects), len(subjects)+1)
	for i, sub := range subjects {
		keys[i] = s.prefix + sub
	}
	if s.requireLoaded {
		keys = append(keys, s.marker) // same round trip
	}
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return fmt.Errorf("consent: redis MGET of %d keys: %w", len(keys), err)
	}
	if len(vals) != len(keys) {
		return fmt.Errorf("consent: redis MGET returned %d values for %d keys", len(vals), len(keys))
	}
	if s.requireLoaded {
		if vals[len(vals)-1] == nil {
			return ErrNotLoaded
		}
		vals = vals[:len(subjects)]
	}
	for i, v := range vals {
		out[i] = consent.Lookup{}
		str, ok := v.(string)
		if !ok {
			continue // nil: no record
		}
		if err := consent.Decode(str, &out[i].Record); err != nil {
			out[i] = consent.Lookup{Found: true, Corrupt: true}
			continue
		}
		out[i].Found = true
	}
	return nil
}

// Put implements Store.
func (s *RedisStore) Put(ctx context.Context, subject string, rec *consent.Record) error {
	if err := s.client.Set(ctx, s.prefix+subject, consent.AppendEncoded(nil, rec), 0).Err(); err != nil {
		return fmt.Errorf("consent: redis SET: %w", err)
	}
	return nil
}

// Delete removes everything the store holds about a subject: its consent
// record and its change history (erasure), in one transaction, and
// announces the change to the caches. It returns how many keys it deleted.
func (s *RedisStore) Delete(ctx context.Context, subject string) (int64, error) {
	n, err := s.client.Del(ctx, s.prefix+subject, s.HistoryKey(subject)).Result()
	if err != nil {
		return 0, fmt.Errorf("consent: redis DEL: %w", err)
	}
	if err := s.PublishInvalidation(ctx, []string{subject}); err != nil {
		return n, fmt.Errorf("consent: announce the deletion: %w", err)
	}
	return n, nil
}

// PutMany stores many records in one pipelined round trip.
func (s *RedisStore) PutMany(ctx context.Context, subjects []string, recs []consent.Record) error {
	if len(subjects) != len(recs) {
		return errors.New("consent: PutMany: subjects and records differ in length")
	}
	pipe := s.client.Pipeline()
	var buf []byte
	for i := range subjects {
		buf = consent.AppendEncoded(buf[:0], &recs[i])
		pipe.Set(ctx, s.prefix+subjects[i], string(buf), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("consent: redis pipeline of %d SETs: %w", len(subjects), err)
	}
	return nil
}
