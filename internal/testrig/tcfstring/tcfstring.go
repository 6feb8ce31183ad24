// Package tcfstring encodes IAB TCF v2 TC strings for tests (the core
// segment, TCF v2 layout): the decoder the product uses is prebid's
// go-gdpr, not this, so a test can write the strings a CMP would.
package tcfstring

import (
	"encoding/base64"
	"time"
)

// bits writes a bit string, most significant bit first.
type bits struct{ b []bool }

func (w *bits) put(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		w.b = append(w.b, v>>uint(i)&1 == 1)
	}
}

func (w *bits) base64() string {
	out := make([]byte, (len(w.b)+7)/8)
	for i, on := range w.b {
		if on {
			out[i/8] |= 0x80 >> uint(i%8)
		}
	}
	return base64.RawURLEncoding.EncodeToString(out)
}

// Encode returns a TC string's core segment (the TCF v2 layout:
// version 2, the given policy version, consent for purposes and, in a bit
// field, for vendors); the decoder under test is prebid's, not this.
func Encode(policy int, purposes []int, vendors []int) string {
	return EncodeAt(time.Now(), policy, purposes, vendors)
}

// EncodeAt is Encode with the string created and last updated at t.
func EncodeAt(t time.Time, policy int, purposes []int, vendors []int) string {
	ds := uint64(t.UnixMilli() / 100)
	var w bits
	w.put(2, 6)    // version
	w.put(ds, 36)  // created, deciseconds
	w.put(ds, 36)  // last updated
	w.put(300, 12) // CMP id
	w.put(2, 12)   // CMP version
	w.put(1, 6)    // consent screen
	w.put(4, 6)    // language "EN"
	w.put(13, 6)
	w.put(150, 12) // vendor list version
	w.put(uint64(policy), 6)
	w.put(1, 1) // service specific
	w.put(0, 1)
	w.put(0, 12) // special features
	var pc uint64
	for _, p := range purposes {
		pc |= 1 << uint(24-p)
	}
	w.put(pc, 24)
	w.put(0, 24) // legitimate interest transparency
	w.put(0, 1)
	w.put(21, 6) // publisher country "VN"
	w.put(13, 6)
	maxV := 1
	for _, v := range vendors {
		maxV = max(maxV, v)
	}
	w.put(uint64(maxV), 16)
	w.put(0, 1) // bit field
	for v := 1; v <= maxV; v++ {
		on := uint64(0)
		for _, c := range vendors {
			if c == v {
				on = 1
			}
		}
		w.put(on, 1)
	}
	w.put(0, 16) // legitimate interest: no vendors
	w.put(0, 1)
	w.put(0, 12) // no publisher restrictions
	return w.base64()
}
