package pseudonym

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSecret returns a deterministic 32-byte secret distinct per seed.
func testSecret(seed byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = seed + byte(i)*7
	}
	return s
}

func TestAppendKnownAnswer(t *testing.T) {
	secret, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	p := New(Key{ID: "analytics-2026-11", Secret: secret})

	// Computed independently with crypto/hmac.
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("email\x00jane.doe@example.com"))
	want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])

	got := string(p.Append(nil, "email", "jane.doe@example.com"))
	if got != want {
		t.Fatalf("Append = %q, want %q", got, want)
	}
	// Fixed vector, computed outside Go with Python's hmac module:
	//   base64.urlsafe_b64encode(hmac.new(bytes(range(32)),
	//     b"email\x00jane.doe@example.com", hashlib.sha256).digest()[:16])
	const fixed = "DWo59K79YlRu--85pcgqhA"
	if got != fixed {
		t.Fatalf("Append = %q, want fixed vector %q", got, fixed)
	}
	if len(got) != EncodedLen {
		t.Fatalf("len = %d, want %d", len(got), EncodedLen)
	}
	if p.KeyID() != "analytics-2026-11" {
		t.Fatalf("KeyID = %q", p.KeyID())
	}
}

func TestAppendMatchesReferenceForManyLengths(t *testing.T) {
	secret := testSecret(9)
	p := New(Key{ID: "k", Secret: secret})
	// Lengths around the 256-byte staging buffer boundaries.
	for _, dl := range []int{0, 1, 10, 254, 255, 256, 257, 600} {
		for _, vl := range []int{0, 1, 100, 254, 255, 256, 257, 511, 512, 513, 5000} {
			domain := strings.Repeat("d", dl)
			value := strings.Repeat("v", vl)
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(domain))
			mac.Write([]byte{0})
			mac.Write([]byte(value))
			want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
			if got := string(p.Append(nil, domain, value)); got != want {
				t.Fatalf("domain len %d value len %d: got %q want %q", dl, vl, got, want)
			}
		}
	}
}

func TestAppendDeterministicAndSeparated(t *testing.T) {
	k1 := Key{ID: "a", Secret: testSecret(1)}
	k2 := Key{ID: "b", Secret: testSecret(2)}
	p1, p1b, p2 := New(k1), New(k1), New(k2)

	a := string(p1.Append(nil, "subject_id", "u-123"))
	if b := string(p1.Append(nil, "subject_id", "u-123")); a != b {
		t.Fatalf("not deterministic on same instance: %q vs %q", a, b)
	}
	if b := string(p1b.Append(nil, "subject_id", "u-123")); a != b {
		t.Fatalf("not deterministic across instances: %q vs %q", a, b)
	}
	seen := map[string]string{a: "k1/subject_id/u-123"}
	check := func(name, v string) {
		t.Helper()
		if prev, dup := seen[v]; dup {
			t.Fatalf("%s collides with %s: %q", name, prev, v)
		}
		seen[v] = name
	}
	check("k2/subject_id/u-123", string(p2.Append(nil, "subject_id", "u-123")))
	check("k1/email/u-123", string(p1.Append(nil, "email", "u-123")))
	check("k1/subject_id/u-124", string(p1.Append(nil, "subject_id", "u-124")))
	// Domain separation: the NUL separator keeps these apart.
	check("k1/subject/_idu-123", string(p1.Append(nil, "subject", "_idu-123")))
	check("k1/''/''", string(p1.Append(nil, "", "")))
	check("k1/''/x", string(p1.Append(nil, "", "x")))
	check("k1/x/''", string(p1.Append(nil, "x", "")))

	// Different purposes of a generated keyring give different pseudonyms.
	kr, err := GenerateKeyring([]string{"analytics", "marketing"}, "demo")
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := kr.Active("analytics")
	km, _ := kr.Active("marketing")
	check("analytics", string(New(ka).Append(nil, "subject_id", "u-123")))
	check("marketing", string(New(km).Append(nil, "subject_id", "u-123")))
}

func TestAppendAppendsToDst(t *testing.T) {
	p := New(Key{ID: "k", Secret: testSecret(3)})
	dst := []byte("prefix:")
	out := p.Append(dst, "d", "v")
	if !strings.HasPrefix(string(out), "prefix:") || len(out) != len("prefix:")+EncodedLen {
		t.Fatalf("unexpected output %q", out)
	}
	for _, c := range out[len("prefix:"):] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			t.Fatalf("non-base64url char %q in %q", c, out)
		}
	}
}

