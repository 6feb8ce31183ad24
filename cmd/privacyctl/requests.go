package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The data-subject request commands (the requests API, docs/openapi.yaml):
//
//	privacyctl erase SUBJECT [--regime R] [--id ID] [--verified]
//	privacyctl export SUBJECT [--kind access|portability] [--regime R] [--id ID] [--verified] [--wait] [--out FILE]
//	privacyctl requests list [--due-within 7d] [--subject SUBJECT]
//	privacyctl requests show ID
//	privacyctl requests verify ID
//	privacyctl requests extend ID --reason TEXT
//	privacyctl requests refuse ID --reason TEXT
//	privacyctl requests download ID --out FILE

// regimes are the request regimes (internal/requests.Regimes).
var regimes = []string{"gdpr", "ccpa", "pdpa", "vn_decree13", "voluntary"}

// request is the API's request shape (the fields privacyctl prints).
type request struct {
	ID          string           `json:"id"`
	Kind        string           `json:"kind"`
	Subject     string           `json:"subject_id"`
	SubjectMark string           `json:"subject_mark"`
	Regime      string           `json:"regime"`
	Status      string           `json:"status"`
	Reason      string           `json:"reason"`
	DeadlineMS  int64            `json:"deadline_ms"`
	ReceivedMS  int64            `json:"received_ms"`
	Progress    float64          `json:"progress"`
	Result      map[string]int64 `json:"result"`
	Replay      bool             `json:"replay"`
	Duplicate   bool             `json:"duplicate"`
}

type requestList struct {
	Requests []request `json:"requests"`
}

// fileBody is our request shape.
type fileBody struct {
	Kind     string `json:"kind,omitempty"`
	Regime   string `json:"regime,omitempty"`
	ID       string `json:"id,omitempty"`
	Verified bool   `json:"verified,omitempty"`
}

// printRequest prints one request on a line: id, kind, regime, status,
// deadline and days left (never the subject id: it is in the JSON).
func printRequest(w io.Writer, r request, now time.Time) {
	left := time.UnixMilli(r.DeadlineMS).Sub(now).Hours() / 24
	due := fmt.Sprintf("%.1f days left", left)
	if left < 0 {
		due = fmt.Sprintf("OVERDUE by %.1f days", -left)
	}
	if r.Status == "done" || r.Status == "refused" {
		due = "closed"
	}
	extra := ""
	switch {
	case r.Replay:
		extra = " (already filed)"
	case r.Duplicate:
		extra = " (an open request of this kind exists)"
	}
	fmt.Fprintf(w, "%s  %-11s %-11s %-11s deadline %s (%s)%s\n", r.ID, r.Kind, r.Regime, r.Status,
		time.UnixMilli(r.DeadlineMS).UTC().Format("2006-01-02 15:04Z"), due, extra)
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", sanitize(r.Reason, 1024))
	}
	if r.Status == "in_progress" && r.Progress > 0 {
		fmt.Fprintf(w, "  progress: %.0f%%\n", math.Floor(r.Progress*100))
	}
}

func requestPath(id string, suffix ...string) string {
	p := "/v1/requests/" + escapeSegment(id)
	for _, s := range suffix {
		p += "/" + s
	}
	return p
}

func checkRequestID(id string) error {
	if !strings.HasPrefix(id, "rq_") || len(id) > 80 || strings.ContainsFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-')
	}) {
		return inputError{fmt.Sprintf("%s is not a request id (rq_...)", quote(clip(id, 64)))}
	}
	return nil
}

// cmdFile files an erasure or export request for SUBJECT.
func cmdFile(route string) command {
	return func(c *client, p parsedArgs, args []string, out output) error {
		if len(args) != 1 {
			return usageError{fmt.Sprintf("%s needs SUBJECT (got %d argument(s))", route, len(args))}
		}
		if err := validateSubject(args[0]); err != nil {
			return err
		}
		b := fileBody{Regime: p.value("regime", ""), ID: p.value("id", ""), Verified: p.bools["verified"]}
		if b.Regime != "" {
			if err := checkEnum("regime", b.Regime, regimes); err != nil {
				return err
			}
		}
		if route == "export" {
			b.Kind = p.value("kind", "access")
			if err := checkEnum("kind", b.Kind, []string{"access", "portability"}); err != nil {
				return err
			}
		}
		if p.has("out") && !p.bools["wait"] {
			return usageError{"--out needs --wait (the document is downloaded once the export is done)"}
		}
		body, err := c.doJSON(http.MethodPost, "/v1/subjects/"+escapeSegment(args[0])+"/"+route, b)
		if err != nil {
			return err
		}
		r, err := emit(out, body, func(w io.Writer, r request) { printRequest(w, r, time.Now()) })
		if err != nil || !p.bools["wait"] {
			return err
		}
		return wait(c, p, r.ID, out)
	}
}

