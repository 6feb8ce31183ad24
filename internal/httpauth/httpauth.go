// Package httpauth guards the pipeline's HTTP APIs (the consent API now,
// the data-subject request API next): it authenticates a request (a bearer
// token whose SHA-256 is in the principals file, or a client certificate
// verified by the TLS listener whose subject is in it), authorises it
// against the route's scope, limits each principal's request rate and each
// address's failed attempts, measures every route, and writes one access
// log line per request in which the subject id appears only as a keyed
// hash. The principals file is read again when it changes, so tokens are
// added, rotated and revoked without a restart.
//
// Refusals are clear and say nothing about the secret: 401 (no, malformed,
// unknown or expired token; WWW-Authenticate per RFC 6750), 403 (a known
// principal without the route's scope, or a certificate the file does not
// list) and 429 (over the rate, with Retry-After).
//
// It imports prometheus/client_golang, golang.org/x/time/rate and the
// standard library.
package httpauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Mode says how callers authenticate.
type Mode struct {
	// Token accepts "Authorization: Bearer <token>".
	Token bool
	// MTLS accepts a verified client certificate.
	MTLS bool
}

// None reports whether the mode authenticates nobody (every request is
// served as the principal "anonymous" with every scope).
func (m Mode) None() bool { return !m.Token && !m.MTLS }

// ParseMode parses "token", "mtls", "token,mtls" or "none".
func ParseMode(s string) (Mode, error) {
	var m Mode
	for _, p := range strings.Split(s, ",") {
		switch strings.TrimSpace(p) {
		case "token":
			m.Token = true
		case "mtls":
			m.MTLS = true
		case "none":
			if strings.Contains(s, ",") {
				return Mode{}, fmt.Errorf("httpauth: %q: none cannot be combined", s)
			}
			return Mode{}, nil
		default:
			return Mode{}, fmt.Errorf("httpauth: unknown authentication %q (token, mtls, token,mtls or none)", p)
		}
	}
	return m, nil
}

// Config configures a Guard.
type Config struct {
	Mode Mode
	// File is the principals file; required unless Mode.None.
	File string
	// Rate and Burst limit each principal's requests per second (an
	// entry's own rate replaces Rate). Defaults 50 and 100.
	Rate  float64
	Burst int
	// FailureRate and FailureBurst limit failed authentications per
	// client address; past them, the address gets 429 without its
	// credentials being looked at. Defaults 5 and 20.
	FailureRate  float64
	FailureBurst int
	// LogKey keys the subject hash of the access log; empty: a random key
	// for this process (hashes then do not match across restarts).
	LogKey []byte
	// Log receives the access log and the file reloads.
	Log *slog.Logger
	// Metrics, when set, counts requests and refusals.
	Metrics *Metrics
	// Now is the clock (expiry); default time.Now.
	Now func() time.Time
}

// Metrics are the guard's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	refused  *prometheus.CounterVec
	reloads  *prometheus.CounterVec
}

// Refusal reasons, the values of pipeline_api_auth_refused_total{reason}.
const (
	ReasonMissing     = "missing"
	ReasonMalformed   = "malformed"
	ReasonUnknown     = "unknown_token"
	ReasonExpired     = "expired_token"
	ReasonCertificate = "unknown_certificate"
	ReasonScope       = "scope"
	ReasonRate        = "rate_limited"
	ReasonFlood       = "failure_flood"
)

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "api", Name: "requests_total",
			Help: "API requests by route (the pattern, never a subject id) and status code."}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "pipeline", Subsystem: "api", Name: "request_duration_seconds",
			Help: "API request durations by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "api", Name: "auth_refused_total",
			Help: "API requests refused by authentication, authorisation or rate limits, by reason."}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "api", Name: "principals_reloads_total",
			Help: "Reloads of the principals file after it changed: ok, or error (the previous principals stay in force)."}, []string{"outcome"}),
	}
	for _, r := range []string{ReasonMissing, ReasonMalformed, ReasonUnknown, ReasonExpired, ReasonCertificate, ReasonScope, ReasonRate, ReasonFlood} {
		m.refused.WithLabelValues(r)
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	reg.MustRegister(m.requests, m.seconds, m.refused, m.reloads)
	return m
}

