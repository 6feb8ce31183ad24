package fieldaction

import (
	"strings"
	"unicode/utf8"
)

// IDSegment replaces a path segment of a URL template that could identify
// a person or a record.
const IDSegment = ":id"

// scopingSegments are path segments after which the next segment names a
// person or an account, even without digits ("/account/jane/orders").
var scopingSegments = []string{
	"account", "accounts", "user", "users", "u", "profile", "profiles", "customer", "customers",
	"member", "members", "people", "person", "id", "ids", "order", "orders", "invoice", "invoices",
	"session", "sessions", "token", "tokens", "email", "emails", "phone", "@",
}

// AppendURLTemplate appends the template of a URL: lower-cased scheme and
// host (no user info, no port) and the path with every segment that could
// identify someone or something replaced by ":id" - a segment with a
// digit, with '@', '%', '=', '+', '~' or ';', one of 24 bytes or more, and
// the segment after an account-like one ("/account/jane/orders" ->
// "/account/:id/orders"); the query and the fragment are dropped. A URL
// without a scheme is templated as a path. ok is false (nothing appended)
// for input that is not a URL: invalid UTF-8, control characters or
// spaces.
func AppendURLTemplate(dst []byte, s string) (_ []byte, ok bool) {
	if s == "" || !utf8.ValidString(s) {
		return dst, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return dst, false
		}
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	start := len(dst)
	path := s
	if i := strings.Index(s, "://"); i == 0 || (i > 0 && !validScheme(s[:i])) {
		return dst, false // "://" without a scheme: not a URL
	} else if i > 0 {
		dst = appendLower(dst, s[:i])
		dst = append(dst, "://"...)
		rest := s[i+3:]
		host := rest
		path = ""
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			host, path = rest[:j], rest[j:]
		}
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			host = host[at+1:] // user info never reaches a template
		}
		if strings.HasPrefix(host, "[") { // IPv6 literal: an address, not a site
			return dst[:start], false
		}
		if c := strings.IndexByte(host, ':'); c >= 0 {
			host = host[:c]
		}
		if host == "" {
			return dst[:start], false
		}
		dst = appendLower(dst, host)
	}
	if path == "" {
		return append(dst, '/'), true
	}
	scoped := false
	for len(path) > 0 {
		if path[0] != '/' {
			// A relative path's first segment.
			dst = append(dst, '/')
		} else {
			path = path[1:]
			dst = append(dst, '/')
		}
		seg := path
		if j := strings.IndexByte(path, '/'); j >= 0 {
			seg, path = path[:j], path[j:]
		} else {
			path = ""
		}
		switch {
		case seg == "":
		case scoped || idLike(seg):
			dst = append(dst, IDSegment...)
		default:
			dst = append(dst, seg...)
		}
		scoped = seg != "" && isScoping(seg)
	}
	return dst, true
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= 'a' && c <= 'z') && !(i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.')) {
			return false
		}
	}
	return len(s) <= 16
}

func idLike(seg string) bool {
	if len(seg) >= 24 {
		return true
	}
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; {
		case c >= '0' && c <= '9', c == '@', c == '%', c == '=', c == '+', c == '~', c == ';':
			return true
		}
	}
	return false
}

func isScoping(seg string) bool {
	for _, s := range scopingSegments {
		if strings.EqualFold(seg, s) {
			return true
		}
	}
	return false
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
