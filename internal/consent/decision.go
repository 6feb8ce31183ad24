// Package consent is the consent domain. It decides, per subject and
// purpose, whether an event may be published (SPEC 3.2): explicit choices
// first, then the default of the subject's jurisdiction, with Global
// Privacy Control and sensitive categories handled fail-closed. It holds
// the consent record and its merge rules, the decision, the stored
// record's codec, the answer of a lookup and the history entry.
//
// It imports purpose only; it knows nothing of Redis, Kafka or the policy.
// The Redis store and the cache are in package consentredis.
package consent

import (
	"fmt"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// Jurisdiction is the privacy regime that decides the default when a subject
// made no explicit choice.
type Jurisdiction uint8

// Jurisdictions. Unknown is treated as opt-in (deny by default).
const (
	Unknown Jurisdiction = iota
	GDPR
	UKGDPR
	PDPA
	VNDecree13
	CCPA
	numJurisdictions
)

var jurNames = [numJurisdictions]string{"unknown", "gdpr", "uk_gdpr", "pdpa", "vn_decree13", "ccpa"}

// String returns the wire name, e.g. "vn_decree13".
func (j Jurisdiction) String() string {
	if j < numJurisdictions {
		return jurNames[j]
	}
	return "unknown"
}

// OptOut reports whether the regime allows processing until the subject opts
// out (CCPA/CPRA). All others, and unknown, are opt-in.
func (j Jurisdiction) OptOut() bool { return j == CCPA }

// ParseJurisdiction parses a wire name. Use LookupJurisdiction on the hot
// path, where an unknown value simply means Unknown.
func ParseJurisdiction(s string) (Jurisdiction, error) {
	if j, ok := LookupJurisdiction(s); ok {
		return j, nil
	}
	return Unknown, fmt.Errorf("unknown jurisdiction %q (want one of %v)", clip(s), jurNames)
}

// LookupJurisdiction returns the jurisdiction of a wire name and whether it
// is known; it never allocates.
func LookupJurisdiction(s string) (Jurisdiction, bool) {
	for i, n := range jurNames {
		if n == s {
			return Jurisdiction(i), true
		}
	}
	return Unknown, false
}

// JurisdictionNames lists the wire names.
func JurisdictionNames() []string { return append([]string(nil), jurNames[:]...) }

// State is a subject's explicit choice for one purpose.
type State uint8

// States. Unset means no explicit choice: the jurisdiction default applies.
const (
	Unset State = iota
	Granted
	Denied
	Withdrawn
	numStates
)

var stateNames = [numStates]string{"unset", "granted", "denied", "withdrawn"}

// String returns the wire name.
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "invalid"
}

// ParseState parses granted, denied or withdrawn.
func ParseState(s string) (State, error) {
	for i, n := range stateNames[1:] {
		if n == s {
			return State(i + 1), nil
		}
	}
	return Unset, fmt.Errorf("unknown consent state %q (want granted, denied or withdrawn)", clip(s))
}

// PurposeState is the latest explicit choice for one purpose.
type PurposeState struct {
	State State
	// UpdatedMs is when the choice was made (unix ms); newer wins.
	UpdatedMs int64
}

// Record is everything the pipeline knows about one subject's consent.
type Record struct {
	// Jurisdiction of the subject as recorded with their consent; Unknown
	// defers to the jurisdiction carried by the event.
	Jurisdiction Jurisdiction
	// JurisdictionMs is when Jurisdiction was recorded (unix ms of the
	// change that set it; 0 if never): a newer change replaces it.
	JurisdictionMs int64
	// GPC is true when the subject sent a Global Privacy Control signal.
	GPC bool
	// GPCMs is when GPC was recorded, on or off (unix ms of the change that
	// set it; 0 if never): a newer change replaces it.
	GPCMs int64
	// Version identifies the consent state a decision was made on (the
	// newest change's timestamp in unix ms); it goes into the provenance
	// header pp-consent-version.
	Version int64
	// Purposes holds the explicit choice per purpose.
	Purposes [purpose.Count]PurposeState
}

// Reason explains a decision; denial reasons label metrics.
type Reason uint8

// Reasons.
const (
	// ReasonGranted: explicit consent for the purpose.
	ReasonGranted Reason = iota
	// ReasonDefaultAllowed: no explicit choice, opt-out regime allows.
	ReasonDefaultAllowed
	// ReasonUnknownSubject: no stored consent record at all; denied for every purpose, whatever the event claims.
	ReasonUnknownSubject
	// ReasonNoConsent: a record exists but no choice for this purpose, opt-in regime denies.
	ReasonNoConsent
	// ReasonDenied: the subject said no.
	ReasonDenied
	// ReasonWithdrawn: the subject withdrew consent.
	ReasonWithdrawn
	// ReasonGPCOptOut: Global Privacy Control denies marketing and third-party sharing.
	ReasonGPCOptOut
	// ReasonUnreadable: the stored consent record could not be parsed; fail closed.
	ReasonUnreadable
	// ReasonErased: the subject was erased (its data key for the purpose
	// is shredded): nothing about it is published again.
	ReasonErased
	numReasons
)