// Guard wraps routes with authentication, authorisation, rate limits,
// metrics and the access log.
type Guard struct {
	cfg    Config
	logKey []byte

	mu      sync.Mutex
	checked time.Time
	stamp   string
	tokens  map[string]TokenEntry       // by hex SHA-256
	certs   map[string]CertificateEntry // by subject
	limits  map[string]*rate.Limiter    // by principal
	fails   map[string]*rate.Limiter    // by client address
}

// maxFailAddrs bounds the failed-attempt limiters kept.
const maxFailAddrs = 4096

// New returns a guard, having read the principals file.
func New(cfg Config) (*Guard, error) {
	if cfg.Rate <= 0 {
		cfg.Rate = 50
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 100
	}
	if cfg.FailureRate <= 0 {
		cfg.FailureRate = 5
	}
	if cfg.FailureBurst <= 0 {
		cfg.FailureBurst = 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Guard{cfg: cfg, logKey: cfg.LogKey, limits: map[string]*rate.Limiter{}, fails: map[string]*rate.Limiter{}}
	if len(g.logKey) == 0 {
		g.logKey = make([]byte, 32)
		if _, err := rand.Read(g.logKey); err != nil {
			return nil, fmt.Errorf("httpauth: %w", err)
		}
	}
	if cfg.Mode.None() {
		return g, nil
	}
	if cfg.File == "" {
		return nil, errors.New("httpauth: authentication needs a principals file (PIPELINE_CONSENT_API_AUTH_FILE); see the README's Security section")
	}
	if err := g.reload(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Guard) fileStamp() (string, error) {
	fi, err := os.Stat(g.cfg.File)
	if err != nil {
		return "", fmt.Errorf("httpauth: %w", err)
	}
	return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size()), nil
}

// reload reads the principals file; on error nothing changes.
func (g *Guard) reload() error {
	stamp, err := g.fileStamp()
	if err != nil {
		return err
	}
	f, err := ReadFile(g.cfg.File, false)
	if err != nil {
		return err
	}
	tokens := make(map[string]TokenEntry, len(f.Tokens))
	for _, t := range f.Tokens {
		tokens[strings.ToLower(t.SHA256)] = t
	}
	certs := make(map[string]CertificateEntry, len(f.Certificates))
	for _, c := range f.Certificates {
		certs[c.Subject] = c
	}
	g.mu.Lock()
	g.tokens, g.certs, g.stamp, g.checked = tokens, certs, stamp, time.Now()
	g.limits = map[string]*rate.Limiter{} // rates may have changed
	g.mu.Unlock()
	return nil
}

// maybeReload reads the file again when it changed (checked at most once
// a second).
func (g *Guard) maybeReload() {
	g.mu.Lock()
	due := time.Since(g.checked) >= time.Second
	if due {
		g.checked = time.Now()
	}
	stamp := g.stamp
	g.mu.Unlock()
	if !due {
		return
	}
	now, err := g.fileStamp()
	if err == nil && now == stamp {
		return
	}
	if err == nil {
		err = g.reload()
	}
	if err != nil {
		g.cfg.Log.Error("principals file not reloaded; the previous principals stay in force", "err", err)
		g.count(g.cfg.Metrics.reloadsOf("error"))
		return
	}
	g.cfg.Log.Info("principals file reloaded", "tokens", len(g.tokens), "certificates", len(g.certs))
	g.count(g.cfg.Metrics.reloadsOf("ok"))
}

func (m *Metrics) reloadsOf(outcome string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.reloads.WithLabelValues(outcome)
}

func (m *Metrics) refusedOf(reason string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.refused.WithLabelValues(reason)
}

func (g *Guard) count(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

type principalKey struct{}

// PrincipalFrom returns the principal a guarded route's request was
// authenticated as.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (tests of handlers behind a guard).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// refusal is a request the guard does not let through.
type refusal struct {
	code   int
	reason string
	msg    string
	scope  Scope
	retry  time.Duration
}

// authenticate finds the request's principal.
func (g *Guard) authenticate(r *http.Request) (Principal, *refusal) {
	m := g.cfg.Mode
	if m.None() {
		return Principal{Name: "anonymous", Scopes: []Scope{ScopeAdmin}, Via: "none"}, nil
	}
	g.maybeReload()
	auth := r.Header.Get("Authorization")
	if auth != "" && m.Token {
		scheme, tok, ok := strings.Cut(auth, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > 512 {
			return Principal{}, &refusal{code: http.StatusUnauthorized, reason: ReasonMalformed,
				msg: "the Authorization header must be \"Bearer <token>\""}
		}
		g.mu.Lock()
		e, found := g.tokens[HashToken(tok)]
		g.mu.Unlock()
		if !found {
			return Principal{}, &refusal{code: http.StatusUnauthorized, reason: ReasonUnknown,
				msg: "the bearer token is not valid (unknown or revoked)"}
		}
		if e.Expires != "" {
			if exp, _ := time.Parse(time.RFC3339, e.Expires); !g.cfg.Now().Before(exp) {
				return Principal{}, &refusal{code: http.StatusUnauthorized, reason: ReasonExpired,
					msg: "the bearer token expired at " + exp.UTC().Format(time.RFC3339) + "; ask for a new one"}
			}
		}
		return Principal{Name: e.Principal, Scopes: e.Scopes, Via: "token"}, nil
	}
	if m.MTLS && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		subject := r.TLS.VerifiedChains[0][0].Subject.String()
		g.mu.Lock()
		e, found := g.certs[subject]
		g.mu.Unlock()
		if !found {
			return Principal{}, &refusal{code: http.StatusForbidden, reason: ReasonCertificate,
				msg: "the client certificate is trusted but its subject is not a principal of this API"}
		}
		name := e.Principal
		if name == "" {
			name = e.Subject
		}
		return Principal{Name: name, Scopes: e.Scopes, Via: "mtls"}, nil
	}
	want := "a bearer token (Authorization: Bearer <token>)"
	switch {
	case m.MTLS && !m.Token:
		want = "a client certificate"
	case m.MTLS:
		want += " or a client certificate"
	}
	return Principal{}, &refusal{code: http.StatusUnauthorized, reason: ReasonMissing, msg: "authentication required: send " + want}
}

// PrincipalOfHash returns the principal whose bearer token has the given
// SHA-256 (hex), as the principals file says now: an unknown (revoked)
// or expired token is an error. It lets a server keep a session that
// names a token without keeping the token (the privacy center's operator
// view).
func (g *Guard) PrincipalOfHash(hash string) (Principal, error) {
	if g.cfg.Mode.None() {
		return Principal{Name: "anonymous", Scopes: []Scope{ScopeAdmin}, Via: "none"}, nil
	}
	g.maybeReload()
	g.mu.Lock()
	e, found := g.tokens[strings.ToLower(hash)]
	g.mu.Unlock()
	if !found {
		return Principal{}, errors.New("httpauth: the token is unknown or revoked")
	}
	if e.Expires != "" {
		if exp, _ := time.Parse(time.RFC3339, e.Expires); !g.cfg.Now().Before(exp) {
			return Principal{}, errors.New("httpauth: the token expired")
		}
	}
	return Principal{Name: e.Principal, Scopes: e.Scopes, Via: "token"}, nil
}

// clientAddr is the request's remote host (without port).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failLimiter returns the failed-attempt limiter of an address.
func (g *Guard) failLimiter(addr string) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.fails[addr]
	if !ok {
		if len(g.fails) >= maxFailAddrs {
			for a, old := range g.fails { // drop the addresses that recovered
				if old.Tokens() >= float64(g.cfg.FailureBurst) {
					delete(g.fails, a)
				}
			}
			if len(g.fails) >= maxFailAddrs {
				g.fails = map[string]*rate.Limiter{}
			}
		}
		l = rate.NewLimiter(rate.Limit(g.cfg.FailureRate), g.cfg.FailureBurst)
		g.fails[addr] = l
	}
	return l
}

// limiter returns a principal's request limiter.
func (g *Guard) limiter(p Principal) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.limits[p.Name]
	if !ok {
		r := g.cfg.Rate
		for _, t := range g.tokens {
			if t.Principal == p.Name && t.Rate > 0 {
				r = t.Rate
			}
		}
		for _, c := range g.certs {
			if (c.Principal == p.Name || c.Subject == p.Name) && c.Rate > 0 {
				r = c.Rate
			}
		}
		l = rate.NewLimiter(rate.Limit(r), max(g.cfg.Burst, int(math.Ceil(r))))
		g.limits[p.Name] = l
	}
	return l
}

