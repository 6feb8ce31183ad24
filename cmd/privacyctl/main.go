// Command privacyctl is the command-line client of the consent API
// (pipeline run consent-api): it records, withdraws, reads and bulk-imports
// a subject's consent per purpose, records a subject's profile (the
// jurisdiction and the Global Privacy Control signal), and files and
// follows data-subject requests (erasure, access, portability; see
// requests.go).
//
//	privacyctl [--api URL] [--json] [--timeout D] consent set SUBJECT PURPOSE STATE [--jurisdiction J] [--gpc true|false] [--source S] [--policy-version V] [--timestamp T]
//	privacyctl consent withdraw SUBJECT PURPOSE [--source S] [--jurisdiction J] [--gpc true|false] [--policy-version V]
//	privacyctl consent profile SUBJECT [--jurisdiction J] [--gpc true|false] [--source S] [--policy-version V] [--timestamp T]
//	privacyctl consent get SUBJECT
//	privacyctl consent history SUBJECT
//	privacyctl consent import FILE [--format csv|jsonl]
//
// The API is --api, else $PIPELINE_CONSENT_API_URL, else
// http://localhost:8080. Every argument is checked before anything is sent.
// Exit codes: 0 success; 1 the request failed (API unreachable, an error
// answer, or an answer that is not the contract's); 2 usage error or invalid
// input, nothing sent; 3 an import finished but rejected some lines.
//
// It uses only the standard library.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
)

// Exit codes.
const (
	exitOK       = 0 // success
	exitFailed   = 1 // the request failed: unreachable, 4xx/5xx, or an unexpected answer
	exitUsage    = 2 // usage error or invalid input; no request was sent
	exitRejected = 3 // import done, but the API rejected some lines
)

// Defaults.
const (
	envAPIURL            = "PIPELINE_CONSENT_API_URL"
	defaultAPIURL        = "http://localhost:8080"
	defaultTimeout       = 30 * time.Second
	defaultSource        = "web_form"
	defaultPolicyVersion = "cli"
	defaultJurisdiction  = "unknown"
)

// usage is printed by "privacyctl help" and after a usage error.
const usage = `usage: privacyctl [--api URL] [--json] [--timeout D] consent COMMAND ARGS [FLAGS]

commands:
  consent set SUBJECT PURPOSE STATE [--jurisdiction J] [--gpc G] [--source S] [--policy-version V] [--timestamp T]
                                  record a choice
  consent withdraw SUBJECT PURPOSE [--source S] [--jurisdiction J] [--gpc G] [--policy-version V]
                                  withdraw consent (the jurisdiction is sent only when given)
  consent profile SUBJECT [--jurisdiction J] [--gpc G] [--source S] [--policy-version V] [--timestamp T]
                                  record the subject's jurisdiction and/or GPC signal, no choice
                                  (needs a J other than unknown, or --gpc, or --source gpc_signal)
  consent get SUBJECT             the latest state of every purpose, the jurisdiction and GPC
  consent history SUBJECT         every recorded change, newest first
  consent import FILE [--format csv|jsonl]
                                  bulk import; the format comes from the extension
                                  (.csv, .jsonl, .ndjson) unless --format is given; a CSV
                                  header may end with ,gpc; a line with empty purpose and
                                  state records only the jurisdiction and/or gpc

data-subject requests (the requests API; need the scope requests:write / requests:read):
  erase SUBJECT [--regime R] [--id ID] [--verified]
                                  file an erasure request (crypto-shredding; done by 'pipeline run requests')
  export SUBJECT [--kind access|portability] [--regime R] [--id ID] [--verified] [--wait [--out FILE]]
                                  file an access/portability request; --wait follows its progress
                                  and --out downloads the document (written 0600)
  requests list [--due-within D | --subject SUBJECT]
                                  open requests, earliest deadline first (D: 7d, 36h)
  requests show ID                one request: status, deadline, days left
  requests verify ID              record that the subject's identity was verified (it then runs)
  requests extend ID --reason T   extend the deadline once (GDPR +2 months, CCPA +45 days)
  requests refuse ID --reason T   refuse the request, with the reason the subject is told
  requests download ID --out FILE the export document of a done access request

values:
  SUBJECT  1-256 bytes of UTF-8, no control characters (write -- before one starting with -)
  PURPOSE  analytics | personalization | ai_training | marketing | third_party_sharing
  STATE    granted | denied | withdrawn
  J        gdpr | uk_gdpr | pdpa | vn_decree13 | ccpa | unknown (default unknown)
  G        true | false: Global Privacy Control on, or off (clears a recorded signal);
           sent only when given; --source gpc_signal implies true
  S        web_form | mobile_app | support_agent | gpc_signal | import (default web_form)
  V        policy version, 1-64 bytes (default cli; for profile the API's, unspecified)
  T        RFC 3339 time, e.g. 2026-01-02T15:04:05Z (default: when the API receives it)
  R        gdpr | ccpa | pdpa | vn_decree13 | voluntary (default: the API's, PIPELINE_REQUEST_DEFAULT_REGIME)
  ID       the caller's id of the request (1-64 of A-Z a-z 0-9 . _ -): filing again with it is a replay
  --verified  the caller verified the subject's identity (its own login), so the request runs at once

flags (anywhere on the line):
  --api URL    consent API base URL (default $PIPELINE_CONSENT_API_URL, else http://localhost:8080)
  --json       print the API's JSON answer instead of the short human form
  --timeout D  time limit of each request, e.g. 10s or 2m; 0 for none (default 30s)
  --token-file F  send the bearer token in F (made by 'pipeline api-token new')
  --ca F          trust this CA (PEM) for an https:// API instead of the system roots
  --cert F --key F  client certificate for mutual TLS

exit codes:
  0  success
  1  the request failed: API unreachable, an error answer (its message is printed), or an unexpected answer
  2  usage error or invalid input; nothing was sent
  3  import finished but some lines were rejected (listed; the other lines were written)
`

