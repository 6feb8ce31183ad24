package kanonrec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/privacy-pipeline/pipeline/internal/kanon/castle"
	"github.com/privacy-pipeline/pipeline/processors/kit/forget"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
)

// One CASTLE per identity domain (pseudonym key). While a key is rotated a
// person has two pseudonyms; clusters never mix them, so a cluster's
// distinct pseudonyms are distinct people. Records of two domains may still
// share a generalisation: their group then only grows.

// domainCastle is the CASTLE of one identity domain.
type domainCastle struct {
	dom uint16
	c   *castle.Castle
}

// maxDomains bounds the domains kept per partition: the oldest empty one
// is retired (its counters folded into state.retired) beyond it.
const maxDomains = 4

// castleFor returns the domain's CASTLE, creating it.
func (w *Worker) castleFor(st *state, dom uint16) (*castle.Castle, error) {
	for _, d := range st.domains {
		if d.dom == dom {
			return d.c, nil
		}
	}
	c, err := castle.New(w.p.castleConfig(w.p.seed(st.partition, dom)))
	if err != nil {
		return nil, err
	}
	st.domains = append(st.domains, domainCastle{dom: dom, c: c})
	if len(st.domains) > maxDomains {
		for i, d := range st.domains[:len(st.domains)-1] {
			if d.c.Held() == 0 {
				st.retired = addStats(st.retired, d.c.Stats())
				st.domains = append(st.domains[:i], st.domains[i+1:]...)
				break
			}
		}
	}
	return c, nil
}

// stats sums the counters of every domain, retired ones included.
func (st *state) stats() castle.Stats {
	s := st.retired
	for _, d := range st.domains {
		s = addStats(s, d.c.Stats())
	}
	return s
}

func addStats(a, b castle.Stats) castle.Stats {
	a.In += b.In
	a.Released += b.Released
	a.Suppressed += b.Suppressed
	a.Reused += b.Reused
	a.ClustersPublished += b.ClustersPublished
	a.InfoLossSum += b.InfoLossSum
	a.MaxDelay = max(a.MaxDelay, b.MaxDelay)
	return a
}

// minHeldRef is the oldest record any domain still holds.
func (st *state) minHeldRef() (int64, bool) {
	var m int64
	found := false
	for _, d := range st.domains {
		if r, ok := d.c.MinHeldRef(); ok && (!found || r < m) {
			m, found = r, true
		}
	}
	return m, found
}

// heldRefs lists the records every domain holds.
func (st *state) heldRefs() []int64 {
	var out []int64
	for _, d := range st.domains {
		out = d.c.HeldRefs(out)
	}
	return out
}

const (
	stateMagic = 'A'
	// stateVersion 2 adds the identity-domain table (subject.Domains)
	// after the header; version 1 checkpoints, whose domains were 16-bit
	// hashes of the key ids, still restore: their domain numbers are
	// reserved so no key id is numbered into one of their CASTLEs.
	stateVersion   = 2
	stateVersionV1 = 1
)

// errState is wrapped by the errors of decodeState.
var errState = errors.New("anonymize: corrupt checkpoint")

// appendState encodes every domain's CASTLE snapshot and the retired
// counters.
func appendState(b []byte, st *state) []byte {
	b = append(b, stateMagic, stateVersion)
	b = st.ids.AppendEncode(b)
	b = binary.AppendUvarint(b, uint64(len(st.domains)))
	for _, d := range st.domains {
		b = binary.LittleEndian.AppendUint16(b, d.dom)
		snap := d.c.MarshalState()
		b = binary.AppendUvarint(b, uint64(len(snap)))
		b = append(b, snap...)
	}
	r := st.retired
	for _, v := range []int64{r.In, r.Released, r.Suppressed, r.Reused, r.ClustersPublished, r.MaxDelay} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.InfoLossSum))
	if st.erased.Len() > 0 {
		// The erased pseudonyms (erasure.go), only while there are any:
		// a checkpoint without them reads as an empty set.
		b = append(b, erasedMarker)
		b = st.erased.AppendEncode(b)
	}
	return b
}

// erasedMarker introduces the erased set after the retired counters.
const erasedMarker = 'E'

// decodeIDs returns the identity-domain table of a checkpoint: the
// encoded one (version 2), or for a version 1 checkpoint an empty table in
// which the domains its CASTLEs use are reserved.
func decodeIDs(b []byte) (subject.Domains, error) {
	if len(b) < 2 || b[0] != stateMagic {
		return subject.Domains{}, fmt.Errorf("%w: bad header", errState)
	}
	switch b[1] {
	case stateVersion:
		d, _, err := subject.DecodeDomains(b[2:])
		if err != nil {
			return subject.Domains{}, fmt.Errorf("%w: %w", errState, err)
		}
		return d, nil
	case stateVersionV1:
		doms, _, _, err := decodeState(b)
		if err != nil {
			return subject.Domains{}, err
		}
		var d subject.Domains
		for _, x := range doms {
			d.Reserve(x.dom)
		}
		return d, nil
	}
	return subject.Domains{}, fmt.Errorf("%w: bad header", errState)
}

// decodedDomain is one domain's snapshot in a checkpoint.
type decodedDomain struct {
	dom  uint16
	snap []byte
}

// decodeState splits a checkpoint into domain snapshots, the retired
// counters and the erased set.
func decodeState(b []byte) ([]decodedDomain, castle.Stats, forget.Set, error) {
	var retired castle.Stats
	var erased forget.Set
	if len(b) < 2 || b[0] != stateMagic || (b[1] != stateVersion && b[1] != stateVersionV1) {
		return nil, retired, erased, fmt.Errorf("%w: bad header", errState)
	}
	v1 := b[1] == stateVersionV1
	b = b[2:]
	if !v1 {
		var err error
		if _, b, err = subject.DecodeDomains(b); err != nil {
			return nil, retired, erased, fmt.Errorf("%w: %w", errState, err)
		}
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxDomains+1 {
		return nil, retired, erased, fmt.Errorf("%w: domain count", errState)
	}
	b = b[k:]
	out := make([]decodedDomain, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, retired, erased, fmt.Errorf("%w: truncated", errState)
		}
		dom := binary.LittleEndian.Uint16(b)
		b = b[2:]
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, retired, erased, fmt.Errorf("%w: snapshot length", errState)
		}
		out = append(out, decodedDomain{dom: dom, snap: b[k : k+int(l)]})
		b = b[k+int(l):]
	}
	vals := make([]int64, 6)
	for i := range vals {
		v, k := binary.Varint(b)
		if k <= 0 || v < 0 {
			return nil, retired, erased, fmt.Errorf("%w: counters", errState)
		}
		vals[i], b = v, b[k:]
	}
	if len(b) < 8 {
		return nil, retired, erased, fmt.Errorf("%w: truncated", errState)
	}
	if rest := b[8:]; len(rest) > 0 {
		if rest[0] != erasedMarker {
			return nil, retired, erased, fmt.Errorf("%w: trailing bytes", errState)
		}
		var err error
		if erased, rest, err = forget.DecodeSet(rest[1:]); err != nil || len(rest) != 0 {
			return nil, retired, forget.Set{}, fmt.Errorf("%w: erased set", errState)
		}
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(b))
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return nil, retired, erased, fmt.Errorf("%w: information loss", errState)
	}
	retired = castle.Stats{In: vals[0], Released: vals[1], Suppressed: vals[2], Reused: vals[3], ClustersPublished: vals[4], MaxDelay: vals[5], InfoLossSum: f}
	return out, retired, erased, nil
}
