// Package keyredis is the Redis cache of the per-subject data keys
// (SPEC 3.5): the wrapped keys of privacy.keys, where a key is created
// exactly once however many replicas race for it, fetched with one round
// trip per batch, and shredded for good on erasure.
//
// Each key id has one Redis string, prefix + id, whose first byte is its
// state:
//
//   - 'u' unlogged: created here, not yet seen on privacy.keys; every
//     batch that uses it writes its record to privacy.keys again (in the
//     batch's transaction) until the key sync marks it logged;
//   - 'l' logged: on privacy.keys (the source of truth);
//   - 'x' shredded: erased; never created again, never returned.
//
// The rest of the value is the wrapped key (subjectkey.Wrapped.Marshal).
// The topic is the source of truth: the key sync rebuilds this cache from
// it (Put), and a key whose batch aborted stays 'u' and is written again by
// the next batch that uses it, so no committed ciphertext has a key that
// is missing from the topic.
//
// A loaded marker (prefix without its colon + "-loaded") says the cache
// holds the whole topic. Without it (a flushed or new Redis) Get refuses,
// in the same round trip and atomically in the create script: creating a
// key then would give a subject a second key under its name, and the
// compacted topic would keep only the newer one, making every older
// ciphertext unreadable. The key sync rebuilds and sets the marker.
package keyredis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
)

// DefaultPrefix is the key prefix of the cache (PIPELINE_DATA_KEY_PREFIX).
const DefaultPrefix = "pp:dk:"

// The states (the value's first byte).
const (
	stateUnlogged = 'u'
	stateLogged   = 'l'
	stateShredded = 'x'
)

// ErrNotLoaded is returned while the cache does not hold the key topic
// (no loaded marker): the caller pauses until the key sync rebuilt it.
var ErrNotLoaded = errors.New("keyredis: the data key cache is not loaded from the key topic (the key sync rebuilds it)")

// Config configures a Store.
type Config struct {
	// Redis is the client (wiring builds it from PIPELINE_REDIS_*).
	Redis redis.UniversalClient
	// Prefix of the cache's keys; DefaultPrefix when empty.
	Prefix string
	// KMS wraps new keys and unwraps stored ones; Get needs it, the key
	// sync (Put, Shred) does not: it moves wrapped bytes only.
	KMS subjectkey.KMS
	// CacheSize bounds the unwrapped keys kept in memory (logged keys
	// only); 0 means 100000.
	CacheSize int
	// CacheTTL is how long an unwrapped key is used from memory before it
	// is fetched again (bounding how long another process's shred goes
	// unseen here); 0 means one minute.
	CacheTTL time.Duration
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
	// SkipLoadedCheck serves and creates keys without the loaded marker
	// (the zero-setup demo, whose Redis starts empty with the topic).
	SkipLoadedCheck bool
}

// Store is the data-key cache. It is safe for concurrent use by the
// workers of one process.
type Store struct {
	cfg    Config
	cache  *cache
	marker string
}

// New returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.Redis == nil {
		return nil, errors.New("keyredis: Config needs Redis")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, cache: newCache(cfg.CacheSize, cfg.CacheTTL, cfg.Now),
		marker: strings.TrimSuffix(cfg.Prefix, ":") + "-loaded"}, nil
}

