// Package processors defines the tiny interface every stream processor
// implements, and the Kafka-independent record types it works on. Processors
// never import a Kafka client: the runner (internal/stream/runner) moves records
// between Kafka and a processor, so a processor is a pure batch function that
// is easy to test and to reason about.
//
// This package imports only the standard library.
package processors

import (
	"context"
	"time"
)

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one input record. Its byte slices belong to the runner and are
// valid only during Process.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Output is one record to publish.
type Output struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
	// Input is the index, in the processed batch, of the input it came from.
	Input int
}

// Processor is a named factory of workers.
type Processor interface {
	// Name identifies the processor (consumer group suffix, metrics, audit).
	Name() string
	// NewWorker returns a worker with its own reusable state. The runner
	// makes one per goroutine; a worker is never used concurrently.
	NewWorker() Worker
}

// Worker turns a batch of input records into outputs. Every input must end
// as outputs, a counted denial, or a quarantine output: nothing is lost
// silently. An error means the whole batch was not processed (for example
// the context ended while waiting for a dependency) and must be retried.
type Worker interface {
	Process(ctx context.Context, in []Record, out *Batch) error
	// Done tells the worker whether the outputs of its last Process were
	// committed (true) or discarded (false: the transaction aborted and the
	// inputs will be processed again). Counts that must be exactly once,
	// such as the accounting metrics, are recorded here, not in Process.
	Done(committed bool)
	// Current reports whether the outputs of the last Process are still
	// right to publish. The runner asks just before committing; false (for
	// example: a subject of the batch withdrew consent after its decision)
	// aborts the transaction, and the batch is processed again.
	Current() bool
}

// Batch collects the outputs of one processed batch. Keys, values and
// header values added to it are copied into an arena owned by the batch and
// stay valid until Reset, so the runner can hand them to a producer without
// copying again.
type Batch struct {
	Outputs []Output
	// Checkpoints are the state checkpoints of a stateful worker, written to
	// its state topic in the batch's transaction.
	Checkpoints []Checkpoint
	chunks      [][]byte
	cur         int
	headers     []Header
	// Streaming (Stream, Ready): sink receives the final outputs, at
	// least every outputs at a time; streamed of them were handed over.
	sink     func([]Output)
	every    int
	streamed int
}

const chunkSize = 256 << 10

// Reset empties the batch, keeping its memory for reuse. Byte slices
// previously returned by it become invalid.
func (b *Batch) Reset() {
	clear(b.Outputs) // drop references so a reused batch holds no old data
	b.Outputs = b.Outputs[:0]
	clear(b.Checkpoints)
	b.Checkpoints = b.Checkpoints[:0]
	for i := range b.chunks {
		b.chunks[i] = b.chunks[i][:0]
	}
	b.cur = 0
	b.headers = b.headers[:0]
	b.streamed = 0
}

// Stream makes Ready hand the batch's final outputs to sink, every at a
// time or more, while the worker is still processing: the runner sets it
// for the duration of a Process call so that the producer sends the first
// outputs while the worker computes the next (nil: no streaming). The
// outputs handed over stay valid until Reset, as every output does; sink
// must not keep the slice itself.
func (b *Batch) Stream(sink func([]Output), every int) {
	b.sink, b.every = sink, max(every, 1)
}

// Ready marks every output added so far as final: the worker will not
// withdraw or change them (a worker that may drop an event's outputs
// again calls it between events). When the runner streams the batch they
// may be produced now, before Process returns; a worker that never calls
// it has its outputs produced after Process, as before. Outputs produced
// early are still in the batch's transaction: a failing Process, a stale
// decision or any abort discards them for read_committed consumers.
func (b *Batch) Ready() {
	if b.sink != nil && len(b.Outputs)-b.streamed >= b.every {
		b.sink(b.Outputs[b.streamed:])
		b.streamed = len(b.Outputs)
	}
}

// Sink returns the sink and the count Stream set (nil when the batch is
// not streamed): a worker that wraps another's can put its own sink in
// front of the runner's and restore it after.
func (b *Batch) Sink() (func([]Output), int) { return b.sink, b.every }

