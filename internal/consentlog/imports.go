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
	"github.com/privacy-pipeline/pipeline/internal/purpose"
)

// Input is a change as an API or import gives it, before validation.
type Input struct {
	SubjectID     string `json:"subject_id"`
	Purpose       string `json:"purpose"`
	State         string `json:"state"`
	Jurisdiction  string `json:"jurisdiction"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp"`
}

// Change validates the input and returns the change with a new receipt id;
// an empty timestamp means now, an empty jurisdiction unknown.
func (in Input) Change(now time.Time) (Change, error) {
	var c Change
	var err error
	c.SubjectID = in.SubjectID
	if err := ValidateSubject(c.SubjectID); err != nil {
		return c, err
	}
	if c.Purpose, err = purpose.Parse(in.Purpose); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.State, err = consent.ParseState(in.State); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if in.Jurisdiction == "" {
		in.Jurisdiction = "unknown"
	}
	if c.Jurisdiction, err = consent.ParseJurisdiction(in.Jurisdiction); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Source, err = ParseSource(in.Source); err != nil {
		return c, err
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
// subject_id,purpose,state,jurisdiction,source,policy_version,timestamp.
// Line numbers count the header as line 1.
func ParseCSV(r io.Reader, now time.Time) ([]Change, []LineError, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CSV header missing", ErrInvalid)
	}
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff")
	}
	if strings.Join(head, ",") != strings.Join(csvHeader, ",") {
		return nil, nil, fmt.Errorf("%w: CSV header must be %s", ErrInvalid, strings.Join(csvHeader, ","))
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
		if len(rec) != len(csvHeader) {
			bad = append(bad, LineError{line, fmt.Sprintf("want %d fields, got %d", len(csvHeader), len(rec))})
			continue
		}
		c, err := Input{rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6]}.Change(now)
		if err != nil {
			bad = append(bad, LineError{line, err.Error()})
			continue
		}
		out = append(out, c)
	}
	return out, bad, nil
}

// ParseJSONLines parses an import of one JSON object per line.
func ParseJSONLines(r io.Reader, now time.Time) ([]Change, []LineError, error) {
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
		c, err := in.Change(now)
		if err != nil {
			bad = append(bad, LineError{line, err.Error()})
			continue
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return out, bad, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, bad, nil
}
