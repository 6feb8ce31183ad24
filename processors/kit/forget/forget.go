// Package forget carries erasure notices (privacy.erasures, SPEC 3.5)
// into the state of the k-anonymity processors: it decodes a notice
// (the JSON value internal/erasure publishes, one per purpose pseudonym)
// and keeps, per input partition, the set of erased pseudonyms a shard
// must keep out of its state: records of them that arrive after the
// notice (the clean topic lagging behind the notice topic) and records a
// restore replays from the input.
//
// The set holds the 64-bit FNV-1a hash of each erased pseudonym (the same
// hash the k counts use, never the pseudonym) with the notice's log time;
// an entry is dropped once the partition's input has moved Grace past it,
// when no record of the subject can still arrive (the privacy processor
// denies every event of an erased subject from the erasure on). It is
// part of the partition's checkpoint until then.
//
// It imports processors/kit/subject and the standard library only.
package forget

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
)

// Notice is the part of an erasure notice the k-anonymity state needs.
type Notice struct {
	// Purpose is the purpose whose pseudonym the notice names.
	Purpose string `json:"purpose"`
	// KeyID is the pseudonym key (the records' pp-key-id header).
	KeyID string `json:"key_id"`
	// Pseudonym is the subject's pseudonym under it (the records' key and
	// subject field).
	Pseudonym string `json:"pseudonym"`
}

// Limits of a notice: larger values are malformed.
const (
	// MaxNoticeBytes bounds a notice's JSON value.
	MaxNoticeBytes = 4096
	// MaxPseudonymLen bounds the pseudonym.
	MaxPseudonymLen = 512
	// MaxPurposeLen bounds the purpose name.
	MaxPurposeLen = 64
)

// ErrNotice is wrapped by the errors of Decode.
var ErrNotice = errors.New("forget: malformed erasure notice")

// Decode reads a notice: a JSON object with a purpose and a pseudonym
// (other fields, such as the data key id or the request id, are
// ignored). It rejects oversized or invalid values and never panics; its
// errors never quote the value.
func Decode(b []byte) (Notice, error) {
	var n Notice
	if len(b) == 0 || len(b) > MaxNoticeBytes {
		return n, fmt.Errorf("%w: %d bytes", ErrNotice, len(b))
	}
	if err := json.Unmarshal(b, &n); err != nil {
		return Notice{}, fmt.Errorf("%w: not a JSON object", ErrNotice)
	}
	switch {
	case n.Purpose == "" || len(n.Purpose) > MaxPurposeLen || !utf8.ValidString(n.Purpose):
		return Notice{}, fmt.Errorf("%w: purpose", ErrNotice)
	case n.Pseudonym == "" || len(n.Pseudonym) > MaxPseudonymLen:
		return Notice{}, fmt.Errorf("%w: pseudonym", ErrNotice)
	case len(n.KeyID) > subject.MaxKeyIDLen:
		return Notice{}, fmt.Errorf("%w: key id", ErrNotice)
	}
	return n, nil
}

// Outcomes of a notice, the outcome label of
// pipeline_kanon_erasure_notices_total.
const (
	// Applied: the partition held state of the subject, now dropped.
	Applied = "applied"
	// Unknown: the partition held nothing of the pseudonym (already
	// released, never seen, or a forged pseudonym); it is still kept out
	// of later records.
	Unknown = "unknown"
	// NotApplicable: the notice is for another purpose than the
	// processor's input; nothing changes.
	NotApplicable = "not_applicable"
	// Malformed: the notice could not be read; skipped.
	Malformed = "malformed"
)

// Outcomes lists the notice outcomes.
func Outcomes() []string { return []string{Applied, Unknown, NotApplicable, Malformed} }

// Hash is the identity of a pseudonym in a Set: subject.Hash of its bytes.
func Hash(pseudonym []byte) uint64 { return subject.Hash(pseudonym) }

// MaxEntries bounds one partition's set, and so what it adds to the
// partition's checkpoint (at most about 60 KB, far below a record's
// limit: a flood of notices can never make a checkpoint unpublishable).
// A notice beyond it still drops the subject's state; only its later
// records are not kept out (counted by the caller as Add's false).
const MaxEntries = 4096

