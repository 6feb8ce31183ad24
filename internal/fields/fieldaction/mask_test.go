package fieldaction

import (
	"math"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

type maskCase struct {
	in, want string
}

func runMaskTable(t *testing.T, name string, fn func([]byte, string) []byte, cases []maskCase) {
	t.Helper()
	for _, c := range cases {
		// Append to a non-empty prefix to check the append contract.
		got := fn([]byte("pre|"), c.in)
		if string(got) != "pre|"+c.want {
			t.Errorf("%s(%q) = %q, want %q", name, c.in, got[min(4, len(got)):], c.want)
		}
		if got := fn(nil, c.in); string(got) != c.want {
			t.Errorf("%s(nil, %q) = %q, want %q", name, c.in, got, c.want)
		}
	}
}

func TestAppendMaskEmail(t *testing.T) {
	runMaskTable(t, "AppendMaskEmail", AppendMaskEmail, []maskCase{
		{"jane.doe@example.com", "j*******@example.com"},
		{"", ""},
		{"@", "@"},
		{"@example.com", "@example.com"},
		{"j@x.io", "j@x.io"},
		{"jo@x.io", "j*@x.io"},
		{"jane.doe@", "j*******@"},
		{"jane", "j***"},
		{"j", "j"},
		{"a@b@c.com", "a**@c.com"}, // domain starts at the last '@'
		{"\"a@b\"@example.com", "\"****@example.com"},
		{"élodie@exemple.fr", "é*****@exemple.fr"},
		{"日本語@例え.jp", "日**@例え.jp"},
		{"😀smile@x.com", "😀*****@x.com"},
		{"\xffbc@x.com", "***@x.com"},      // invalid first byte is masked
		{"ab\xff@x\xfe.com", "a**@x*.com"}, // invalid bytes masked everywhere
		{"\xe6\x97", "**"},                 // truncated multibyte rune: two invalid bytes
		{"Jane.Doe@Example.COM", "J*******@Example.COM"},
		{strings.Repeat("x", 150) + "@x.io", "x" + strings.Repeat("*", 149) + "@x.io"},
		{strings.Repeat("x", 65), "x" + strings.Repeat("*", 64)},
	})
}

func TestAppendMaskPhone(t *testing.T) {
	runMaskTable(t, "AppendMaskPhone", AppendMaskPhone, []maskCase{
		{"+84 912 345 678", "+*********78"},
		{"", ""},
		{"+", "+"},
		{"5", "5"},
		{"12", "12"},
		{"123", "*23"},
		{"(030) 1234-5678", "*********78"},
		{"+1 (555) 010-9999", "+*********99"},
		{"0044.20.7946.0958", "************58"},
		{"++1", "+1"},
		{" +49 30 123", "+*****23"},
		{"1+2", "12"},                    // '+' after a digit is not a prefix
		{"12+34", "**34"},                // ... and is dropped
		{"tel:+1-800-FLOWERS", "+**00"},  // letters are dropped
		{"+*********78", "+*********78"}, // idempotent
		{"***-**78", "*****78"},          // stars count as digits
		{"٠١٢٣", "**٢٣"},                 // Arabic-Indic digits
		{"０９０１２３４", "*****３４"},           // full-width digits
		{"\xff12\xfe34", "**34"},         // invalid bytes dropped
		{"abc", ""},
	})
}

func TestAppendMaskCard(t *testing.T) {
	runMaskTable(t, "AppendMaskCard", AppendMaskCard, []maskCase{
		{"4111 1111 1111 1234", "************1234"},
		{"4111-1111-1111-1234", "************1234"},
		{"4111111111111234", "************1234"},
		{"**** **** **** 1234", "************1234"},
		{"************1234", "************1234"},
		{"378282246310005", "***********0005"},
		{"6011 0009 9013 9424 123", "***************4123"},
		{"", ""},
		{"12", "12"},
		{"1234", "1234"},
		{"12345", "*2345"},
		{"+4111", "4111"}, // no '+' for cards
		{"card: 4111\xff1111 1111 1234", "************1234"},
		{"XXXX XXXX XXXX 1234", "1234"},
	})
}

func TestAppendMaskKeepLast(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"abcdef", 2, "****ef"},
		{"abcdef", 0, "******"},
		{"abcdef", -1, "******"},
		{"abcdef", math.MinInt, "******"},
		{"abcdef", math.MaxInt, "abcdef"},
		{"abcdef", 6, "abcdef"},
		{"abcdef", 100, "abcdef"},
		{"", 3, ""},
		{"", 0, ""},
		{"日本語テキスト", 2, "*****スト"},
		{"ab\xffcd", 3, "***cd"}, // invalid byte masked even when kept
		{"\xff", 1, "*"},
		{"\xe6\x97\xa5", 1, "日"},
		{"\xe6\x97", 2, "**"},
		{"x\uFFFDy", 2, "*\uFFFDy"}, // a real U+FFFD is a valid rune
		{"👍🏽ok", 3, "*🏽ok"},
	}
	for _, tt := range tests {
		if got := string(AppendMaskKeepLast([]byte("pre|"), tt.in, tt.n)); got != "pre|"+tt.want {
			t.Errorf("AppendMaskKeepLast(%q, %d) = %q, want %q", tt.in, tt.n, got[4:], tt.want)
		}
	}
}

func TestMaskZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendMaskEmail(buf[:0], "jane.doe@example.com")
		buf = AppendMaskPhone(buf[:0], "+84 912 345 678")
		buf = AppendMaskPhone(buf[:0], "０９０１２３４")
		buf = AppendMaskCard(buf[:0], "4111 1111 1111 1234")
		buf = AppendMaskKeepLast(buf[:0], "日本語テキスト", 2)
	})
	if allocs != 0 {
		t.Fatalf("mask functions allocate %v times, want 0", allocs)
	}
}

// digitSeq returns the digits of s (and '*' as a masked digit) in order.
func digitSeq(s string) []rune {
	var out []rune
	for _, r := range s {
		if r == '*' || unicode.IsDigit(r) {
			out = append(out, r)
		}
	}
	return out
}

// checkDigitMask verifies the output of AppendMaskPhone/AppendMaskCard.
func checkDigitMask(t *testing.T, s string, out []byte, keep int, allowPlus bool) {
	t.Helper()
	if len(out) > len(s) {
		t.Fatalf("output %q longer than input %q", out, s)
	}
	if !utf8.Valid(out) {
		t.Fatalf("output %q is not valid UTF-8", out)
	}
	body := string(out)
	if allowPlus {
		body = strings.TrimPrefix(body, "+")
	}
	in := digitSeq(s)
	got := []rune(body)
	if len(got) != len(in) {
		t.Fatalf("input %q has %d digits, output %q has %d characters", s, len(in), out, len(got))
	}
	kept := 0
	for i, r := range got {
		if r == '*' {
			continue
		}
		if !unicode.IsDigit(r) {
			t.Fatalf("output %q contains non-digit %q", out, r)
		}
		// A visible digit must be one of the last `keep` input digits,
		// at the same position.
		if i < len(in)-keep || in[i] != r {
			t.Fatalf("output %q reveals digit %q at position %d of input %q", out, r, i, s)
		}
		kept++
	}
	if kept > keep {
		t.Fatalf("output %q reveals %d digits, want at most %d", out, kept, keep)
	}
}

func FuzzAppendMaskEmail(f *testing.F) {
	for _, s := range []string{"jane.doe@example.com", "", "@", "a@b@c", "日本語@例え.jp", "\xffbc@x.com", "noat"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendMaskEmail([]byte("pre|"), s)
		if string(out[:4]) != "pre|" {
			t.Fatalf("dst prefix clobbered: %q", out)
		}
		out = out[4:]
		// Documented bound: never longer than the input.
		if len(out) > len(s) {
			t.Fatalf("output %q longer than input %q", out, s)
		}
		if !utf8.Valid(out) {
			t.Fatalf("output %q is not valid UTF-8", out)
		}
		local, domain := s, ""
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			local, domain = s[:at], s[at:]
		}
		outLocal := string(out[:len(out)-len(appendSanitized(nil, domain))])
		if string(out[len(outLocal):]) != string(appendSanitized(nil, domain)) {
			t.Fatalf("domain not preserved: %q -> %q", s, out)
		}
		if utf8.RuneCountInString(outLocal) != utf8.RuneCountInString(local) {
			t.Fatalf("local part length changed: %q -> %q", s, out)
		}
		// Only the first rune of the local part may be visible.
		for i, r := range []rune(outLocal) {
			if i > 0 && r != '*' {
				t.Fatalf("output %q reveals local-part rune %q", out, r)
			}
		}
	})
}

func FuzzAppendMaskPhone(f *testing.F) {
	for _, s := range []string{"+84 912 345 678", "", "+", "12", "(030) 1234-5678", "٠١٢٣", "+*********78", "\xff12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendMaskPhone(nil, s)
		checkDigitMask(t, s, out, PhoneKeepDigits, true)
		if again := AppendMaskPhone(nil, string(out)); string(again) != string(out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, out, again)
		}
	})
}

func FuzzAppendMaskCard(f *testing.F) {
	for _, s := range []string{"4111 1111 1111 1234", "", "**** **** **** 1234", "12", "+4111"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendMaskCard(nil, s)
		checkDigitMask(t, s, out, CardKeepDigits, false)
		if again := AppendMaskCard(nil, string(out)); string(again) != string(out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, out, again)
		}
	})
}

func FuzzAppendMaskKeepLast(f *testing.F) {
	f.Add("abcdef", 2)
	f.Add("日本語\xff", 1)
	f.Add("", -3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		out := AppendMaskKeepLast(nil, s, n)
		if len(out) > len(s) || !utf8.Valid(out) {
			t.Fatalf("bad output %q for %q", out, s)
		}
		in, got := []rune(s), []rune(string(out))
		if len(in) != len(got) {
			t.Fatalf("rune count changed: %q -> %q", s, out)
		}
		visible := 0
		for i, r := range got {
			if r == '*' { // masked, or an input '*' (which reveals nothing)
				continue
			}
			if r != in[i] || i < len(in)-max(n, 0) {
				t.Fatalf("output %q reveals rune %d of %q", out, i, s)
			}
			visible++
		}
		if n >= 0 && visible > n {
			t.Fatalf("%d runes visible, want <= %d", visible, n)
		}
	})
}

func BenchmarkAppendMaskEmail(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMaskEmail(buf[:0], "jane.doe@example.com")
	}
}

func BenchmarkAppendMaskPhone(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMaskPhone(buf[:0], "+84 912 345 678")
	}
}

func BenchmarkAppendMaskCard(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMaskCard(buf[:0], "4111 1111 1111 1234")
	}
}

func BenchmarkAppendMaskKeepLast(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMaskKeepLast(buf[:0], "DE89 3704 0044 0532 0130 00", 4)
	}
}
