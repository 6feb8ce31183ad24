package runner

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/statestore"
	"github.com/privacy-pipeline/pipeline/processors"
)

// StreamEvery is how many final outputs a worker accumulates before the
// runner produces them while the worker goes on processing
// (processors.Batch.Ready): small enough that the producer starts early,
// large enough that handing them over costs nothing per record.
const StreamEvery = 256

// arenaChunk is the number of records in one chunk of a recArena.
const arenaChunk = 1024

// outputs produces one transaction's outputs: those the workers stream
// while they process (processors.Batch.Ready, from their goroutines) and
// the rest after them, then waits for every record's outcome. The
// kgo.Records live in a per-worker arena of fixed chunks, reused from
// transaction to transaction: the producer holds pointers to them until
// their promises fire, so they never move.
type outputs struct {
	ctx    context.Context
	sess   *kgo.GroupTransactSession
	state  func() string // the state topic of checkpoints
	wg     sync.WaitGroup
	err    atomic.Pointer[error]
	done   func(*kgo.Record, error)
	arenas []recArena // one per worker
	sinks  []func([]processors.Output)
}

func newOutputs(ctx context.Context, sess *kgo.GroupTransactSession, workers int, state func() string) *outputs {
	o := &outputs{ctx: ctx, sess: sess, state: state, arenas: make([]recArena, workers)}
	o.done = func(_ *kgo.Record, err error) {
		if err != nil {
			o.err.CompareAndSwap(nil, &err)
		}
		o.wg.Done()
	}
	for i := range o.arenas {
		o.sinks = append(o.sinks, func(outs []processors.Output) { o.produce(i, outs) })
	}
	return o
}

// produce produces outs in the open transaction from worker i's arena.
func (o *outputs) produce(i int, outs []processors.Output) {
	a := &o.arenas[i]
	o.wg.Add(len(outs))
	for _, out := range outs {
		rec := a.record()
		hs := a.headers(len(out.Headers))
		for j, h := range out.Headers {
			hs[j] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
		*rec = kgo.Record{Topic: out.Topic, Key: out.Key, Value: out.Value, Headers: hs}
		o.sess.Produce(o.ctx, rec, o.done)
	}
}

// rest produces what the workers did not stream: the outputs after the
// last Ready, and the checkpoints.
func (o *outputs) rest(batches []processors.Batch) {
	for i := range batches {
		b := &batches[i]
		o.produce(i, b.Outputs[b.Streamed():])
		a := &o.arenas[i]
		o.wg.Add(len(b.Checkpoints))
		for _, cp := range b.Checkpoints {
			rec := a.record()
			*rec = kgo.Record{Topic: o.state(), Partition: cp.Partition,
				Key: statestore.Key(cp.Partition), Value: statestore.AppendEncode(nil, cp)}
			o.sess.Produce(o.ctx, rec, o.done)
		}
	}
}

// wait waits until every record produced in the transaction has its
// outcome, returns the first failure, and resets the arenas for the next
// transaction. It is called once per transaction, also when it aborts
// (the aborted records' promises fire too).
func (o *outputs) wait() error {
	// Flush sends what the producer still lingers over at once: the
	// batch is complete, nothing more will join those records.
	_ = o.sess.Client().Flush(o.ctx) // on an error (the context ended) the promises still fire
	o.wg.Wait()
	for i := range o.arenas {
		o.arenas[i].reset()
	}
	if p := o.err.Swap(nil); p != nil {
		return fmt.Errorf("runner: produce: %w", *p)
	}
	return nil
}

// recArena hands out kgo.Records and header slices from fixed chunks.
type recArena struct {
	recs [][]kgo.Record
	hdrs [][]kgo.RecordHeader
	ri   int // chunk in use; its length is the records handed out
	hi   int
}

func (a *recArena) record() *kgo.Record {
	for {
		if a.ri == len(a.recs) {
			a.recs = append(a.recs, make([]kgo.Record, 0, arenaChunk))
		}
		c := a.recs[a.ri]
		if len(c) < cap(c) {
			a.recs[a.ri] = c[:len(c)+1]
			return &a.recs[a.ri][len(c)]
		}
		a.ri++
	}
}

func (a *recArena) headers(n int) []kgo.RecordHeader {
	if n == 0 {
		return nil
	}
	for {
		if a.hi == len(a.hdrs) {
			a.hdrs = append(a.hdrs, make([]kgo.RecordHeader, 0, max(n, 4*arenaChunk)))
		}
		c := a.hdrs[a.hi]
		if cap(c)-len(c) >= n {
			a.hdrs[a.hi] = c[:len(c)+n]
			return c[len(c) : len(c)+n : len(c)+n]
		}
		a.hi++
	}
}

// reset drops the references to the last transaction's bytes and makes
// every chunk free again.
func (a *recArena) reset() {
	for i := range a.recs {
		clear(a.recs[i])
		a.recs[i] = a.recs[i][:0]
	}
	for i := range a.hdrs {
		clear(a.hdrs[i])
		a.hdrs[i] = a.hdrs[i][:0]
	}
	a.ri, a.hi = 0, 0
}