// retryAfter is how long until l has a token again.
func retryAfter(l *rate.Limiter) time.Duration {
	res := l.Reserve()
	d := res.Delay()
	res.Cancel()
	return max(d, time.Second)
}

// check runs authentication, the failure flood limit, authorisation and
// the principal's rate limit.
func (g *Guard) check(r *http.Request, scope Scope) (Principal, *refusal) {
	var fl *rate.Limiter
	if !g.cfg.Mode.None() {
		fl = g.failLimiter(clientAddr(r))
		if fl.Tokens() < 1 {
			return Principal{}, &refusal{code: http.StatusTooManyRequests, reason: ReasonFlood,
				msg: "too many failed authentications from this address; wait", retry: retryAfter(fl)}
		}
	}
	p, ref := g.authenticate(r)
	if ref != nil {
		if fl != nil {
			fl.Allow() // spend one failed attempt
		}
		return p, ref
	}
	if !p.Allows(scope) {
		return p, &refusal{code: http.StatusForbidden, reason: ReasonScope, scope: scope,
			msg: fmt.Sprintf("principal %q may not do this: the route needs the scope %s", p.Name, scope)}
	}
	if l := g.limiter(p); !l.Allow() {
		return p, &refusal{code: http.StatusTooManyRequests, reason: ReasonRate,
			msg: "rate limit of this principal reached; retry later", retry: retryAfter(l)}
	}
	return p, nil
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// SubjectHash is the access log's name for a subject id: the first 16 hex
// digits of HMAC-SHA256(log key, subject).
func (g *Guard) SubjectHash(subject string) string {
	m := hmac.New(sha256.New, g.logKey)
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil))[:16]
}

