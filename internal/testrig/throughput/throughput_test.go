package throughput

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/privacy-pipeline/pipeline/processors"
)

// TestFanoutCopiesEveryRecordAndCountsCommitted: the passthrough writes
// each input to each of its topics and counts only committed batches.
func TestFanoutCopiesEveryRecordAndCountsCommitted(t *testing.T) {
	f := &fanout{outs: []string{"a", "b", "c"}, n: &atomic.Int64{}}
	w := f.NewWorker()
	var out processors.Batch
	in := []processors.Record{{Key: []byte("k1"), Value: []byte("v1")}, {Key: []byte("k2"), Value: []byte("v2")}}
	if err := w.Process(context.Background(), in, &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 6 || string(out.Outputs[5].Value) != "v2" || out.Outputs[5].Topic != "c" {
		t.Fatalf("%d outputs", out.Len())
	}
	w.Done(false)
	if f.n.Load() != 0 {
		t.Fatal("an aborted batch was counted")
	}
	out.Reset()
	w.Process(context.Background(), in, &out)
	w.Done(true)
	if f.n.Load() != 6 {
		t.Fatalf("%d counted", f.n.Load())
	}
}

// TestProcessReadings: the CPU and RSS readings of this process are
// positive and CPU time grows with work.
func TestProcessReadings(t *testing.T) {
	c0 := cpuTicks()
	x := 0
	for i := range 300_000_000 {
		x ^= i
	}
	_ = x
	if c1 := cpuTicks(); c1 <= c0 {
		t.Fatalf("CPU ticks %d then %d", c0, c1)
	}
	if rssKB() <= 0 {
		t.Fatal("no RSS")
	}
	stop := startRSS(context.Background())
	if mb := stop(); mb <= 0 {
		t.Fatalf("peak RSS %v MB", mb)
	}
}
