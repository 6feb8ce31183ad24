package subject

import (
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/processors"
)

func TestIDCarriesTheKeyDomain(t *testing.T) {
	if DomainBits != aggregate.DomainBits {
		t.Fatalf("DomainBits %d, aggregate.DomainBits %d", DomainBits, aggregate.DomainBits)
	}
	a, b := ID([]byte("k1"), []byte("p")), ID([]byte("k2"), []byte("p"))
	if Domain(a) == Domain(b) {
		t.Error("two keys share a domain")
	}
	if Domain(a) != Domain(ID([]byte("k1"), []byte("q"))) {
		t.Error("one key gives two domains")
	}
	if a == ID([]byte("k1"), []byte("q")) {
		t.Error("two pseudonyms share an id")
	}
	hs := []processors.Header{{Key: "x", Value: []byte("1")}, {Key: HeaderKeyID, Value: []byte("k1")}}
	if string(KeyID(hs)) != "k1" || KeyID(nil) != nil {
		t.Error("KeyID")
	}
}
