package hierarchy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxARXBytes bounds the size of an ARX hierarchy file accepted by
// ParseARX and LoadARX.
const MaxARXBytes = 64 << 20

// MaxLevels bounds the number of columns (levels) of an ARX hierarchy.
const MaxLevels = 64

// Tree is an immutable hierarchy with an explicit, fully known domain,
// typically loaded from an ARX hierarchy CSV. It is safe for concurrent
// use.
type Tree struct {
	parent []Node
	level  []int8
	leaves []int64
	labels []string
	levels int
	root   Node
	// byLevel maps a label to its node, one map per level.
	byLevel []map[string]Node
}

var _ Hierarchy = (*Tree)(nil)

// LoadARX reads an ARX hierarchy CSV file; see ParseARX.
func LoadARX(path string) (*Tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hierarchy: open %s: %w", path, err)
	}
	defer f.Close()
	t, err := ParseARX(f)
	if err != nil {
		return nil, fmt.Errorf("hierarchy: %s: %w", path, err)
	}
	return t, nil
}

// ErrSyntax is wrapped by every validation error of ParseARX.
var ErrSyntax = errors.New("invalid ARX hierarchy")

// ParseARX parses an ARX-format hierarchy: one line per leaf value,
// `value;level1;level2;...;root`, `;`-separated. Fields are trimmed of
// surrounding spaces, blank lines are skipped, CRLF line ends and a UTF-8
// byte-order mark are accepted. It checks that every line has the same
// number of columns (at least 2), every line ends at the same root, no
// field is empty, no leaf value is listed twice, and that a label at one
// level always has the same parent. Errors wrap ErrSyntax and name the
// line.
func ParseARX(r io.Reader) (*Tree, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxARXBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hierarchy: read: %w", err)
	}
	if len(data) > MaxARXBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrSyntax, MaxARXBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxARXBytes+1)

	t := &Tree{}
	type origin struct {
		parent Node
		line   int
	}
	var (
		cols     int
		rootName string
		lineNo   int
		// seen[level][label] = parent and line of first definition.
		seen []map[string]origin
		rows [][]string
		// lines[i] is the line number of rows[i].
		lines []int
	)
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Split(line, ";")
		if len(fields) < 2 {
			return nil, fmt.Errorf("%w: line %d: need at least 2 columns (value;root), got %d", ErrSyntax, lineNo, len(fields))
		}
		if len(fields) > MaxLevels {
			return nil, fmt.Errorf("%w: line %d: %d columns, at most %d allowed", ErrSyntax, lineNo, len(fields), MaxLevels)
		}
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
			if fields[i] == "" {
				return nil, fmt.Errorf("%w: line %d: column %d is empty", ErrSyntax, lineNo, i+1)
			}
		}
		if cols == 0 {
			cols = len(fields)
			rootName = fields[cols-1]
			seen = make([]map[string]origin, cols)
			for i := range seen {
				seen[i] = make(map[string]origin)
			}
		} else if len(fields) != cols {
			return nil, fmt.Errorf("%w: line %d: %d columns, expected %d like the first line (inconsistent depth)", ErrSyntax, lineNo, len(fields), cols)
		}
		if fields[cols-1] != rootName {
			return nil, fmt.Errorf("%w: line %d: root %q differs from %q of the first line", ErrSyntax, lineNo, fields[cols-1], rootName)
		}
		rows = append(rows, fields)
		lines = append(lines, lineNo)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %w", ErrSyntax, lineNo+1, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: no lines", ErrSyntax)
	}
	if len(rows) > 1<<30 {
		return nil, fmt.Errorf("%w: too many lines", ErrSyntax)
	}
	t.levels = cols
	t.byLevel = make([]map[string]Node, cols)
	for i := range t.byLevel {
		t.byLevel[i] = make(map[string]Node)
	}
	// Pass 1: leaves get ids 0..n-1 in file order.
	for ri, fields := range rows {
		v := fields[0]
		if prev, ok := seen[0][v]; ok {
			return nil, fmt.Errorf("%w: line %d: value %q already listed on line %d", ErrSyntax, lines[ri], v, prev.line)
		}
		seen[0][v] = origin{line: lines[ri]}
		t.addNode(v, 0)
	}
	// Pass 2: internal nodes, level by level, and parent links.
	for lv := 1; lv < cols; lv++ {
		for ri, fields := range rows {
			label := fields[lv]
			n, ok := t.byLevel[lv][label]
			if !ok {
				n = t.addNode(label, lv)
			}
			child := t.byLevel[lv-1][fields[lv-1]]
			if p := t.parent[child]; p == NoNode {
				t.parent[child] = n
				seen[lv-1][fields[lv-1]] = origin{parent: n, line: lines[ri]}
			} else if p != n {
				first := seen[lv-1][fields[lv-1]]
				return nil, fmt.Errorf("%w: line %d: %q at level %d has parent %q, but line %d gives parent %q",
					ErrSyntax, lines[ri], fields[lv-1], lv-1, label, first.line, t.labels[p])
			}
		}
	}
	t.root = t.byLevel[cols-1][rootName]
	for _, n := range t.byLevel[0] {
		for a := n; a != NoNode; a = t.parent[a] {
			t.leaves[a]++
		}
	}
	return t, nil
}

