package keyredis

import (
	"sync"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
)

// cache keeps unwrapped logged keys in memory, bounded in size and in age:
// an entry older than ttl is fetched again, so a key shredded by another
// process stops being used here within ttl even before the erasure ledger
// denies the subject. When full it is emptied (the next batches refetch; a
// key costs one MGET slot and an unwrap), which keeps its memory bounded.
type cache struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	now  func() time.Time
	keys map[string]entry
}

type entry struct {
	key *subjectkey.DataKey
	at  time.Time
}

func newCache(max int, ttl time.Duration, now func() time.Time) *cache {
	return &cache{max: max, ttl: ttl, now: now, keys: map[string]entry{}}
}

func (c *cache) get(id string) (*subjectkey.DataKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.keys[id]
	if !ok || c.now().Sub(e.at) > c.ttl {
		return nil, false
	}
	return e.key, true
}

func (c *cache) put(id string, k *subjectkey.DataKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= c.max {
		clear(c.keys)
	}
	c.keys[id] = entry{key: k, at: c.now()}
}

func (c *cache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.keys, id)
}
