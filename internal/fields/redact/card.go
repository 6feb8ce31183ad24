package redact

const (
	minCardDigits = 13
	maxCardDigits = 19
	maxCardGroups = 6 // 19 digits in groups of at least 3 digits
	minCardGroup  = 3 // digits per group when grouped
	maxCardGroup  = 8
)

// matchCard matches a payment card number starting at s[i]: 13–19 digits,
// bare or in groups of 3–8 digits separated by a single ' ' or '-',
// passing the Luhn check. The longest such prefix ending at a group
// boundary wins. A card-shaped grouping that fails the Luhn check is
// claimed with kindSkip so that no phone number is cut out of it.
func matchCard(s string, i, _ int) (int, int, Kind) {
	// Only the card depends on the context around the number, not the
	// skip: a token next to the number must not change that decision when
	// redacting again (the scanner only tries word starts anyway).
	canStart := numStart(s, i)
	var (
		dig   [maxCardDigits]byte
		ends  [maxCardGroups]int32
		sizes [maxCardGroups]uint8
		tot   [maxCardGroups]uint8
	)
	nd, ng := 0, 0
	j := i
	for {
		base := nd
		for j < len(s) && nd < maxCardDigits && isDigit(s[j]) {
			dig[nd] = s[j] - '0'
			nd++
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			nd = base // group too long or too many digits: not part of it
			break
		}
		d := nd - base
		if ng > 0 && (d < minCardGroup || d > maxCardGroup) {
			nd = base
			break
		}
		ends[ng], sizes[ng], tot[ng] = int32(j), uint8(d), uint8(nd)
		ng++
		if ng == maxCardGroups || d < minCardGroup || d > maxCardGroup {
			break // a bare number, or a first group that cannot start a grouping
		}
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
			j++
			continue
		}
		break
	}
	skip := -1
	for k := ng; k > 0; k-- {
		n, end := int(tot[k-1]), int(ends[k-1])
		if n < minCardDigits {
			break
		}
		if skip < 0 && k >= 2 && cardShaped(sizes[:k]) {
			skip = end
		}
		if !canStart || !cardEnd(s, end) {
			continue
		}
		if dig[0] != 0 && luhn(dig[:n]) {
			return i, end, Card
		}
	}
	if skip >= 0 {
		return i, skip, kindSkip
	}
	return 0, 0, 0
}

// cardShaped reports whether group sizes look like a printed card number:
// 4-4-4-4 with an optional shorter last group (4-4-4-1 … 4-4-4-4-3), or the
// American Express / Diners Club layouts 4-6-5 and 4-6-4.
func cardShaped(sizes []uint8) bool {
	if len(sizes) == 3 && sizes[0] == 4 && sizes[1] == 6 && (sizes[2] == 4 || sizes[2] == 5) {
		return true
	}
	for _, g := range sizes[:len(sizes)-1] {
		if g != 4 {
			return false
		}
	}
	return sizes[len(sizes)-1] <= 4
}

// luhn reports whether the digits (values 0–9) pass the Luhn checksum.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}
