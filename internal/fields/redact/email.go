package redact

const (
	maxLocalLen  = 64  // RFC 5321 limit on the local part
	maxDomainLen = 253 // RFC 1035 limit on a domain name
	maxLabelLen  = 63  // RFC 1035 limit on a label
)

// matchEmail matches an e-mail address around the '@' at s[at]. It looks
// back (not before lo) for the local part and forward for the domain.
func matchEmail(s string, at, lo int) (int, int, Kind) {
	// Local part: the run of local-part bytes before '@'.
	// It stops at ".." (dots may not be consecutive in a local part).
	st := at
	for st > lo && class[s[st-1]]&cLocal != 0 && !(s[st-1] == '.' && st < at && s[st] == '.') {
		st--
		if at-st > maxLocalLen {
			return 0, 0, 0
		}
	}
	for st < at && s[st] == '.' {
		st++
	}
	if st == at {
		return 0, 0, 0
	}

	// Domain: labels separated by single dots; the match ends after the
	// last label that is alphabetic, at least two letters long and not
	// the first label.
	end := -1
	labels := 0
	j := at + 1
	for {
		ls := j
		nonAlpha := -1 // first byte of the label that is not a letter
		for j < len(s) && class[s[j]]&cDomain != 0 {
			if nonAlpha < 0 && class[s[j]]&cAlpha == 0 {
				nonAlpha = j
			}
			j++
			if j-ls > maxLabelLen {
				return matchedEmail(st, end)
			}
		}
		// A label glued to a '[' is not a label: the '[' may start a token
		// that replaced letters or digits.
		if j < len(s) && s[j] == '[' {
			break
		}
		// A label cannot end with '-': trailing hyphens end the domain.
		le := j
		for le > ls && s[le-1] == '-' {
			le--
		}
		if le == ls || s[ls] == '-' || le-at-1 > maxDomainLen {
			break
		}
		labels++
		if labels >= 2 && le-ls >= 2 && (nonAlpha < 0 || nonAlpha >= le) {
			end = le
		}
		if le == j && j+1 < len(s) && s[j] == '.' && class[s[j+1]]&cDomain != 0 {
			j++
			continue
		}
		break
	}
	return matchedEmail(st, end)
}

func matchedEmail(st, end int) (int, int, Kind) {
	if end < 0 {
		return 0, 0, 0
	}
	return st, end, Email
}
