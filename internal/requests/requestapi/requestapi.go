// Package requestapi is the HTTP API of data-subject requests
// (docs/openapi.yaml), served beside the consent API by 'pipeline run
// consent-api': file an erasure, access or portability request (our shape
// or the Data Rights Protocol's), read its status and deadline, list the
// open requests by deadline, verify, extend or refuse one, and download an
// access request's export document.
//
// A request is filed in the store first (requests/requestredis: an id is
// taken once, so a replay is answered with the request it names) and then
// logged to privacy.requests, where 'pipeline run requests'
// (requests/fulfil) carries it out. Filing for an erased subject is
// refused (409, reason erased) and stores nothing; an open request of the
// same kind for the same subject is answered instead of filing a
// duplicate.
//
// Every route is guarded (internal/httpauth): reads need requests:read,
// changes requests:write; the principal is recorded with every change.
// Errors never echo a subject id.
//
// Every change is audited (privacy.audit, with the principal and the
// subject as its ledger mark) in the same produce as its log record.
//
// It imports requests, requestredis, audit, httpauth and franz-go's kgo
// (to produce).
package requestapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Ledger tells which subjects were erased (internal/erasure Check).
type Ledger interface {
	Erased(ctx context.Context, subjects []string) ([]bool, error)
}

// Config configures a Server.
type Config struct {
	// Producer writes to Topic (privacy.requests), acks=all.
	Producer *kgo.Client
	Topic    string
	Store    *requestredis.Store
	Guard    *httpauth.Guard
	// Ledger, when set, refuses requests for erased subjects.
	Ledger Ledger
	// AuditTopic, when set, receives an audit record of every change
	// (privacy.audit), in the same produce as the change; Mark gives the
	// subject's erasure-ledger mark for it (nil: no subject reference).
	AuditTopic string
	Mark       func(subject string) string
	// DefaultRegime applies when a request names none
	// (PIPELINE_REQUEST_DEFAULT_REGIME, default gdpr).
	DefaultRegime requests.Regime
	Log           *slog.Logger
	Now           func() time.Time
}

// Server serves the requests API.
type Server struct{ cfg Config }

// New returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Producer == nil || cfg.Topic == "" || cfg.Store == nil || cfg.Guard == nil {
		return nil, errors.New("requestapi: Producer, Topic, Store and Guard are required")
	}
	if cfg.DefaultRegime == "" {
		cfg.DefaultRegime = requests.GDPR
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}, nil
}

// Register adds the routes to mux (beside the consent API's: its
// patterns are more specific than the consent API's "/v1/").
func (s *Server) Register(mux *http.ServeMux) {
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.cfg.Guard.Route(rt.pattern, rt.scope, rt.h))
	}
}

// RegisterAs adds the routes to mux served in-process as p, without the
// guard (the privacy center's calls for the customer its link
// authenticated; see consentapi.Server.HandlerAs). mux must never be
// mounted on a listener.
func (s *Server) RegisterAs(mux *http.ServeMux, p httpauth.Principal) {
	for _, rt := range s.routes() {
		h, scope := rt.h, rt.scope
		mux.Handle(rt.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !p.Allows(scope) { // as the guard would answer
				fail(w, http.StatusForbidden, fmt.Sprintf("the principal lacks the scope %s", scope))
				return
			}
			h(w, r.WithContext(httpauth.WithPrincipal(r.Context(), p)))
		}))
	}
}

type route struct {
	pattern string
	scope   httpauth.Scope
	h       http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"POST /v1/subjects/{subject}/requests", httpauth.ScopeRequestsWrite, s.file("")},
		{"POST /v1/subjects/{subject}/erasure", httpauth.ScopeRequestsWrite, s.file(requests.Erasure)},
		{"POST /v1/subjects/{subject}/export", httpauth.ScopeRequestsWrite, s.file(requests.Access)},
		{"GET /v1/subjects/{subject}/requests", httpauth.ScopeRequestsRead, s.bySubject},
		{"GET /v1/requests", httpauth.ScopeRequestsRead, s.list},
		{"GET /v1/requests/{id}", httpauth.ScopeRequestsRead, s.get},
		{"GET /v1/requests/{id}/export", httpauth.ScopeRequestsRead, s.download},
		{"POST /v1/requests/{id}/verify", httpauth.ScopeRequestsWrite, s.change("verify")},
		{"POST /v1/requests/{id}/extend", httpauth.ScopeRequestsWrite, s.change("extend")},
		{"POST /v1/requests/{id}/refuse", httpauth.ScopeRequestsWrite, s.change("refuse")},
	}
}

type apiError struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) { writeJSON(w, code, apiError{Error: msg}) }

func principal(r *http.Request) string {
	p, _ := httpauth.PrincipalFrom(r.Context())
	return p.Name
}