// usageError is a malformed command line; usage is printed after it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// inputError is a well-formed command line with an invalid value.
type inputError struct{ msg string }

func (e inputError) Error() string { return e.msg }

// rejectedError reports an import whose answer rejected some lines.
type rejectedError struct{ rejected, total int }

func (e rejectedError) Error() string {
	return fmt.Sprintf("%d of %d line(s) rejected", e.rejected, e.total)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run executes one privacyctl command line and returns the exit code. env
// looks up environment variables (os.Getenv in main).
func run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	err := dispatch(args, stdout, env)
	if err == nil {
		return exitOK
	}
	var (
		ue usageError
		ie inputError
		re rejectedError
	)
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "privacyctl: %v\n\n%s", err, usage)
		return exitUsage
	case errors.As(err, &ie):
		fmt.Fprintf(stderr, "privacyctl: %v\n", err)
		return exitUsage
	case errors.As(err, &re):
		fmt.Fprintf(stderr, "privacyctl: import: %v\n", err)
		return exitRejected
	default:
		fmt.Fprintf(stderr, "privacyctl: %v\n", err)
		return exitFailed
	}
}

// command is one "consent" subcommand: it validates its arguments, sends
// at most one request and prints the answer.
type command func(c *client, p parsedArgs, args []string, out output) error

// commands maps each consent subcommand to its implementation.
var commands = map[string]command{
	"set":      cmdSet,
	"withdraw": cmdWithdraw,
	"profile":  cmdProfile,
	"get":      cmdGet,
	"history":  cmdHistory,
	"import":   cmdImport,
}