// DefaultGrace is how long, in the input's log time, an entry is kept
// after its notice.
const DefaultGrace = 24 * time.Hour

// Set is one partition's erased pseudonyms (hashes). Each entry keeps
// its notice's log time (unix ms) and the input offset below which lie
// every record of the pseudonym the partition has seen or kept out
// (until): a replay of the input from at or past until never meets one,
// so the entry may then go. The zero value is empty.
type Set struct {
	m map[uint64]entry
}

type entry struct{ at, until int64 }

// Len returns the number of entries.
func (s *Set) Len() int { return len(s.m) }

// Has reports whether the pseudonym hash h is in the set; it costs a
// length check when the set is empty.
func (s *Set) Has(h uint64) bool {
	if len(s.m) == 0 {
		return false
	}
	_, ok := s.m[h]
	return ok
}

// Add adds h with its notice time and the partition's next input offset
// (every record of the pseudonym seen so far is below it); false if the
// set is full (h is not added). Adding h again keeps the later values.
func (s *Set) Add(h uint64, atMs, next int64) bool {
	if old, ok := s.m[h]; ok {
		s.m[h] = entry{at: max(old.at, atMs), until: max(old.until, next)}
		return true
	}
	if len(s.m) >= MaxEntries {
		return false
	}
	if s.m == nil {
		s.m = map[uint64]entry{}
	}
	s.m[h] = entry{at: atMs, until: next}
	return true
}

// KeptOut notes that the record at offset, of the erased pseudonym h, was
// kept out: the entry stays until a replay can no longer meet it.
func (s *Set) KeptOut(h uint64, offset int64) {
	if e, ok := s.m[h]; ok && offset >= e.until {
		e.until = offset + 1
		s.m[h] = e
	}
}

// Prune drops the entries whose notice is older than nowMs minus grace
// (no record of the subject can still be on its way) and whose records
// all lie below replayFrom (no replay offers one again), and returns how
// many it dropped.
func (s *Set) Prune(nowMs int64, grace time.Duration, replayFrom int64) int {
	if len(s.m) == 0 {
		return 0
	}
	limit := nowMs - grace.Milliseconds()
	n := 0
	for h, e := range s.m {
		if e.at < limit && e.until <= replayFrom {
			delete(s.m, h)
			n++
		}
	}
	return n
}

// AppendEncode appends the set: a uvarint count, then per entry, by
// increasing hash, the hash (8 bytes, little endian), the notice time and
// the offset bound (varints).
func (s *Set) AppendEncode(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.m)))
	if len(s.m) == 0 {
		return b
	}
	hs := make([]uint64, 0, len(s.m))
	for h := range s.m {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, cmp.Compare[uint64])
	for _, h := range hs {
		b = binary.LittleEndian.AppendUint64(b, h)
		b = binary.AppendVarint(b, s.m[h].at)
		b = binary.AppendVarint(b, s.m[h].until)
	}
	return b
}

// DecodeSet reads a set written by AppendEncode and returns it with the
// bytes after it. It rejects more than MaxEntries entries, hashes out of
// order or repeated, non-canonical varints and truncation, and never
// panics.
func DecodeSet(b []byte) (Set, []byte, error) {
	var s Set
	n, k := binary.Uvarint(b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, n)) || n > MaxEntries || n > uint64(len(b)-k)/10 {
		return s, nil, fmt.Errorf("%w: bad erased set count", ErrNotice)
	}
	b = b[k:]
	if n > 0 {
		s.m = make(map[uint64]entry, n)
	}
	var last uint64
	for i := range n {
		if len(b) < 8 {
			return Set{}, nil, fmt.Errorf("%w: erased set truncated", ErrNotice)
		}
		h := binary.LittleEndian.Uint64(b)
		if i > 0 && h <= last {
			return Set{}, nil, fmt.Errorf("%w: erased set out of order", ErrNotice)
		}
		last = h
		b = b[8:]
		var e entry
		for _, v := range []*int64{&e.at, &e.until} {
			x, k := binary.Varint(b)
			if k <= 0 || k != len(binary.AppendVarint(nil, x)) {
				return Set{}, nil, fmt.Errorf("%w: erased set truncated", ErrNotice)
			}
			*v, b = x, b[k:]
		}
		s.m[h] = e
	}
	return s, b, nil
}
