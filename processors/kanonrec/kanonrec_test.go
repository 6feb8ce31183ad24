package kanonrec

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"

	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// event is one synthetic clean ai_training event. The tests trace a
// released record back to its event through the worker's lineage hook
// (the input offset is the event's index), never through a published
// field: no kept field may single a record out.
type event struct {
	subject, age, country, postal, geo, gender, etype, page string
	hour                                                    int64
	amount                                                  float64 // 0: none
}

// pages are page_url_template values: the domain's, and one outside it.
var pages = []string{"https://shop.example.com/p/:id", "https://shop.example.com/search", "https://shop.example.com/cart",
	"https://shop.example.com/account/:id/orders", "https://elsewhere.example/:id"}

var (
	ages      = []string{"18-24", "25-34", "35-44", "45-54", "65+"}
	countries = []string{"VN", "SG", "DE", "US", "FR"}
	genders   = []string{"female", "male", "non_binary"}
	etypes    = []string{"page_view", "search", "purchase", "login"}
)

func synth(seed uint64, n, subjects int) []event {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	out := make([]event, n)
	for i := range out {
		s := rng.IntN(subjects)
		e := event{subject: fmt.Sprintf("pseudo-%04d", s), age: ages[s%5], country: countries[(s/5)%5],
			postal: fmt.Sprintf("%02d", s%37), gender: genders[s%3], etype: etypes[rng.IntN(4)],
			page: pages[rng.IntN(len(pages))], hour: start.Add(time.Duration(i/50) * time.Hour).UnixMilli()}
		if e.etype == "purchase" {
			e.amount = float64(1+rng.IntN(50000)) / 100
		}
		if s%4 == 0 {
			e.geo = fmt.Sprintf("u4p%c", "0123456789bcdefghjkmnpqrstuvwxyz"[s%32])
		}
		out[i] = e
	}
	return out
}

func encodeAll(t testing.TB, evs []event) []processors.Record {
	t.Helper()
	sch, err := cleanSchema()
	if err != nil {
		t.Fatal(err)
	}
	codec, err := avrosingle.NewCodec(sch)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]processors.Record, len(evs))
	for i, e := range evs {
		m := map[string]any{
			"subject_id_pseudonym":       goavro.Union("string", e.subject),
			"event_time_hour":            goavro.Union("long.timestamp-millis", time.UnixMilli(e.hour)),
			"birth_date_age_band":        goavro.Union("string", e.age),
			"address_country":            goavro.Union("string", e.country),
			"address_postal_code_prefix": goavro.Union("string", e.postal),
			"gender":                     goavro.Union("string", e.gender),
			"event_type":                 goavro.Union("string", e.etype),
			"page_url_template":          goavro.Union("string", e.page),
			"currency":                   goavro.Union("string", "USD"),
			"message_redacted":           goavro.Union("string", "CANARY-free-text-"+e.subject),
		}
		if e.amount > 0 {
			m["order_amount"] = goavro.Union("double", e.amount)
		}
		if e.geo != "" {
			m["location_geo_cell"] = goavro.Union("string", e.geo)
		}
		b, err := codec.SingleFromNative(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = processors.Record{Partition: 0, Offset: int64(i), Value: b, Timestamp: time.UnixMilli(e.hour)}
	}
	return recs
}

func cleanSchema() (string, error) {
	b, err := schemas.CleanSchemaJSON("ai_training")
	return string(b), err
}

type memStore struct {
	input []processors.Record
	cps   map[int32]processors.Checkpoint
}

func (m *memStore) Latest(_ context.Context, p int32) (processors.Checkpoint, bool, error) {
	cp, ok := m.cps[p]
	return cp, ok, nil
}