// dispatch parses the command line and runs the command.
func dispatch(args []string, stdout io.Writer, env func(string) string) error {
	p, err := parseArgs(args)
	if err != nil {
		return err
	}
	pos := p.positional
	if p.bools["help"] || p.bools["h"] || (len(pos) > 0 && pos[0] == "help") {
		_, err := io.WriteString(stdout, usage)
		return err
	}
	if len(pos) == 0 {
		return usageError{"no command"}
	}
	switch pos[0] {
	case "erase", "export":
		if err := p.checkFlags(pos[0]); err != nil {
			return err
		}
		c, err := clientFor(p, env)
		if err != nil {
			return err
		}
		return cmdFile(map[string]string{"erase": "erasure", "export": "export"}[pos[0]])(c, p, pos[1:], output{w: stdout, json: p.bools["json"]})
	case "requests":
		subs := []string{"list", "show", "verify", "extend", "refuse", "download"}
		if len(pos) < 2 || !slices.Contains(subs, pos[1]) {
			return usageError{"requests needs a command: " + strings.Join(subs, ", ")}
		}
		if err := p.checkFlags("requests " + pos[1]); err != nil {
			return err
		}
		c, err := clientFor(p, env)
		if err != nil {
			return err
		}
		return cmdRequests(pos[1])(c, p, pos[2:], output{w: stdout, json: p.bools["json"]})
	case "consent":
	default:
		return usageError{fmt.Sprintf("unknown command %s", quote(clip(pos[0], 64)))}
	}
	if len(pos) < 2 {
		return usageError{"consent needs a command: set, withdraw, profile, get, history or import"}
	}
	cmd, ok := commands[pos[1]]
	if !ok {
		return usageError{fmt.Sprintf("unknown consent command %s (want set, withdraw, profile, get, history or import)", quote(clip(pos[1], 64)))}
	}
	if err := p.checkFlags(pos[1]); err != nil {
		return err
	}
	c, err := clientFor(p, env)
	if err != nil {
		return err
	}
	return cmd(c, p, pos[2:], output{w: stdout, json: p.bools["json"]})
}

// clientFor builds the API client from --api, $PIPELINE_CONSENT_API_URL
// and --timeout.
func clientFor(p parsedArgs, env func(string) string) (*client, error) {
	raw := p.value("api", "")
	if !p.has("api") {
		raw = strings.TrimSpace(env(envAPIURL))
		if raw == "" {
			raw = defaultAPIURL
		}
	}
	base, err := parseAPIBase(raw)
	if err != nil {
		return nil, err
	}
	timeout := defaultTimeout
	if p.has("timeout") {
		t, err := time.ParseDuration(p.value("timeout", ""))
		if err != nil || t < 0 {
			return nil, inputError{fmt.Sprintf("--timeout %s is not a duration such as 30s or 2m", quote(clip(p.value("timeout", ""), 64)))}
		}
		timeout = t
	}
	c := newClient(base, timeout)
	if p.has("token-file") {
		tok, err := tlsfiles.Secret(p.value("token-file", ""))
		if err != nil {
			return nil, inputError{fmt.Sprintf("--token-file: %v", err)}
		}
		c.token = tok
	}
	if p.has("ca") || p.has("cert") || p.has("key") {
		tc, err := tlsfiles.Client(p.value("ca", ""), p.value("cert", ""), p.value("key", ""), "")
		if err != nil {
			return nil, inputError{fmt.Sprintf("--ca/--cert/--key: %v", err)}
		}
		c.http.Transport = &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}
	}
	return c, nil
}

// output prints an answer: the raw JSON with --json, else the human form.
type output struct {
	w    io.Writer
	json bool
}

// emit decodes body into v and prints it with human, or writes body as is
// with --json. A body that does not decode into v is an unexpected answer.
func emit[T any](o output, body []byte, human func(io.Writer, T)) (T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return v, requestError{fmt.Sprintf("the consent API answered with JSON of an unexpected shape: %v", err)}
	}
	if o.json {
		_, err := o.w.Write(body)
		if err == nil && (len(body) == 0 || body[len(body)-1] != '\n') {
			_, err = io.WriteString(o.w, "\n")
		}
		return v, err
	}
	human(o.w, v)
	return v, nil
}

// setRequest is the body of PUT /v1/subjects/{subject}/consents/{purpose}.
type setRequest struct {
	State         string `json:"state"`
	Jurisdiction  string `json:"jurisdiction"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp,omitempty"`
	GPC           *bool  `json:"gpc,omitempty"`
}

// withdrawRequest is the body of POST .../consents/{purpose}/withdraw.
// Jurisdiction is omitted unless given, so the API keeps the subject's.
type withdrawRequest struct {
	Source        string `json:"source,omitempty"`
	Jurisdiction  string `json:"jurisdiction,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
	GPC           *bool  `json:"gpc,omitempty"`
}

// profileRequest is the body of PUT /v1/subjects/{subject}/profile; only
// the values given are sent.
type profileRequest struct {
	Jurisdiction  string `json:"jurisdiction,omitempty"`
	GPC           *bool  `json:"gpc,omitempty"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version,omitempty"`
	Timestamp     string `json:"timestamp,omitempty"`
}

