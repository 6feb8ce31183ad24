package consent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/purpose"
)

// The Redis value of one subject is a compact, versioned text record:
//
//	1|<jurisdiction>|<gpc 0|1>|<version ms>|<state>:<ms>|<state>:<ms>|...
//
// with one state per purpose in purpose.All order, state being one of
// - (unset), g (granted), d (denied), w (withdrawn). Text keeps it readable
// with redis-cli; a fixed layout keeps parsing allocation-free.

const codecVersion = "1"

var stateCodes = [numStates]byte{'-', 'g', 'd', 'w'}

// AppendEncoded appends the Redis encoding of rec to dst.
func AppendEncoded(dst []byte, rec *Record) []byte {
	dst = append(dst, codecVersion...)
	dst = append(dst, '|')
	dst = append(dst, rec.Jurisdiction.String()...)
	dst = append(dst, '|')
	if rec.GPC {
		dst = append(dst, '1')
	} else {
		dst = append(dst, '0')
	}
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, rec.Version, 10)
	for _, ps := range rec.Purposes {
		dst = append(dst, '|', stateCodes[ps.State], ':')
		dst = strconv.AppendInt(dst, ps.UpdatedMs, 10)
	}
	return dst
}

var errMalformed = errors.New("consent: malformed stored record")

// Decode parses a stored record. It never panics on arbitrary input.
func Decode(s string, rec *Record) error {
	*rec = Record{}
	field := func() (string, bool) {
		if s == "" {
			return "", false
		}
		i := strings.IndexByte(s, '|')
		if i < 0 {
			f := s
			s = ""
			return f, true
		}
		f := s[:i]
		s = s[i+1:]
		return f, true
	}
	v, ok := field()
	if !ok || v != codecVersion {
		return fmt.Errorf("%w: unsupported version", errMalformed)
	}
	j, ok := field()
	if !ok {
		return errMalformed
	}
	if rec.Jurisdiction, ok = LookupJurisdiction(j); !ok {
		return fmt.Errorf("%w: unknown jurisdiction", errMalformed)
	}
	g, ok := field()
	if !ok || (g != "0" && g != "1") {
		return errMalformed
	}
	rec.GPC = g == "1"
	ver, ok := field()
	if !ok {
		return errMalformed
	}
	var err error
	if rec.Version, err = strconv.ParseInt(ver, 10, 64); err != nil {
		return errMalformed
	}
	for i := 0; i < purpose.Count; i++ {
		f, ok := field()
		if !ok || len(f) < 3 || f[1] != ':' {
			return errMalformed
		}
		st := State(255)
		for k, c := range stateCodes {
			if c == f[0] {
				st = State(k)
			}
		}
		if st == 255 {
			return errMalformed
		}
		ms, err := strconv.ParseInt(f[2:], 10, 64)
		if err != nil {
			return errMalformed
		}
		rec.Purposes[i] = PurposeState{State: st, UpdatedMs: ms}
	}
	if s != "" {
		return fmt.Errorf("%w: trailing data", errMalformed)
	}
	return nil
}

// Apply merges one consent change into rec if it is newer than what rec holds
// for that purpose (an older change never overwrites a newer one). It reports
// whether rec changed.
func (rec *Record) Apply(p purpose.Purpose, st State, jur Jurisdiction, atMs int64) bool {
	if !p.Valid() || st == Unset || st >= numStates {
		return false
	}
	cur := rec.Purposes[p]
	if cur.State != Unset && cur.UpdatedMs >= atMs {
		return false
	}
	rec.Purposes[p] = PurposeState{State: st, UpdatedMs: atMs}
	if jur != Unknown {
		rec.Jurisdiction = jur
	}
	if atMs > rec.Version {
		rec.Version = atMs
	}
	return true
}
