// Package subject identifies a data subject in the k counts of the
// k-anonymity processors: a hash of its pseudonym in a clean topic, in the
// identity domain of the pseudonym's key. While a key is rotated one person
// has two pseudonyms, one per key; counting distinct subjects within one
// domain (the largest, for aggregate rows; one CASTLE per domain, for
// clusters) never counts a person twice.
//
// It imports only processors.
package subject

import "github.com/privacy-pipeline/pipeline/processors"

// DomainBits is the number of top bits of an ID that name its domain; it
// equals internal/kanon/aggregate.DomainBits.
const DomainBits = 16

// HeaderKeyID is the clean records' header that names the key of their
// pseudonyms (set by the privacy processor).
const HeaderKeyID = "pp-key-id"

// KeyID returns the pseudonym key id of a clean record, or nil.
func KeyID(headers []processors.Header) []byte {
	for _, h := range headers {
		if h.Key == HeaderKeyID {
			return h.Value
		}
	}
	return nil
}

// ID is the 64-bit FNV-1a hash of the pseudonym in the low bits and the
// hash of its key id in the top DomainBits bits. A hash collision can only
// merge subjects and undercount, which errs on the safe side.
func ID(keyID, pseudonym []byte) uint64 {
	const low = 64 - DomainBits
	return fnv(keyID)<<low | fnv(pseudonym)&(1<<low-1)
}

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