// gpcFlag returns the value of --gpc (nil when not given) and checks it
// against the source: gpc_signal records a GPC signal, so --gpc false
// contradicts it.
func gpcFlag(p parsedArgs, source string) (*bool, error) {
	if !p.has("gpc") {
		return nil, nil
	}
	on, err := parseGPC(p.value("gpc", ""))
	if err != nil {
		return nil, err
	}
	if !on && source == "gpc_signal" {
		return nil, inputError{"--source gpc_signal records a GPC signal; --gpc false contradicts it"}
	}
	return &on, nil
}

// cmdSet records a choice: consent set SUBJECT PURPOSE STATE.
func cmdSet(c *client, p parsedArgs, args []string, out output) error {
	if len(args) != 3 {
		return usageError{fmt.Sprintf("consent set needs SUBJECT PURPOSE STATE (got %d argument(s))", len(args))}
	}
	subject, purpose, state := args[0], args[1], args[2]
	req := setRequest{
		State:         state,
		Jurisdiction:  p.value("jurisdiction", defaultJurisdiction),
		Source:        p.value("source", defaultSource),
		PolicyVersion: p.value("policy-version", defaultPolicyVersion),
		Timestamp:     p.value("timestamp", ""),
	}
	gpc, gpcErr := gpcFlag(p, req.Source)
	req.GPC = gpc
	if err := firstError(
		validateSubject(subject),
		checkEnum("purpose", purpose, purposes),
		checkEnum("state", state, states),
		checkEnum("jurisdiction", req.Jurisdiction, jurisdictions),
		checkEnum("source", req.Source, sources),
		validatePolicyVersion(req.PolicyVersion),
		gpcErr,
	); err != nil {
		return err
	}
	if p.has("timestamp") {
		if err := validateTimestamp(req.Timestamp); err != nil {
			return err
		}
	}
	body, err := c.doJSON("PUT", consentPath(subject, purpose), req)
	if err != nil {
		return err
	}
	_, err = emit(out, body, printReceipt)
	return err
}

// cmdWithdraw withdraws consent: consent withdraw SUBJECT PURPOSE.
func cmdWithdraw(c *client, p parsedArgs, args []string, out output) error {
	if len(args) != 2 {
		return usageError{fmt.Sprintf("consent withdraw needs SUBJECT PURPOSE (got %d argument(s))", len(args))}
	}
	subject, purpose := args[0], args[1]
	req := withdrawRequest{
		Source:        p.value("source", defaultSource),
		PolicyVersion: p.value("policy-version", defaultPolicyVersion),
	}
	errs := []error{
		validateSubject(subject),
		checkEnum("purpose", purpose, purposes),
		checkEnum("source", req.Source, sources),
		validatePolicyVersion(req.PolicyVersion),
	}
	if p.has("jurisdiction") {
		req.Jurisdiction = p.value("jurisdiction", "")
		errs = append(errs, checkEnum("jurisdiction", req.Jurisdiction, jurisdictions))
	}
	gpc, gpcErr := gpcFlag(p, req.Source)
	req.GPC = gpc
	if err := firstError(append(errs, gpcErr)...); err != nil {
		return err
	}
	body, err := c.doJSON("POST", consentPath(subject, purpose, "withdraw"), req)
	if err != nil {
		return err
	}
	_, err = emit(out, body, printReceipt)
	return err
}

