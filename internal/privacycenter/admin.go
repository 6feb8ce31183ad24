package privacycenter

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/requests"
)

// adminLifetime bounds an operator session (the token itself may expire
// or be revoked sooner: every request looks it up again).
const adminLifetime = 8 * time.Hour

// adminRoutes adds the operator view. Every page but the login form
// needs the admin scope: an API client sends its bearer token (the
// guard's route, with its limits and access log); a browser signs in once
// and holds a session id in an HttpOnly, SameSite=Strict cookie scoped to
// /privacy/admin/. The session keeps only the token's SHA-256, looked up
// in the principals file on every request, so a revoked or expired token
// ends it, and the cookie is no credential for the API.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /privacy/admin/login", s.adminLoginForm)
	mux.HandleFunc("POST /privacy/admin/login", s.adminLogin)
	mux.HandleFunc("POST /privacy/admin/logout", s.adminLogout)
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /privacy/admin/{$}":       s.adminPage,
		"GET /privacy/admin/ropa.json": s.adminRecord("json"),
		"GET /privacy/admin/ropa.md":   s.adminRecord("md"),
	} {
		mux.Handle(pattern, s.operator(s.cfg.Guard.Route(pattern, httpauth.ScopeAdmin, h), h))
	}
}

// operator authenticates an operator request: a bearer token goes to the
// guard (api); a browser's session cookie is checked here; without
// either, a browser is sent to the login.
func (s *Server) operator(api http.Handler, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			api.ServeHTTP(w, r)
			return
		}
		c, err := r.Cookie(adminCookie)
		if err != nil || c.Value == "" {
			http.Redirect(w, r, "/privacy/admin/login", http.StatusSeeOther)
			return
		}
		hash, err := s.cfg.Sessions.Get(r.Context(), kindOperator, c.Value)
		if errors.Is(err, errNoSession) {
			http.Redirect(w, r, "/privacy/admin/login", http.StatusSeeOther)
			return
		}
		if err != nil {
			s.cfg.Log.Error("privacy center: the session store is unavailable", "err", err)
			http.Error(w, "the session store is unavailable; retry", http.StatusServiceUnavailable)
			return
		}
		p, err := s.cfg.Guard.PrincipalOfHash(hash)
		if err != nil || !p.Allows(httpauth.ScopeAdmin) {
			_ = s.cfg.Sessions.Delete(r.Context(), kindOperator, c.Value)
			s.render(w, http.StatusUnauthorized, "login.html", map[string]any{"Lang": "en", "Problem": "Your session ended: the token was revoked, expired or lost the admin scope. Sign in again."})
			return
		}
		h(w, r.WithContext(httpauth.WithPrincipal(r.Context(), p)))
	})
}

func (s *Server) adminLoginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login.html", map[string]any{"Lang": "en"})
}

// adminLogin checks the token through the guard (its refusals, rate
// limits and failed-attempt limits apply) and starts a session naming the
// token's hash.
func (s *Server) adminLogin(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimSpace(r.PostFormValue("token"))
	probe := r.Clone(r.Context())
	probe.Header.Set("Authorization", "Bearer "+tok)
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	s.cfg.Guard.Route("POST /privacy/admin/login", httpauth.ScopeAdmin, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, probe)
	if tok == "" || rec.code != http.StatusOK {
		code := rec.code
		if tok == "" {
			code = http.StatusUnauthorized
		}
		s.render(w, code, "login.html", map[string]any{"Lang": "en", "Problem": loginProblem(code)})
		return
	}
	id, err := s.cfg.Sessions.Create(r.Context(), kindOperator, httpauth.HashToken(tok), adminLifetime)
	if err != nil {
		s.cfg.Log.Error("privacy center: the session store is unavailable", "err", err)
		http.Error(w, "the session store is unavailable; retry", http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: id, Path: "/privacy/admin/", HttpOnly: true, Secure: s.secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(adminLifetime.Seconds())})
	http.Redirect(w, r, "/privacy/admin/", http.StatusSeeOther)
}

func loginProblem(code int) string {
	switch code {
	case http.StatusForbidden:
		return "This token is valid but does not hold the admin scope."
	case http.StatusTooManyRequests:
		return "Too many attempts from this address; wait a minute."
	}
	return "This token is not valid (unknown, expired or revoked)."
}

