// Package consentapi is the HTTP API to set, withdraw and read consent and
// its history, to record a subject's jurisdiction and Global Privacy
// Control signal (the profile), and to import consents in bulk
// (docs/openapi.yaml). A change is accepted once it is durably in the
// consent topic (the source of truth); consent-sync then materialises it
// into Redis, where reads come from. Input is validated before anything is
// written: an unknown purpose, state, jurisdiction or source, an empty or
// oversized subject, a malformed body all get a 4xx with a clear message
// that does not echo the subject, and nothing is written.
//
// A write on a subject's routes (set, withdraw, profile) that carries the
// request header "Sec-GPC: 1" (a privacy center's browser sending the
// Global Privacy Control signal) also records GPC on for the subject, as a
// subject-level change with source gpc_signal.
//
// Every route is guarded (internal/httpauth): reads need the scope
// consent:read, changes consent:write, the bulk import consent:import; the
// authenticated principal is recorded with every change it makes (the
// consent record's pp-principal header, the history's changed_by).
//
// With Config.AuditTopic set, every accepted change also writes an audit
// record (internal/audit, kind consent: the change, purpose, source,
// versions, receipt and principal; the subject only as its erasure-ledger
// mark, with Config.Marks) in the same ProduceSync as the change; a bulk
// import writes one per produced part, with its counts. The API's
// producer is not transactional: the two are written in one call, not
// atomically, and a failure of either answers 503 ("retry"; a retry
// writes the change again, which its timestamp makes idempotent, and a
// second audit record).
//
// It imports consent, consentlog, consentredis (the store it reads),
// consentsync (FormatMillis), httpauth, purpose, audit (the audit record
// format) and franz-go's kgo (to produce).
package consentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentstring"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentsync"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
)

// Limits on request bodies.
const (
	MaxBody       = 64 << 10
	MaxImportBody = 64 << 20
)

// Config configures a Server.
type Config struct {
	// Producer writes to Topic (acks=all). It must use consentlog.Partitioner.
	Producer *kgo.Client
	Topic    string
	Store    *consentredis.RedisStore
	// Guard authenticates and authorises every route; required (a guard
	// with httpauth.Mode none lets everyone in, as "anonymous").
	Guard *httpauth.Guard
	// Ledger, when set, refuses changes for erased subjects (an erasure
	// wins over a grant racing it: 409 with reason erased).
	Ledger Ledger
	// AuditTopic, when set, receives an audit record per accepted change
	// (privacy.audit; the producer writes it with the change).
	AuditTopic string
	// Service names the writer in the audit records (their key); default
	// "consent-api".
	Service string
	// Marks, when set, gives the subject reference of the audit records:
	// the erasure ledger's mark (internal/erasure Ledger, with
	// PIPELINE_ERASURE_KEY_FILE); without it they name no subject.
	Marks Marks
	// ConsentStrings, when set, maps TCF and GPP consent strings to the
	// purposes (POST .../consent-strings, and tc_string / gpp_string in
	// imports); without it they are refused.
	ConsentStrings *consentstring.Mapping
	Log            *slog.Logger
	Now            func() time.Time
}

// Marks computes subjects' erasure-ledger marks (internal/erasure's
// Ledger, through wiring).
type Marks interface {
	Mark(subject string) string
}

// Ledger tells which subjects were erased (internal/erasure's ledger,
// through wiring). It is safe for concurrent use.
type Ledger interface {
	Erased(ctx context.Context, subjects []string) ([]bool, error)
}

// Server serves the consent API.
type Server struct{ cfg Config }

// New returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Producer == nil || cfg.Topic == "" || cfg.Store == nil || cfg.Guard == nil {
		return nil, errors.New("consentapi: Producer, Topic, Store and Guard are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Service == "" {
		cfg.Service = "consent-api"
	}
	return &Server{cfg: cfg}, nil
}

// Handler returns the API routes (add /metrics, /healthz, /readyz around it).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.cfg.Guard.Route(rt.pattern, rt.scope, rt.h))
	}
	return mux
}