// Filed is the answer to a filing: the request, and whether it was a
// replay of one already filed or an open duplicate of it.
type Filed struct {
	requests.Request
	// Replay: the id was filed before; this is that request.
	Replay bool `json:"replay,omitempty"`
	// Duplicate: an open request of the same kind for the subject was
	// answered instead of filing another.
	Duplicate bool `json:"duplicate,omitempty"`
}

// validSubject checks a subject id from the path (the consent API's rules).
func validSubject(s string) error {
	switch {
	case s == "":
		return errors.New("subject id is empty")
	case len(s) > requests.MaxSubject:
		return fmt.Errorf("subject id longer than %d bytes", requests.MaxSubject)
	case strings.ContainsFunc(s, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return errors.New("subject id has control characters")
	}
	return nil
}

func (s *Server) file(kind requests.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sub := r.PathValue("subject")
		if err := validSubject(sub); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody))
			return
		}
		f, err := requests.ParseFiling(body, kind, s.cfg.DefaultRegime)
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		ctx := r.Context()
		if s.cfg.Ledger != nil {
			erased, err := s.cfg.Ledger.Erased(ctx, []string{sub})
			if err != nil {
				fail(w, http.StatusServiceUnavailable, "the erasure ledger is unavailable; retry")
				return
			}
			if erased[0] {
				writeJSON(w, http.StatusConflict, apiError{Error: "the subject was erased: the pipeline holds nothing about it, and no request for it is filed", Reason: "erased"})
				return
			}
		}
		id := f.ID
		if id == "" {
			// Without an idempotency key, an open request of the same
			// kind for the subject answers a repeated filing.
			open, err := s.cfg.Store.BySubject(ctx, sub)
			if err != nil {
				fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
				return
			}
			for _, o := range open {
				if o.Open() && o.Kind == f.Kind {
					s.answer(w, r, http.StatusOK, Filed{Request: o, Duplicate: true}, f.Source)
					return
				}
			}
			id = requests.NewID()
		}
		req, err := requests.New(id, f.Kind, sub, f.Regime, f.Source, principal(r), f.Verified, s.cfg.Now())
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		req.AgentRequestID, req.StatusCallback = f.AgentRequestID, f.StatusCallback
		created, old, err := s.cfg.Store.Create(ctx, req)
		switch {
		case err != nil:
			fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
			return
		case !created && !old.Same(req):
			fail(w, http.StatusConflict, "this request id names another request")
			return
		case !created:
			// A replay: log it again (a first filing may have failed to
			// log after storing), answer what is filed.
			if err := s.log(ctx, old, ""); err != nil {
				fail(w, http.StatusServiceUnavailable, "privacy.requests is unavailable; retry with the same id")
				return
			}
			s.answer(w, r, http.StatusOK, Filed{Request: old, Replay: true}, f.Source)
			return
		}
		if err := s.log(ctx, req, principal(r)); err != nil {
			_ = s.cfg.Store.Delete(context.WithoutCancel(ctx), req)
			fail(w, http.StatusServiceUnavailable, "privacy.requests is unavailable; nothing was filed, retry")
			return
		}
		s.cfg.Log.Info("data-subject request filed", "request", req.ID, "kind", req.Kind, "regime", req.Regime, "principal", req.Principal)
		w.Header().Set("Location", "/v1/requests/"+req.ID)
		s.answer(w, r, http.StatusAccepted, Filed{Request: req}, f.Source)
	}
}

// answer writes a request in our shape, or the Data Rights Protocol's
// when it was filed in it (or ?shape=drp asks for it).
func (s *Server) answer(w http.ResponseWriter, r *http.Request, code int, f Filed, source string) {
	if source == "drp" || r.URL.Query().Get("shape") == "drp" {
		writeJSON(w, code, f.DRP())
		return
	}
	writeJSON(w, code, f)
}

