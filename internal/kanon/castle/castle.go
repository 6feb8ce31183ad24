package castle

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
)

// Tuple is one stream element.
type Tuple struct {
	// Ref is the caller's opaque reference (e.g. a Kafka offset),
	// returned in the Output.
	Ref int64
	// Subject identifies the data subject (the paper's pid), e.g. a hash
	// of a pseudonym. One subject may send many tuples.
	Subject uint64
	// Sensitive is the sensitive value for l-diversity (ignored when
	// Config.L <= 1).
	Sensitive uint64
	// Num holds the numeric QI values, in Config.QIs order. Castle copies
	// them.
	Num []float64
	// Cat holds the categorical QI values as leaf (or any) nodes of their
	// hierarchies, in Config.QIs order. Castle copies them.
	Cat []hierarchy.Node
}

// Generalization is the generalised QI values of a released cluster. It
// is shared by all outputs of the cluster and must not be modified.
type Generalization struct {
	// Lo and Hi are the ranges of the numeric QIs.
	Lo, Hi []float64
	// Cat holds the categorical QIs' generalised nodes.
	Cat []hierarchy.Node
	// InfoLoss is the cluster's information loss (NCP/GLM averaged over
	// the QIs) at publication.
	InfoLoss float64
}

// Covers reports whether the tuple values lie inside g.
func (g *Generalization) Covers(h []hierarchy.Hierarchy, num []float64, cat []hierarchy.Node) bool {
	for i, v := range num {
		if v < g.Lo[i] || v > g.Hi[i] {
			return false
		}
	}
	for j, n := range cat {
		if g.Cat[j] != n && h[j].LCA(g.Cat[j], n) != g.Cat[j] {
			return false
		}
	}
	return true
}

// Output is the decision on one tuple.
type Output struct {
	// Ref is the tuple's Tuple.Ref.
	Ref int64
	// Gen is the released generalisation, nil if Suppressed.
	Gen *Generalization
	// ClusterID identifies the released cluster; a reused cluster keeps
	// its id. 0 if Suppressed.
	ClusterID uint64
	// Reused is set when the tuple was released with the generalisation
	// of an earlier published cluster that covers it.
	Reused bool
	// Suppressed is set when the tuple is an outlier and is not released.
	Suppressed bool
	// Delay is the number of positions between the tuple's arrival and
	// its release: at most Config.Delta.
	Delay int64
}

// Stats are running counters.
type Stats struct {
	// In counts pushed tuples.
	In int64
	// Released counts released tuples, including Reused.
	Released int64
	// Suppressed counts suppressed tuples.
	Suppressed int64
	// Reused counts tuples released with a reused generalisation.
	Reused int64
	// ClustersPublished counts published clusters (after splits).
	ClustersPublished int64
	// InfoLossSum sums the information loss over released tuples.
	InfoLossSum float64
	// MaxDelay is the largest Output.Delay so far.
	MaxDelay int64
	// Dropped counts held tuples removed undecided by Drop (an erased
	// subject): never released, never suppressed.
	Dropped int64
}

// ErrTuple is wrapped by errors about a malformed tuple.
var ErrTuple = errors.New("castle: invalid tuple")

type cluster struct {
	id      uint64
	members []int64 // positions, in insertion order
	subj    map[uint64]int32
	sens    map[uint64]int32
	lo, hi  []float64
	cat     []hierarchy.Node
	il      float64
}

type slot struct {
	pos  int64
	ref  int64
	subj uint64
	sens uint64
	cl   *cluster // nil once decided
	idx  int32    // index in cl.members
}

type published struct {
	id  uint64
	gen *Generalization
}

// Castle is a CASTLE instance. It is not safe for concurrent use, and an
// emit callback must not call back into it.
type Castle struct {
	cfg        Config
	nNum, nCat int
	hier       []hierarchy.Hierarchy // per categorical QI
	catInv     []float64             // 1/(totalLeaves-1) or 0
	dmin, dmax []float64
	invW       []float64
	invQ       float64
	ldiv       bool
	splitM     SplitMethod // resolved: SplitKNN or SplitGreedy

	n      int64 // next position
	nextID uint64
	pcg    *rand.PCG
	rng    *rand.Rand

	ring []slot
	mask int64
	num  []float64 // ring values
	cat  []hierarchy.Node

	open  []*cluster
	omega []published
	tauH  []float64 // ring of the last Mu published ILs
	tauN  int       // number of valid entries
	tauP  int       // next write index
	tau   float64
	gsubj map[uint64]int32 // held tuples per subject over open
	gsens map[uint64]int32

	stats Stats

	pool    []*cluster
	eBuf    []float64
	wBuf    []float64
	idxBuf  []int
	bIdx    map[uint64]int
	buckets [][]int64
	bs      []int
	heap    []heapItem
	parts   []*cluster
	moved   []int64
}

