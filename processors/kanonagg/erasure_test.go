package kanonagg

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privacy-pipeline/pipeline/internal/kanon/aggregate"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/internal/kanon/partial"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/forget"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
)

const noticesTopic = "privacy.erasures"

func notice(purpose, pseudonym string, at time.Time) processors.Record {
	v := fmt.Sprintf(`{"purpose":%q,"key_id":"analytics-2026","pseudonym":%q,"data_key":"dk1.x","erased_ms":%d}`, purpose, pseudonym, at.UnixMilli())
	return processors.Record{Topic: noticesTopic, Partition: 0, Key: []byte(pseudonym), Value: []byte(v), Timestamp: at}
}

func erasureProc(t *testing.T, k int, store *memStore) (*Processor, *kanonmetrics.Metrics) {
	t.Helper()
	p := newProc(t, k, store)
	p.cfg.NoticesTopic = noticesTopic
	p.cfg.Metrics = kanonmetrics.New(prometheus.NewRegistry())
	return p, p.cfg.Metrics
}

// cellRow returns the level-0 row of the cell (25-34, DE, female,
// purchase) in the window starting at start, if released.
func cellRow(rows []output, start time.Time) (map[string]any, bool) {
	for _, o := range rows {
		r := o.row
		if r["window_start"].(time.Time).Equal(start) && r["level"].(int32) == 0 && !r["margin"].(bool) &&
			r["birth_date_age_band"] == "25-34" && r["address_country"] == "DE" && r["gender"] == "female" && r["event_type"] == "purchase" {
			return r, true
		}
	}
	return nil, false
}

// TestErasedSubjectLeavesItsOpenWindow: an open window's cell counts
// subjects a, b and the erased one (two purchases of 100). After the
// notice - and after a restart that replays the window's input, which
// still holds the erased subject's events - the row the window releases
// counts only a and b: its distinct subjects, its events and its amount
// sum forget the subject exactly. With k=3 the cell, which reached k only
// with the erased subject, is not released at all. A purchase of the
// erased subject that arrives after the notice is kept out. The attack: an
// erasure that leaves the subject's events in an open window would publish
// them, aggregated, after the subject was erased.
func TestErasedSubjectLeavesItsOpenWindow(t *testing.T) {
	w1 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ev := func(s string, sec int, amount float64) event {
		return event{subject: s, time: w1.Add(time.Duration(sec) * time.Second).UnixMilli(), age: "25-34", country: "DE", gender: "female", etype: "purchase", amount: amount}
	}
	evs := []event{ev("pseudo-a", 1, 1), ev("pseudo-erased", 2, 100), ev("pseudo-b", 3, 2), ev("pseudo-erased", 4, 100),
		ev("pseudo-erased", 30, 100), // after the notice
		{subject: "pseudo-z", time: w1.Add(3 * time.Minute).UnixMilli(), age: "65+", country: "VN", gender: "male", etype: "login"}} // closes w1
	recs := records(encodeAll(t, evs))
	for _, erase := range []bool{false, true} {
		for _, k := range []int{2, 3} {
			store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
			p, m := erasureProc(t, k, store)
			w := p.NewWorker()
			rows := run(t, w, store, recs[:4], 4, aggCodec(t))
			if erase {
				rows = append(rows, run(t, w, store, []processors.Record{notice("analytics", "pseudo-erased", w1)}, 1, aggCodec(t))...)
				w = p.NewWorker() // restart: restore from the checkpoint, replay the open window
			}
			rows = append(rows, run(t, w, store, recs[4:], 2, aggCodec(t))...)
			r, ok := cellRow(rows, w1)
			switch {
			case !erase && k == 2 && (!ok || r["subjects"] != int64(3) || r["events"] != int64(5) || r["amount_sum"] != 303.0):
				t.Fatalf("control k=2: row %v", r)
			case erase && k == 2 && (!ok || r["subjects"] != int64(2) || r["events"] != int64(2) || r["amount_sum"] != 3.0):
				t.Fatalf("k=2: the row still counts the erased subject: %v", r)
			case erase && k == 3 && ok:
				t.Fatalf("k=3: a cell that reached k only with the erased subject was released: %v", r)
			case !erase && k == 3 && !ok:
				t.Fatal("control k=3: the cell of three subjects was not released")
			}
			if erase {
				if got := testutil.ToFloat64(m.ErasureNotices.WithLabelValues(Name, "applied")); got != 1 {
					t.Fatalf("applied %v", got)
				}
				if got := testutil.ToFloat64(m.ErasureDropped.WithLabelValues(Name, "window_events")); got != 2 {
					t.Fatalf("window events dropped %v, want 2", got)
				}
				if got := testutil.ToFloat64(m.ErasureDropped.WithLabelValues(Name, "late_records")); got != 1 {
					t.Fatalf("late records %v, want 1", got)
				}
			}
		}
	}
}

