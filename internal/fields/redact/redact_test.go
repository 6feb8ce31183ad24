package redact

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type tcase struct {
	name string
	in   string
	want string
}

// unchanged marks a negative case: the input must come out as it went in.
const unchanged = "\x00unchanged"

var emailCases = []tcase{
	{"plain", "contact john.doe@example.com please", "contact [EMAIL] please"},
	{"whole input", "a@b.cd", "[EMAIL]"},
	{"parentheses", "(jane_doe+news@mail.example.co.uk)", "([EMAIL])"},
	{"angle brackets", "From: Jane <jane@example.org>", "From: Jane <[EMAIL]>"},
	{"sentence end", "mail me at x.y-z%q@sub-domain.example.org.", "mail me at [EMAIL]."},
	{"after colon", "email:ABC@EXAMPLE.COM", "email:[EMAIL]"},
	{"comma list", "a@example.com,b@example.net;c@example.io", "[EMAIL],[EMAIL];[EMAIL]"},
	{"quotes", `"john@example.com"`, `"[EMAIL]"`},
	{"leading dots", "see...john@x.com", "see...[EMAIL]"},
	{"trailing hyphen", "john@example.com-", "[EMAIL]-"},
	{"numeric local", "555-123-4567@example.com", "[EMAIL]"},
	{"plus local", "+84901234567@example.com", "[EMAIL]"},
	{"two ats", "a@b@c.com", "a@[EMAIL]"},
	{"email then at", "a@b.com@c", "[EMAIL]@c"},
	{"vietnamese", "Liên hệ nguyen.van.a@gmail.com để được hỗ trợ", "Liên hệ [EMAIL] để được hỗ trợ"},
	{"vietnamese glued", "emailcủa tôi:tran.thi.b@công.vn là…", "emailcủa tôi:tran.thi.b@công.vn là…"},
	{"unicode around", "→bob@example.com←", "→[EMAIL]←"},
	{"mailto", "<a href=\"mailto:info@example.com\">", "<a href=\"mailto:[EMAIL]\">"},
	{"long tld", "x@y.museum", "[EMAIL]"},
	{"subdomain numeric label", "ops@10gen.example.com", "[EMAIL]"},
	{"tld then digits", "john@example.com.5", "[EMAIL].5"},
	{"no tld", "user@localhost", unchanged},
	{"one letter tld", "user@example.c", unchanged},
	{"numeric tld", "user@example.123", unchanged},
	{"mention", "@channel please look", unchanged},
	{"empty domain", "foo@ bar", unchanged},
	{"dot domain", "foo@.com", unchanged},
	{"hyphen domain", "foo@-bar.com", unchanged},
	{"quoted local", `"john doe"@example.com`, unchanged},
	{"ip literal domain", "root@192.168.0.1", "root@[IP]"},
	{"local too long", strings.Repeat("a", 65) + "@example.com", unchanged},
	{"local 64", strings.Repeat("a", 64) + "@example.com", "[EMAIL]"},
	{"label too long", "x@" + strings.Repeat("a", 64) + ".com", unchanged},
}

