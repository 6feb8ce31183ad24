package kanonrec

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
)

const noticesTopic = "privacy.erasures"

// sameQI are events of distinct subjects with identical quasi-identifiers:
// CASTLE puts them in one cluster, which releases once it holds k
// distinct subjects.
func sameQI(subjects ...string) []event {
	hour := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()
	out := make([]event, len(subjects))
	for i, s := range subjects {
		out[i] = event{subject: s, age: "25-34", country: "DE", postal: "10", gender: "female", etype: "page_view",
			page: pages[0], hour: hour}
	}
	return out
}

// notice is an erasure notice record on partition 0, as internal/erasure
// publishes it.
func notice(purpose, pseudonym string, at time.Time) processors.Record {
	v := fmt.Sprintf(`{"purpose":%q,"key_id":"ai_training-2026","pseudonym":%q,"data_key":"dk1.x","erased_ms":%d,"request":"req-1"}`,
		purpose, pseudonym, at.UnixMilli())
	return processors.Record{Topic: noticesTopic, Partition: 0, Offset: 0, Key: []byte(pseudonym), Value: []byte(v), Timestamp: at}
}

// erasureProc is newProc with notices and metrics; MaxDelay decides held
// records on a tick.
func erasureProc(t *testing.T, k int, store *memStore) (*Processor, *kanonmetrics.Metrics) {
	t.Helper()
	p := newProc(t, k, 100, store)
	p.cfg.NoticesTopic = noticesTopic
	p.cfg.MaxDelay = time.Minute
	p.cfg.Metrics = kanonmetrics.New(prometheus.NewRegistry())
	return p, p.cfg.Metrics
}

// step processes one committed batch and returns its decoded outputs.
func step(t *testing.T, w processors.Worker, store *memStore, in []processors.Record) []released {
	t.Helper()
	offsets := traced(w)
	var b processors.Batch
	if err := w.Process(context.Background(), in, &b); err != nil {
		t.Fatal(err)
	}
	out := decodeOutputs(t, &b, offsets, outCodec(t))
	for _, cp := range b.Checkpoints {
		cp.State = slices.Clone(cp.State)
		store.cps[cp.Partition] = cp
	}
	w.Done(true)
	return out
}

// tick decides every record held longer than MaxDelay, in a committed
// tick, and returns the outputs.
func tick(t *testing.T, w processors.Worker, store *memStore, now time.Time) []released {
	t.Helper()
	offsets := traced(w)
	var b processors.Batch
	if err := w.(processors.Ticker).Tick(context.Background(), now, []int32{0}, &b); err != nil {
		t.Fatal(err)
	}
	out := decodeOutputs(t, &b, offsets, outCodec(t))
	for _, cp := range b.Checkpoints {
		cp.State = slices.Clone(cp.State)
		store.cps[cp.Partition] = cp
	}
	w.Done(true)
	return out
}

func offsetsOf(outs []released) []int64 {
	var o []int64
	for _, r := range outs {
		o = append(o, r.offset)
	}
	slices.Sort(o)
	return o
}

func count(t *testing.T, m *kanonmetrics.Metrics, vec string, label string) float64 {
	t.Helper()
	if vec == "notices" {
		return testutil.ToFloat64(m.ErasureNotices.WithLabelValues(Name, label))
	}
	return testutil.ToFloat64(m.ErasureDropped.WithLabelValues(Name, label))
}

// TestErasedHeldRecordIsNeverReleased: a record of a subject waits in its
// cluster when the subject is erased; the notice removes it, so it is
// never released, whatever arrives later - not when the cluster fills
// with other subjects, not after a restart that replays the input (which
// still holds the record), and a record of the subject that arrives after
// the notice (the clean topic lagging behind the notice topic) is kept
// out too. The attack: an erasure that leaves the subject's waiting
// record to be published later in a k-anonymous cluster would publish
// data about someone already erased.
func TestErasedHeldRecordIsNeverReleased(t *testing.T) {
	evs := sameQI("pseudo-a", "pseudo-erased", "pseudo-b", "pseudo-erased", "pseudo-c", "pseudo-d")
	recs := encodeAll(t, evs)
	store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
	p, m := erasureProc(t, 3, store)
	w := p.NewWorker()
	at := recs[0].Timestamp
	// Records 0-2 are held (k=3 is reached only when the delay decides).
	if out := step(t, w, store, recs[:3]); len(out) != 0 {
		t.Fatalf("released before any delay: %v", offsetsOf(out))
	}
	if out := step(t, w, store, []processors.Record{notice("ai_training", "pseudo-erased", at)}); len(out) != 0 {
		t.Fatalf("a notice released records: %v", offsetsOf(out))
	}
	if got := count(t, m, "notices", "applied"); got != 1 {
		t.Fatalf("applied notices %v, want 1", got)
	}
	if got := count(t, m, "dropped", "held_records"); got != 1 {
		t.Fatalf("dropped held records %v, want 1", got)
	}
	// A fresh worker restores from the checkpoint the notice's batch
	// wrote; the replay offers record 1 again.
	w = p.NewWorker()
	outs := step(t, w, store, recs[3:])
	outs = append(outs, tick(t, w, store, at.Add(time.Hour))...)
	got := offsetsOf(outs)
	if want := []int64{0, 2, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("released %v, want %v: the others, never the erased subject's 1 and 3", got, want)
	}
	if n := count(t, m, "dropped", "late_records"); n != 1 {
		t.Fatalf("late records kept out %v, want 1 (record 3)", n)
	}
	checkGroups(t, 3, evs, outs, nil)
}

