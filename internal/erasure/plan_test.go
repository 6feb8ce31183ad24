package erasure

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

const subject = "canary-subject-erase-77"

func ledger(t *testing.T) (*Ledger, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.key")
	if err := GenerateLedgerKeyFile(path); err != nil {
		t.Fatal(err)
	}
	l, err := LoadLedgerKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return l, path
}

// TestLedgerMarks: a mark is stable for a subject, differs between
// subjects and between ledger keys, holds no part of the id, and the key
// file is 0600, never replaced, never printed.
func TestLedgerMarks(t *testing.T) {
	l, path := ledger(t)
	other, _ := ledger(t)
	m := l.Mark(subject)
	switch {
	case m != l.Mark(subject):
		t.Fatal("a mark is not stable")
	case m == l.Mark(subject+"x"):
		t.Fatal("two subjects share a mark")
	case m == other.Mark(subject):
		t.Fatal("two ledger keys give the same mark")
	case strings.Contains(m, "canary") || !IsMark(m) || IsMark(subject):
		t.Fatalf("mark %q", m)
	}
	if err := GenerateLedgerKeyFile(path); err == nil {
		t.Fatal("a ledger key file was replaced (every erasure would be forgotten)")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	key, _ := os.ReadFile(path)
	if out := fmt.Sprintf("%v %+v %#v %s", l, l, l, l); strings.Contains(out, strings.TrimSpace(string(key))) {
		t.Fatal("the ledger key printed")
	}
	if _, err := NewLedger(make([]byte, 16)); err == nil {
		t.Fatal("a short ledger key was accepted")
	}
}

// TestPlanCoversEveryKey: the plan tombstones every consent key of the
// subject and shreds its data key under every pseudonym key of every
// purpose, active and rotated out, with one notice each; printed, it shows
// no subject id.
func TestPlanCoversEveryKey(t *testing.T) {
	l, _ := ledger(t)
	// A keyring after a rotation: the 2026-11 keys active, 2026-10 kept.
	var entries []map[string]any
	for i, suffix := range []string{"2026-10", "2026-11"} {
		g, err := pseudonym.GenerateKeyring(purpose.Names(), suffix)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "keys.json")
		if err := pseudonym.WriteKeyringFile(path, g); err != nil {
			t.Fatal(err)
		}
		var doc struct{ Keys []map[string]any }
		b, _ := os.ReadFile(path)
		json.Unmarshal(b, &doc)
		for _, e := range doc.Keys {
			e["active"] = i == 1
			entries = append(entries, e)
		}
	}
	b, _ := json.Marshal(map[string]any{"keys": entries})
	kr, err := pseudonym.ParseKeyring(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanFor(subject, kr, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ConsentKeys) != purpose.Count+3 {
		t.Fatalf("%d consent keys", len(p.ConsentKeys))
	}
	if len(p.DataKeys) != 2*purpose.Count || len(p.Notices) != 2*purpose.Count {
		t.Fatalf("%d data keys, %d notices, want one per purpose and pseudonym key", len(p.DataKeys), len(p.Notices))
	}
	seen := map[string]bool{}
	for _, n := range p.Notices {
		if strings.Contains(n.Pseudonym+n.DataKey, "canary") || seen[n.DataKey] {
			t.Fatalf("notice %+v", n)
		}
		seen[n.DataKey] = true
	}
	if out := fmt.Sprintf("%v %+v %s", p, p, p); strings.Contains(out, "canary") {
		t.Fatalf("the plan prints the subject: %s", out)
	}
	if _, err := PlanFor("", kr, l); err == nil {
		t.Fatal("an empty subject was planned")
	}
}
