package redact

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzAppendRedacted(f *testing.F) {
	for _, cases := range allCases {
		for _, tc := range cases {
			f.Add(tc.in)
		}
	}
	f.Add(benchPII)
	f.Add(benchClean)
	f.Fuzz(func(t *testing.T, in string) {
		checkRedaction(t, in)
	})
}

// checkRedaction checks every property AppendRedacted promises for in.
func checkRedaction(t *testing.T, in string) {
	t.Helper()
	out, c := AppendRedacted(nil, in)

	// The output is the input with the reported spans replaced.
	var rebuilt []byte
	var counts Counts
	lit := 0
	for st, en, k := next(in, 0, 0); k != 0; st, en, k = next(in, en, en) {
		if st < lit || en <= st || en > len(in) {
			t.Fatalf("bad span [%d:%d] after %d in %q", st, en, lit, in)
		}
		checkSpan(t, in, in[st:en], k)
		rebuilt = append(rebuilt, in[lit:st]...)
		rebuilt = append(rebuilt, k.Token()...)
		counts[k]++
		lit = en
	}
	rebuilt = append(rebuilt, in[lit:]...)
	if !bytes.Equal(out, rebuilt) || c != counts {
		t.Fatalf("AppendRedacted(%q) = %q %v, spans give %q %v", in, out, c, rebuilt, counts)
	}
	if c.Total() == 0 && string(out) != in {
		t.Fatalf("nothing redacted but output differs: %q -> %q", in, out)
	}
	if Contains(in) != (c.Total() > 0) {
		t.Fatalf("Contains(%q) = %v, counts %v", in, Contains(in), c)
	}
	if s := String(in); s != string(out) {
		t.Fatalf("String(%q) = %q, AppendRedacted gives %q", in, s, out)
	}
	if utf8.ValidString(in) && !utf8.Valid(out) {
		t.Fatalf("valid UTF-8 %q became invalid %q", in, out)
	}
	// Redaction is idempotent: nothing is left to find in the output.
	if out2, c2 := AppendRedacted(nil, string(out)); c2.Total() != 0 || !bytes.Equal(out2, out) {
		t.Fatalf("not idempotent:\n in   %q\n out  %q\n out2 %q (%v)", in, out, out2, c2)
	}
	// Appending to a non-empty buffer keeps it.
	pre := []byte("pre:")
	if got, _ := AppendRedacted(pre, in); string(got) != "pre:"+string(out) {
		t.Fatalf("prefix lost: %q", got)
	}
}

// checkSpan validates one reported span independently of the matcher.
func checkSpan(t *testing.T, in, span string, k Kind) {
	t.Helper()
	digits := 0
	for i := 0; i < len(span); i++ {
		if isDigit(span[i]) {
			digits++
		}
	}
	bad := func(why string) { t.Fatalf("%v span %q in %q: %s", k, span, in, why) }
	switch k {
	case Email:
		at := strings.IndexByte(span, '@')
		if at < 1 || strings.Count(span, "@") != 1 || !strings.Contains(span[at:], ".") {
			bad("not local@domain.tld")
		}
	case Phone:
		if digits < minPhoneDigits || digits > maxPhoneDigits {
			bad("digit count")
		}
	case Card:
		var d []byte
		for _, ch := range []byte(span) {
			if isDigit(ch) {
				d = append(d, ch-'0')
			}
		}
		if len(d) < minCardDigits || len(d) > maxCardDigits || !luhn(d) || d[0] == 0 {
			bad("not a Luhn-valid card number")
		}
	case IPv4:
		// Leading zeros are allowed by the matcher; strip them for netip.
		parts := strings.Split(span, ".")
		for i, p := range parts {
			if p = strings.TrimLeft(p, "0"); p == "" {
				p = "0"
			}
			parts[i] = p
		}
		if a, err := netip.ParseAddr(strings.Join(parts, ".")); err != nil || !a.Is4() {
			bad("netip rejects it")
		}
	case IPv6:
		if a, err := netip.ParseAddr(span); err != nil || !a.Is6() || digits == 0 {
			bad("netip rejects it")
		}
	default:
		bad("unknown kind")
	}
}

// FuzzValidIPv6 checks the allocation-free IPv6 parser against
// net/netip.ParseAddr.
func FuzzValidIPv6(f *testing.F) {
	for _, s := range []string{
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1::2:3:4:5:6:7:8", "::ffff:1.2.3.4", "::ffff:01.2.3.4", "1:2:3:4:5:6:1.2.3.4",
		"1:2:3:4:5:6:7:1.2.3.4", "fe80::1", "12:30:45", "1:", ":1", "1::2::3", "12345::",
		"::1.2.3.4", "1.2.3.4", "2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is6() && a.Zone() == "" && !strings.Contains(s, "%")
		if got := validIPv6(s); got != want {
			t.Fatalf("validIPv6(%q) = %v, netip says %v (%v)", s, got, want, err)
		}
	})
}
