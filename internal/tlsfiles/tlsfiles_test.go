package tlsfiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	os.WriteFile(p, []byte("  canary-secret-81\n"), 0o600)
	if v, err := Secret(p); err != nil || v != "canary-secret-81" {
		t.Fatalf("Secret = %q %v", v, err)
	}
	os.WriteFile(p, []byte(" \n"), 0o600)
	if _, err := Secret(p); err == nil {
		t.Fatal("an empty secret was accepted")
	}
	if _, err := Secret(filepath.Join(dir, "missing")); err == nil || strings.Contains(err.Error(), "canary") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestClient(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "ca.pem")
	os.WriteFile(bad, []byte("no certificate here"), 0o600)
	for name, args := range map[string][4]string{
		"missing CA":       {filepath.Join(dir, "nope"), "", "", ""},
		"CA without PEM":   {bad, "", "", ""},
		"cert without key": {"", bad, "", ""},
		"unreadable pair":  {"", bad, bad, ""},
	} {
		if _, err := Client(args[0], args[1], args[2], args[3]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	tc, err := Client("", "", "", "broker.example")
	if err != nil || tc.ServerName != "broker.example" || tc.RootCAs != nil || tc.MinVersion == 0 {
		t.Fatalf("system roots: %+v %v", tc, err)
	}
}
