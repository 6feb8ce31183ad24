package consentstring

import (
	"errors"
	"strings"
	"testing"
	"time"

	gpp "github.com/prebid/go-gpp"
	gppconst "github.com/prebid/go-gpp/constants"
	"github.com/prebid/go-gpp/sections"
	"github.com/prebid/go-gpp/sections/uspca"
	"github.com/prebid/go-gpp/sections/uspnat"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/tcfstring"
	"github.com/privacy-pipeline/pipeline/schemas"
)

func mapping(t testing.TB) *Mapping {
	t.Helper()
	m, err := Load(schemas.ConsentStringsJSON())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func states(r Result) map[string]string {
	out := map[string]string{}
	for _, p := range purpose.All {
		if r.States[p] != consent.Unset {
			out[p.String()] = r.States[p].String()
		}
	}
	return out
}

// TestCheckedInMappingIsValid: the mapping the product ships loads, and
// maps every purpose of the policy.
func TestCheckedInMappingIsValid(t *testing.T) {
	m := mapping(t)
	for _, p := range purpose.All {
		if _, ok := m.TCF.Purposes[p.String()]; !ok {
			t.Errorf("the TCF mapping leaves %s out", p)
		}
	}
}

// TestMappingRefused: a mapping that names an unknown purpose, opt-out or
// field, a TCF purpose outside 1-11 or twice, or accepts TC strings older
// than TCF v2.2 does not load.
func TestMappingRefused(t *testing.T) {
	base := `"version":"v1","tcf":{"min_policy_version":4,"purposes":{"analytics":[1,8]}},"gpp":{"us_opt_outs":{"sale":["marketing"]},"gpc":true}`
	if _, err := Load([]byte("{" + base + "}")); err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"unknown purpose":  strings.Replace(base, `"analytics"`, `"advertising"`, 1),
		"TCF purpose 12":   strings.Replace(base, `[1,8]`, `[1,12]`, 1),
		"TCF purpose 0":    strings.Replace(base, `[1,8]`, `[0]`, 1),
		"twice":            strings.Replace(base, `[1,8]`, `[8,8]`, 1),
		"empty":            strings.Replace(base, `[1,8]`, `[]`, 1),
		"pre-2.2 strings":  strings.Replace(base, `"min_policy_version":4`, `"min_policy_version":2`, 1),
		"unknown opt-out":  strings.Replace(base, `"sale"`, `"profiling"`, 1),
		"opt-out purpose":  strings.Replace(base, `["marketing"]`, `["ads"]`, 1),
		"unknown field":    base + `,"extra":1`,
		"no version":       strings.Replace(base, `"version":"v1"`, `"version":""`, 1),
		"vendor too large": strings.Replace(base, `"min_policy_version":4`, `"min_policy_version":4,"vendor_id":70000`, 1),
	} {
		if _, err := Load([]byte("{" + doc + "}")); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// TestTCF: a TC string grants the purposes whose TCF purposes all have
// consent and denies the others; v2.2 (policy 4) and v2.3 (5) are read,
// older policies refused; with a vendor id, the vendor's consent is needed
// too.
func TestTCF(t *testing.T) {
	m := mapping(t)
	for _, policy := range []int{4, 5} {
		r, err := m.Expand(TCF, tcfstring.Encode(policy, []int{1, 8, 9, 10}, nil))
		if err != nil {
			t.Fatalf("policy %d: %v", policy, err)
		}
		want := map[string]string{"analytics": "granted", "ai_training": "granted", "marketing": "denied", "personalization": "denied", "third_party_sharing": "denied"}
		if got := states(r); len(got) != len(want) || got["analytics"] != want["analytics"] || got["ai_training"] != want["ai_training"] ||
			got["marketing"] != want["marketing"] || got["personalization"] != want["personalization"] || got["third_party_sharing"] != want["third_party_sharing"] {
			t.Fatalf("policy %d: %v", policy, got)
		}
		if r.Summary["cmp_id"] != uint16(300) || r.Summary["tcf_policy_version"] != uint8(policy) || time.Since(r.LastUpdated) > time.Minute {
			t.Fatalf("summary %v", r.Summary)
		}
	}
	if _, err := m.Expand(TCF, tcfstring.Encode(2, []int{1, 8, 9}, nil)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a TCF v2.0 string: %v", err)
	}
	v := *m
	v.TCF.VendorID = 755
	r, err := v.Expand(TCF, tcfstring.Encode(4, []int{1, 8, 9}, []int{12}))
	if err != nil || r.States[purpose.Analytics] != consent.Denied {
		t.Fatalf("without the vendor's consent: %v %v", states(r), err)
	}
	r, err = v.Expand(TCF, tcfstring.Encode(4, []int{1, 8, 9}, []int{12, 755}))
	if err != nil || r.States[purpose.Analytics] != consent.Granted {
		t.Fatalf("with the vendor's consent: %v %v", states(r), err)
	}
	// Later segments (disclosed vendors, publisher TC) are allowed and ignored.
	if _, err := m.Expand(TCF, tcfstring.Encode(4, []int{1}, nil)+".IAAA"); err != nil {
		t.Fatal(err)
	}
}

// tcfSection is a GPP section carrying a TC string (go-gpp decodes the
// TCF EU section as a generic one; its encoder needs a Section).
type tcfSection string

func (s tcfSection) GetID() gppconst.SectionID { return gppconst.SectionTCFEU2 }
func (s tcfSection) GetValue() string          { return string(s) }
func (s tcfSection) Encode(bool) []byte        { return []byte(s) }

func usNational(sale, sharing, targeted byte, gpc bool) uspnat.USPNAT {
	return uspnat.USPNAT{SectionID: gppconst.SectionUSPNAT, CoreSegment: uspnat.USPNATCoreSegment{Version: 1, SaleOptOut: sale, SharingOptOut: sharing,
		TargetedAdvertisingOptOut: targeted, SensitiveDataProcessing: make([]byte, 12), KnownChildSensitiveDataConsents: make([]byte, 2)},
		GPCSegment: sections.CommonUSGPCSegment{SubsectionType: 1, Gpc: gpc}}
}

func encodeGPP(t *testing.T, secs ...gpp.Section) string {
	t.Helper()
	s, err := gpp.Encode(secs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGPP: the TCF EU section maps as a TC string; a US opt-out denies its
// purposes even where the TCF section grants them; "did not opt out"
// changes nothing; the GPC segment records GPC.
func TestGPP(t *testing.T) {
	m := mapping(t)
	s := encodeGPP(t, tcfSection(tcfstring.Encode(4, []int{1, 3, 4, 8, 9}, nil)), usNational(2, 1, 2, true))
	r, err := m.Expand(GPP, s)
	if err != nil {
		t.Fatal(err)
	}
	got := states(r)
	if got["analytics"] != "granted" || got["marketing"] != "denied" || got["third_party_sharing"] != "denied" || !r.GPC {
		t.Fatalf("%v gpc %v", got, r.GPC)
	}
	if secs, _ := r.Summary["sections"].([]string); len(secs) != 2 {
		t.Fatalf("summary %v", r.Summary)
	}
	// California: did not opt out, no GPC: nothing to record.
	ca := uspca.USPCA{SectionID: gppconst.SectionUSPCA, CoreSegment: uspca.USPCACoreSegment{Version: 1, SaleOptOut: 2, SharingOptOut: 2,
		SensitiveDataProcessing: make([]byte, 9), KnownChildSensitiveDataConsents: make([]byte, 2)}, GPCSegment: sections.CommonUSGPCSegment{SubsectionType: 1}}
	if _, err := m.Expand(GPP, encodeGPP(t, ca)); !errors.Is(err, ErrUnmapped) {
		t.Fatalf("nothing exercised: %v", err)
	}
	ca.CoreSegment.SaleOptOut = 1
	r, err = m.Expand(GPP, encodeGPP(t, ca))
	if err != nil || states(r)["third_party_sharing"] != "denied" || len(states(r)) != 1 {
		t.Fatalf("a sale opt-out: %v %v", states(r), err)
	}
}

// TestHostileStrings: garbage, truncation, oversize, the wrong kind and
// an empty string are refused as malformed, unsupported or unmapped,
// never a panic.
func TestHostileStrings(t *testing.T) {
	m := mapping(t)
	good := tcfstring.Encode(4, []int{1, 8, 9}, nil)
	for name, tc := range map[string]struct {
		kind Kind
		s    string
		want error
	}{
		"empty":        {TCF, "", ErrMalformed},
		"garbage":      {TCF, "not a consent string!", ErrMalformed},
		"truncated":    {TCF, good[:20], ErrMalformed},
		"oversize":     {TCF, strings.Repeat("C", MaxLen+1), ErrMalformed},
		"gpp garbage":  {GPP, "DBABMA~@@@", ErrMalformed},
		"gpp header":   {GPP, "XYZ", ErrMalformed},
		"TC as GPP":    {GPP, good, ErrMalformed},
		"unknown kind": {Kind("usp"), "1YNN", ErrUnsupported},
		"line break":   {TCF, good[:10] + "\n" + good[10:], ErrMalformed}, // base64 would skip it
		"space":        {GPP, "DBABMA ~" + good, ErrMalformed},
		"stale":        {TCF, tcfstring.EncodeAt(time.Now().AddDate(-2, 0, 0), 4, []int{1, 8, 9}, nil), ErrUnsupported},
	} {
		if _, err := m.Expand(tc.kind, tc.s); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// FuzzExpand: no input panics or maps to nothing silently.
func FuzzExpand(f *testing.F) {
	f.Add("tcf", tcfstring.Encode(4, []int{1, 8, 9}, []int{3}))
	f.Add("tcf", tcfstring.Encode(5, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, nil)+".IAAA")
	f.Add("gpp", "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")
	f.Add("gpp", "DBABLA~BVQqAAAAAgA.QA")
	f.Add("gpp", "DBABrGA~DSJgmkoZJSA.YA~BlgWEYCY.QA~BSFgmiU~bSFgmJQ.YA~BWJYJllA~bSFgmSZQ.YA")
	m := mapping(f)
	f.Fuzz(func(t *testing.T, kind, s string) {
		r, err := m.Expand(Kind(kind), s)
		if err == nil && !r.Any() {
			t.Fatal("accepted, changing nothing")
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrUnmapped) {
			t.Fatalf("an error of no kind: %v", err)
		}
	})
}

// TestGPPHeaderStallIsRefused names the attack FuzzExpand found: a GPP
// header whose section ids are endless Fibonacci codes, on which go-gpp
// spends seconds (naive recursion); it is refused before go-gpp reads it,
// while the real headers of go-gpp's own tests still pass the guard.
func TestGPPHeaderStallIsRefused(t *testing.T) {
	m := mapping(t)
	for _, s := range []string{"D-CgAAAAAAAAAAYgAAAAAOOAA-", "D0SSSSSSSCSSSS00", "DBAAAAAAAAAAAAAA~x"} {
		if _, err := m.Expand(GPP, s); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "Fibonacci") && !strings.Contains(err.Error(), "header over") {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", "DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN",
		"DBABrGA~DSJgmkoZJSA.YA~BlgWEYCY.QA~BSFgmiU~bSFgmJQ.YA~BWJYJllA~bSFgmSZQ.YA", "DBABLA~BVQqAAAAAgA.QA"} {
		if !fibonacciBounded(strings.SplitN(s, "~", 2)[0]) {
			t.Errorf("the guard refuses the real header of %s", s)
		}
		if _, err := m.Expand(GPP, s); errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", s, err)
		}
	}
}
