package integration

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/privacycenter"
	"github.com/privacy-pipeline/pipeline/internal/privacycenter/link"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/tcfstring"
)

// chromium is the headless browser (PIPELINE_CHROMIUM, from
// scripts/chromium, or chromium on PATH); under CI a missing browser
// fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PIPELINE_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	missing(t, "integration: no headless Chromium (run scripts/chromium, or set PIPELINE_CHROMIUM)")
	return ""
}

// newBrowser starts a headless Chromium of its own (its own cookies) and
// returns a tab's context; the browser stops with the test.
func newBrowser(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1100, 1400), chromedp.Flag("lang", "en-GB"))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// screenshot writes the page to $PIPELINE_SCREENSHOT_DIR/name when set
// ('make screenshots' sets docs/).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("PIPELINE_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", name, len(png))
}

func attr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(sel))); err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		t.Fatalf("%s[%s]: %v", sel, name, err)
	}
	return v.Value
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(sel))); err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	return strings.TrimSpace(v)
}

// TestPrivacyCenterInABrowser drives the privacy center with headless
// Chromium against the real services (the consent API and the requests
// service as 'pipeline run' starts them, the privacy processor, consent-
// sync): a customer opens the link their company's login minted, sees
// each purpose with its fields, withdraws marketing with the switch, and
// within the withdrawal bound (SPEC 3: 1 s) no new record of theirs
// reaches the marketing topic while analytics goes on; the browser's
// Sec-GPC header is recorded as a GPC signal; an export is requested,
// downloaded by the browser and parsed; an erasure request shows its
// deadline; the attacks on the way in are refused (no token, an expired
// link, a link sealed with another key, another customer's export); and
// the operator view, behind the admin scope, shows the counts the
// processor's metrics say.
func TestPrivacyCenterInABrowser(t *testing.T) {
	chrome := chromium(t)
	r := newRig(t)
	r.erasing()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	r.startErasing(fctx)
	metricsSrv := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	defer metricsSrv.Close()

	login, le, _ := httpauth.NewToken("company-login", []httpauth.Scope{httpauth.ScopeLinksWrite}, time.Time{})
	officer, oe, _ := httpauth.NewToken("privacy-officer", []httpauth.Scope{httpauth.ScopeAdmin}, time.Time{})
	reader, re, _ := httpauth.NewToken("auditor", []httpauth.Scope{httpauth.ScopeConsentRead, httpauth.ScopeRequestsRead}, time.Time{})
	cmp, ce, _ := httpauth.NewToken("consent-banner", []httpauth.Scope{httpauth.ScopeConsentWrite}, time.Time{})
	principals, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{le, oe, re, ce}})
	pfile := filepath.Join(dir, "principals.json")
	if err := os.WriteFile(pfile, principals, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg
	cfg.Ops.HTTPAddr, cfg.Consent.APIAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Consent.API = config.ConsentAPI{Auth: "token", AuthFile: pfile, RateLimit: 500, RateBurst: 500}
	cfg.PrivacyCenter.LinkKeyFile = filepath.Join(dir, "link.key")
	if err := subjectkey.GenerateKEKFile(cfg.PrivacyCenter.LinkKeyFile); err != nil {
		t.Fatal(err)
	}
	cfg.PrivacyCenter.MetricsURLs = []string{metricsSrv.URL + "/metrics"}
	logs := &pipelinetest.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	addr := map[string]string{}
	for _, c := range []string{wiring.CommandRequests, wiring.CommandConsentAPI} { // the requests service's metrics go to the operator view
		if c == wiring.CommandConsentAPI {
			cfg.PrivacyCenter.MetricsURLs = append(cfg.PrivacyCenter.MetricsURLs, "http://"+addr[wiring.CommandRequests]+"/metrics")
		}
		bound := make(chan string, 1)
		app, err := wiring.NewApp(ctx, c, cfg, wiring.AppOptions{Bound: bound, Log: slog.New(slog.NewJSONHandler(logs, nil)).With("command", c)})
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		done := make(chan error, 1)
		go func() { done <- app.Run(fctx) }()
		select {
		case addr[c] = <-bound:
		case err := <-done:
			t.Fatalf("%s stopped: %v", c, err)
		case <-time.After(time.Minute):
			t.Fatalf("%s did not listen", c)
		}
	}
	base := "http://" + addr[wiring.CommandConsentAPI]
	api := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	mint := func(subject string) string {
		t.Helper()
		code, b := api("POST", "/v1/privacy-center/links", login, `{"subject_id":"`+subject+`","ttl":"10m"}`)
		var l privacycenter.Link
		if code != 201 || json.Unmarshal(b, &l) != nil {
			t.Fatalf("mint: %d %s", code, b)
		}
		return base + l.URL
	}

	customer, other := "canary-pc-customer-8101", "canary-pc-other-8102"
	r.grantAllPurposes(ctx, customer, other)
	r.start()
	r.produce(ctx, alternating(71, customer, other))
	r.waitCaughtUp(2 * time.Minute)

	// The customer's page.
	b := newBrowser(t, ctx, chrome)
	customerLink := mint(customer)
	if err := chromedp.Do(b, chromedp.Navigate(customerLink), chromedp.WaitVisible(chromedp.CSS("#continue")), chromedp.Click(chromedp.CSS("#continue")), chromedp.WaitVisible(chromedp.CSS("#switch-marketing"))); err != nil {
		t.Fatal(err)
	}
	loc, _ := chromedp.Run(b, chromedp.Location())
	if strings.Contains(loc, "t=") || strings.Contains(loc, customer) {
		t.Fatalf("the token or the subject stays in the address bar: %s", loc)
	}
	for _, p := range purpose.All {
		if got := attr(t, b, "#switch-"+p.String(), "aria-checked"); got != "true" {
			t.Fatalf("%s: aria-checked %s before any change", p, got)
		}
	}
	if fields, _ := chromedp.Run(b, chromedp.TextContent(chromedp.CSS("#purpose-marketing details table"))); !strings.Contains(fields, "Your e-mail address") {
		t.Fatalf("the marketing purpose's fields: %q", fields)
	}
	if err := chromedp.Do(b, chromedp.SetAttributeValue(chromedp.CSS("#purpose-marketing details"), "open", "")); err != nil {
		t.Fatal(err)
	}
	screenshot(t, b, "privacy-center-customer.png")

	// Withdraw marketing with the switch (keyboard: focus and Enter).
	ends := endOffsets(t, r)
	if err := chromedp.Do(b, chromedp.Focus(chromedp.CSS("#switch-marketing")), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("#notice"))); err != nil {
		t.Fatal(err)
	}
	accepted := time.Now()
	if got := attr(t, b, "#state-marketing", "data-state"); got != "withdrawn" {
		t.Fatalf("after the switch, marketing is %s", got)
	}
	if got := attr(t, b, "#switch-marketing", "aria-checked"); got != "false" {
		t.Fatalf("after the switch, aria-checked %s", got)
	}
	time.Sleep(time.Until(accepted.Add(time.Second))) // the withdrawal bound
	r.produce(ctx, alternating(72, customer, other))
	r.waitCaughtUp(2 * time.Minute)
	after := map[string]int{}
	for _, rec := range r.read(r.cleanTopics()...) {
		if rec.Offset >= ends[rec.Topic][rec.Partition] {
			after[rec.Topic]++
		}
	}
	mk, an := wiring.CleanTopic(r.cfg, purpose.Marketing), wiring.CleanTopic(r.cfg, purpose.Analytics)
	if after[mk] != 20 || after[an] != 40 { // 20 events each; marketing only for the other customer
		t.Fatalf("after the withdrawal (1 s bound): %d marketing records (want the other customer's 20), %d analytics (want 40)", after[mk], after[an])
	}
	code, hist := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/consents/history", reader, "")
	if code != 200 || !strings.Contains(string(hist), `"changed_by":"privacy-center"`) || !strings.Contains(string(hist), `"source":"web_form"`) {
		t.Fatalf("history: %d %s", code, hist)
	}

	// The browser's GPC signal.
	if _, err := chromedp.Call(b, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Sec-GPC": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("#gpc-status"))); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the GPC signal in the history", 30*time.Second, func() bool {
		_, hist := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/consents/history", reader, "")
		return strings.Contains(string(hist), `"source":"gpc_signal"`)
	})
	code, st := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/consents", reader, "")
	if code != 200 || !strings.Contains(string(st), `"gpc":true`) {
		t.Fatalf("state after the GPC signal: %d %s", code, st)
	}

	// An export: requested, done, downloaded by the browser, parsed.
	downloads := t.TempDir()
	done := make(chan string, 1)
	chromedp.ListenBrowser(b, func(ev any) {
		if e, ok := ev.(*browser.EventDownloadProgress); ok && e.State == browser.DownloadProgressStateCompleted {
			select {
			case done <- e.GUID:
			default:
			}
		}
	})
	yes := true
	if _, err := chromedp.CallBrowser(b, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName,
		DownloadPath: downloads, EventsEnabled: &yes}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("#export")), chromedp.WaitVisible(chromedp.CSS("#requests-table"))); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the export's download link", 2*time.Minute, func() bool {
		if chromedp.Do(b, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#requests-table"))) != nil {
			return false
		}
		n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("a.download").length`))
		return err == nil && n > 0
	})
	href := attr(t, b, "a.download", "href")
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("a.download"))); err != nil {
		t.Fatal(err)
	}
	var guid string
	select {
	case guid = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the download did not complete")
	}
	doc, err := os.ReadFile(filepath.Join(downloads, guid))
	if err != nil {
		t.Fatal(err)
	}
	var exported struct {
		SubjectID string `json:"subject_id"`
		Consent   struct {
			History []json.RawMessage `json:"history"`
		} `json:"consent"`
	}
	if err := json.Unmarshal(doc, &exported); err != nil || exported.SubjectID != customer || len(exported.Consent.History) == 0 {
		t.Fatalf("the downloaded export (%d bytes): %v %.200s", len(doc), err, doc)
	}
	if strings.Contains(string(doc), other) {
		t.Fatal("the export names the other customer")
	}
	t.Logf("export downloaded by the browser: %d bytes, %d consent changes", len(doc), len(exported.Consent.History))

	// The attacks on the way in, each from a browser of its own.
	stranger := newBrowser(t, ctx, chrome)
	refusal := func(u string) string {
		t.Helper()
		if err := chromedp.Do(stranger, chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("#refusal"))); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		return attr(t, stranger, "#refusal", "data-reason")
	}
	// The customer's link, replayed (from a proxy log, say): its landing
	// still shows, but the link is spent.
	if err := chromedp.Do(stranger, chromedp.Navigate(customerLink), chromedp.WaitVisible(chromedp.CSS("#continue")), chromedp.Click(chromedp.CSS("#continue")),
		chromedp.WaitReady(chromedp.CSS("#refusal"))); err != nil {
		t.Fatal(err)
	}
	if got := attr(t, stranger, "#refusal", "data-reason"); got != privacycenter.RefusedUsed {
		t.Fatalf("the customer's link replayed: %s", got)
	}
	if got := refusal(base + "/privacy/"); got != privacycenter.RefusedMissing {
		t.Fatalf("no token: %s", got)
	}
	past, err := wiring.LinkSealer(cfg, link.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := past.Mint(customer, time.Minute)
	if got := refusal(base + "/privacy/open?t=" + url.QueryEscape(expired)); got != privacycenter.RefusedExpired {
		t.Fatalf("an expired link: %s", got)
	}
	foreignCfg := cfg
	foreignCfg.PrivacyCenter.LinkKeyFile = filepath.Join(dir, "foreign.key")
	if err := subjectkey.GenerateKEKFile(foreignCfg.PrivacyCenter.LinkKeyFile); err != nil {
		t.Fatal(err)
	}
	fs, _ := wiring.LinkSealer(foreignCfg)
	forged, _ := fs.Mint(customer, time.Minute)
	if got := refusal(base + "/privacy/open?t=" + url.QueryEscape(forged)); got != privacycenter.RefusedForged {
		t.Fatalf("a link sealed with another key: %s", got)
	}
	// The other customer, signed in, asks for this customer's export.
	if err := chromedp.Do(stranger, chromedp.Navigate(mint(other)), chromedp.WaitVisible(chromedp.CSS("#continue")), chromedp.Click(chromedp.CSS("#continue")), chromedp.WaitVisible(chromedp.CSS("#switch-marketing"))); err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Run(stranger, chromedp.NavigateResponse(base+href))
	if err != nil {
		t.Fatal(err)
	}
	status := res.Status
	if status != http.StatusNotFound {
		t.Fatalf("another customer's export: %d", status)
	}

	// The operator view: the admin scope, and the counts of the metrics.
	op := newBrowser(t, ctx, chrome)
	if err := chromedp.Do(op, chromedp.Navigate(base+"/privacy/admin/"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), reader), chromedp.Click(chromedp.CSS("#signin")), chromedp.WaitVisible(chromedp.CSS("#problem"))); err != nil {
		t.Fatal(err)
	}
	if got := text(t, op, "#problem"); !strings.Contains(got, "not valid") && !strings.Contains(got, "admin scope") {
		t.Fatalf("a non-admin token: %q", got)
	}
	if err := chromedp.Do(op, chromedp.SendKeys(chromedp.CSS("#token"), officer),
		chromedp.Click(chromedp.CSS("#signin")), chromedp.WaitVisible(chromedp.CSS("#counts"))); err != nil {
		t.Fatal(err)
	}
	snap, err := metrics.Snapshot(r.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range purpose.All {
		want := snap["pipeline_published_total{purpose="+p.String()+"}"]
		got := text(t, op, `tr[data-purpose="`+p.String()+`"] td.published`)
		if got != strconv.FormatFloat(want, 'f', -1, 64) {
			t.Fatalf("%s: the view says %s published, the metrics %v", p, got, want)
		}
		deniedSum := 0.0
		for k, v := range snap {
			if strings.HasPrefix(k, "pipeline_denied_total{purpose="+p.String()+",") {
				deniedSum += v
			}
		}
		if got := text(t, op, `tr[data-purpose="`+p.String()+`"] td.denied`); got != strconv.FormatFloat(deniedSum, 'f', -1, 64) {
			t.Fatalf("%s: the view says %s denied, the metrics %v", p, got, deniedSum)
		}
	}
	if snap["pipeline_denied_total{purpose=marketing,reason=withdrawn}"] == 0 {
		t.Fatal("the withdrawal denied nothing")
	}
	if got := text(t, op, "#policy-version"); got == "" {
		t.Fatal("no policy version")
	}

	// A consent banner's TC string for the customer: its choices recorded
	// with the string as evidence, in the history (and so in an export).
	tc := tcfstring.Encode(4, []int{1, 8, 9}, nil)
	if code, b := api("POST", "/v1/subjects/"+url.PathEscape(customer)+"/consent-strings", cmp, `{"tc_string":"`+tc+`"}`); code != 202 {
		t.Fatalf("consent string: %d %s", code, b)
	}
	waitUntil(t, "the TC string in the history", 30*time.Second, func() bool {
		_, hist := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/consents/history", reader, "")
		return strings.Contains(string(hist), `"consent_string":"tcf:`+tc+`"`)
	})

	// Erasure: confirmed, filed, its deadline shown.
	if _, err := chromedp.Call(b, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(base+"/privacy/?lang=vi"), chromedp.WaitVisible(chromedp.CSS("#erase"))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, b, "privacy-center-customer-vi.png")
	if err := chromedp.Do(b, chromedp.Navigate(base+"/privacy/?lang=en"), chromedp.WaitVisible(chromedp.CSS("#erase")),
		chromedp.Click(chromedp.CSS("#erase-confirm")), chromedp.Click(chromedp.CSS("#erase")), chromedp.WaitVisible(chromedp.CSS("#notice"))); err != nil {
		t.Fatal(err)
	}
	code, lb := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/requests", reader, "")
	var list struct {
		Requests []requests.Request `json:"requests"`
	}
	if code != 200 || json.Unmarshal(lb, &list) != nil {
		t.Fatalf("requests: %d %s", code, lb)
	}
	var erasure *requests.Request
	for i := range list.Requests {
		if list.Requests[i].Kind == requests.Erasure {
			erasure = &list.Requests[i]
		}
	}
	if erasure == nil {
		t.Fatalf("no erasure request filed: %s", lb)
	}
	want := erasure.Deadline().UTC().Format("2 Jan 2006 15:04") + " UTC"
	if got := text(t, b, "#request-"+erasure.ID+" .deadline"); got != want {
		t.Fatalf("the erasure's deadline on the page %q, the request's %q", got, want)
	}
	t.Logf("erasure request %s (%s) shown with its deadline %s", erasure.ID, erasure.Regime, want)
	if err := chromedp.Do(op, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#counts"))); err != nil {
		t.Fatal(err)
	}
	if got := text(t, op, "#open-requests"); got != "1" && got != "0" { // the erasure, open or already done
		t.Fatalf("the operator view shows %s open requests, want the erasure's 1 (or 0 once it is done)", got)
	}
	screenshot(t, op, "privacy-center-operator.png")
	waitUntil(t, "the erasure done", 2*time.Minute, func() bool {
		code, b := api("GET", "/v1/requests/"+erasure.ID, reader, "")
		var q requests.Request
		return code == 200 && json.Unmarshal(b, &q) == nil && q.Status == requests.Done
	})
	// The consent string went with the subject: no history, no state.
	if code, hist := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/consents/history", reader, ""); code == 200 && strings.Contains(string(hist), tc) {
		t.Fatalf("the TC string outlived the erasure: %s", hist)
	}
	if code, _ := api("GET", "/v1/subjects/"+url.PathEscape(customer)+"/consents", reader, ""); code != http.StatusNotFound {
		t.Fatalf("the erased customer's consent state: %d", code)
	}
	if err := chromedp.Do(op, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#counts"))); err != nil {
		t.Fatal(err)
	}
	if got := text(t, op, "#erasures-done"); got != "1" {
		t.Fatalf("the operator view shows %s erasures done, want 1", got)
	}
	// Nothing secret or personal in the commands' logs: no subject id, no
	// link token, no bearer token, no consent string.
	all := logs.String()
	for what, canary := range map[string]string{"the customer's id": customer, "the other customer's id": other, "a link token": "pl1.",
		"the operator's token": officer, "the login's token": login, "the consent string": tc} {
		if strings.Contains(all, canary) {
			t.Errorf("the logs hold %s", what)
		}
	}
}
