package subjectkey

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newKMS(t testing.TB) (*FileKMS, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek.json")
	if err := GenerateKEKFile(path); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKEKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k, path
}

// TestEncryptTokenizeDecrypt: encrypt is randomised, tokenize
// deterministic per key and field; both decrypt with the key that made
// them, for the field they were made for, after a round trip through the
// wrapped form.
func TestEncryptTokenizeDecrypt(t *testing.T) {
	ctx := context.Background()
	kms, _ := newKMS(t)
	k, w, err := NewDataKey(ctx, kms, "dk1.analytics.aaaa", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := NewDataKey(ctx, kms, "dk1.analytics.bbbb", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const email = "canary-subject-7@example.com"
	e1, _ := k.Encrypt([]byte(email), "email")
	e2, _ := k.Encrypt([]byte(email), "email")
	t1, _ := k.Tokenize([]byte(email), "email")
	t2, _ := k.Tokenize([]byte(email), "email")
	to, _ := other.Tokenize([]byte(email), "email")
	tf, _ := k.Tokenize([]byte(email), "phone")
	switch {
	case e1 == e2:
		t.Fatal("encrypt is deterministic")
	case t1 != t2:
		t.Fatal("tokenize is not deterministic")
	case t1 == to:
		t.Fatal("two subjects' keys give the same token")
	case t1 == tf:
		t.Fatal("two fields give the same token")
	case !strings.HasPrefix(e1, EncryptedPrefix) || !strings.HasPrefix(t1, TokenPrefix):
		t.Fatalf("values %q %q", e1, t1)
	}
	for _, v := range []string{e1, e2, t1, t2, to, tf} {
		if strings.Contains(v, "canary") {
			t.Fatal("plaintext in a value")
		}
	}
	b, err := w.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w2, err := ParseWrapped(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unwrap(ctx, kms, w2)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{e1, t1} {
		pt, err := back.Decrypt(v, "email")
		if err != nil || string(pt) != email {
			t.Fatalf("decrypt %q: %q %v", v, pt, err)
		}
		if _, err := back.Decrypt(v, "phone"); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("decrypted for another field: %v", err)
		}
		if _, err := other.Decrypt(v, "email"); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("another subject's key decrypted it: %v", err)
		}
	}
	if tok, _ := back.Tokenize([]byte(email), "email"); tok != t1 {
		t.Fatal("the unwrapped key tokenizes differently")
	}
}

// TestWrappedKeyCannotMove: a wrapped key stored under another subject's
// id (a key-id collision or a swap in the key topic) does not unwrap, nor
// does one wrapped by another key-encryption key, nor a tampered one.
func TestWrappedKeyCannotMove(t *testing.T) {
	ctx := context.Background()
	kms, _ := newKMS(t)
	_, w, err := NewDataKey(ctx, kms, "dk1.marketing.victim", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	moved := w
	moved.ID = "dk1.marketing.attacker"
	if _, err := Unwrap(ctx, kms, moved); err == nil {
		t.Fatal("a wrapped key unwrapped under another id")
	}
	otherKMS, _ := newKMS(t)
	if _, err := Unwrap(ctx, otherKMS, w); err == nil {
		t.Fatal("another key-encryption key unwrapped it")
	}
	tampered := w
	tampered.AEAD = bytes.Clone(w.AEAD)
	tampered.AEAD[len(tampered.AEAD)-1] ^= 1
	if _, err := Unwrap(ctx, kms, tampered); err == nil {
		t.Fatal("a tampered wrapped key unwrapped")
	}
}

// TestRotateKEK: after a rotation new keys are wrapped by the new primary,
// keys wrapped before still unwrap, and the file stays 0600.
func TestRotateKEK(t *testing.T) {
	ctx := context.Background()
	kms, path := newKMS(t)
	k, old, err := NewDataKey(ctx, kms, "dk1.analytics.before", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := k.Tokenize([]byte("x"), "f")
	id, err := RotateKEKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := LoadKEKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Primary() != id || id == kms.Primary() {
		t.Fatalf("primary %d after rotating to %d (was %d)", rotated.Primary(), id, kms.Primary())
	}
	back, err := Unwrap(ctx, rotated, old)
	if err != nil {
		t.Fatalf("a key wrapped before the rotation: %v", err)
	}
	if again, _ := back.Tokenize([]byte("x"), "f"); again != tok {
		t.Fatal("the key changed across the rotation")
	}
	_, fresh, err := NewDataKey(ctx, rotated, "dk1.analytics.after", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unwrap(ctx, kms, fresh); err == nil {
		t.Fatal("the pre-rotation key set unwrapped a key wrapped by the new primary")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after rotation", st.Mode())
	}
}

// TestKEKFileRefusals: a file readable by others or writable by its
// group, a file that is not a keyset and an existing file to generate over
// are refused; a Kubernetes Secret's 0440 (group read, for the pod's
// fsGroup) loads.
func TestKEKFileRefusals(t *testing.T) {
	_, path := newKMS(t)
	if err := GenerateKEKFile(path); err == nil {
		t.Fatal("an existing key file was replaced")
	}
	for _, mode := range []os.FileMode{0o644, 0o604, 0o660, 0o620} {
		os.Chmod(path, mode)
		if _, err := LoadKEKFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("a key file of mode %04o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o440, 0o400, 0o640} {
		os.Chmod(path, mode)
		if _, err := LoadKEKFile(path); err != nil {
			t.Fatalf("a key file of mode %04o: %v", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte(`{"keys": 1}`), 0o600)
	if _, err := LoadKEKFile(junk); err == nil {
		t.Fatal("junk loaded as a key-encryption key")
	}
}

// TestNothingPrintsKeyMaterial: %v, %+v, %#v and String of the keys and
// of the KMS show no key bytes.
func TestNothingPrintsKeyMaterial(t *testing.T) {
	ctx := context.Background()
	kms, path := newKMS(t)
	k, w, err := NewDataKey(ctx, kms, "dk1.analytics.print", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	var secrets []string
	for _, line := range strings.Split(string(file), "\"") {
		if len(line) > 40 { // the base64 key material of the file
			secrets = append(secrets, line)
		}
	}
	if len(secrets) == 0 {
		t.Fatal("no key material found in the file to scan for")
	}
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", k, k, k, k.String(), kms, kms, kms)
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("key material printed: %s", out)
		}
	}
	if !strings.Contains(out, "dk1.analytics.print") || strings.Contains(out, base64.StdEncoding.EncodeToString(w.AEAD)) {
		t.Fatalf("printed %s", out)
	}
}

// TestParseRefusesBadInput: malformed wrapped keys and field values are
// ErrMalformed, with bounded sizes.
func TestParseRefusesBadInput(t *testing.T) {
	for _, b := range []string{
		``, `{}`, `[]`, `{"v":2,"id":"a","aead":"AA==","daead":"AA=="}`, `{"v":1,"id":"","aead":"AA==","daead":"AA=="}`,
		`{"v":1,"id":"a b","aead":"AA==","daead":"AA=="}`, `{"v":1,"id":"a","aead":"","daead":"AA=="}`,
		`{"v":1,"id":"a","aead":"AA==","daead":"AA==","x":1}`, `{"v":1,"id":"a","aead":"AA==","daead":"AA=="} {}`,
		`{"v":1,"id":"` + strings.Repeat("a", MaxIDLen+1) + `","aead":"AA==","daead":"AA=="}`, strings.Repeat(" ", MaxWrappedLen+1),
	} {
		if _, err := ParseWrapped([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseWrapped(%.60q): %v", b, err)
		}
	}
	for _, v := range []string{"", "e1.", "t1.", "x1.AAAA", "e1.!!!", "canary@example.com", "e1." + strings.Repeat("A", MaxValueLen)} {
		if _, _, err := ParseValue(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseValue(%.40q): %v", v, err)
		}
	}
}

func FuzzParseWrapped(f *testing.F) {
	kms, _ := newKMS(f)
	_, w, err := NewDataKey(context.Background(), kms, "dk1.analytics.fuzz", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	b, _ := w.Marshal()
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"a","aead":"AA==","daead":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ParseWrapped(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		again, err := w.Marshal()
		if err != nil {
			t.Fatalf("a parsed key does not marshal: %v", err)
		}
		if w2, err := ParseWrapped(again); err != nil || w2.ID != w.ID || !bytes.Equal(w2.AEAD, w.AEAD) {
			t.Fatalf("round trip: %v", err)
		}
		Unwrap(context.Background(), kms, w) // must not panic
	})
}

func FuzzDecrypt(f *testing.F) {
	kms, _ := newKMS(f)
	k, _, err := NewDataKey(context.Background(), kms, "dk1.analytics.fuzz", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	e, _ := k.Encrypt([]byte("v"), "f")
	tk, _ := k.Tokenize([]byte("v"), "f")
	f.Add(e)
	f.Add(tk)
	f.Add("e1.AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		pt, err := k.Decrypt(v, "f")
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if string(pt) != "v" {
			t.Fatalf("forged value %q decrypted to %q", v, pt)
		}
	})
}
