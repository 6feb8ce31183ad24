// Package hierarchy provides categorical generalisation hierarchies for
// k-anonymity: taxonomy trees loaded from ARX-format CSV files, truncation
// hierarchies for prefix-coded values (postal codes, geohash cells) whose
// domain is not known upfront, and flat hierarchies (value -> "*").
//
// Nodes are identified by int32 ids ([Node]). The operations used in the
// inner loop of clustering algorithms (LCA, leaf counts) run in O(depth)
// time without allocating.
//
// The package imports the standard library only.
package hierarchy

import "math"

// Node identifies a node of one hierarchy. Node ids are only meaningful
// for the hierarchy that produced them.
type Node int32

// NoNode is returned where no node exists (the parent of the root, or an
// invalid argument).
const NoNode Node = -1

// Root is the label of the top level of every hierarchy built by this
// package except ARX trees, whose root label is taken from the file
// (usually also "*").
const Root = "*"

// Hierarchy is a generalisation hierarchy over one categorical attribute.
//
// Level 0 holds the leaves (original values); level Levels()-1 is the root.
// All implementations in this package are safe for concurrent use.
type Hierarchy interface {
	// Lookup maps an original value to its leaf node. It reports false for
	// a value that is not in the domain; the caller decides what to do
	// (typically generalise it to the root or suppress it).
	Lookup(value string) (Node, bool)
	// NodeAt returns the node with the given label at the given level
	// (level 0 is the same as Lookup). It is used to rebuild node ids from
	// persisted labels, since dynamic hierarchies assign ids in arrival
	// order.
	NodeAt(label string, level int) (Node, bool)
	// Valid reports whether n is a node of this hierarchy.
	Valid(n Node) bool
	// LCA returns the lowest common ancestor of a and b, or NoNode if
	// either is invalid.
	LCA(a, b Node) Node
	// Leaves returns the number of leaves under n (1 for a leaf), or 0 if
	// n is invalid. Very large counts saturate at math.MaxInt64.
	Leaves(n Node) int64
	// TotalLeaves returns the number of leaves of the whole domain.
	TotalLeaves() int64
	// Label returns the label of n, or "" if n is invalid.
	Label(n Node) string
	// Parent returns the parent of n, or NoNode for the root or an invalid
	// node.
	Parent(n Node) Node
	// Level returns the generalisation level of n (0 for leaves,
	// Levels()-1 for the root), or -1 if n is invalid.
	Level(n Node) int
	// Depth returns the distance of n from the root (0 for the root), or
	// -1 if n is invalid.
	Depth(n Node) int
	// RootNode returns the root node.
	RootNode() Node
	// Levels returns the number of levels including the leaf level and
	// the root level.
	Levels() int
	// Generalize returns value generalised to level: level 0 (or below)
	// is the value itself, level >= Levels()-1 is the root label, and an
	// unknown value at any level >= 1 becomes "*".
	Generalize(value string, level int) string
}

// NCP returns the normalised certainty penalty of generalising a value to
// node n: (leaves(n)-1)/(totalLeaves-1), 0 for a leaf, 1 for the root.
// It returns 0 for a domain of one value and 1 for an invalid node.
func NCP(h Hierarchy, n Node) float64 {
	if !h.Valid(n) {
		return 1
	}
	total := h.TotalLeaves()
	if total <= 1 {
		return 0
	}
	return float64(h.Leaves(n)-1) / float64(total-1)
}

// Covers reports whether node anc is n or an ancestor of n.
func Covers(h Hierarchy, anc, n Node) bool {
	if !h.Valid(anc) || !h.Valid(n) {
		return false
	}
	return h.LCA(anc, n) == anc
}

// satMul multiplies non-negative a and b, saturating at math.MaxInt64.
func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}