type heapItem struct {
	d float64
	j int // index into bs
}

// New returns a Castle for cfg.
func New(cfg Config) (*Castle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.QIs = append([]QI(nil), cfg.QIs...)
	c := &Castle{cfg: cfg, ldiv: cfg.L > 1, splitM: cfg.Split}
	if c.splitM == SplitDefault {
		c.splitM = SplitGreedy
	}
	for _, q := range cfg.QIs {
		if q.Kind == Numeric {
			c.nNum++
			c.dmin = append(c.dmin, q.Min)
			c.dmax = append(c.dmax, q.Max)
			c.invW = append(c.invW, 1/(q.Max-q.Min))
		} else {
			c.nCat++
			c.hier = append(c.hier, q.Hierarchy)
			inv := 0.0
			if t := q.Hierarchy.TotalLeaves(); t > 1 {
				inv = 1 / float64(t-1)
			}
			c.catInv = append(c.catInv, inv)
		}
	}
	c.invQ = 1 / float64(len(cfg.QIs))
	c.reset()
	return c, nil
}

func (c *Castle) reset() {
	c.n = 0
	c.nextID = 1
	c.pcg = rand.NewPCG(c.cfg.Seed, c.cfg.Seed^0x9e3779b97f4a7c15)
	c.rng = rand.New(c.pcg)
	capa := int64(1)
	for capa < int64(c.cfg.Delta)+1 && capa < 1024 {
		capa <<= 1
	}
	c.allocRing(capa)
	c.open = c.open[:0]
	c.omega = nil
	c.tauH = make([]float64, c.cfg.Mu)
	c.tauN, c.tauP, c.tau = 0, 0, 0
	c.gsubj = make(map[uint64]int32)
	c.gsens = make(map[uint64]int32)
	c.stats = Stats{}
	j := 0
	for _, q := range c.cfg.QIs {
		if q.Kind == Numeric {
			c.dmin[j], c.dmax[j] = q.Min, q.Max
			c.invW[j] = 1 / (q.Max - q.Min)
			j++
		}
	}
}

func (c *Castle) allocRing(capa int64) {
	c.ring = make([]slot, capa)
	for i := range c.ring {
		c.ring[i].pos = -1
	}
	c.mask = capa - 1
	c.num = make([]float64, capa*int64(c.nNum))
	c.cat = make([]hierarchy.Node, capa*int64(c.nCat))
}

// Stats returns the running counters.
func (c *Castle) Stats() Stats { return c.stats }

// Tau returns the current information-loss threshold.
func (c *Castle) Tau() float64 { return c.tau }

// Position returns the number of tuples pushed so far (the next
// position).
func (c *Castle) Position() int64 { return c.n }

// Open returns the number of open clusters.
func (c *Castle) Open() int { return len(c.open) }

// HeldRefs appends the refs of the held (not yet decided) tuples to dst
// in arrival order.
func (c *Castle) HeldRefs(dst []int64) []int64 {
	for p := c.lowHeld(); p < c.n; p++ {
		if s := c.held(p); s != nil {
			dst = append(dst, s.ref)
		}
	}
	return dst
}

// Held returns the number of held tuples.
func (c *Castle) Held() int { return len(c.HeldRefs(nil)) }

// MinHeldRef returns the smallest ref among held tuples, and false if no
// tuple is held. A stream processor may commit its input up to (not
// including) this ref.
func (c *Castle) MinHeldRef() (int64, bool) {
	var m int64
	found := false
	for p := c.lowHeld(); p < c.n; p++ {
		if s := c.held(p); s != nil && (!found || s.ref < m) {
			m, found = s.ref, true
		}
	}
	return m, found
}

func (c *Castle) lowHeld() int64 {
	return max(0, c.n-int64(c.cfg.Delta)-1)
}

func (c *Castle) held(p int64) *slot {
	if p < 0 {
		return nil
	}
	s := &c.ring[p&c.mask]
	if s.pos != p || s.cl == nil {
		return nil
	}
	return s
}

func (c *Castle) numOf(p int64) []float64 {
	i := (p & c.mask) * int64(c.nNum)
	return c.num[i : i+int64(c.nNum)]
}

func (c *Castle) catOf(p int64) []hierarchy.Node {
	i := (p & c.mask) * int64(c.nCat)
	return c.cat[i : i+int64(c.nCat)]
}

