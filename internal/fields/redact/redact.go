package redact

import "strconv"

// Kind identifies a detector, and so the kind of personal data it found.
type Kind uint8

// The detectors, in no particular order of priority (see the package
// documentation for the order in which they are tried).
const (
	// Email is an e-mail address; it is replaced by "[EMAIL]".
	Email Kind = iota + 1
	// Phone is a telephone number; it is replaced by "[PHONE]".
	Phone
	// Card is a payment card number passing the Luhn check; it is replaced
	// by "[CARD]".
	Card
	// IPv4 is a dotted-quad IPv4 address; it is replaced by "[IP]".
	IPv4
	// IPv6 is an IPv6 address; it is replaced by "[IP]".
	IPv6

	// numKinds is one more than the largest Kind. Counts is indexed by Kind
	// directly, so its slot 0 is always zero.
	numKinds
)

// kindSkip is returned by a matcher to claim a span that is not personal
// data but must not be searched for other matches either (a card-shaped
// number failing the Luhn check). It is never reported to callers.
const kindSkip Kind = 255

var kindNames = [numKinds]string{"", "email", "phone", "card", "ipv4", "ipv6"}

var kindTokens = [numKinds]string{"", "[EMAIL]", "[PHONE]", "[CARD]", "[IP]", "[IP]"}

// Kinds returns all detector kinds in ascending order.
func Kinds() []Kind {
	ks := make([]Kind, 0, numKinds-1)
	for k := Kind(1); k < numKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// String returns the lower-case name of the kind ("email", "phone",
// "card", "ipv4", "ipv6"), or "Kind(N)" for an unknown value.
func (k Kind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Token returns the replacement text for the kind ("[EMAIL]", "[PHONE]",
// "[CARD]", "[IP]"), or "" for an unknown value.
func (k Kind) Token() string {
	if k > 0 && k < numKinds {
		return kindTokens[k]
	}
	return ""
}

// Counts holds how many spans of each kind were redacted by one call. It is
// indexed by Kind, for example c[redact.Email]; index 0 is unused.
type Counts [numKinds]uint32

// Total returns the number of redacted spans of all kinds.
func (c Counts) Total() uint32 {
	var t uint32
	for _, n := range c[1:] {
		t += n
	}
	return t
}

// String formats the non-zero counts as "email=1 phone=2", or "none".
func (c Counts) String() string {
	var b []byte
	for k := Kind(1); k < numKinds; k++ {
		if c[k] == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, k.String()...)
		b = append(b, '=')
		b = strconv.AppendUint(b, uint64(c[k]), 10)
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

// AppendRedacted appends the redacted form of src to dst and returns the
// extended buffer together with the number of spans redacted per kind.
//
// The output is src with every detected span replaced by its kind's token;
// all other bytes, including invalid UTF-8, are copied unchanged. It never
// allocates when dst has enough spare capacity (len(src) plus a few bytes
// per match is always enough, as tokens are at most 7 bytes), and it is
// safe for concurrent use.
func AppendRedacted(dst []byte, src string) ([]byte, Counts) {
	st, en, k := next(src, 0, 0)
	return appendFrom(dst, src, st, en, k)
}

// appendFrom finishes AppendRedacted given the first match (k == 0 if
// there is none).
func appendFrom(dst []byte, src string, st, en int, k Kind) ([]byte, Counts) {
	var c Counts
	lit := 0
	for k != 0 {
		dst = append(dst, src[lit:st]...)
		dst = append(dst, kindTokens[k]...)
		c[k]++
		lit = en
		st, en, k = next(src, en, en)
	}
	return append(dst, src[lit:]...), c
}

// String returns the redacted form of src. It returns src itself, without
// allocating, when there is nothing to redact.
func String(src string) string {
	st, en, k := next(src, 0, 0)
	if k == 0 {
		return src
	}
	b, _ := appendFrom(make([]byte, 0, len(src)+16), src, st, en, k)
	return string(b)
}

// Contains reports whether src holds any detectable personal data, that is
// whether AppendRedacted would change it. It stops at the first match.
func Contains(src string) bool {
	_, _, k := next(src, 0, 0)
	return k != 0
}

// matcher tries to match a span containing position i of s, where s[i] is
// one of its trigger bytes. It returns the span s[start:end] and its kind,
// or k == 0 if there is no match. start must be in [lo, i] and end must be
// greater than i; a matcher may look at bytes before lo but must not
// include them. Matchers must look at a bounded window only.
type matcher func(s string, i, lo int) (start, end int, k Kind)

// detector is one entry of the detector table.
type detector struct {
	// trigger reports whether the matcher is tried at a byte.
	trigger func(c byte) bool
	// anywhere: try the matcher even when the previous byte is a word byte
	// (letter, digit, '_' or the ']' ending a token). Otherwise it is tried
	// only at the start of a word.
	anywhere bool
	match    matcher
}

// detectors is the detector table, in priority order: at a given position
// the first detector that matches wins.
var detectors = [...]detector{
	{trigger: func(c byte) bool { return c == '@' }, anywhere: true, match: matchEmail},
	{trigger: func(c byte) bool { return isHex(c) || c == ':' }, match: matchIPv6},
	{trigger: isDigit, match: matchIPv4},
	{trigger: isDigit, match: matchCard},
	{trigger: func(c byte) bool { return isDigit(c) || c == '+' || c == '(' }, match: matchPhone},
}

// The trigger bitmasks are uint8.
var _ [8 - len(detectors)]struct{}

// triggers[c] has bit d set if detectors[d] is triggered by byte c;
// anywhereMask has bit d set if detectors[d].anywhere. inWord[c] is true
// for word bytes that trigger no detector inside a word: the scanner skips
// runs of them after the first byte of a word.
var triggers, anywhereMask, inWord = buildTriggers()

func buildTriggers() (t [256]uint8, any uint8, in [256]bool) {
	for d, det := range detectors {
		for c := 0; c < 256; c++ {
			if det.trigger(byte(c)) {
				t[c] |= 1 << d
			}
		}
		if det.anywhere {
			any |= 1 << d
		}
	}
	for c := range in {
		in[c] = class[c]&cLeftWord != 0 && t[c]&any == 0
	}
	return t, any, in
}

// next returns the first match in s at or after position i; lo is the
// first byte that may be part of a match (the end of the previous one).
// It returns k == 0 if there is none.
func next(s string, i, lo int) (start, end int, k Kind) {
scan:
	for i < len(s) {
		c := s[i]
		if m := triggers[c]; m != 0 {
			if i > 0 && class[s[i-1]]&cLeftWord != 0 {
				m &= anywhereMask
			}
			for d := range detectors {
				if m&(1<<d) == 0 {
					continue
				}
				st, en, kk := detectors[d].match(s, i, lo)
				switch kk {
				case 0:
					continue
				case kindSkip:
					i, lo = en, en
					continue scan
				}
				return st, en, kk
			}
		}
		i++
		if class[c]&cLeftWord != 0 {
			// Inside a word only "anywhere" detectors can match.
			for i < len(s) && inWord[s[i]] {
				i++
			}
		}
	}
	return 0, 0, 0
}
