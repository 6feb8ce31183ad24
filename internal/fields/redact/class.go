package redact

// Byte classes used by the matchers.
const (
	cDigit     = 1 << iota // 0-9
	cAlpha                 // A-Z a-z
	cHex                   // 0-9 A-F a-f
	cLocal                 // e-mail local part: alnum . _ % + -
	cDomain                // e-mail domain label: alnum -
	cLeftWord              // alnum _ ]  (a match may not start after one)
	cRightWord             // alnum _ [  (a match may not end before one)
	cIPv6                  // hex digits : .
)

// class holds the classes of every byte. Bytes >= 0x80 belong to none, so
// non-ASCII text (and invalid UTF-8) acts as a separator.
//
// ']' counts as a word byte on the left and '[' on the right so that
// replacement tokens such as "[PHONE]" behave like the digits or letters
// they replaced: redacting already redacted text changes nothing.
var class = func() (t [256]uint16) {
	for c := 0; c < 256; c++ {
		var m uint16
		switch {
		case c >= '0' && c <= '9':
			m = cDigit | cHex
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			m = cAlpha | cHex
		case c >= 'g' && c <= 'z', c >= 'G' && c <= 'Z':
			m = cAlpha
		}
		if m&(cDigit|cAlpha) != 0 {
			m |= cLocal | cDomain | cLeftWord | cRightWord
		}
		if m&cHex != 0 {
			m |= cIPv6
		}
		switch c {
		case '.':
			m |= cLocal | cIPv6
		case ':':
			m |= cIPv6
		case '_':
			m |= cLocal | cLeftWord | cRightWord
		case '%', '+':
			m |= cLocal
		case '-':
			m |= cLocal | cDomain
		case ']':
			m |= cLeftWord
		case '[':
			m |= cRightWord
		}
		t[c] = m
	}
	return t
}()

func isDigit(c byte) bool { return c-'0' < 10 }

func isHex(c byte) bool { return class[c]&cHex != 0 }

// ipv4Start reports whether an IPv4 address may start at s[i]: the
// previous byte is not a word byte, and not a '.' continuing a number
// ("5.1.2.3.4").
func ipv4Start(s string, i int) bool {
	if i == 0 {
		return true
	}
	p := s[i-1]
	return class[p]&cLeftWord == 0 && !(p == '.' && i >= 2 && digitOrToken(s[i-2]))
}

// ipv4End reports whether an IPv4 address may end before s[j]: s[j] is not
// a word byte or '@', and not a '.' followed by a digit ("1.2.3.4.5").
func ipv4End(s string, j int) bool {
	if j >= len(s) {
		return true
	}
	c := s[j]
	return class[c]&cRightWord == 0 && c != '@' && !(c == '.' && j+1 < len(s) && digitOrOpen(s[j+1]))
}

// numStart reports whether a phone or card number may start at s[i]: as
// for ipv4Start, and the previous byte is not a ':' after a digit ("12:30")
// nor a '-' after a short (1–4 digit) number ("2024-05", "978-3-16").
func numStart(s string, i int) bool {
	if !ipv4Start(s, i) {
		return false
	}
	if i < 2 {
		return true
	}
	switch s[i-1] {
	case ':':
		return !digitOrToken(s[i-2])
	case '-':
		return !shortRunBefore(s, i-1)
	}
	return true
}

// numEnd reports whether a phone number may end before s[j]: as for
// ipv4End, and s[j] is not a ':' followed by a digit nor a '-' followed by
// a short (1–4 digit) number.
func numEnd(s string, j int) bool {
	if !ipv4End(s, j) {
		return false
	}
	if j+1 >= len(s) {
		return true
	}
	switch s[j] {
	case ':':
		return !digitOrOpen(s[j+1])
	case '-':
		return !shortRunAfter(s, j+1)
	}
	return true
}

// cardEnd reports whether a card number may end before s[j]: s[j] is not a
// word byte or '@'.
func cardEnd(s string, j int) bool {
	return j >= len(s) || (class[s[j]]&cRightWord == 0 && s[j] != '@')
}

// digitOrToken reports whether c is a digit or the ']' ending a token.
func digitOrToken(c byte) bool { return isDigit(c) || c == ']' }

// digitOrOpen reports whether c is a digit or the '[' starting a token.
// Like the ']' in digitOrToken, this makes a token count as the number it
// replaced, so that redacting twice changes nothing.
func digitOrOpen(c byte) bool { return isDigit(c) || c == '[' }

// shortRunBefore reports whether s[:k] ends in a run of 1–4 digits or in
// the ']' of a token.
func shortRunBefore(s string, k int) bool {
	if k > 0 && s[k-1] == ']' {
		return true
	}
	n := 0
	for k > 0 && n < 5 && isDigit(s[k-1]) {
		k--
		n++
	}
	return n >= 1 && n <= 4
}

// shortRunAfter reports whether s[k:] starts with a run of 1–4 digits or
// with the '[' of a token.
func shortRunAfter(s string, k int) bool {
	if k < len(s) && s[k] == '[' {
		return true
	}
	n := 0
	for k < len(s) && n < 5 && isDigit(s[k]) {
		k++
		n++
	}
	return n >= 1 && n <= 4
}
