package redact

// maxIPv6Len is the length of the longest textual IPv6 address without a
// zone, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".
const maxIPv6Len = 45

// matchIPv4 matches a dotted-quad address starting at s[i].
func matchIPv4(s string, i, _ int) (int, int, Kind) {
	if !ipv4Start(s, i) {
		return 0, 0, 0
	}
	j := i
	for oct := 0; oct < 4; oct++ {
		if oct > 0 {
			if j >= len(s) || s[j] != '.' {
				return 0, 0, 0
			}
			j++
		}
		st, v := j, 0
		for j < len(s) && j-st < 3 && isDigit(s[j]) {
			v = v*10 + int(s[j]-'0')
			j++
		}
		if j == st || v > 255 || (j < len(s) && isDigit(s[j])) {
			return 0, 0, 0
		}
	}
	if !ipv4End(s, j) {
		return 0, 0, 0
	}
	return i, j, IPv4
}

// matchIPv6 matches an IPv6 address starting at s[i], a hex digit or ':'.
func matchIPv6(s string, i, _ int) (int, int, Kind) {
	// Start of a word, and not inside something colon- or dot-separated
	// ("x:y", "1.2"), but "ip:fe80::1" is fine.
	if i > 0 {
		switch p := s[i-1]; p {
		case ':':
			if s[i] == ':' || i < 2 || isHex(s[i-2]) || s[i-2] == ':' || s[i-2] == '.' || s[i-2] == ']' {
				return 0, 0, 0
			}
		case '.':
			if i >= 2 && class[s[i-2]]&cLeftWord != 0 {
				return 0, 0, 0
			}
		}
	}
	// Quick rejection of ordinary words: at most four hex digits, then ':'
	// (a leading "::" for the compressed form).
	j := i
	for j < len(s) && j-i < 4 && isHex(s[j]) {
		j++
	}
	if j >= len(s) || s[j] != ':' || (j == i && (j+1 >= len(s) || s[j+1] != ':')) {
		return 0, 0, 0
	}
	// The candidate is the maximal run of hex digits, ':' and '.'.
	for j < len(s) && class[s[j]]&cIPv6 != 0 {
		j++
		if j-i > maxIPv6Len+2 {
			return 0, 0, 0
		}
	}
	if j < len(s) && (class[s[j]]&cRightWord != 0 || s[j] == '@') {
		return 0, 0, 0
	}
	// Sentence punctuation: "… fe80::1." or "fe80::1: down".
	end := j
	for end > i && s[end-1] == '.' {
		end--
	}
	if end-i >= 2 && s[end-1] == ':' && s[end-2] != ':' {
		end--
	}
	if end-i > maxIPv6Len || !hasDigit(s[i:end]) || !validIPv6(s[i:end]) {
		return 0, 0, 0
	}
	return i, end, IPv6
}

func hasDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			return true
		}
	}
	return false
}

// validIPv6 reports whether s is a textual IPv6 address without a zone,
// with the same rules as net/netip.ParseAddr: groups of 1–4 hex digits,
// at most one "::" standing for at least one zero group, an optional
// dotted-quad IPv4 address (without leading zeros) as the last 32 bits.
func validIPv6(s string) bool {
	groups := 0
	ellipsis := false
	i := 0
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = true
		i = 2
	}
	for i < len(s) {
		st := i
		for i < len(s) && i-st < 4 && isHex(s[i]) {
			i++
		}
		if i == st {
			return false
		}
		if i < len(s) && s[i] == '.' {
			// Embedded IPv4: must be last and fit in two groups.
			if groups > 6 || !validIPv4Strict(s[st:]) {
				return false
			}
			groups += 2
			break
		}
		groups++
		if i == len(s) {
			break
		}
		if s[i] != ':' || groups == 8 {
			return false // a fifth hex digit, another byte, or a ninth group
		}
		i++
		if i < len(s) && s[i] == ':' {
			if ellipsis {
				return false
			}
			ellipsis = true
			i++
		} else if i == len(s) {
			return false // trailing single ':'
		}
	}
	if ellipsis {
		return groups < 8
	}
	return groups == 8
}

// validIPv4Strict reports whether s is exactly a dotted-quad address with
// octets 0–255 and no leading zeros (the form accepted inside IPv6).
func validIPv4Strict(s string) bool {
	i := 0
	for oct := 0; oct < 4; oct++ {
		if oct > 0 {
			if i >= len(s) || s[i] != '.' {
				return false
			}
			i++
		}
		st, v := i, 0
		for i < len(s) && isDigit(s[i]) && i-st < 3 {
			v = v*10 + int(s[i]-'0')
			i++
		}
		if i == st || v > 255 || (i-st > 1 && s[st] == '0') {
			return false
		}
	}
	return i == len(s)
}
