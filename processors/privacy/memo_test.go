package privacy_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
)

// TestMemoAndCachesEqualComputingEverything: the per-event memo (a mask,
// redaction or generalisation shared by several purposes computed once per
// event) and the pseudonym caches (a subject's or device's pseudonym
// remembered across events and batches) change no byte of any output. The
// attack: a memo slot keyed too loosely would hand one purpose another's
// coarser or finer value (geo cells of precision 4 and 5, postal prefixes
// of 3 and 2), or the previous event's value; a cache shared across
// purposes or fields would link them (one pseudonym for two purposes);
// both show as a difference here, over events with fields present and
// absent and free text naming the subject, in a first batch (misses) and
// again in a second (hits).
func TestMemoAndCachesEqualComputingEverything(t *testing.T) {
	h := newHarness(t)
	if privacy.MemoSlots(h.pp.Processor) == 0 {
		t.Fatal("the checked-in policy shares field computations across purposes, but no memo slot was assigned")
	}
	gen := synth.New(7, 40, h.now)
	for s := 0; s < 40; s++ {
		h.grantAll(t, synth.SubjectID(s), consent.GDPR)
	}
	var in []processors.Record
	for i := 0; i < 400; i++ {
		in = append(in, h.record(t, gen.Event(i)))
	}
	w := h.pp.Processor.NewWorker()
	var first, again processors.Batch
	for _, out := range []*processors.Batch{&first, &again} {
		if err := w.Process(context.Background(), in, out); err != nil {
			t.Fatal(err)
		}
		w.Done(true)
	}
	privacy.Plain(h.pp.Processor)
	plain := h.process(t, in...)
	for _, memo := range []*processors.Batch{&first, &again} {
		equalOutputs(t, memo, plain)
	}
}

func equalOutputs(t *testing.T, memo, plain *processors.Batch) {
	t.Helper()
	if memo.Len() != plain.Len() || memo.Len() < 400 {
		t.Fatalf("%d outputs with the memo, %d without", memo.Len(), plain.Len())
	}
	for i := range plain.Outputs {
		a, b := memo.Outputs[i], plain.Outputs[i]
		if a.Topic != b.Topic || a.Input != b.Input || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || len(a.Headers) != len(b.Headers) {
			t.Fatalf("output %d (%s) differs with the memo", i, b.Topic)
		}
		for j := range a.Headers {
			if a.Headers[j].Key != b.Headers[j].Key || !bytes.Equal(a.Headers[j].Value, b.Headers[j].Value) {
				t.Fatalf("output %d header %s differs with the memo", i, b.Headers[j].Key)
			}
		}
	}
}