// HandlerAs returns the API routes served in-process as p, without the
// guard: the privacy center (internal/privacycenter) calls them for the
// customer its link authenticated, so every validation, ledger check,
// GPC rule and audit record of the API applies to its changes too. It
// must never be mounted on a listener.
func (s *Server) HandlerAs(p httpauth.Principal) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, as(p, rt.scope, rt.h))
	}
	return mux
}

// as runs h with p as the request's principal, if p holds the route's
// scope (403 otherwise, as the guard would answer).
func as(p httpauth.Principal, scope httpauth.Scope, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.Allows(scope) {
			fail(w, http.StatusForbidden, fmt.Sprintf("the principal lacks the scope %s", scope))
			return
		}
		h(w, r.WithContext(httpauth.WithPrincipal(r.Context(), p)))
	})
}

type route struct {
	pattern string
	scope   httpauth.Scope
	h       http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"PUT /v1/subjects/{subject}/consents/{purpose}", httpauth.ScopeConsentWrite, s.set},
		{"POST /v1/subjects/{subject}/consents/{purpose}/withdraw", httpauth.ScopeConsentWrite, s.withdraw},
		{"PUT /v1/subjects/{subject}/profile", httpauth.ScopeConsentWrite, s.profile},
		{"GET /v1/subjects/{subject}/consents", httpauth.ScopeConsentRead, s.get},
		{"GET /v1/subjects/{subject}/consents/history", httpauth.ScopeConsentRead, s.history},
		{"POST /v1/subjects/{subject}/consent-strings", httpauth.ScopeConsentWrite, s.consentString},
		{"POST /v1/consents/import", httpauth.ScopeConsentImport, s.importBulk},
	}
}

// principal names the request's authenticated caller.
func principal(r *http.Request) string {
	p, _ := httpauth.PrincipalFrom(r.Context())
	return p.Name
}

// Receipt is the answer to an accepted choice (set, withdraw).
type Receipt struct {
	ReceiptID  string `json:"receipt_id"`
	SubjectID  string `json:"subject_id"`
	Purpose    string `json:"purpose"`
	State      string `json:"state"`
	AcceptedAt string `json:"accepted_at"`
	// GPC is the choice's GPC value, absent when it gave none.
	GPC *bool `json:"gpc,omitempty"`
	// GPCSignalReceiptID is the receipt of the GPC signal recorded because
	// the request carried "Sec-GPC: 1"; absent otherwise.
	GPCSignalReceiptID string `json:"gpc_signal_receipt_id,omitempty"`
}

// ProfileReceipt is the answer to an accepted profile change.
type ProfileReceipt struct {
	ReceiptID    string `json:"receipt_id"`
	SubjectID    string `json:"subject_id"`
	Jurisdiction string `json:"jurisdiction"`
	// GPC is the change's GPC value, absent when it gave none.
	GPC                *bool  `json:"gpc,omitempty"`
	AcceptedAt         string `json:"accepted_at"`
	GPCSignalReceiptID string `json:"gpc_signal_receipt_id,omitempty"`
}

// SecGPCHeader is the request header of the Global Privacy Control signal;
// the value "1" means the subject's browser sends it.
const SecGPCHeader = "Sec-GPC"

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) { writeJSON(w, code, apiError{msg}) }

// decodeBody decodes a JSON body strictly; an empty body is allowed when
// optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody))
		return false
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "malformed JSON body: "+jsonProblem(err))
		return false
	}
	if dec.More() {
		fail(w, http.StatusBadRequest, "malformed JSON body: trailing data")
		return false
	}
	return true
}

// jsonProblem describes a JSON error without echoing input values.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	msg := err.Error()
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

type setBody struct {
	State         string `json:"state"`
	Jurisdiction  string `json:"jurisdiction"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp"`
	GPC           *bool  `json:"gpc"`
}

type profileBody struct {
	Jurisdiction  string `json:"jurisdiction"`
	GPC           *bool  `json:"gpc"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp"`
}

func gpcText(b *bool) consentlog.GPCText {
	if b == nil {
		return ""
	}
	return consentlog.GPCTextOf(consent.GPCOf(*b))
}

