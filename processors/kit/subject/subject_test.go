package subject

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/processors"
)

func TestIDCarriesTheDomain(t *testing.T) {
	if DomainBits != aggregate.DomainBits {
		t.Fatalf("DomainBits %d, aggregate.DomainBits %d", DomainBits, aggregate.DomainBits)
	}
	a, b := ID(1, []byte("p")), ID(2, []byte("p"))
	if Domain(a) != 1 || Domain(b) != 2 {
		t.Error("the domain is not in the top bits")
	}
	if a == ID(1, []byte("q")) {
		t.Error("two pseudonyms share an id")
	}
	hs := []processors.Header{{Key: "x", Value: []byte("1")}, {Key: processors.HeaderKeyID, Value: []byte("k1")}}
	if string(KeyID(hs)) != "k1" || KeyID(nil) != nil {
		t.Error("KeyID")
	}
}

// fnvLow16 is the identity domain the processors used before the table: 16
// bits of FNV-1a of the key id.
func fnvLow16(s string) uint16 { return uint16(fnv([]byte(s))) }

// TestCollidingKeyIDsGetTwoDomains is issue 11, defect 1: two real-looking
// key ids whose 16-bit hashes collide (found by the independent audit)
// must get two domains, or one person under both pseudonyms counts twice.
func TestCollidingKeyIDsGetTwoDomains(t *testing.T) {
	for _, pair := range [][2]string{
		{"analytics-2026-07-28", "analytics-2027-06-26"},
		{"ai_training-2027-06", "ai_training-2053-01"},
	} {
		if fnvLow16(pair[0]) != fnvLow16(pair[1]) {
			t.Fatalf("%v: the audit's pair no longer collides under the old scheme; the test lost its point", pair)
		}
		var d Domains
		x, err := d.Of([]byte(pair[0]))
		if err != nil {
			t.Fatal(err)
		}
		y, err := d.Of([]byte(pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		if x == y {
			t.Fatalf("%v share domain %d", pair, x)
		}
		if again, _ := d.Of([]byte(pair[0])); again != x {
			t.Fatal("one key id got two domains")
		}
	}
}

func TestDomainsRoundTripAndLimits(t *testing.T) {
	var d Domains
	d.Reserve(2)
	for i := range 5 {
		if _, err := d.Of([]byte(fmt.Sprintf("key-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if dom, _ := d.Of(nil); dom != 0 {
		t.Fatal("a record without key id is not domain 0")
	}
	b := d.AppendEncode(nil)
	e, rest, err := DecodeDomains(append(b, 0xEE))
	if err != nil || !bytes.Equal(rest, []byte{0xEE}) {
		t.Fatalf("decode: %v, rest %x", err, rest)
	}
	for i := range 5 {
		k := []byte(fmt.Sprintf("key-%d", i))
		x, _ := d.Of(k)
		y, _ := e.Of(k)
		if x != y || x == 2 {
			t.Fatalf("key %d: domain %d before, %d after a round trip (2 is reserved)", i, x, y)
		}
	}
	n, _ := e.Of([]byte("new"))
	for i := range 5 {
		if x, _ := e.Of([]byte(fmt.Sprintf("key-%d", i))); x == n {
			t.Fatal("a new key id after a restore shares a domain")
		}
	}
	if _, err := d.Of(bytes.Repeat([]byte("k"), MaxKeyIDLen+1)); !errors.Is(err, ErrDomains) {
		t.Fatalf("an oversized key id: %v", err)
	}
	var full Domains
	for i := 0; i < MaxDomains; i++ {
		if _, err := full.Of([]byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if _, err := full.Of([]byte("one too many")); !errors.Is(err, ErrDomains) {
		t.Fatalf("the 65536th key id: %v", err)
	}
}

func FuzzDecodeDomains(f *testing.F) {
	var d Domains
	d.Of([]byte("a"))
	d.Of([]byte("bb"))
	f.Add(d.AppendEncode(nil))
	f.Add([]byte{0})
	f.Add([]byte{2, 1, 0, 1, 'a', 1, 0, 1, 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, rest, err := DecodeDomains(b)
		if err != nil {
			return
		}
		again, rest2, err := DecodeDomains(append(got.AppendEncode(nil), rest...))
		if err != nil || !bytes.Equal(rest, rest2) || again.Len() != got.Len() {
			t.Fatalf("re-decoding a decoded table: %v", err)
		}
		if _, err := got.Of([]byte("a fresh key id")); err != nil && !errors.Is(err, ErrDomains) {
			t.Fatal(err)
		}
	})
}
