package pipelinetest

import (
	"math/rand/v2"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// RandomConsentChanges returns n valid changes of one subject with few
// distinct timestamps (so many ties): choices and subject-level changes,
// jurisdictions (unknown: not given) and GPC values, some from a GPC
// signal. The consent-sync tests apply them through the Lua script and
// through consentlog.Change.ApplyTo and compare.
func RandomConsentChanges(rng *rand.Rand, sub string, n int, t0 time.Time) []consentlog.Change {
	out := make([]consentlog.Change, n)
	for i := range out {
		c := consentlog.Change{SubjectID: sub, Jurisdiction: consent.Jurisdiction(rng.IntN(6)), GPC: consent.GPCValue(rng.IntN(3)),
			Source: consentlog.WebForm, PolicyVersion: "test", Timestamp: t0.Add(time.Duration(rng.IntN(5)) * time.Millisecond),
			ReceiptID: consentlog.NewReceiptID()}
		if rng.IntN(3) == 0 {
			c.Purpose = consentlog.SubjectLevel
			if c.Jurisdiction == consent.Unknown && !c.GPC.Given() {
				c.GPC = consent.GPCValue(1 + rng.IntN(2)) // on or off
			}
		} else {
			c.Purpose, c.State = purpose.All[rng.IntN(purpose.Count)], consent.State(1+rng.IntN(3))
		}
		if c.GPC == consent.GPCOn && rng.IntN(2) == 0 {
			c.Source = consentlog.GPCSignal
		}
		out[i] = c
	}
	return out
}
