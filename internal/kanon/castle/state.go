package castle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
)

// ErrState is wrapped by every error of Restore about the snapshot.
var ErrState = errors.New("castle: invalid state snapshot")

const (
	stateMagic = "CSTL"
	// stateVersion 2 added the split method to the configuration
	// fingerprint; version 1 snapshots are rejected. Version 3 adds
	// Stats.Dropped after the information loss sum; version 2 snapshots
	// restore with Dropped 0.
	stateVersion   = 3
	stateVersionV2 = 2
)

// MarshalState returns a snapshot of the instance: position counter,
// cluster-id counter, PRNG state, numeric domains, stats, the tau history,
// the reusable published clusters (Omega, categorical nodes by level and
// label) and the open clusters as ordered lists of held tuples (position,
// ref, subject). Tuple QI values are not included: Restore re-fetches them
// by ref. The snapshot ends with a CRC-32C.
func (c *Castle) MarshalState() []byte {
	b := make([]byte, 0, 256+len(c.open)*16+c.Held()*24)
	b = append(b, stateMagic...)
	b = append(b, stateVersion)
	b = c.appendFingerprint(b)
	b = binary.AppendUvarint(b, uint64(c.n))
	b = binary.AppendUvarint(b, c.nextID)
	rs, _ := c.pcg.MarshalBinary() // never fails
	b = binary.AppendUvarint(b, uint64(len(rs)))
	b = append(b, rs...)
	for i := range c.dmin {
		b = appendFloat(b, c.dmin[i])
		b = appendFloat(b, c.dmax[i])
	}
	st := c.stats
	for _, v := range []int64{st.In, st.Released, st.Suppressed, st.Reused, st.ClustersPublished, st.MaxDelay} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	b = appendFloat(b, st.InfoLossSum)
	b = binary.AppendUvarint(b, uint64(st.Dropped))
	// tau history, oldest first.
	mu := len(c.tauH)
	b = binary.AppendUvarint(b, uint64(c.tauN))
	start := (c.tauP - c.tauN + mu) % mu
	for i := range c.tauN {
		b = appendFloat(b, c.tauH[(start+i)%mu])
	}
	b = binary.AppendUvarint(b, uint64(len(c.omega)))
	for _, pub := range c.omega {
		b = binary.AppendUvarint(b, pub.id)
		b = appendFloat(b, pub.gen.InfoLoss)
		for i := range pub.gen.Lo {
			b = appendFloat(b, pub.gen.Lo[i])
			b = appendFloat(b, pub.gen.Hi[i])
		}
		for j, n := range pub.gen.Cat {
			h := c.hier[j]
			b = binary.AppendUvarint(b, uint64(h.Level(n)))
			b = appendString(b, h.Label(n))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(c.open)))
	for _, cl := range c.open {
		b = binary.AppendUvarint(b, cl.id)
		b = binary.AppendUvarint(b, uint64(len(cl.members)))
		for _, p := range cl.members {
			s := &c.ring[p&c.mask]
			b = binary.AppendUvarint(b, uint64(p))
			b = binary.AppendVarint(b, s.ref)
			b = binary.AppendUvarint(b, s.subj)
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendFingerprint records the configuration that the snapshot depends
// on; Restore rejects a snapshot taken under another configuration.
func (c *Castle) appendFingerprint(b []byte) []byte {
	for _, v := range []int{c.cfg.K, c.cfg.Delta, c.cfg.Beta, c.cfg.Mu, c.cfg.L, c.cfg.MaxReuse, int(c.splitM), c.nNum, c.nCat} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	for _, h := range c.hier {
		b = binary.AppendUvarint(b, uint64(h.Levels()))
		b = binary.AppendUvarint(b, uint64(h.TotalLeaves()))
	}
	return b
}

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b       []byte
	err     error
	version byte
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrState}, args...)...)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or bad varint reading %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("truncated or bad varint reading %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length that must be <= limit and <= the remaining bytes
// divided by minBytes per element (so garbage cannot force big
// allocations).
func (r *reader) count(what string, limit uint64, minBytes int) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if v > limit || v > uint64(len(r.b)/minBytes) {
		r.fail("%s = %d out of range", what, v)
		return 0
	}
	return int(v)
}

func (r *reader) float(what string) float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated reading %s", what)
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	if math.IsNaN(f) || math.IsInf(f, 0) {
		r.fail("%s is not finite", what)
	}
	return f
}