func gpcPtr(v consent.GPCValue) *bool {
	if !v.Given() {
		return nil
	}
	on := v == consent.GPCOn
	return &on
}

func (s *Server) set(w http.ResponseWriter, r *http.Request) {
	var b setBody
	if !decodeBody(w, r, &b, false) {
		return
	}
	s.accept(w, r, consentlog.Input{SubjectID: r.PathValue("subject"), Purpose: r.PathValue("purpose"), State: b.State,
		Jurisdiction: b.Jurisdiction, Source: b.Source, PolicyVersion: b.PolicyVersion, Timestamp: b.Timestamp, GPC: gpcText(b.GPC)})
}

// profile records a subject-level change: the jurisdiction and/or the GPC
// signal, no per-purpose choice.
func (s *Server) profile(w http.ResponseWriter, r *http.Request) {
	var b profileBody
	if !decodeBody(w, r, &b, false) {
		return
	}
	s.accept(w, r, consentlog.Input{SubjectID: r.PathValue("subject"), Jurisdiction: b.Jurisdiction, Source: b.Source,
		PolicyVersion: b.PolicyVersion, Timestamp: b.Timestamp, GPC: gpcText(b.GPC)})
}

func (s *Server) withdraw(w http.ResponseWriter, r *http.Request) {
	var b setBody
	if !decodeBody(w, r, &b, true) {
		return
	}
	if b.State != "" {
		fail(w, http.StatusBadRequest, "withdraw takes no state")
		return
	}
	if b.Source == "" {
		b.Source = string(consentlog.WebForm)
	}
	if b.PolicyVersion == "" {
		b.PolicyVersion = "withdrawal"
	}
	s.accept(w, r, consentlog.Input{SubjectID: r.PathValue("subject"), Purpose: r.PathValue("purpose"), State: "withdrawn",
		Jurisdiction: b.Jurisdiction, Source: b.Source, PolicyVersion: b.PolicyVersion, Timestamp: b.Timestamp, GPC: gpcText(b.GPC)})
}

// notErased checks the erasure ledger (when configured): an erased
// subject's change is answered 409, an unavailable ledger 503, and false
// means nothing may be written.
func (s *Server) notErased(w http.ResponseWriter, r *http.Request, subject string) bool {
	if s.cfg.Ledger == nil {
		return true
	}
	erased, err := s.cfg.Ledger.Erased(r.Context(), []string{subject})
	if err != nil {
		s.cfg.Log.Error("erasure ledger unavailable", "err", err)
		fail(w, http.StatusServiceUnavailable, "the erasure ledger is unavailable; nothing was recorded, retry")
		return false
	}
	if erased[0] {
		fail(w, http.StatusConflict, "reason erased: the subject was erased; no consent is recorded for it again")
		return false
	}
	return true
}

// secGPC reports whether the request carries "Sec-GPC: 1".
func secGPC(r *http.Request) bool { return strings.TrimSpace(r.Header.Get(SecGPCHeader)) == "1" }

