package consent

import (
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

func rec(j Jurisdiction, gpc bool, states map[purpose.Purpose]State) *Record {
	r := &Record{Jurisdiction: j, GPC: gpc}
	for p, s := range states {
		r.Purposes[p] = PurposeState{State: s, UpdatedMs: 1000}
	}
	return r
}

func TestDecide(t *testing.T) {
	A, M, T3 := purpose.Analytics, purpose.Marketing, purpose.ThirdPartySharing
	optIn := []Jurisdiction{GDPR, UKGDPR, PDPA, VNDecree13, Unknown}
	type tc struct {
		name     string
		rec      *Record
		evJur    Jurisdiction
		gpc      bool
		p        purpose.Purpose
		allowed  bool
		explicit bool
		reason   Reason
	}
	var cases []tc
	for _, j := range optIn {
		cases = append(cases,
			tc{"granted/" + j.String(), rec(j, false, map[purpose.Purpose]State{A: Granted}), j, false, A, true, true, ReasonGranted},
			tc{"denied/" + j.String(), rec(j, false, map[purpose.Purpose]State{A: Denied}), j, false, A, false, false, ReasonDenied},
			tc{"withdrawn/" + j.String(), rec(j, false, map[purpose.Purpose]State{A: Withdrawn}), j, false, A, false, false, ReasonWithdrawn},
			tc{"no choice/" + j.String(), rec(j, false, nil), j, false, A, false, false, ReasonNoConsent},
			tc{"unknown subject/" + j.String(), nil, j, false, A, false, false, ReasonUnknownSubject},
			tc{"gpc with grant, marketing/" + j.String(), rec(j, false, map[purpose.Purpose]State{M: Granted}), j, true, M, false, false, ReasonGPCOptOut},
			tc{"gpc, analytics granted/" + j.String(), rec(j, false, map[purpose.Purpose]State{A: Granted}), j, true, A, true, true, ReasonGranted},
		)
	}
	cases = append(cases,
		tc{"ccpa default allows", rec(CCPA, false, nil), CCPA, false, A, true, false, ReasonDefaultAllowed},
		tc{"recorded ccpa, event claims nothing", rec(CCPA, false, nil), Unknown, false, A, true, false, ReasonDefaultAllowed},
		tc{"jurisdiction-only ccpa record allows by default", &Record{Jurisdiction: CCPA}, CCPA, false, A, true, false, ReasonDefaultAllowed},
		tc{"ccpa unknown subject is denied", nil, CCPA, false, A, false, false, ReasonUnknownSubject},
		tc{"ccpa opt-out denies", rec(CCPA, false, map[purpose.Purpose]State{T3: Denied}), CCPA, false, T3, false, false, ReasonDenied},
		tc{"ccpa gpc on event denies marketing", rec(CCPA, false, nil), CCPA, true, M, false, false, ReasonGPCOptOut},
		tc{"ccpa gpc on event, unknown subject", nil, CCPA, true, M, false, false, ReasonUnknownSubject},
		tc{"ccpa gpc recorded denies sharing", rec(CCPA, true, nil), CCPA, false, T3, false, false, ReasonGPCOptOut},
		tc{"ccpa gpc leaves analytics", rec(CCPA, true, nil), CCPA, false, A, true, false, ReasonDefaultAllowed},
		tc{"ccpa grant is explicit", rec(CCPA, false, map[purpose.Purpose]State{A: Granted}), CCPA, false, A, true, true, ReasonGranted},
		tc{"ccpa withdrawn denies", rec(CCPA, false, map[purpose.Purpose]State{A: Withdrawn}), CCPA, false, A, false, false, ReasonWithdrawn},
		tc{"recorded gdpr wins over event ccpa", rec(GDPR, false, nil), CCPA, false, A, false, false, ReasonNoConsent},
		tc{"unknown recorded jurisdiction: event ccpa cannot loosen", rec(Unknown, false, nil), CCPA, false, A, false, false, ReasonNoConsent},
		tc{"recorded ccpa, event gdpr tightens", rec(CCPA, false, nil), GDPR, false, A, false, false, ReasonNoConsent},
		tc{"recorded ccpa, event vn_decree13 tightens", rec(CCPA, false, nil), VNDecree13, false, A, false, false, ReasonNoConsent},
		tc{"recorded ccpa, event gdpr, explicit grant still allows", rec(CCPA, false, map[purpose.Purpose]State{A: Granted}), GDPR, false, A, true, true, ReasonGranted},
		tc{"invalid purpose denies", rec(CCPA, false, nil), CCPA, false, purpose.Purpose(99), false, false, ReasonNoConsent},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.rec, c.evJur, c.gpc, c.p)
			if d.Allowed != c.allowed || d.Explicit != c.explicit || d.Reason != c.reason {
				t.Fatalf("got %+v (reason %s), want allowed=%v explicit=%v reason=%s", d, d.Reason, c.allowed, c.explicit, c.reason)
			}
		})
	}
}