func (r *reader) bytes(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail("truncated reading %s", what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// Restore replaces the state of c (which must have been created by New
// with the same Config) with the snapshot, re-fetching the data of held
// tuples through lookup, whose categorical nodes must come from the
// hierarchies of c's Config (dynamic hierarchies may number nodes
// differently from the snapshotting process: the snapshot stores labels). The restored instance behaves exactly like the
// one that produced the snapshot. On error c is reset to a fresh state
// and the error wraps ErrState (bad snapshot) or describes the failed
// lookup.
func (c *Castle) Restore(state []byte, lookup func(ref int64) (Tuple, bool)) error {
	if err := c.restore(state, lookup); err != nil {
		c.reset()
		return err
	}
	return nil
}

// restore reads the snapshot into c, step by step in the order
// MarshalState writes it. On error c is left part restored: Restore
// resets it.
func (c *Castle) restore(state []byte, lookup func(ref int64) (Tuple, bool)) error {
	r, err := c.openState(state)
	if err != nil {
		return err
	}
	c.reset()
	c.readCounters(r)
	st := c.readStats(r)
	c.readTau(r)
	c.readOmega(r)
	held, err := c.readOpen(r, lookup)
	if err != nil {
		return err
	}
	if r.err != nil {
		return r.err
	}
	if want := st.In - st.Released - st.Suppressed - st.Dropped; held != want {
		return fmt.Errorf("%w: %d held tuples, stats say %d", ErrState, held, want)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrState, len(r.b))
	}
	return nil
}

// openState checks the snapshot's frame - length, magic, version,
// checksum - and that it was taken under c's configuration, and returns a
// reader of what follows the configuration fingerprint (whose err is set
// if the snapshot ends within it).
func (c *Castle) openState(state []byte) (*reader, error) {
	if len(state) < len(stateMagic)+1+4 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrState, len(state))
	}
	body, sum := state[:len(state)-4], binary.BigEndian.Uint32(state[len(state)-4:])
	if string(body[:4]) != stateMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrState)
	}
	if body[4] != stateVersion && body[4] != stateVersionV2 {
		return nil, fmt.Errorf("%w: unsupported version %d (this build reads versions %d and %d; version 1 snapshots predate Config.Split and cannot be restored)", ErrState, body[4], stateVersionV2, stateVersion)
	}
	if crc32.Checksum(body, crcTable) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrState)
	}
	r := &reader{b: body[5:], version: body[4]}
	fp := c.appendFingerprint(nil)
	if got := r.bytes("config fingerprint", len(fp)); r.err == nil && string(got) != string(fp) {
		return nil, fmt.Errorf("%w: taken under a different configuration (K, Delta, Beta, Mu, L, MaxReuse, Split, QIs)", ErrState)
	}
	return r, nil
}

// readCounters reads the position counter, the cluster-id counter, the
// PRNG state and the numeric domains.
func (c *Castle) readCounters(r *reader) {
	n := r.uvarint("position")
	if n > math.MaxInt64/2 {
		r.fail("position %d out of range", n)
	}
	c.n = int64(n)
	c.nextID = r.uvarint("next cluster id")
	if r.err == nil && c.nextID == 0 {
		r.fail("next cluster id is 0")
	}
	rs := r.bytes("PRNG state", r.count("PRNG state length", 64, 1))
	if r.err == nil {
		if err := c.pcg.UnmarshalBinary(rs); err != nil {
			r.fail("PRNG state: %v", err)
		}
	}
	for i := range c.dmin {
		c.dmin[i] = r.float("domain min")
		c.dmax[i] = r.float("domain max")
		if r.err == nil && (!(c.dmin[i] < c.dmax[i]) || math.Abs(c.dmin[i]) > MaxAbsValue || math.Abs(c.dmax[i]) > MaxAbsValue) {
			r.fail("numeric domain %d: [%v,%v]", i, c.dmin[i], c.dmax[i])
		}
		c.invW[i] = 1 / (c.dmax[i] - c.dmin[i])
	}
}

// readStats reads the stats, which must agree with the position counter
// and Delta, and returns them (also set in c).
func (c *Castle) readStats(r *reader) Stats {
	var st Stats
	for _, p := range []*int64{&st.In, &st.Released, &st.Suppressed, &st.Reused, &st.ClustersPublished, &st.MaxDelay} {
		v := r.uvarint("stats")
		if v > math.MaxInt64/2 {
			r.fail("stats counter out of range")
		}
		*p = int64(v)
	}
	st.InfoLossSum = r.float("info loss sum")
	if r.version >= stateVersion {
		v := r.uvarint("dropped")
		if v > math.MaxInt64/2 {
			r.fail("stats counter out of range")
		}
		st.Dropped = int64(v)
	}
	if r.err == nil && (st.In != c.n || st.MaxDelay > int64(c.cfg.Delta) || st.Released+st.Suppressed+st.Dropped > st.In) {
		r.fail("inconsistent stats")
	}
	c.stats = st
	return st
}

// readTau reads the tau history (at most Mu values, oldest first) and
// replays it, which rebuilds the ring and tau exactly.
func (c *Castle) readTau(r *reader) {
	tn := r.count("tau history length", uint64(c.cfg.Mu), 8)
	for i := range tn {
		c.tauH[i] = r.float("tau history")
	}
	if r.err == nil && tn > 0 {
		c.tauN = 0
		c.tauP = 0
		vals := append([]float64(nil), c.tauH[:tn]...)
		for _, v := range vals {
			c.pushTau(v)
		}
	}
}

