// Package requests is the data-subject request model (SPEC 3.5): a
// request's kinds (erasure, access, portability), its statuses and their
// transitions, the legal regimes and their deadlines, the record format on
// privacy.requests, and the two request shapes the API accepts (ours and
// the Data Rights Protocol's). It does no I/O: the store
// (requests/requestredis), the API (requests/requestapi) and the service
// that carries requests out (requests/fulfil) build on it.
//
// A request's record on privacy.requests is keyed by its id, so the
// compacted topic keeps one record per request (its latest state). Once an
// erasure is done, every request of the subject is rewritten with the
// subject's ledger mark in place of its raw id (Anonymise), so compaction
// also removes the raw id from the request log.
//
// It imports audit (the request's audit record) and the standard library.
package requests

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/audit"
)

// Kind is what a request asks for.
type Kind string

// The kinds.
const (
	// Erasure: forget the subject (crypto-shredding, GDPR Art. 17,
	// CCPA 1798.105).
	Erasure Kind = "erasure"
	// Access: a copy of everything held about the subject (GDPR Art. 15,
	// CCPA right to know).
	Access Kind = "access"
	// Portability: the same document, machine-readable, for another
	// controller (GDPR Art. 20).
	Portability Kind = "portability"
)

// Kinds lists the kinds.
var Kinds = []Kind{Erasure, Access, Portability}

// Exports reports whether the kind produces an export document.
func (k Kind) Exports() bool { return k == Access || k == Portability }

// Status is where a request stands.
type Status string

// The statuses. A request starts received (or verified, when the caller
// vouches that it verified the subject's identity), runs in progress,
// and ends done or refused; extended is open, with a later deadline.
const (
	Received   Status = "received"
	Verified   Status = "verified"
	InProgress Status = "in_progress"
	Extended   Status = "extended"
	Done       Status = "done"
	Refused    Status = "refused"
)

// Statuses lists the statuses.
var Statuses = []Status{Received, Verified, InProgress, Extended, Done, Refused}

// Open reports whether the status still needs an answer.
func (s Status) Open() bool { return s != Done && s != Refused }

// Regime is the law whose deadlines apply.
type Regime string

// The regimes.
const (
	// GDPR: one calendar month from receipt (Art. 12(3)), extendable by
	// two further months with reasons.
	GDPR Regime = "gdpr"
	// CCPA: 45 calendar days, extendable once by 45 (Cal. Civ. Code
	// 1798.130(a)(2)); receipt confirmed within 10 business days (CCPA
	// Regulations 7021(a)).
	CCPA Regime = "ccpa"
	// PDPA: 30 days (Singapore PDPC guidance for access requests;
	// Thailand PDPA s. 30), extendable by 30 days with notice.
	PDPA Regime = "pdpa"
	// VNDecree13: 72 hours (Vietnam Decree 13/2023/ND-CP, Art. 9, 14,
	// 16), not extendable.
	VNDecree13 Regime = "vn_decree13"
	// Voluntary: a request no law governs (the Data Rights Protocol's
	// "voluntary" regime); answered on CCPA's timing.
	Voluntary Regime = "voluntary"
)

// Regimes lists the regimes.
var Regimes = []Regime{GDPR, CCPA, PDPA, VNDecree13, Voluntary}

// Deadline returns the deadline of a request received at t under r.
func (r Regime) Deadline(t time.Time) time.Time {
	switch r {
	case GDPR:
		return addMonths(t, 1)
	case CCPA, Voluntary:
		return t.AddDate(0, 0, 45)
	case PDPA:
		return t.AddDate(0, 0, 30)
	default: // VNDecree13
		return t.Add(72 * time.Hour)
	}
}

// Extend returns the deadline after the one allowed extension of d (the
// current deadline), and false when the regime allows none.
func (r Regime) Extend(d time.Time) (time.Time, bool) {
	switch r {
	case GDPR:
		return addMonths(d, 2), true
	case CCPA, Voluntary:
		return d.AddDate(0, 0, 45), true
	case PDPA:
		return d.AddDate(0, 0, 30), true
	default:
		return d, false
	}
}