var phoneCases = []tcase{
	// US
	{"us parens", "call (555) 123-4567 now", "call [PHONE] now"},
	{"us dashes", "555-123-4567", "[PHONE]"},
	{"us dots", "555.123.4567.", "[PHONE]."},
	{"us intl", "+1 555 123 4567", "[PHONE]"},
	{"us intl dashes", "+1-555-123-4567", "[PHONE]"},
	{"us intl parens", "+1 (555) 123-4567", "[PHONE]"},
	{"us toll free", "1-800-555-1234", "[PHONE]"},
	{"us bare", "5551234567", "[PHONE]"},
	{"us local 7", "call 555-1234 now", "call [PHONE] now"},
	{"us in parens", "(call 555-123-4567)", "(call [PHONE])"},
	{"us whole parens", "(5551234567)", "([PHONE])"},
	// UK
	{"uk london intl", "+44 20 7946 0958", "[PHONE]"},
	{"uk london national", "020 7946 0958", "[PHONE]"},
	{"uk mobile", "07700 900123", "[PHONE]"},
	{"uk trunk parens", "+44 (0)20 7946 0958", "[PHONE]"},
	{"uk compact", "+447700900123", "[PHONE]"},
	// VN
	{"vn intl groups", "+84 90 123 45 67", "[PHONE]"},
	{"vn intl 3-3-3", "+84 901 234 567", "[PHONE]"},
	{"vn intl compact", "+84901234567", "[PHONE]"},
	{"vn bare", "0901234567", "[PHONE]"},
	{"vn 3-3-4", "090 123 4567", "[PHONE]"},
	{"vn dotted", "0901.234.567", "[PHONE]"},
	{"vn landline parens", "(028) 3823 4567", "[PHONE]"},
	{"vn landline", "028 3823 4567", "[PHONE]"},
	{"vn text", "Số điện thoại của tôi là 0901 234 567, gọi sau 5h nhé", "Số điện thoại của tôi là [PHONE], gọi sau 5h nhé"},
	{"vn glued non-ascii", "số0901234567", "số[PHONE]"},
	{"vn alternatives", "0901234567/0987654321", "[PHONE]/[PHONE]"},
	// SG
	{"sg intl", "+65 6123 4567", "[PHONE]"},
	{"sg intl dash", "+65 9123-4567", "[PHONE]"},
	{"sg national", "6123 4567", "[PHONE]"},
	// DE
	{"de intl", "+49 30 1234567", "[PHONE]"},
	{"de trunk", "+49 (0)30 1234567", "[PHONE]"},
	{"de national", "030 12345678", "[PHONE]"},
	{"de slash", "030/12345678", "[PHONE]"},
	{"de mobile", "0151 23456789", "[PHONE]"},
	{"de intl dashes", "+49-151-2345-6789", "[PHONE]"},
	// FR-style pairs
	{"fr pairs", "06 12 34 56 78", "[PHONE]"},
	// context
	{"tel prefix", "tel:+84901234567", "tel:[PHONE]"},
	{"abbrev dot", "Tel.0901234567", "Tel.[PHONE]"},
	{"query param", "?phone=0901234567&x=1", "?phone=[PHONE]&x=1"},
	{"followed by year", "call 0901 234 567 2024-05-01", "call [PHONE] 2024-05-01"},
	{"glued to plus", "abc+84901234567", "abc+[PHONE]"},
	// negatives
	{"order 42", "order 42", unchanged},
	{"year", "year 2024", unchanged},
	{"order 7 digits", "order 1234567", unchanged},
	{"bare 8 digits", "order 12345678", unchanged},
	{"date iso", "2024-05-01", unchanged},
	{"date de", "01.05.2024", unchanged},
	{"date us", "05/01/2024", unchanged},
	{"date time", "2024-05-01 12:30", unchanged},
	{"date de time", "01.05.2024 14:00", unchanged},
	{"time", "12:30:45", unchanged},
	{"thousands space", "1 000 000 VND", unchanged},
	{"thousands dot", "1.500.000đ", unchanged},
	{"thousands dot 8", "12.345.678", unchanged},
	{"thousands zeros", "250.000.000", unchanged},
	{"year range", "2023-2024", unchanged},
	{"decimal", "pi is 3.14159265358979", unchanged},
	{"coordinates", "10.762622, 106.660172", unchanged},
	{"decimal 4", "10.7769, 106.7009", unchanged},
	{"isbn", "ISBN 978-3-16-148410-0", unchanged},
	{"dashed phones", "0901234567-0912345678", "[PHONE]-[PHONE]"},
	{"dashed id", "ticket 12-34-56", unchanged},
	{"version", "v1.2.3", unchanged},
	{"in word", "abc0901234567", unchanged},
	{"extension glued", "ext555-123-4567", unchanged},
	{"longest prefix", "+84 901 234 567 890 123", "[PHONE] 123"},
	{"single digits", "1 2 3 4 5 6 7 8 9", unchanged},
	{"short plus", "+12345", unchanged},
	{"price range", "100-200", unchanged},
	// documented limits
	{"id with separator", "ticket 4417-2290", "ticket [PHONE]"},
	{"3-3-3 amount", "123 456 789", "[PHONE]"},
	{"sg bare 8", "call 91234567", unchanged},
	{"glued plus", "0901234567+84901234567", "[PHONE]+[PHONE]"},
	{"glued ascii", "SĐT0901234567", unchanged},
	{"extension", "555-123-4567x89", unchanged},
}

