// Package audit is the record format of the audit topic, privacy.audit
// (SPEC 3.9): versioned JSON records, one object per Kafka record, keyed
// by the processor or service that wrote it (the topic has one partition,
// so the records of all writers are in one order). It holds decision
// summaries, never personal data: no raw subject id, no field value.
//
// Every record has
//
//	v          1 (the format's version; a reader refuses any other)
//	kind       "batch" | "consent" | "request" | "erasure"
//	time_ms    when it was written (unix milliseconds)
//	processor  the processor or service that wrote it (also the record key)
//	principal  who made the change: the API's authenticated principal
//	           (consent and request records; absent on batch records)
//
// and one object named after its kind:
//
//	batch    one per committed batch of the privacy processor, in the
//	         batch's transaction:
//	  inputs            [{topic, partition, offsets: [first, last]}], one per
//	                    input partition of the batch
//	  events            input records of the batch
//	  policy_version    the policy the batch was decided under
//	  consent_versions  {min, max}: the range of the stored consent records'
//	                    versions the batch's decisions were made on (absent
//	                    when no decision rested on a stored record)
//	  purposes          {<purpose>: {published, denied: {<reason>: n},
//	                    sensitive_withheld}} for every purpose; the denial
//	                    reasons are the consent package's (unknown_subject,
//	                    no_consent, denied, withdrawn, gpc_opt_out,
//	                    consent_unreadable, erased); zero counts are left out
//	  quarantined       {<reason>: n}: records quarantined, per reason code
//	                    (an event is quarantined for every purpose at once)
//	  unclassified_dropped  writer fields the classified schema does not know
//	  For every purpose: published + sum(denied) = events - sum(quarantined).
//	consent  one per consent change the consent API accepted (set, withdraw,
//	         profile, the GPC signal of a "Sec-GPC: 1" request) and one per
//	         produced part of a bulk import, in the same produce as the
//	         change:
//	  change          "grant" | "deny" | "withdraw" | "profile" | "gpc_signal" | "import"
//	  purpose         the purpose's wire name (absent for subject-level changes and imports)
//	  source          the change's source (web_form, import, ...)
//	  policy_version  the privacy notice version the change names
//	  version         the consent version the change writes (its timestamp,
//	                  unix ms: a stored record's version is its newest change's)
//	  receipt_id      the change's receipt
//	  subject_ref     the subject's erasure-ledger mark ("er1.<keyed hash>")
//	                  when the ledger key is configured; absent otherwise
//	  import          {accepted, rejected, erased, part, parts, changes:
//	                  {<change>: n}}: an import's counts (rejected and erased in
//	                  part 1 only)
//	request  a data-subject request's status change:
//	  id, kind ("erasure" | "access" | "portability"), regime (gdpr, ccpa, ...),
//	  status ("received" | "verified" | "in_progress" | "done" | "refused" |
//	  "extended"), reason (a code, for refused and extended), deadline_ms,
//	  subject_ref (as above)
//	erasure  one per erasure, in the erasure's transaction:
//	  request, subject_ref (always: the executor has the ledger key),
//	  keys_shredded, key_tombstones, consent_tombstones, notices
//
// A subject is never named: where a record refers to one it carries the
// erasure ledger's mark (internal/erasure Ledger.Mark: HMAC-SHA256 under
// the ledger key, so a list of candidate ids cannot be tested against it
// without the key), or nothing.
//
// Encode validates and writes a Record; AppendBatch writes a batch record
// from fixed counts without allocating (the privacy processor's per-batch
// path); Decode is the strict reader (unknown, duplicate or differently
// cased fields, a wrong version, a kind without its object or with
// another's, a malformed mark, negative counts: all refused).
//
// It imports consent and purpose (the names it checks) and the standard
// library only.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// Version is the format's version, the records' "v".
const Version = 1

// MaxRecordBytes bounds a record Decode accepts.
const MaxRecordBytes = 1 << 20

// Kind is a record's kind.
type Kind string

// Kinds.
const (
	KindBatch   Kind = "batch"
	KindConsent Kind = "consent"
	KindRequest Kind = "request"
	KindErasure Kind = "erasure"
)