// Route wraps h, served on the mux pattern (the route label of metrics
// and logs), with the guard: only a principal holding scope reaches h, and
// PrincipalFrom(r.Context()) names it there.
func (g *Guard) Route(pattern string, scope Scope, h http.HandlerFunc) http.Handler {
	var seconds prometheus.Observer
	if g.cfg.Metrics != nil {
		seconds = g.cfg.Metrics.seconds.WithLabelValues(pattern)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		p, ref := g.check(r, scope)
		if ref != nil {
			g.refuse(sw, ref)
		} else {
			h(sw, r.WithContext(WithPrincipal(r.Context(), p)))
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		d := time.Since(start)
		if g.cfg.Metrics != nil {
			g.cfg.Metrics.requests.WithLabelValues(pattern, strconv.Itoa(sw.code)).Inc()
			seconds.Observe(d.Seconds())
		}
		attrs := []any{"route", pattern, "status", sw.code, "ms", d.Milliseconds(), "principal", p.Name}
		if s := r.PathValue("subject"); s != "" {
			attrs = append(attrs, "subject_hash", g.SubjectHash(s))
		}
		if ref != nil {
			attrs = append(attrs, "refused", ref.reason)
		}
		g.cfg.Log.Info("api request", attrs...)
	})
}

// refuse writes a refusal as the APIs' JSON error.
func (g *Guard) refuse(w http.ResponseWriter, ref *refusal) {
	g.count(g.cfg.Metrics.refusedOf(ref.reason))
	switch ref.code {
	case http.StatusUnauthorized:
		v := `Bearer realm="privacy-pipeline"`
		if ref.reason != ReasonMissing {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	case http.StatusForbidden:
		if ref.scope != "" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="privacy-pipeline", error="insufficient_scope", scope=%q`, ref.scope))
		}
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ref.retry.Seconds()))))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ref.code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Error string `json:"error"`
	}{ref.msg})
}
