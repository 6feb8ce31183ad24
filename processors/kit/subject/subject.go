// Package subject identifies a data subject in the k counts of the
// k-anonymity processors: a hash of its pseudonym in a clean topic, in the
// identity domain of the pseudonym's key. While a key is rotated one person
// has two pseudonyms, one per key; counting distinct subjects within one
// domain (the largest, for aggregate rows; one CASTLE per domain, for
// clusters) never counts a person twice.
//
// It imports processors and internal/kanon/aggregate (for the identity bit
// layout it feeds).
package subject

import (
	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/processors"
)

// DomainBits is the number of top bits of an ID that name its domain: the
// layout internal/kanon/aggregate counts people by.
const DomainBits = aggregate.DomainBits

// KeyID returns the pseudonym key id of a clean record, or nil.
func KeyID(headers []processors.Header) []byte {
	for _, h := range headers {
		if h.Key == processors.HeaderKeyID {
			return h.Value
		}
	}
	return nil
}

// ID is the subject's identity in the k counts: its domain (see Domains:
// the exact number of its pseudonym's key id in the partition's state) in
// the top DomainBits bits and the 64-bit FNV-1a hash of the pseudonym in
// the low bits. A hash collision of two pseudonyms can only merge subjects
// and undercount, which errs on the safe side; domains never collide.
func ID(domain uint16, pseudonym []byte) uint64 {
	const low = 64 - DomainBits
	return uint64(domain)<<low | fnv(pseudonym)&(1<<low-1)
}

// Hash is the 64-bit FNV-1a hash of b (for values compared for equality
// only, such as l-diversity's sensitive attribute).
func Hash(b []byte) uint64 { return fnv(b) }

// Domain returns the identity domain of an ID.
func Domain(id uint64) uint16 { return uint16(id >> (64 - DomainBits)) }

func fnv(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
