// Package purpose names the processing purposes that consent is given for.
// It imports only the standard library; every other package refers to
// purposes through it.
package purpose

import "fmt"

// Purpose is one processing purpose. Consent is per subject and per purpose.
type Purpose uint8

// The purposes of SPEC section 2.
const (
	Analytics Purpose = iota
	Personalization
	AITraining
	Marketing
	ThirdPartySharing
	// Count is the number of purposes.
	Count = 5
)

var names = [Count]string{"analytics", "personalization", "ai_training", "marketing", "third_party_sharing"}

// All lists every purpose in canonical order.
var All = [Count]Purpose{Analytics, Personalization, AITraining, Marketing, ThirdPartySharing}

// String returns the purpose's wire name, e.g. "ai_training".
func (p Purpose) String() string {
	if int(p) < Count {
		return names[p]
	}
	return fmt.Sprintf("purpose(%d)", uint8(p))
}

// Valid reports whether p is a known purpose.
func (p Purpose) Valid() bool { return int(p) < Count }

// Parse returns the purpose with the given wire name.
func Parse(s string) (Purpose, error) {
	for i, n := range names {
		if n == s {
			return Purpose(i), nil
		}
	}
	return 0, fmt.Errorf("unknown purpose %q (want one of %v)", truncate(s, 40), names)
}

// Names returns the wire names of all purposes.
func Names() []string { return append([]string(nil), names[:]...) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
