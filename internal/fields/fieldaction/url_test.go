package fieldaction

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendURLTemplate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://shop.example.com/p/4711", "https://shop.example.com/p/:id"},
		{"https://Shop.Example.com:8443/account/jane/orders?x=1#top", "https://shop.example.com/account/:id/orders"},
		{"https://jane:secret@shop.example.com/", "https://shop.example.com/"},
		{"https://shop.example.com", "https://shop.example.com/"},
		{"https://shop.example.com/users/bob.smith/settings", "https://shop.example.com/users/:id/settings"},
		{"https://shop.example.com/help/returns", "https://shop.example.com/help/returns"},
		{"https://shop.example.com/c/shoes/running", "https://shop.example.com/c/shoes/running"},
		{"https://shop.example.com/o/3f2a9c1e-77aa-4bde-9f21-0c1d2e3f4a5b", "https://shop.example.com/o/:id"},
		{"https://shop.example.com/share/jane.doe@example.com", "https://shop.example.com/share/:id"},
		{"https://shop.example.com/s/aVeryLongOpaqueTokenWithoutDigits", "https://shop.example.com/s/:id"},
		{"https://shop.example.com/a%20b/x", "https://shop.example.com/:id/x"},
		{"/account/jane/orders", "/account/:id/orders"},
		{"app://home/feed", "app://home/feed"},
		{"https://shop.example.com//double//slash/", "https://shop.example.com//double//slash/"},
	} {
		got, ok := AppendURLTemplate(nil, c.in)
		if !ok || string(got) != c.want {
			t.Errorf("%q: %q (ok %v), want %q", c.in, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "not a url", "https://shop.example.com/\x00", "\xff\xfe", "https://[2001:db8::1]/x", "https:///nohost"} {
		if got, ok := AppendURLTemplate([]byte("keep"), bad); ok || string(got) != "keep" {
			t.Errorf("%q: %q ok=%v, want rejected and nothing appended", bad, got, ok)
		}
	}
}

// FuzzAppendURLTemplate: never panics; a template holds no digit, no
// query, fragment, user info or port, and templating it again changes
// nothing.
func FuzzAppendURLTemplate(f *testing.F) {
	for _, s := range []string{"https://a.b/c/1?d#e", "/account/x/y", "https://u:p@h:1/", "x://", "a/b/c", "https://h/%41/123456789012345678901234"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := AppendURLTemplate(nil, s)
		if !ok {
			if len(got) != 0 {
				t.Fatalf("rejected %q but appended %q", s, got)
			}
			return
		}
		out := string(got)
		path := out
		if i := strings.Index(out, "://"); i >= 0 {
			path = out[i+3:]
			if j := strings.IndexByte(path, '/'); j >= 0 {
				path = path[j:]
			}
			if host := out[i+3 : len(out)-len(path)]; strings.ContainsAny(host, "@:") {
				t.Fatalf("%q -> %q keeps user info or a port", s, out)
			}
		}
		if !utf8.ValidString(out) || strings.ContainsAny(out, "?#") || strings.ContainsAny(path, "0123456789@%") {
			t.Fatalf("%q -> %q keeps something identifying", s, out)
		}
		if len(out) > len(s)+len("://")+len(IDSegment)*strings.Count(s, "/")+2 {
			t.Fatalf("%q -> %q grew too much", s, out)
		}
		again, ok := AppendURLTemplate(nil, out)
		if !ok || string(again) != out {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", s, out, again, ok)
		}
	})
}