// cmdProfile records a subject's jurisdiction and/or GPC signal, with no
// per-purpose choice: consent profile SUBJECT.
func cmdProfile(c *client, p parsedArgs, args []string, out output) error {
	if len(args) != 1 {
		return usageError{fmt.Sprintf("consent profile needs SUBJECT (got %d argument(s))", len(args))}
	}
	subject := args[0]
	req := profileRequest{
		Jurisdiction: p.value("jurisdiction", ""),
		Source:       p.value("source", defaultSource),
	}
	errs := []error{validateSubject(subject), checkEnum("source", req.Source, sources)}
	if p.has("jurisdiction") {
		errs = append(errs, checkEnum("jurisdiction", req.Jurisdiction, jurisdictions))
	}
	if p.has("policy-version") {
		req.PolicyVersion = p.value("policy-version", "")
		errs = append(errs, validatePolicyVersion(req.PolicyVersion))
	}
	if p.has("timestamp") {
		req.Timestamp = p.value("timestamp", "")
		errs = append(errs, validateTimestamp(req.Timestamp))
	}
	gpc, gpcErr := gpcFlag(p, req.Source)
	req.GPC = gpc
	errs = append(errs, gpcErr)
	if err := firstError(errs...); err != nil {
		return err
	}
	if (req.Jurisdiction == "" || req.Jurisdiction == defaultJurisdiction) && req.GPC == nil && req.Source != "gpc_signal" {
		return inputError{"consent profile needs --jurisdiction J (other than unknown), --gpc true|false, or --source gpc_signal"}
	}
	body, err := c.doJSON("PUT", profilePath(subject), req)
	if err != nil {
		return err
	}
	_, err = emit(out, body, printProfileReceipt)
	return err
}

// cmdGet prints a subject's latest consent: consent get SUBJECT.
func cmdGet(c *client, _ parsedArgs, args []string, out output) error {
	if len(args) != 1 {
		return usageError{fmt.Sprintf("consent get needs SUBJECT (got %d argument(s))", len(args))}
	}
	if err := validateSubject(args[0]); err != nil {
		return err
	}
	body, err := c.doJSON("GET", consentPath(args[0]), nil)
	if err != nil {
		return err
	}
	_, err = emit(out, body, printConsent)
	return err
}

// cmdHistory prints a subject's consent changes: consent history SUBJECT.
func cmdHistory(c *client, _ parsedArgs, args []string, out output) error {
	if len(args) != 1 {
		return usageError{fmt.Sprintf("consent history needs SUBJECT (got %d argument(s))", len(args))}
	}
	subject := args[0]
	if err := validateSubject(subject); err != nil {
		return err
	}
	body, err := c.doJSON("GET", consentPath(subject, "history"), nil)
	if err != nil {
		return err
	}
	_, err = emit(out, body, func(w io.Writer, h consentHistory) { printHistory(w, subject, h) })
	return err
}

// importFormats maps --format values and file extensions to content types.
var importFormats = map[string]string{
	"csv":    "text/csv",
	"jsonl":  "application/x-ndjson",
	"ndjson": "application/x-ndjson",
}

// cmdImport sends a CSV or JSON-lines file to POST /v1/consents/import. The
// lines are validated by the API, which reports each rejected line; the file
// is sent as is.
func cmdImport(c *client, p parsedArgs, args []string, out output) error {
	if len(args) != 1 {
		return usageError{fmt.Sprintf("consent import needs FILE (got %d argument(s))", len(args))}
	}
	file := args[0]
	format := strings.ToLower(p.value("format", ""))
	if format == "" {
		format = strings.TrimPrefix(strings.ToLower(filepath.Ext(file)), ".")
		if _, ok := importFormats[format]; !ok {
			return inputError{fmt.Sprintf("cannot tell the format of %s from its extension: name it .csv, .jsonl or .ndjson, or give --format csv|jsonl", quote(clip(file, 128)))}
		}
	}
	contentType, ok := importFormats[format]
	if !ok {
		return inputError{fmt.Sprintf("unknown --format %s (want csv or jsonl)", quote(clip(format, 32)))}
	}
	f, err := os.Open(file)
	if err != nil {
		return inputError{fmt.Sprintf("cannot open the import file: %v", err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return inputError{fmt.Sprintf("cannot read the import file: %v", err)}
	}
	if !st.Mode().IsRegular() {
		return inputError{fmt.Sprintf("import file %s is not a regular file", quote(clip(file, 128)))}
	}
	if st.Size() == 0 {
		return inputError{fmt.Sprintf("import file %s is empty", quote(clip(file, 128)))}
	}
	body, err := c.do("POST", "/v1/consents/import", contentType, f, st.Size())
	if err != nil {
		return err
	}
	res, err := emit(out, body, func(w io.Writer, r importResult) { printImport(w, file, r) })
	if err != nil {
		return err
	}
	if res.Rejected > 0 {
		return rejectedError{rejected: res.Rejected, total: res.Accepted + res.Rejected}
	}
	return nil
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
