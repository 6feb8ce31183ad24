package privacycenter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestapi"
)

// apiError is an answer of the API other than the one expected: its
// status and its message (which never echoes a subject id).
type apiError struct {
	Code    int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("privacycenter: API answered %d: %s", e.Code, e.Message)
}

// statusOf is the HTTP status of an API error (0 for another error).
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

// client calls the consent and requests API in process (Config.API), as
// the privacy center's principal; the subject always comes from an opened
// link, never from the browser.
type client struct{ h http.Handler }

// call sends one request to the API and decodes a 2xx JSON answer into
// out (nil: ignore the body). header, when set, adds request headers.
func (c client) call(ctx context.Context, method, path string, body any, header http.Header, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("privacycenter: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(ctx, method, "http://privacy-center"+path, rd)
	if err != nil {
		return fmt.Errorf("privacycenter: %w", err)
	}
	r.RequestURI, r.RemoteAddr = path, "privacy-center"
	if r.Body == nil {
		r.Body = http.NoBody // as a server's request: handlers read it
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	w := &recorder{header: http.Header{}, code: http.StatusOK}
	c.h.ServeHTTP(w, r)
	b := w.body.Bytes()
	if w.code/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &apiError{Code: w.code, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("privacycenter: the API's answer to %s: %w", method, err)
	}
	return nil
}

// recorder is the in-process API call's response.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.body.Write(b)
}

// subjectPath is the API path of a subject's resource; dots are escaped
// too, or a subject "." or ".." would be a path segment the mux cleans
// away.
func subjectPath(subject string, rest string) string {
	return "/v1/subjects/" + strings.ReplaceAll(url.PathEscape(subject), ".", "%2E") + rest
}

// consents reads the subject's state; found is false when nothing is
// recorded for it.
func (c client) consents(ctx context.Context, subject string) (st consentapi.State, found bool, err error) {
	err = c.call(ctx, http.MethodGet, subjectPath(subject, "/consents"), nil, nil, &st)
	if statusOf(err) == http.StatusNotFound {
		return consentapi.State{}, false, nil
	}
	return st, err == nil, err
}

func (c client) history(ctx context.Context, subject string) (consentapi.History, error) {
	var h consentapi.History
	err := c.call(ctx, http.MethodGet, subjectPath(subject, "/consents/history"), nil, nil, &h)
	return h, err
}

func (c client) requestsOf(ctx context.Context, subject string) ([]requests.Request, error) {
	var l requestapi.List
	err := c.call(ctx, http.MethodGet, subjectPath(subject, "/requests"), nil, nil, &l)
	return l.Requests, err
}

func (c client) request(ctx context.Context, id string) (requests.Request, error) {
	var f requestapi.Filed
	err := c.call(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(id), nil, nil, &f)
	return f.Request, err
}

func (c client) export(ctx context.Context, id string) ([]byte, error) {
	var b []byte
	err := c.call(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(id)+"/export", nil, nil, &b)
	return b, err
}

func (c client) due(ctx context.Context) ([]requests.Request, error) {
	var l requestapi.List
	err := c.call(ctx, http.MethodGet, "/v1/requests?limit=10000", nil, nil, &l)
	return l.Requests, err
}

// choice is the body of a consent change made on the page.
type choice struct {
	State         string `json:"state,omitempty"`
	Jurisdiction  string `json:"jurisdiction,omitempty"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	GPC           *bool  `json:"gpc,omitempty"`
}

// setChoice grants (PUT) or withdraws (POST .../withdraw) a purpose; the
// browser's Sec-GPC header goes with it, so the API records the signal.
func (c client) setChoice(ctx context.Context, subject, purpose string, grant bool, b choice, secGPC string) error {
	var h http.Header
	if secGPC != "" {
		h = http.Header{consentapi.SecGPCHeader: {secGPC}}
	}
	if grant {
		b.State = "granted"
		return c.call(ctx, http.MethodPut, subjectPath(subject, "/consents/"+url.PathEscape(purpose)), b, h, nil)
	}
	b.State = ""
	return c.call(ctx, http.MethodPost, subjectPath(subject, "/consents/"+url.PathEscape(purpose)+"/withdraw"), b, h, nil)
}

// recordGPC records the browser's Global Privacy Control signal for the
// subject (a subject-level change, source gpc_signal).
func (c client) recordGPC(ctx context.Context, subject string, b choice) error {
	on := true
	b.GPC, b.Source, b.State = &on, "gpc_signal", ""
	return c.call(ctx, http.MethodPut, subjectPath(subject, "/profile"), b, nil, nil)
}

// file files a verified request of kind for the subject: the deploying
// company's login authenticated the customer before minting the link.
func (c client) file(ctx context.Context, subject string, kind requests.Kind) (requestapi.Filed, error) {
	var f requestapi.Filed
	body := map[string]any{"kind": kind, "verified": true}
	err := c.call(ctx, http.MethodPost, subjectPath(subject, "/requests"), body, nil, &f)
	return f, err
}
