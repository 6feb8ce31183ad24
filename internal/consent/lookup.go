package consent

import (
	"time"

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

// LookupStats describes one batched lookup: how many subjects a cache
// answered, how many it had to ask the store for, and how long that store
// round trip took.
type LookupStats struct {
	// Hits and Misses count the subjects answered from the cache and from
	// the store.
	Hits, Misses int
	// StoreLatency is the time of the store round trip (zero when all hit).
	StoreLatency time.Duration
}