var cardCases = []tcase{
	{"visa spaces", "card 4111 1111 1111 1111 thanks", "card [CARD] thanks"},
	{"visa dashes", "4111-1111-1111-1111", "[CARD]"},
	{"visa bare", "4111111111111111", "[CARD]"},
	{"mastercard", "5555555555554444", "[CARD]"},
	{"mastercard grouped", "5105 1051 0510 5100", "[CARD]"},
	{"discover", "6011 1111 1111 1117", "[CARD]"},
	{"amex grouped", "3782 822463 10005", "[CARD]"},
	{"amex bare", "378282246310005", "[CARD]"},
	{"diners 14", "30569309025904", "[CARD]"},
	{"visa 13", "4222222222222", "[CARD]"},
	{"19 digits", "4000 0000 0000 0000 006", "[CARD]"},
	{"mixed separators", "4111 1111-1111 1111", "[CARD]"},
	{"followed by expiry", "4111 1111 1111 1111 2029", "[CARD] 2029"},
	{"sentence end", "card: 4111111111111111.", "card: [CARD]."},
	{"parens", "(4111111111111111)", "([CARD])"},
	{"vietnamese", "thẻ 4111 1111 1111 1111 của tôi", "thẻ [CARD] của tôi"},
	{"luhn fail grouped", "4111 1111 1111 1112", unchanged},
	{"luhn fail dashes", "4111-1111-1111-1112", unchanged},
	{"luhn fail bare 16", "1234567812345678", unchanged},
	{"luhn fail 19", "4000 0000 0000 0000 007", unchanged},
	{"zeros", "0000 0000 0000 0000", unchanged},
	{"too long", "41111111111111111111", unchanged},
	{"in word", "x4111111111111111", unchanged},
	// A 13–15 digit number failing Luhn falls through to the phone rules.
	{"luhn fail 15 is phone", "123456789012345", "[PHONE]"},
	{"then at", "4111111111111111@example.com", "[EMAIL]"},
}

var ipv4Cases = []tcase{
	{"private", "from 192.168.0.1 today", "from [IP] today"},
	{"port", "10.0.0.255:8080", "[IP]:8080"},
	{"parens", "(8.8.8.8)", "([IP])"},
	{"cidr", "1.2.3.4/24", "[IP]/24"},
	{"leading zeros", "ip=010.001.002.003", "ip=[IP]"},
	{"sentence end", "it was 1.2.3.4.", "it was [IP]."},
	{"range", "10.0.0.1-10.0.0.255", "[IP]-[IP]"},
	{"zeros", "0.0.0.0", "[IP]"},
	{"max", "255.255.255.255", "[IP]"},
	{"vietnamese", "địa chỉ IP:203.113.0.5 bị chặn", "địa chỉ IP:[IP] bị chặn"},
	// shape-only: a version with four numbers is redacted.
	{"version limitation", "version 1.2.3.4", "version [IP]"},
	{"five parts", "1.2.3.4.5", unchanged},
	{"octet too big", "256.1.1.1", unchanged},
	{"three parts", "1.2.3", unchanged},
	{"prefixed", "v1.2.3.4", unchanged},
	{"suffixed", "1.2.3.4a", unchanged},
	{"four digit octet", "1.2.3.1234", unchanged},
	{"dotted prefix", "5.1.2.3.4", unchanged},
}

