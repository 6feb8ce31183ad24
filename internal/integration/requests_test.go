package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
)

// TestRequestsOnRealServices: data-subject requests end to end on the real
// broker and redis-server, through the commands a deployment runs
// ('pipeline run consent-api' serving the requests API with token
// authentication, 'pipeline run requests'), with the privacy processor
// (encrypting policy), consent-sync and the key sync running and events
// arriving:
//   - an access request is filed, carried out and downloaded: the document
//     holds the subject's consent history and its records with the
//     encrypted e-mail decrypted;
//   - an erasure request is filed and carried out: no new record about the
//     subject is published, the earlier export document is gone (410), its
//     requests carry the ledger mark instead of its raw id (in Redis and in
//     the latest record per id on privacy.requests), a new request for it
//     is refused with reason erased;
//   - a request past its deadline written straight to privacy.requests is
//     filed and shows as overdue in the requests service's metrics (what
//     the PrivacyRequestOverdue alert watches);
//   - a standard client (Python's confluent-kafka and json) reads
//     privacy.requests.
func TestRequestsOnRealServices(t *testing.T) {
	r := newRig(t)
	r.erasing()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	rdb := r.startErasing(fctx)

	// The two commands, with token authentication.
	writer, we, _ := httpauth.NewToken("privacy-team", []httpauth.Scope{httpauth.ScopeRequestsRead, httpauth.ScopeRequestsWrite}, time.Time{})
	principals, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{we}})
	pfile := filepath.Join(dir, "principals.json")
	if err := os.WriteFile(pfile, principals, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg
	cfg.Ops.HTTPAddr, cfg.Consent.APIAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Consent.API = config.ConsentAPI{Auth: "token", AuthFile: pfile, RateLimit: 500, RateBurst: 500}
	logs := &pipelinetest.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	addr := map[string]string{}
	for _, c := range []string{wiring.CommandConsentAPI, wiring.CommandRequests} {
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
	api := "http://" + addr[wiring.CommandConsentAPI]
	call := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+writer)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	waitDone := func(id string) requests.Request {
		t.Helper()
		var q requests.Request
		waitUntil(t, "request "+id+" done", 2*time.Minute, func() bool {
			code, b := call("GET", "/v1/requests/"+id, "")
			q = requests.Request{} // absent fields must not keep an earlier answer's values
			return code == 200 && json.Unmarshal(b, &q) == nil && q.Status == requests.Done
		})
		return q
	}

	erased, kept := "canary-rq-erase-7001", "canary-rq-keep-7002"
	r.grantAllPurposes(ctx, erased, kept)
	events := func(seed uint64) []producer.Event { return alternating(seed, erased, kept) }
	r.start()
	r.produce(ctx, events(91))
	r.waitCaughtUp(2 * time.Minute)

	// Access: filed, done, downloaded, decrypted.
	code, b := call("POST", "/v1/subjects/"+url.PathEscape(erased)+"/export", `{"id":"exp-1","verified":true}`)
	if code != 202 {
		t.Fatalf("export: %d %s", code, b)
	}
	start := time.Now()
	waitDone("rq_c_exp-1")
	t.Logf("access request done in %v", time.Since(start).Round(time.Millisecond))
	code, doc := call("GET", "/v1/requests/rq_c_exp-1/export", "")
	var d struct {
		SubjectID string `json:"subject_id"`
		Erased    bool   `json:"erased"`
		Consent   struct {
			History []json.RawMessage `json:"history"`
		} `json:"consent"`
	}
	if code != 200 || json.Unmarshal(doc, &d) != nil || d.SubjectID != erased || d.Erased || len(d.Consent.History) == 0 {
		t.Fatalf("download: %d %.300s", code, doc)
	}
	if !bytes.Contains(doc, []byte("canary-mail-"+erased+"@example.com")) || bytes.Contains(doc, []byte(kept)) {
		t.Fatal("the export lacks the decrypted e-mail, or holds the other subject")
	}

	// Erasure: filed, done; then nothing more about the subject.
	code, b = call("POST", "/v1/subjects/"+url.PathEscape(erased)+"/erasure", `{"verified":true}`)
	var filed requests.Request
	if code != 202 || json.Unmarshal(b, &filed) != nil {
		t.Fatalf("erasure: %d %s", code, b)
	}
	start = time.Now()
	done := waitDone(filed.ID)
	t.Logf("erasure request done in %v: %v", time.Since(start).Round(time.Millisecond), done.Result)
	if done.Subject != "" || !erasure.IsMark(done.SubjectMark) || done.Result["notices"] != int64(purpose.Count) {
		t.Fatalf("the done erasure: %+v", done)
	}
	ends := endOffsets(t, r)
	r.produce(ctx, events(92))
	r.waitCaughtUp(2 * time.Minute)
	plan, _ := erasure.PlanFor(erased, r.keys, mustLedger(t, r.cfg.Keys.ErasureKeyFile))
	pseud := map[string]bool{}
	for _, n := range plan.Notices {
		pseud[n.Pseudonym] = true
	}
	keptAfter := 0
	for _, rec := range r.read(r.cleanTopics()...) {
		if rec.Offset < ends[rec.Topic][rec.Partition] {
			continue
		}
		if pseud[string(rec.Key)] {
			t.Fatalf("a record about the erased subject on %s after its erasure", rec.Topic)
		}
		keptAfter++
	}
	if keptAfter == 0 {
		t.Fatal("nothing published for the kept subject after the erasure")
	}
	if code, b = call("GET", "/v1/requests/rq_c_exp-1/export", ""); code != 410 {
		t.Fatalf("the export document after the erasure: %d %s", code, b)
	}
	if code, b = call("POST", "/v1/subjects/"+url.PathEscape(erased)+"/export", ``); code != 409 || !bytes.Contains(b, []byte(`"erased"`)) {
		t.Fatalf("an export of the erased subject: %d %s", code, b)
	}

	// Overdue: a request written straight to the topic, received 80 hours
	// ago under Decree 13 (72 hours), not verified.
	late, _ := requests.New("rq_c_late-1", requests.Access, "canary-rq-late-7003", requests.VNDecree13, "topic", "crm", false, time.Now().Add(-80*time.Hour))
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Names.RequestsTopic, Key: []byte(late.ID), Value: late.Marshal()}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	metrics := "http://" + addr[wiring.CommandRequests] + "/metrics"
	waitUntil(t, "the overdue request in the metrics", time.Minute, func() bool {
		res, err := http.Get(metrics)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		m, _ := io.ReadAll(res.Body)
		return bytes.Contains(m, []byte(`pipeline_requests_open{due="overdue",kind="access",regime="vn_decree13"} 1`)) &&
			bytes.Contains(m, []byte("pipeline_requests_min_days_left -0.3"))
	})

	// The log: the latest record per request id (what compaction keeps)
	// never holds the erased raw id; Redis holds nothing under it.
	latest := map[string][]byte{}
	for _, rec := range r.read(r.cfg.Names.RequestsTopic) {
		if string(rec.Key) != kafkaio.HeartbeatKey { // the service's compaction heartbeats
			latest[string(rec.Key)] = rec.Value
		}
	}
	if len(latest) != 3 {
		t.Fatalf("%d requests on the log, want 3", len(latest))
	}
	for id, v := range latest {
		if bytes.Contains(v, []byte(erased)) {
			t.Fatalf("the latest record of %s holds the erased raw id", id)
		}
	}
	waitUntil(t, "Redis holds nothing under the erased id", 30*time.Second, func() bool {
		keys, err := rdb.Keys(ctx, strings.TrimSuffix(r.cfg.Names.RawTopic, ".raw")+"*"+erased+"*").Result()
		return err == nil && len(keys) == 0
	})
	for _, k := range mustKeys(t, rdb, ctx, r.cfg.Requests.KeyPrefix+"*") {
		if v, _ := rdb.Get(ctx, k).Result(); strings.Contains(v, erased) {
			t.Fatalf("%s holds the erased raw id", k)
		}
	}

	// The audit trail: every status change of the erasure request, with
	// who made it, and no raw id.
	statuses := map[string]string{}
	for _, rec := range r.read(r.cfg.Names.AuditTopic) {
		if bytes.Contains(rec.Value, []byte(erased)) {
			t.Fatal("privacy.audit holds the erased raw id")
		}
		a, err := audit.Decode(rec.Value)
		if err != nil {
			t.Fatalf("an audit record does not decode: %v", err)
		}
		if a.Kind == audit.KindRequest && a.Request.ID == filed.ID {
			statuses[a.Request.Status] = a.Principal
			if !audit.IsSubjectRef(a.Request.SubjectRef) {
				t.Fatalf("the request's audit record has no subject reference: %+v", a.Request)
			}
		}
	}
	if statuses["verified"] != "privacy-team" || statuses["in_progress"] != "requests" || statuses["done"] != "requests" {
		t.Fatalf("the erasure request's audit trail: %v", statuses)
	}

	// A standard client reads the topic's format.
	script := `
import json, sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[3], "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
c.subscribe([sys.argv[2]])
latest, empty = {}, 0
while empty < 10:
    m = c.poll(1.0)
    if m is None:
        empty += 1
        continue
    if m.error() or m.value() is None:
        continue
    r = json.loads(m.value())
    assert r["v"] == 1 and r["id"] == m.key().decode() and r["status"] in ("received","verified","in_progress","extended","done","refused"), r
    latest[r["id"]] = r
c.close()
print(json.dumps({k: [v["kind"], v["status"], v.get("subject_mark", "")[:4]] for k, v in sorted(latest.items())}))
`
	cmd := exec.CommandContext(ctx, pythonPath(t), "-c", script, strings.Join(r.cfg.Kafka.Brokers, ","), r.cfg.Names.RequestsTopic, r.cfg.Names.RequestsGroup+".python")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var py map[string][]string
	if err := json.Unmarshal(bytes.TrimSpace(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:]), &py); err != nil || len(py) != 3 ||
		py[filed.ID][1] != "done" || py[filed.ID][2] != "er1." || py["rq_c_exp-1"][2] != "er1." {
		t.Fatalf("python read %s (%v)", out, err)
	}
	t.Logf("python read privacy.requests: %s", bytes.TrimSpace(out))
}

func mustKeys(t *testing.T, rdb *redis.Client, ctx context.Context, pattern string) []string {
	t.Helper()
	keys, err := rdb.Keys(ctx, pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