// TestErasureRebuildInTheSameBatch: notice and records in one batch (the
// runner delivers both topics' records of a partition together): the
// window closed later in that batch already forgets the subject.
func TestErasureRebuildInTheSameBatch(t *testing.T) {
	w1 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ev := func(s string, sec int) event {
		return event{subject: s, time: w1.Add(time.Duration(sec) * time.Second).UnixMilli(), age: "25-34", country: "DE", gender: "female", etype: "purchase", amount: 1}
	}
	evs := []event{ev("pseudo-a", 1), ev("pseudo-erased", 2), ev("pseudo-b", 3), ev("pseudo-z", 200)}
	recs := records(encodeAll(t, evs))
	store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
	p, _ := erasureProc(t, 2, store)
	in := append(slices.Clone(recs[:3]), notice("analytics", "pseudo-erased", w1), notice("analytics", "pseudo-never-seen", w1), recs[3])
	rows := run(t, p.NewWorker(), store, in, len(in), aggCodec(t))
	if r, ok := cellRow(rows, w1); !ok || r["subjects"] != int64(2) {
		t.Fatalf("row %v (released %v)", r, ok)
	}
}

// TestNoticeWithoutEffectChangesNothing: notices for a pseudonym never
// seen, for another purpose (a forged notice with this purpose's pseudonym
// under another purpose's name, or another purpose's pseudonym under this
// one's), and a flood of malformed ones leave every released row as it
// was without them, and are counted; none stalls the stream.
func TestNoticeWithoutEffectChangesNothing(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	evs := synth(5, 2000, 150, start)
	recs := records(encodeAll(t, evs))
	runWith := func(extra []processors.Record) ([]string, *kanonmetrics.Metrics) {
		store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
		p, m := erasureProc(t, 5, store)
		w := p.NewWorker()
		in := append(append(slices.Clone(recs[:1000]), extra...), recs[1000:]...)
		var keys []string
		for _, o := range run(t, w, store, in, 100, aggCodec(t)) {
			keys = append(keys, fmt.Sprintf("%s=%v/%v/%v", o.key, o.row["subjects"], o.row["events"], o.row["amount_sum"]))
		}
		return keys, m
	}
	want, _ := runWith(nil)
	at := start
	extra := []processors.Record{
		notice("analytics", "pseudo-never-seen", at),
		notice("ai_training", "pseudo-0007", at),
		notice("analytics", "ai_training-pseudonym-of-0007", at),
		{Topic: noticesTopic, Value: []byte(`{"purpose":"analytics"}`)},
		{Topic: noticesTopic},
	}
	for i := range 500 {
		extra = append(extra, processors.Record{Topic: noticesTopic, Value: []byte(fmt.Sprintf(`{"pseudonym":"x%d"`, i))})
	}
	got, m := runWith(extra)
	if !slices.Equal(got, want) {
		t.Fatalf("rows changed: %d vs %d without the notices", len(got), len(want))
	}
	for label, n := range map[string]float64{"unknown": 2, "not_applicable": 1, "malformed": 502, "applied": 0} {
		if c := testutil.ToFloat64(m.ErasureNotices.WithLabelValues(Name, label)); c != n {
			t.Errorf("%s %v, want %v", label, c, n)
		}
	}
}