// TestClusterNeedingTheErasedSubjectDoesNotRelease: a cluster of three
// subjects (k=3) releases on its delay; with one of them erased, the two
// left are not k and are suppressed. The control run without the notice
// releases all three, so the notice is what makes the difference.
func TestClusterNeedingTheErasedSubjectDoesNotRelease(t *testing.T) {
	evs := sameQI("pseudo-a", "pseudo-erased", "pseudo-b")
	recs := encodeAll(t, evs)
	at := recs[0].Timestamp
	for _, erase := range []bool{false, true} {
		store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
		p, m := erasureProc(t, 3, store)
		w := p.NewWorker()
		in := slices.Clone(recs)
		if erase {
			in = append(in, notice("ai_training", "pseudo-erased", at))
		}
		outs := step(t, w, store, in)
		outs = append(outs, tick(t, w, store, at.Add(time.Hour))...)
		switch {
		case !erase && len(outs) != 3:
			t.Fatalf("control: released %v, want all three", offsetsOf(outs))
		case erase && len(outs) != 0:
			t.Fatalf("released %v with only two subjects left after the erasure (k=3)", offsetsOf(outs))
		}
		if erase {
			if got := testutil.ToFloat64(m.Records.WithLabelValues(p.Topic(), "suppressed")); got != 2 {
				t.Fatalf("suppressed %v, want the two left", got)
			}
		}
	}
}

// TestNoticeWithoutEffectChangesNothing: a notice for a pseudonym the
// partition never saw (unknown), for another purpose (not_applicable:
// the attack of a forged notice carrying this purpose's pseudonym under
// another purpose's name, or another purpose's pseudonym under this
// purpose's name), or malformed (skipped: a flood of garbage on the
// notices topic never stalls the stream) leaves the releases exactly as
// without it, and each is counted.
func TestNoticeWithoutEffectChangesNothing(t *testing.T) {
	evs := synth(3, 600, 40)
	recs := encodeAll(t, evs)
	at := recs[0].Timestamp
	runWith := func(extra []processors.Record) ([]int64, *kanonmetrics.Metrics) {
		store := &memStore{input: recs, cps: map[int32]processors.Checkpoint{}}
		p, m := erasureProc(t, 3, store)
		p.cfg.Seed = 42
		w := p.NewWorker()
		var outs []released
		for i := 0; i < len(recs); i += 50 {
			in := slices.Clone(recs[i:min(i+50, len(recs))])
			if i == 300 {
				in = append(extra, in...)
			}
			outs = append(outs, step(t, w, store, in)...)
		}
		outs = append(outs, tick(t, w, store, recs[len(recs)-1].Timestamp.Add(time.Hour))...)
		return offsetsOf(outs), m
	}
	want, _ := runWith(nil)
	var flood []processors.Record
	for i := range 1000 {
		flood = append(flood, processors.Record{Topic: noticesTopic, Value: []byte(fmt.Sprintf(`{"purpose":"ai_training","pseudonym":"x%d"`, i)), Timestamp: at})
	}
	extra := append([]processors.Record{
		notice("ai_training", "pseudo-never-seen", at),
		notice("analytics", "pseudo-0007", at),                // this purpose's pseudonym, another purpose's name
		notice("ai_training", "analytics-pseudonym-of-7", at), // another purpose's pseudonym
		{Topic: noticesTopic, Value: []byte("not json"), Timestamp: at},
		{Topic: noticesTopic, Value: nil, Timestamp: at}, // a tombstone
	}, flood...)
	got, m := runWith(extra)
	if !slices.Equal(got, want) {
		t.Fatalf("releases changed: %d records vs %d without the notices", len(got), len(want))
	}
	for label, n := range map[string]float64{"unknown": 2, "not_applicable": 1, "malformed": 1002, "applied": 0} {
		if c := count(t, m, "notices", label); c != n {
			t.Errorf("%s notices %v, want %v", label, c, n)
		}
	}
}
