package hierarchy

import (
	"fmt"
	"math"
	"sync"
)

// MaxDynamicNodes bounds the number of nodes a Truncation or Flat
// hierarchy interns; Lookup reports not found beyond it.
const MaxDynamicNodes = math.MaxInt32 - 1

// Truncation is a hierarchy for prefix-coded values of a fixed length
// (postal codes, geohash cells) whose domain is not known upfront. Level
// l removes l trailing characters (bytes); level Length is the root "*".
// The number of leaves under a node at level l is AlphabetSize^l, so
// NCP works without knowing the actual leaves.
//
// Values are interned on first Lookup. A Truncation is safe for
// concurrent use (reads take a shared lock).
type Truncation struct {
	length   int
	pow      []int64 // pow[l] = alphabet^l, saturating
	mu       sync.RWMutex
	parent   []Node
	level    []int8
	labels   []string
	byLabel  map[string]Node
	maxNodes int
}

var _ Hierarchy = (*Truncation)(nil)

// NewTruncation returns a truncation hierarchy for values of exactly
// length bytes over an alphabet of alphabetSize symbols (e.g. 10 for
// digit postal codes, 32 for geohash).
func NewTruncation(length, alphabetSize int) (*Truncation, error) {
	if length < 1 || length > MaxLevels-1 {
		return nil, fmt.Errorf("hierarchy: truncation length %d out of range [1,%d]", length, MaxLevels-1)
	}
	if alphabetSize < 2 {
		return nil, fmt.Errorf("hierarchy: truncation alphabet size %d, need at least 2", alphabetSize)
	}
	t := &Truncation{
		length:   length,
		pow:      make([]int64, length+1),
		byLabel:  make(map[string]Node),
		maxNodes: MaxDynamicNodes,
	}
	t.pow[0] = 1
	for i := 1; i <= length; i++ {
		t.pow[i] = satMul(t.pow[i-1], int64(alphabetSize))
	}
	// Node 0 is the root.
	t.parent = append(t.parent, NoNode)
	t.level = append(t.level, int8(length))
	t.labels = append(t.labels, Root)
	return t, nil
}

// Lookup implements Hierarchy. A value whose length is not the
// constructor's length is not found.
func (t *Truncation) Lookup(value string) (Node, bool) {
	return t.NodeAt(value, 0)
}

// NodeAt implements Hierarchy: label must have Length-level bytes, or be
// "*" at the top level.
func (t *Truncation) NodeAt(label string, level int) (Node, bool) {
	if level < 0 || level > t.length {
		return NoNode, false
	}
	if level == t.length {
		return 0, label == Root
	}
	if len(label) != t.length-level {
		return NoNode, false
	}
	t.mu.RLock()
	n, ok := t.byLabel[label]
	t.mu.RUnlock()
	if ok {
		return n, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.internLocked(label)
}

// internLocked interns label and all its prefixes; t.mu must be held.
func (t *Truncation) internLocked(label string) (Node, bool) {
	if n, ok := t.byLabel[label]; ok {
		return n, true
	}
	if len(t.labels)+len(label) > t.maxNodes {
		return NoNode, false
	}
	var parent Node
	if len(label) == 1 {
		parent = 0
	} else {
		var ok bool
		parent, ok = t.internLocked(label[:len(label)-1])
		if !ok {
			return NoNode, false
		}
	}
	n := Node(len(t.labels))
	t.labels = append(t.labels, label)
	t.parent = append(t.parent, parent)
	t.level = append(t.level, int8(t.length-len(label)))
	t.byLabel[label] = n
	return n, true
}

// Valid implements Hierarchy.
func (t *Truncation) Valid(n Node) bool {
	t.mu.RLock()
	ok := n >= 0 && int(n) < len(t.labels)
	t.mu.RUnlock()
	return ok
}

// LCA implements Hierarchy.
func (t *Truncation) LCA(a, b Node) Node {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if a < 0 || b < 0 || int(a) >= len(t.labels) || int(b) >= len(t.labels) {
		return NoNode
	}
	return lca(t.parent, t.level, a, b)
}

// Leaves implements Hierarchy: AlphabetSize^level.
func (t *Truncation) Leaves(n Node) int64 {
	lv := t.Level(n)
	if lv < 0 {
		return 0
	}
	return t.pow[lv]
}

// TotalLeaves implements Hierarchy: AlphabetSize^Length.
func (t *Truncation) TotalLeaves() int64 { return t.pow[t.length] }

// Label implements Hierarchy.
func (t *Truncation) Label(n Node) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 0 || int(n) >= len(t.labels) {
		return ""
	}
	return t.labels[n]
}

