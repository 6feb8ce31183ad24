package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxResponseBytes bounds what privacyctl reads from one response.
const maxResponseBytes = 32 << 20

// client talks to the consent API.
type client struct {
	base *url.URL // scheme, host and optional path prefix, no trailing slash
	http *http.Client
	// token, when set, is sent as "Authorization: Bearer <token>".
	token string
}

// newClient returns a client for the API at base. Redirects are not
// followed: the API never redirects, and following one would turn a PUT or
// POST into a GET.
func newClient(base *url.URL, timeout time.Duration) *client {
	return &client{
		base: base,
		http: &http.Client{
			Timeout: timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// apiError is a non-2xx answer of the consent API.
type apiError struct {
	status  int
	message string // the "error" field of the body, sanitised; may be empty
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("consent API answered %d %s", e.status, http.StatusText(e.status))
	if e.message == "" {
		return s + " (no error message)"
	}
	return s + ": " + e.message
}

// requestError is a request that got no usable answer: the API could not be
// reached, timed out, or answered something that is not the contract's JSON.
type requestError struct{ msg string }

func (e requestError) Error() string { return e.msg }

// url returns the absolute URL of an API path whose segments are already
// escaped (see escapeSegment).
func (c *client) url(escapedPath string) *url.URL {
	u := *c.base
	escapedPath, u.RawQuery, _ = strings.Cut(escapedPath, "?")
	raw := c.base.EscapedPath() + escapedPath
	path, err := url.PathUnescape(raw)
	if err != nil { // cannot happen: every segment was escaped by escapeSegment
		path = raw
	}
	u.Path, u.RawPath = path, raw
	return &u
}

// do sends one request and returns the body of a 2xx answer, checked to be
// JSON. A non-2xx answer is an *apiError; anything else a requestError. The
// request body is never part of an error message.
func (c *client) do(method, escapedPath, contentType string, body io.Reader, length int64) ([]byte, error) {
	req, err := http.NewRequest(method, c.url(escapedPath).String(), body)
	if err != nil {
		return nil, requestError{fmt.Sprintf("cannot build the request: %v", err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
		req.ContentLength = length
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "privacyctl")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, requestError{fmt.Sprintf("reading the answer of the consent API at %s: %v", c.base.Redacted(), unwrapURLError(err))}
	}
	if len(b) > maxResponseBytes {
		return nil, requestError{fmt.Sprintf("the answer of the consent API is larger than %d bytes", maxResponseBytes)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e) // a body that is not the error shape leaves the message empty
		return nil, &apiError{status: resp.StatusCode, message: sanitize(e.Error, 1024)}
	}
	if !json.Valid(b) {
		return nil, requestError{fmt.Sprintf("the consent API answered %d with a body that is not JSON", resp.StatusCode)}
	}
	return b, nil
}

// doJSON sends v as a JSON body (or no body when v is nil).
func (c *client) doJSON(method, escapedPath string, v any) ([]byte, error) {
	if v == nil {
		return c.do(method, escapedPath, "", nil, 0)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, requestError{fmt.Sprintf("cannot encode the request: %v", err)}
	}
	return c.do(method, escapedPath, "application/json", bytes.NewReader(b), int64(len(b)))
}

// transportError turns a client error into a message that names the API
// (without any password in its URL) but not the request.
func (c *client) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return requestError{fmt.Sprintf("the consent API at %s did not answer within %s", c.base.Redacted(), c.http.Timeout)}
	}
	return requestError{fmt.Sprintf("cannot reach the consent API at %s: %v", c.base.Redacted(), unwrapURLError(err))}
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// method and full URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// profilePath is /v1/subjects/{subject}/profile, escaped.
func profilePath(subject string) string {
	return "/v1/subjects/" + escapeSegment(subject) + "/profile"
}

// consentPath is /v1/subjects/{subject}/consents, escaped, plus suffix.
func consentPath(subject string, suffix ...string) string {
	var sb strings.Builder
	sb.WriteString("/v1/subjects/")
	sb.WriteString(escapeSegment(subject))
	sb.WriteString("/consents")
	for _, s := range suffix {
		sb.WriteByte('/')
		sb.WriteString(escapeSegment(s))
	}
	return sb.String()
}