// wait polls a request until it is done or refused (printing progress),
// then downloads an export's document to --out.
func wait(c *client, p parsedArgs, id string, out output) error {
	last := ""
	for {
		body, err := c.doJSON(http.MethodGet, requestPath(id), nil)
		if err != nil {
			return err
		}
		var r request
		if err := json.Unmarshal(body, &r); err != nil {
			return requestError{fmt.Sprintf("the API answered with JSON of an unexpected shape: %v", err)}
		}
		line := fmt.Sprintf("%s %.0f%%", r.Status, math.Floor(r.Progress*100))
		if line != last && !out.json {
			fmt.Fprintf(out.w, "  %s: %s\n", id, line)
			last = line
		}
		switch r.Status {
		case "refused":
			return requestError{fmt.Sprintf("request %s was refused: %s", id, sanitize(r.Reason, 1024))}
		case "done":
			if out.json {
				_, _ = out.w.Write(body)
			}
			if p.has("out") {
				return download(c, id, p.value("out", ""), out)
			}
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// download writes an export's document to file (0600: it is the
// subject's personal data).
func download(c *client, id, file string, out output) error {
	body, err := c.doJSON(http.MethodGet, requestPath(id, "export"), nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return inputError{fmt.Sprintf("--out: %v", err)}
	}
	if !out.json {
		fmt.Fprintf(out.w, "export of %s written to %s (%d bytes)\n", id, file, len(body))
	}
	return nil
}

// cmdRequests runs a "requests" subcommand.
func cmdRequests(sub string) command {
	return func(c *client, p parsedArgs, args []string, out output) error {
		if sub == "list" {
			if len(args) != 0 {
				return usageError{"requests list takes no argument"}
			}
			path := "/v1/requests"
			if p.has("subject") {
				if err := validateSubject(p.value("subject", "")); err != nil {
					return err
				}
				path = "/v1/subjects/" + escapeSegment(p.value("subject", "")) + "/requests"
			} else if p.has("due-within") {
				d := p.value("due-within", "")
				if _, err := parseWithin(d); err != nil {
					return inputError{err.Error()}
				}
				path += "?due_within=" + url.QueryEscape(d)
			}
			body, err := c.doJSON(http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			_, err = emit(out, body, func(w io.Writer, l requestList) {
				if len(l.Requests) == 0 {
					fmt.Fprintln(w, "no requests")
				}
				now := time.Now()
				for _, r := range l.Requests {
					printRequest(w, r, now)
				}
			})
			return err
		}
		if len(args) != 1 {
			return usageError{fmt.Sprintf("requests %s needs ID (got %d argument(s))", sub, len(args))}
		}
		id := args[0]
		if err := checkRequestID(id); err != nil {
			return err
		}
		var body []byte
		var err error
		switch sub {
		case "show":
			body, err = c.doJSON(http.MethodGet, requestPath(id), nil)
		case "download":
			if !p.has("out") {
				return usageError{"requests download needs --out FILE"}
			}
			return download(c, id, p.value("out", ""), out)
		case "verify":
			body, err = c.doJSON(http.MethodPost, requestPath(id, "verify"), nil)
		default: // extend, refuse
			reason := strings.TrimSpace(p.value("reason", ""))
			if reason == "" {
				return usageError{fmt.Sprintf("requests %s needs --reason TEXT", sub)}
			}
			body, err = c.doJSON(http.MethodPost, requestPath(id, sub), map[string]string{"reason": reason})
		}
		if err != nil {
			return err
		}
		_, err = emit(out, body, func(w io.Writer, r request) { printRequest(w, r, time.Now()) })
		return err
	}
}

// parseWithin reads "7d" or a Go duration (the API's due_within).
func parseWithin(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil || n < 0 || n > 3650 {
			return 0, fmt.Errorf("--due-within %s: want a number of days (7d) or a duration (36h)", quote(clip(s, 32)))
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--due-within %s: want a number of days (7d) or a duration (36h)", quote(clip(s, 32)))
	}
	return d, nil
}
