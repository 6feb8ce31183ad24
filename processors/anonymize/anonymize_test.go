package anonymize

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/internal/kanonspec"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// event is one synthetic clean ai_training event; its page_url is unique,
// so a released record can be traced back to its subject by the test alone.
type event struct {
	subject, age, country, postal, geo, gender, etype, url string
	hour                                                   int64
}

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
			url: fmt.Sprintf("https://shop.example/p/%d", i), hour: start.Add(time.Duration(i/50) * time.Hour).UnixMilli()}
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
	codec, err := goavro.NewCodec(sch)
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
			"page_url":                   goavro.Union("string", e.url),
			"order_amount":               goavro.Union("double", 12.5),
			"message_redacted":           goavro.Union("string", "CANARY-free-text-"+e.subject),
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

func outCodec(t testing.TB) *goavro.Codec {
	spec, _ := kanonspec.Default()
	b, err := spec.Records.KanonSchemaJSON()
	if err != nil {
		t.Fatal(err)
	}
	c, err := goavro.NewCodec(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run processes recs in committed batches and returns the decoded outputs.
func run(t testing.TB, w processors.Worker, store *memStore, recs []processors.Record, batch int, codec *goavro.Codec) []map[string]any {
	t.Helper()
	var out []map[string]any
	var b processors.Batch
	for i := 0; i < len(recs); i += batch {
		b.Reset()
		if err := w.Process(context.Background(), recs[i:min(i+batch, len(recs))], &b); err != nil {
			t.Fatal(err)
		}
		for _, o := range b.Outputs {
			native, _, err := codec.NativeFromSingle(o.Value)
			if err != nil {
				t.Fatalf("output does not decode with the kanon schema: %v", err)
			}
			if strings.Contains(string(o.Value), "CANARY") || strings.Contains(string(o.Value), "pseudo-") {
				t.Fatalf("free text or a pseudonym reached the kanon topic: %q", o.Value)
			}
			out = append(out, native.(map[string]any))
		}
		for _, cp := range b.Checkpoints {
			cp.State = slices.Clone(cp.State)
			store.cps[cp.Partition] = cp
		}
		w.Done(true)
	}
	return out
}

var qiFields = []string{"event_time_hour_min", "event_time_hour_max", "birth_date_age_band", "address_country", "address_postal_code_prefix", "gender"}

// checkGroups is the independent check: group released records by their
// exact generalised quasi-identifiers and count the distinct subjects of
// each group from the test's own ground truth (page_url -> subject).
func checkGroups(t *testing.T, k int, evs []event, outs []map[string]any) {
	t.Helper()
	subjectOf := map[string]string{}
	for _, e := range evs {
		subjectOf[e.url] = e.subject
	}
	groups := map[string]map[string]bool{}
	for _, o := range outs {
		var key strings.Builder
		for _, f := range qiFields {
			fmt.Fprintf(&key, "%v|", o[f])
		}
		url := o["page_url"].(map[string]any)["string"].(string)
		s, ok := subjectOf[url]
		if !ok {
			t.Fatalf("released record %s is not in the input", url)
		}
		if groups[key.String()] == nil {
			groups[key.String()] = map[string]bool{}
		}
		groups[key.String()][s] = true
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
	checkGroups(t, k, evs, outs)
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
		e.subject, e.url = "heavy", fmt.Sprintf("https://shop.example/heavy/%d", i)
		evs = append(evs, e)
		if i%10 == 0 {
			evs = append(evs, base[i/10%len(base)])
			evs[len(evs)-1].url = fmt.Sprintf("https://shop.example/o/%d", i)
		}
	}
	recs := encodeAll(t, evs)
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	outs := run(t, newProc(t, k, 200, store).NewWorker(), store, recs, 333, outCodec(t))
	checkGroups(t, k, evs, outs)
}

// TestRestartRestoresClusters: a new worker every few batches, restoring
// from checkpoints and replays, still releases only k-anonymous groups and
// loses or duplicates no record relative to its held set.
func TestRestartRestoresClusters(t *testing.T) {
	const k = 8
	evs := synth(5, 5000, 250)
	recs := encodeAll(t, evs)
	codec := outCodec(t)
	st := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	var outs []map[string]any
	for i := 0; i < len(recs); i += 700 {
		w := newProc(t, k, 400, st).NewWorker()
		outs = append(outs, run(t, w, st, recs[i:min(i+700, len(recs))], 175, codec)...)
	}
	checkGroups(t, k, evs, outs)
	seen := map[string]bool{}
	for _, o := range outs {
		url := o["page_url"].(map[string]any)["string"].(string)
		if seen[url] {
			t.Fatalf("record %s released twice across restarts", url)
		}
		seen[url] = true
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
	var b processors.Batch
	if err := w.(processors.Ticker).Tick(context.Background(), recs[len(recs)-1].Timestamp.Add(time.Hour), []int32{0}, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Checkpoints) != 1 {
		t.Fatalf("tick wrote %d checkpoints", len(b.Checkpoints))
	}
	codec := outCodec(t)
	for _, o := range b.Outputs {
		native, _, err := codec.NativeFromSingle(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, native.(map[string]any))
	}
	w.Done(true)
	checkGroups(t, k, evs, outs)
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
	byURL := map[string]string{}
	for _, e := range evs {
		byURL[e.url] = person[e.subject]
	}
	groups := map[string]map[string]bool{}
	for _, o := range outs {
		var key strings.Builder
		for _, f := range qiFields {
			fmt.Fprintf(&key, "%v|", o[f])
		}
		if groups[key.String()] == nil {
			groups[key.String()] = map[string]bool{}
		}
		groups[key.String()][byURL[o["page_url"].(map[string]any)["string"].(string)]] = true
	}
	if len(groups) == 0 {
		t.Fatal("nothing released")
	}
	for g, people := range groups {
		if len(people) < k {
			t.Errorf("group %s holds %d distinct people < k=%d", g, len(people), k)
		}
	}
}
