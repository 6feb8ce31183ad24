package consent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// Lookup is the answer for one subject.
type Lookup struct {
	// Record is the subject's consent; valid when Found.
	Record Record
	// Found is false when the store has no record for the subject.
	Found bool
	// Corrupt is true when a stored record exists but cannot be parsed; the
	// pipeline then denies every purpose (fail closed).
	Corrupt bool
}

// Decide applies Decide to the looked-up record, denying every purpose when
// the stored record is corrupt.
func (l *Lookup) Decide(eventJur Jurisdiction, eventGPC bool, p purpose.Purpose) Decision {
	if l.Corrupt {
		return Decision{Reason: ReasonUnreadable, Jurisdiction: eventJur}
	}
	if !l.Found {
		return Decide(nil, eventJur, eventGPC, p)
	}
	return Decide(&l.Record, eventJur, eventGPC, p)
}

// Store answers consent lookups. Implementations make at most one round trip
// per call, whatever the number of subjects.
type Store interface {
	// Lookup fills out[i] for subjects[i]; len(out) >= len(subjects).
	Lookup(ctx context.Context, subjects []string, out []Lookup) error
	// Put stores a subject's whole record.
	Put(ctx context.Context, subject string, rec *Record) error
}

// DefaultKeyPrefix prefixes every consent key in Redis.
const DefaultKeyPrefix = "pp:consent:"

// RedisStore keeps one string key per subject (prefix + subject id) holding
// the encoded Record, and fetches a batch with a single MGET.
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

// InvalidationChannel is the pub/sub channel on which the consent sync
// announces changed subjects (newline-separated) to processors' caches.
func (s *RedisStore) InvalidationChannel() string {
	return strings.TrimSuffix(s.prefix, ":") + "-invalidate"
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
func (s *RedisStore) Lookup(ctx context.Context, subjects []string, out []Lookup) error {
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
		out[i] = Lookup{}
		str, ok := v.(string)
		if !ok {
			continue // nil: no record
		}
		if err := Decode(str, &out[i].Record); err != nil {
			out[i] = Lookup{Found: true, Corrupt: true}
			continue
		}
		out[i].Found = true
	}
	return nil
}

// Put implements Store.
func (s *RedisStore) Put(ctx context.Context, subject string, rec *Record) error {
	if err := s.client.Set(ctx, s.prefix+subject, AppendEncoded(nil, rec), 0).Err(); err != nil {
		return fmt.Errorf("consent: redis SET: %w", err)
	}
	return nil
}

