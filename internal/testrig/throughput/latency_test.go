package throughput

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/processors"
)

// TestPercentilesAreExactNearestRank: the smallest value with at least q
// of the values at or below it, whatever the input order; the input is
// left alone; nothing for no values.
func TestPercentilesAreExactNearestRank(t *testing.T) {
	v := make([]float64, 0, 1000)
	for i := 1000; i >= 1; i-- {
		v = append(v, float64(i))
	}
	orig := slices.Clone(v)
	got := Percentiles(v, 0.5, 0.99, 0.999, 1, 0.0001)
	if want := []float64{500, 990, 999, 1000, 1}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !slices.Equal(v, orig) {
		t.Fatal("the input was reordered")
	}
	if got := Percentiles([]float64{7}, 0.5, 0.999); !slices.Equal(got, []float64{7, 7}) {
		t.Fatalf("one value: %v", got)
	}
	if got := Percentiles([]float64{3, 1, 2, 4}, 0.5, 0.75, 0.99); !slices.Equal(got, []float64{2, 3, 4}) {
		t.Fatalf("four values: %v", got)
	}
	if Percentiles(nil, 0.5) != nil {
		t.Fatal("percentiles of nothing")
	}
}

// TestDueFollowsTheClockNotTheTicks: what is due depends on the elapsed
// time only; a late tick sends what is owed, a tick ahead of the next
// whole event sends nothing, and nothing is ever negative.
func TestDueFollowsTheClockNotTheTicks(t *testing.T) {
	const rate = 10000.0 // events/s: 50 per 5 ms tick
	if n := due(rate, 0, 0); n != 0 {
		t.Fatalf("at the start %d", n)
	}
	if n := due(rate, paceTick, 0); n != 50 {
		t.Fatalf("one tick %d", n)
	}
	if n := due(rate, 4*paceTick, 50); n != 150 {
		t.Fatalf("three ticks late %d", n)
	}
	if n := due(rate, 4*paceTick, 200); n != 0 {
		t.Fatalf("all sent %d", n)
	}
	if n := due(rate, paceTick, 80); n != 0 {
		t.Fatalf("ahead %d", n)
	}
	// Ticks of any size add up to rate × elapsed.
	var sent int64
	for _, step := range []time.Duration{3 * time.Millisecond, 7 * time.Millisecond, 40 * time.Millisecond, time.Millisecond} {
		var el time.Duration
		sent = 0
		for el < 2*time.Second {
			el += step
			sent += due(rate, el, sent)
		}
		if want := int64(rate * el.Seconds()); sent != want {
			t.Fatalf("step %s: %d sent, want %d", step, sent, want)
		}
	}
	// A slow rate: 1 event per 200 ms.
	if n := due(5, 199*time.Millisecond, 0); n != 0 {
		t.Fatalf("slow rate, early: %d", n)
	}
	if n := due(5, time.Second, 0); n != 5 {
		t.Fatalf("slow rate, a second: %d", n)
	}
}

// fakeJob writes, per input, one record to each of two clean topics
// (with a header of its own) and one to the audit topic.
type fakeJob struct{}

func (fakeJob) Name() string                 { return "privacy" }
func (fakeJob) NewWorker() processors.Worker { return &fakeJobWorker{} }

type fakeJobWorker struct{ done []bool }

func (w *fakeJobWorker) Process(_ context.Context, in []processors.Record, out *processors.Batch) error {
	for i := range in {
		out.Add(i, "clean.a", in[i].Key, in[i].Value, processors.Header{Key: "pp-key-id", Value: []byte("k1")})
		out.Add(i, "clean.b", in[i].Key, in[i].Value)
		out.Ready()
	}
	out.Add(len(in)-1, "audit", nil, []byte("summary"))
	return nil
}
func (w *fakeJobWorker) Done(c bool)   { w.done = append(w.done, c) }
func (w *fakeJobWorker) Current() bool { return true }

func benchHdr(seq, sent int64) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint64(h, uint64(seq))
	binary.BigEndian.PutUint64(h[8:], uint64(sent))
	return h
}

// TestStampedCopiesTheSendHeaderToCleanOutputs: every clean output gets
// its own input's header after its own headers, the audit output none,
// an input without the header none; the wrapper passes Done and Current
// through, and the reused header arena gives a second batch its own
// inputs' headers.
func TestStampedCopiesTheSendHeaderToCleanOutputs(t *testing.T) {
	s := newStamped(fakeJob{}, []string{"clean.a", "clean.b"})
	if s.Name() != "privacy" {
		t.Fatal(s.Name())
	}
	w := s.NewWorker()
	in := []processors.Record{
		{Key: []byte("s1"), Value: []byte("v1"), Headers: []processors.Header{{Key: benchHeader, Value: benchHdr(7, 1000)}}},
		{Key: []byte("s2"), Value: []byte("v2")},
		{Key: []byte("s3"), Value: []byte("v3"), Headers: []processors.Header{{Key: "other", Value: []byte("x")}, {Key: benchHeader, Value: benchHdr(9, 2000)}}},
	}
	var out processors.Batch
	if err := w.Process(context.Background(), in, &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 7 {
		t.Fatalf("%d outputs", out.Len())
	}
	seqOf := func(o processors.Output) int64 {
		for _, h := range o.Headers {
			if h.Key == benchHeader {
				return int64(binary.BigEndian.Uint64(h.Value))
			}
		}
		return -1
	}
	want := []int64{7, 7, -1, -1, 9, 9, -1}
	for j, o := range out.Outputs {
		if got := seqOf(o); got != want[j] {
			t.Fatalf("output %d (%s): seq %d, want %d", j, o.Topic, got, want[j])
		}
	}
	if a := out.Outputs[0]; len(a.Headers) != 2 || a.Headers[0].Key != "pp-key-id" || a.Headers[1].Key != benchHeader {
		t.Fatalf("headers %+v", a.Headers)
	}
	var out2 processors.Batch
	in[0].Headers[0].Value = benchHdr(11, 3000)
	if err := w.Process(context.Background(), in, &out2); err != nil {
		t.Fatal(err)
	}
	if seqOf(out2.Outputs[0]) != 11 || seqOf(out2.Outputs[4]) != 9 || seqOf(out2.Outputs[2]) != -1 {
		t.Fatalf("second batch: %d %d %d", seqOf(out2.Outputs[0]), seqOf(out2.Outputs[4]), seqOf(out2.Outputs[2]))
	}
	// Streamed by the runner while the worker runs: each output is
	// stamped before it is handed over, and the runner's sink is back
	// after Process.
	var out3 processors.Batch
	var handed []int64
	sink := func(outs []processors.Output) {
		for _, o := range outs {
			handed = append(handed, seqOf(o))
		}
	}
	out3.Stream(sink, 1)
	if err := w.Process(context.Background(), in, &out3); err != nil {
		t.Fatal(err)
	}
	if got, _ := out3.Sink(); got == nil || len(handed) != 6 || handed[0] != 11 || handed[4] != 9 || handed[2] != -1 {
		t.Fatalf("streamed outputs' seqs %v", handed)
	}
	if seqOf(out3.Outputs[0]) != 11 || seqOf(out3.Outputs[6]) != -1 {
		t.Fatal("stamps lost after streaming")
	}
	w.Done(true)
	if !w.Current() || len(w.(*stampedWorker).Worker.(*fakeJobWorker).done) != 1 {
		t.Fatal("Done or Current not passed through")
	}
}
