package privacy_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/topology"
)

// TestPollOfOnlyBadRecordsIsCurrent is the livelock of issue 10 (defect 1):
// the consent cache is fully invalidated at start (and after every Redis
// reconnect), then a poll holds only records without a decodable subject.
// Such a batch decides nothing on consent, so it must be current; before the
// fix its generation stayed at the value of an earlier batch and the runner
// aborted it forever.
func TestPollOfOnlyBadRecordsIsCurrent(t *testing.T) {
	h := newHarness(t)
	w := h.pp.Processor.NewWorker()
	bad := []processors.Record{{Topic: "raw.customer-events", Value: []byte("not avro")}}
	for round, invalidate := range []func(){
		func() { h.pp.Cache.InvalidateAll() }, // the start-up invalidation
		func() { h.pp.Cache.Invalidate("someone") },
		func() { h.pp.Cache.InvalidateAll() }, // a Redis reconnect
	} {
		invalidate()
		var out processors.Batch
		if err := w.Process(context.Background(), bad, &out); err != nil {
			t.Fatal(err)
		}
		if !w.Current() {
			t.Fatalf("round %d: a batch of only undecodable records is reported outdated", round)
		}
		w.Done(true)
	}
	// A batch with a subject is still outdated when that subject's consent
	// changes after its lookup, and current otherwise.
	h.grantAll(t, "subject-live", consent.GDPR)
	ev := synth.New(1, 10, h.now).EventFor(1, 1)
	ev.SubjectID = "subject-live"
	rec := h.record(t, ev)
	var out processors.Batch
	if err := w.Process(context.Background(), []processors.Record{rec, bad[0]}, &out); err != nil {
		t.Fatal(err)
	}
	if !w.Current() {
		t.Fatal("a batch with no consent change since its lookup is outdated")
	}
	h.pp.Cache.InvalidateAll()
	if w.Current() {
		t.Fatal("a batch whose subject's consent was invalidated after its lookup is current")
	}
	w.Done(false)
}

// TestRecordBiggerThanQuarantineTopicIsAReference is defect 2 of issue 10:
// a bad record larger than the quarantine topic accepts is quarantined as a
// reference (source topic, partition, offset, size, reason, no value)
// instead of its bytes, so producing it cannot fail the transaction; a
// small bad record keeps its bytes.
func TestRecordBiggerThanQuarantineTopicIsAReference(t *testing.T) {
	h := newHarness(t)
	h.pp.Processor.SetLimits(privacy.Limits{Quarantine: 64 << 10})
	big := bytes.Repeat([]byte("x"), 2<<20)
	recs := []processors.Record{
		{Topic: "raw.customer-events", Partition: 2, Offset: 41, Value: big},
		{Topic: "raw.customer-events", Partition: 2, Offset: 42, Value: []byte("small, not avro")},
	}
	out := h.process(t, recs...)
	if out.Len() != 2 {
		t.Fatalf("%d outputs, want 2 quarantine records", out.Len())
	}
	hdr := func(o processors.Output) map[string]string {
		m := map[string]string{}
		for _, hd := range o.Headers {
			m[hd.Key] = string(hd.Value)
		}
		return m
	}
	ref, small := out.Outputs[0], out.Outputs[1]
	if ref.Value != nil || privacy.RecordSize(ref.Key, ref.Value, ref.Headers) > 64<<10 {
		t.Fatalf("the oversized record was quarantined with %d bytes", len(ref.Value))
	}
	if m := hdr(ref); m[privacy.HeaderQuarantineForm] != "reference" || m[privacy.HeaderSourceSize] != "2097152" ||
		m[privacy.HeaderSourceOffset] != "41" || m[privacy.HeaderSourcePartition] != "2" ||
		m[privacy.HeaderSourceTopic] != "raw.customer-events" || m[privacy.HeaderQuarantineReason] != "oversized" {
		t.Fatalf("reference headers %v", m)
	}
	if m := hdr(small); m[privacy.HeaderQuarantineForm] != "bytes" || !bytes.Equal(small.Value, recs[1].Value) {
		t.Fatalf("a small bad record lost its bytes: %v", m)
	}
	snap, _ := metrics.Snapshot(h.reg)
	if snap["pipeline_quarantined_as_reference_total"] != 1 || snap["pipeline_quarantined_total{reason=oversized}"] != 1 {
		t.Fatalf("counters: %v", filter(snap, "pipeline_quarantined"))
	}
}

// TestCleanRecordBiggerThanItsTopicQuarantinesTheEvent: a valid event whose
// clean record would not fit its topic is quarantined (oversized) for every
// purpose, and nothing of it is published: each input ends in one outcome.
func TestCleanRecordBiggerThanItsTopicQuarantinesTheEvent(t *testing.T) {
	h := newHarness(t)
	ev := synth.New(1, 10, h.now).EventFor(1, 1)
	ev.SubjectID = "subject-big"
	h.grantAll(t, ev.SubjectID, consent.GDPR)
	ev.Message = strings.Repeat("long support message ", 400)
	var lim privacy.Limits
	for _, p := range purpose.All {
		lim.Clean[p] = 1 << 20
	}
	lim.Clean[purpose.AITraining] = 2 << 10 // only ai_training's topic is small (the third purpose: analytics was already emitted)
	h.pp.Processor.SetLimits(lim)
	small := synth.New(2, 10, h.now).EventFor(2, 2)
	small.SubjectID = ev.SubjectID
	small.Message = ""
	out := h.process(t, h.record(t, ev), h.record(t, small))
	var clean, quarantined int
	for _, o := range out.Outputs {
		if o.Topic == topology.DefaultNames().Quarantine {
			quarantined++
			if o.Input != 0 {
				t.Fatalf("the small event was quarantined")
			}
			continue
		}
		clean++
		if o.Input == 0 {
			t.Fatalf("part of the oversized event was published to %s", o.Topic)
		}
	}
	if quarantined != 1 || clean != purpose.Count {
		t.Fatalf("%d quarantined, %d clean; want 1 and %d", quarantined, clean, purpose.Count)
	}
	tally, err := privacy.ReadTally(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	tally.EventsIn = 2
	if err := tally.Check(); err != nil {
		t.Fatal(err)
	}
}
