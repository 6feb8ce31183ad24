package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

type harness struct {
	pp   *wiring.Privacy
	reg  *prometheus.Registry
	mr   *miniredis.Miniredis
	logs *bytes.Buffer
	enc  *producer.Encoder
	now  time.Time
}

func newHarness(t testing.TB) *harness { return newHarnessWith(t, singleObject) }

// newHarnessWith builds the processor with the given wire format and
// registry settings, and opts applied to the configuration.
func newHarnessWith(t testing.TB, sch config.Schemas, opts ...func(*config.Config)) *harness {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Schemas = sch
	cfg.Names.AuditTopic = "" // these tests count outputs; audit_test.go turns the audit record on
	for _, o := range opts {
		o(&cfg)
	}
	keys, err := pseudonym.GenerateKeyring(purpose.Names(), "test")
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	reg := prometheus.NewRegistry()
	pp, err := wiring.BuildPrivacy(context.Background(), cfg, wiring.Deps{Redis: rdb, Registry: reg, Keys: keys,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := pp.Store.MarkLoaded(context.Background()); err != nil {
		t.Fatal(err)
	}
	enc, _ := producer.NewEncoder()
	return &harness{pp: pp, reg: reg, mr: mr, logs: logs, enc: enc, now: time.Now()}
}

func (h *harness) grantAll(t testing.TB, subject string, j consent.Jurisdiction) {
	var r consent.Record
	for _, p := range purpose.All {
		r.Apply(p, consent.Granted, j, h.now.Add(-time.Minute).UnixMilli())
	}
	if err := h.pp.Store.Put(context.Background(), subject, &r); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) record(t testing.TB, ev producer.Event) processors.Record {
	b, err := h.enc.AppendEncoded(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	return processors.Record{Topic: "raw.customer-events", Value: b, Key: []byte(ev.SubjectID)}
}

func (h *harness) process(t testing.TB, recs ...processors.Record) *processors.Batch {
	t.Helper()
	var out processors.Batch
	w := h.pp.Processor.NewWorker()
	if err := w.Process(context.Background(), recs, &out); err != nil {
		t.Fatal(err)
	}
	w.Done(true)
	return &out
}

func (h *harness) metricsText(t testing.TB) string { return pipelinetest.MetricsText(t, h.reg) }

func topicPurpose(topic string) (purpose.Purpose, bool) {
	for _, p := range purpose.All {
		if topic == topology.DefaultNames().Clean(p) {
			return p, true
		}
	}
	return 0, false
}

func decodeClean(t testing.TB, p purpose.Purpose, value []byte) map[string]any {
	t.Helper()
	js, err := schemas.CleanSchemaJSON(p.String())
	if err != nil {
		t.Fatal(err)
	}
	return decodeWith(t, js, value)
}

// decodeWith decodes a single-object clean record with the schema js.
func decodeWith(t testing.TB, js []byte, value []byte) map[string]any {
	t.Helper()
	codec, err := avrosingle.NewCodec(string(js))
	if err != nil {
		t.Fatal(err)
	}
	native, rest, err := codec.NativeFromSingle(value)
	if err != nil || len(rest) != 0 {
		t.Fatalf("clean record does not decode with its schema: %v (rest %d)", err, len(rest))
	}
	return native.(map[string]any)
}

// unionString is the string of a goavro ["null","string"] value ("" for
// null).
func unionString(v any) string {
	if m, ok := v.(map[string]any); ok {
		s, _ := m["string"].(string)
		return s
	}
	return ""
}

// TestCanaryNoLeak plants a unique marker in every PII field and checks that
// no marker reaches a clean record (key, value, headers), a quarantine
// header, a log line or the metrics output, except where the policy keeps
// that field as is for that purpose; those exceptions are asserted to be
// present, explicitly.
func TestCanaryNoLeak(t *testing.T) {
	h := newHarness(t)
	const subject = "canary-subject-zq0001"
	h.grantAll(t, subject, consent.GDPR) // explicit: sensitive fields follow the policy
	ev, markers := pipelinetest.CanaryEvent(1, subject, h.now)
	bad, badMarkers := pipelinetest.CanaryEvent(2, subject, h.now.Add(72*time.Hour)) // quarantined: far future
	markers = append(markers, badMarkers...)
	out := h.process(t, h.record(t, ev), h.record(t, bad))

	raw, _ := schemas.RawEvent()
	pol, _ := policy.Load(schemas.PolicyJSON(), raw)
	kept := map[purpose.Purpose]map[string]bool{}
	for _, p := range purpose.All {
		kept[p] = map[string]bool{}
		for path, r := range pol.Purposes[p.String()].Fields {
			if r.Action == policy.Keep {
				kept[p][path] = true
			}
		}
	}
	published := map[purpose.Purpose]bool{}
	quarantined := 0
	for _, o := range out.Outputs {
		var hdrs bytes.Buffer
		for _, hd := range o.Headers {
			hdrs.WriteString(hd.Key + "=" + string(hd.Value) + "\n")
		}
		if o.Topic == "quarantine.customer-events" {
			quarantined++
			if found := pipelinetest.Find(append(hdrs.Bytes(), o.Key...), markers); len(found) > 0 {
				t.Errorf("quarantine header or key leaks %v", found)
			}
			continue
		}
		p, ok := topicPurpose(o.Topic)
		if !ok {
			t.Fatalf("output to unexpected topic %s", o.Topic)
		}
		published[p] = true
		all := append(append(append([]byte{}, o.Key...), o.Value...), hdrs.Bytes()...)
		found := map[string]bool{}
		for _, m := range pipelinetest.Find(all, markers) {
			found[m.Field] = true
			if !kept[p][m.Field] {
				t.Errorf("%s: marker of %s leaked", p, m.Field)
			}
		}
		for field := range kept[p] {
			for _, m := range markers[:len(markers)/2] {
				if m.Field == field && !found[field] {
					t.Errorf("%s: policy keeps %s but its value is missing from the clean record", p, field)
				}
			}
		}
	}
	if quarantined != 1 || len(published) != purpose.Count {
		t.Fatalf("want 1 quarantined and all 5 purposes published, got %d and %v", quarantined, published)
	}
	if found := pipelinetest.Find(h.logs.Bytes(), markers); len(found) > 0 {
		t.Errorf("logs leak %v", found)
	}
	if found := pipelinetest.Find([]byte(h.metricsText(t)), markers); len(found) > 0 {
		t.Errorf("metrics leak %v", found)
	}
	// The explicit exceptions of the checked-in policy, asserted by name so a
	// policy change that starts keeping a field is a visible test change.
	want := map[purpose.Purpose][]string{
		// page_url is templated (id-like segments replaced) wherever a
		// purpose has it.
		purpose.Analytics:         {"address.city", "address.country", "user_agent", "gender"},
		purpose.Personalization:   {"name", "address.city", "address.country", "gender"},
		purpose.AITraining:        {"address.country", "gender"},
		purpose.Marketing:         {"name", "email", "address.city", "address.country"},
		purpose.ThirdPartySharing: {"address.country", "gender"},
	}
	for p, fields := range want {
		var piiKept []string
		for f := range kept[p] {
			for _, m := range markers[:len(markers)/2] {
				if m.Field == f {
					piiKept = append(piiKept, f)
				}
			}
		}
		if strings.Join(sorted(piiKept), ",") != strings.Join(sorted(fields), ",") {
			t.Errorf("%s keeps marker fields %v, the test expects %v", p, sorted(piiKept), sorted(fields))
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestCleanRecordsMatchSchemaAndProvenance(t *testing.T) {
	h := newHarness(t)
	const subject = "subject-prov"
	h.grantAll(t, subject, consent.GDPR)
	ev, _ := pipelinetest.CanaryEvent(3, subject, h.now)
	out := h.process(t, h.record(t, ev))
	if len(out.Outputs) != purpose.Count {
		t.Fatalf("want %d outputs, got %d", purpose.Count, len(out.Outputs))
	}
	for _, o := range out.Outputs {
		p, _ := topicPurpose(o.Topic)
		rec := decodeClean(t, p, o.Value)
		key, _ := h.pp.Keys.Active(p.String())
		wantKey := string(pseudonym.New(key).Append(nil, "subject_id", subject))
		if string(o.Key) != wantKey {
			t.Errorf("%s: key is not the purpose pseudonym", p)
		}
		if got := rec["subject_id_pseudonym"].(map[string]any)["string"]; got != wantKey {
			t.Errorf("%s: subject_id_pseudonym %v", p, got)
		}
		hdr := map[string]string{}
		for _, hd := range o.Headers {
			hdr[hd.Key] = string(hd.Value)
		}
		if hdr[processors.HeaderPolicyVersion] != h.pp.Policy.Version || hdr[processors.HeaderKeyID] != key.ID ||
			hdr[processors.HeaderConsentBasis] != "granted" || hdr[processors.HeaderConsentVersion] == "" ||
			!strings.HasPrefix(hdr[processors.HeaderSchema], policy.CleanRecordName(p)+"@") {
			t.Errorf("%s: provenance headers %v", p, hdr)
		}
	}
	// Pseudonyms of the subject and of the event differ per purpose:
	// two purposes' topics cannot be joined on them.
	seen := map[string]bool{}
	for _, o := range out.Outputs {
		p, _ := topicPurpose(o.Topic)
		eid := decodeClean(t, p, o.Value)["event_id_pseudonym"].(map[string]any)["string"].(string)
		if seen[string(o.Key)] || seen[eid] || eid == ev.EventID {
			t.Fatal("two purposes share a pseudonym, or the raw event id is published")
		}
		seen[string(o.Key)], seen[eid] = true, true
	}
}

func TestFieldActionsInCleanRecords(t *testing.T) {
	h := newHarness(t)
	const subject = "subject-actions"
	h.grantAll(t, subject, consent.GDPR)
	ev, _ := pipelinetest.CanaryEvent(4, subject, h.now)
	ev.PageURL = "https://Shop.Example.com/account/jane-doe/orders/88231?utm=mail#x"
	out := h.process(t, h.record(t, ev))
	byPurpose := map[purpose.Purpose]map[string]any{}
	for _, o := range out.Outputs {
		p, _ := topicPurpose(o.Topic)
		byPurpose[p] = decodeClean(t, p, o.Value)
	}
	str := func(p purpose.Purpose, f string) string {
		v, _ := byPurpose[p][f].(map[string]any)
		s, _ := v["string"].(string)
		return s
	}
	a := purpose.Analytics
	if got := str(a, "address_postal_code_prefix"); got != "CPZ" {
		t.Errorf("postal prefix %q", got)
	}
	if got := str(a, "ip_address_ip_prefix"); !strings.HasSuffix(got, ".0/24") {
		t.Errorf("ip prefix %q", got)
	}
	if got := str(a, "location_geo_cell"); len(got) != 4 {
		t.Errorf("geo cell %q", got)
	}
	if got := str(a, "birth_date_age_band"); got == "" || strings.Contains(got, "-03-14") {
		t.Errorf("age band %q", got)
	}
	msg := str(a, "message_redacted")
	for _, tok := range []string{"[EMAIL]", "[PHONE]", "[CARD]", "[IP]"} {
		if !strings.Contains(msg, tok) {
			t.Errorf("redacted message %q lacks %s", msg, tok)
		}
	}
	if got := str(purpose.Marketing, "phone_masked"); !strings.HasPrefix(got, "+") || !strings.Contains(got, "*") {
		t.Errorf("masked phone %q", got)
	}
	if got := str(purpose.ThirdPartySharing, "card_number_masked"); !strings.HasSuffix(got, ev.CardNumber[len(ev.CardNumber)-4:]) || strings.Contains(got, ev.CardNumber[:8]) {
		t.Errorf("masked card %q", got)
	}
	hourTs, _ := byPurpose[purpose.AITraining]["event_time_hour"].(map[string]any)["long.timestamp-millis"].(time.Time)
	if !hourTs.Equal(ev.EventTime.Truncate(time.Hour)) {
		t.Errorf("event_time_hour %v want %v", hourTs, ev.EventTime.Truncate(time.Hour))
	}
	// URLs are templated where the policy says so (issue 11, item 3): the
	// account name, the order number, the query and the fragment are gone.
	for _, p := range []purpose.Purpose{purpose.Analytics, purpose.Personalization, purpose.Marketing} {
		if got := str(p, "page_url_template"); got != "https://shop.example.com/account/:id/orders/:id" {
			t.Errorf("%s: page_url_template %q", p, got)
		}
		if _, ok := byPurpose[p]["page_url"]; ok {
			t.Errorf("%s carries the verbatim page_url", p)
		}
	}
	if _, ok := byPurpose[purpose.Analytics]["email"]; ok {
		t.Error("analytics carries email")
	}
}

// TestConsentOutcomes covers granted, denied, withdrawn and missing consent
// under each jurisdiction default, GPC, and sensitive categories without
// explicit consent.
func TestConsentOutcomes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	put := func(sub string, j consent.Jurisdiction, gpc bool, states map[purpose.Purpose]consent.State) {
		r := consent.Record{Jurisdiction: j, GPC: gpc}
		for p, s := range states {
			r.Apply(p, s, j, h.now.Add(-time.Minute).UnixMilli())
		}
		if err := h.pp.Store.Put(ctx, sub, &r); err != nil {
			t.Fatal(err)
		}
	}
	A, P, AI, M, T3 := purpose.Analytics, purpose.Personalization, purpose.AITraining, purpose.Marketing, purpose.ThirdPartySharing
	put("gdpr-mixed", consent.GDPR, false, map[purpose.Purpose]consent.State{A: consent.Granted, P: consent.Denied, AI: consent.Withdrawn})
	put("ccpa-default", consent.CCPA, false, nil)
	put("ccpa-gpc", consent.CCPA, true, nil)
	put("ccpa-optout", consent.CCPA, false, map[purpose.Purpose]consent.State{T3: consent.Denied})
	type want struct {
		published map[purpose.Purpose]bool
	}
	cases := []struct {
		subject, jur string
		gpc          bool
		published    []purpose.Purpose
	}{
		{"gdpr-mixed", "gdpr", false, []purpose.Purpose{A}},
		{"unknown-gdpr", "gdpr", false, nil},
		{"unknown-ukgdpr", "uk_gdpr", false, nil},
		{"unknown-pdpa", "pdpa", false, nil},
		{"unknown-vn", "vn_decree13", false, nil},
		{"unknown-unknown", "mars", false, nil},
		// The event's claimed jurisdiction may only tighten (issue 10, defect 4):
		// a subject with no stored record is denied everything, whatever it claims.
		{"unknown-ccpa", "ccpa", false, nil},
		{"gdpr-mixed", "ccpa", false, []purpose.Purpose{A}},
		{"ccpa-default", "gdpr", false, nil},
		{"ccpa-default", "", false, purpose.All[:]},
		{"ccpa-default", "ccpa", false, purpose.All[:]},
		{"ccpa-gpc", "ccpa", false, []purpose.Purpose{A, P, AI}},
		{"unknown-ccpa-gpc-event", "ccpa", true, nil},
		{"ccpa-default", "ccpa", true, []purpose.Purpose{A, P, AI}},
		{"ccpa-optout", "ccpa", false, []purpose.Purpose{A, P, AI, M}},
	}
	for _, c := range cases {
		t.Run(c.subject+"/"+c.jur, func(t *testing.T) {
			ev, _ := pipelinetest.CanaryEvent(5, c.subject, h.now)
			ev.Jurisdiction, ev.GPC = c.jur, c.gpc
			out := h.process(t, h.record(t, ev))
			got := map[purpose.Purpose]bool{}
			for _, o := range out.Outputs {
				p, ok := topicPurpose(o.Topic)
				if !ok {
					t.Fatalf("unexpected topic %s", o.Topic)
				}
				got[p] = true
				rec := decodeClean(t, p, o.Value)
				basis := ""
				for _, hd := range o.Headers {
					if hd.Key == processors.HeaderConsentBasis {
						basis = string(hd.Value)
					}
				}
				// Default-allowed (not explicit): sensitive fields withheld.
				for f, v := range rec {
					if basis == "default_allowed" && (strings.HasPrefix(f, "location") || strings.HasPrefix(f, "card_number")) && v != nil {
						t.Errorf("%s: sensitive field %s published without explicit consent", p, f)
					}
				}
				for _, hd := range o.Headers {
					if hd.Key == processors.HeaderConsentBasis && string(hd.Value) != "default_allowed" && c.jur == "ccpa" && c.subject != "gdpr-mixed" {
						t.Errorf("basis %s", hd.Value)
					}
				}
			}
			if len(got) != len(c.published) {
				t.Fatalf("published to %v, want %v", got, c.published)
			}
			for _, p := range c.published {
				if !got[p] {
					t.Fatalf("not published to %s; got %v", p, got)
				}
			}
		})
	}
	snap, _ := metrics.Snapshot(h.reg)
	if snap["pipeline_denied_total{purpose=personalization,reason=denied}"] != 2 ||
		snap["pipeline_denied_total{purpose=ai_training,reason=withdrawn}"] != 2 ||
		snap["pipeline_denied_total{purpose=marketing,reason=gpc_opt_out}"] != 2 ||
		snap["pipeline_denied_total{purpose=analytics,reason=unknown_subject}"] != 7 {
		t.Errorf("denial counters: %v", filter(snap, "pipeline_denied_total"))
	}
	// Every application of a GPC signal is counted, by where it came from.
	if snap["pipeline_gpc_applied_total{purpose=marketing,source=record}"] != 1 ||
		snap["pipeline_gpc_applied_total{purpose=marketing,source=event}"] != 1 ||
		snap["pipeline_gpc_applied_total{purpose=third_party_sharing,source=event}"] != 1 {
		t.Errorf("gpc counters: %v", filter(snap, "pipeline_gpc_applied_total"))
	}
	if snap["pipeline_sensitive_fields_dropped_total{purpose=analytics}"] == 0 {
		t.Error("sensitive drops not counted")
	}
}

func filter(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) && v != 0 {
			out[k] = v
		}
	}
	return out
}

func TestQuarantineEveryBadInput(t *testing.T) {
	h := newHarness(t)
	var recs []processors.Record
	want := map[string]int{}
	for i := 0; i < 14; i++ {
		b, reason := synth.Malformed(i, h.enc, h.now)
		recs = append(recs, processors.Record{Topic: "raw.customer-events", Partition: 3, Offset: int64(100 + i), Value: b})
		want[reason]++
	}
	out := h.process(t, recs...)
	got := map[string]int{}
	for _, o := range out.Outputs {
		if o.Topic != "quarantine.customer-events" || o.Key != nil {
			t.Fatalf("bad input went to %s (key %q)", o.Topic, o.Key)
		}
		hdr := map[string]string{}
		for _, hd := range o.Headers {
			hdr[hd.Key] = string(hd.Value)
		}
		got[hdr[privacy.HeaderQuarantineReason]]++
		if hdr[privacy.HeaderSourcePartition] != "3" || hdr[privacy.HeaderSourceTopic] != "raw.customer-events" ||
			hdr[privacy.HeaderSourceOffset] != fmt.Sprint(100+o.Input) {
			t.Errorf("source headers %v", hdr)
		}
		if !bytes.Equal(o.Value, recs[o.Input].Value) {
			t.Error("quarantine must keep the original bytes (nothing lost)")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("quarantine reasons %v, want %v", got, want)
	}
}

// TestConsentStoreDownPausesAndNeverGuesses stops Redis: the worker pauses,
// publishes nothing, reports not ready, and resumes when Redis returns.
func TestConsentStoreDownPausesAndNeverGuesses(t *testing.T) {
	h := newHarness(t)
	ev := synth.New(1, 10, h.now).EventFor(1, 1)
	ev.Jurisdiction = "ccpa" // default-allow: a guess would publish
	if err := h.pp.Store.Put(context.Background(), ev.SubjectID, &consent.Record{Jurisdiction: consent.CCPA}); err != nil {
		t.Fatal(err)
	}
	rec := h.record(t, ev)
	h.mr.Close()
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Process(ctx, []processors.Record{rec}, &out) }()
	time.Sleep(150 * time.Millisecond)
	if h.pp.Processor.Ready() {
		t.Error("ready while the consent store is down")
	}
	err := <-done
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a context error while paused, got %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("published %d records without a consent decision", out.Len())
	}
	if err := h.mr.Restart(); err != nil { // miniredis keeps its data across Restart
		t.Fatal(err)
	}
	out.Reset()
	if err := w.Process(context.Background(), []processors.Record{rec}, &out); err != nil {
		t.Fatal(err)
	}
	w.Done(true)
	if out.Len() != purpose.Count || !h.pp.Processor.Ready() {
		t.Fatalf("after recovery: %d outputs, ready=%v", out.Len(), h.pp.Processor.Ready())
	}
	if strings.Contains(h.logs.String(), ev.SubjectID) {
		t.Fatal("log names the subject")
	}
}

func TestAccountingIdentity(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		if r, ok := synth.Consent(i, h.now); ok {
			h.pp.Store.Put(ctx, synth.SubjectID(i), &r)
		}
	}
	gen := synth.New(3, 300, h.now)
	var recs []processors.Record
	for i := 0; i < 2000; i++ {
		recs = append(recs, h.record(t, gen.Event(i)))
	}
	for i := 0; i < 20; i++ {
		b, _ := synth.Malformed(i, h.enc, h.now)
		recs = append(recs, processors.Record{Value: b})
	}
	out := h.process(t, recs...)
	tally, err := privacy.ReadTally(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tally.Check(); err != nil {
		t.Fatal(err)
	}
	total := tally.QuarantinedTotal()
	for _, n := range tally.Published {
		total += n
	}
	if tally.EventsIn != len(recs) || total != out.Len() {
		t.Fatalf("events_in %d of %d; outputs %d != published + quarantined %d", tally.EventsIn, len(recs), out.Len(), total)
	}
}

// TestWorkerReuseAcrossBatchSizes reuses one worker for growing and
// shrinking batches (a regression: side buffers were sized from a
// different capacity).
func TestWorkerReuseAcrossBatchSizes(t *testing.T) {
	h := newHarness(t)
	gen := synth.New(2, 50, h.now)
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	for _, n := range []int{1, 7, 3, 64, 65, 10, 200, 1} {
		recs := make([]processors.Record, n)
		for i := range recs {
			recs[i] = h.record(t, gen.Event(i))
		}
		out.Reset()
		if err := w.Process(context.Background(), recs, &out); err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Outputs {
			if o.Input < 0 || o.Input >= n {
				t.Fatalf("output refers to input %d of %d", o.Input, n)
			}
		}
	}
}

// TestAbortedBatchIsNotCounted: a batch whose transaction aborts is
// processed again; the accounting counts it once.
func TestAbortedBatchIsNotCounted(t *testing.T) {
	h := newHarness(t)
	rec := h.record(t, synth.New(1, 10, h.now).EventFor(1, 1))
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	for _, committed := range []bool{false, false, true} {
		out.Reset()
		if err := w.Process(context.Background(), []processors.Record{rec}, &out); err != nil {
			t.Fatal(err)
		}
		w.Done(committed)
	}
	tally, _ := privacy.ReadTally(h.reg)
	if tally.EventsIn != 1 {
		t.Fatalf("events_in %d after two aborts and one commit, want 1", tally.EventsIn)
	}
}

// TestWorkerNotCurrentAfterInvalidation: a consent change announced for a
// subject of the batch after its lookup makes the batch stale (the runner
// then aborts and redoes it); a change for another subject does not.
func TestWorkerNotCurrentAfterInvalidation(t *testing.T) {
	h := newHarness(t)
	ev := synth.New(1, 10, h.now).EventFor(1, 3)
	w := h.pp.Processor.NewWorker()
	var out processors.Batch
	if err := w.Process(context.Background(), []processors.Record{h.record(t, ev)}, &out); err != nil {
		t.Fatal(err)
	}
	if !w.Current() {
		t.Fatal("stale without any consent change")
	}
	h.pp.Cache.Invalidate("someone-else")
	if !w.Current() {
		t.Fatal("stale after another subject's change")
	}
	h.pp.Cache.Invalidate(ev.SubjectID)
	if w.Current() {
		t.Fatal("still current after its subject's consent changed")
	}
	out.Reset()
	w.Process(context.Background(), []processors.Record{h.record(t, ev)}, &out)
	if !w.Current() {
		t.Fatal("a fresh batch is stale")
	}
	h.pp.Cache.InvalidateAll()
	if w.Current() {
		t.Fatal("current after InvalidateAll")
	}
}

// singleObject frames the clean records of the unit tests with
// single-object encoding and no registry, whatever the environment says
// (the integration tests run the Confluent wire format against a real
// registry).
var singleObject = config.Schemas{WireFormat: "single-object"}