// accept validates in, adds the GPC signal of a "Sec-GPC: 1" header,
// writes both and answers with the receipt.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, in consentlog.Input) {
	now := s.cfg.Now()
	c, err := in.Change(now)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	c.Principal = principal(r)
	if !s.notErased(w, r, c.SubjectID) {
		return
	}
	changes := []consentlog.Change{c}
	var signal consentlog.Change
	if secGPC(r) {
		if c.GPC == consent.GPCOff {
			fail(w, http.StatusBadRequest, "gpc false contradicts the request header Sec-GPC: 1")
			return
		}
		signal = consentlog.Change{SubjectID: c.SubjectID, Purpose: consentlog.SubjectLevel, GPC: consent.GPCOn,
			Source: consentlog.GPCSignal, PolicyVersion: c.PolicyVersion, Timestamp: now.UTC().Truncate(time.Millisecond),
			ReceiptID: consentlog.NewReceiptID(), Principal: c.Principal}
		if err := signal.Validate(now); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		changes = append(changes, signal)
	}
	audits, err := s.auditChanges(now, c.Principal, changes)
	if err != nil {
		s.cfg.Log.Error("consent change not written: its audit record", "err", err)
		fail(w, http.StatusInternalServerError, "the change's audit record could not be made; nothing was recorded")
		return
	}
	if err := s.produce(r.Context(), changes, audits...); err != nil {
		s.cfg.Log.Error("consent change not written", "err", err)
		fail(w, http.StatusServiceUnavailable, "the consent log is unavailable; nothing was recorded, retry")
		return
	}
	accepted := s.cfg.Now().UTC().Format(time.RFC3339Nano)
	if c.IsSubjectLevel() {
		writeJSON(w, http.StatusAccepted, ProfileReceipt{ReceiptID: c.ReceiptID, SubjectID: c.SubjectID, Jurisdiction: c.Jurisdiction.String(),
			GPC: gpcPtr(c.GPC), AcceptedAt: accepted, GPCSignalReceiptID: signal.ReceiptID})
		return
	}
	writeJSON(w, http.StatusAccepted, Receipt{ReceiptID: c.ReceiptID, SubjectID: c.SubjectID, Purpose: c.Purpose.String(),
		State: c.State.String(), AcceptedAt: accepted, GPC: gpcPtr(c.GPC), GPCSignalReceiptID: signal.ReceiptID})
}

// produce writes changes to the consent topic (with their subject-level
// companions, see consentlog.Records) and the audit records with them, in
// one ProduceSync, and waits for every ack.
func (s *Server) produce(ctx context.Context, changes []consentlog.Change, audits ...*kgo.Record) error {
	recs, err := consentlog.Records(s.cfg.Topic, changes...)
	if err != nil {
		return err
	}
	recs = append(recs, audits...)
	if err := s.cfg.Producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("consentapi: produce %d records: %w", len(recs), err)
	}
	return nil
}

// State is the answer of GET .../consents. A subject with only a
// subject-level record has every purpose unset.
type State struct {
	SubjectID    string `json:"subject_id"`
	Jurisdiction string `json:"jurisdiction"`
	// JurisdictionUpdatedAt is when the jurisdiction was recorded; empty
	// when it never was (or for a record written before that was kept).
	JurisdictionUpdatedAt string `json:"jurisdiction_updated_at"`
	// GPC is true when a Global Privacy Control signal is recorded.
	GPC bool `json:"gpc"`
	// GPCUpdatedAt is when the GPC value (on or off) was recorded; empty
	// when never.
	GPCUpdatedAt string                  `json:"gpc_updated_at"`
	Version      int64                   `json:"version"`
	Purposes     map[string]PurposeState `json:"purposes"`
}

// PurposeState is one purpose's state.
type PurposeState struct {
	State     string `json:"state"`
	UpdatedAt string `json:"updated_at"`
}

func (s *Server) subject(w http.ResponseWriter, r *http.Request) (string, bool) {
	sub := r.PathValue("subject")
	if err := consentlog.ValidateSubject(sub); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return sub, true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subject(w, r)
	if !ok {
		return
	}
	out := make([]consent.Lookup, 1)
	if err := s.cfg.Store.Lookup(r.Context(), []string{sub}, out); err != nil {
		code := http.StatusServiceUnavailable
		fail(w, code, "the consent store cannot answer right now (down or being rebuilt); retry")
		return
	}
	l := out[0]
	if !l.Found {
		fail(w, http.StatusNotFound, "no consent recorded for this subject")
		return
	}
	if l.Corrupt {
		fail(w, http.StatusInternalServerError, "the stored consent record is unreadable; a rebuild restores it")
		return
	}
	st := State{SubjectID: sub, Jurisdiction: l.Record.Jurisdiction.String(), JurisdictionUpdatedAt: consentsync.FormatMillis(l.Record.JurisdictionMs),
		GPC: l.Record.GPC, GPCUpdatedAt: consentsync.FormatMillis(l.Record.GPCMs), Version: l.Record.Version, Purposes: map[string]PurposeState{}}
	for _, p := range purpose.All {
		ps := l.Record.Purposes[p]
		st.Purposes[p.String()] = PurposeState{State: ps.State.String(), UpdatedAt: consentsync.FormatMillis(ps.UpdatedMs)}
	}
	writeJSON(w, http.StatusOK, st)
}