var reasonNames = [numReasons]string{"granted", "default_allowed", "unknown_subject", "no_consent", "denied", "withdrawn", "gpc_opt_out", "consent_unreadable", "erased"}

// String returns the metric label of the reason.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// DenialReasons lists the reasons that deny, for metrics and reports.
func DenialReasons() []Reason {
	return []Reason{ReasonUnknownSubject, ReasonNoConsent, ReasonDenied, ReasonWithdrawn, ReasonGPCOptOut, ReasonUnreadable, ReasonErased}
}

// GPCSource says where the Global Privacy Control signal that decided a
// denial came from; every application of a GPC signal is counted by it.
type GPCSource uint8

// GPC sources.
const (
	// GPCNone: no GPC signal applied.
	GPCNone GPCSource = iota
	// GPCEvent: the event carried the signal.
	GPCEvent
	// GPCRecord: the signal was recorded with the subject's consent.
	GPCRecord
	// GPCBoth: both the event and the stored record carried it.
	GPCBoth
	numGPCSources
)

var gpcSourceNames = [numGPCSources]string{"none", "event", "record", "event_and_record"}

// String returns the metric label of the source.
func (s GPCSource) String() string {
	if s < numGPCSources {
		return gpcSourceNames[s]
	}
	return "invalid"
}

// GPCSources lists the sources that apply a signal, for metrics.
func GPCSources() []GPCSource { return []GPCSource{GPCEvent, GPCRecord, GPCBoth} }

// Decision is the outcome for one event and purpose.
type Decision struct {
	// Allowed is true when the event may be published for the purpose.
	Allowed bool
	// Explicit is true when the subject explicitly granted the purpose;
	// sensitive categories (precise location, financial, biometric, health)
	// reach a clean topic only then.
	Explicit bool
	// Reason explains the decision.
	Reason Reason
	// Jurisdiction is the regime the decision applied.
	Jurisdiction Jurisdiction
	// GPC is where the GPC signal came from when one decided the outcome
	// (Reason is ReasonGPCOptOut); GPCNone otherwise.
	GPC GPCSource
}

// Effective returns the regime that decides defaults for a subject: the one
// of the stored record, tightened by the event's claim. A jurisdiction
// claimed by the event itself may only make a decision stricter, never
// looser (SPEC 3.2): an opt-in claim (GDPR, UK GDPR, PDPA, Decree 13)
// overrides a recorded opt-out regime, while an opt-out claim (CCPA) counts
// for nothing unless the stored record says so too. An event that claims
// no jurisdiction (empty, or "unknown") leaves the recorded one.
func Effective(recorded, claimed Jurisdiction) Jurisdiction {
	if claimed != Unknown && !claimed.OptOut() {
		return claimed
	}
	return recorded
}

// Decide applies SPEC 3.2 for one purpose. rec is nil when the store has no
// record for the subject. eventJur and eventGPC come from the event itself
// and may only tighten the outcome (see Effective).
//
// Rules, in order:
//  0. a subject with no stored record is denied every purpose
//     (unknown_subject), whatever the event claims: only a stored record
//     (written through the consent API, an import or consent-sync; it may
//     carry just the jurisdiction) can make an opt-out default apply;
//  1. an explicit denial or withdrawal denies;
//  2. a GPC signal (on the event or recorded) denies marketing and
//     third_party_sharing, whatever else was recorded (fail closed: GPC is a
//     valid opt-out of sale and sharing under CCPA/CPRA);
//  3. an explicit grant allows, explicitly;
//  4. otherwise the effective regime decides: opt-out (CCPA, recorded and
//     not tightened by the event) allows, not explicitly; opt-in (GDPR, UK
//     GDPR, PDPA, Vietnam's Decree 13, unknown) denies.
func Decide(rec *Record, eventJur Jurisdiction, eventGPC bool, p purpose.Purpose) Decision {
	if rec == nil {
		return Decision{Reason: ReasonUnknownSubject, Jurisdiction: Effective(Unknown, eventJur)}
	}
	jur := Effective(rec.Jurisdiction, eventJur)
	var gpc GPCSource
	switch {
	case eventGPC && rec.GPC:
		gpc = GPCBoth
	case eventGPC:
		gpc = GPCEvent
	case rec.GPC:
		gpc = GPCRecord
	}
	var st State
	if p.Valid() {
		st = rec.Purposes[p].State
	}
	d := Decision{Jurisdiction: jur}
	switch {
	case !p.Valid():
		d.Reason = ReasonNoConsent
	case st == Denied:
		d.Reason = ReasonDenied
	case st == Withdrawn:
		d.Reason = ReasonWithdrawn
	case gpc != GPCNone && (p == purpose.Marketing || p == purpose.ThirdPartySharing):
		d.Reason, d.GPC = ReasonGPCOptOut, gpc
	case st == Granted:
		d.Allowed, d.Explicit, d.Reason = true, true, ReasonGranted
	case jur.OptOut():
		d.Allowed, d.Reason = true, ReasonDefaultAllowed
	default:
		d.Reason = ReasonNoConsent
	}
	return d
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