// Consent change kinds (ConsentChange.Change).
const (
	ChangeGrant     = "grant"
	ChangeDeny      = "deny"
	ChangeWithdraw  = "withdraw"
	ChangeProfile   = "profile"
	ChangeGPCSignal = "gpc_signal"
	ChangeImport    = "import"
)

// Request kinds (RequestStatus.Kind) and statuses (RequestStatus.Status).
const (
	RequestErasure     = "erasure"
	RequestAccess      = "access"
	RequestPortability = "portability"

	StatusReceived   = "received"
	StatusVerified   = "verified"
	StatusInProgress = "in_progress"
	StatusDone       = "done"
	StatusRefused    = "refused"
	StatusExtended   = "extended"
)

// MarkPrefix starts a subject reference: the erasure ledger mark's prefix
// (internal/erasure MarkPrefix; a test keeps them equal).
const MarkPrefix = "er1."

// Record is one audit record. Exactly the field of its Kind is set.
type Record struct {
	V      int   `json:"v"`
	Kind   Kind  `json:"kind"`
	TimeMS int64 `json:"time_ms"`
	// Processor is the processor or service that wrote the record; the
	// record's key.
	Processor string `json:"processor"`
	// Principal is who made the change (consent, request; optional on
	// erasure; never on batch).
	Principal string          `json:"principal,omitempty"`
	Batch     *BatchSummary   `json:"batch,omitempty"`
	Consent   *ConsentChange  `json:"consent,omitempty"`
	Request   *RequestStatus  `json:"request,omitempty"`
	Erasure   *ErasureSummary `json:"erasure,omitempty"`
}

// Key is the record's Kafka key: its processor.
func (r *Record) Key() []byte { return []byte(r.Processor) }

// BatchSummary is the decision summary of one processed batch.
type BatchSummary struct {
	Inputs          []Input                  `json:"inputs"`
	Events          int                      `json:"events"`
	PolicyVersion   string                   `json:"policy_version"`
	ConsentVersions *VersionRange            `json:"consent_versions,omitempty"`
	Purposes        map[string]PurposeCounts `json:"purposes"`
	Quarantined     map[string]int           `json:"quarantined,omitempty"`
	Unclassified    int                      `json:"unclassified_dropped,omitempty"`
}

// Input is the range of one input partition a batch read.
type Input struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Offsets are the first and the last offset read, [first, last].
	Offsets []int64 `json:"offsets"`
}

// VersionRange is the range of consent versions a batch decided on.
type VersionRange struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

// PurposeCounts are one purpose's outcomes in a batch.
type PurposeCounts struct {
	Published int            `json:"published"`
	Denied    map[string]int `json:"denied,omitempty"`
	// SensitiveWithheld counts sensitive fields withheld (nulled) from
	// published records for lack of explicit consent.
	SensitiveWithheld int `json:"sensitive_withheld,omitempty"`
}

// ConsentChange is one consent change (or one part of an import).
type ConsentChange struct {
	Change        string        `json:"change"`
	Purpose       string        `json:"purpose,omitempty"`
	Source        string        `json:"source,omitempty"`
	PolicyVersion string        `json:"policy_version,omitempty"`
	Version       int64         `json:"version,omitempty"`
	ReceiptID     string        `json:"receipt_id,omitempty"`
	SubjectRef    string        `json:"subject_ref,omitempty"`
	Import        *ImportCounts `json:"import,omitempty"`
}

// ImportCounts are the counts of one produced part of a bulk import.
type ImportCounts struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Erased   int `json:"erased"`
	Part     int `json:"part"`
	Parts    int `json:"parts"`
	// Changes counts the part's accepted changes by change kind.
	Changes map[string]int `json:"changes,omitempty"`
}

