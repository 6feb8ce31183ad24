// Package privacycenter serves the privacy center under /privacy/ on the
// consent API's listener (issue 17): the pages where customers see, per
// purpose and in plain words (English or Vietnamese), what is done with
// their data and change their choices, download their data and ask for
// its erasure; and the privacy team's operator view.
//
// A customer arrives with a link the deploying company's own login mints
// once it has authenticated them (POST /v1/privacy-center/links, scope
// links:write, or the company's backend with the same Tink keyset: see
// internal/privacycenter/link). The link carries a sealed, short-lived
// token, never the subject id; GET /privacy/open checks it and keeps it in
// an HttpOnly, SameSite=Lax cookie scoped to /privacy/, opened again on
// every request, so the session ends when the token expires. A missing,
// malformed, forged, expired or over-long token is refused with a page
// that says why (401/403) and counted; an address that keeps presenting
// bad tokens is refused (429) before its token is looked at.
//
// The pages are server-rendered HTML with no JavaScript: every change is a
// form post (cross-origin posts refused: net/http.CrossOriginProtection),
// answered with a redirect. The center changes nothing itself: it calls
// the consent and requests API in process as the principal
// "privacy-center" for the subject of the opened token (Config.API), so
// every validation, the erasure ledger, the GPC rules and the audit
// records apply as they do to any caller. What each purpose uses and how
// comes from the record of processing (internal/ropa), generated from the
// policy and the schemas. A browser's "Sec-GPC: 1" is recorded as a GPC
// signal when the page is opened and sent with every change.
//
// The operator view (/privacy/admin/) needs a token with the admin scope
// (internal/httpauth, the principals file): live counts per purpose
// scraped from the processors' /metrics (Config.MetricsURLs), open
// requests by days left, erasures done, the record of processing and the
// policy version in force.
//
// It imports consentapi and requestapi (their answers' types), requests,
// ropa, httpauth, privacycenter/link, prometheus/client_golang and
// prometheus/common (expfmt, to read scraped metrics).
package privacycenter

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/privacycenter/link"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/ropa"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Principal is the principal the center's API calls are made as (the
// history's changed_by, the audit records' principal).
var Principal = httpauth.Principal{Name: "privacy-center", Via: "privacy-center",
	Scopes: []httpauth.Scope{httpauth.ScopeConsentRead, httpauth.ScopeConsentWrite, httpauth.ScopeRequestsRead, httpauth.ScopeRequestsWrite}}

// Cookie names.
const (
	sessionCookie = "pp_session"
	adminCookie   = "pp_admin"
)

// Config configures a Server.
type Config struct {
	// Sealer opens (and, for the links route, mints) the customers' link
	// tokens; required.
	Sealer *link.Sealer
	// API is the consent and requests API served in process as Principal
	// (consentapi.Server.HandlerAs and requestapi.Server.RegisterAs);
	// required.
	API http.Handler
	// Record is the record of processing the pages describe (ropa.Build
	// of the configured policy); required.
	Record ropa.Record
	// Guard authenticates the operator view (scope admin) and the links
	// route (scope links:write); required.
	Guard *httpauth.Guard
	// Sessions keeps the sessions and spent links (Redis); required.
	Sessions *Sessions
	// ClientIPHeader names the header the trusted proxy in front sets to
	// the client's address (its last value counts), e.g.
	// X-Forwarded-For; empty: the connection's address. Only bad-token
	// floods are limited by address.
	ClientIPHeader string
	// MetricsURLs are the /metrics endpoints the operator view sums
	// (the privacy processor's, kanon's and requests' replicas).
	MetricsURLs []string
	// Scraper fetches MetricsURLs (default: a client with a 3 s timeout).
	Scraper *http.Client
	// PublicURL is the center's external base URL, e.g.
	// https://privacy.example.com; the links route answers with
	// PublicURL + "/privacy/open?t=...". Empty: a relative URL.
	PublicURL string
	// SecureCookies marks the cookies Secure even on a plain HTTP
	// listener (behind a proxy that terminates TLS); over TLS they always
	// are.
	SecureCookies bool
	// SettleTimeout bounds how long a change waits to show in the consent
	// store before the page is shown again (default 3 s).
	SettleTimeout time.Duration
	// Registerer, when set, receives the center's metrics.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	Now        func() time.Time
}

