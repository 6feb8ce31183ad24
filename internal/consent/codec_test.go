package consent

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

func TestCodecV2RoundTripWithSlotTimes(t *testing.T) {
	r := Record{Jurisdiction: CCPA, JurisdictionMs: 1700000000001, GPC: true, GPCMs: 1700000000002, Version: 1700000000009}
	r.Purposes[purpose.Marketing] = PurposeState{State: Withdrawn, UpdatedMs: 1700000000009}
	enc := string(AppendEncoded(nil, &r))
	if want := "2|ccpa|1700000000001|1|1700000000002|1700000000009|-:0|-:0|-:0|w:1700000000009|-:0"; enc != want {
		t.Fatalf("encoded %q, want %q", enc, want)
	}
	var got Record
	if err := Decode(enc, &got); err != nil || got != r {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	// A jurisdiction-only record: the subject is known, no purpose is set.
	j := Record{Jurisdiction: CCPA, JurisdictionMs: 5, Version: 5}
	if err := Decode(string(AppendEncoded(nil, &j)), &got); err != nil || got != j {
		t.Fatalf("jurisdiction-only: %v %+v", err, got)
	}
}

func TestDecodeV1(t *testing.T) {
	var got Record
	if err := Decode("1|ccpa|1|1700000000005|g:1700000000001|-:0|d:1700000000005|-:0|w:1700000000003", &got); err != nil {
		t.Fatal(err)
	}
	want := Record{Jurisdiction: CCPA, JurisdictionMs: 1700000000005, GPC: true, GPCMs: 1700000000005, Version: 1700000000005}
	want.Purposes[purpose.Analytics] = PurposeState{Granted, 1700000000001}
	want.Purposes[purpose.AITraining] = PurposeState{Denied, 1700000000005}
	want.Purposes[purpose.ThirdPartySharing] = PurposeState{Withdrawn, 1700000000003}
	if got != want {
		t.Fatalf("v1: got %+v\nwant %+v", got, want)
	}
	// Unset jurisdiction and GPC keep slot time 0: any change sets them.
	if err := Decode("1|unknown|0|7|g:7|-:0|-:0|-:0|-:0", &got); err != nil || got.JurisdictionMs != 0 || got.GPCMs != 0 || got.Version != 7 {
		t.Fatalf("v1 unset slots: %v %+v", err, got)
	}
	// Re-encoded, a v1 record is a v2 record that decodes to the same.
	var again Record
	if err := Decode(string(AppendEncoded(nil, &got)), &again); err != nil || again != got {
		t.Fatalf("v1 to v2: %v %+v", err, again)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := "2|gdpr|1|0|0|1|-:0|-:0|-:0|-:0|-:0"
	var r Record
	if err := Decode(good, &r); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"", "3|gdpr|1|0|0|1|-:0|-:0|-:0|-:0|-:0", "2|gdpr|0|1|-:0|-:0|-:0|-:0|-:0", "2|gdpr|x|0|0|1|-:0|-:0|-:0|-:0|-:0",
		"2|gdpr|1|2|0|1|-:0|-:0|-:0|-:0|-:0", "2|gdpr|1|0|y|1|-:0|-:0|-:0|-:0|-:0", "2|mars|1|0|0|1|-:0|-:0|-:0|-:0|-:0",
		"2|gdpr|1|0|0|1|-:0|-:0|-:0|-:0", "2|gdpr|1|0|0|1|-:0|-:0|-:0|-:0|q:0", good + "|", good + "|-:0",
		"1|gdpr|0|1|-:0|-:0|-:0|-:0|-:0|-:0", strings.Repeat("|", 20), "2|||||||||||",
	} {
		if err := Decode(bad, &r); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func TestApplyJurisdictionIsNewerWinsOnItsOwn(t *testing.T) {
	var r Record
	// A per-purpose change older than the purpose's state still records
	// its jurisdiction when that is newer than the recorded one.
	r.Apply(purpose.Analytics, Granted, Unknown, 2000)
	if !r.Apply(purpose.Analytics, Denied, CCPA, 1000) || r.Jurisdiction != CCPA || r.JurisdictionMs != 1000 || r.Purposes[purpose.Analytics].State != Granted {
		t.Fatalf("%+v", r)
	}
	if r.Apply(purpose.Marketing, Granted, GDPR, 3000); r.Jurisdiction != GDPR || r.Version != 3000 {
		t.Fatalf("newer jurisdiction: %+v", r)
	}
	if r.ApplyProfile(CCPA, GPCNotGiven, 2500) || r.Jurisdiction != GDPR {
		t.Fatalf("an older profile replaced the jurisdiction: %+v", r)
	}
	if r.ApplyProfile(Unknown, GPCNotGiven, 9000) {
		t.Fatal("a profile with nothing in it changed the record")
	}
}

func TestApplyProfileGPC(t *testing.T) {
	var r Record
	if !r.ApplyProfile(Unknown, GPCOn, 1000) || !r.GPC || r.GPCMs != 1000 || r.Version != 1000 {
		t.Fatalf("gpc on: %+v", r)
	}
	if r.ApplyProfile(Unknown, GPCOff, 900) || !r.GPC {
		t.Fatal("an older off cleared the signal")
	}
	if r.ApplyProfile(Unknown, GPCOff, 1000) || !r.GPC {
		t.Fatal("a tie went to off")
	}
	if !r.ApplyProfile(CCPA, GPCOff, 2000) || r.GPC || r.GPCMs != 2000 || r.Jurisdiction != CCPA {
		t.Fatalf("newer off: %+v", r)
	}
	if !r.ApplyProfile(Unknown, GPCOn, 2000) || !r.GPC {
		t.Fatal("a tie did not go to on")
	}
	if r.ApplyProfile(Unknown, GPCOn, 2000) {
		t.Fatal("a replay changed the record")
	}
}

// TestApplyOrderIndependent applies random changes (with many timestamp
// ties) in random orders: every order gives the same record.
func TestApplyOrderIndependent(t *testing.T) {
	type change struct {
		profile bool
		p       purpose.Purpose
		st      State
		jur     Jurisdiction
		gpc     GPCValue
		at      int64
	}
	rng := rand.New(rand.NewPCG(1, 2))
	apply := func(r *Record, c change) {
		if c.profile {
			r.ApplyProfile(c.jur, c.gpc, c.at)
			return
		}
		r.Apply(c.p, c.st, c.jur, c.at)
		r.ApplyProfile(Unknown, c.gpc, c.at)
	}
	for round := 0; round < 300; round++ {
		changes := make([]change, 1+rng.IntN(30))
		for i := range changes {
			changes[i] = change{profile: rng.IntN(3) == 0, p: purpose.All[rng.IntN(purpose.Count)], st: State(1 + rng.IntN(3)),
				jur: Jurisdiction(rng.IntN(int(numJurisdictions))), gpc: GPCValue(rng.IntN(3)), at: int64(1 + rng.IntN(6))}
		}
		var want Record
		for _, c := range changes {
			apply(&want, c)
		}
		for k := 0; k < 5; k++ {
			rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
			var got Record
			for _, c := range changes {
				apply(&got, c)
			}
			// Replaying everything again changes nothing.
			for _, c := range changes {
				apply(&got, c)
			}
			if got != want {
				t.Fatalf("round %d: order changed the result:\n got %+v\nwant %+v", round, got, want)
			}
		}
	}
}

// FuzzDecodeVersions starts from records of both versions: Decode never
// panics, and whatever decodes re-encodes (as version 2) to the same.
func FuzzDecodeVersions(f *testing.F) {
	f.Add("2|ccpa|5|1|6|9|g:1|d:2|w:3|-:0|g:9")
	f.Add("2|unknown|0|0|0|0|-:0|-:0|-:0|-:0|-:0")
	f.Add("1|pdpa|1|5|g:1|d:2|w:3|-:0|g:9")
	f.Fuzz(func(t *testing.T, s string) {
		var r Record
		if err := Decode(s, &r); err != nil {
			return
		}
		var r2 Record
		if err := Decode(string(AppendEncoded(nil, &r)), &r2); err != nil || r2 != r {
			t.Fatalf("re-encode mismatch: %v %+v %+v", err, r, r2)
		}
	})
}