func (c *Castle) checkTuple(t *Tuple) error {
	if len(t.Num) != c.nNum || len(t.Cat) != c.nCat {
		return fmt.Errorf("%w: ref %d: %d numeric and %d categorical values, want %d and %d", ErrTuple, t.Ref, len(t.Num), len(t.Cat), c.nNum, c.nCat)
	}
	for i, v := range t.Num {
		if !(math.Abs(v) <= MaxAbsValue) {
			return fmt.Errorf("%w: ref %d: numeric value %d is %v, need |v| <= %g", ErrTuple, t.Ref, i, v, MaxAbsValue)
		}
	}
	for j, n := range t.Cat {
		if !c.hier[j].Valid(n) {
			return fmt.Errorf("%w: ref %d: categorical value %d: node %d not in hierarchy", ErrTuple, t.Ref, j, n)
		}
	}
	return nil
}

// Push processes one arriving tuple: it joins the best cluster (or a new
// one), then the tuple that arrived Delta positions earlier, if still
// held, goes through the delay constraint. Decisions are passed to emit
// (which may be nil). A malformed tuple is rejected with an error wrapping
// ErrTuple and does not consume a position.
func (c *Castle) Push(t Tuple, emit func(Output)) error {
	if err := c.checkTuple(&t); err != nil {
		return err
	}
	p := c.n
	c.store(p, &t)
	c.n++
	c.stats.In++
	c.extendDomain(p)
	if cl := c.bestSelection(p); cl != nil {
		c.addMember(cl, p)
	} else {
		cl := c.newCluster()
		c.addMember(cl, p)
		c.open = append(c.open, cl)
	}
	if q := p - int64(c.cfg.Delta); q >= 0 {
		if c.held(q) != nil {
			c.delayConstraint(q, p, emit)
		}
	}
	return nil
}

// Expire decides, in arrival order, the held tuples for which expired
// reports true, as if their delay bound had been reached now (the paper's
// delay_constraint): released with their cluster, with a reused
// generalisation, or suppressed. It stops at the first held tuple that has
// not expired, so expired should be monotone in arrival order (e.g. "arrived
// more than a time bound ago"). It returns the number of tuples decided.
// The stream processor uses it to bound the delay in time as well as in
// tuples.
func (c *Castle) Expire(expired func(ref int64) bool, emit func(Output)) int {
	if c.n == 0 {
		return 0
	}
	now, n := c.n-1, 0
	for p := c.lowHeld(); p < c.n; p++ {
		s := c.held(p)
		if s == nil {
			continue
		}
		if !expired(s.ref) {
			break
		}
		c.delayConstraint(p, now, emit)
		n++
	}
	return n
}

// Drop removes every held tuple of subject from its cluster without
// deciding it: it is neither released nor suppressed, now or later (an
// erased subject, SPEC 3.5). A cluster that reached k only with it no
// longer does, so it waits for other subjects like any other; an emptied
// cluster closes. dropped, when not nil, receives each removed tuple's
// Ref. Tuples already released are not affected. It returns the number of
// tuples removed.
func (c *Castle) Drop(subject uint64, dropped func(ref int64)) int {
	if c.gsubj[subject] == 0 {
		return 0
	}
	n := 0
	for p := c.lowHeld(); p < c.n; p++ {
		s := c.held(p)
		if s == nil || s.subj != subject {
			continue
		}
		ref := s.ref
		c.removeMember(p)
		c.stats.Dropped++
		n++
		if dropped != nil {
			dropped(ref)
		}
	}
	return n
}

// Flush ends the stream: every held tuple goes through the delay
// constraint in arrival order, so afterwards no tuple is held. Delays are
// counted up to the last pushed position. The instance stays usable.
func (c *Castle) Flush(emit func(Output)) {
	now := c.n - 1
	for p := c.lowHeld(); p < c.n; p++ {
		if c.held(p) != nil {
			c.delayConstraint(p, now, emit)
		}
	}
}

// store writes tuple t at position p, growing the ring if its slot is
// still held.
func (c *Castle) store(p int64, t *Tuple) {
	if s := &c.ring[p&c.mask]; s.pos >= 0 && s.cl != nil {
		c.growRing()
	}
	s := &c.ring[p&c.mask]
	*s = slot{pos: p, ref: t.Ref, subj: t.Subject, sens: t.Sensitive, idx: -1}
	copy(c.numOf(p), t.Num)
	copy(c.catOf(p), t.Cat)
}