// PutMany stores many records in one pipelined round trip.
func (s *RedisStore) PutMany(ctx context.Context, subjects []string, recs []Record) error {
	if len(subjects) != len(recs) {
		return errors.New("consent: PutMany: subjects and records differ in length")
	}
	pipe := s.client.Pipeline()
	var buf []byte
	for i := range subjects {
		buf = AppendEncoded(buf[:0], &recs[i])
		pipe.Set(ctx, s.prefix+subjects[i], string(buf), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("consent: redis pipeline of %d SETs: %w", len(subjects), err)
	}
	return nil
}

// Cache is a bounded, TTL-based local cache in front of a Store. It is safe
// for concurrent use. Entries for subjects without a record are cached too
// (negative caching), so unknown subjects cost no extra round trips.
type Cache struct {
	store        Store
	ttl          time.Duration
	perShard     int
	now          func() time.Time
	shards       [cacheShards]cacheShard
	hits, misses atomic.Uint64

	// Invalidation generations: gen counts invalidations; invGen holds the
	// generation of each subject's last invalidation (bounded: on overflow
	// it is cleared and allGen marks everything before as invalidated).
	gen    atomic.Uint64
	allGen atomic.Uint64
	invMu  sync.Mutex
	invGen map[string]uint64
}

const maxInvalidationEntries = 100_000

const cacheShards = 16

type cacheShard struct {
	mu sync.Mutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	lookup  Lookup
	expires int64 // unix nanos
}

// CacheOption configures a Cache.
type CacheOption func(*Cache)

// WithTTL sets how long an entry is served without asking the store. It
// bounds how stale a decision can be when no invalidation arrives.
func WithTTL(d time.Duration) CacheOption { return func(c *Cache) { c.ttl = d } }

// WithMaxEntries bounds the number of cached subjects.
func WithMaxEntries(n int) CacheOption {
	return func(c *Cache) { c.perShard = max(1, n/cacheShards) }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) CacheOption { return func(c *Cache) { c.now = now } }

// NewCache wraps a store. Defaults: TTL 250ms, 100,000 entries.
func NewCache(store Store, opts ...CacheOption) *Cache {
	c := &Cache{store: store, ttl: 250 * time.Millisecond, perShard: 100_000 / cacheShards, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

// LookupStats describes one cached lookup.
type LookupStats struct {
	Hits, Misses int
	// StoreLatency is the time of the store round trip (zero when all hit).
	StoreLatency time.Duration
}

// Lookup fills out[i] for subjects[i] from the cache, asking the store once
// for all misses. On a store error nothing is cached and the error is
// returned: the caller must not decide without an answer. scratch buffers
// may be passed to avoid allocations; they are grown as needed.
func (c *Cache) Lookup(ctx context.Context, subjects []string, out []Lookup, scratch *LookupScratch) (LookupStats, error) {
	var st LookupStats
	now := c.now().UnixNano()
	scratch.missIdx = scratch.missIdx[:0]
	scratch.missSubjects = scratch.missSubjects[:0]
	for i, sub := range subjects {
		sh := c.shard(sub)
		sh.mu.Lock()
		e, ok := sh.m[sub]
		sh.mu.Unlock()
		if ok && e.expires > now {
			out[i] = e.lookup
			st.Hits++
			continue
		}
		scratch.missIdx = append(scratch.missIdx, i)
		scratch.missSubjects = append(scratch.missSubjects, sub)
	}
	st.Misses = len(scratch.missIdx)
	c.hits.Add(uint64(st.Hits))
	c.misses.Add(uint64(st.Misses))
	if st.Misses == 0 {
		return st, nil
	}
	if cap(scratch.missOut) < st.Misses {
		scratch.missOut = make([]Lookup, st.Misses)
	}
	missOut := scratch.missOut[:st.Misses]
	start := time.Now()
	err := c.store.Lookup(ctx, scratch.missSubjects, missOut)
	st.StoreLatency = time.Since(start)
	if err != nil {
		return st, err
	}
	expires := c.now().Add(c.ttl).UnixNano()
	for k, i := range scratch.missIdx {
		out[i] = missOut[k]
		c.put(scratch.missSubjects[k], cacheEntry{lookup: missOut[k], expires: expires})
	}
	return st, nil
}

// LookupScratch holds reusable buffers for Cache.Lookup; one per worker.
type LookupScratch struct {
	missIdx      []int
	missSubjects []string
	missOut      []Lookup
}

func (c *Cache) put(sub string, e cacheEntry) {
	sh := c.shard(sub)
	sh.mu.Lock()
	if _, exists := sh.m[sub]; !exists && len(sh.m) >= c.perShard {
		for k := range sh.m { // evict one arbitrary entry (Go map order is randomised)
			delete(sh.m, k)
			break
		}
	}
	sh.m[strings.Clone(sub)] = e // callers' strings may alias record buffers
	sh.mu.Unlock()
}

// Invalidate drops a subject's cached entry so the next lookup asks the
// store, and records the invalidation (see InvalidatedSince).
func (c *Cache) Invalidate(subject string) {
	g := c.gen.Add(1)
	c.invMu.Lock()
	if c.invGen == nil {
		c.invGen = make(map[string]uint64)
	} else if len(c.invGen) >= maxInvalidationEntries {
		clear(c.invGen) // forget details; everything before g counts as invalidated
		c.allGen.Store(g)
	}
	c.invGen[strings.Clone(subject)] = g
	c.invMu.Unlock()
	sh := c.shard(subject)
	sh.mu.Lock()
	delete(sh.m, subject)
	sh.mu.Unlock()
}

// Generation returns the current invalidation generation; take it before
// a lookup and pass it to InvalidatedSince before publishing.
func (c *Cache) Generation() uint64 { return c.gen.Load() }

// InvalidatedSince reports whether any of the subjects was invalidated after
// generation g, that is whether a decision taken on them since g may be
// stale. It is cheap when nothing was invalidated at all.
func (c *Cache) InvalidatedSince(g uint64, subjects []string) bool {
	if c.gen.Load() == g {
		return false
	}
	if c.allGen.Load() > g {
		return true
	}
	c.invMu.Lock()
	defer c.invMu.Unlock()
	for _, s := range subjects {
		if c.invGen[s] > g {
			return true
		}
	}
	return false
}

// InvalidateAll empties the cache and invalidates every decision taken so far.
func (c *Cache) InvalidateAll() {
	c.allGen.Store(c.gen.Add(1))
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// Len returns the number of cached subjects.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (c *Cache) shard(sub string) *cacheShard {
	// FNV-1a, inlined to avoid allocations.
	h := uint32(2166136261)
	for i := 0; i < len(sub); i++ {
		h ^= uint32(sub[i])
		h *= 16777619
	}
	return &c.shards[h%cacheShards]
}