// Streamed returns how many of the outputs Ready handed over: the runner
// produces the rest (and redoes a stale batch only when none was).
func (b *Batch) Streamed() int { return b.streamed }

// Copy copies p into the batch's arena and returns the copy.
func (b *Batch) Copy(p []byte) []byte {
	if p == nil {
		return nil
	}
	dst := b.alloc(len(p))
	copy(dst, p)
	return dst
}

func (b *Batch) alloc(n int) []byte {
	for {
		if b.cur == len(b.chunks) {
			size := chunkSize
			if n > size {
				size = n
			}
			b.chunks = append(b.chunks, make([]byte, 0, size))
		}
		c := b.chunks[b.cur]
		if cap(c)-len(c) >= n {
			start := len(c)
			b.chunks[b.cur] = c[:start+n]
			return c[start : start+n : start+n]
		}
		b.cur++
	}
}

// Add appends an output, copying key, value and header values into the
// arena. Header keys are expected to be constants and are not copied.
func (b *Batch) Add(input int, topic string, key, value []byte, headers ...Header) {
	start := len(b.headers)
	for _, h := range headers {
		b.headers = append(b.headers, Header{Key: h.Key, Value: b.Copy(h.Value)})
	}
	b.Outputs = append(b.Outputs, Output{
		Topic: topic, Key: b.Copy(key), Value: b.Copy(value),
		Headers: b.headers[start:len(b.headers):len(b.headers)], Input: input,
	})
}

// Len returns the number of outputs.
func (b *Batch) Len() int { return len(b.Outputs) }

// Checkpoint is a stateful worker's saved state for one input partition. The
// runner writes it to the processor's state topic in the same transaction as
// the batch's outputs and consumed offsets, so state, outputs and offsets
// always agree after a crash, a restart or a rebalance.
type Checkpoint struct {
	// Partition is the input partition the state belongs to.
	Partition int32
	// Next is the offset after the last input record the state includes.
	Next int64
	// ReplayFrom is the first input offset the worker must read again to
	// rebuild its state (state that refers to input records instead of
	// copying them); equal to Next when nothing needs replaying.
	ReplayFrom int64
	// State is the worker's own encoding of its state.
	State []byte
}

// StateStore gives a stateful worker its committed checkpoints and the input
// records it needs to replay. The runner provides it.
type StateStore interface {
	// Latest returns the last committed checkpoint of an input partition;
	// ok is false if it has none.
	Latest(ctx context.Context, partition int32) (cp Checkpoint, ok bool, err error)
	// Replay calls fn, in order, for every committed input record of the
	// partition with an offset in [from, to).
	Replay(ctx context.Context, partition int32, from, to int64, fn func(Record) error) error
}

// Stateful is implemented by processors whose workers keep state per input
// partition (windows, open clusters) that must survive restarts and
// rebalances.
type Stateful interface {
	Processor
	// StateTopic names the compacted topic that holds the checkpoints.
	StateTopic() string
	// UseStore hands the processor its store; the runner calls it before
	// NewWorker.
	UseStore(StateStore)
}

// StatefulWorker is a worker of a Stateful processor.
type StatefulWorker interface {
	Worker
	// Forget drops the in-memory state of an input partition (it was
	// revoked, or the session restarted); AllPartitions drops every one.
	// The next record of the partition restores it from the store.
	Forget(partition int32)
}

// AllPartitions is the Forget argument that means every partition.
const AllPartitions int32 = -1

// AddCheckpoint records a checkpoint to write with the batch; its state is
// copied into the batch's arena.
func (b *Batch) AddCheckpoint(cp Checkpoint) {
	cp.State = b.Copy(cp.State)
	b.Checkpoints = append(b.Checkpoints, cp)
}

// Ticker is implemented by workers that act on the passage of time, such as
// closing the windows of an idle partition. When no record arrives for a
// while, the runner calls Tick in a transaction of its own with the input
// partitions this worker owns that are idle and caught up - none of them
// still has records to deliver, so a backlog is always read before time
// acts on it (a stateful worker restores any it has not loaded yet) - and
// publishes what it adds to out; Done follows as for Process.
type Ticker interface {
	Tick(ctx context.Context, now time.Time, partitions []int32, out *Batch) error
}