func (c *Castle) growRing() {
	oldRing, oldNum, oldCat, oldMask := c.ring, c.num, c.cat, c.mask
	c.allocRing(int64(len(oldRing)) * 2)
	for i := range oldRing {
		s := oldRing[i]
		if s.pos < 0 || s.cl == nil {
			continue
		}
		c.ring[s.pos&c.mask] = s
		oi := (s.pos & oldMask)
		copy(c.numOf(s.pos), oldNum[oi*int64(c.nNum):(oi+1)*int64(c.nNum)])
		copy(c.catOf(s.pos), oldCat[oi*int64(c.nCat):(oi+1)*int64(c.nCat)])
	}
}

// extendDomain widens numeric domains to include the tuple at p.
func (c *Castle) extendDomain(p int64) {
	changed := false
	for i, v := range c.numOf(p) {
		if v < c.dmin[i] {
			c.dmin[i] = v
			changed = true
		}
		if v > c.dmax[i] {
			c.dmax[i] = v
			changed = true
		}
		if changed {
			c.invW[i] = 1 / (c.dmax[i] - c.dmin[i])
		}
	}
	if changed {
		for _, cl := range c.open {
			cl.il = c.clusterIL(cl)
		}
	}
}

func (c *Castle) newCluster() *cluster {
	var cl *cluster
	if n := len(c.pool); n > 0 {
		cl = c.pool[n-1]
		c.pool = c.pool[:n-1]
	} else {
		cl = &cluster{
			subj: make(map[uint64]int32),
			sens: make(map[uint64]int32),
			lo:   make([]float64, c.nNum),
			hi:   make([]float64, c.nNum),
			cat:  make([]hierarchy.Node, c.nCat),
		}
	}
	cl.id = c.nextID
	c.nextID++
	return cl
}

func (c *Castle) recycle(cl *cluster) {
	cl.members = cl.members[:0]
	clear(cl.subj)
	clear(cl.sens)
	c.pool = append(c.pool, cl)
}

func (c *Castle) satisfied(cl *cluster) bool {
	return len(cl.subj) >= c.cfg.K && (!c.ldiv || len(cl.sens) >= c.cfg.L)
}

// addMember adds the tuple at p to cl (bounds, maps, IL) and to the
// global held counts if it is not yet held.
func (c *Castle) addMember(cl *cluster, p int64) {
	s := &c.ring[p&c.mask]
	if s.cl == nil {
		c.gsubj[s.subj]++
		c.gsens[s.sens]++
	}
	s.cl = cl
	s.idx = int32(len(cl.members))
	num, cat := c.numOf(p), c.catOf(p)
	if len(cl.members) == 0 {
		copy(cl.lo, num)
		copy(cl.hi, num)
		copy(cl.cat, cat)
	} else {
		for i, v := range num {
			cl.lo[i] = min(cl.lo[i], v)
			cl.hi[i] = max(cl.hi[i], v)
		}
		for j, n := range cat {
			if cl.cat[j] != n {
				cl.cat[j] = c.hier[j].LCA(cl.cat[j], n)
			}
		}
	}
	cl.members = append(cl.members, p)
	cl.subj[s.subj]++
	cl.sens[s.sens]++
	cl.il = c.clusterIL(cl)
}

// removeMember removes the decided tuple at p from its cluster and the
// global counts; an emptied cluster leaves the open set.
func (c *Castle) removeMember(p int64) {
	s := &c.ring[p&c.mask]
	cl := s.cl
	last := len(cl.members) - 1
	if int(s.idx) != last {
		moved := cl.members[last]
		cl.members[s.idx] = moved
		c.ring[moved&c.mask].idx = s.idx
	}
	cl.members = cl.members[:last]
	decr(cl.subj, s.subj)
	decr(cl.sens, s.sens)
	decr(c.gsubj, s.subj)
	decr(c.gsens, s.sens)
	s.cl = nil
	if len(cl.members) == 0 {
		c.removeOpen(cl)
		c.recycle(cl)
		return
	}
	c.recomputeBounds(cl)
}

func decr(m map[uint64]int32, k uint64) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

func (c *Castle) recomputeBounds(cl *cluster) {
	for i, p := range cl.members {
		num, cat := c.numOf(p), c.catOf(p)
		if i == 0 {
			copy(cl.lo, num)
			copy(cl.hi, num)
			copy(cl.cat, cat)
			continue
		}
		for q, v := range num {
			cl.lo[q] = min(cl.lo[q], v)
			cl.hi[q] = max(cl.hi[q], v)
		}
		for j, n := range cat {
			if cl.cat[j] != n {
				cl.cat[j] = c.hier[j].LCA(cl.cat[j], n)
			}
		}
	}
	cl.il = c.clusterIL(cl)
}

func (c *Castle) removeOpen(cl *cluster) {
	for i, o := range c.open {
		if o == cl {
			copy(c.open[i:], c.open[i+1:])
			c.open[len(c.open)-1] = nil
			c.open = c.open[:len(c.open)-1]
			return
		}
	}
}