var ipv6Cases = []tcase{
	{"doc", "host 2001:db8::1 is up", "host [IP] is up"},
	{"full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[IP]"},
	{"link local zone", "fe80::1%eth0", "[IP]%eth0"},
	{"loopback", "::1", "[IP]"},
	{"brackets port", "[::1]:443", "[[IP]]:443"},
	{"brackets", "http://[2001:db8::7]/", "http://[[IP]]/"},
	{"mapped", "::ffff:192.0.2.1", "[IP]"},
	{"mapped sentence", "from ::ffff:1.2.3.4.", "from [IP]."},
	{"after label", "ip:fe80::1", "ip:[IP]"},
	{"sentence end", "2001:db8::1.", "[IP]."},
	{"colon after", "fe80::1: down", "[IP]: down"},
	{"trailing ellipsis", "2001:db8::", "[IP]"},
	{"upper", "2001:DB8:0:0:8:800:200C:417A", "[IP]"},
	{"time", "12:30", unchanged},
	{"time seconds", "12:30:45", unchanged},
	{"letters only", "Bad::Face", unchanged},
	{"cpp", "std::vector", unchanged},
	{"short letters", "a::b", unchanged},
	{"nine groups", "1:2:3:4:5:6:7:8:9", unchanged},
	{"mac", "00:1A:2B:3C:4D:5E", unchanged},
	{"unspecified", "x :: y", unchanged},
	{"two ellipses", "1::2::3", unchanged},
	{"group too long", "12345::1", unchanged},
	{"bad embedded v4", "::ffff:1.2.3.256", unchanged},
	{"glued letter", "fe80::1g", unchanged},
	{"hex letters only", "dead::beef", unchanged},
}

var mixedCases = []tcase{
	{"all kinds",
		"Hi, I'm john@example.com, call +84 90 123 45 67 or pay with 4111 1111 1111 1111 from 192.168.1.10 / 2001:db8::1!",
		"Hi, I'm [EMAIL], call [PHONE] or pay with [CARD] from [IP] / [IP]!"},
	{"start and end", "0901234567 is mine, and so is a@b.io", "[PHONE] is mine, and so is [EMAIL]"},
	{"vietnamese message",
		"Chào shop, số điện thoại của mình là 0901 234 567, email nguyen.van.a@gmail.com, thẻ 4111-1111-1111-1111. Cảm ơn!",
		"Chào shop, số điện thoại của mình là [PHONE], email [EMAIL], thẻ [CARD]. Cảm ơn!"},
	{"adjacent", "a@b.io,0901234567;1.2.3.4", "[EMAIL],[PHONE];[IP]"},
	{"newlines", "line1\n+65 6123 4567\nline3\r\n8.8.4.4\r\n", "line1\n[PHONE]\nline3\r\n[IP]\r\n"},
	{"invalid utf8", "\xff0901234567\xfe\xc3", "\xff[PHONE]\xfe\xc3"},
	{"nothing", "Hello, where is my order 42? It was due on 2024-05-01 at 12:30.", unchanged},
	{"empty", "", unchanged},
	{"tokens", "[EMAIL] [PHONE] [CARD] [IP]", unchanged},
}

var allCases = [][]tcase{emailCases, phoneCases, cardCases, ipv4Cases, ipv6Cases, mixedCases}

func TestAppendRedacted(t *testing.T) {
	for _, cases := range allCases {
		for _, tc := range cases {
			want := tc.want
			if want == unchanged {
				want = tc.in
			}
			got, c := AppendRedacted(nil, tc.in)
			if string(got) != want {
				t.Errorf("%s: AppendRedacted(%q)\n got %q\nwant %q", tc.name, tc.in, got, want)
				continue
			}
			if (c.Total() == 0) != (want == tc.in) {
				t.Errorf("%s: counts %v for %q", tc.name, c, tc.in)
			}
			if s := String(tc.in); s != want {
				t.Errorf("%s: String(%q) = %q, want %q", tc.name, tc.in, s, want)
			}
			if Contains(tc.in) != (want != tc.in) {
				t.Errorf("%s: Contains(%q) = %v", tc.name, tc.in, !(want != tc.in))
			}
		}
	}
}

