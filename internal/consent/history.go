package consent

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// HistoryEntry is one change as kept in a subject's history list and
// returned by the consent API. A subject-level change has no purpose and no
// state; GPC is present only when the change gave it. Its fields, and their
// JSON names, are those of the change as an API or import gives it
// (consentlog.Input), preceded by the change's receipt id.
type HistoryEntry struct {
	ReceiptID     string  `json:"receipt_id"`
	SubjectID     string  `json:"subject_id"`
	Purpose       string  `json:"purpose,omitempty"`
	State         string  `json:"state,omitempty"`
	Jurisdiction  string  `json:"jurisdiction"`
	Source        string  `json:"source"`
	PolicyVersion string  `json:"policy_version"`
	Timestamp     string  `json:"timestamp"`
	GPC           GPCText `json:"gpc,omitempty"`
	// ChangedBy is the principal that made the change (the consent API's
	// authenticated caller), absent for changes made before it was
	// recorded.
	ChangedBy string `json:"changed_by,omitempty"`
	// ConsentString is the TCF or GPP string the change was read from
	// ("tcf:..." or "gpp:..."), absent otherwise: the evidence of the
	// choice, erased with the subject.
	ConsentString string `json:"consent_string,omitempty"`
}

// GPCText is a gpc field as given: "" (not given), "true", "false", "1" or
// "0" (true and false in any case). In JSON it is a boolean (null means not
// given), or one of those strings; it is written as a boolean, and omitted
// when not given.
type GPCText string

// UnmarshalJSON accepts true, false, 1, 0, null, or a string.
func (g *GPCText) UnmarshalJSON(b []byte) error {
	switch s := string(bytes.TrimSpace(b)); s {
	case "true", "false", "1", "0":
		*g = GPCText(s)
		return nil
	case "null":
		*g = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("gpc must be true, false, 1, 0 or null")
	}
	*g = GPCText(s)
	return nil
}

// MarshalJSON writes a valid value as a boolean (and anything else as a
// string, which Value rejects).
func (g GPCText) MarshalJSON() ([]byte, error) {
	switch v, ok := g.Value(); {
	case !ok || v == GPCNotGiven:
		return json.Marshal(string(g))
	case v == GPCOn:
		return []byte("true"), nil
	}
	return []byte("false"), nil
}

// Value returns the GPC value of the text and whether the text is valid:
// "" is not given, "true" and "1" on, "false" and "0" off (true and false
// in any case).
func (g GPCText) Value() (GPCValue, bool) {
	switch strings.ToLower(string(g)) {
	case "":
		return GPCNotGiven, true
	case "true", "1":
		return GPCOn, true
	case "false", "0":
		return GPCOff, true
	}
	return GPCNotGiven, false
}

// GPCTextOf returns the text of a GPC value: "", "true" or "false".
func GPCTextOf(v GPCValue) GPCText {
	switch v {
	case GPCOn:
		return "true"
	case GPCOff:
		return "false"
	}
	return ""
}