func (s *Server) adminLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(adminCookie); err == nil {
		_ = s.cfg.Sessions.Delete(r.Context(), kindOperator, c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: "/privacy/admin/", HttpOnly: true, Secure: s.secure(r), MaxAge: -1})
	http.Redirect(w, r, "/privacy/admin/login", http.StatusSeeOther)
}

func (s *Server) adminRecord(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if format == "json" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(s.cfg.Record.JSON())
			return
		}
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		_, _ = w.Write(s.cfg.Record.Markdown())
	}
}

// dueBuckets are the open requests' days-left buckets (the requests
// service's pipeline_requests_open{due}).
var dueBuckets = []struct {
	Label string
	Upto  float64
}{{"overdue", 0}, {"1 day", 1}, {"3 days", 3}, {"7 days", 7}, {"30 days", 30}, {"later", 1e18}}

type countRow struct {
	Purpose   string
	Published string
	Denied    []string
	DeniedSum string
}

type namedCount struct{ Name, Value string }

type dueRow struct {
	ID, Kind, Regime, Status, Deadline, DaysLeft string
}

// openCount writes the number of open requests read (at most the list
// route's 10000: more is "10000+").
func openCount(n int) string {
	if n >= 10000 {
		return "10000+"
	}
	return strconv.Itoa(n)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// named lists the counts above zero, by name.
func named(m map[string]float64) []namedCount {
	out := []namedCount{}
	for _, k := range sortedKeys(m) {
		if m[k] > 0 {
			out = append(out, namedCount{k, num(m[k])})
		}
	}
	return out
}

// adminPage: the operator view.
func (s *Server) adminPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c := scrape(ctx, s.cfg.Scraper, s.cfg.MetricsURLs)
	reasons := c.denyReasons()
	rows := make([]countRow, 0, len(s.cfg.Record.Purposes))
	for _, p := range s.cfg.Record.Purposes {
		row := countRow{Purpose: p.Name, Published: num(c.Published[p.Name])}
		sum := 0.0
		for _, reason := range reasons {
			v := c.Denied[p.Name][reason]
			sum += v
			row.Denied = append(row.Denied, num(v))
		}
		row.DeniedSum = num(sum)
		rows = append(rows, row)
	}
	now := s.cfg.Now()
	open, err := s.api.due(ctx)
	reqProblem := ""
	if err != nil {
		reqProblem = "The request store cannot answer right now; the open requests are not shown."
	}
	buckets := make([]namedCount, len(dueBuckets))
	counts := make([]int, len(dueBuckets))
	var due []dueRow
	for _, q := range open {
		left := q.DaysLeft(now)
		for i, b := range dueBuckets {
			if left <= b.Upto {
				counts[i]++
				break
			}
		}
		if len(due) < 50 {
			due = append(due, dueRow{ID: q.ID, Kind: string(q.Kind), Regime: string(q.Regime), Status: string(q.Status),
				Deadline: formatTime("en", q.Deadline()), DaysLeft: strconv.FormatFloat(left, 'f', 1, 64)})
		}
	}
	for i, b := range dueBuckets {
		buckets[i] = namedCount{b.Label, strconv.Itoa(counts[i])}
	}
	erasures := 0.0
	for _, v := range c.ErasuresDone {
		erasures += v
	}
	p, _ := httpauth.PrincipalFrom(ctx)
	s.render(w, http.StatusOK, "admin.html", map[string]any{
		"Lang": "en", "Operator": p.Name, "Record": s.cfg.Record, "PolicyVersion": s.cfg.Record.PolicyVersion,
		"Reasons": reasons, "Rows": rows, "Quarantined": named(c.Quarantined), "KSuppressed": named(c.KSuppressed),
		"ErasuresDone": num(erasures), "ErasuresByRegime": named(c.ErasuresDone), "Sources": c.Sources,
		"Buckets": buckets, "Open": openCount(len(open)), "Due": due, "RequestsProblem": reqProblem,
		"Generated": formatTime("en", now), "Kinds": []requests.Kind{requests.Access, requests.Portability, requests.Erasure},
	})
}