// TestEventJurisdictionNeverLoosens is the attack of issue 10 (defect 4):
// a hostile or careless producer writes "ccpa" on events of subjects who
// have no stored record, or whose record says an opt-in regime, to opt them
// out of consent. For every stored state and every claim, the decision
// under the claim may never allow more than the decision without it.
func TestEventJurisdictionNeverLoosens(t *testing.T) {
	all := []Jurisdiction{Unknown, GDPR, UKGDPR, PDPA, VNDecree13, CCPA}
	states := []State{Unset, Granted, Denied, Withdrawn}
	var recs []*Record
	recs = append(recs, nil)
	for _, j := range all {
		for _, g := range []bool{false, true} {
			for _, st := range states {
				r := &Record{Jurisdiction: j, GPC: g}
				for _, p := range purpose.All {
					r.Purposes[p] = PurposeState{State: st, UpdatedMs: 1}
				}
				recs = append(recs, r)
			}
		}
	}
	for _, r := range recs {
		for _, p := range purpose.All {
			base := Decide(r, Unknown, false, p)
			for _, claim := range all {
				for _, gpc := range []bool{false, true} {
					d := Decide(r, claim, gpc, p)
					if d.Allowed && !base.Allowed {
						t.Fatalf("record %+v, purpose %s: the event's claim %s (gpc %v) loosened %s into %s", r, p, claim, gpc, base.Reason, d.Reason)
					}
					if d.Explicit && !base.Explicit {
						t.Fatalf("record %+v, purpose %s: the event's claim made consent explicit", r, p)
					}
				}
			}
			if r == nil && base.Allowed {
				t.Fatalf("a subject with no stored record was allowed for %s", p)
			}
		}
	}
}

func TestGPCSource(t *testing.T) {
	M := purpose.Marketing
	for _, c := range []struct {
		rec   bool
		event bool
		want  GPCSource
	}{{false, true, GPCEvent}, {true, false, GPCRecord}, {true, true, GPCBoth}, {false, false, GPCNone}} {
		d := Decide(&Record{Jurisdiction: CCPA, GPC: c.rec}, CCPA, c.event, M)
		if d.GPC != c.want {
			t.Fatalf("record gpc %v, event gpc %v: source %s, want %s", c.rec, c.event, d.GPC, c.want)
		}
		if d.Allowed == (c.want != GPCNone) {
			t.Fatalf("record gpc %v, event gpc %v: %+v", c.rec, c.event, d)
		}
	}
	if d := Decide(&Record{Jurisdiction: CCPA, GPC: true}, CCPA, true, purpose.Analytics); d.GPC != GPCNone {
		t.Fatalf("GPC counted on analytics, which it does not decide: %+v", d)
	}
}

func TestCorruptLookupDeniesEverything(t *testing.T) {
	l := Lookup{Found: true, Corrupt: true}
	for _, p := range purpose.All {
		if d := l.Decide(CCPA, false, p); d.Allowed || d.Reason != ReasonUnreadable {
			t.Fatalf("%s: %+v", p, d)
		}
	}
}

func TestApplyKeepsNewest(t *testing.T) {
	var r Record
	if !r.Apply(purpose.Analytics, Granted, GDPR, 2000) {
		t.Fatal("first change not applied")
	}
	if r.Apply(purpose.Analytics, Withdrawn, GDPR, 1000) {
		t.Fatal("older change overwrote newer")
	}
	if r.Apply(purpose.Analytics, Granted, GDPR, 2000) {
		t.Fatal("same-timestamp replay applied")
	}
	if !r.Apply(purpose.Analytics, Withdrawn, GDPR, 3000) || r.Purposes[purpose.Analytics].State != Withdrawn || r.Version != 3000 {
		t.Fatalf("newer change not applied: %+v", r)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	r := rec(VNDecree13, true, map[purpose.Purpose]State{purpose.Analytics: Granted, purpose.Marketing: Withdrawn, purpose.AITraining: Denied})
	r.Version = 1732356000123
	enc := string(AppendEncoded(nil, r))
	var got Record
	if err := Decode(enc, &got); err != nil {
		t.Fatal(err)
	}
	if got != *r {
		t.Fatalf("round trip: got %+v want %+v", got, *r)
	}
	for _, bad := range []string{"", "2|gdpr|0|1|-:0|-:0|-:0|-:0|-:0", "1|mars|0|1|-:0|-:0|-:0|-:0|-:0", "1|gdpr|0|1|-:0", "1|gdpr|0|1|x:0|-:0|-:0|-:0|-:0", enc + "|extra"} {
		if err := Decode(bad, &got); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(string(AppendEncoded(nil, rec(GDPR, false, map[purpose.Purpose]State{purpose.Analytics: Granted}))))
	f.Add("1|ccpa|1|5|g:1|d:2|w:3|-:0|g:9")
	f.Add("1||||")
	f.Fuzz(func(t *testing.T, s string) {
		var r Record
		if err := Decode(s, &r); err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes identically.
		var r2 Record
		if err := Decode(string(AppendEncoded(nil, &r)), &r2); err != nil || r2 != r {
			t.Fatalf("re-encode mismatch: %v %+v %+v", err, r, r2)
		}
	})
}
