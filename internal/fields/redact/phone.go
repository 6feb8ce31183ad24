package redact

const (
	minPhoneDigits = 7
	maxPhoneDigits = 15 // E.164
	maxPhoneGroups = 10
)

// phoneGroup is one run of digits of a phone candidate.
type phoneGroup struct {
	start, end int32 // the digits are s[start:end]
	total      uint8 // digits in this and all earlier groups
	sep        byte  // separator before the group: ' ', '-', '.', '/', 'p' (parentheses), 0 (first group)
	balanced   bool  // no parenthesis is open after the group
}

// matchPhone matches a phone number starting at s[i], a digit, '+' or '('.
//
// It reads the longest run of digit groups joined by separators (a single
// ' ', '-', '.' or '/', optionally combined with parentheses) holding at most
// maxPhoneDigits digits, then accepts the longest prefix, ending at a group
// boundary, that has enough digits, balanced parentheses, a word boundary
// after it and a plausible shape (see phoneShapeOK).
func matchPhone(s string, i, _ int) (int, int, Kind) {
	j := i
	plus, open := false, false
	switch s[i] {
	case '+':
		plus = true
		j++
	case '(':
		open = true
		j++
	default:
		if !numStart(s, i) {
			return 0, 0, 0
		}
	}
	startParen := open
	if j >= len(s) || !isDigit(s[j]) {
		return 0, 0, 0
	}
	var g [maxPhoneGroups]phoneGroup
	ng, total := 0, 0
	sep := byte(0)
	for {
		st := j
		for j < len(s) && j-st <= maxPhoneDigits && isDigit(s[j]) {
			j++
		}
		d := j - st
		if total+d > maxPhoneDigits {
			break
		}
		// A one-digit group is allowed first ("1-800-…", "+1 …") and as a
		// parenthesised trunk prefix ("+44 (0)20 …").
		trunk := open && s[st-1] == '(' && j < len(s) && s[j] == ')'
		if ng > 0 && d < 2 && !trunk {
			break
		}
		total += d
		g[ng] = phoneGroup{start: int32(st), end: int32(j), total: uint8(total), sep: sep, balanced: !open}
		ng++
		if ng == maxPhoneGroups {
			break
		}
		k := j
		sep = 0
		if k < len(s) && s[k] == ')' {
			if !open {
				break
			}
			open = false
			k++
			sep = 'p'
		}
		if k < len(s) && (s[k] == ' ' || s[k] == '-' || s[k] == '.' || s[k] == '/') {
			if sep == 0 {
				sep = s[k]
			}
			k++
		}
		if k < len(s) && s[k] == '(' {
			if open {
				break
			}
			open = true
			k++
			sep = 'p'
		}
		if k == j || k >= len(s) || !isDigit(s[k]) {
			break
		}
		j = k
	}
	for k := ng; k > 0; k-- {
		last := g[k-1]
		if last.total < minPhoneDigits {
			break
		}
		if !last.balanced || !numEnd(s, int(last.end)) {
			continue
		}
		if plus || phoneShapeOK(s, g[:k], startParen) {
			return i, int(last.end), Phone
		}
	}
	return 0, 0, 0
}

// phoneShapeOK decides whether a national-form candidate (no '+') is a
// phone number rather than an ID, an amount or a date.
func phoneShapeOK(s string, g []phoneGroup, startParen bool) bool {
	n := g[len(g)-1].total
	if len(g) == 1 {
		// A bare run of digits: only long ones, or trunk-prefixed ones.
		return n >= 10 || (n >= 9 && s[g[0].start] == '0')
	}
	if startParen {
		return true
	}
	sep := g[1].sep
	for _, x := range g[1:] {
		if x.sep == 'p' {
			return true
		}
		if x.sep != sep {
			sep = 0 // mixed separators
		}
	}
	size := func(x phoneGroup) int { return int(x.end - x.start) }
	val := func(x phoneGroup) int {
		v := 0
		for _, c := range []byte(s[x.start:x.end]) {
			v = v*10 + int(c-'0')
		}
		return v
	}
	isYear := func(x phoneGroup) bool { return size(x) == 4 && val(x) >= 1900 && val(x) <= 2099 }

	// Amounts with thousands separators: "1 000 000", "12.345.678",
	// "250.000.000" (but "612 345 678" may be a phone).
	if (sep == ' ' || sep == '.') && size(g[0]) <= 3 && s[g[0].start] != '0' {
		thousands, zeros := true, false
		for _, x := range g[1:] {
			if size(x) != 3 {
				thousands = false
				break
			}
			if val(x) == 0 {
				zeros = true
			}
		}
		if thousands && (size(g[0]) <= 2 || zeros) {
			return false
		}
	}
	// Decimal fractions: "3.14159", "106.7009" (dotted phone numbers have
	// at least three groups, those after the first of 2–4 digits).
	if sep == '.' {
		if len(g) == 2 {
			return false
		}
		for _, x := range g[1:] {
			if size(x) > 4 {
				return false
			}
		}
	}
	// Dates: 2024-05-01, 01.05.2024, 05/01/2024, 2024 05 01.
	if len(g) == 3 && sep != 0 {
		a, b := val(g[1]), val(g[2])
		if isYear(g[0]) && size(g[1]) == 2 && size(g[2]) == 2 && a >= 1 && a <= 12 && b >= 1 && b <= 31 {
			return false
		}
		a = val(g[0])
		b = val(g[1])
		if isYear(g[2]) && size(g[0]) == 2 && size(g[1]) == 2 && a >= 1 && a <= 31 && b >= 1 && b <= 31 && (a <= 12 || b <= 12) {
			return false
		}
	}
	// Year ranges: 2023-2024.
	if len(g) == 2 && isYear(g[0]) && isYear(g[1]) {
		return false
	}
	return true
}