// RequestStatus is a data-subject request's state.
type RequestStatus struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Regime     string `json:"regime"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
	DeadlineMS int64  `json:"deadline_ms"`
	SubjectRef string `json:"subject_ref,omitempty"`
}

// ErasureSummary is what one erasure did.
type ErasureSummary struct {
	Request           string `json:"request,omitempty"`
	SubjectRef        string `json:"subject_ref"`
	KeysShredded      int    `json:"keys_shredded"`
	KeyTombstones     int    `json:"key_tombstones"`
	ConsentTombstones int    `json:"consent_tombstones"`
	Notices           int    `json:"notices"`
}

func header(at time.Time, kind Kind, processor, principal string) Record {
	return Record{V: Version, Kind: kind, TimeMS: at.UnixMilli(), Processor: processor, Principal: principal}
}

// Batch returns a batch record.
func Batch(at time.Time, processor string, s BatchSummary) Record {
	r := header(at, KindBatch, processor, "")
	r.Batch = &s
	return r
}

// Consent returns a consent record.
func Consent(at time.Time, service, principal string, c ConsentChange) Record {
	r := header(at, KindConsent, service, principal)
	r.Consent = &c
	return r
}

// Request returns a request record.
func Request(at time.Time, service, principal string, s RequestStatus) Record {
	r := header(at, KindRequest, service, principal)
	r.Request = &s
	return r
}

// Erasure returns an erasure record (principal may be empty).
func Erasure(at time.Time, service, principal string, s ErasureSummary) Record {
	r := header(at, KindErasure, service, principal)
	r.Erasure = &s
	return r
}

// ErrInvalid is wrapped by every validation and decoding error.
var ErrInvalid = errors.New("invalid audit record")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Encode validates r and returns its JSON.
func Encode(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Kind == KindBatch {
		c := countsOf(r.Batch)
		return AppendBatch(nil, time.UnixMilli(r.TimeMS), r.Processor, &c), nil
	}
	return json.Marshal(r)
}

// Decode reads one record strictly.
func Decode(b []byte) (Record, error) {
	if len(b) > MaxRecordBytes {
		return Record{}, invalid("%d bytes, more than %d", len(b), MaxRecordBytes)
	}
	if err := checkKeys(b); err != nil {
		return Record{}, err
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, invalid("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Record{}, invalid("data after the record")
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// checkKeys walks the document: every object key must be a lower-case
// name (encoding/json matches field names case-insensitively; the format
// does not) and appear once per object, nesting at most 6 deep.
func checkKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // an object's next token is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) != 0 {
				return invalid("truncated")
			}
			return nil
		}
		if err != nil {
			return invalid("%v", err)
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].object && stack[top].key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:top]
				if top > 0 && stack[top-1].object {
					stack[top-1].key = true
				}
				continue
			}
			k, _ := tok.(string)
			if !isName(k, 64) {
				return invalid("field name %q", clip(k))
			}
			if stack[top].seen[k] {
				return invalid("field %q twice", k)
			}
			stack[top].seen[k] = true
			stack[top].key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			if len(stack) >= 6 {
				return invalid("nested too deep")
			}
			stack = append(stack, frame{object: true, seen: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			if len(stack) >= 6 {
				return invalid("nested too deep")
			}
			stack = append(stack, frame{})
			continue
		case json.Delim(']'), json.Delim('}'):
			stack = stack[:top]
		}
		// A value ended: the enclosing object expects a key again.
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].key = true
		}
	}
}

// Validate checks a record against the format.
func (r *Record) Validate() error {
	if r.V != Version {
		return invalid("version %d (this reader knows %d)", r.V, Version)
	}
	if r.TimeMS <= 0 {
		return invalid("time_ms %d", r.TimeMS)
	}
	if !isName(r.Processor, 64) {
		return invalid("processor %q", clip(r.Processor))
	}
	if r.Principal != "" && !isText(r.Principal, 128) {
		return invalid("principal is not 1-128 bytes of text")
	}
	set := 0
	for _, p := range []bool{r.Batch != nil, r.Consent != nil, r.Request != nil, r.Erasure != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return invalid("a record carries exactly one of batch, consent, request, erasure (%d)", set)
	}
	switch r.Kind {
	case KindBatch:
		if r.Batch == nil {
			return invalid("kind batch without batch")
		}
		if r.Principal != "" {
			return invalid("a batch record names no principal")
		}
		return r.Batch.validate()
	case KindConsent:
		if r.Consent == nil {
			return invalid("kind consent without consent")
		}
		if r.Principal == "" {
			return invalid("a consent record names its principal")
		}
		return r.Consent.validate()
	case KindRequest:
		if r.Request == nil {
			return invalid("kind request without request")
		}
		if r.Principal == "" {
			return invalid("a request record names its principal")
		}
		return r.Request.validate()
	case KindErasure:
		if r.Erasure == nil {
			return invalid("kind erasure without erasure")
		}
		return r.Erasure.validate()
	}
	return invalid("kind %q", clip(string(r.Kind)))
}

func (b *BatchSummary) validate() error {
	if len(b.Inputs) == 0 || len(b.Inputs) > 4096 {
		return invalid("batch: %d inputs", len(b.Inputs))
	}
	for _, in := range b.Inputs {
		if !isTopicish(in.Topic) || in.Partition < 0 || len(in.Offsets) != 2 || in.Offsets[0] < 0 || in.Offsets[1] < in.Offsets[0] {
			return invalid("batch: input %q %d %v", clip(in.Topic), in.Partition, in.Offsets)
		}
	}
	if b.Events <= 0 {
		return invalid("batch: %d events", b.Events)
	}
	if !isVersion(b.PolicyVersion) {
		return invalid("batch: policy_version is not 1-%d bytes of text", MaxVersionLen)
	}
	if v := b.ConsentVersions; v != nil && (v.Min < 0 || v.Max < v.Min) {
		return invalid("batch: consent_versions [%d, %d]", v.Min, v.Max)
	}
	if len(b.Purposes) == 0 {
		return invalid("batch: no purposes")
	}
	for name, pc := range b.Purposes {
		if _, err := purpose.Parse(name); err != nil {
			return invalid("batch: purpose %q", clip(name))
		}
		if pc.Published < 0 || pc.SensitiveWithheld < 0 {
			return invalid("batch: negative count for %s", name)
		}
		for reason, n := range pc.Denied {
			if !isDenial(reason) || n < 0 {
				return invalid("batch: %s denied %q: %d", name, clip(reason), n)
			}
		}
	}
	for reason, n := range b.Quarantined {
		if !isName(reason, 64) || n < 0 {
			return invalid("batch: quarantined %q: %d", clip(reason), n)
		}
	}
	if b.Unclassified < 0 {
		return invalid("batch: unclassified_dropped %d", b.Unclassified)
	}
	return nil
}

var changes = []string{ChangeGrant, ChangeDeny, ChangeWithdraw, ChangeProfile, ChangeGPCSignal, ChangeImport}

func (c *ConsentChange) validate() error {
	if !slices.Contains(changes, c.Change) {
		return invalid("consent: change %q", clip(c.Change))
	}
	switch c.Change {
	case ChangeGrant, ChangeDeny, ChangeWithdraw:
		if _, err := purpose.Parse(c.Purpose); err != nil {
			return invalid("consent: purpose %q", clip(c.Purpose))
		}
	default:
		if c.Purpose != "" {
			return invalid("consent: a %s change names no purpose", c.Change)
		}
	}
	if c.Source != "" && !isName(c.Source, 64) {
		return invalid("consent: source %q", clip(c.Source))
	}
	if c.PolicyVersion != "" && !isVersion(c.PolicyVersion) {
		return invalid("consent: policy_version is not 1-%d bytes of text", MaxVersionLen)
	}
	if c.Version < 0 {
		return invalid("consent: version %d", c.Version)
	}
	if c.ReceiptID != "" && !isID(c.ReceiptID) {
		return invalid("consent: receipt_id %q", clip(c.ReceiptID))
	}
	if c.SubjectRef != "" && !IsSubjectRef(c.SubjectRef) {
		return invalid("consent: subject_ref is not a ledger mark")
	}
	if (c.Change == ChangeImport) != (c.Import != nil) {
		return invalid("consent: import counts go with change import, and only with it")
	}
	if im := c.Import; im != nil {
		if c.SubjectRef != "" || c.ReceiptID != "" {
			return invalid("consent: an import names no subject or receipt")
		}
		if im.Accepted < 0 || im.Rejected < 0 || im.Erased < 0 || im.Part < 1 || im.Parts < im.Part {
			return invalid("consent: import counts %+v", *im)
		}
		n := 0
		for ch, k := range im.Changes {
			if !slices.Contains(changes[:5], ch) || k < 0 {
				return invalid("consent: import changes %q: %d", clip(ch), k)
			}
			n += k
		}
		if n != im.Accepted {
			return invalid("consent: import changes add up to %d, accepted %d", n, im.Accepted)
		}
	}
	return nil
}

var (
	requestKinds    = []string{RequestErasure, RequestAccess, RequestPortability}
	requestStatuses = []string{StatusReceived, StatusVerified, StatusInProgress, StatusDone, StatusRefused, StatusExtended}
)

func (s *RequestStatus) validate() error {
	switch {
	case !isID(s.ID):
		return invalid("request: id %q", clip(s.ID))
	case !slices.Contains(requestKinds, s.Kind):
		return invalid("request: kind %q", clip(s.Kind))
	case !isName(s.Regime, 32):
		return invalid("request: regime %q", clip(s.Regime))
	case !slices.Contains(requestStatuses, s.Status):
		return invalid("request: status %q", clip(s.Status))
	case s.Reason != "" && !isName(s.Reason, 64):
		return invalid("request: reason %q (a code, not text)", clip(s.Reason))
	case (s.Status == StatusRefused || s.Status == StatusExtended) && s.Reason == "":
		return invalid("request: a %s request gives its reason", s.Status)
	case s.DeadlineMS <= 0:
		return invalid("request: deadline_ms %d", s.DeadlineMS)
	case s.SubjectRef != "" && !IsSubjectRef(s.SubjectRef):
		return invalid("request: subject_ref is not a ledger mark")
	}
	return nil
}

func (e *ErasureSummary) validate() error {
	switch {
	case e.Request != "" && !isID(e.Request):
		return invalid("erasure: request %q", clip(e.Request))
	case !IsSubjectRef(e.SubjectRef):
		return invalid("erasure: subject_ref is not a ledger mark")
	case e.KeysShredded < 0 || e.KeyTombstones < 0 || e.ConsentTombstones < 0 || e.Notices < 0:
		return invalid("erasure: negative count")
	}
	return nil
}

// IsSubjectRef reports whether s has the form of an erasure ledger mark:
// MarkPrefix and 22 characters of unpadded base64url (128 bits).
func IsSubjectRef(s string) bool {
	rest, ok := strings.CutPrefix(s, MarkPrefix)
	if !ok || len(rest) != 22 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	// The last character carries 2 bits of the 128: its low 4 bits are 0.
	return strings.IndexByte("AQgw", rest[21]) >= 0
}

func isDenial(name string) bool {
	for _, r := range consent.DenialReasons() {
		if r.String() == name {
			return true
		}
	}
	return false
}

// isName: 1-max bytes of [a-z0-9_.-], starting with a letter or digit.
func isName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') || i == 0 && (c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isTopicish: a Kafka topic name (1-249 bytes of [a-zA-Z0-9._-]).
func isTopicish(s string) bool {
	if s == "" || len(s) > 249 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isID: a receipt or request id, 1-128 bytes of [A-Za-z0-9._:-].
func isID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// isText: 1-max bytes of valid UTF-8 without control characters.
func isText(s string, max int) bool {
	if strings.TrimSpace(s) == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// MaxVersionLen bounds a policy version in a record.
const MaxVersionLen = 256

// ValidVersion reports whether s is a policy version the format takes:
// 1-MaxVersionLen bytes of valid UTF-8, not blank (JSON escapes what
// needs it).
func ValidVersion(s string) bool {
	return strings.TrimSpace(s) != "" && len(s) <= MaxVersionLen && utf8.ValidString(s)
}

func isVersion(s string) bool { return ValidVersion(s) }

// clip shortens a value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}
