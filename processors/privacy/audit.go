package privacy

import (
	"fmt"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/codec/eventcodec"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/processors"
)

// The batch's audit record (SPEC 3.9, internal/audit): one per processed
// batch, added to the batch's outputs so that it commits, or aborts, with
// the outputs it summarises and the consumed offsets (a redone batch
// writes its own; an aborted one leaves none visible to read_committed).
// It is made from the batch's tally (Counts: fixed arrays per purpose and
// reason, filled on the hot path without allocating) and the consent
// lookups, once per batch, into buffers the worker keeps: nothing per
// event, and no allocation once the buffers have grown. It carries no
// subject, pseudonym or field value.

// auditBatch is a worker's reusable audit record buffers.
type auditBatch struct {
	counts audit.BatchCounts
	buf    []byte
}

// The names the record uses, resolved once.
var (
	auditKey          = []byte(Name)
	auditPurposeNames = func() (n [purpose.Count]string) {
		for _, p := range purpose.All {
			n[p] = p.String()
		}
		return
	}()
	auditDenialReasons = consent.DenialReasons()
	auditQuarantine    = func() (n [len(Counts{}.Quarantined)]string) {
		for _, r := range eventcodec.QuarantineReasons() {
			if int(r) < len(n) {
				n[r] = r.String()
			}
		}
		return
	}()
)

// checkAudit refuses, at start, a policy whose version the audit records
// cannot carry (every batch record would be refused by its readers).
func checkAudit(cfg Config) error {
	if cfg.Topics.Audit != "" && !audit.ValidVersion(cfg.Policy.Version) {
		return fmt.Errorf("privacy: the policy version must be 1-%d bytes for the audit records", audit.MaxVersionLen)
	}
	return nil
}

// addAudit adds the batch's audit record to out (when the audit topic is
// configured). Its Input is the batch's last record: the record covers
// the whole batch, whose offsets end there (the index is in range for
// whatever reads it; the runner itself does not).
func (w *Worker) addAudit(in []processors.Record, out *processors.Batch) {
	topic := w.p.cfg.Topics.Audit
	if topic == "" || len(in) == 0 {
		return
	}
	c := &w.audit.counts
	c.Reset()
	for i := range in {
		c.Note(in[i].Topic, in[i].Partition, in[i].Offset)
	}
	c.Events, c.PolicyVersion, c.Unclassified = len(in), w.p.cfg.Policy.Version, w.counts.Unclassified
	for k := range w.lookups {
		lk := &w.lookups[k]
		if !lk.Found || lk.Corrupt {
			continue
		}
		v := lk.Record.Version
		if !c.HasConsent {
			c.HasConsent, c.ConsentMin, c.ConsentMax = true, v, v
		}
		c.ConsentMin, c.ConsentMax = min(c.ConsentMin, v), max(c.ConsentMax, v)
	}
	for _, pur := range purpose.All {
		pt := c.AddPurpose(auditPurposeNames[pur], w.counts.Published[pur], w.counts.Sensitive[pur])
		for _, r := range auditDenialReasons {
			if n := w.counts.Denied[pur][r]; n > 0 {
				pt.Denied = append(pt.Denied, audit.Count{Name: r.String(), N: n})
			}
		}
	}
	for r, n := range w.counts.Quarantined {
		if n > 0 && auditQuarantine[r] != "" {
			c.Quarantined = append(c.Quarantined, audit.Count{Name: auditQuarantine[r], N: n})
		}
	}
	w.audit.buf = audit.AppendBatch(w.audit.buf[:0], time.Now(), Name, c)
	out.Add(len(in)-1, topic, auditKey, w.audit.buf, processors.Header{Key: processors.HeaderProcessor, Value: processorName})
}
