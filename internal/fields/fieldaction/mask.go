package fieldaction

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaskChar is the byte that replaces masked characters.
const MaskChar = '*'

// Number of trailing digits kept by AppendMaskPhone and AppendMaskCard.
const (
	PhoneKeepDigits = 2
	CardKeepDigits  = 4
)

// AppendMaskEmail appends a masked form of the e-mail address s to dst:
// the first character of the local part is kept, every further character
// of the local part becomes '*', and the domain (from the last '@' on) is
// kept:
//
//	"jane.doe@example.com" -> "j*******@example.com"
//
// Without an '@', all characters but the first are masked ("jane" ->
// "j***"). The number of '*' equals the number of masked characters
// (runes). Invalid UTF-8 bytes are masked wherever they occur, including
// the first position and the domain. The output is valid UTF-8 and at most
// len(s) bytes.
func AppendMaskEmail(dst []byte, s string) []byte {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return appendMaskKeepFirst(dst, s)
	}
	dst = appendMaskKeepFirst(dst, s[:at])
	return appendSanitized(dst, s[at:])
}

// AppendMaskPhone appends a masked form of the phone number s to dst: a '+'
// that precedes the first digit is kept, the last 2 digits are kept and
// every other digit becomes '*'. Everything else (spaces, '-', '.', '(',
// ')', letters, ...) is dropped:
//
//	"+84 912 345 678" -> "+*********78"
//	"(030) 1234-5678" -> "*********78"
//
// Digits are Unicode decimal digits (category Nd); kept digits are copied
// verbatim. A '*' in the input counts as an already-masked digit, which
// makes the function idempotent. Numbers with at most 2 digits are kept
// whole. The output is at most len(s) bytes and contains at most 2 digits.
func AppendMaskPhone(dst []byte, s string) []byte {
	return appendMaskDigits(dst, s, PhoneKeepDigits, true)
}

// AppendMaskCard appends a masked form of the payment card number s to dst:
// the last 4 digits are kept, every other digit becomes '*', and separators
// (and any other non-digit) are dropped:
//
//	"4111 1111 1111 1234"  -> "************1234"
//	"**** **** **** 1234"  -> "************1234"
//
// As in AppendMaskPhone, '*' in the input counts as a masked digit, so
// already-masked numbers are normalised and the function is idempotent.
// The output is at most len(s) bytes and contains at most 4 digits.
func AppendMaskCard(dst []byte, s string) []byte {
	return appendMaskDigits(dst, s, CardKeepDigits, false)
}

// AppendMaskKeepLast appends s to dst with all characters (runes) but the
// last n replaced by '*'. n <= 0 masks everything; n >= the number of runes
// keeps everything. Each invalid UTF-8 byte counts as one character and is
// always masked, even among the last n. The output has as many characters
// as s, is valid UTF-8 and is at most len(s) bytes.
func AppendMaskKeepLast(dst []byte, s string, n int) []byte {
	n = max(n, 0)                             // also avoids overflow for math.MinInt
	keepFrom := utf8.RuneCountInString(s) - n // index of the first kept rune
	for i := 0; s != ""; i++ {
		r, size := utf8.DecodeRuneInString(s)
		if i < keepFrom || (r == utf8.RuneError && size == 1) {
			dst = append(dst, MaskChar)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}

// appendMaskKeepFirst keeps the first rune of s (unless it is invalid) and
// masks the rest, one '*' per rune.
func appendMaskKeepFirst(dst []byte, s string) []byte {
	if s == "" {
		return dst
	}
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size == 1 {
		dst = append(dst, MaskChar)
	} else {
		dst = append(dst, s[:size]...)
	}
	// One '*' per remaining rune; invalid bytes count as one rune each.
	return appendStars(dst, utf8.RuneCountInString(s[size:]))
}

const stars = "****************************************************************"

// appendStars appends n '*' bytes.
func appendStars(dst []byte, n int) []byte {
	for n > len(stars) {
		dst = append(dst, stars...)
		n -= len(stars)
	}
	return append(dst, stars[:n]...)
}

// appendSanitized copies s, replacing each invalid UTF-8 byte by '*'.
func appendSanitized(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(dst, s...)
	}
	for s != "" {
		r, size := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, MaskChar)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}

// appendMaskDigits keeps the last keep digits of s, masks the other digits
// and drops everything else, optionally keeping a '+' before the first digit.
// '*' counts as an already-masked digit.
func appendMaskDigits(dst []byte, s string, keep int, allowPlus bool) []byte {
	digits := 0
	plus := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf { // ASCII fast path
			switch {
			case '0' <= c && c <= '9' || c == MaskChar:
				digits++
			case c == '+' && digits == 0:
				plus = allowPlus
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsDigit(r) {
			digits++
		}
		i += size
	}
	if plus {
		dst = append(dst, '+')
	}
	keepFrom := digits - keep
	n := 0 // digits seen so far
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if '0' <= c && c <= '9' || c == MaskChar {
				if n < keepFrom {
					c = MaskChar
				}
				dst = append(dst, c)
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsDigit(r) {
			if n < keepFrom {
				dst = append(dst, MaskChar)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			n++
		}
		i += size
	}
	return dst
}