// absorb moves all members of src into dst; src is left empty.
func (c *Castle) absorb(dst, src *cluster) {
	for _, p := range src.members {
		s := &c.ring[p&c.mask]
		s.cl = dst
		s.idx = int32(len(dst.members))
		dst.members = append(dst.members, p)
		dst.subj[s.subj]++
		dst.sens[s.sens]++
	}
	for i := range dst.lo {
		dst.lo[i] = min(dst.lo[i], src.lo[i])
		dst.hi[i] = max(dst.hi[i], src.hi[i])
	}
	for j := range dst.cat {
		if dst.cat[j] != src.cat[j] {
			dst.cat[j] = c.hier[j].LCA(dst.cat[j], src.cat[j])
		}
	}
	dst.il = c.clusterIL(dst)
	src.members = src.members[:0]
	clear(src.subj)
	clear(src.sens)
}

// --- information loss ---

func (c *Castle) catLoss(j int, n hierarchy.Node) float64 {
	return float64(c.hier[j].Leaves(n)-1) * c.catInv[j]
}

func (c *Castle) clusterIL(cl *cluster) float64 {
	sum := 0.0
	for i := range cl.lo {
		sum += (cl.hi[i] - cl.lo[i]) * c.invW[i]
	}
	for j, n := range cl.cat {
		sum += c.catLoss(j, n)
	}
	return sum * c.invQ
}

// ilWith is InfoLoss(cl ∪ {tuple at p}).
func (c *Castle) ilWith(cl *cluster, p int64) float64 {
	sum := 0.0
	for i, v := range c.numOf(p) {
		sum += (max(cl.hi[i], v) - min(cl.lo[i], v)) * c.invW[i]
	}
	for j, n := range c.catOf(p) {
		a := cl.cat[j]
		if a != n {
			a = c.hier[j].LCA(a, n)
		}
		sum += c.catLoss(j, a)
	}
	return sum * c.invQ
}

// ilMerged is InfoLoss(a ∪ b).
func (c *Castle) ilMerged(a, b *cluster) float64 {
	sum := 0.0
	for i := range a.lo {
		sum += (max(a.hi[i], b.hi[i]) - min(a.lo[i], b.lo[i])) * c.invW[i]
	}
	for j := range a.cat {
		n := a.cat[j]
		if n != b.cat[j] {
			n = c.hier[j].LCA(n, b.cat[j])
		}
		sum += c.catLoss(j, n)
	}
	return sum * c.invQ
}

// ilPair is InfoLoss({tuple at p, tuple at q}), the split's distance.
func (c *Castle) ilPair(p, q int64) float64 {
	sum := 0.0
	nq := c.numOf(q)
	for i, v := range c.numOf(p) {
		sum += math.Abs(v-nq[i]) * c.invW[i]
	}
	cq := c.catOf(q)
	for j, n := range c.catOf(p) {
		if n != cq[j] {
			n = c.hier[j].LCA(n, cq[j])
		}
		sum += c.catLoss(j, n)
	}
	return sum * c.invQ
}

// --- the algorithm ---

// bestSelection is the paper's best_selection(t): nil means "create a new
// cluster".
func (c *Castle) bestSelection(p int64) *cluster {
	if len(c.open) == 0 {
		return nil
	}
	c.eBuf = c.eBuf[:0]
	c.wBuf = c.wBuf[:0]
	minE := math.Inf(1)
	for _, cl := range c.open {
		w := c.ilWith(cl, p)
		e := w - cl.il
		c.eBuf = append(c.eBuf, e)
		c.wBuf = append(c.wBuf, w)
		if e < minE {
			minE = e
		}
	}
	var best, anyMin *cluster
	for i, cl := range c.open {
		if c.eBuf[i] != minE {
			continue
		}
		if anyMin == nil || len(cl.subj) < len(anyMin.subj) {
			anyMin = cl
		}
		if c.wBuf[i] <= c.tau && (best == nil || len(cl.subj) < len(best.subj)) {
			best = cl
		}
	}
	if best != nil {
		return best
	}
	if len(c.open) >= c.cfg.Beta {
		return anyMin
	}
	return nil
}