// ConfirmBy returns by when receipt must be confirmed to the subject
// (CCPA: 10 business days; zero for the others, where the answer itself
// is due). Public holidays are not modelled: the result is at most a few
// days late of a holiday-aware count and is met at once anyway (the API
// confirms receipt in its answer).
func (r Regime) ConfirmBy(t time.Time) time.Time {
	if r != CCPA && r != Voluntary {
		return time.Time{}
	}
	d, n := t, 0
	for n < 10 {
		d = d.AddDate(0, 0, 1)
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			n++
		}
	}
	return d
}

// addMonths adds n calendar months the way periods are counted in EU law
// (Regulation 1182/71, Art. 3(2)(c)): the same day n months later, or the
// month's last day when it has no such day (31 January + 1 month = 28 or
// 29 February, not 2 or 3 March as time.AddDate normalises).
func addMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(d, last)-1)
}

// Request is one data-subject request, as privacy.requests and the store
// hold it (JSON, "v": 1).
type Request struct {
	V    int    `json:"v"`
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// Subject is the subject's raw id; empty once the subject is erased
	// (SubjectMark then names it).
	Subject     string `json:"subject_id,omitempty"`
	SubjectMark string `json:"subject_mark,omitempty"`
	Regime      Regime `json:"regime"`
	Status      Status `json:"status"`
	// Reason explains a refusal or an extension.
	Reason string `json:"reason,omitempty"`
	// Source is where the request came from: api, drp (the API, in the
	// Data Rights Protocol's shape) or topic (a record written straight to
	// privacy.requests).
	Source string `json:"source"`
	// Principal filed it; UpdatedBy made the last change.
	Principal string `json:"principal"`
	UpdatedBy string `json:"updated_by,omitempty"`
	// The times, in Unix milliseconds.
	ReceivedMS  int64 `json:"received_ms"`
	VerifiedMS  int64 `json:"verified_ms,omitempty"`
	ConfirmByMS int64 `json:"confirm_by_ms,omitempty"`
	DeadlineMS  int64 `json:"deadline_ms"`
	UpdatedMS   int64 `json:"updated_ms"`
	DoneMS      int64 `json:"done_ms,omitempty"`
	// Extended is set once the deadline was extended (allowed once).
	Extended bool `json:"extended,omitempty"`
	// Version counts the request's changes (1 when filed).
	Version int64 `json:"version"`
	// AgentRequestID and StatusCallback come from a Data Rights Protocol
	// request (agent-request-id, status_callback).
	AgentRequestID string `json:"agent_request_id,omitempty"`
	StatusCallback string `json:"status_callback,omitempty"`
	// Progress is an export's progress while it runs (0 to 1).
	Progress float64 `json:"progress,omitempty"`
	// Result summarises what was done (counts, never the subject's data).
	Result map[string]int64 `json:"result,omitempty"`
	// ExportExpiresMS is when a done export's document is deleted.
	ExportExpiresMS int64 `json:"export_expires_ms,omitempty"`
}

// Limits of the fields.
const (
	// MaxSubject is the longest subject id accepted (as the consent API).
	MaxSubject = 256
	// MaxReason is the longest reason accepted.
	MaxReason = 1024
	// MaxRecord is the largest record accepted from privacy.requests.
	MaxRecord = 16 << 10
)

// Errors of validation and transitions.
var (
	ErrInvalid    = errors.New("requests: invalid request")
	ErrTransition = errors.New("requests: not allowed in this status")
)

// NewID returns a fresh request id, "rq_" and 26 base32 characters (128
// random bits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "rq_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ClientID returns the request id for a caller's own id (an idempotency
// key: filing twice with it names one request), "rq_c_" + id; id must be
// 1 to 64 characters of [A-Za-z0-9._-].
func ClientID(id string) (string, error) {
	if !validToken(id, 64) {
		return "", fmt.Errorf("%w: id must be 1 to 64 characters of A-Z a-z 0-9 . _ -", ErrInvalid)
	}
	return "rq_c_" + id, nil
}

// ValidID reports whether s has the form of a request id.
func ValidID(s string) bool {
	rest, ok := strings.CutPrefix(s, "rq_")
	return ok && validToken(rest, 70)
}

