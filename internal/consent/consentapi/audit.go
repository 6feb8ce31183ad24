package consentapi

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
)

// importPart is how many changes of a bulk import go in one produce (and
// one audit record).
const importPart = 5000

// changeKind names a change in the audit format.
func changeKind(c *consentlog.Change) string {
	switch {
	case c.IsSubjectLevel() && c.Source == consentlog.GPCSignal:
		return audit.ChangeGPCSignal
	case c.IsSubjectLevel():
		return audit.ChangeProfile
	case c.State == consent.Granted:
		return audit.ChangeGrant
	case c.State == consent.Denied:
		return audit.ChangeDeny
	}
	return audit.ChangeWithdraw
}

// auditChanges returns the audit records of changes accepted together
// (one per change), none without an audit topic.
func (s *Server) auditChanges(now time.Time, who string, changes []consentlog.Change) ([]*kgo.Record, error) {
	if s.cfg.AuditTopic == "" {
		return nil, nil
	}
	recs := make([]*kgo.Record, 0, len(changes))
	for i := range changes {
		c := &changes[i]
		ac := audit.ConsentChange{Change: changeKind(c), Source: string(c.Source), PolicyVersion: c.PolicyVersion,
			Version: c.Timestamp.UnixMilli(), ReceiptID: c.ReceiptID}
		if !c.IsSubjectLevel() {
			ac.Purpose = c.Purpose.String()
		}
		if s.cfg.Marks != nil {
			ac.SubjectRef = s.cfg.Marks.Mark(c.SubjectID)
		}
		rec, err := s.auditRecord(audit.Consent(now, s.cfg.Service, who, ac))
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// auditImport returns the audit record of one produced part of an import:
// its accepted changes by kind, and (in part 1) the rejected lines and
// the changes dropped for erased subjects. It names no subject.
func (s *Server) auditImport(who string, chunk []consentlog.Change, rejected, erased, part, parts int) ([]*kgo.Record, error) {
	if s.cfg.AuditTopic == "" {
		return nil, nil
	}
	im := &audit.ImportCounts{Accepted: len(chunk), Part: part, Parts: parts}
	if part == 1 {
		im.Rejected, im.Erased = rejected, erased
	}
	for i := range chunk {
		if im.Changes == nil {
			im.Changes = map[string]int{}
		}
		im.Changes[changeKind(&chunk[i])]++
	}
	rec, err := s.auditRecord(audit.Consent(s.cfg.Now(), s.cfg.Service, who, audit.ConsentChange{
		Change: audit.ChangeImport, Source: string(consentlog.Import), Import: im}))
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{rec}, nil
}

func (s *Server) auditRecord(r audit.Record) (*kgo.Record, error) {
	v, err := audit.Encode(r)
	if err != nil {
		return nil, fmt.Errorf("consentapi: audit record: %w", err)
	}
	return &kgo.Record{Topic: s.cfg.AuditTopic, Key: r.Key(), Value: v}, nil
}