// Get returns the data keys of ids, creating the missing ones: one MGET
// for the ids not in memory, and, only when some are missing, one script
// that sets each new key unless another replica set it first (the
// winner's key is returned to everyone). A shredded id is never created
// again.
func (s *Store) Get(ctx context.Context, ids []string, r *subjectkey.Lookup) error {
	if s.cfg.KMS == nil {
		return errors.New("keyredis: Get needs a KMS (PIPELINE_KEK_FILE)")
	}
	n := len(ids)
	r.Keys = resize(r.Keys, n)
	r.Shredded = resize(r.Shredded, n)
	r.Unlogged = r.Unlogged[:0]
	r.Hits, r.Fetched, r.Created = 0, 0, 0
	var fetch []int
	for i, id := range ids {
		if k, ok := s.cache.get(id); ok {
			r.Keys[i] = k
			r.Hits++
			continue
		}
		fetch = append(fetch, i)
	}
	if len(fetch) == 0 {
		return nil
	}
	names := make([]string, len(fetch), len(fetch)+1)
	for j, i := range fetch {
		names[j] = s.cfg.Prefix + ids[i]
	}
	vals, err := s.cfg.Redis.MGet(ctx, append(names, s.marker)...).Result()
	if err != nil {
		return fmt.Errorf("keyredis: read %d keys: %w", len(names), err)
	}
	if loaded := vals[len(vals)-1]; loaded == nil && !s.cfg.SkipLoadedCheck {
		return ErrNotLoaded
	}
	vals = vals[:len(vals)-1]
	r.Fetched = len(fetch)
	var missing []int // indexes into fetch
	for j, v := range vals {
		str, ok := v.(string)
		if !ok {
			missing = append(missing, j)
			continue
		}
		if err := s.take(ctx, ids[fetch[j]], str, fetch[j], r); err != nil {
			return err
		}
	}
	if len(missing) == 0 {
		return nil
	}
	// Create the missing keys: wrap candidates, set them unless set.
	keys := make([]string, len(missing))
	args := make([]any, len(missing))
	for m, j := range missing {
		id := ids[fetch[j]]
		_, w, err := subjectkey.NewDataKey(ctx, s.cfg.KMS, id, s.cfg.Now())
		if err != nil {
			return err
		}
		b, err := w.Marshal()
		if err != nil {
			return err
		}
		keys[m], args[m] = names[j], string(append([]byte{stateUnlogged}, b...))
	}
	check := "1"
	if s.cfg.SkipLoadedCheck {
		check = "0"
	}
	got, err := createScript.Run(ctx, s.cfg.Redis, append(keys, s.marker), append(args, check)...).StringSlice()
	if err != nil && strings.Contains(err.Error(), "NOT_LOADED") {
		return ErrNotLoaded
	}
	if err != nil {
		return fmt.Errorf("keyredis: create %d keys: %w", len(keys), err)
	}
	if len(got) != len(keys) {
		return fmt.Errorf("keyredis: create %d keys: %d answers", len(keys), len(got))
	}
	for m, j := range missing {
		if got[m] == args[m] {
			r.Created++
		}
		if err := s.take(ctx, ids[fetch[j]], got[m], fetch[j], r); err != nil {
			return err
		}
	}
	return nil
}

// take unwraps one stored value into r at index i.
func (s *Store) take(ctx context.Context, id, v string, i int, r *subjectkey.Lookup) error {
	if v == "" {
		return fmt.Errorf("keyredis: key %s: empty value", id)
	}
	if v[0] == stateShredded {
		r.Keys[i], r.Shredded[i] = nil, true
		return nil
	}
	if v[0] != stateLogged && v[0] != stateUnlogged {
		return fmt.Errorf("keyredis: key %s: unknown state %q", id, v[0])
	}
	w, err := subjectkey.ParseWrapped([]byte(v[1:]))
	if err != nil {
		return fmt.Errorf("keyredis: key %s: %w", id, err)
	}
	if w.ID != id {
		// A value stored under another id (a swap): refused, never used.
		return fmt.Errorf("keyredis: key %s holds the wrapped key of %s", id, w.ID)
	}
	k, err := subjectkey.Unwrap(ctx, s.cfg.KMS, w)
	if err != nil {
		return err
	}
	r.Keys[i], r.Shredded[i] = k, false
	if v[0] == stateUnlogged {
		r.Unlogged = append(r.Unlogged, w)
	} else {
		s.cache.put(id, k)
	}
	return nil
}

// createScript sets each key to its candidate unless it exists, and
// returns what each key holds afterwards (the winner's value). The last
// key is the loaded marker, the last argument whether to require it.
var createScript = redis.NewScript(`
local n = #KEYS - 1
if ARGV[n + 1] == '1' and redis.call('EXISTS', KEYS[n + 1]) == 0 then
  return redis.error_reply('NOT_LOADED the data key cache is not loaded')
end
local out = {}
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i], 'NX')
  out[i] = redis.call('GET', KEYS[i])
end
return out
`)

