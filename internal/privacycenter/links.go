package privacycenter

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/httpauth"
)

// LinkPattern is the route the deploying company's login calls, once it
// has authenticated a customer, to mint their privacy-center link.
const LinkPattern = "POST /v1/privacy-center/links"

// DefaultLinkTTL is a link's lifetime when the call names none.
const DefaultLinkTTL = 15 * time.Minute

// LinkRequest is the body of LinkPattern.
type LinkRequest struct {
	SubjectID string `json:"subject_id"`
	// TTL is a Go duration ("15m"); default DefaultLinkTTL, at most the
	// sealer's maximum (PIPELINE_PRIVACY_CENTER_LINK_MAX_TTL).
	TTL string `json:"ttl,omitempty"`
	// Lang, "en" or "vi", opens the page in that language.
	Lang string `json:"lang,omitempty"`
}

// Link is the answer of LinkPattern: give URL to the customer's browser
// (a redirect from the company's account page), never to anyone else.
type Link struct {
	URL       string `json:"url"`
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

// RegisterLinks adds LinkPattern to mux (the API's, behind the guard,
// scope links:write).
func (s *Server) RegisterLinks(mux *http.ServeMux) {
	mux.Handle(LinkPattern, s.cfg.Guard.Route(LinkPattern, httpauth.ScopeLinksWrite, http.HandlerFunc(s.mint)))
}

func (s *Server) mint(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, "body larger than 4096 bytes")
		return
	}
	var lr LinkRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lr); err != nil || dec.More() {
		jsonError(w, http.StatusBadRequest, `malformed JSON body: want {"subject_id": "...", "ttl": "15m"}`)
		return
	}
	ttl := DefaultLinkTTL
	if lr.TTL != "" {
		if ttl, err = time.ParseDuration(lr.TTL); err != nil || ttl <= 0 {
			jsonError(w, http.StatusBadRequest, "ttl: want a positive Go duration such as 15m")
			return
		}
	}
	if lr.Lang != "" && !known(lr.Lang) {
		jsonError(w, http.StatusBadRequest, "lang: want en or vi")
		return
	}
	tok, err := s.cfg.Sealer.Mint(lr.SubjectID, ttl)
	s.count("links_minted", err)
	if err != nil { // the error names the rule broken, never the subject
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	u := s.cfg.PublicURL + "/privacy/open?t=" + url.QueryEscape(tok)
	if lr.Lang != "" {
		u += "&lang=" + lr.Lang
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(Link{URL: u, Token: tok, ExpiresAt: s.cfg.Now().Add(ttl).UTC().Format(time.RFC3339)})
}

func jsonError(w http.ResponseWriter, code int, m string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": m})
}