func TestAppendZeroAllocs(t *testing.T) {
	p := New(Key{ID: "k", Secret: testSecret(4)})
	buf := make([]byte, 0, 64)
	long := strings.Repeat("x", 1000)
	allocs := testing.AllocsPerRun(100, func() {
		buf = p.Append(buf[:0], "email", "jane.doe@example.com")
		buf = p.Append(buf[:0], "email", long)
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %v times per run, want 0", allocs)
	}
}

func TestAppendPanicsOnNULDomain(t *testing.T) {
	p := New(Key{ID: "k", Secret: testSecret(5)})
	defer func() {
		if recover() == nil {
			t.Fatal("expected panic")
		}
	}()
	p.Append(nil, "a\x00b", "c")
}

func TestNewRejectsWeakKeys(t *testing.T) {
	canary := []byte("CANARY-short-secret")
	for _, k := range []Key{
		{ID: "k", Secret: nil},
		{ID: "k", Secret: canary},
		{ID: "", Secret: testSecret(1)},
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatalf("New(%v) did not panic", k)
				}
				if strings.Contains(fmt.Sprint(r), "CANARY") {
					t.Fatalf("panic message leaks secret: %v", r)
				}
			}()
			New(k)
		}()
	}
}

// canarySecret is recognisable in any encoding we might leak it in.
var canarySecret = []byte("CANARY-SECRET-0123456789-abcdefghij-XYZ") // 39 bytes

func leaks(s string, secret []byte) bool {
	forms := []string{
		string(secret),
		base64.StdEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret),
		base64.URLEncoding.EncodeToString(secret),
		hex.EncodeToString(secret),
		fmt.Sprint(secret), // [67 65 ...]
		fmt.Sprintf("%x", secret[:8]),
		string(secret[:8]),
		fmt.Sprint(secret[:4]),
	}
	for _, f := range forms {
		if strings.Contains(s, f) || strings.Contains(strings.ToLower(s), strings.ToLower(f)) {
			return true
		}
	}
	return false
}

func TestKeyNeverPrintsSecret(t *testing.T) {
	k := Key{ID: "analytics-2026-11", Secret: canarySecret}
	kr, err := ParseKeyring(keyringJSON(t, entry{"analytics", "analytics-2026-11", b64(canarySecret), true}))
	if err != nil {
		t.Fatal(err)
	}
	p := New(k)
	type wrapper struct {
		K  Key
		KR *Keyring
	}
	values := []any{k, &k, []Key{k}, map[string]Key{"x": k}, wrapper{k, kr}, kr, *kr, p, *p}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"}
	for _, v := range values {
		for _, verb := range verbs {
			out := fmt.Sprintf(verb, v)
			if leaks(out, canarySecret) {
				t.Errorf("fmt %s of %T leaks the secret: %s", verb, v, out)
			}
		}
		out := fmt.Sprint(v) + fmt.Sprintln(v)
		if leaks(out, canarySecret) {
			t.Errorf("Sprint of %T leaks: %s", v, out)
		}
	}
	if s := k.String(); s != "Key{ID:analytics-2026-11, Secret:[redacted]}" {
		t.Errorf("String = %q", s)
	}
	if s := fmt.Sprintf("%#v", k); s != `pseudonym.Key{ID:"analytics-2026-11", Secret:[redacted]}` {
		t.Errorf("GoString = %q", s)
	}
	if s := fmt.Sprintf("%v", kr); s != "Keyring{analytics:[analytics-2026-11(active)], Secrets:[redacted]}" {
		t.Errorf("Keyring String = %q", s)
	}

	// JSON.
	for _, v := range []any{k, &k, kr, wrapper{k, kr}, []Key{k}} {
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if leaks(string(js), canarySecret) {
			t.Errorf("json.Marshal(%T) leaks the secret: %s", v, js)
		}
	}
	js, _ := json.Marshal(k)
	if string(js) != `{"id":"analytics-2026-11","secret":"[redacted]"}` {
		t.Errorf("Key JSON = %s", js)
	}
	// The redacted keyring JSON must not be loadable.
	js, _ = json.Marshal(kr)
	if _, err := ParseKeyring(js); err == nil {
		t.Errorf("redacted keyring JSON %s parsed successfully", js)
	}

	// slog, text and JSON handlers.
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		slog.New(h).Info("msg", "key", k, "keyring", kr, "pseudonymizer", p, "ptr", &k)
	}
	if leaks(buf.String(), canarySecret) {
		t.Errorf("slog leaks the secret: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "analytics-2026-11") {
		t.Errorf("slog output lacks the key id: %s", buf.String())
	}
}