func (t *Tree) addNode(label string, level int) Node {
	n := Node(len(t.labels))
	t.labels = append(t.labels, label)
	t.parent = append(t.parent, NoNode)
	t.level = append(t.level, int8(level))
	t.leaves = append(t.leaves, 0)
	t.byLevel[level][label] = n
	return n
}

// Lookup implements Hierarchy.
func (t *Tree) Lookup(value string) (Node, bool) {
	n, ok := t.byLevel[0][value]
	return n, ok
}

// NodeAt implements Hierarchy.
func (t *Tree) NodeAt(label string, level int) (Node, bool) {
	if level < 0 || level >= t.levels {
		return NoNode, false
	}
	n, ok := t.byLevel[level][label]
	return n, ok
}

// Valid implements Hierarchy.
func (t *Tree) Valid(n Node) bool { return n >= 0 && int(n) < len(t.labels) }

// LCA implements Hierarchy. It runs in O(depth) without allocating.
func (t *Tree) LCA(a, b Node) Node {
	if !t.Valid(a) || !t.Valid(b) {
		return NoNode
	}
	return lca(t.parent, t.level, a, b)
}

// lca climbs from a and b, the deeper (lower level) one first, until they
// meet. parent and level are indexed by node.
func lca(parent []Node, level []int8, a, b Node) Node {
	for a != b {
		la, lb := level[a], level[b]
		switch {
		case la < lb:
			a = parent[a]
		case lb < la:
			b = parent[b]
		default:
			a, b = parent[a], parent[b]
		}
		if a == NoNode || b == NoNode {
			return NoNode
		}
	}
	return a
}

// Leaves implements Hierarchy.
func (t *Tree) Leaves(n Node) int64 {
	if !t.Valid(n) {
		return 0
	}
	return t.leaves[n]
}

// TotalLeaves implements Hierarchy.
func (t *Tree) TotalLeaves() int64 { return t.leaves[t.root] }

// Label implements Hierarchy.
func (t *Tree) Label(n Node) string {
	if !t.Valid(n) {
		return ""
	}
	return t.labels[n]
}

// Parent implements Hierarchy.
func (t *Tree) Parent(n Node) Node {
	if !t.Valid(n) {
		return NoNode
	}
	return t.parent[n]
}

// Level implements Hierarchy.
func (t *Tree) Level(n Node) int {
	if !t.Valid(n) {
		return -1
	}
	return int(t.level[n])
}

// Depth implements Hierarchy.
func (t *Tree) Depth(n Node) int {
	if !t.Valid(n) {
		return -1
	}
	return t.levels - 1 - int(t.level[n])
}

// RootNode implements Hierarchy.
func (t *Tree) RootNode() Node { return t.root }

// Levels implements Hierarchy.
func (t *Tree) Levels() int { return t.levels }

// Size returns the number of nodes.
func (t *Tree) Size() int { return len(t.labels) }

// Values returns the leaf values in file order.
func (t *Tree) Values() []string {
	out := make([]string, 0, t.leaves[t.root])
	for i, l := range t.level {
		if l == 0 {
			out = append(out, t.labels[i])
		}
	}
	return out
}

// Generalize implements Hierarchy.
func (t *Tree) Generalize(value string, level int) string {
	if level <= 0 {
		return value
	}
	if level >= t.levels-1 {
		return t.labels[t.root]
	}
	n, ok := t.byLevel[0][value]
	if !ok {
		return Root
	}
	for range level {
		n = t.parent[n]
	}
	return t.labels[n]
}