// delayConstraint is the paper's delay_constraint(t) for the held tuple
// at p; now is the current position.
func (c *Castle) delayConstraint(p, now int64, emit func(Output)) {
	s := &c.ring[p&c.mask]
	cl := s.cl
	if c.satisfied(cl) {
		c.outputCluster(cl, now, emit)
		return
	}
	// Reuse a published cluster that covers t, chosen at random.
	if len(c.omega) > 0 {
		c.idxBuf = c.idxBuf[:0]
		num, cat := c.numOf(p), c.catOf(p)
		for i := range c.omega {
			if c.omega[i].gen.Covers(c.hier, num, cat) {
				c.idxBuf = append(c.idxBuf, i)
			}
		}
		if len(c.idxBuf) > 0 {
			pub := c.omega[c.idxBuf[c.rng.IntN(len(c.idxBuf))]]
			ref := s.ref
			c.removeMember(p)
			c.stats.Reused++
			c.release(Output{Ref: ref, Gen: pub.gen, ClusterID: pub.id, Reused: true, Delay: now - p}, emit)
			return
		}
	}
	size := len(cl.subj)
	m := 0
	for _, o := range c.open {
		if len(o.subj) > size {
			m++
		}
	}
	if 2*m > len(c.open) || len(c.gsubj) < c.cfg.K || (c.ldiv && len(c.gsens) < c.cfg.L) || !c.mergeClusters(cl) {
		ref := s.ref
		c.removeMember(p)
		c.stats.Suppressed++
		d := now - p
		c.stats.MaxDelay = max(c.stats.MaxDelay, d)
		if emit != nil {
			emit(Output{Ref: ref, Suppressed: true, Delay: d})
		}
		return
	}
	c.outputCluster(cl, now, emit)
}

func (c *Castle) release(o Output, emit func(Output)) {
	c.stats.Released++
	c.stats.InfoLossSum += o.Gen.InfoLoss
	c.stats.MaxDelay = max(c.stats.MaxDelay, o.Delay)
	if emit != nil {
		emit(o)
	}
}

// mergeClusters grows cl with the open clusters of minimum enlargement
// until it satisfies k (and l). The caller has checked that the open
// clusters together satisfy k (and l), so it reports true; false (never
// expected) makes the caller suppress rather than release.
func (c *Castle) mergeClusters(cl *cluster) bool {
	for !c.satisfied(cl) {
		bi := -1
		bestE := math.Inf(1)
		for i, o := range c.open {
			if o == cl {
				continue
			}
			if e := c.ilMerged(cl, o) - cl.il; e < bestE {
				bestE, bi = e, i
			}
		}
		if bi < 0 {
			return false
		}
		o := c.open[bi]
		c.absorb(cl, o)
		c.removeOpen(o)
		c.recycle(o)
	}
	return true
}

// outputCluster is the paper's output_cluster(C).
func (c *Castle) outputCluster(cl *cluster, now int64, emit func(Output)) {
	c.removeOpen(cl)
	parts := c.parts[:0]
	if len(cl.subj) >= 2*c.cfg.K {
		parts = c.split(cl, parts)
	} else {
		parts = append(parts, cl)
	}
	c.parts = parts
	for _, pc := range parts {
		gen := &Generalization{
			Lo:       append([]float64(nil), pc.lo...),
			Hi:       append([]float64(nil), pc.hi...),
			Cat:      append([]hierarchy.Node(nil), pc.cat...),
			InfoLoss: pc.il,
		}
		for _, p := range pc.members {
			s := &c.ring[p&c.mask]
			decr(c.gsubj, s.subj)
			decr(c.gsens, s.sens)
			s.cl = nil
			c.release(Output{Ref: s.ref, Gen: gen, ClusterID: pc.id, Delay: now - p}, emit)
		}
		c.stats.ClustersPublished++
		c.pushTau(pc.il)
		if pc.il < c.tau && c.cfg.MaxReuse > 0 {
			if len(c.omega) >= c.cfg.MaxReuse {
				copy(c.omega, c.omega[1:])
				c.omega[len(c.omega)-1] = published{}
				c.omega = c.omega[:len(c.omega)-1]
			}
			c.omega = append(c.omega, published{id: pc.id, gen: gen})
		}
		c.recycle(pc)
	}
	clear(c.parts)
}

// pushTau records a published cluster's information loss and recomputes
// tau as the average over the last Mu, summed oldest first.
func (c *Castle) pushTau(il float64) {
	mu := len(c.tauH)
	c.tauH[c.tauP] = il
	c.tauP = (c.tauP + 1) % mu
	if c.tauN < mu {
		c.tauN++
	}
	sum := 0.0
	start := (c.tauP - c.tauN + mu) % mu
	for i := range c.tauN {
		sum += c.tauH[(start+i)%mu]
	}
	c.tau = sum / float64(c.tauN)
}