// History is the answer of GET .../consents/history.
type History struct {
	SubjectID string                 `json:"subject_id"`
	Changes   []consent.HistoryEntry `json:"changes"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subject(w, r)
	if !ok {
		return
	}
	changes, err := s.cfg.Store.History(r.Context(), sub)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "the consent store cannot answer right now; retry")
		return
	}
	writeJSON(w, http.StatusOK, History{SubjectID: sub, Changes: changes})
}

// ImportResult is the answer of an import.
type ImportResult struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	// Erased counts the changes dropped because their subject was erased.
	Erased int                    `json:"erased"`
	Errors []consentlog.LineError `json:"errors"`
}

func (s *Server) importBulk(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(w, r.Body, MaxImportBody)
	var changes []consentlog.Change
	var bad []consentlog.LineError
	var err error
	var opts []consentlog.ParseOption
	if e := s.expander(); e != nil {
		opts = append(opts, consentlog.WithConsentStrings(e))
	}
	switch mt {
	case "text/csv":
		changes, bad, err = consentlog.ParseCSV(body, s.cfg.Now(), opts...)
	case "application/x-ndjson", "application/jsonl", "application/jsonlines":
		changes, bad, err = consentlog.ParseJSONLines(body, s.cfg.Now(), opts...)
	default:
		fail(w, http.StatusUnsupportedMediaType, "import takes text/csv or application/x-ndjson")
		return
	}
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	who := principal(r)
	for i := range changes {
		changes[i].Principal = who
	}
	erased, err := s.dropErased(r.Context(), &changes)
	if err != nil {
		s.cfg.Log.Error("erasure ledger unavailable", "err", err)
		fail(w, http.StatusServiceUnavailable, "the erasure ledger is unavailable; nothing was recorded, retry")
		return
	}
	parts := max(1, (len(changes)+importPart-1)/importPart)
	for part, i := 1, 0; part <= parts; part, i = part+1, i+importPart {
		chunk := changes[i:min(i+importPart, len(changes))]
		audits, err := s.auditImport(who, chunk, len(bad), erased, part, parts)
		if err != nil {
			s.cfg.Log.Error("import not written: its audit record", "err", err, "written", i)
			fail(w, http.StatusInternalServerError, fmt.Sprintf("the import's audit record could not be made after %d changes were recorded", i))
			return
		}
		if err := s.produce(r.Context(), chunk, audits...); err != nil {
			s.cfg.Log.Error("import interrupted", "err", err, "written", i)
			fail(w, http.StatusServiceUnavailable, fmt.Sprintf("the consent log became unavailable after %d changes were recorded; retry the rest", i))
			return
		}
	}
	if bad == nil {
		bad = []consentlog.LineError{}
	}
	writeJSON(w, http.StatusOK, ImportResult{Accepted: len(changes), Rejected: len(bad), Erased: erased, Errors: bad})
}

// dropErased removes the changes of erased subjects and counts them.
func (s *Server) dropErased(ctx context.Context, changes *[]consentlog.Change) (int, error) {
	if s.cfg.Ledger == nil || len(*changes) == 0 {
		return 0, nil
	}
	idx := map[string]int{}
	var subjects []string
	for _, c := range *changes {
		if _, ok := idx[c.SubjectID]; !ok {
			idx[c.SubjectID] = len(subjects)
			subjects = append(subjects, c.SubjectID)
		}
	}
	erased, err := s.cfg.Ledger.Erased(ctx, subjects)
	if err != nil {
		return 0, err
	}
	kept := (*changes)[:0]
	n := 0
	for _, c := range *changes {
		if erased[idx[c.SubjectID]] {
			n++
			continue
		}
		kept = append(kept, c)
	}
	*changes = kept
	return n, nil
}

// expander reads consent strings with the configured mapping; nil without
// one.
func (s *Server) expander() consentlog.Expander {
	m := s.cfg.ConsentStrings
	if m == nil {
		return nil
	}
	return func(kind, str string) (consentlog.Expansion, error) {
		r, err := m.Expand(consentstring.Kind(kind), str)
		return consentlog.Expansion{States: r.States, GPC: r.GPC, LastUpdated: r.LastUpdated}, err
	}
}

type consentStringBody struct {
	TCString      string `json:"tc_string"`
	GPPString     string `json:"gpp_string"`
	Jurisdiction  string `json:"jurisdiction"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp"`
}

