package consentredis

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/consent"
)

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
	lookup  consent.Lookup
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

// Lookup fills out[i] for subjects[i] from the cache, asking the store once
// for all misses. On a store error nothing is cached and the error is
// returned: the caller must not decide without an answer. The bookkeeping
// of the misses reuses pooled buffers, so a lookup does not allocate in
// the steady state.
func (c *Cache) Lookup(ctx context.Context, subjects []string, out []consent.Lookup) (consent.LookupStats, error) {
	scratch := scratchPool.Get().(*lookupScratch)
	defer scratch.release()
	var st consent.LookupStats
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
		scratch.missOut = make([]consent.Lookup, st.Misses)
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

// lookupScratch holds the reusable buffers of one Cache.Lookup.
type lookupScratch struct {
	missIdx      []int
	missSubjects []string
	missOut      []consent.Lookup
}

var scratchPool = sync.Pool{New: func() any { return new(lookupScratch) }}

// release returns s to the pool, dropping its references to the callers'
// subject strings.
func (s *lookupScratch) release() {
	clear(s.missSubjects)
	scratchPool.Put(s)
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