// log writes the request's current state to privacy.requests and, for a
// change made by who (not a replay: who empty), its audit record, in one
// produce.
func (s *Server) log(ctx context.Context, req requests.Request, who string) error {
	recs := []*kgo.Record{{Topic: s.cfg.Topic, Key: []byte(req.ID), Value: req.Marshal()}}
	if who != "" && s.cfg.AuditTopic != "" {
		mark := ""
		if s.cfg.Mark != nil && req.Subject != "" {
			mark = s.cfg.Mark(req.Subject)
		}
		ar := req.Audit(s.cfg.Now(), "consent-api", who, mark)
		b, err := audit.Encode(ar)
		if err != nil {
			return fmt.Errorf("requestapi: audit record: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: s.cfg.AuditTopic, Key: ar.Key(), Value: b})
	}
	return s.cfg.Producer.ProduceSync(ctx, recs...).FirstErr()
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (requests.Request, bool) {
	id := r.PathValue("id")
	if !requests.ValidID(id) {
		fail(w, http.StatusBadRequest, "not a request id")
		return requests.Request{}, false
	}
	req, err := s.cfg.Store.Get(r.Context(), id)
	switch {
	case errors.Is(err, requestredis.ErrNotFound):
		fail(w, http.StatusNotFound, "no such request")
		return requests.Request{}, false
	case err != nil:
		fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
		return requests.Request{}, false
	}
	return req, true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	if req, ok := s.lookup(w, r); ok {
		s.answer(w, r, http.StatusOK, Filed{Request: req}, "")
	}
}

// List is the answer of the list routes.
type List struct {
	Requests []requests.Request `json:"requests"`
}

func (s *Server) bySubject(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	if err := validSubject(sub); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	rs, err := s.cfg.Store.BySubject(r.Context(), sub)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
		return
	}
	writeJSON(w, http.StatusOK, List{Requests: orEmpty(rs)})
}

// ParseWithin reads a duration with a day unit as well ("7d", "36h").
func ParseWithin(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil || n < 0 || n > 3650 {
			return 0, fmt.Errorf("due_within %q: want a number of days (7d) or a duration (36h)", s)
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("due_within %q: want a number of days (7d) or a duration (36h)", s)
	}
	return d, nil
}

// list: the open requests, earliest deadline first (?due_within=7d,
// ?limit=N, default 1000).
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	within := time.Duration(-1)
	if v := r.URL.Query().Get("due_within"); v != "" {
		d, err := ParseWithin(v)
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		within = d
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			fail(w, http.StatusBadRequest, "limit: want 1 to 10000")
			return
		}
		limit = n
	}
	rs, err := s.cfg.Store.Due(r.Context(), s.cfg.Now(), within, limit)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
		return
	}
	writeJSON(w, http.StatusOK, List{Requests: orEmpty(rs)})
}

func orEmpty(rs []requests.Request) []requests.Request {
	if rs == nil {
		return []requests.Request{}
	}
	return rs
}

type reasonBody struct {
	Reason string `json:"reason"`
}

// change: verify, extend (reason) or refuse (reason) a request; stored
// with a compare-and-set, then logged (the requests service acts on it).
func (s *Server) change(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b reasonBody
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody))
			return
		}
		if len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil || dec.More() {
				fail(w, http.StatusBadRequest, `malformed JSON body: want {"reason": "..."}`)
				return
			}
		}
		for range 5 { // compare-and-set: read again when another writer won
			req, ok := s.lookup(w, r)
			if !ok {
				return
			}
			var next requests.Request
			switch op {
			case "verify":
				next, err = req.Verify(principal(r), s.cfg.Now())
			case "extend":
				next, err = req.Extend(principal(r), b.Reason, s.cfg.Now())
			default:
				next, err = req.Refuse(principal(r), b.Reason, s.cfg.Now())
			}
			switch {
			case errors.Is(err, requests.ErrTransition):
				fail(w, http.StatusConflict, err.Error())
				return
			case err != nil:
				fail(w, http.StatusBadRequest, err.Error())
				return
			}
			err = s.cfg.Store.Update(r.Context(), next, req.Version)
			if errors.Is(err, requestredis.ErrStale) {
				continue
			}
			if err != nil {
				fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
				return
			}
			if err := s.log(r.Context(), next, principal(r)); err != nil {
				// Stored but not logged: the store shows it; the requests
				// service acts on the log, so ask for a retry (verify
				// again is a conflict; the store already says verified).
				fail(w, http.StatusServiceUnavailable, "privacy.requests is unavailable; the change is stored but not yet logged, retry")
				return
			}
			s.answer(w, r, http.StatusOK, Filed{Request: next}, "")
			return
		}
		fail(w, http.StatusConflict, "the request keeps changing; retry")
	}
}

// download returns an access request's document (409 while it is not
// done, 410 once expired or erased).
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	req, ok := s.lookup(w, r)
	if !ok {
		return
	}
	switch {
	case !req.Kind.Exports():
		fail(w, http.StatusBadRequest, "not an access or portability request")
		return
	case req.Status == requests.Refused:
		writeJSON(w, http.StatusConflict, apiError{Error: "the request was refused: " + req.Reason, Reason: "refused"})
		return
	case req.Status != requests.Done:
		writeJSON(w, http.StatusConflict, struct {
			apiError
			Progress float64 `json:"progress"`
		}{apiError{Error: "the export is not ready: status " + string(req.Status), Reason: "not_ready"}, req.Progress})
		return
	}
	doc, err := s.cfg.Store.Export(r.Context(), req.ID)
	switch {
	case errors.Is(err, requestredis.ErrNotFound):
		writeJSON(w, http.StatusGone, apiError{Error: "the export document expired or the subject was erased; file a new request", Reason: "expired"})
		return
	case err != nil:
		fail(w, http.StatusServiceUnavailable, "the request store is unavailable; retry")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+req.ID+`.json"`)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(doc)
}