// Refusal reasons of pipeline_privacy_center_refused_total{reason}.
const (
	RefusedMissing   = "missing"
	RefusedMalformed = "malformed"
	RefusedForged    = "forged"
	RefusedExpired   = "expired"
	RefusedFuture    = "future"
	RefusedTooLong   = "too_long"
	RefusedFlood     = "flood"
	RefusedForeign   = "not_theirs"
	RefusedUsed      = "used"
	RefusedEnded     = "session_ended"
)

// Server serves the privacy center.
type Server struct {
	cfg     Config
	api     client
	pages   *template.Template
	refused *prometheus.CounterVec
	actions *prometheus.CounterVec
	csrf    *http.CrossOriginProtection

	mu      sync.Mutex
	fails   map[string]*rate.Limiter // bad link tokens, by client address
	changes map[string]*rate.Limiter // customers' changes, by subject hash
}

// New returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Sealer == nil || cfg.API == nil || cfg.Guard == nil || cfg.Sessions == nil || len(cfg.Record.Purposes) == 0 {
		return nil, errors.New("privacycenter: Sealer, API, Guard, Sessions and a Record with purposes are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Scraper == nil {
		cfg.Scraper = &http.Client{Timeout: 3 * time.Second}
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = 3 * time.Second
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	pages, err := template.New("").Funcs(template.FuncMap{
		"t": func(lang, key string) string { return msg(lang, key) },
		"dict": func(kv ...string) map[string]string {
			m := map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		},
	}).ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("privacycenter: templates: %w", err)
	}
	s := &Server{cfg: cfg, api: client{cfg.API}, pages: pages, csrf: http.NewCrossOriginProtection(), fails: map[string]*rate.Limiter{}, changes: map[string]*rate.Limiter{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "privacy_center", Name: "refused_total",
			Help: "Privacy center requests refused, by reason (missing, malformed, forged, expired, future, too_long or flood link tokens; not_theirs: a request id of another subject)."}, []string{"reason"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "privacy_center", Name: "actions_total",
			Help: "Customer actions in the privacy center by action (view, grant, withdraw, gpc_signal, export, erasure, download, links_minted) and outcome (ok, error)."}, []string{"action", "outcome"}),
	}
	for _, r := range []string{RefusedMissing, RefusedMalformed, RefusedForged, RefusedExpired, RefusedFuture, RefusedTooLong, RefusedFlood, RefusedForeign, RefusedUsed, RefusedEnded} {
		s.refused.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.refused, s.actions)
	}
	return s, nil
}

// Handler returns the /privacy/ routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /privacy/static/", http.StripPrefix("/privacy/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /privacy/open", s.landing)
	mux.HandleFunc("POST /privacy/open", s.open)
	mux.HandleFunc("GET /privacy/{$}", s.customer(s.page))
	mux.HandleFunc("POST /privacy/consents/{purpose}", s.customer(s.choose))
	mux.HandleFunc("POST /privacy/export", s.customer(s.fileRequest(requests.Access)))
	mux.HandleFunc("POST /privacy/erasure", s.customer(s.fileRequest(requests.Erasure)))
	mux.HandleFunc("GET /privacy/requests/{id}/export", s.customer(s.download))
	mux.HandleFunc("POST /privacy/logout", s.logout)
	s.adminRoutes(mux)
	return headers(forms(s.csrf.Handler(mux)))
}

// MaxForm bounds a form post to the center.
const MaxForm = 8 << 10

// forms lets a post through only as a small URL-encoded form (no
// multipart: its file parts would go to disk).
func forms(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
				http.Error(w, "a form post (application/x-www-form-urlencoded) is expected", http.StatusUnsupportedMediaType)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, MaxForm)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "the form is larger than 8 KiB or malformed", http.StatusRequestEntityTooLarge)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// headers sets the pages' security headers: nothing but our own styles,
// no scripts, no framing, no referrer (a link token never leaks), no
// caching.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) secure(r *http.Request) bool {
	return s.cfg.SecureCookies || r.TLS != nil
}