type entry struct {
	Purpose string `json:"purpose"`
	ID      string `json:"id"`
	Secret  string `json:"secret"`
	Active  bool   `json:"active"`
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func keyringJSON(t *testing.T, entries ...entry) []byte {
	t.Helper()
	js, err := json.Marshal(map[string]any{"keys": entries})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestParseKeyring(t *testing.T) {
	s1, s2, s3 := b64(testSecret(1)), b64(testSecret(2)), b64(testSecret(3))
	data := keyringJSON(t,
		entry{"analytics", "analytics-2026-11", s1, true},
		entry{"analytics", "analytics-2026-10", s2, false},
		entry{"marketing", "marketing-2026-11", s3, true},
	)
	kr, err := ParseKeyring(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := kr.Purposes(); len(got) != 2 || got[0] != "analytics" || got[1] != "marketing" {
		t.Fatalf("Purposes = %v", got)
	}
	a, ok := kr.Active("analytics")
	if !ok || a.ID != "analytics-2026-11" || !bytes.Equal(a.Secret, testSecret(1)) {
		t.Fatalf("Active(analytics) = %v, %v", a, ok)
	}
	old, ok := kr.Lookup("analytics", "analytics-2026-10")
	if !ok || !bytes.Equal(old.Secret, testSecret(2)) {
		t.Fatalf("Lookup old = %v, %v", old, ok)
	}
	if _, ok := kr.Lookup("marketing", "analytics-2026-10"); ok {
		t.Fatal("Lookup found a key under the wrong purpose")
	}
	if _, ok := kr.Active("ai_training"); ok {
		t.Fatal("Active found a missing purpose")
	}
	// Returned keys are copies.
	a.Secret[0] ^= 0xff
	a2, _ := kr.Active("analytics")
	if !bytes.Equal(a2.Secret, testSecret(1)) {
		t.Fatal("Active returned a key sharing memory with the keyring")
	}
	ps := kr.Purposes()
	ps[0] = "mutated"
	if kr.Purposes()[0] != "analytics" {
		t.Fatal("Purposes returned internal slice")
	}
	// nil keyring.
	var nilKR *Keyring
	if _, ok := nilKR.Active("analytics"); ok {
		t.Fatal("nil keyring Active")
	}
	if _, ok := nilKR.Lookup("analytics", "x"); ok {
		t.Fatal("nil keyring Lookup")
	}
	if nilKR.Purposes() != nil {
		t.Fatal("nil keyring Purposes")
	}
	if s := fmt.Sprintf("%v|%+v|%s", nilKR, nilKR, nilKR); s != "<nil>|<nil>|<nil>" {
		t.Fatalf("nil keyring prints %q", s)
	}
	if s := fmt.Sprint(Keyring{}); s != "Keyring{Secrets:[redacted]}" {
		t.Fatalf("zero keyring prints %q", s)
	}
}

func TestParseKeyringErrors(t *testing.T) {
	canary := b64(canarySecret)
	good := b64(testSecret(1))
	good2 := b64(testSecret(2))
	shortCanary := b64(canarySecret[:31])
	tests := []struct {
		name string
		data string
		want string // substring of the error
	}{
		{"empty input", ``, "not valid JSON"},
		{"not json", `hello ` + canary, "syntax error at byte offset"},
		{"truncated", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary, "syntax error"},
		{"control char in secret", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary[:10] + "\n" + canary[10:] + `","active":true}]}`, "syntax error"},
		{"trailing data", `{"keys":[]} {"x":"` + canary + `"}`, "not valid JSON"},
		{"top-level array", `["` + canary + `"]`, "document must be a JSON object"},
		{"top-level number", `12345678901234567890`, "document must be a JSON object"},
		{"no keys", `{}`, `"keys" is missing or empty`},
		{"empty keys", `{"keys":[]}`, `"keys" is missing or empty`},
		{"null keys", `{"keys":null}`, `must be a JSON array`},
		{"keys not array", `{"keys":"` + canary + `"}`, `must be a JSON array`},
		{"unknown top-level field", `{"keys":[],"extra":1}`, `unknown top-level field "extra"`},
		{"entry not object", `{"keys":["` + canary + `"]}`, `keys[0] must be a JSON object`},
		{"unknown entry field", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","active":true,"comment":"x"}]}`, `keys[0]: unknown field "comment"`},
		{"secret as field name", `{"keys":[{"purpose":"analytics","id":"a","` + canary + `":true}]}`, `unknown field (name not shown)`},
		{"case-mismatched field", `{"keys":[{"Purpose":"analytics","id":"a","secret":"` + canary + `","active":true}]}`, `unknown field "Purpose"`},
		{"duplicate field", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","secret":"` + good + `","active":true}]}`, `field "secret" appears more than once`},
		{"purpose missing", `{"keys":[{"id":"a","secret":"` + canary + `","active":true}]}`, `field "purpose" is missing or empty`},
		{"purpose empty", `{"keys":[{"purpose":"","id":"a","secret":"` + canary + `","active":true}]}`, `field "purpose" is missing or empty`},
		{"purpose null", `{"keys":[{"purpose":null,"id":"a","secret":"` + canary + `","active":true}]}`, `field "purpose" is missing or empty`},
		{"purpose number", `{"keys":[{"purpose":7,"id":"a","secret":"` + canary + `","active":true}]}`, `field "purpose" must be a string`},
		{"purpose holds secret", `{"keys":[{"purpose":"` + canary + `","id":"a","secret":"` + good + `","active":true}]}`, `field "purpose" must be 1-64 characters`},
		{"id missing", `{"keys":[{"purpose":"analytics","secret":"` + canary + `","active":true}]}`, `field "id" is missing or empty`},
		{"invalid id", `{"keys":[{"purpose":"analytics","id":"x ` + canary + `","secret":"` + good + `","active":true}]}`, `field "id" must be 1-128 characters`},
		{"secret missing", `{"keys":[{"purpose":"analytics","id":"a","active":true}]}`, `field "secret" is missing or empty`},
		{"secret number", `{"keys":[{"purpose":"analytics","id":"a","secret":1234567890123456789012345,"active":true}]}`, `field "secret" must be a string`},
		{"bad base64", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary[:20] + `!!` + canary[20:] + `","active":true}]}`, `not valid standard (padded) base64`},
		{"url base64", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 33)) + `","active":true}]}`, `not valid standard (padded) base64`},
		{"short key", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + shortCanary + `","active":true}]}`, `secret decodes to 31 bytes, need at least 32`},
		{"active not bool", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","active":"yes"}]}`, `field "active" must be a boolean`},
		{"no active", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `"}]}`, `purpose "analytics" has no active key`},
		{"duplicate active", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","active":true},{"purpose":"analytics","id":"b","secret":"` + good + `","active":true}]}`, `purpose "analytics" has more than one active key ("a" and "b")`},
		{"duplicate id", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","active":true},{"purpose":"marketing","id":"a","secret":"` + good + `","active":true}]}`, `keys[0] and keys[1] both use key id "a"`},
		{"reused secret", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","active":true},{"purpose":"marketing","id":"b","secret":"` + canary + `","active":true}]}`, `reuses the secret of keys[0]`},
		{"second purpose lacks active", `{"keys":[{"purpose":"analytics","id":"a","secret":"` + canary + `","active":true},{"purpose":"marketing","id":"b","secret":"` + good2 + `"}]}`, `purpose "marketing" has no active key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := ParseKeyring([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseKeyring succeeded: %v", kr)
			}
			if !errors.Is(err, ErrInvalidKeyring) {
				t.Errorf("error %q does not wrap ErrInvalidKeyring", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			msg := err.Error() + fmt.Sprintf("%+v %#v", err, err)
			if leaks(msg, canarySecret) || strings.Contains(msg, "CANARY") ||
				strings.Contains(msg, canary[:8]) || strings.Contains(msg, good[:8]) ||
				strings.Contains(msg, "12345") {
				t.Errorf("error leaks secret material: %s", msg)
			}
		})
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.json")
	data := keyringJSON(t, entry{"analytics", "analytics-2026-11", b64(canarySecret), true})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := kr.Active("analytics"); !ok || !bytes.Equal(k.Secret, canarySecret) {
		t.Fatal("loaded keyring lacks the key")
	}

	// Missing file: path named, fs.ErrNotExist wrapped.
	missing := filepath.Join(dir, "missing.json")
	_, err = LoadKeyring(missing)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file error = %v", err)
	}

	// Invalid content: path named, content not.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"keys":[{"purpose":"analytics","id":"a","secret":"`+b64(canarySecret[:20])+`","active":true}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadKeyring(bad)
	if err == nil || !errors.Is(err, ErrInvalidKeyring) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file error = %v", err)
	}
	if leaks(err.Error(), canarySecret[:20]) {
		t.Fatalf("error leaks secret: %v", err)
	}

	// Oversized file.
	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, bytes.Repeat([]byte(" "), MaxKeyringFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(huge); err == nil || !errors.Is(err, ErrInvalidKeyring) {
		t.Fatalf("huge file error = %v", err)
	}
	// A directory.
	if _, err := LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("directory error = %v", err)
	}
}

func TestGenerateKeyring(t *testing.T) {
	purposes := []string{"analytics", "personalization", "ai_training", "marketing", "third_party_sharing"}
	kr, err := GenerateKeyring(purposes, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if got := kr.Purposes(); len(got) != len(purposes) {
		t.Fatalf("Purposes = %v", got)
	}
	secrets := map[string]bool{}
	for _, p := range purposes {
		k, ok := kr.Active(p)
		if !ok || k.ID != p+"-demo" || len(k.Secret) != MinSecretLen {
			t.Fatalf("Active(%s) = %v, %v (len %d)", p, k, ok, len(k.Secret))
		}
		if secrets[string(k.Secret)] {
			t.Fatal("repeated secret")
		}
		secrets[string(k.Secret)] = true
		if _, ok := kr.Lookup(p, p+"-demo"); !ok {
			t.Fatalf("Lookup(%s) failed", p)
		}
	}
	kr2, _ := GenerateKeyring(purposes, "demo")
	k1, _ := kr.Active("analytics")
	k2, _ := kr2.Active("analytics")
	if bytes.Equal(k1.Secret, k2.Secret) {
		t.Fatal("two generated keyrings share a secret")
	}
	if kr3, err := GenerateKeyring([]string{"analytics"}, ""); err != nil {
		t.Fatal(err)
	} else if k, _ := kr3.Active("analytics"); k.ID != "analytics" {
		t.Fatalf("ID without suffix = %q", k.ID)
	}

	for _, bad := range []struct {
		purposes []string
		suffix   string
	}{
		{nil, "demo"},
		{[]string{"analytics", "analytics"}, "demo"},
		{[]string{""}, "demo"},
		{[]string{"Analytics"}, "demo"},
		{[]string{"analytics"}, "bad suffix"},
	} {
		if _, err := GenerateKeyring(bad.purposes, bad.suffix); err == nil || !errors.Is(err, ErrInvalidKeyring) {
			t.Errorf("GenerateKeyring(%q, %q) error = %v", bad.purposes, bad.suffix, err)
		}
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte(`{"keys":[{"purpose":"analytics","id":"a","secret":"` + b64(testSecret(1)) + `","active":true}]}`))
	f.Add([]byte(`{"keys":[{"purpose":"analytics","id":"a","secret":"` + b64(testSecret(1)) + `","active":true},{"purpose":"analytics","id":"b","secret":"` + b64(testSecret(2)) + `"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kr, err := ParseKeyring(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyring) {
				t.Fatalf("error does not wrap ErrInvalidKeyring: %v", err)
			}
			return
		}
		for _, p := range kr.Purposes() {
			k, ok := kr.Active(p)
			if !ok || len(k.Secret) < MinSecretLen {
				t.Fatalf("purpose %q: bad active key", p)
			}
			if _, ok := kr.Lookup(p, k.ID); !ok {
				t.Fatalf("purpose %q: active key not found by Lookup", p)
			}
			New(k).Append(nil, "d", "v")
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	p := New(Key{ID: "k", Secret: testSecret(1)})
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = p.Append(buf[:0], "email", "jane.doe@example.com")
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := New(Key{ID: "k", Secret: testSecret(1)}) // one per worker
		buf := make([]byte, 0, 64)
		for pb.Next() {
			buf = p.Append(buf[:0], "subject_id", "7f9c2ba4-e88f-4c1b-9d36-1f0a3b2c4d5e")
		}
	})
}

// BenchmarkNewHMACPerCall is the baseline Append avoids.
func BenchmarkNewHMACPerCall(b *testing.B) {
	secret := testSecret(1)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte("email\x00jane.doe@example.com"))
		buf = base64.RawURLEncoding.AppendEncode(buf[:0], mac.Sum(nil)[:16])
	}
}

func TestWriteKeyringFileRoundTrip(t *testing.T) {
	kr, err := GenerateKeyring([]string{"analytics", "marketing"}, "t")
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/keys.json"
	if err := WriteKeyringFile(path, kr); err != nil {
		t.Fatal(err)
	}
	back, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"analytics", "marketing"} {
		a, _ := kr.Active(p)
		b, _ := back.Active(p)
		if a.ID != b.ID || string(a.Secret) != string(b.Secret) {
			t.Fatalf("%s: round trip lost the key", p)
		}
	}
	if err := WriteKeyringFile(path, kr); err == nil {
		t.Fatal("replaced an existing keyring")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}
