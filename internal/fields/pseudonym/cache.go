package pseudonym

import "hash/maphash"

// cacheInLen bounds the value of a cached pseudonym (a UUID fits); a
// longer value is computed every time. With the length byte and the
// pseudonym a slot is 64 bytes, one cache line: a lookup touches one.
const cacheInLen = 64 - 1 - EncodedLen

// Cache remembers recent pseudonyms of one [Pseudonymizer]: a value seen
// again (a subject's next event) costs a hash lookup instead of an
// HMAC-SHA256. It is direct-mapped with a fixed number of slots, holds
// its entries in fixed-size arrays (so a hit and a miss allocate
// nothing) and is, like the Pseudonymizer, NOT safe for concurrent use.
//
// Use it for values that repeat (the subject id of every event); a value
// that never repeats (an event id) would only evict the others.
//
// The cache holds the raw values it was asked about in memory, as the
// batch being processed does; it is never written anywhere. A cached
// pseudonym is exactly what [Pseudonymizer.Append] returns: the key never
// changes for a Pseudonymizer, so no entry can go stale.
type Cache struct {
	p      *Pseudonymizer
	seed   maphash.Seed
	slots  []cacheSlot
	domain string // of every cached value: the first Append's
	// Hits and Misses count lookups answered from and missing the cache.
	Hits, Misses uint64
}

type cacheSlot struct {
	n   uint8 // bytes of in used, plus one; 0: empty
	in  [cacheInLen]byte
	out [EncodedLen]byte
}

// NewCache returns a cache of p with slots rounded up to a power of two
// (at least 1).
func NewCache(p *Pseudonymizer, slots int) *Cache {
	n := 1
	for n < slots {
		n <<= 1
	}
	return &Cache{p: p, seed: maphash.MakeSeed(), slots: make([]cacheSlot, n)}
}

// Pseudonymizer returns the Pseudonymizer the cache remembers.
func (c *Cache) Pseudonymizer() *Pseudonymizer { return c.p }

// Append appends the pseudonym of value in domain to dst, as
// [Pseudonymizer.Append] does (and panics as it does on a domain with a
// NUL byte). A cache remembers the values of one domain, the first it is
// asked about (one cache per field); another domain's are computed.
func (c *Cache) Append(dst []byte, domain, value string) []byte {
	if c.domain == "" && domain != "" {
		c.domain = domain
	}
	if len(value) > cacheInLen || domain != c.domain {
		return c.p.Append(dst, domain, value)
	}
	s := &c.slots[maphash.String(c.seed, value)&uint64(len(c.slots)-1)]
	if int(s.n) == len(value)+1 && string(s.in[:len(value)]) == value {
		c.Hits++
		return append(dst, s.out[:]...)
	}
	c.Misses++
	start := len(dst)
	dst = c.p.Append(dst, domain, value)
	s.n = uint8(len(value) + 1)
	copy(s.in[:], value)
	copy(s.out[:], dst[start:])
	return dst
}
