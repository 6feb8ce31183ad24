package consent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// The Redis value of one subject is a compact, versioned text record.
// Version 2, the one written:
//
//	2|<jurisdiction>|<jurisdiction ms>|<gpc 0|1>|<gpc ms>|<version ms>|<state>:<ms>|...
//
// with one state per purpose in purpose.All order, state being one of
// - (unset), g (granted), d (denied), w (withdrawn). The jurisdiction and
// the GPC signal each carry the timestamp of the change that set them (0:
// never set), so that each slot is newer-wins on its own. Version 1, still
// read (records written before version 2), had no slot timestamps:
//
//	1|<jurisdiction>|<gpc 0|1>|<version ms>|<state>:<ms>|...
//
// Text keeps it readable with redis-cli; a fixed layout keeps parsing
// allocation-free. The Lua script of internal/consent/consentsync writes the same
// format with the same merge rules as the Record methods below; a test
// checks that they agree.

const (
	codecV1 = "1"
	codecV2 = "2"
)

var stateCodes = [numStates]byte{'-', 'g', 'd', 'w'}

// GPCValue is the Global Privacy Control value a consent change carries:
// not given (the change says nothing about GPC), on (the subject sent the
// signal) or off (a recorded signal is cleared).
type GPCValue uint8

// GPC values.
const (
	// GPCNotGiven: the change says nothing about GPC.
	GPCNotGiven GPCValue = iota
	// GPCOn: the subject sent a GPC signal.
	GPCOn
	// GPCOff: the subject no longer sends a GPC signal; it clears a
	// recorded one (newer timestamp wins).
	GPCOff
	numGPCValues
)

var gpcValueNames = [numGPCValues]string{"not_given", "on", "off"}

// String returns "not_given", "on" or "off".
func (g GPCValue) String() string {
	if g < numGPCValues {
		return gpcValueNames[g]
	}
	return "invalid"
}

// Given reports whether the value is on or off.
func (g GPCValue) Given() bool { return g == GPCOn || g == GPCOff }

// GPCOf returns GPCOn for true and GPCOff for false.
func GPCOf(on bool) GPCValue {
	if on {
		return GPCOn
	}
	return GPCOff
}

// AppendEncoded appends the Redis encoding (version 2) of rec to dst.
func AppendEncoded(dst []byte, rec *Record) []byte {
	dst = append(dst, codecV2...)
	dst = append(dst, '|')
	dst = append(dst, rec.Jurisdiction.String()...)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, rec.JurisdictionMs, 10)
	if rec.GPC {
		dst = append(dst, "|1|"...)
	} else {
		dst = append(dst, "|0|"...)
	}
	dst = strconv.AppendInt(dst, rec.GPCMs, 10)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, rec.Version, 10)
	for _, ps := range rec.Purposes {
		dst = append(dst, '|', stateCodes[ps.State], ':')
		dst = strconv.AppendInt(dst, ps.UpdatedMs, 10)
	}
	return dst
}

var errMalformed = errors.New("consent: malformed stored record")

// Decode parses a stored record of version 1 or 2. It never panics on
// arbitrary input. A version-1 record's jurisdiction and GPC signal, which
// carried no timestamp of their own, get the record's version as theirs
// (when set), an upper bound of when they were set.
func Decode(s string, rec *Record) error {
	*rec = Record{}
	if strings.HasSuffix(s, "|") {
		return fmt.Errorf("%w: trailing separator", errMalformed)
	}
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
	num := func() (int64, bool) {
		f, ok := field()
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(f, 10, 64)
		return n, err == nil
	}
	v, ok := field()
	if !ok || (v != codecV1 && v != codecV2) {
		return fmt.Errorf("%w: unsupported version", errMalformed)
	}
	j, ok := field()
	if !ok {
		return errMalformed
	}
	if rec.Jurisdiction, ok = LookupJurisdiction(j); !ok {
		return fmt.Errorf("%w: unknown jurisdiction", errMalformed)
	}
	if v == codecV2 {
		if rec.JurisdictionMs, ok = num(); !ok {
			return errMalformed
		}
	}
	g, ok := field()
	if !ok || (g != "0" && g != "1") {
		return errMalformed
	}
	rec.GPC = g == "1"
	if v == codecV2 {
		if rec.GPCMs, ok = num(); !ok {
			return errMalformed
		}
	}
	if rec.Version, ok = num(); !ok {
		return errMalformed
	}
	if v == codecV1 {
		if rec.Jurisdiction != Unknown {
			rec.JurisdictionMs = rec.Version
		}
		if rec.GPC {
			rec.GPCMs = rec.Version
		}
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

// The merge rules. Every slot of a record (each purpose's state, the
// jurisdiction, the GPC signal) is newer-wins on its own, so applying a set
// of changes in any order gives the same record (a replayed, duplicated or
// reordered consent topic converges). A tie (two changes with the same
// timestamp for the same slot) goes to the stricter value, again whatever
// the order: withdrawn over denied over granted, GPC on over off, an opt-in
// jurisdiction over CCPA (opt-in ones among themselves by a fixed order).

// jurRank orders jurisdictions for ties: the higher rank wins.
func jurRank(j Jurisdiction) int {
	switch j {
	case Unknown:
		return 0
	case CCPA:
		return 1
	}
	return 2 + int(j)
}

// Apply merges one per-purpose consent change into rec: the purpose's state
// if the change is newer than the one rec holds (an older change never
// overwrites a newer one), and the change's jurisdiction, unless Unknown,
// if it is newer than the recorded jurisdiction (independently of the
// purpose). It reports whether rec changed; Version becomes the newest
// timestamp applied.
func (rec *Record) Apply(p purpose.Purpose, st State, jur Jurisdiction, atMs int64) bool {
	if !p.Valid() || st == Unset || st >= numStates {
		return false
	}
	changed := false
	cur := rec.Purposes[p]
	if cur.State == Unset || atMs > cur.UpdatedMs || (atMs == cur.UpdatedMs && st > cur.State) {
		rec.Purposes[p] = PurposeState{State: st, UpdatedMs: atMs}
		changed = true
	}
	if rec.applyJurisdiction(jur, atMs) {
		changed = true
	}
	if changed && atMs > rec.Version {
		rec.Version = atMs
	}
	return changed
}

// ApplyProfile merges the subject-level part of a change into rec: the
// jurisdiction (ignored when Unknown) and the GPC signal (ignored when
// GPCNotGiven; GPCOff clears a recorded signal), each only if the change
// is newer than what rec holds for it. It reports whether rec changed;
// Version becomes the newest timestamp applied.
func (rec *Record) ApplyProfile(jur Jurisdiction, gpc GPCValue, atMs int64) bool {
	changed := rec.applyJurisdiction(jur, atMs)
	if gpc == GPCOn || gpc == GPCOff {
		on := gpc == GPCOn
		if atMs > rec.GPCMs || (atMs == rec.GPCMs && on && !rec.GPC) {
			rec.GPC, rec.GPCMs = on, atMs
			changed = true
		}
	}
	if changed && atMs > rec.Version {
		rec.Version = atMs
	}
	return changed
}

func (rec *Record) applyJurisdiction(jur Jurisdiction, atMs int64) bool {
	if jur == Unknown || jur >= numJurisdictions {
		return false
	}
	if atMs > rec.JurisdictionMs || (atMs == rec.JurisdictionMs && jurRank(jur) > jurRank(rec.Jurisdiction)) {
		rec.Jurisdiction, rec.JurisdictionMs = jur, atMs
		return true
	}
	return false
}