// readOmega reads the reusable published clusters (at most MaxReuse).
func (c *Castle) readOmega(r *reader) {
	no := r.count("reusable clusters", uint64(c.cfg.MaxReuse), 1+8+16*c.nNum+2*c.nCat)
	for range no {
		if r.err != nil {
			break
		}
		c.omega = append(c.omega, c.readPublished(r))
	}
}

// readPublished reads one published cluster: its id, information loss,
// numeric ranges, and categorical nodes by level and label (looked up in
// c's hierarchies, which may number nodes differently).
func (c *Castle) readPublished(r *reader) published {
	id := r.uvarint("cluster id")
	if r.err == nil && (id == 0 || id >= c.nextID) {
		r.fail("cluster id %d out of range", id)
	}
	g := &Generalization{Lo: make([]float64, c.nNum), Hi: make([]float64, c.nNum), Cat: make([]hierarchy.Node, c.nCat)}
	g.InfoLoss = r.float("info loss")
	for i := range c.nNum {
		g.Lo[i] = r.float("range lo")
		g.Hi[i] = r.float("range hi")
		if r.err == nil && g.Lo[i] > g.Hi[i] {
			r.fail("range [%v,%v]", g.Lo[i], g.Hi[i])
		}
	}
	for j := range c.nCat {
		lv := r.uvarint("level")
		label := string(r.bytes("label", r.count("label length", 1<<16, 1)))
		if r.err != nil {
			break
		}
		node, ok := c.hier[j].NodeAt(label, int(min(lv, 1<<20)))
		if !ok {
			r.fail("categorical QI %d: no node %q at level %d", j, label, lv)
			break
		}
		g.Cat[j] = node
	}
	return published{id: id, gen: g}
}

// readOpen reads the open clusters (at most Beta) with their held tuples,
// and returns how many tuples are held. A snapshot error is left in r.err;
// a failed lookup is returned.
func (c *Castle) readOpen(r *reader, lookup func(ref int64) (Tuple, bool)) (held int64, err error) {
	low := max(0, c.n-int64(c.cfg.Delta))
	maxHeld := c.n - low
	ncl := r.count("open clusters", uint64(c.cfg.Beta), 3)
	for range ncl {
		if r.err != nil {
			break
		}
		id := r.uvarint("cluster id")
		if r.err == nil && (id == 0 || id >= c.nextID) {
			r.fail("cluster id %d out of range", id)
		}
		nm := r.count("cluster size", uint64(maxHeld), 3)
		if r.err == nil && nm == 0 {
			r.fail("empty cluster")
		}
		cl := c.newCluster()
		c.nextID--
		cl.id = id
		c.open = append(c.open, cl)
		if err := c.readMembers(r, cl, nm, low, &held, lookup); err != nil {
			return held, err
		}
	}
	return held, nil
}

// readMembers reads the nm held tuples of an open cluster (position, ref,
// subject), each at a position still within Delta and held once, fetches
// each tuple's data by ref, and adds it to cl; held counts them all.
func (c *Castle) readMembers(r *reader, cl *cluster, nm int, low int64, held *int64, lookup func(ref int64) (Tuple, bool)) error {
	maxHeld := c.n - low
	for range nm {
		p := int64(r.uvarint("position"))
		ref := r.varint("ref")
		subj := r.uvarint("subject")
		if r.err != nil {
			return nil
		}
		if p < low || p >= c.n {
			r.fail("held position %d outside [%d,%d)", p, low, c.n)
			return nil
		}
		if *held++; *held > maxHeld {
			r.fail("too many held tuples")
			return nil
		}
		if c.held(p) != nil {
			r.fail("position %d held twice", p)
			return nil
		}
		t, err := c.lookupHeld(p, ref, subj, lookup)
		if err != nil {
			return err
		}
		c.store(p, &t)
		c.addMember(cl, p)
	}
	return nil
}

// lookupHeld fetches the held tuple at position p by ref and checks it
// against the snapshot (ref, subject), the configuration and the restored
// numeric domains.
func (c *Castle) lookupHeld(p, ref int64, subj uint64, lookup func(ref int64) (Tuple, bool)) (Tuple, error) {
	t, ok := lookup(ref)
	if !ok {
		return t, fmt.Errorf("castle: restore: held tuple ref %d (position %d) not found by lookup", ref, p)
	}
	if t.Ref != ref || t.Subject != subj {
		return t, fmt.Errorf("castle: restore: lookup(%d) returned ref %d subject %d, snapshot has subject %d", ref, t.Ref, t.Subject, subj)
	}
	if err := c.checkTuple(&t); err != nil {
		return t, fmt.Errorf("castle: restore: %w", err)
	}
	for i, v := range t.Num {
		if v < c.dmin[i] || v > c.dmax[i] {
			return t, fmt.Errorf("castle: restore: ref %d: value %v outside the snapshot's domain", ref, v)
		}
	}
	return t, nil
}
