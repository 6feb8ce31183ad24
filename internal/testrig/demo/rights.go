package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
)

// RightsResult is the data-subject rights stage: the sample subject's
// access request, then its erasure, then events of it that keep arriving.
type RightsResult struct {
	// ExportRecords are the subject's records the export found in the
	// clean topics; ExportHistory its consent history entries.
	ExportRecords int `json:"export_records"`
	ExportBytes   int `json:"export_bytes"`
	// ErasureMS is the time from filing the erasure to done.
	ErasureMS int64 `json:"erasure_ms"`
	// Erased summarises what the erasure removed.
	Erased map[string]int64 `json:"erased"`
	// NewEvents of the subject were produced after the erasure;
	// PublishedAfter of them reached a clean topic (must be 0) and
	// DeniedErased decisions were denied with reason erased.
	NewEvents      int `json:"new_events"`
	PublishedAfter int `json:"published_after"`
	DeniedErased   int `json:"denied_erased"`
	// ExportAfter is the API's answer to an export after the erasure.
	ExportAfter int `json:"export_after_status"`
}

// check verifies the stage's guarantees.
func (r RightsResult) check() error {
	switch {
	case r.ExportRecords == 0:
		return fmt.Errorf("demo: the export found none of the subject's records")
	case r.PublishedAfter != 0:
		return fmt.Errorf("demo: %d records of the erased subject were published after its erasure", r.PublishedAfter)
	case r.DeniedErased != r.NewEvents*purpose.Count:
		return fmt.Errorf("demo: %d decisions denied as erased, want %d", r.DeniedErased, r.NewEvents*purpose.Count)
	case r.ExportAfter != http.StatusConflict:
		return fmt.Errorf("demo: an export after the erasure answered %d, want 409", r.ExportAfter)
	}
	return nil
}