// TestErasedSubjectIsInNoLaterPartial: in two-stage mode, with DP
// contribution bounding on, the window that closes after the notice is
// published as partial cells without the erased subject's id, while a
// control run carries it: the merge stage never receives the subject from
// a window that was open when the notice came.
func TestErasedSubjectIsInNoLaterPartial(t *testing.T) {
	w1 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ev := func(s string, sec int) event {
		return event{subject: s, time: w1.Add(time.Duration(sec) * time.Second).UnixMilli(), age: "25-34", country: "DE", gender: "female", etype: "purchase", amount: 5}
	}
	evs := []event{ev("pseudo-a", 1), ev("pseudo-erased", 2), ev("pseudo-b", 3), ev("pseudo-erased", 4), ev("pseudo-z", 300)}
	recs := records(encodeAll(t, evs))
	erasedID := subject.ID(0, []byte("pseudo-erased"))
	for _, erase := range []bool{false, true} {
		store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
		spec, _ := kanonspec.Default()
		p, err := New(Config{Aggregates: spec.Aggregates, Spec: spec, K: 2, Window: time.Minute, AllowedLateness: 10 * time.Second,
			StateTopic: "state", PartialsTopic: "partials", Partitions: 1, NoticesTopic: noticesTopic,
			DP: &aggregate.DPConfig{Epsilon: 1, Delta: 1e-6, MaxCellsPerSubject: 2, MaxEventsPerCell: 3, MaxAmount: 100}})
		if err != nil {
			t.Fatal(err)
		}
		p.UseStore(store)
		w := p.NewWorker()
		in := slices.Clone(recs[:4])
		if erase {
			in = append(in, notice("analytics", "pseudo-erased", w1))
		}
		in = append(in, recs[4])
		var b processors.Batch
		if err := w.Process(t.Context(), in, &b); err != nil {
			t.Fatal(err)
		}
		found, cells := false, 0
		for _, o := range b.Outputs {
			rec, err := partial.Decode(o.Value)
			if err != nil || rec.Kind != partial.KindCells {
				continue
			}
			for _, c := range rec.Cells {
				cells++
				if slices.Contains(c.Subjects, erasedID) {
					found = true
				}
			}
		}
		w.Done(true)
		if cells == 0 {
			t.Fatal("no partial cells published")
		}
		if found != !erase {
			t.Fatalf("erase=%v: the erased subject's id in a partial: %v", erase, found)
		}
	}
}

// TestErasureRebuildThatCannotRestoreNeverStalls: an event stamped beyond
// the watermark skew leaves an open window past the capped watermark,
// which no checkpoint restores; a notice that needs a rebuild then starts
// the partition's open windows afresh (loudly, counted as a state reset)
// instead of failing the batch forever - and the subject is gone.
func TestErasureRebuildThatCannotRestoreNeverStalls(t *testing.T) {
	w1 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ev := func(s string, at time.Time) event {
		return event{subject: s, time: at.UnixMilli(), age: "25-34", country: "DE", gender: "female", etype: "purchase", amount: 1}
	}
	evs := []event{ev("pseudo-a", w1), ev("pseudo-erased", w1.Add(time.Second)), ev("pseudo-future", w1.Add(5*time.Minute))}
	recs := records(encodeAll(t, evs))
	for i := range recs {
		recs[i].Timestamp = w1.Add(2 * time.Second) // the future event's watermark move is capped
	}
	store := &memStore{input: map[int32][]processors.Record{0: recs}, cps: map[int32]processors.Checkpoint{}}
	p, m := erasureProc(t, 2, store)
	w := p.NewWorker()
	in := append(slices.Clone(recs), notice("analytics", "pseudo-erased", w1))
	var b processors.Batch
	if err := w.Process(t.Context(), in, &b); err != nil {
		t.Fatalf("the batch failed (it would be retried forever): %v", err)
	}
	w.Done(true)
	if got := testutil.ToFloat64(m.StateResets.WithLabelValues(Name)); got != 1 {
		t.Fatalf("state resets %v, want 1", got)
	}
	st, _ := w.(*Worker).shards.Lookup(0)
	for _, a := range st.aggs {
		if a.Contributions(subject.ID(0, []byte("pseudo-erased"))) != 0 {
			t.Fatal("the erased subject is still in an open window")
		}
	}
	if !st.erased.Has(forget.Hash([]byte("pseudo-erased"))) {
		t.Fatal("the erased set was lost with the windows")
	}
}