func (m *memStore) Replay(_ context.Context, _ int32, from, to int64, fn func(processors.Record) error) error {
	for _, r := range m.input {
		if r.Offset >= from && r.Offset < to {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func newProc(t testing.TB, k, delta int, store processors.StateStore) *Processor {
	t.Helper()
	spec, err := kanonspec.Default()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Records: *spec.Records, Spec: spec, K: k, Delta: delta, Beta: 50, Mu: 100, L: 1, MaxReuse: 1000, StateTopic: "state"})
	if err != nil {
		t.Fatal(err)
	}
	p.UseStore(store)
	return p
}

func outCodec(t testing.TB) *avrosingle.Codec {
	spec, _ := kanonspec.Default()
	b, err := spec.Records.KanonSchemaJSON()
	if err != nil {
		t.Fatal(err)
	}
	c, err := avrosingle.NewCodec(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// released is one published record, decoded, with the input offset the
// worker's lineage hook reported for it.
type released struct {
	offset int64
	value  []byte
	m      map[string]any
}

// traced collects the lineage of a worker's releases.
func traced(w processors.Worker) *[]int64 {
	var offsets []int64
	w.(*Worker).trace = func(_ int32, offset int64, _ []byte) { offsets = append(offsets, offset) }
	return &offsets
}

// decodeOutputs decodes a batch's outputs and pairs them with the lineage
// reported while it was built.
func decodeOutputs(t testing.TB, b *processors.Batch, offsets *[]int64, codec *avrosingle.Codec) []released {
	t.Helper()
	if len(*offsets) != len(b.Outputs) {
		t.Fatalf("%d outputs, %d lineage entries", len(b.Outputs), len(*offsets))
	}
	var out []released
	for i, o := range b.Outputs {
		native, _, err := codec.NativeFromSingle(o.Value)
		if err != nil {
			t.Fatalf("output does not decode with the kanon schema: %v", err)
		}
		if strings.Contains(string(o.Value), "CANARY") || strings.Contains(string(o.Value), "pseudo-") {
			t.Fatalf("free text or a pseudonym reached the kanon topic: %q", o.Value)
		}
		out = append(out, released{offset: (*offsets)[i], value: slices.Clone(o.Value), m: native.(map[string]any)})
	}
	*offsets = (*offsets)[:0]
	return out
}

// run processes recs in committed batches and returns the decoded outputs.
func run(t testing.TB, w processors.Worker, store *memStore, recs []processors.Record, batch int, codec *avrosingle.Codec) []released {
	t.Helper()
	offsets := traced(w)
	var out []released
	var b processors.Batch
	for i := 0; i < len(recs); i += batch {
		b.Reset()
		if err := w.Process(context.Background(), recs[i:min(i+batch, len(recs))], &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeOutputs(t, &b, offsets, codec)...)
		for _, cp := range b.Checkpoints {
			cp.State = slices.Clone(cp.State)
			store.cps[cp.Partition] = cp
		}
		w.Done(true)
	}
	return out
}

var qiFields = []string{"event_time_hour_min", "event_time_hour_max", "birth_date_age_band", "address_country", "address_postal_code_prefix", "gender",
	"order_amount_min", "order_amount_max", "event_type", "page_url_template", "currency"}

// clusterKey is what a reader can tell clusters apart by: the published
// cluster id and the generalised quasi-identifiers.
func clusterKey(o map[string]any) string {
	var key strings.Builder
	fmt.Fprintf(&key, "%v|", o["cluster_id"])
	for _, f := range qiFields {
		fmt.Fprintf(&key, "%v|", o[f])
	}
	return key.String()
}

// checkGroups is the independent check: group released records by what a
// reader sees of their cluster and count each group's distinct people
// (person maps a subject to its person; nil: one person per subject)
// through the lineage, from the test's own ground truth. A record is
// released at most once.
func checkGroups(t *testing.T, k int, evs []event, outs []released, person map[string]string) {
	t.Helper()
	groups := map[string]map[string]bool{}
	seen := map[int64]bool{}
	for _, o := range outs {
		if seen[o.offset] {
			t.Fatalf("input record %d released twice", o.offset)
		}
		seen[o.offset] = true
		s := evs[o.offset].subject
		if person != nil {
			s = person[s]
		}
		key := clusterKey(o.m)
		if groups[key] == nil {
			groups[key] = map[string]bool{}
		}
		groups[key][s] = true
	}
	for g, subjects := range groups {
		if len(subjects) < k {
			t.Errorf("group %s has %d distinct subjects < k=%d", g, len(subjects), k)
		}
	}
	if len(groups) == 0 {
		t.Fatal("nothing released")
	}
}

func TestEveryReleasedRecordSitsInAGroupOfKSubjects(t *testing.T) {
	const k = 10
	evs := synth(1, 6000, 300)
	recs := encodeAll(t, evs)
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	outs := run(t, newProc(t, k, 500, store).NewWorker(), store, recs, 250, outCodec(t))
	checkGroups(t, k, evs, outs, nil)
	if len(outs) < len(evs)/2 {
		t.Errorf("only %d of %d records released", len(outs), len(evs))
	}
}

func TestAdversarialSubjectFloodIsNotReleasedAlone(t *testing.T) {
	const k = 5
	var evs []event
	// One subject sends 3,000 events, interleaved with a few from 40 others.
	base := synth(3, 400, 40)
	for i := range 3000 {
		e := base[0]
		e.subject = "heavy"
		evs = append(evs, e)
		if i%10 == 0 {
			evs = append(evs, base[i/10%len(base)])
		}
	}
	recs := encodeAll(t, evs)
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	outs := run(t, newProc(t, k, 200, store).NewWorker(), store, recs, 333, outCodec(t))
	checkGroups(t, k, evs, outs, nil)
}

// TestRestartRestoresClusters: a new worker every few batches, restoring
// from checkpoints and replays, still releases only k-anonymous groups,
// releases no record twice, and (with a fixed seed) publishes exactly what
// an uninterrupted Offline run publishes.
func TestRestartRestoresClusters(t *testing.T) {
	const k, seed = 8, 42
	evs := synth(5, 5000, 250)
	recs := encodeAll(t, evs)
	codec := outCodec(t)
	st := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	var outs []released
	for i := 0; i < len(recs); i += 700 {
		p := newProc(t, k, 400, st)
		p.cfg.Seed = seed
		outs = append(outs, run(t, p.NewWorker(), st, recs[i:min(i+700, len(recs))], 175, codec)...)
	}
	checkGroups(t, k, evs, outs, nil)
	ref := newProc(t, k, 400, st)
	ref.cfg.Seed = seed
	want, err := Offline(context.Background(), ref, recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(outs) {
		t.Fatalf("restarted run released %d records, an uninterrupted run %d", len(outs), len(want))
	}
	for i, o := range outs {
		if want[i].Offset != o.offset || string(want[i].Value) != string(o.value) {
			t.Fatalf("release %d differs from the uninterrupted run (offset %d vs %d)", i, o.offset, want[i].Offset)
		}
	}
	// Records more than delta positions old are all decided; most are
	// released, none forgotten by the restarts.
	if len(outs) < (len(recs)-400)*8/10 {
		t.Errorf("only %d of %d decided records released", len(outs), len(recs)-400)
	}
}

// FuzzRestore feeds arbitrary checkpoint bytes to a worker's restore: an
// error or a usable state, never a panic.
func FuzzRestore(f *testing.F) {
	recs := encodeAll(f, synth(1, 300, 40))
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	p := newProc(f, 5, 100, store)
	w := p.NewWorker().(*Worker)
	var b processors.Batch
	if err := w.Process(context.Background(), recs, &b); err != nil {
		f.Fatal(err)
	}
	f.Add(slices.Clone(b.Checkpoints[0].State))
	f.Add([]byte{})
	// A checkpoint with an erased set (erasure.go).
	w.p.cfg.NoticesTopic = "notices"
	b.Reset()
	if err := w.Process(context.Background(), []processors.Record{{Topic: "notices", Value: []byte(`{"purpose":"ai_training","pseudonym":"pseudo-0001"}`)}}, &b); err != nil {
		f.Fatal(err)
	}
	f.Add(slices.Clone(b.Checkpoints[0].State))
	f.Fuzz(func(t *testing.T, state []byte) {
		cp := processors.Checkpoint{Partition: 0, Next: int64(len(recs)), ReplayFrom: 0, State: state}
		st, err := w.load(context.Background(), 0, cp, true, func(fn func(processors.Record) error) error {
			for _, r := range recs {
				if err := fn(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil && st.held == nil {
			t.Fatal("restored state without its held records")
		}
	})
}

// TestMaxDelayBoundsHoldingTime: with a time bound, a record is never held
// longer than MaxDelay after the latest record of its batch, and an idle
// partition's held records are decided on a tick; k-anonymity still holds.
func TestMaxDelayBoundsHoldingTime(t *testing.T) {
	const k = 5
	evs := synth(8, 3000, 200)
	recs := encodeAll(t, evs)
	// One record per second of arrival time.
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i].Timestamp = base.Add(time.Duration(i) * time.Second)
	}
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	p := newProc(t, k, 2000, store) // delta alone would hold up to 2,000 s
	p.cfg.MaxDelay = 5 * time.Minute
	w := p.NewWorker()
	outs := run(t, w, store, recs, 100, outCodec(t))
	for _, ref := range heldRefs(w.(*Worker)) {
		if age := recs[len(recs)-1].Timestamp.Sub(recs[ref].Timestamp); age > 5*time.Minute+100*time.Second {
			t.Fatalf("record %d held for %s", ref, age)
		}
	}
	offsets := traced(w)
	var b processors.Batch
	if err := w.(processors.Ticker).Tick(context.Background(), recs[len(recs)-1].Timestamp.Add(time.Hour), []int32{0}, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Checkpoints) != 1 {
		t.Fatalf("tick wrote %d checkpoints", len(b.Checkpoints))
	}
	outs = append(outs, decodeOutputs(t, &b, offsets, outCodec(t))...)
	w.Done(true)
	checkGroups(t, k, evs, outs, nil)
	if held := heldRefs(w.(*Worker)); len(held) != 0 {
		t.Fatalf("%d records still held after a tick an hour later", len(held))
	}
}

// heldRefs lists the records every loaded shard still holds.
func heldRefs(w *Worker) []int64 {
	var out []int64
	w.shards.Each(func(_ int32, st *state) error {
		out = append(out, st.heldRefs()...)
		return nil
	})
	return out
}

// TestKeyRotationClustersNeverMixKeys: during a key rotation every person
// has two pseudonyms; every released group still holds k distinct people.
// TestKeyRotationClustersNeverMixKeys checks released groups on people,
// not pseudonyms, while two keys interleave; the second pair of key ids
// collides under the old 16-bit hashed domains (issue 11, defect 1).
func TestKeyRotationClustersNeverMixKeys(t *testing.T) {
	for _, pair := range [][2]string{{"ai-2026-10", "ai-2026-11"}, {"ai_training-2027-06", "ai_training-2053-01"}} {
		t.Run(pair[1], func(t *testing.T) { clustersNeverMixKeys(t, pair) })
	}
}

func clustersNeverMixKeys(t *testing.T, pair [2]string) {
	const k = 5
	evs := synth(9, 4000, 60)
	person := map[string]string{}
	keys := make([]string, len(evs))
	for i := range evs {
		key := pair[0]
		if i%2 == 1 { // the two keys interleave, as during a rolling restart
			key = pair[1]
		}
		p := evs[i].subject
		evs[i].subject = key + "/" + p
		person[evs[i].subject] = p
		keys[i] = key
	}
	recs := encodeAll(t, evs)
	for i := range recs {
		recs[i].Headers = []processors.Header{{Key: "pp-key-id", Value: []byte(keys[i])}}
	}
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	outs := run(t, newProc(t, k, 300, store).NewWorker(), store, recs, 500, outCodec(t))
	// Independent check on people, not pseudonyms.
	checkGroups(t, k, evs, outs, person)
}

// TestLinkageAttackJoinsAtMostOneInK is the attack of issue 11, defect 3:
// a reader who holds the clean ai_training topic joins every released
// record to the clean records that agree with its kept values and lie
// inside its generalised quasi-identifiers. At most 1/k of the released
// records may join to exactly one clean record (a pseudonym and an exact
// time). The control join adds the exact amount, as the old output kept
// it verbatim: it links far more, so the attack has teeth.
func TestLinkageAttackJoinsAtMostOneInK(t *testing.T) {
	const k = 10
	evs := synth(11, 6000, 300)
	recs := encodeAll(t, evs)
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	p := newProc(t, k, 500, store)
	outs := run(t, p.NewWorker(), store, recs, 250, outCodec(t))
	checkGroups(t, k, evs, outs, nil)
	released := make([][]byte, len(outs))
	for i, o := range outs {
		released[i] = o.value
	}
	clean := make([][]byte, len(recs))
	for i, r := range recs {
		clean[i] = r.Value
	}
	st, err := Linkage(p, released, clean, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("linkage: %d of %d released records join to exactly one clean record (%.4f; bound 1/k = %.4f); fewest matches %d",
		st.Unique, st.Released, st.Share(), 1.0/k, st.MinMatches)
	if st.Share() > 1.0/k || st.MinMatches < 1 {
		t.Errorf("linkage share %.4f > 1/k or a released record joins nothing (%d)", st.Share(), st.MinMatches)
	}
	// Control: the exact amount of each released record's input (which the
	// old output published) is a join key of its own.
	exact := func(i int, cl map[string]any) bool {
		x, _ := unwrap(cl["order_amount"]).(float64)
		return x == evs[outs[i].offset].amount
	}
	control, err := Linkage(p, released, clean, exact)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control: with the exact amount kept, %d of %d released records join to exactly one clean record (%.4f)",
		control.Unique, control.Released, control.Share())
	if control.Share() <= 1.0/k {
		t.Errorf("the control join should link more than 1/k of the records; the attack is toothless")
	}
}

// TestKeptValueOutsideItsDomainIsNull: a kept string that is not in its
// field's declared domain (here a page template of another site) is
// published as null and counted, never copied. The checked-in spec keeps
// nothing, so the test declares page_url_template kept instead of a
// quasi-identifier.
func TestKeptValueOutsideItsDomainIsNull(t *testing.T) {
	const k = 5
	base := string(schemas.KanonJSON())
	custom := strings.Replace(strings.Replace(base, `      {"field": "page_url_template", "hierarchy": "page_template"},
`, "", 1), `"keep": []`, `"keep": [{"field": "page_url_template", "domain": "page_template"}]`, 1)
	spec, err := kanonspec.Parse([]byte(custom))
	if err != nil || len(spec.Records.Keep) != 1 {
		t.Fatalf("custom spec: %v", err)
	}
	evs := synth(12, 3000, 150)
	recs := encodeAll(t, evs)
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	reg := prometheus.NewRegistry()
	p, err := New(Config{Records: *spec.Records, Spec: spec, K: k, Delta: 300, Beta: 50, Mu: 100, L: 1, MaxReuse: 1000, StateTopic: "state",
		Metrics: kanonmetrics.New(reg)})
	if err != nil {
		t.Fatal(err)
	}
	p.UseStore(store)
	sch, err := spec.Records.KanonSchemaJSON()
	if err != nil {
		t.Fatal(err)
	}
	codec, err := avrosingle.NewCodec(string(sch))
	if err != nil {
		t.Fatal(err)
	}
	outs := run(t, p.NewWorker(), store, recs, 250, codec)
	outside, nulls := 0, 0
	for _, e := range evs {
		if e.page == pages[len(pages)-1] {
			outside++
		}
	}
	for _, o := range outs {
		if o.m["page_url_template"] == nil {
			nulls++
			if evs[o.offset].page != pages[len(pages)-1] {
				t.Fatalf("a page in the domain was published as null")
			}
		} else if strings.Contains(fmt.Sprint(o.m["page_url_template"]), "elsewhere") {
			t.Fatalf("a value outside the domain was published: %v", o.m["page_url_template"])
		}
	}
	snap, err := metrics.Snapshot(reg)
	if err != nil {
		t.Fatal(err)
	}
	got := snap["pipeline_kanon_kept_outside_domain_total{field=page_url_template,output=clean.ai_training.kanon}"]
	if int(got) != outside || nulls == 0 {
		t.Errorf("counted %v values outside the domain, the input has %d; %d published as null", got, outside, nulls)
	}
}

// TestTickLeavesLaggingPartitionsHeld (attack: a tick decided, by the wall
// clock, the held records of a lagging partition the runner did not name):
// of two loaded partitions only the named one is acted on.
func TestTickLeavesLaggingPartitionsHeld(t *testing.T) {
	evs := synth(8, 40, 40)
	recs := encodeAll(t, evs)
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i].Timestamp = base.Add(time.Duration(i) * time.Second)
		recs[i].Partition = int32(i % 2)
		recs[i].Offset = int64(i / 2)
	}
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	p := newProc(t, 5, 2000, store)
	p.cfg.MaxDelay = 5 * time.Minute
	w := p.NewWorker().(*Worker)
	var b processors.Batch
	if err := w.Process(context.Background(), recs, &b); err != nil {
		t.Fatal(err)
	}
	w.Done(true)
	held1 := func() int {
		st, ok := w.shards.Lookup(1)
		if !ok {
			t.Fatal("partition 1 not loaded")
		}
		return len(st.heldRefs())
	}
	before := held1()
	if before == 0 {
		t.Fatal("nothing held on partition 1")
	}
	b.Reset()
	if err := w.Tick(context.Background(), recs[len(recs)-1].Timestamp.Add(time.Hour), []int32{0}, &b); err != nil {
		t.Fatal(err)
	}
	for _, cp := range b.Checkpoints {
		if cp.Partition == 1 {
			t.Fatal("the tick checkpointed partition 1")
		}
	}
	if got := held1(); got != before {
		t.Fatalf("the tick decided %d held records of partition 1, which it did not name", before-got)
	}
	if st, _ := w.shards.Lookup(0); len(st.heldRefs()) != 0 {
		t.Fatal("the named partition's held records were not decided")
	}
}
