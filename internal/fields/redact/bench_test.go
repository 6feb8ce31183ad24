package redact

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// benchPII is a 200-byte support-chat message with five pieces of PII.
const benchPII = "Hi team, my email is john.doe@example.com and my phone is +84 90 123 45 67. " +
	"I paid with card 4111 1111 1111 1111 yesterday; the login came from 192.168.1.10, " +
	"please check order 42, thanks a lot!"

// benchClean is a 200-byte message without PII, with some digits and hex
// letters to exercise the triggers.
const benchClean = "Hi team, I ordered the blue jacket on Monday but it has still not arrived. " +
	"The tracking page says it left the warehouse 3 days ago. Could you please check " +
	"order 42 and tell me when it will arrive?"

func BenchmarkAppendRedacted(b *testing.B) {
	for _, bc := range []struct{ name, msg string }{{"pii", benchPII}, {"clean", benchClean}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 2*len(bc.msg))
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.msg)))
			for b.Loop() {
				buf, _ = AppendRedacted(buf[:0], bc.msg)
			}
		})
	}
}

func BenchmarkContains(b *testing.B) {
	for _, bc := range []struct{ name, msg string }{{"pii", benchPII}, {"clean", benchClean}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.msg)))
			for b.Loop() {
				_ = Contains(bc.msg)
			}
		})
	}
}

// baselineRE is one combined regular expression doing roughly the job of
// AppendRedacted; baselineRedact adds the Luhn and address checks that a
// regexp cannot express.
var baselineRE = regexp.MustCompile(
	`(?P<email>[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63})` +
		`|(?P<ipv6>(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3}))` +
		`|(?P<ipv4>\b(?:\d{1,3}\.){3}\d{1,3}\b)` +
		`|(?P<card>\b\d(?:[ -]?\d){12,18}\b)` +
		`|(?P<phone>(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\b\d{2,4}(?:[ .-]?\d{2,4}){1,4}\b)`)

func baselineRedact(dst []byte, src string) []byte {
	lit := 0
	for _, m := range baselineRE.FindAllStringSubmatchIndex(src, -1) {
		tok := ""
		switch {
		case m[2] >= 0:
			tok = "[EMAIL]"
		case m[4] >= 0:
			if _, err := netip.ParseAddr(src[m[4]:m[5]]); err == nil {
				tok = "[IP]"
			}
		case m[6] >= 0:
			tok = "[IP]"
		case m[8] >= 0:
			var d []byte
			for _, c := range []byte(src[m[8]:m[9]]) {
				if isDigit(c) {
					d = append(d, c-'0')
				}
			}
			if luhn(d) {
				tok = "[CARD]"
			}
		case m[10] >= 0:
			if n := len(src[m[10]:m[11]]) - strings.Count(src[m[10]:m[11]], " ") -
				strings.Count(src[m[10]:m[11]], "-") - strings.Count(src[m[10]:m[11]], "."); n >= 7 {
				tok = "[PHONE]"
			}
		}
		if tok == "" {
			continue
		}
		dst = append(dst, src[lit:m[0]]...)
		dst = append(dst, tok...)
		lit = m[1]
	}
	return append(dst, src[lit:]...)
}

func BenchmarkRegexpBaseline(b *testing.B) {
	for _, bc := range []struct{ name, msg string }{{"pii", benchPII}, {"clean", benchClean}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 2*len(bc.msg))
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.msg)))
			for b.Loop() {
				buf = baselineRedact(buf[:0], bc.msg)
			}
		})
	}
}

// TestBenchMessages checks the benchmark inputs and that the regexp
// baseline does the same job on them, so that the comparison is fair.
func TestBenchMessages(t *testing.T) {
	if len(benchPII) < 190 || len(benchPII) > 210 || len(benchClean) < 190 || len(benchClean) > 210 {
		t.Fatalf("benchmark messages are %d and %d bytes, want about 200", len(benchPII), len(benchClean))
	}
	want := "Hi team, my email is [EMAIL] and my phone is [PHONE]. " +
		"I paid with card [CARD] yesterday; the login came from [IP], " +
		"please check order 42, thanks a lot!"
	if got := String(benchPII); got != want {
		t.Errorf("String(benchPII) = %q", got)
	}
	if got := string(baselineRedact(nil, benchPII)); got != want {
		t.Errorf("baseline(benchPII) = %q", got)
	}
	if got := String(benchClean); got != benchClean {
		t.Errorf("String(benchClean) = %q", got)
	}
	if got := string(baselineRedact(nil, benchClean)); got != benchClean {
		t.Errorf("baseline(benchClean) = %q", got)
	}
}
