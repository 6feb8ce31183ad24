package subject

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxDomains is the number of distinct pseudonym key ids one partition's
// state can number (domain 0 is the records without a key id).
const MaxDomains = 1<<DomainBits - 1

// MaxKeyIDLen bounds a key id kept in a domain table.
const MaxKeyIDLen = 255

// ErrDomains is wrapped by the errors of Domains.
var ErrDomains = errors.New("subject: identity domains")

// Domains numbers the pseudonym key ids that one partition's state has
// seen, exactly: the first key id gets domain 1, the next 2, and so on,
// skipping reserved numbers; two key ids never share a domain, whatever
// their hashes (a hash of the key id, as before, let
// "analytics-2026-07-28" and "analytics-2027-06-26" share one, and one
// person under both pseudonyms count twice). The table is part of the
// partition's checkpoint, so a restore and its replay number the key ids
// exactly as the first run did. The zero value is an empty table.
type Domains struct {
	byKey    map[string]uint16
	keys     []string // in order of numbering
	doms     []uint16 // doms[i] is the domain of keys[i]
	reserved map[uint16]bool
	next     uint16
}

// Of returns the domain of a key id, numbering it on first sight. An empty
// key id is domain 0.
func (d *Domains) Of(keyID []byte) (uint16, error) {
	if len(keyID) == 0 {
		return 0, nil
	}
	if n, ok := d.byKey[string(keyID)]; ok {
		return n, nil
	}
	if len(keyID) > MaxKeyIDLen {
		return 0, fmt.Errorf("%w: a key id longer than %d bytes", ErrDomains, MaxKeyIDLen)
	}
	n := d.next
	for n == 0 || d.reserved[n] {
		if n == MaxDomains {
			return 0, fmt.Errorf("%w: more than %d key ids in one partition's state", ErrDomains, MaxDomains)
		}
		n++
	}
	if d.byKey == nil {
		d.byKey = map[string]uint16{}
	}
	k := string(keyID)
	d.byKey[k] = n
	d.keys = append(d.keys, k)
	d.doms = append(d.doms, n)
	d.next = n + 1
	if n == MaxDomains {
		d.next = MaxDomains // the next new key id fails
		d.reserved = withReserved(d.reserved, n)
	}
	return n, nil
}

// Lookup returns the domain of a key id without numbering it; ok is false
// for a key id the table has not numbered (an empty key id is domain 0).
func (d *Domains) Lookup(keyID string) (dom uint16, ok bool) {
	if keyID == "" {
		return 0, true
	}
	dom, ok = d.byKey[keyID]
	return dom, ok
}

// Reserve keeps a domain number from being given to a key id: a number
// already used by state restored from an older checkpoint format.
func (d *Domains) Reserve(dom uint16) { d.reserved = withReserved(d.reserved, dom) }

func withReserved(m map[uint16]bool, dom uint16) map[uint16]bool {
	if m == nil {
		m = map[uint16]bool{}
	}
	m[dom] = true
	return m
}

// KeyOf returns the key id numbered dom; ok is false for a number the
// table does not give (domain 0, the records without a key id, has the
// empty key id and ok true).
func (d *Domains) KeyOf(dom uint16) (keyID string, ok bool) {
	if dom == 0 {
		return "", true
	}
	for i, n := range d.doms {
		if n == dom {
			return d.keys[i], true
		}
	}
	return "", false
}

// Each calls fn with domain 0 (records without a key id) and every
// numbered domain.
func (d *Domains) Each(fn func(dom uint16)) {
	fn(0)
	for _, n := range d.doms {
		fn(n)
	}
}

// Len returns the number of numbered key ids.
func (d *Domains) Len() int { return len(d.keys) }

// AppendEncode appends the table: a uvarint count, then per key id in
// numbering order its domain (2 bytes, little endian), a uvarint length
// and its bytes.
func (d *Domains) AppendEncode(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(d.keys)))
	for i, k := range d.keys {
		b = binary.LittleEndian.AppendUint16(b, d.doms[i])
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

// DecodeDomains reads a table written by AppendEncode and returns it with
// the bytes after it. It rejects duplicate key ids or domains, domain 0 and
// oversized key ids, and never panics.
func DecodeDomains(b []byte) (Domains, []byte, error) {
	var d Domains
	n, k := binary.Uvarint(b)
	if k <= 0 || n > MaxDomains {
		return d, nil, fmt.Errorf("%w: bad count", ErrDomains)
	}
	b = b[k:]
	seen := map[uint16]bool{}
	for range n {
		if len(b) < 2 {
			return Domains{}, nil, fmt.Errorf("%w: truncated", ErrDomains)
		}
		dom := binary.LittleEndian.Uint16(b)
		b = b[2:]
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > MaxKeyIDLen || l > uint64(len(b)-k) {
			return Domains{}, nil, fmt.Errorf("%w: bad key id length", ErrDomains)
		}
		key := string(b[k : k+int(l)])
		b = b[k+int(l):]
		if dom == 0 || seen[dom] {
			return Domains{}, nil, fmt.Errorf("%w: domain %d given twice or zero", ErrDomains, dom)
		}
		if _, dup := d.byKey[key]; dup {
			return Domains{}, nil, fmt.Errorf("%w: a key id numbered twice", ErrDomains)
		}
		seen[dom] = true
		if d.byKey == nil {
			d.byKey = map[string]uint16{}
		}
		d.byKey[key] = dom
		d.keys = append(d.keys, key)
		d.doms = append(d.doms, dom)
		if dom >= d.next {
			d.next = dom + 1
			if dom == MaxDomains {
				d.next = MaxDomains
				d.reserved = withReserved(d.reserved, dom)
			}
		}
	}
	for dom := range seen {
		d.reserved = withReserved(d.reserved, dom) // never given again
	}
	return d, b, nil
}