// runRights files an access request and an erasure request for the
// sample subject through the requests API, carried out by the requests
// service (the real ones, on the in-process Kafka and Redis), then sends
// more of its events through the privacy processor.
func runRights(ctx context.Context, cfg config.Config, rdb *redis.Client, pp *wiring.Privacy, reg prometheus.Gatherer, keys *pseudonym.Keyring, log *slog.Logger) (RightsResult, error) {
	var res RightsResult
	svc, closeSvc, err := wiring.BuildRequests(ctx, cfg, rdb, prometheus.NewRegistry(), log)
	if err != nil {
		return res, err
	}
	defer closeSvc()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go svc.Run(sctx)

	guard, err := httpauth.New(httpauth.Config{}) // in-process: no authentication
	if err != nil {
		return res, err
	}
	check, err := wiring.ErasureCheck(cfg, rdb)
	if err != nil {
		return res, err
	}
	rapi, closeAPI, err := wiring.RequestsAPI(cfg, requestredis.New(rdb, cfg.Requests.KeyPrefix), guard, check, log)
	if err != nil {
		return res, err
	}
	defer closeAPI()
	mux := http.NewServeMux()
	rapi.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(method, path, body string) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	file := func(route, id string) (string, error) {
		code, b, err := call("POST", "/v1/subjects/"+sampleSubject+"/"+route, `{"id":"`+id+`","verified":true}`)
		if err != nil || code != http.StatusAccepted {
			return "", fmt.Errorf("demo: filing %s: %d %s %v", route, code, b, err)
		}
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			_, b, err := call("GET", "/v1/requests/rq_c_"+id, "")
			var st struct{ Status string }
			if err == nil && json.Unmarshal(b, &st) == nil && st.Status == "done" {
				return string(b), nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return "", fmt.Errorf("demo: request %s not done within a minute", id)
	}

	// Access: the document of everything held about the subject.
	if _, err := file("export", "demo-access"); err != nil {
		return res, err
	}
	_, doc, err := call("GET", "/v1/requests/rq_c_demo-access/export", "")
	if err != nil {
		return res, err
	}
	var d struct {
		Records []struct {
			Records []json.RawMessage `json:"records"`
		} `json:"records"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return res, fmt.Errorf("demo: the export document: %w", err)
	}
	for _, t := range d.Records {
		res.ExportRecords += len(t.Records)
	}
	res.ExportBytes = len(doc)

	// Erasure.
	start := time.Now()
	done, err := file("erasure", "demo-erasure")
	if err != nil {
		return res, err
	}
	res.ErasureMS = time.Since(start).Milliseconds()
	var dr struct{ Result map[string]int64 }
	_ = json.Unmarshal([]byte(done), &dr)
	res.Erased = dr.Result
	res.ExportAfter, _, _ = call("POST", "/v1/subjects/"+sampleSubject+"/export", `{"verified":true}`)

	// Its events keep arriving: none is published.
	ledger, err := erasure.LoadLedgerKey(cfg.Keys.ErasureKeyFile)
	if err != nil {
		return res, err
	}
	plan, err := erasure.PlanFor(sampleSubject, keys, ledger)
	if err != nil {
		return res, err
	}
	mine := map[string]bool{}
	for _, n := range plan.Notices {
		mine[n.Pseudonym] = true
	}
	cleanTopics := make([]string, 0, purpose.Count)
	for _, p := range purpose.All {
		cleanTopics = append(cleanTopics, wiring.CleanTopic(cfg, p))
	}
	count := func() (int, error) {
		recs, err := kafkaio.ReadAll(ctx, cfg.Kafka, cleanTopics...)
		n := 0
		for _, r := range recs {
			if mine[string(r.Key)] {
				n++
			}
		}
		return n, err
	}
	before, err := count()
	if err != nil {
		return res, err
	}
	snap, _ := metrics.Snapshot(reg)
	deniedBefore := sumPrefix(snap, "pipeline_denied_total{", "reason=erased")
	enc, err := producer.NewEncoder()
	if err != nil {
		return res, err
	}
	gen := synth.New(7, 1, time.Now())
	res.NewEvents = 50
	var recs []*kgo.Record
	for i := range res.NewEvents {
		ev := gen.EventFor(i, 7)
		ev.SubjectID = sampleSubject
		r, err := enc.Record(cfg.Names.RawTopic, &ev)
		if err != nil {
			return res, err
		}
		recs = append(recs, r)
	}
	cl, err := cfg.Kafka.NewClient()
	if err != nil {
		return res, err
	}
	defer cl.Close()
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		return res, err
	}
	rc := wiring.RunnerConfig(cfg, cfg.Names.GroupID, cfg.Names.RawTopic, log)
	rc.TransactionalID = "demo-privacy"
	rn, err := runner.New(rc, pp.Processor)
	if err != nil {
		return res, err
	}
	rctx, stopRunner := context.WithCancel(ctx)
	rdone := make(chan error, 1)
	go func() { rdone <- rn.Run(rctx) }()
	waitErr := waitFor(ctx, rn, res.NewEvents, 2*time.Minute)
	stopRunner()
	if err := <-rdone; err != nil {
		return res, err
	}
	if waitErr != nil {
		return res, waitErr
	}
	after, err := count()
	if err != nil {
		return res, err
	}
	res.PublishedAfter = after - before
	snap, _ = metrics.Snapshot(reg)
	res.DeniedErased = int(sumPrefix(snap, "pipeline_denied_total{", "reason=erased") - deniedBefore)
	return res, res.check()
}

func sumPrefix(snap map[string]float64, prefix, contains string) float64 {
	var n float64
	for k, v := range snap {
		if strings.HasPrefix(k, prefix) && strings.Contains(k, contains) {
			n += v
		}
	}
	return n
}

func printRights(w io.Writer, r RightsResult) {
	fmt.Fprintf(w, "\ndata-subject rights (the requests API and 'pipeline run requests', in process), for %s:\n", sampleSubject)
	fmt.Fprintf(w, "  access request: done; the export document (%d bytes) holds its consent, pseudonyms, key states and %d records from the clean topics\n",
		r.ExportBytes, r.ExportRecords)
	fmt.Fprintf(w, "  erasure request: done in %d ms (%d consent tombstones, %d data key ids shredded, %d notices on the erasures topic); a new export is refused (%d, erased)\n",
		r.ErasureMS, r.Erased["consent_keys"], r.Erased["data_keys"], r.Erased["notices"], r.ExportAfter)
	fmt.Fprintf(w, "  %d more of its events arrived afterwards: %d published, %d decisions denied with reason erased\n", r.NewEvents, r.PublishedAfter, r.DeniedErased)
}