// clientAddr is the request's client: the last address of
// Config.ClientIPHeader when set and present (what the trusted proxy in
// front appended), else the connection's remote host.
func (s *Server) clientAddr(r *http.Request) string {
	if h := s.cfg.ClientIPHeader; h != "" {
		if v := r.Header.Values(h); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if ip := strings.TrimSpace(parts[len(parts)-1]); ip != "" {
				return ip
			}
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// limiter returns the limiter of key in m (made with newL), bounded: at
// the bound, the limiters that recovered their whole burst are dropped
// (they hold no debt), and only if none did, the oldest half goes.
func (s *Server) limiter(m map[string]*rate.Limiter, key string, newL func() *rate.Limiter, burst int) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := m[key]
	if !ok {
		if len(m) >= maxLimiters {
			for k, old := range m {
				if old.Tokens() >= float64(burst) {
					delete(m, k)
				}
			}
			for k := range m { // random order: a flood of fresh addresses cannot pick who is dropped
				if len(m) < maxLimiters/2 {
					break
				}
				delete(m, k)
			}
		}
		l = newL()
		m[key] = l
	}
	return l
}

// maxLimiters bounds each limiter map.
const maxLimiters = 16384

// failed counts a bad token from addr and reports whether addr is now
// over its allowance (5 a second, bursts of 20). Good tokens are never
// limited: an address shared by many customers (a proxy, a carrier's NAT)
// cannot be locked out by one of them presenting forgeries.
func (s *Server) failed(addr string) bool {
	return !s.limiter(s.fails, addr, func() *rate.Limiter { return rate.NewLimiter(5, 20) }, 20).Allow()
}

// reasonOf names why Open refused a token.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, link.ErrExpired):
		return RefusedExpired
	case errors.Is(err, link.ErrFuture):
		return RefusedFuture
	case errors.Is(err, link.ErrTooLong):
		return RefusedTooLong
	case errors.Is(err, link.ErrForged):
		return RefusedForged
	}
	return RefusedMalformed
}

// claims opens a link token, or refuses: it writes the refusal page and
// returns false.
func (s *Server) claims(w http.ResponseWriter, r *http.Request, token string) (link.Claims, bool) {
	lang, _ := pickLang(r)
	if token == "" {
		s.refuse(w, lang, http.StatusUnauthorized, RefusedMissing)
		return link.Claims{}, false
	}
	c, err := s.cfg.Sealer.Open(token)
	if err != nil {
		addr := s.clientAddr(r)
		reason := reasonOf(err)
		code := http.StatusUnauthorized
		if reason == RefusedForged || reason == RefusedMalformed {
			code = http.StatusForbidden
		}
		if s.failed(addr) {
			reason, code = RefusedFlood, http.StatusTooManyRequests
		}
		s.cfg.Log.Info("privacy center link refused", "reason", reason, "addr", addr)
		s.refuse(w, lang, code, reason)
		return link.Claims{}, false
	}
	return c, true
}

// refuse writes the refusal page: why, in the customer's language, and
// what to do.
func (s *Server) refuse(w http.ResponseWriter, lang string, code int, reason string) {
	s.refused.WithLabelValues(reason).Inc()
	key := "refused_invalid"
	switch reason {
	case RefusedMissing:
		key = "refused_missing"
	case RefusedExpired, RefusedEnded:
		key = "refused_expired"
	case RefusedUsed:
		key = "refused_used"
	case RefusedFlood:
		key = "refused_flood"
		w.Header().Set("Retry-After", "60")
	}
	s.render(w, code, "refused.html", map[string]any{"Lang": lang, "Reason": reason, "Message": msg(lang, key)})
}

func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := s.pages.ExecuteTemplate(w, name, data); err != nil {
		s.cfg.Log.Error("privacy center page not rendered", "page", name, "err", err)
	}
}

// landing: GET /privacy/open?t=, the link's target. It checks the token
// and answers a page with one button that posts it back: the link is spent
// only by that post, so a mail scanner's prefetch does not spend it, and
// another site cannot sign a browser in to someone else's session (a
// cross-origin post is refused).
func (s *Server) landing(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("t")
	if _, ok := s.claims(w, r, tok); !ok {
		return
	}
	lang, _ := pickLang(r)
	s.render(w, http.StatusOK, "open.html", map[string]any{"Lang": lang, "Token": tok})
}