// Parent implements Hierarchy.
func (t *Truncation) Parent(n Node) Node {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 0 || int(n) >= len(t.labels) {
		return NoNode
	}
	return t.parent[n]
}

// Level implements Hierarchy.
func (t *Truncation) Level(n Node) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 0 || int(n) >= len(t.labels) {
		return -1
	}
	return int(t.level[n])
}

// Depth implements Hierarchy.
func (t *Truncation) Depth(n Node) int {
	lv := t.Level(n)
	if lv < 0 {
		return -1
	}
	return t.length - lv
}

// RootNode implements Hierarchy.
func (t *Truncation) RootNode() Node { return 0 }

// Levels implements Hierarchy: Length+1.
func (t *Truncation) Levels() int { return t.length + 1 }

// Generalize implements Hierarchy. It does not intern the value.
func (t *Truncation) Generalize(value string, level int) string {
	if level <= 0 {
		return value
	}
	if level >= t.length || len(value) != t.length {
		return Root
	}
	return value[:t.length-level]
}

// Flat is a two-level hierarchy (value -> "*") over a domain of a
// declared size, for attributes like gender. Values are interned on first
// Lookup; once DomainSize values are known, further new values are not
// found. A Flat is safe for concurrent use.
type Flat struct {
	domain  int64
	mu      sync.RWMutex
	labels  []string
	byLabel map[string]Node
}

var _ Hierarchy = (*Flat)(nil)

// NewFlat returns a flat hierarchy over a domain of domainSize values.
func NewFlat(domainSize int) (*Flat, error) {
	if domainSize < 1 || domainSize > MaxDynamicNodes-1 {
		return nil, fmt.Errorf("hierarchy: flat domain size %d out of range [1,%d]", domainSize, MaxDynamicNodes-1)
	}
	return &Flat{domain: int64(domainSize), labels: []string{Root}, byLabel: make(map[string]Node)}, nil
}

// Lookup implements Hierarchy.
func (f *Flat) Lookup(value string) (Node, bool) { return f.NodeAt(value, 0) }

// NodeAt implements Hierarchy.
func (f *Flat) NodeAt(label string, level int) (Node, bool) {
	switch level {
	case 1:
		return 0, label == Root
	case 0:
	default:
		return NoNode, false
	}
	f.mu.RLock()
	n, ok := f.byLabel[label]
	f.mu.RUnlock()
	if ok {
		return n, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.byLabel[label]; ok {
		return n, true
	}
	if int64(len(f.labels)-1) >= f.domain {
		return NoNode, false
	}
	n = Node(len(f.labels))
	f.labels = append(f.labels, label)
	f.byLabel[label] = n
	return n, true
}

func (f *Flat) size() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.labels)
}

// Valid implements Hierarchy.
func (f *Flat) Valid(n Node) bool { return n >= 0 && int(n) < f.size() }

// LCA implements Hierarchy. It takes no lock for valid, equal nodes.
func (f *Flat) LCA(a, b Node) Node {
	if a < 0 || b < 0 {
		return NoNode
	}
	if a == b {
		if a == 0 || f.Valid(a) {
			return a
		}
		return NoNode
	}
	if !f.Valid(a) || !f.Valid(b) {
		return NoNode
	}
	return 0
}

// Leaves implements Hierarchy.
func (f *Flat) Leaves(n Node) int64 {
	switch {
	case n == 0:
		return f.domain
	case f.Valid(n):
		return 1
	}
	return 0
}

// TotalLeaves implements Hierarchy.
func (f *Flat) TotalLeaves() int64 { return f.domain }

// Label implements Hierarchy.
func (f *Flat) Label(n Node) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if n < 0 || int(n) >= len(f.labels) {
		return ""
	}
	return f.labels[n]
}

// Parent implements Hierarchy.
func (f *Flat) Parent(n Node) Node {
	if n <= 0 || !f.Valid(n) {
		return NoNode
	}
	return 0
}

// Level implements Hierarchy.
func (f *Flat) Level(n Node) int {
	switch {
	case n == 0:
		return 1
	case f.Valid(n):
		return 0
	}
	return -1
}

// Depth implements Hierarchy.
func (f *Flat) Depth(n Node) int {
	switch {
	case n == 0:
		return 0
	case f.Valid(n):
		return 1
	}
	return -1
}

// RootNode implements Hierarchy.
func (f *Flat) RootNode() Node { return 0 }

// Levels implements Hierarchy: 2.
func (f *Flat) Levels() int { return 2 }

// Generalize implements Hierarchy. A value is its own level 0 whether or
// not it is known; every value is "*" at level 1.
func (f *Flat) Generalize(value string, level int) string {
	if level <= 0 {
		return value
	}
	return Root
}