// split splits a cluster with at least 2k distinct subjects into parts of
// at least k distinct subjects each. Tuples are grouped into per-subject
// buckets; each round of the grouping loop (groupKNN, the paper's, or
// groupGreedy) takes one tuple from each of k distinct buckets, so every
// part has k distinct subjects. Remaining buckets (fewer than k) join
// their nearest part. SplitGreedy then dissolves costly parts. With
// l-diversity, parts that are not l-diverse are merged into their nearest
// part. cl's members are moved into the parts; cl itself is recycled.
func (c *Castle) split(cl *cluster, parts []*cluster) []*cluster {
	if c.bIdx == nil {
		c.bIdx = make(map[uint64]int)
	}
	clear(c.bIdx)
	nb := 0
	for _, p := range cl.members {
		subj := c.ring[p&c.mask].subj
		bi, ok := c.bIdx[subj]
		if !ok {
			bi = nb
			nb++
			c.bIdx[subj] = bi
			if bi < len(c.buckets) {
				c.buckets[bi] = c.buckets[bi][:0]
			} else {
				c.buckets = append(c.buckets, nil)
			}
		}
		c.buckets[bi] = append(c.buckets[bi], p)
	}
	bs := c.bs[:0]
	for i := range nb {
		bs = append(bs, i)
	}
	if c.splitM == SplitKNN {
		bs, parts = c.groupKNN(cl.id, bs, parts)
	} else {
		bs, parts = c.groupGreedy(cl.id, bs, parts)
	}
	for _, b := range bs {
		q := c.buckets[b][len(c.buckets[b])-1]
		var best *cluster
		bestE := math.Inf(1)
		for _, pc := range parts {
			if e := c.ilWith(pc, q) - pc.il; e < bestE {
				bestE, best = e, pc
			}
		}
		for _, p := range c.buckets[b] {
			c.addSplit(best, p)
		}
		c.buckets[b] = c.buckets[b][:0]
	}
	c.bs = bs[:0]
	if c.splitM == SplitGreedy {
		parts = c.dissolve(parts)
	}
	if c.ldiv {
		parts = c.fixDiversity(parts)
	}
	cl.members = cl.members[:0]
	clear(cl.subj)
	clear(cl.sens)
	c.pool = append(c.pool, cl)
	return parts
}

// groupKNN is the paper's grouping loop of split: each round takes one
// tuple from a random bucket and one tuple from each of its k-1 nearest
// other buckets (distance: information loss of the pair). It returns the
// remaining buckets (fewer than k) and the parts.
func (c *Castle) groupKNN(origID uint64, bs []int, parts []*cluster) ([]int, []*cluster) {
	k := c.cfg.K
	for len(bs) >= k {
		bi := c.rng.IntN(len(bs))
		t := c.popBucket(bs[bi])
		part := c.newPart(origID, len(parts) == 0)
		c.addSplit(part, t)
		h := c.nearest(t, bs, bi, k-1)
		for _, it := range h {
			c.addSplit(part, c.popBucket(bs[it.j]))
		}
		c.heap = h
		bs = c.nonEmptyBuckets(bs)
		parts = append(parts, part)
	}
	return bs, parts
}

// nearest returns, in c.heap's memory, the (at most) m buckets of bs other
// than bs[skip] whose next tuple is nearest to t (pair information loss),
// as a max-heap on distance; heapItem.j indexes bs.
func (c *Castle) nearest(t int64, bs []int, skip, m int) []heapItem {
	h := c.heap[:0]
	if m <= 0 {
		return h
	}
	for j, b := range bs {
		if j == skip {
			continue
		}
		d := c.ilPair(t, c.top(b))
		if len(h) < m {
			h = append(h, heapItem{d, j})
			heapUp(h, len(h)-1)
		} else if d < h[0].d {
			h[0] = heapItem{d, j}
			heapDown(h, 0)
		}
	}
	return h
}

// newPart returns a new split part; the first part keeps the split
// cluster's id.
func (c *Castle) newPart(origID uint64, first bool) *cluster {
	part := c.newCluster()
	if first {
		c.nextID--
		part.id = origID
	}
	return part
}