// open: POST /privacy/open, the landing's button. The link is spent (once,
// across every replica: Sessions.ClaimLink) and exchanged for a session:
// a random id in an HttpOnly, SameSite=Lax cookie scoped to /privacy/,
// naming the subject in Redis until the link would have expired. The
// token itself is never a cookie.
func (s *Server) open(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("t")
	c, ok := s.claims(w, r, tok)
	if !ok {
		return
	}
	lang, _ := pickLang(r)
	ctx := r.Context()
	fresh, err := s.cfg.Sessions.ClaimLink(ctx, tok, c.Expires)
	if err != nil {
		s.unavailable(w, lang, err)
		return
	}
	if !fresh {
		s.refuse(w, lang, http.StatusUnauthorized, RefusedUsed)
		return
	}
	ttl := c.Expires.Sub(s.cfg.Now())
	id, err := s.cfg.Sessions.Create(ctx, kindCustomer, c.Subject, ttl)
	if err != nil {
		s.unavailable(w, lang, err)
		return
	}
	if old, err := r.Cookie(sessionCookie); err == nil { // the session this browser had ends
		_ = s.cfg.Sessions.Delete(ctx, kindCustomer, old.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/privacy/", HttpOnly: true, Secure: s.secure(r),
		SameSite: http.SameSiteLaxMode, MaxAge: max(1, int(ttl.Seconds()))})
	to := "/privacy/"
	if l := r.PostFormValue("lang"); known(l) {
		to += "?lang=" + l
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// unavailable answers 503 when the session store does not.
func (s *Server) unavailable(w http.ResponseWriter, lang string, err error) {
	s.cfg.Log.Error("privacy center: the session store is unavailable", "err", err)
	s.render(w, http.StatusServiceUnavailable, "refused.html", map[string]any{"Lang": lang, "Reason": "unavailable", "Message": msg(lang, "problem_retry")})
}

// session is a customer request's subject and language.
type session struct {
	Subject string
	Lang    string
}

// customer guards a customer route: the cookie must name a live session.
// Changes are limited per subject (2 a second, bursts of 20).
func (s *Server) customer(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		lang, chosen := pickLang(r)
		c, err := r.Cookie(sessionCookie)
		if err != nil || c.Value == "" {
			s.refuse(w, lang, http.StatusUnauthorized, RefusedMissing)
			return
		}
		sub, err := s.cfg.Sessions.Get(r.Context(), kindCustomer, c.Value)
		switch {
		case errors.Is(err, errNoSession):
			s.refuse(w, lang, http.StatusUnauthorized, RefusedEnded)
			return
		case err != nil:
			s.unavailable(w, lang, err)
			return
		}
		if r.Method != http.MethodGet {
			l := s.limiter(s.changes, hashOf(sub), func() *rate.Limiter { return rate.NewLimiter(2, 20) }, 20)
			if !l.Allow() {
				s.refuse(w, lang, http.StatusTooManyRequests, RefusedFlood)
				return
			}
		}
		if chosen {
			http.SetCookie(w, &http.Cookie{Name: langCookie, Value: lang, Path: "/privacy/", HttpOnly: true, Secure: s.secure(r),
				SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
		}
		h(w, r, session{Subject: sub, Lang: lang})
	}
}

func (s *Server) count(action string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.actions.WithLabelValues(action, outcome).Inc()
}

// secGPC is the browser's Sec-GPC header when it is "1".
func secGPC(r *http.Request) string {
	if strings.TrimSpace(r.Header.Get(consentapi.SecGPCHeader)) == "1" {
		return "1"
	}
	return ""
}

// historyRow is one change of the customer's history.
type historyRow struct {
	When, Purpose, Choice, How string
}

// requestRow is one of the customer's requests.
type requestRow struct {
	ID, Kind, Status, Received, Deadline string
	DaysLeft                             string
	Open                                 bool
	Download                             string
	Expired                              bool
}

// page: the customer's page.
func (s *Server) page(w http.ResponseWriter, r *http.Request, ss session) {
	ctx := r.Context()
	st, found, err := s.api.consents(ctx, ss.Subject)
	if err != nil {
		s.count("view", err)
		s.cfg.Log.Error("privacy center: consent state unavailable", "err", err)
		s.render(w, http.StatusServiceUnavailable, "refused.html", map[string]any{"Lang": ss.Lang, "Reason": "unavailable", "Message": msg(ss.Lang, "problem_retry")})
		return
	}
	gpc := found && st.GPC
	notice := ""
	if secGPC(r) != "" && !gpc {
		err := s.api.recordGPC(ctx, ss.Subject, choice{Jurisdiction: st.Jurisdiction, PolicyVersion: s.cfg.Record.PolicyVersion})
		s.count("gpc_signal", err)
		if err == nil {
			gpc, notice = true, msg(ss.Lang, "gpc_recorded")
			// Wait for it to show, so a reload does not record it again.
			s.settleWhen(ctx, ss.Subject, func(st consentapi.State) bool { return st.GPC })
		}
	}
	hist, err := s.api.history(ctx, ss.Subject)
	if err != nil {
		s.cfg.Log.Error("privacy center: consent history unavailable", "err", err)
	}
	reqs, err := s.api.requestsOf(ctx, ss.Subject)
	if err != nil {
		s.cfg.Log.Error("privacy center: requests unavailable", "err", err)
	}
	s.count("view", nil)
	purposes := describe(s.cfg.Record, ss.Lang)
	rec := recordOf(st, found, gpc)
	for i := range purposes {
		p := &purposes[i]
		p.State = "unset"
		if ps, ok := st.Purposes[p.Name]; ok && found && ps.State != "" {
			p.State = ps.State
			if t, err := time.Parse(time.RFC3339Nano, ps.UpdatedAt); err == nil {
				p.Since = formatTime(ss.Lang, t)
			}
		}
		p.StateText = text(ss.Lang, "state."+p.State, p.State)
		s.effect(p, rec, ss.Lang)
	}
	if m := r.URL.Query().Get("m"); m != "" && notice == "" {
		notice = text(ss.Lang, "done_"+m, "")
	}
	problem := ""
	if p := r.URL.Query().Get("p"); p != "" {
		problem = text(ss.Lang, "problem_"+p, "")
	}
	s.render(w, http.StatusOK, "customer.html", map[string]any{
		"Lang": ss.Lang, "Purposes": purposes, "GPC": gpc, "Notice": notice, "Problem": problem,
		"History": s.historyRows(ss.Lang, hist.Changes), "Requests": s.requestRows(ss.Lang, reqs),
		"PolicyVersion": s.cfg.Record.PolicyVersion,
	})
}

func (s *Server) historyRows(lang string, changes []consent.HistoryEntry) []historyRow {
	changes = slices.Clone(changes)
	at := func(e consent.HistoryEntry) time.Time { t, _ := time.Parse(time.RFC3339Nano, e.Timestamp); return t }
	slices.SortStableFunc(changes, func(a, b consent.HistoryEntry) int { return at(b).Compare(at(a)) }) // newest first (RFC 3339 text does not sort: 10:00:00Z > 10:00:00.9Z)
	rows := make([]historyRow, 0, len(changes))
	for _, c := range changes {
		row := historyRow{Purpose: msg(lang, "all_purposes"), How: text(lang, "source."+c.Source, c.Source)}
		if kind, _, ok := strings.Cut(c.ConsentString, ":"); ok && (kind == "tcf" || kind == "gpp") {
			row.How += " (" + msg(lang, "via_"+kind) + ")"
		}
		if t, err := time.Parse(time.RFC3339Nano, c.Timestamp); err == nil {
			row.When = formatTime(lang, t)
		}
		if c.Purpose != "" {
			row.Purpose = text(lang, "purpose."+c.Purpose, c.Purpose)
			row.Choice = text(lang, "state."+c.State, c.State)
		} else if c.GPC != "" {
			row.Choice = msg(lang, "gpc.on")
		}
		rows = append(rows, row)
	}
	return rows
}

func (s *Server) requestRows(lang string, reqs []requests.Request) []requestRow {
	now := s.cfg.Now()
	rows := make([]requestRow, 0, len(reqs))
	for _, q := range reqs {
		row := requestRow{ID: q.ID, Kind: text(lang, "kind."+string(q.Kind), string(q.Kind)), Status: text(lang, "status."+string(q.Status), string(q.Status)),
			Received: formatTime(lang, time.UnixMilli(q.ReceivedMS)), Deadline: formatTime(lang, q.Deadline()), Open: q.Open()}
		if row.Open {
			row.DaysLeft = strconv.FormatFloat(q.DaysLeft(now), 'f', 0, 64)
		}
		if q.Status == requests.Done && (q.Kind == requests.Access || q.Kind == requests.Portability) {
			if q.ExportExpiresMS > now.UnixMilli() {
				row.Download = "/privacy/requests/" + url.PathEscape(q.ID) + "/export"
			} else {
				row.Expired = true
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// choose: the switch of a purpose.
func (s *Server) choose(w http.ResponseWriter, r *http.Request, ss session) {
	name := r.PathValue("purpose")
	known := false
	for _, p := range s.cfg.Record.Purposes {
		known = known || p.Name == name
	}
	want := r.PostFormValue("state")
	if !known || (want != "granted" && want != "withdrawn") {
		http.Error(w, "unknown purpose or choice", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	st, _, err := s.api.consents(ctx, ss.Subject)
	if err == nil {
		err = s.api.setChoice(ctx, ss.Subject, name, want == "granted",
			choice{Jurisdiction: st.Jurisdiction, Source: "web_form", PolicyVersion: s.cfg.Record.PolicyVersion}, secGPC(r))
	}
	action := map[bool]string{true: "grant", false: "withdraw"}[want == "granted"]
	s.count(action, err)
	if err != nil {
		s.again(w, r, problemOf(err), "purpose-"+name)
		return
	}
	s.settle(ctx, ss.Subject, name, want, st.Version)
	http.Redirect(w, r, "/privacy/?m="+want+"#purpose-"+name, http.StatusSeeOther)
}

// problemOf names the page's message for a failed API call.
func problemOf(err error) string {
	if statusOf(err) == http.StatusConflict {
		return "erased"
	}
	return "retry"
}

// again sends the browser back to the page with a problem.
func (s *Server) again(w http.ResponseWriter, r *http.Request, problem, anchor string) {
	s.cfg.Log.Warn("privacy center change not made", "problem", problem)
	http.Redirect(w, r, "/privacy/?p="+problem+"#"+anchor, http.StatusSeeOther)
}

// settle waits (SettleTimeout at most) until the consent store shows the
// change, so the page shown next says what the customer just chose; the
// change is already durable in the consent topic either way.
func (s *Server) settle(ctx context.Context, subject, purpose, want string, before int64) {
	s.settleWhen(ctx, subject, func(st consentapi.State) bool {
		return st.Version > before && st.Purposes[purpose].State == want
	})
}

// settleWhen waits (SettleTimeout at most) until the subject's stored
// state satisfies done.
func (s *Server) settleWhen(ctx context.Context, subject string, done func(consentapi.State) bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SettleTimeout)
	defer cancel()
	for {
		st, found, err := s.api.consents(ctx, subject)
		if err == nil && found && done(st) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fileRequest: the export and erasure buttons.
func (s *Server) fileRequest(kind requests.Kind) func(http.ResponseWriter, *http.Request, session) {
	return func(w http.ResponseWriter, r *http.Request, ss session) {
		if kind == requests.Erasure && r.PostFormValue("confirm") != "yes" {
			http.Redirect(w, r, "/privacy/?p=confirm#rights", http.StatusSeeOther)
			return
		}
		_, err := s.api.file(r.Context(), ss.Subject, kind)
		s.count(string(kind), err)
		if err != nil {
			s.again(w, r, problemOf(err), "rights")
			return
		}
		http.Redirect(w, r, "/privacy/?m="+map[requests.Kind]string{requests.Access: "export", requests.Erasure: "erasure"}[kind]+"#requests", http.StatusSeeOther)
	}
}

// download: an access request's export, only the session subject's own
// (another subject's request id is answered as not found, and counted).
func (s *Server) download(w http.ResponseWriter, r *http.Request, ss session) {
	id := r.PathValue("id")
	if !requests.ValidID(id) {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	q, err := s.api.request(ctx, id)
	if err == nil && q.Subject != ss.Subject {
		s.refused.WithLabelValues(RefusedForeign).Inc()
		s.cfg.Log.Warn("privacy center: a request of another subject was asked for", "request", id)
		http.NotFound(w, r)
		return
	}
	var doc []byte
	if err == nil {
		doc, err = s.api.export(ctx, id)
	}
	s.count("download", err)
	if err != nil {
		code := statusOf(err)
		if code == 0 || code >= 500 {
			code = http.StatusServiceUnavailable
		}
		http.Error(w, http.StatusText(code), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="my-data-`+id+`.json"`)
	_, _ = w.Write(doc)
}

// logout ends the session at once (in Redis: the cookie cannot be
// replayed).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := s.cfg.Sessions.Delete(r.Context(), kindCustomer, c.Value); err != nil {
			lang, _ := pickLang(r)
			s.unavailable(w, lang, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/privacy/", HttpOnly: true, Secure: s.secure(r), MaxAge: -1})
	lang, _ := pickLang(r)
	s.render(w, http.StatusOK, "refused.html", map[string]any{"Lang": lang, "Reason": "signed_out", "Message": msg(lang, "signed_out"), "SignedOut": true})
}
