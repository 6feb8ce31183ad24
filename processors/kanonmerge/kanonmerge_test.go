package kanonmerge

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"

	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/kanon/partial"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kanonagg"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// ev is one clean analytics event of the ground truth.
type ev struct {
	pseudonym, keyID string
	partition        int32
	at               time.Time
	age, country     string
	gender, etype    string
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func records(t testing.TB, evs []ev) []processors.Record {
	t.Helper()
	sch, err := schemas.CleanSchemaJSON("analytics")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := avrosingle.NewCodec(string(sch))
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	out := make([]processors.Record, len(evs))
	for i, e := range evs {
		b, err := codec.SingleFromNative(nil, map[string]any{
			"subject_id_pseudonym": goavro.Union("string", e.pseudonym),
			"event_time":           goavro.Union("long.timestamp-millis", e.at),
			"birth_date_age_band":  goavro.Union("string", e.age),
			"address_country":      goavro.Union("string", e.country),
			"gender":               goavro.Union("string", e.gender),
			"event_type":           goavro.Union("string", e.etype),
			"order_amount":         goavro.Union("double", float64(i%50)),
		})
		if err != nil {
			t.Fatal(err)
		}
		var hs []processors.Header
		if e.keyID != "" {
			hs = []processors.Header{{Key: processors.HeaderKeyID, Value: []byte(e.keyID)}}
		}
		out[i] = processors.Record{Topic: "clean", Partition: e.partition, Offset: next[e.partition], Value: b, Headers: hs, Timestamp: e.at}
		next[e.partition]++
	}
	return out
}

func release(k int, partials bool, partitions int32) kanonagg.Config {
	spec, err := kanonspec.Default()
	if err != nil {
		panic(err)
	}
	c := kanonagg.Config{Aggregates: spec.Aggregates, Spec: spec, K: k, Window: time.Minute, AllowedLateness: 10 * time.Second,
		Rollup: true, IdleClose: time.Millisecond, StateTopic: "state.first", Partitions: partitions}
	if partials {
		c.PartialsTopic = "partials"
	}
	return c
}

func stages(t testing.TB, k int, partitions int32, m *kanonmetrics.Metrics) (*kanonagg.Processor, *Processor) {
	t.Helper()
	rel := release(k, true, partitions)
	first, err := kanonagg.New(rel)
	if err != nil {
		t.Fatal(err)
	}
	merge, err := New(Config{Release: rel, StateTopic: "state.merge", Metrics: m,
		InputPartitions: func(context.Context) (int32, error) { return partitions, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return first, merge
}

func offline(t testing.TB, k int, partitions int32, evs []ev) (rows, partials []processors.Output) {
	t.Helper()
	first, merge := stages(t, k, partitions, nil)
	rows, partials, err := RunOffline(context.Background(), first, merge, records(t, evs), partitions, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return rows, partials
}

// perPartition runs the old single-stage processor: each partition
// releases its own rows.
func perPartition(t testing.TB, k int, evs []ev) []processors.Output {
	t.Helper()
	p, err := kanonagg.New(release(k, false, 0))
	if err != nil {
		t.Fatal(err)
	}
	p.UseStore(emptyStore{})
	w := p.NewWorker()
	var out []processors.Output
	recs := records(t, evs)
	byPart := map[int32][]processors.Record{}
	for _, r := range recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	for _, in := range byPart {
		var b processors.Batch
		if err := w.Process(context.Background(), in, &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Outputs...)
		w.Done(true)
	}
	var b processors.Batch
	var parts []int32
	for p := range byPart {
		parts = append(parts, p)
	}
	if err := w.(processors.Ticker).Tick(context.Background(), t0.Add(24*time.Hour), parts, &b); err != nil {
		t.Fatal(err)
	}
	return append(out, b.Outputs...)
}

type emptyStore struct{}

func (emptyStore) Latest(context.Context, int32) (processors.Checkpoint, bool, error) {
	return processors.Checkpoint{}, false, nil
}
func (emptyStore) Replay(context.Context, int32, int64, int64, func(processors.Record) error) error {
	return nil
}

// row decodes a row's subjects with the published schema.
func subjectsOf(t testing.TB, o processors.Output) int64 {
	t.Helper()
	spec, _ := kanonspec.Default()
	codec, err := avrosingle.NewCodec(string(spec.Aggregates[0].AggregateSchemaJSON()))
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := codec.NativeFromSingle(o.Value)
	if err != nil {
		t.Fatal(err)
	}
	return n.(map[string]any)["subjects"].(int64)
}

const cellKey = "/0/25-34/DE/female/purchase"

func oneCell(people []int, keyID string) []ev {
	var evs []ev
	s := 0
	for p, n := range people {
		for range n {
			evs = append(evs, ev{pseudonym: fmt.Sprintf("ps-%d", s), keyID: keyID, partition: int32(p), at: t0.Add(time.Duration(s) * time.Second),
				age: "25-34", country: "DE", gender: "female", etype: "purchase"})
			s++
		}
	}
	return evs
}

func level0(rows []processors.Output, suffix string) []processors.Output {
	var out []processors.Output
	for _, o := range rows {
		if strings.Contains(string(o.Key), suffix) {
			out = append(out, o)
		}
	}
	return out
}

// TestSplitCellIsReleasedOnce: 4 + 4 + 3 people of one cell on three
// partitions at k = 11: per partition nothing is released, merged the
// cell is released once, with 11 subjects and no partition in its key.
func TestSplitCellIsReleasedOnce(t *testing.T) {
	evs := oneCell([]int{4, 4, 3}, "k1")
	if got := perPartition(t, 11, evs); len(got) != 0 {
		t.Fatalf("per partition released %d rows", len(got))
	}
	rows, _ := offline(t, 11, 3, evs)
	cell := level0(rows, cellKey)
	if len(cell) != 1 {
		t.Fatalf("the cell was released %d times (rows %d)", len(cell), len(rows))
	}
	if k := string(cell[0].Key); strings.Contains(k, "#p") || !strings.HasSuffix(k, cellKey) {
		t.Fatalf("row key %q", k)
	}
	if n := subjectsOf(t, cell[0]); n != 11 {
		t.Fatalf("released with %d subjects", n)
	}
	for _, o := range rows {
		if o.Topic != "agg.analytics.events_by_segment" {
			t.Fatalf("row on %s", o.Topic)
		}
	}
}

// TestTwoKeyIDsCountOnce: people under two pseudonym keys, whose two
// pseudonyms live on different partitions, count once: 8 of them stay
// suppressed at k = 11 (16 pseudonyms), 11 are released with 11 subjects.
func TestTwoKeyIDsCountOnce(t *testing.T) {
	for _, tc := range []struct {
		people int
		want   int
	}{{8, 0}, {11, 1}} {
		var evs []ev
		for i := range tc.people {
			for j, key := range []string{"analytics-2026-07-28", "analytics-2027-06-26"} {
				evs = append(evs, ev{pseudonym: fmt.Sprintf("%s-person-%d", key, i), keyID: key, partition: int32((i + j) % 3),
					at: t0.Add(time.Duration(i) * time.Second), age: "25-34", country: "DE", gender: "female", etype: "purchase"})
			}
		}
		rows, _ := offline(t, 11, 3, evs)
		cell := level0(rows, cellKey)
		if len(cell) != tc.want {
			t.Fatalf("%d people under two keys: %d rows for the cell, want %d", tc.people, len(cell), tc.want)
		}
		if tc.want == 1 {
			if n := subjectsOf(t, cell[0]); n != 11 {
				t.Fatalf("%d people counted as %d", tc.people, n)
			}
		}
		if tc.want == 0 && len(rows) != 0 {
			t.Fatalf("%d rows released from 8 people", len(rows))
		}
	}
}

// TestWaitsForEveryPartition: with four input partitions of which one
// never has an event, nothing is released until that partition reports
// (on an idle tick); a partition that never reports blocks its windows.
func TestWaitsForEveryPartition(t *testing.T) {
	evs := oneCell([]int{4, 4, 3}, "")
	rows, partials := offline(t, 11, 4, evs)
	if len(level0(rows, cellKey)) != 1 {
		t.Fatal("the idle, empty partition blocked the window")
	}
	var from3 []processors.Output
	for _, o := range partials {
		r, err := partial.Decode(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		if r.Partitions != 4 {
			t.Fatalf("a record reports %d partitions", r.Partitions)
		}
		if r.Partition == 3 {
			if r.Kind != partial.KindProgress {
				t.Fatal("the empty partition published cells")
			}
			from3 = append(from3, o)
		}
	}
	if len(from3) == 0 {
		t.Fatal("the empty partition never reported")
	}
	// Without partition 3's progress nothing is released.
	_, merge := stages(t, 11, 4, nil)
	merge.UseStore(emptyStore{})
	w := merge.NewWorker()
	var b processors.Batch
	var in []processors.Record
	for i, o := range partials {
		if !slices.ContainsFunc(from3, func(x processors.Output) bool { return string(x.Value) == string(o.Value) }) {
			in = append(in, processors.Record{Partition: 0, Offset: int64(i), Value: o.Value})
		}
	}
	if err := w.Process(context.Background(), in, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Outputs) != 0 {
		t.Fatalf("released %d rows before every partition reported", len(b.Outputs))
	}
}

// TestUndecodablePartialsAreCountedAndSkipped: garbage on the partials
// topic is counted and never stalls the merge.
func TestUndecodablePartialsAreCountedAndSkipped(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	reg := prometheus.NewRegistry()
	m := kanonmetrics.New(reg)
	_, merge := stages(t, 11, 3, m)
	merge.UseStore(emptyStore{})
	w := merge.NewWorker()
	in := []processors.Record{{Offset: 0, Value: []byte("garbage")}, {Offset: 1, Value: partial.AppendProgress(nil, "no_such_aggregate", 0, 3, 0)}}
	for i, o := range partials {
		in = append(in, processors.Record{Offset: int64(i + 2), Value: o.Value})
	}
	var b processors.Batch
	if err := w.Process(context.Background(), in, &b); err != nil {
		t.Fatal(err)
	}
	w.Done(true)
	if len(level0(b.Outputs, cellKey)) != 1 {
		t.Fatal("the bad records stalled the merge")
	}
	snap, err := metrics.Snapshot(reg)
	if err != nil {
		t.Fatal(err)
	}
	if snap["pipeline_kanon_merge_partials_total{outcome=undecodable}"] != 1 || snap["pipeline_kanon_merge_partials_total{outcome=unknown}"] != 1 {
		t.Fatalf("bad records not counted: %v", snap)
	}
	if snap["pipeline_kanon_merge_pending_windows{output=agg.analytics.events_by_segment}"] != 0 ||
		snap["pipeline_kanon_rows_total{kind=released,output=agg.analytics.events_by_segment}"] == 0 {
		t.Fatalf("metrics %v", snap)
	}
}

// memStore is an in-memory processors.StateStore for the merge stage.
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

func randomEvents(seed uint64, n, people int, partitions int32) []ev {
	rng := rand.New(rand.NewPCG(seed, 3))
	ages, countries := []string{"18-24", "25-34", "35-44", "65+"}, []string{"VN", "DE", "US", "FR", "SG"}
	genders, etypes := []string{"female", "male", "non_binary"}, []string{"page_view", "search", "purchase", "login"}
	evs := make([]ev, n)
	for i := range evs {
		s := rng.IntN(people)
		ps := fmt.Sprintf("ps-%05d", s)
		evs[i] = ev{pseudonym: ps, keyID: "k1", partition: int32(subject.Hash([]byte(ps)) % uint64(partitions)),
			at:  t0.Add(time.Duration(i) * 300 * time.Millisecond),
			age: ages[s%len(ages)], country: countries[(s/4)%len(countries)], gender: genders[s%3], etype: etypes[rng.IntN(len(etypes))]}
	}
	return evs
}

// TestRestoreMidWindowEqualsUninterrupted: the merge stage restored from
// its last committed checkpoint (and a replay of its pending windows'
// partials) at any batch boundary publishes exactly the rows of an
// uninterrupted run; an aborted batch is redone the same way.
func TestRestoreMidWindowEqualsUninterrupted(t *testing.T) {
	evs := randomEvents(4, 4000, 300, 4)
	want, partials := offline(t, 11, 4, evs)
	if len(want) == 0 {
		t.Fatal("nothing released")
	}
	recs := make([]processors.Record, len(partials))
	for i, o := range partials {
		recs[i] = processors.Record{Partition: 0, Offset: int64(i), Value: o.Value}
	}
	index := func(outs []processors.Output) map[string]string {
		m := map[string]string{}
		for _, o := range outs {
			if _, dup := m[string(o.Key)]; dup {
				t.Fatalf("row %s published twice", o.Key)
			}
			m[string(o.Key)] = string(o.Value)
		}
		return m
	}
	wantRows := index(want)
	for _, batch := range []int{3, 17, 50} {
		store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
		reg := prometheus.NewRegistry()
		_, merge := stages(t, 11, 4, kanonmetrics.New(reg))
		merge.UseStore(store)
		var got []processors.Output
		w := merge.NewWorker()
		for i, n := 0, 0; i < len(recs); i, n = i+batch, n+1 {
			in := recs[i:min(i+batch, len(recs))]
			if n%3 == 1 {
				// A new owner (or a restart) restores from the checkpoint.
				w = merge.NewWorker()
			}
			var b processors.Batch
			if err := w.Process(context.Background(), in, &b); err != nil {
				t.Fatal(err)
			}
			if n%5 == 2 {
				// Aborted: discarded, and redone by a fresh worker.
				w.Done(false)
				w = merge.NewWorker()
				b = processors.Batch{}
				if err := w.Process(context.Background(), in, &b); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range b.Outputs {
				o.Key, o.Value = slices.Clone(o.Key), slices.Clone(o.Value)
				got = append(got, o)
			}
			for _, cp := range b.Checkpoints {
				cp.State = slices.Clone(cp.State)
				store.cps[cp.Partition] = cp
			}
			w.Done(true)
		}
		if snap, _ := metrics.Snapshot(reg); snap["pipeline_kanon_restores_total{processor=kanon-merge}"] == 0 {
			t.Fatal("no restore from a checkpoint happened")
		}
		gotRows := index(got)
		if len(gotRows) != len(wantRows) {
			t.Fatalf("batch %d: %d rows, uninterrupted %d", batch, len(gotRows), len(wantRows))
		}
		for k, v := range wantRows {
			if gotRows[k] != v {
				t.Fatalf("batch %d: row %s differs", batch, k)
			}
		}
	}
}

// feed runs one merge batch over values at offsets from base and returns
// the outputs and the metric snapshot.
func feed(t *testing.T, merge *Processor, vals [][]byte) ([]processors.Output, *Worker) {
	t.Helper()
	merge.UseStore(emptyStore{})
	w := merge.NewWorker().(*Worker)
	var in []processors.Record
	for i, v := range vals {
		in = append(in, processors.Record{Offset: int64(i), Value: v})
	}
	var b processors.Batch
	if err := w.Process(context.Background(), in, &b); err != nil {
		t.Fatal(err)
	}
	return b.Outputs, w
}

func outcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	snap, err := metrics.Snapshot(reg)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for k, v := range snap {
		if o, ok := strings.CutPrefix(k, "pipeline_kanon_merge_partials_total{outcome="); ok {
			out[strings.TrimSuffix(o, "}")] = v
		}
	}
	return out
}

// partition0Last returns the partials with partition 0's records last, so
// that a forged progress of partition 0 would close the window before its
// cells arrive.
func partition0Last(t *testing.T, partials []processors.Output) (vals [][]byte, name string) {
	var last [][]byte
	for _, o := range partials {
		r, err := partial.Decode(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		name = r.Aggregate
		if r.Partition == 0 {
			last = append(last, o.Value)
		} else {
			vals = append(vals, o.Value)
		}
	}
	return append(vals, last...), name
}

// TestForgedPartitionsAndBoundsAreInvalid (attack: one forged progress
// record naming partition 65534 stalls the aggregate forever; a forged
// ClosedBefore = MaxInt64 for a real partition stops the wait for it; a
// record claiming more partitions than the input has): each is counted
// invalid and changes nothing, and the cell is still released once with
// all 11 people.
func TestForgedPartitionsAndBoundsAreInvalid(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	vals, name := partition0Last(t, partials)
	forged := [][]byte{
		partial.AppendProgress(nil, name, partial.MaxPartitions-2, partial.MaxPartitions-1, 0),
		partial.AppendProgress(nil, name, 0, 3, math.MaxInt64),
		partial.AppendProgress(nil, name, 1, 10, 0),
		partial.AppendProgress(nil, name, 2, 3, t0.Add(365*24*time.Hour).UnixMilli()),
	}
	reg := prometheus.NewRegistry()
	calls := 0
	rel := release(11, true, 3)
	merge, err := New(Config{Release: rel, StateTopic: "state.merge", Metrics: kanonmetrics.New(reg), Now: func() time.Time { return t0.Add(24 * time.Hour) },
		InputPartitions: func(context.Context) (int32, error) { calls++; return 3, nil }})
	if err != nil {
		t.Fatal(err)
	}
	out, w := feed(t, merge, append(forged, vals...))
	w.Done(true)
	if got := level0(out, cellKey); len(got) != 1 || subjectsOf(t, got[0]) != 11 {
		t.Fatalf("the forged records changed the release: %d rows", len(got))
	}
	if o := outcomes(t, reg); o["invalid"] != float64(len(forged)) {
		t.Fatalf("outcomes %v, want %d invalid", o, len(forged))
	}
	if calls > 2 {
		t.Fatalf("the partition count was read %d times in one batch", calls)
	}
	st, _ := w.shards.Lookup(0)
	for _, m := range st.mergers {
		if m != nil && len(m.Checkpoint().Progress) != 3 {
			t.Fatalf("the merge waits for %d partitions", len(m.Checkpoint().Progress))
		}
	}
}

// TestPartitionsAddedAreReadFromTheInput: a record of a partition beyond
// the known count makes the merge read the count again; once the input
// has it, the record is accepted and windows wait for it.
func TestPartitionsAddedAreReadFromTheInput(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	_, name := partition0Last(t, partials)
	real := int32(3)
	merge, err := New(Config{Release: release(11, true, 3), StateTopic: "state.merge",
		InputPartitions: func(context.Context) (int32, error) { return real, nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, w := feed(t, merge, [][]byte{partial.AppendProgress(nil, name, 0, 3, 0)})
	w.Done(true)
	real = 4
	_, w = feed(t, merge, [][]byte{partial.AppendProgress(nil, name, 3, 4, 0)})
	if w.pending.outcomes[OutcomeInvalid] != 0 || w.pending.outcomes[OutcomeProgress] != 1 || merge.known.Load() != 4 {
		t.Fatalf("outcomes %v, known %d", w.pending.outcomes, merge.known.Load())
	}
}

// cellsRecord encodes one cells record by hand.
func cellsRecord(t *testing.T, name string, partition, partitions int32, start int64, keyIDs []partial.KeyID, cells []aggregate.PartialCell) []byte {
	t.Helper()
	var out []byte
	if _, err := partial.EncodeCells(name, partition, partitions, start, keyIDs, cells, 1<<20, func(b []byte) { out = slices.Clone(b) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeyIDFloodIsRejected (attack: a record of many key ids, then counted
// invalid, still bloated the checkpointed domain table past the state
// topic's record limit and filled it): key ids of rejected records, and
// those no subject uses, never enter the table; a record with too many is
// invalid; the table is bounded with a counted refusal; the aggregate
// keeps releasing.
func TestKeyIDFloodIsRejected(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	vals, name := partition0Last(t, partials)
	start := t0.Truncate(time.Minute).UnixMilli()
	flood := make([]partial.KeyID, 5000)
	for i := range flood {
		flood[i] = partial.KeyID{Domain: uint16(i + 1), ID: fmt.Sprintf("key-%d", i)}
	}
	var forged [][]byte
	// Invalid cells (one dimension value), with the flood.
	forged = append(forged, cellsRecord(t, name, 0, 3, start, flood, []aggregate.PartialCell{{Values: []string{"x"}, Events: 1, Subjects: []uint64{1<<48 | 1}}}))
	// Valid cells, but more key ids than a record may carry.
	good := []aggregate.PartialCell{{Values: []string{"25-34", "DE", "female", "purchase"}, Events: 1, Subjects: []uint64{1<<48 | 1}}}
	forged = append(forged, cellsRecord(t, name, 1, 3, start, flood[:MaxKeyIDsPerRecord+1], good))
	// Valid, with unused key ids: only the used one is numbered.
	forged = append(forged, cellsRecord(t, name, 1, 3, start, flood[:MaxKeyIDsPerRecord], good))
	reg := prometheus.NewRegistry()
	_, merge := stages(t, 11, 3, kanonmetrics.New(reg))
	out, w := feed(t, merge, append(forged, vals...))
	if got := level0(out, cellKey); len(got) != 1 {
		t.Fatalf("the flood changed the release: %d rows", len(got))
	}
	if w.pending.outcomes[OutcomeInvalid] != 2 {
		t.Fatalf("outcomes %v", w.pending.outcomes)
	}
	st, _ := w.shards.Lookup(0)
	if n := st.domains.Len(); n != 2 { // "k" and the one used key id
		t.Fatalf("the domain table has %d key ids", n)
	}
	var b processors.Batch
	w.Done(true)
	// Fill the table: every record adds 64 used key ids, until refused.
	var fill [][]byte
	for r := range MaxDomains/MaxKeyIDsPerRecord + 2 {
		ids := make([]partial.KeyID, MaxKeyIDsPerRecord)
		var subj []uint64
		for i := range ids {
			ids[i] = partial.KeyID{Domain: uint16(i + 1), ID: fmt.Sprintf("fill-%d-%d", r, i)}
			subj = append(subj, uint64(i+1)<<48|1)
		}
		fill = append(fill, cellsRecord(t, name, 1, 3, start+int64(r+48*60)*60_000, ids,
			[]aggregate.PartialCell{{Values: []string{"25-34", "DE", "female", "purchase"}, Events: 1, Subjects: subj}}))
	}
	in := make([]processors.Record, len(fill))
	for i, v := range fill {
		in[i] = processors.Record{Offset: int64(100 + i), Value: v}
	}
	if err := w.Process(context.Background(), in, &b); err != nil {
		t.Fatal(err)
	}
	if w.pending.outcomes[OutcomeRefused] == 0 {
		t.Fatalf("a full table was not refused: %v", w.pending.outcomes)
	}
	if n := st.domains.Len(); n > MaxDomains {
		t.Fatalf("the domain table has %d key ids", n)
	}
	if n := len(b.Checkpoints[0].State); n > 512<<10 {
		t.Fatalf("checkpoint of %d bytes", n)
	}
}

// TestUnnamedDomainIsInvalid (attack: a subject of domain 0 that the
// record's key-id table does not name passed unchecked): such a record is
// invalid and adds nothing.
func TestUnnamedDomainIsInvalid(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	vals, name := partition0Last(t, partials)
	start := t0.Truncate(time.Minute).UnixMilli()
	forged := cellsRecord(t, name, 1, 3, start, nil,
		[]aggregate.PartialCell{{Values: []string{"25-34", "DE", "female", "purchase"}, Events: 5, Subjects: []uint64{1, 2, 3, 4, 5}}})
	_, merge := stages(t, 11, 3, nil)
	out, w := feed(t, merge, append([][]byte{forged}, vals...))
	if w.pending.outcomes[OutcomeInvalid] != 1 {
		t.Fatalf("outcomes %v", w.pending.outcomes)
	}
	if got := level0(out, cellKey); len(got) != 1 || subjectsOf(t, got[0]) != 11 {
		t.Fatal("the unnamed subjects were counted")
	}
}

// TestFarFutureWindowIsInvalid (attack: a forged aligned window far in
// the future holds the replay start back forever and grows the state):
// it is counted invalid and opens nothing.
func TestFarFutureWindowIsInvalid(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	vals, name := partition0Last(t, partials)
	future := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Minute).UnixMilli()
	forged := cellsRecord(t, name, 1, 3, future, []partial.KeyID{{Domain: 0}},
		[]aggregate.PartialCell{{Values: []string{"25-34", "DE", "female", "purchase"}, Events: 1, Subjects: []uint64{1}}})
	_, merge := stages(t, 11, 3, nil)
	_, w := feed(t, merge, append([][]byte{forged}, vals...))
	if w.pending.outcomes[OutcomeInvalid] != 1 {
		t.Fatalf("outcomes %v", w.pending.outcomes)
	}
	st, _ := w.shards.Lookup(0)
	for _, m := range st.mergers {
		if m != nil && m.Pending() != 0 {
			t.Fatalf("%d windows pending", m.Pending())
		}
	}
}

// runMerge processes recs in one batch on merge with store and commits.
func runMerge(t *testing.T, merge *Processor, store *memStore, recs []processors.Record) ([]processors.Output, error) {
	t.Helper()
	merge.UseStore(store)
	w := merge.NewWorker()
	var b processors.Batch
	if err := w.Process(context.Background(), recs, &b); err != nil {
		w.Done(false)
		return nil, err
	}
	for _, cp := range b.Checkpoints {
		cp.State = slices.Clone(cp.State)
		store.cps[cp.Partition] = cp
	}
	w.Done(true)
	return b.Outputs, nil
}

// TestConfigChangeKeepsTheReleaseHorizon (attack: after a reset by a K or
// window change a late partial reopened an already released window and
// released it again under the same keys, and the DP budget restarted):
// the horizon survives, the partial is late, nothing is released twice.
func TestConfigChangeKeepsTheReleaseHorizon(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	var recs []processors.Record
	for i, o := range partials {
		recs = append(recs, processors.Record{Offset: int64(i), Value: o.Value})
	}
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	_, merge := stages(t, 11, 3, nil)
	out, err := runMerge(t, merge, store, recs)
	if err != nil || len(level0(out, cellKey)) != 1 {
		t.Fatalf("first release: %v, %d rows", err, len(out))
	}
	// k changes; the same partials come again (a first stage that started
	// afresh).
	reg := prometheus.NewRegistry()
	_, merge2 := stages(t, 5, 3, kanonmetrics.New(reg))
	var again []processors.Record
	for i, r := range recs {
		r.Offset = int64(len(recs) + i)
		again = append(again, r)
	}
	store.input = append(store.input, again...)
	out, err = runMerge(t, merge2, store, again)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Fatalf("a released window was released again after the config change: %d rows", len(out))
	}
	if o := outcomes(t, reg); o["late"] == 0 {
		t.Fatalf("outcomes %v", o)
	}
}

// TestUnreadableCheckpointStopsLoudly: a corrupt checkpoint, whose
// horizon cannot be read, does not silently start afresh: the batch fails
// (nothing commits) and it is counted, unless the operator says discard.
func TestUnreadableCheckpointStopsLoudly(t *testing.T) {
	_, partials := offline(t, 11, 3, oneCell([]int{4, 4, 3}, "k"))
	var recs []processors.Record
	for i, o := range partials {
		recs = append(recs, processors.Record{Offset: int64(i), Value: o.Value})
	}
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{0: {Partition: 0, Next: 0, State: []byte("KMP1garbage")}}}
	reg := prometheus.NewRegistry()
	_, merge := stages(t, 11, 3, kanonmetrics.New(reg))
	if _, err := runMerge(t, merge, store, recs); err == nil {
		t.Fatal("an unreadable checkpoint was silently replaced")
	}
	if snap, _ := metrics.Snapshot(reg); snap["pipeline_kanon_state_unreadable_total{processor=kanon-merge}"] != 1 {
		t.Fatalf("not counted: %v", snap)
	}
	merge.cfg.DiscardUnreadableState = true
	out, err := runMerge(t, merge, store, recs)
	if err != nil || len(level0(out, cellKey)) != 1 {
		t.Fatalf("with discard: %v, %d rows", err, len(out))
	}
}

// TestOversizedCellIsCountedNotAStall (attack: one cell whose values do
// not fit in a partials record failed the first stage's batch forever):
// the cell is dropped and counted oversized, the other cells still reach
// the merge.
func TestOversizedCellIsCountedNotAStall(t *testing.T) {
	evs := oneCell([]int{4, 4, 3}, "k")
	for i := range 12 {
		evs = append(evs, ev{pseudonym: fmt.Sprintf("long-%d", i), partition: 0, at: t0.Add(time.Second),
			age: "25-34", country: "DE", gender: "female", etype: strings.Repeat("x", 1500)})
	}
	reg := prometheus.NewRegistry()
	rel := release(11, true, 3)
	rel.PartialMaxBytes = 1024
	rel.Metrics = kanonmetrics.New(reg)
	first, err := kanonagg.New(rel)
	if err != nil {
		t.Fatal(err)
	}
	_, merge := stages(t, 11, 3, nil)
	rows, _, err := RunOffline(context.Background(), first, merge, records(t, evs), 3, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatalf("the oversized cell stalled the first stage: %v", err)
	}
	if len(level0(rows, cellKey)) != 1 {
		t.Fatal("the other cells were lost")
	}
	snap, _ := metrics.Snapshot(reg)
	var n float64
	for k, v := range snap {
		if strings.HasPrefix(k, "pipeline_kanon_events_total{") && strings.Contains(k, "outcome=oversized") {
			n += v
		}
	}
	if n == 0 {
		t.Fatalf("the oversized cell was not counted: %v", snap)
	}
}
