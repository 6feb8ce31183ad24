package consentlog

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// Input is a change as an API or import gives it, before validation. An
// input with neither purpose nor state is a subject-level change (the
// jurisdiction and/or the GPC value only).
type Input struct {
	SubjectID     string  `json:"subject_id"`
	Purpose       string  `json:"purpose,omitempty"`
	State         string  `json:"state,omitempty"`
	Jurisdiction  string  `json:"jurisdiction"`
	Source        string  `json:"source"`
	PolicyVersion string  `json:"policy_version"`
	Timestamp     string  `json:"timestamp"`
	GPC           GPCText `json:"gpc,omitempty"`
	// TCString or GPPString, instead of a purpose and a state, is a
	// consent string that says the choices (Changes expands it).
	TCString  string `json:"tc_string,omitempty"`
	GPPString string `json:"gpp_string,omitempty"`
}

// Expansion is what a consent string says: a state per purpose
// (consent.Unset: none), whether it carries a GPC signal, and when it was
// last updated (zero: it does not say).
type Expansion struct {
	States      [purpose.Count]consent.State
	GPC         bool
	LastUpdated time.Time
}

// Expander reads a consent string of kind "tcf" or "gpp"
// (internal/consent/consentstring's Mapping.Expand, through the API).
type Expander func(kind, s string) (Expansion, error)