// dissolve is the second step of SplitGreedy. The last parts of the
// grouping loop are built from the tuples that are left over, which are
// scattered; a part whose information loss is above the parts' mean is
// dissolved, each of its tuples joining the remaining part where it adds
// the least total loss, when that costs less in total (estimated tuple by
// tuple) than keeping the part (its size times its loss). Parts are
// visited from the last built to the first. The remaining parts only
// grow, so each keeps at least k distinct subjects.
func (c *Castle) dissolve(parts []*cluster) []*cluster {
	if len(parts) < 2 {
		return parts
	}
	mean := 0.0
	for _, p := range parts {
		mean += p.il
	}
	mean /= float64(len(parts))
	for i := len(parts) - 1; i >= 0 && len(parts) > 1; i-- {
		p := parts[i]
		if p.il <= mean {
			continue
		}
		keep := float64(len(p.members)) * p.il
		move := 0.0
		for _, t := range p.members {
			best := math.Inf(1)
			for qi, q := range parts {
				if qi == i {
					continue
				}
				nq := float64(len(q.members))
				if d := (nq+1)*c.ilWith(q, t) - nq*q.il; d < best {
					best = d
				}
			}
			move += best
			if move >= keep {
				break
			}
		}
		if move >= keep {
			continue
		}
		copy(parts[i:], parts[i+1:])
		parts[len(parts)-1] = nil
		parts = parts[:len(parts)-1]
		c.moved = append(c.moved[:0], p.members...)
		for _, t := range c.moved {
			var bq *cluster
			best := math.Inf(1)
			for _, q := range parts {
				nq := float64(len(q.members))
				if d := (nq+1)*c.ilWith(q, t) - nq*q.il; d < best {
					best, bq = d, q
				}
			}
			c.addSplit(bq, t)
		}
		c.recycle(p)
	}
	return parts
}

// greedyCandidates times k is the number of buckets nearest to the seed
// among which SplitGreedy grows a part.
const greedyCandidates = 6

// groupGreedy is the grouping loop of SplitGreedy: like the paper's, each
// round starts a part with one tuple of a random bucket, but then grows
// it greedily in the manner of greedy k-member clustering (Byun, Kamra,
// Bertino, Li, DASFAA 2007): k-1 times it adds the next tuple of the
// bucket, among the greedyCandidates*k buckets nearest to the seed (pair
// information loss) and not yet in the part, that gives the part the
// least information loss (ties: the nearer to the seed). It returns the
// remaining buckets (fewer than k) and the parts.
func (c *Castle) groupGreedy(origID uint64, bs []int, parts []*cluster) ([]int, []*cluster) {
	k := c.cfg.K
	m := greedyCandidates * k
	for len(bs) >= k {
		bi := c.rng.IntN(len(bs))
		t := c.popBucket(bs[bi])
		part := c.newPart(origID, len(parts) == 0)
		c.addSplit(part, t)
		h := c.nearest(t, bs, bi, m)
		for range k - 1 {
			bestI, bestW, bestD := -1, math.Inf(1), math.Inf(1)
			for i, it := range h {
				if it.j < 0 {
					continue
				}
				w := c.ilWith(part, c.top(bs[it.j]))
				if w < bestW || (w == bestW && it.d < bestD) {
					bestI, bestW, bestD = i, w, it.d
				}
			}
			c.addSplit(part, c.popBucket(bs[h[bestI].j]))
			h[bestI].j = -1
		}
		c.heap = h
		bs = c.nonEmptyBuckets(bs)
		parts = append(parts, part)
	}
	return bs, parts
}

func (c *Castle) top(b int) int64 {
	bk := c.buckets[b]
	return bk[len(bk)-1]
}

func (c *Castle) popBucket(b int) int64 {
	bk := c.buckets[b]
	p := bk[len(bk)-1]
	c.buckets[b] = bk[:len(bk)-1]
	return p
}

// addSplit adds the held tuple at p to a split part (no global counts).
func (c *Castle) addSplit(part *cluster, p int64) {
	c.addMember(part, p)
}

// fixDiversity merges parts that are not l-diverse into their nearest
// part until all are (the union of all parts is l-diverse).
func (c *Castle) fixDiversity(parts []*cluster) []*cluster {
	for len(parts) > 1 {
		bad := -1
		for i, pc := range parts {
			if len(pc.sens) < c.cfg.L {
				bad = i
				break
			}
		}
		if bad < 0 {
			break
		}
		src := parts[bad]
		bi := -1
		bestE := math.Inf(1)
		for i, pc := range parts {
			if i == bad {
				continue
			}
			if e := c.ilMerged(pc, src) - pc.il; e < bestE {
				bestE, bi = e, i
			}
		}
		c.absorb(parts[bi], src)
		c.recycle(src)
		copy(parts[bad:], parts[bad+1:])
		parts[len(parts)-1] = nil
		parts = parts[:len(parts)-1]
	}
	return parts
}

func heapUp(h []heapItem, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].d >= h[i].d {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDown(h []heapItem, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].d > h[l].d {
			m = r
		}
		if h[i].d >= h[m].d {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// nonEmptyBuckets drops, in place, the buckets a split round emptied.
func (c *Castle) nonEmptyBuckets(bs []int) []int {
	w := 0
	for _, b := range bs {
		if len(c.buckets[b]) > 0 {
			bs[w] = b
			w++
		}
	}
	return bs[:w]
}
