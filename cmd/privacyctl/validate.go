package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The values the consent API accepts. privacyctl uses only the standard
// library, so they are spelled out here; tests check them against
// internal/fields/purpose, internal/consent and docs/openapi.yaml.
var (
	// purposes are the processing purposes, in canonical order.
	purposes = []string{"analytics", "personalization", "ai_training", "marketing", "third_party_sharing"}
	// states are the choices a subject can record (GET also answers "unset").
	states = []string{"granted", "denied", "withdrawn"}
	// jurisdictions are the privacy regimes.
	jurisdictions = []string{"gdpr", "uk_gdpr", "pdpa", "vn_decree13", "ccpa", "unknown"}
	// sources say how a choice was collected.
	sources = []string{"web_form", "mobile_app", "support_agent", "gpc_signal", "import"}
)

// Limits of the contract.
const (
	maxSubjectBytes       = 256
	maxPolicyVersionBytes = 64
)

// checkEnum returns an input error unless v is one of allowed.
func checkEnum(what, v string, allowed []string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return inputError{fmt.Sprintf("unknown %s %s (want one of %s)", what, quote(clip(v, 64)), strings.Join(allowed, ", "))}
}

// validateSubject checks a subject id as the contract defines it: 1 to 256
// bytes of valid UTF-8 without control characters (only spaces counts as
// empty, as the API counts it). The id itself is not repeated in the message.
func validateSubject(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return inputError{"subject id is empty"}
	case len(s) > maxSubjectBytes:
		return inputError{fmt.Sprintf("subject id is %d bytes long; the limit is %d bytes", len(s), maxSubjectBytes)}
	case !utf8.ValidString(s):
		return inputError{"subject id is not valid UTF-8"}
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return inputError{fmt.Sprintf("subject id contains a control character (%U at byte %d)", r, i)}
		}
	}
	return nil
}

// validatePolicyVersion checks a policy version: 1 to 64 bytes of valid
// UTF-8 without control characters, not only spaces.
func validatePolicyVersion(v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return inputError{"policy version is empty"}
	case len(v) > maxPolicyVersionBytes:
		return inputError{fmt.Sprintf("policy version is %d bytes long; the limit is %d bytes", len(v), maxPolicyVersionBytes)}
	case !utf8.ValidString(v):
		return inputError{"policy version is not valid UTF-8"}
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return inputError{fmt.Sprintf("policy version contains a control character (%U)", r)}
		}
	}
	return nil
}

// parseGPC parses a --gpc value: true or 1 (the subject sends a Global
// Privacy Control signal), false or 0 (it does not: a recorded signal is
// cleared).
func parseGPC(v string) (bool, error) {
	switch v {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, inputError{fmt.Sprintf("--gpc %s is not true or false", quote(clip(v, 64)))}
}

// validateTimestamp checks an RFC 3339 timestamp such as
// 2026-01-02T15:04:05Z or 2026-01-02T15:04:05.123+07:00.
func validateTimestamp(ts string) error {
	if _, err := time.Parse(time.RFC3339, ts); err != nil {
		return inputError{fmt.Sprintf("timestamp %s is not RFC 3339 (e.g. 2026-01-02T15:04:05Z)", quote(clip(ts, 64)))}
	}
	return nil
}

// parseAPIBase checks the consent API base URL: absolute http or https with
// a host, no query or fragment. A path prefix (behind a gateway) is kept.
func parseAPIBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, inputError{fmt.Sprintf("consent API URL %s is not an absolute http(s) URL", quote(clip(redactURL(raw), 128)))}
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, inputError{"consent API URL must not have a query or fragment"}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// redactURL hides a password in a URL that may not parse.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		return "<redacted>" + raw[at:]
	}
	return raw
}

// escapeSegment escapes one path segment with url.PathEscape ("/" becomes
// %2F). The dot segments "." and ".." are written %2E and %2E%2E, since
// clients, proxies and http.ServeMux resolve them literally.
func escapeSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// quote quotes s for a message, escaping control characters.
func quote(s string) string { return fmt.Sprintf("%q", s) }

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// sanitize makes a string from the server safe to print on a terminal:
// control characters and invalid UTF-8 become U+FFFD, and it is clipped to
// n bytes.
func sanitize(s string, n int) string {
	s = clip(s, n)
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