// StringReceipt is the answer to an accepted consent string: the choices
// it made, each with its receipt, and what the string is (no personal
// data: its CMP, policy version and sections).
type StringReceipt struct {
	SubjectID string            `json:"subject_id"`
	Kind      string            `json:"kind"`
	States    map[string]string `json:"states"`
	GPC       bool              `json:"gpc"`
	Receipts  []string          `json:"receipt_ids"`
	Summary   map[string]any    `json:"summary"`
	// MappingVersion is the version of the mapping that read it.
	MappingVersion string `json:"mapping_version"`
	AcceptedAt     string `json:"accepted_at"`
}

// MaxStringBody bounds a consent-string request (the string and a few
// fields).
const MaxStringBody = consentstring.MaxLen + 4<<10

// consentString records the choices of a TCF or GPP consent string, each
// change keeping the string as its evidence.
func (s *Server) consentString(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ConsentStrings == nil {
		fail(w, http.StatusNotImplemented, "consent strings are not configured on this API")
		return
	}
	var b consentStringBody
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxStringBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxStringBody))
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || dec.More() {
		fail(w, http.StatusBadRequest, `malformed JSON body: want {"tc_string": "..."} or {"gpp_string": "..."}`)
		return
	}
	if b.TCString == "" && b.GPPString == "" {
		fail(w, http.StatusBadRequest, "give tc_string or gpp_string")
		return
	}
	if b.Source == "" {
		b.Source = string(consentlog.WebForm)
	}
	if b.PolicyVersion == "" {
		b.PolicyVersion = "consent-strings:" + s.cfg.ConsentStrings.Version
	}
	now := s.cfg.Now()
	in := consentlog.Input{SubjectID: r.PathValue("subject"), Jurisdiction: b.Jurisdiction, Source: b.Source, PolicyVersion: b.PolicyVersion,
		Timestamp: b.Timestamp, TCString: b.TCString, GPPString: b.GPPString}
	changes, err := in.Changes(now, s.expander())
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	kind := consentstring.TCF
	if b.GPPString != "" {
		kind = consentstring.GPP
	}
	res, _ := s.cfg.ConsentStrings.Expand(kind, b.TCString+b.GPPString) // decoded above: for the summary
	who := principal(r)
	for i := range changes {
		changes[i].Principal = who
	}
	if !s.notErased(w, r, in.SubjectID) {
		return
	}
	audits, err := s.auditChanges(now, who, changes)
	if err != nil {
		s.cfg.Log.Error("consent string not written: its audit records", "err", err)
		fail(w, http.StatusInternalServerError, "the changes' audit records could not be made; nothing was recorded")
		return
	}
	if err := s.produce(r.Context(), changes, audits...); err != nil {
		s.cfg.Log.Error("consent string not written", "err", err)
		fail(w, http.StatusServiceUnavailable, "the consent log is unavailable; nothing was recorded, retry")
		return
	}
	out := StringReceipt{SubjectID: in.SubjectID, Kind: string(kind), States: map[string]string{}, Summary: res.Summary,
		MappingVersion: s.cfg.ConsentStrings.Version, AcceptedAt: s.cfg.Now().UTC().Format(time.RFC3339Nano)}
	for _, c := range changes {
		out.Receipts = append(out.Receipts, c.ReceiptID)
		if c.IsSubjectLevel() {
			out.GPC = true
		} else {
			out.States[c.Purpose.String()] = c.State.String()
		}
	}
	writeJSON(w, http.StatusAccepted, out)
}