func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// New files a request received now: its deadline and confirmation date
// follow from the regime; verified says the caller verified the subject's
// identity (its login), so the request can be carried out at once.
func New(id string, kind Kind, subject string, regime Regime, source, principal string, verified bool, now time.Time) (Request, error) {
	r := Request{V: 1, ID: id, Kind: kind, Subject: subject, Regime: regime, Status: Received, Source: source,
		Principal: principal, ReceivedMS: now.UnixMilli(), UpdatedMS: now.UnixMilli(), Version: 1,
		DeadlineMS: regime.Deadline(now).UnixMilli()}
	if c := regime.ConfirmBy(now); !c.IsZero() {
		r.ConfirmByMS = c.UnixMilli()
	}
	if verified {
		r.Status, r.VerifiedMS = Verified, now.UnixMilli()
	}
	return r, r.Validate()
}

// Validate checks a request's fields (a record read from the topic is
// validated before anything acts on it).
func (r Request) Validate() error {
	var errs []string
	if r.V != 1 {
		errs = append(errs, fmt.Sprintf("version %d (want 1)", r.V))
	}
	if !ValidID(r.ID) {
		errs = append(errs, "id: not a request id")
	}
	if !slices.Contains(Kinds, r.Kind) {
		errs = append(errs, fmt.Sprintf("kind %q (want one of %v)", r.Kind, Kinds))
	}
	if !slices.Contains(Regimes, r.Regime) {
		errs = append(errs, fmt.Sprintf("regime %q (want one of %v)", r.Regime, Regimes))
	}
	if !slices.Contains(Statuses, r.Status) {
		errs = append(errs, fmt.Sprintf("status %q (want one of %v)", r.Status, Statuses))
	}
	switch {
	case r.Subject == "" && r.SubjectMark == "":
		errs = append(errs, "subject_id: empty")
	case len(r.Subject) > MaxSubject:
		errs = append(errs, fmt.Sprintf("subject_id: longer than %d bytes", MaxSubject))
	case strings.ContainsFunc(r.Subject, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		errs = append(errs, "subject_id: control characters")
	}
	if len(r.Reason) > MaxReason {
		errs = append(errs, fmt.Sprintf("reason: longer than %d bytes", MaxReason))
	}
	if (r.Status == Refused || r.Status == Extended) && strings.TrimSpace(r.Reason) == "" {
		errs = append(errs, "reason: a refusal or an extension needs one")
	}
	if r.ReceivedMS <= 0 || r.DeadlineMS < r.ReceivedMS {
		errs = append(errs, "received_ms, deadline_ms: missing or out of order")
	}
	if len(r.Principal) > 256 || len(r.Source) > 32 || len(r.AgentRequestID) > 128 || len(r.StatusCallback) > 2048 {
		errs = append(errs, "principal, source, agent_request_id or status_callback: too long")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// Marshal encodes the record.
func (r Request) Marshal() []byte {
	b, _ := json.Marshal(r) // only strings, numbers and a map of numbers
	return b
}

// Parse decodes and validates a record from privacy.requests (strict:
// unknown fields and trailing data are refused).
func Parse(b []byte) (Request, error) {
	if len(b) > MaxRecord {
		return Request{}, fmt.Errorf("%w: record of %d bytes (limit %d)", ErrInvalid, len(b), MaxRecord)
	}
	var r Request
	if err := decodeStrict(b, &r); err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, r.Validate()
}

// Open reports whether the request still needs an answer.
func (r Request) Open() bool { return r.Status.Open() }

// Runnable reports whether the request may be carried out now: verified
// and not finished.
func (r Request) Runnable() bool { return r.VerifiedMS > 0 && r.Open() }

// Deadline returns the request's deadline.
func (r Request) Deadline() time.Time { return time.UnixMilli(r.DeadlineMS) }

// DaysLeft returns the days to the deadline at now (negative when past).
func (r Request) DaysLeft(now time.Time) float64 {
	return r.Deadline().Sub(now).Hours() / 24
}

// touch records a change by who at now.
func (r *Request) touch(who string, now time.Time) {
	r.UpdatedBy, r.UpdatedMS = who, now.UnixMilli()
	r.Version++
}

// Verify records that the subject's identity was verified.
func (r Request) Verify(who string, now time.Time) (Request, error) {
	if r.Status != Received {
		return r, fmt.Errorf("%w: verify a request that is %s", ErrTransition, r.Status)
	}
	r.Status, r.VerifiedMS = Verified, now.UnixMilli()
	r.touch(who, now)
	return r, nil
}

// Start marks the request in progress.
func (r Request) Start(who string, now time.Time) (Request, error) {
	if !r.Runnable() {
		return r, fmt.Errorf("%w: start a request that is %s", ErrTransition, r.Status)
	}
	r.Status = InProgress
	r.touch(who, now)
	return r, nil
}

// Finish marks the request done with a summary of what was done.
func (r Request) Finish(who string, result map[string]int64, now time.Time) (Request, error) {
	if r.Status != InProgress {
		return r, fmt.Errorf("%w: finish a request that is %s", ErrTransition, r.Status)
	}
	r.Status, r.Result, r.DoneMS, r.Progress = Done, result, now.UnixMilli(), 0
	r.touch(who, now)
	return r, nil
}

// Refuse ends the request unanswered, with a reason (an exception of the
// law, an unverifiable identity, a manifestly unfounded request).
func (r Request) Refuse(who, reason string, now time.Time) (Request, error) {
	if !r.Open() {
		return r, fmt.Errorf("%w: refuse a request that is %s", ErrTransition, r.Status)
	}
	if strings.TrimSpace(reason) == "" || len(reason) > MaxReason {
		return r, fmt.Errorf("%w: a refusal needs a reason of 1 to %d bytes", ErrInvalid, MaxReason)
	}
	r.Status, r.Reason, r.DoneMS = Refused, reason, now.UnixMilli()
	r.touch(who, now)
	return r, nil
}

// Extend moves the deadline by the regime's one extension, with a reason
// (GDPR Art. 12(3): the subject is told within the first month).
func (r Request) Extend(who, reason string, now time.Time) (Request, error) {
	if !r.Open() {
		return r, fmt.Errorf("%w: extend a request that is %s", ErrTransition, r.Status)
	}
	if r.Extended {
		return r, fmt.Errorf("%w: the deadline was extended already (once is allowed)", ErrTransition)
	}
	if strings.TrimSpace(reason) == "" || len(reason) > MaxReason {
		return r, fmt.Errorf("%w: an extension needs a reason of 1 to %d bytes", ErrInvalid, MaxReason)
	}
	if now.After(r.Deadline()) {
		return r, fmt.Errorf("%w: the deadline has passed; it can no longer be extended", ErrTransition)
	}
	d, ok := r.Regime.Extend(r.Deadline())
	if !ok {
		return r, fmt.Errorf("%w: %s allows no extension", ErrTransition, r.Regime)
	}
	r.Status, r.Reason, r.Extended, r.DeadlineMS = Extended, reason, true, d.UnixMilli()
	r.touch(who, now)
	return r, nil
}

// Anonymise replaces the raw subject id by the subject's ledger mark
// (after its erasure).
func (r Request) Anonymise(mark string) Request {
	if r.Subject != "" {
		r.Subject, r.SubjectMark = "", mark
	}
	return r
}

// Same reports whether r and o are the same filing (a replay of one
// request id with another subject or kind is a conflict, not a replay).
func (r Request) Same(o Request) bool {
	return r.ID == o.ID && r.Kind == o.Kind && (r.Subject == o.Subject || r.Subject == "" || o.Subject == "")
}

// Audit returns the audit record of the request's current status, written
// by service on behalf of principal (SPEC 3.9). It holds no raw id: the
// subject only as mark (its erasure-ledger mark, empty when unknown), and
// a refusal's or an extension's reason only as the code "stated" (the
// text, which may quote the subject, stays in the restricted request log).
func (r Request) Audit(at time.Time, service, principal, mark string) audit.Record {
	if r.SubjectMark != "" {
		mark = r.SubjectMark
	}
	s := audit.RequestStatus{ID: r.ID, Kind: string(r.Kind), Regime: string(r.Regime), Status: string(r.Status),
		DeadlineMS: r.DeadlineMS, SubjectRef: mark}
	if r.Status == Refused || r.Status == Extended {
		s.Reason = "stated"
	}
	return audit.Request(at, service, principal, s)
}
