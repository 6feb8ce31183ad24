package pseudonym

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// TestCacheEqualsPseudonymizer: whatever the cache holds, it answers
// exactly what the Pseudonymizer computes. The attack: a slot shared by two
// values (a collision in a small cache), the same value in two domains,
// values differing only after a NUL, and inputs too long to cache.
func TestCacheEqualsPseudonymizer(t *testing.T) {
	kr, err := GenerateKeyring([]string{"analytics"}, "t")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := kr.Active("analytics")
	ref, c := New(k), NewCache(New(k), 4) // 4 slots: collisions on every few values
	var values []string
	for i := 0; i < 200; i++ {
		values = append(values, fmt.Sprintf("cust-%07d", i%37))
	}
	values = append(values, "", "a\x00b", "a", strings.Repeat("x", cacheInLen), strings.Repeat("z", cacheInLen+1), strings.Repeat("y", 200))
	for round := 0; round < 2; round++ {
		for _, v := range values {
			for _, d := range []string{"subject_id", "device_id", "a"} {
				want := string(ref.Append(nil, d, v))
				for rep := 0; rep < 2; rep++ { // a miss, then (unless too long) a hit
					if got := string(c.Append([]byte("pre:"), d, v)); got != "pre:"+want {
						t.Fatalf("cache gave %q for %q/%q, want %q", got, d, v, want)
					}
				}
			}
		}
	}
	if c.Hits == 0 || c.Misses == 0 {
		t.Fatalf("hits %d misses %d: the test did not exercise both paths", c.Hits, c.Misses)
	}
}

// TestCacheDoesNotAllocate: a hit and a miss allocate nothing.
func TestCacheDoesNotAllocate(t *testing.T) {
	kr, _ := GenerateKeyring([]string{"analytics"}, "t")
	k, _ := kr.Active("analytics")
	c := NewCache(New(k), 1024)
	buf := make([]byte, 0, 64)
	i := 0
	vals := []string{"cust-0000001", "cust-0000002", "cust-0000003"}
	if n := testing.AllocsPerRun(1000, func() {
		buf = c.Append(buf[:0], "subject_id", vals[i%3])
		i++
	}); n != 0 {
		t.Fatalf("%v allocations per Append", n)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	kr, _ := GenerateKeyring([]string{"analytics"}, "t")
	k, _ := kr.Active("analytics")
	c, p := NewCache(New(k), 1024), New(k)
	buf := make([]byte, 0, 64)
	b.Run("hmac", func(b *testing.B) {
		for b.Loop() {
			buf = p.Append(buf[:0], "subject_id", "cust-0000001")
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			buf = c.Append(buf[:0], "subject_id", "cust-0000001")
		}
	})
}

// TestCacheSlotIsOneCacheLine: a slot is 64 bytes.
func TestCacheSlotIsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(cacheSlot{}); n != 64 {
		t.Fatalf("a cache slot is %d bytes", n)
	}
}