func TestCounts(t *testing.T) {
	in := "a@b.io x@y.org 0901234567 4111111111111111 1.2.3.4 ::1 fe80::2"
	_, c := AppendRedacted(nil, in)
	want := Counts{Email: 2, Phone: 1, Card: 1, IPv4: 1, IPv6: 2}
	if c != want {
		t.Fatalf("counts = %v, want %v", c, want)
	}
	if c.Total() != 7 {
		t.Errorf("Total = %d, want 7", c.Total())
	}
	if got := c.String(); got != "email=2 phone=1 card=1 ipv4=1 ipv6=2" {
		t.Errorf("String = %q", got)
	}
	if got := (Counts{}).String(); got != "none" {
		t.Errorf("empty String = %q", got)
	}
}

func TestKind(t *testing.T) {
	want := map[Kind][2]string{
		Email: {"email", "[EMAIL]"},
		Phone: {"phone", "[PHONE]"},
		Card:  {"card", "[CARD]"},
		IPv4:  {"ipv4", "[IP]"},
		IPv6:  {"ipv6", "[IP]"},
	}
	ks := Kinds()
	if len(ks) != len(want) {
		t.Fatalf("Kinds() = %v", ks)
	}
	for _, k := range ks {
		if w := want[k]; k.String() != w[0] || k.Token() != w[1] {
			t.Errorf("kind %d: %q %q, want %q", k, k.String(), k.Token(), w)
		}
	}
	if Kind(0).String() != "Kind(0)" || Kind(200).String() != "Kind(200)" || Kind(0).Token() != "" {
		t.Errorf("unknown kinds: %q %q %q", Kind(0), Kind(200), Kind(0).Token())
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	dst := []byte("prefix:")
	got, _ := AppendRedacted(dst, "mail a@b.io")
	if string(got) != "prefix:mail [EMAIL]" {
		t.Fatalf("got %q", got)
	}
}

func TestNoAllocs(t *testing.T) {
	msgs := []string{benchPII, benchClean, "a@b.io", ""}
	buf := make([]byte, 0, 1024)
	for _, m := range msgs {
		if n := testing.AllocsPerRun(100, func() { buf, _ = AppendRedacted(buf[:0], m) }); n != 0 {
			t.Errorf("AppendRedacted(%.20q…) allocates %v times", m, n)
		}
		if n := testing.AllocsPerRun(100, func() { _ = Contains(m) }); n != 0 {
			t.Errorf("Contains(%.20q…) allocates %v times", m, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = String(benchClean) }); n != 0 {
		t.Errorf("String(clean) allocates %v times", n)
	}
}

func TestConcurrent(t *testing.T) {
	want, _ := AppendRedacted(nil, benchPII)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 512)
			for i := 0; i < 200; i++ {
				buf, _ = AppendRedacted(buf[:0], benchPII)
				if string(buf) != string(want) {
					t.Errorf("concurrent result differs: %q", buf)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestLinear feeds 1 MiB of adversarial input and checks that it is
// processed in roughly linear time (generously bounded, to stay reliable
// under the race detector and on slow machines).
func TestLinear(t *testing.T) {
	const size = 1 << 20
	patterns := []string{
		"1", "@", "a@", "a.", "1 ", "11 ", "1:", "a:", ":", "1.", "1-", "+1 ", "(1",
		"4111 ", "1111-", "a@b.", "::1:", "aaaa:", "x@y.zz", "0901234567 ", "-", "..@",
		"ab", "(12) ", "12.345.", "1.2.3.4.",
	}
	for _, p := range patterns {
		in := strings.Repeat(p, size/len(p))
		buf := make([]byte, 0, 2*len(in))
		start := time.Now()
		buf, _ = AppendRedacted(buf, in)
		_ = Contains(in)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%q×%d took %v", p, size/len(p), d)
		}
		_ = buf
	}
}