// Changes is Change for an input that may carry a consent string: it
// returns one change per purpose the string maps (and a subject-level
// change with GPC on when it carries the signal), each with the string as
// its Evidence and its own receipt. An input with a string names no
// purpose or state; without an expander, a string is refused.
func (in Input) Changes(now time.Time, expand Expander) ([]Change, error) {
	kind, str := "", ""
	switch {
	case in.TCString != "" && in.GPPString != "":
		return nil, invalid("give tc_string or gpp_string, not both")
	case in.TCString != "":
		kind, str = "tcf", in.TCString
	case in.GPPString != "":
		kind, str = "gpp", in.GPPString
	default:
		c, err := in.Change(now)
		if err != nil {
			return nil, err
		}
		return []Change{c}, nil
	}
	if in.Purpose != "" || in.State != "" {
		return nil, invalid("a consent string says the purposes and states itself: give no purpose or state with it")
	}
	if expand == nil {
		return nil, invalid("consent strings are not accepted here")
	}
	if err := ValidateSubject(in.SubjectID); err != nil { // before the string is read
		return nil, err
	}
	x, err := expand(kind, str)
	if err != nil {
		return nil, fmt.Errorf("%w: %s_string: %w", ErrInvalid, kind, err)
	}
	states, gpc := x.States, x.GPC
	if in.Timestamp == "" && !x.LastUpdated.IsZero() {
		// The choices are no newer than the day the string was last
		// updated (TCF keeps days): a banner's old string does not
		// outweigh a newer choice made elsewhere.
		at := x.LastUpdated.Add(24 * time.Hour)
		if at.After(now) {
			at = now
		}
		in.Timestamp = at.UTC().Format(time.RFC3339Nano)
	}
	evidence := kind + ":" + str
	var out []Change
	for _, p := range purpose.All {
		if states[p] == consent.Unset {
			continue
		}
		pi := in
		pi.TCString, pi.GPPString, pi.Purpose, pi.State = "", "", p.String(), states[p].String()
		c, err := pi.Change(now)
		if err != nil {
			return nil, err
		}
		c.Evidence = evidence
		if err := c.Validate(now); err != nil { // with its evidence
			return nil, err
		}
		out = append(out, c)
	}
	if gpc {
		pi := in
		pi.TCString, pi.GPPString, pi.GPC = "", "", "true"
		c, err := pi.Change(now)
		if err != nil {
			return nil, err
		}
		c.Evidence = evidence
		if err := c.Validate(now); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseOption configures ParseCSV and ParseJSONLines.
type ParseOption func(*parseOptions)

type parseOptions struct{ expand Expander }

// WithConsentStrings accepts lines with a tc_string or gpp_string,
// expanded by e.
func WithConsentStrings(e Expander) ParseOption { return func(o *parseOptions) { o.expand = e } }

func parseOpts(opts []ParseOption) parseOptions {
	var o parseOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// GPCText is the gpc field of an input as given (consent.GPCText: the
// history entries of the consent store carry it too).
type GPCText = consent.GPCText

// GPCTextOf returns the text of a GPC value: "", "true" or "false".
func GPCTextOf(v consent.GPCValue) GPCText { return consent.GPCTextOf(v) }

// ParseGPC parses the text of a gpc field: "" is not given, "true" and "1"
// on, "false" and "0" off (true and false in any case). The message does
// not echo the value.
func ParseGPC(s string) (consent.GPCValue, error) {
	if v, ok := consent.GPCText(s).Value(); ok {
		return v, nil
	}
	return consent.GPCNotGiven, invalid("gpc must be true, false, 1, 0 or empty")
}

// Change validates the input and returns the change with a new receipt id;
// an empty timestamp means now, an empty jurisdiction unknown, an empty gpc
// not given. Source gpc_signal implies gpc true (false is invalid). A
// subject-level input (no purpose, no state) needs a jurisdiction other
// than unknown, or a gpc value; its policy version defaults to
// DefaultProfilePolicyVersion.
func (in Input) Change(now time.Time) (Change, error) {
	var c Change
	var err error
	c.SubjectID = in.SubjectID
	if err := ValidateSubject(c.SubjectID); err != nil {
		return c, err
	}
	if in.Purpose == "" && in.State == "" {
		c.Purpose = SubjectLevel
		if in.PolicyVersion == "" {
			in.PolicyVersion = DefaultProfilePolicyVersion
		}
	} else {
		if c.Purpose, err = purpose.Parse(in.Purpose); err != nil {
			return c, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if c.State, err = consent.ParseState(in.State); err != nil {
			return c, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if in.Jurisdiction == "" {
		in.Jurisdiction = "unknown"
	}
	if c.Jurisdiction, err = consent.ParseJurisdiction(in.Jurisdiction); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.GPC, err = ParseGPC(string(in.GPC)); err != nil {
		return c, err
	}
	if c.Source, err = ParseSource(in.Source); err != nil {
		return c, err
	}
	if c.Source == GPCSignal && c.GPC == consent.GPCNotGiven {
		c.GPC = consent.GPCOn
	}
	c.PolicyVersion = in.PolicyVersion
	c.Timestamp = now
	if in.Timestamp != "" {
		if c.Timestamp, err = time.Parse(time.RFC3339Nano, in.Timestamp); err != nil {
			return c, invalid("timestamp is not RFC 3339")
		}
	}
	c.Timestamp = c.Timestamp.UTC().Truncate(time.Millisecond)
	c.ReceiptID = NewReceiptID()
	return c, c.Validate(now)
}

// LineError is one rejected line of an import.
type LineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// MaxImportLines bounds one import.
const MaxImportLines = 1_000_000

var csvHeader = []string{"subject_id", "purpose", "state", "jurisdiction", "source", "policy_version", "timestamp"}

// ParseCSV parses an import in CSV with the header
// subject_id,purpose,state,jurisdiction,source,policy_version,timestamp
// and optionally, after it in any order, the columns gpc, tc_string and
// gpp_string (the strings with WithConsentStrings). A row with empty
// purpose and state is a subject-level change (jurisdiction and/or gpc),
// or the changes of its consent string. Line numbers count the header as
// line 1.
func ParseCSV(r io.Reader, now time.Time, opts ...ParseOption) ([]Change, []LineError, error) {
	o := parseOpts(opts)
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CSV header missing", ErrInvalid)
	}
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff")
	}
	if len(head) < len(csvHeader) || strings.Join(head[:len(csvHeader)], ",") != strings.Join(csvHeader, ",") {
		return nil, nil, fmt.Errorf("%w: CSV header must be %s, optionally followed by gpc, tc_string, gpp_string", ErrInvalid, strings.Join(csvHeader, ","))
	}
	extra := map[string]int{}
	for i, col := range head[len(csvHeader):] {
		if _, dup := extra[col]; dup || (col != "gpc" && col != "tc_string" && col != "gpp_string") {
			return nil, nil, fmt.Errorf("%w: CSV header: after %s come only gpc, tc_string and gpp_string, each once", ErrInvalid, strings.Join(csvHeader, ","))
		}
		extra[col] = len(csvHeader) + i
	}
	col := func(rec []string, name string) string {
		if i, ok := extra[name]; ok {
			return rec[i]
		}
		return ""
	}
	var out []Change
	var bad []LineError
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if line > MaxImportLines+1 {
			return out, bad, fmt.Errorf("%w: more than %d lines", ErrInvalid, MaxImportLines)
		}
		if err != nil {
			bad = append(bad, LineError{line, "not valid CSV"})
			continue
		}
		if len(rec) != len(head) {
			bad = append(bad, LineError{line, fmt.Sprintf("want %d fields, got %d", len(head), len(rec))})
			continue
		}
		in := Input{SubjectID: rec[0], Purpose: rec[1], State: rec[2], Jurisdiction: rec[3], Source: rec[4], PolicyVersion: rec[5], Timestamp: rec[6],
			GPC: GPCText(col(rec, "gpc")), TCString: col(rec, "tc_string"), GPPString: col(rec, "gpp_string")}
		cs, err := in.Changes(now, o.expand)
		if err != nil {
			bad = append(bad, LineError{line, err.Error()})
			continue
		}
		out = append(out, cs...)
	}
	return out, bad, nil
}

// ParseJSONLines parses an import of one JSON object per line, with the
// fields of Input (gpc is optional; an object without purpose and state is
// a subject-level change, or, with WithConsentStrings, the changes of its
// tc_string or gpp_string).
func ParseJSONLines(r io.Reader, now time.Time, opts ...ParseOption) ([]Change, []LineError, error) {
	o := parseOpts(opts)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []Change
	var bad []LineError
	line := 0
	for sc.Scan() {
		line++
		if line > MaxImportLines {
			return out, bad, fmt.Errorf("%w: more than %d lines", ErrInvalid, MaxImportLines)
		}
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var in Input
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			bad = append(bad, LineError{line, "not a JSON object with the consent fields"})
			continue
		}
		cs, err := in.Changes(now, o.expand)
		if err != nil {
			bad = append(bad, LineError{line, err.Error()})
			continue
		}
		out = append(out, cs...)
	}
	if err := sc.Err(); err != nil {
		return out, bad, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, bad, nil
}
