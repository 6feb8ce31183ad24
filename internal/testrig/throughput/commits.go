package throughput

import (
	"sync"
	"time"

	"github.com/privacy-pipeline/pipeline/processors"
)

// commits counts the records the runners committed, per output topic, over
// the whole bench (the k-anonymity runs read everything the job wrote so
// far); unlike the topics' end offsets it leaves out aborted transactions
// and the transaction markers.
type commits struct {
	mu  sync.Mutex
	per map[string]int64
}

// hook returns a runner.Config.OnCommit that counts, then calls next
// (when set).
func (c *commits) hook(next func([]processors.Output, time.Time)) func([]processors.Output, time.Time) {
	return func(outs []processors.Output, at time.Time) {
		c.mu.Lock()
		if c.per == nil {
			c.per = map[string]int64{}
		}
		for i := range outs {
			c.per[outs[i].Topic]++
		}
		c.mu.Unlock()
		if next != nil {
			next(outs, at)
		}
	}
}

// topic returns the records committed to a topic so far.
func (c *commits) topic(t string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.per[t]
}

// total returns the records committed to the topics so far.
func (c *commits) total(ts ...string) int64 {
	var n int64
	for _, t := range ts {
		n += c.topic(t)
	}
	return n
}