// MarkLoaded sets the loaded marker: the cache holds the key topic (the
// key sync, after a rebuild).
func (s *Store) MarkLoaded(ctx context.Context) error {
	if err := s.cfg.Redis.Set(ctx, s.marker, "1", 0).Err(); err != nil {
		return fmt.Errorf("keyredis: mark loaded: %w", err)
	}
	return nil
}

// Loaded reports whether the loaded marker is set.
func (s *Store) Loaded(ctx context.Context) (bool, error) {
	n, err := s.cfg.Redis.Exists(ctx, s.marker).Result()
	if err != nil {
		return false, fmt.Errorf("keyredis: loaded marker: %w", err)
	}
	return n == 1, nil
}

// Put stores a key read from privacy.keys as logged (the key sync, and
// the rebuild from the topic). A shredded id stays shredded; a different
// key already stored under the id is kept and reported (the topic's
// record and the cache disagree: the first committed wins on the topic,
// which the sync reads in order, so this only happens to a key the sync
// has not reached yet).
func (s *Store) Put(ctx context.Context, w subjectkey.Wrapped) (stored bool, err error) {
	b, err := w.Marshal()
	if err != nil {
		return false, err
	}
	res, err := putScript.Run(ctx, s.cfg.Redis, []string{s.cfg.Prefix + w.ID}, string(b)).Int()
	if err != nil {
		return false, fmt.Errorf("keyredis: put key %s: %w", w.ID, err)
	}
	return res == 1, nil
}

// putScript: a missing or unlogged key with the same wrapped bytes
// becomes logged; a missing one is stored logged; shredded stays.
var putScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], 'l' .. ARGV[1])
  return 1
end
local state = string.sub(v, 1, 1)
if state == 'x' then return 0 end
if string.sub(v, 2) == ARGV[1] then
  if state == 'u' then redis.call('SET', KEYS[1], 'l' .. ARGV[1]) end
  return 1
end
return 0
`)

// Shred marks ids shredded: the wrapped keys are overwritten (gone from
// Redis) and can never be created again. The caller also tombstones them
// on privacy.keys.
func (s *Store) Shred(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := s.cfg.Redis.TxPipeline()
	for _, id := range ids {
		pipe.Set(ctx, s.cfg.Prefix+id, string([]byte{stateShredded}), 0)
		s.cache.drop(id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("keyredis: shred %d keys: %w", len(ids), err)
	}
	return nil
}

// Shredded reports, in one MGET, which ids are shredded (erased data keys
// and erasure ledger marks).
func (s *Store) Shredded(ctx context.Context, ids []string) ([]bool, error) {
	out := make([]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = s.cfg.Prefix + id
	}
	vals, err := s.cfg.Redis.MGet(ctx, names...).Result()
	if err != nil {
		return nil, fmt.Errorf("keyredis: read %d ids: %w", len(ids), err)
	}
	for i, v := range vals {
		str, ok := v.(string)
		out[i] = ok && str != "" && str[0] == stateShredded
	}
	return out, nil
}

// State reports an id's state: "missing", "unlogged", "logged" or
// "shredded" (exports and tests).
func (s *Store) State(ctx context.Context, id string) (string, error) {
	v, err := s.cfg.Redis.Get(ctx, s.cfg.Prefix+id).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "missing", nil
	case err != nil:
		return "", fmt.Errorf("keyredis: key %s: %w", id, err)
	case v == "":
		return "", fmt.Errorf("keyredis: key %s: empty value", id)
	}
	switch v[0] {
	case stateUnlogged:
		return "unlogged", nil
	case stateLogged:
		return "logged", nil
	case stateShredded:
		return "shredded", nil
	}
	return "", fmt.Errorf("keyredis: key %s: unknown state %q", id, v[0])
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
