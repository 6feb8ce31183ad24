package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// kgoPath is franz-go's client package.
const kgoPath = "github.com/twmb/franz-go/pkg/kgo"

// connOwner is the one package that may say where the cluster is.
const connOwner = module + "internal/stream/kafkaconn"

// TestOnlyKafkaconnBuildsClients: the Kafka connection has one owner. No
// non-test file outside kafkaconn sets kgo.SeedBrokers or calls
// kgo.NewClient, so every client gets the connection's options (and, later,
// its TLS and SASL) from kafkaconn.Config; the runner's transactional
// session is the one other client constructor, built from Conn.Opts().
// Tests may build clients against kfake directly, and examples/consumer,
// the standalone reader a user copies (it imports nothing of ours), builds
// its own.
func TestOnlyKafkaconnBuildsClients(t *testing.T) {
	allowed := map[string]map[string]bool{
		"NewGroupTransactSession": {module + "internal/stream/runner": true},
	}
	banned := map[string]bool{"SeedBrokers": true, "NewClient": true, "NewGroupTransactSession": true}
	files := 0
	for _, line := range goList(t, "-f", `{{.ImportPath}}|{{.Dir}}|{{join .GoFiles ","}},{{join .IgnoredGoFiles ","}}`, "../../...") {
		pkg, rest, _ := strings.Cut(line, "|")
		dir, names, _ := strings.Cut(rest, "|")
		if pkg == connOwner || pkg == module+"examples/consumer" {
			continue
		}
		for _, name := range strings.Split(names, ",") {
			if name == "" || strings.HasSuffix(name, "_test.go") {
				continue
			}
			files++
			for _, use := range kgoCalls(t, filepath.Join(dir, name), banned) {
				if !allowed[use.name][pkg] {
					t.Errorf("%s: kgo.%s outside kafkaconn: build the client from kafkaconn.Config (NewClient, NewAdmin, Opts)", use.pos, use.name)
				}
			}
		}
	}
	if files < 50 {
		t.Fatalf("checked only %d files: is go list's output what this test expects?", files)
	}
}

type kgoUse struct {
	pos  token.Position
	name string
}

// kgoCalls returns the uses of the named kgo identifiers in a file,
// whatever name kgo is imported under.
func kgoCalls(t *testing.T, path string, names map[string]bool) []kgoUse {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	local := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == kgoPath {
			local = "kgo"
			if imp.Name != nil {
				local = imp.Name.Name
			}
		}
	}
	if local == "" || local == "_" {
		return nil
	}
	if local == "." {
		t.Errorf("%s dot-imports kgo, which this test cannot check", path)
		return nil
	}
	var out []kgoUse
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == local && names[sel.Sel.Name] {
			out = append(out, kgoUse{fset.Position(sel.Pos()), sel.Sel.Name})
		}
		return true
	})
	return out
}
