package redact

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// Contexts that may surround PII in a message. Contexts glued to ASCII
// letters or digits, or to token brackets, are documented non-matches and
// left out.
var (
	canaryBefore = []string{
		"", " ", "Hi ", "my contact: ", "(", "<", "\"", "'", "\n", "\t", ", ", "; ", "=",
		"Liên hệ ", "số ", "số", "→", "«", "\xff", "email/", "tel:", "ip=", "… ",
	}
	canaryAfter = []string{
		"", " ", " thanks", ")", ">", "\"", "'", ".", ",", "!", "?", ";", "\n", "\r\n",
		" nhé", "»", "←", "\xfe", ". Cảm ơn!", ", ok?", " :)",
	}
)

type canaryGen struct {
	kind Kind
	gen  func(r *rand.Rand) string
}

func digitsN(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

func alnumN(r *rand.Rand, n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

// cardNumber returns a Luhn-valid number of n digits starting with 4 or 5.
func cardNumber(r *rand.Rand, n int) []byte {
	d := make([]byte, n)
	d[0] = byte(4 + r.IntN(2))
	for i := 1; i < n-1; i++ {
		d[i] = byte(r.IntN(10))
	}
	for c := byte(0); c < 10; c++ {
		d[n-1] = c
		if luhn(d) {
			break
		}
	}
	for i := range d {
		d[i] += '0'
	}
	return d
}

var canaryGens = []canaryGen{
	{Email, func(r *rand.Rand) string {
		seps := []string{".", "_", "+", "-", ""}
		local := "canary" + seps[r.IntN(len(seps))] + alnumN(r, 1+r.IntN(10))
		tlds := []string{"com", "vn", "co.uk", "com.sg", "de", "io", "museum"}
		return local + "@" + strings.ToLower(alnumN(r, 1+r.IntN(8))) + "." + tlds[r.IntN(len(tlds))]
	}},
	{Phone, func(r *rand.Rand) string {
		nz := func() string { return strconv.Itoa(2 + r.IntN(8)) }
		switch r.IntN(10) {
		case 0: // US
			return "(" + nz() + digitsN(r, 2) + ") " + nz() + digitsN(r, 2) + "-" + digitsN(r, 4)
		case 1:
			return "+1 " + nz() + digitsN(r, 2) + "-" + nz() + digitsN(r, 2) + "-" + digitsN(r, 4)
		case 2: // UK
			return "+44 20 " + digitsN(r, 4) + " " + digitsN(r, 4)
		case 3:
			return "07" + digitsN(r, 3) + " " + digitsN(r, 6)
		case 4: // VN
			return "+84 " + "9" + digitsN(r, 1) + " " + digitsN(r, 3) + " " + digitsN(r, 2) + " " + digitsN(r, 2)
		case 5:
			return "09" + digitsN(r, 8)
		case 6:
			return "0" + nz() + digitsN(r, 1) + "." + digitsN(r, 3) + "." + digitsN(r, 4)
		case 7: // SG
			return "+65 " + nz() + digitsN(r, 3) + " " + digitsN(r, 4)
		case 8: // DE
			return "+49 (0)30 " + digitsN(r, 7)
		default:
			return "0151 " + digitsN(r, 8)
		}
	}},
	{Card, func(r *rand.Rand) string {
		n := []int{13, 15, 16, 16, 16, 19}[r.IntN(6)]
		d := cardNumber(r, n)
		if n != 16 || r.IntN(3) == 0 {
			return string(d)
		}
		sep := " -"[r.IntN(2)]
		return string(d[0:4]) + string(sep) + string(d[4:8]) + string(sep) + string(d[8:12]) + string(sep) + string(d[12:16])
	}},
	{IPv4, func(r *rand.Rand) string {
		return strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(r.IntN(256)) + "." +
			strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(r.IntN(256))
	}},
	{IPv6, func(r *rand.Rand) string {
		switch r.IntN(3) {
		case 0:
			return "2001:db8:" + strconv.FormatUint(uint64(r.IntN(0x10000)), 16) + "::" + strconv.Itoa(1+r.IntN(999))
		case 1:
			return "::ffff:" + strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(r.IntN(256)) + ".0." + strconv.Itoa(r.IntN(256))
		default:
			var b strings.Builder
			b.WriteString("2a0" + strconv.Itoa(r.IntN(10)))
			for range 7 {
				b.WriteString(":" + strconv.FormatUint(uint64(r.IntN(0x10000)), 16))
			}
			return b.String()
		}
	}},
}

// TestCanaryNeverSurvives embeds random PII ("canaries") in random
// contexts, alone and several per message, and checks that no canary
// survives redaction and that each is counted under its kind.
func TestCanaryNeverSurvives(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 20000; iter++ {
		var msg strings.Builder
		var canaries []string
		var want Counts
		for n := 1 + r.IntN(3); n > 0; n-- {
			g := canaryGens[r.IntN(len(canaryGens))]
			c := g.gen(r)
			canaries = append(canaries, c)
			want[g.kind]++
			before := canaryBefore[r.IntN(len(canaryBefore))]
			if g.kind == IPv6 && strings.HasSuffix(before, ":") {
				before += " " // "tel:::1" is not an address
			}
			msg.WriteString(before)
			msg.WriteString(c)
			msg.WriteString(canaryAfter[r.IntN(len(canaryAfter))])
			msg.WriteString(" ")
		}
		in := msg.String()
		out, got := AppendRedacted(nil, in)
		for _, c := range canaries {
			if strings.Contains(string(out), c) {
				t.Fatalf("canary %q survived:\n in  %q\n out %q", c, in, out)
			}
		}
		if got != want {
			t.Fatalf("counts %v, want %v:\n in  %q\n out %q", got, want, in, out)
		}
		checkRedaction(t, in)
	}
}

// TestRandomAlphabet runs the properties of FuzzAppendRedacted on random
// short strings over the bytes the matchers care about, which finds
// boundary interactions much faster than unguided fuzzing.
func TestRandomAlphabet(t *testing.T) {
	const alphabet = "0123456789012345678901234567890123456789abcdefxyz@@..::--++  ()[]/_%\xff\xc3"
	r := rand.New(rand.NewPCG(3, 4))
	n := 100000
	if testing.Short() {
		n = 10000
	}
	b := make([]byte, 0, 64)
	for iter := 0; iter < n; iter++ {
		b = b[:0]
		for l := r.IntN(48); l > 0; l-- {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		checkRedaction(t, string(b))
	}
}

// fragments are the pieces TestRandomFragments glues together: PII and
// near-PII, separators, token text, letters and non-ASCII bytes.
var fragments = []string{
	"0", "1", "4", "9", "12", "44", "123", "1234", "12345", "2024", "05", "000", "10", "255",
	"0901234567", "4111", "1111", "5105", "4111111111111111", "378282246310005",
	"9999999999999999999", "1.2.3.4", "0.0.0.0", "1.2.3.4.5", "3.14", "12:30", "-1", "0 ",
	" ", "  ", "-", "--", ".", "..", ":", "::", "@", "@@", "(", ")", "+", "+1 ", "+84", "/",
	"[", "]", "]x", "x[", "_", "%", "%eth0", "\n", "(0)", "(555)", "1-800",
	"fe80", "2001", "ffff", "e8::", ":1", "1:", "e",
	"a", "x", "g", "Z", "-x", "a.b", "b.co", "com", "x@", "a@b.io",
	"[IP]", "[PHONE]", "[EMAIL]", "[CARD]", "\xff", "\xc3\xa9", "số",
	"ab", "cd:", "1a", "::ffff:", "x.com", "@x", "@e.co", "e@", ".5", "-05", "0-", "-12",
	"(+84)", "+84 (0)", "4111 1111", "-1111", "2024-05-01", "01.05.2024", " 2029",
	"12 345 678", "1 000", "0901 234 567", "(028) 3823", "::1", "8.8.8.8", "00", "0.",
	"//", "++", "\t", "Z9", "9Z", "a-", "_1",
}

// TestRandomFragments checks the properties of FuzzAppendRedacted on
// random concatenations of fragments. It found the boundary interactions
// kept as regression seeds in testdata/fuzz/FuzzAppendRedacted.
func TestRandomFragments(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 150000
	if testing.Short() {
		n = 15000
	}
	var b strings.Builder
	for iter := 0; iter < n; iter++ {
		b.Reset()
		for l := 1 + r.IntN(20); l > 0; l-- {
			b.WriteString(fragments[r.IntN(len(fragments))])
		}
		checkRedaction(t, b.String())
	}
}
