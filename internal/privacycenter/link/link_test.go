package link

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

func newAEAD(t testing.TB) tink.AEAD {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestMintAndOpen(t *testing.T) {
	c := &clock{t: time.UnixMilli(1_800_000_000_000)}
	s, err := New(newAEAD(t), WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Mint("cust-0000042", 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tok, "cust-0000042") || strings.Contains(tok, base64.RawURLEncoding.EncodeToString([]byte("cust-0000042"))) {
		t.Fatal("the subject id is readable in the token")
	}
	got, err := s.Open(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "cust-0000042" || !got.Issued.Equal(c.t) || !got.Expires.Equal(c.t.Add(15*time.Minute)) {
		t.Fatalf("claims %+v", got)
	}
}

// TestRefused names the attacks: a token of another key (another
// deployment, or a forger), a tampered byte, a token for another subject
// spliced together, an expired one, one from the future, one whose issuer
// granted a longer life than policy, garbage and the empty token; each is
// refused with its own reason.
func TestRefused(t *testing.T) {
	c := &clock{t: time.UnixMilli(1_800_000_000_000)}
	s, _ := New(newAEAD(t), WithClock(c.now))
	other, _ := New(newAEAD(t), WithClock(c.now))
	long, _ := New(s.a, WithClock(c.now), WithMaxTTL(24*time.Hour))
	tok, _ := s.Mint("alice", 10*time.Minute)
	foreign, _ := other.Mint("alice", 10*time.Minute)
	longTok, _ := long.Mint("alice", 12*time.Hour)
	bob, _ := s.Mint("bobby", 10*time.Minute) // as long as "alice": the splice is valid base64
	tampered := []byte(tok)
	tampered[len(tampered)-5] ^= 1
	if tampered[len(tampered)-5] == '.' || !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", rune(tampered[len(tampered)-5])) {
		tampered[len(tampered)-5] = 'A'
	}
	spliced := tok[:len(tok)/2] + bob[len(bob)/2:]
	for _, tc := range []struct {
		name, token string
		want        error
		at          time.Time
	}{
		{"another key", foreign, ErrForged, c.t},
		{"a tampered byte", string(tampered), ErrForged, c.t},
		{"two tokens spliced", spliced, ErrForged, c.t},
		{"expired", tok, ErrExpired, c.t.Add(10 * time.Minute)},
		{"from the future", tok, ErrFuture, c.t.Add(-time.Minute)},
		{"a lifetime over the maximum", longTok, ErrTooLong, c.t},
		{"no prefix", strings.TrimPrefix(tok, Prefix), ErrMalformed, c.t},
		{"not base64", Prefix + "!!!", ErrMalformed, c.t},
		{"empty", "", ErrMalformed, c.t},
		{"oversized", Prefix + strings.Repeat("A", MaxTokenLen), ErrMalformed, c.t},
	} {
		saved := c.t
		c.t = tc.at
		if _, err := s.Open(tc.token); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		c.t = saved
	}
	if _, err := s.Open(tok); err != nil {
		t.Fatalf("the genuine token: %v", err)
	}
}

func TestMintRefusesBadInput(t *testing.T) {
	s, _ := New(newAEAD(t))
	for _, sub := range []string{"", "   ", "ali\x07ce", strings.Repeat("x", MaxSubjectLen+1), "\xff"} { // the consent API's subject rule
		if _, err := s.Mint(sub, time.Minute); err == nil {
			t.Errorf("minted for subject %q", sub)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, DefaultMaxTTL + time.Second} {
		if _, err := s.Mint("alice", ttl); err == nil {
			t.Errorf("minted with lifetime %s", ttl)
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("a sealer without an AEAD")
	}
}

// FuzzOpen: Open never panics, and whatever it accepts has claims that
// Mint could have made.
func FuzzOpen(f *testing.F) {
	a := newAEAD(f)
	s, _ := New(a)
	tok, _ := s.Mint("cust-1", time.Minute)
	f.Add(tok)
	f.Add("")
	f.Add(Prefix)
	f.Add(Prefix + "AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := s.Open(token)
		if err != nil {
			return
		}
		if checkSubject(c.Subject) != nil || !c.Expires.After(c.Issued) || c.Expires.Sub(c.Issued) > DefaultMaxTTL {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}
