// Package consentstring reads the consent strings of the ad-tech
// frameworks, IAB Europe's TCF v2.2 and v2.3 TC strings and IAB Tech Lab's
// GPP strings, and maps them to the pipeline's purposes with a checked-in,
// validated mapping (schemas/consent-strings.json).
//
// The strings are decoded by prebid's libraries (Apache 2.0):
// github.com/prebid/go-gdpr (vendorconsent/tcf2) for TC strings, and
// github.com/prebid/go-gpp for GPP strings, whose TCF EU section goes to
// the same TC string decoder and whose US sections (national, California,
// Virginia, Colorado, Utah, Connecticut) carry opt-outs and the GPC
// segment. A decoder that panics on hostile input is recovered and the
// string refused as malformed (FuzzExpand).
//
// A TC string is a snapshot of the choices made in a consent banner: each
// mapped purpose is granted when every TCF purpose the mapping lists has
// consent (and the mapping's own vendor id, when it names one), denied
// otherwise. A GPP string's US sections only ever tighten: an opt-out
// (value 1) of sale, sharing or targeted advertising denies the purposes
// the mapping lists for it, "did not opt out" changes nothing, and a GPC
// segment with the signal set records GPC. The string itself is kept as
// the evidence of the changes it makes (consentlog.Change.Evidence): it
// can be personal data, and is erased with the subject.
//
// It imports consent, fields/purpose and the two prebid libraries.
package consentstring

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prebid/go-gdpr/consentconstants"
	tcf2 "github.com/prebid/go-gdpr/vendorconsent/tcf2"
	gpp "github.com/prebid/go-gpp"
	gppconst "github.com/prebid/go-gpp/constants"
	"github.com/prebid/go-gpp/sections"
	"github.com/prebid/go-gpp/sections/uspca"
	"github.com/prebid/go-gpp/sections/uspco"
	"github.com/prebid/go-gpp/sections/uspct"
	"github.com/prebid/go-gpp/sections/uspnat"
	"github.com/prebid/go-gpp/sections/usput"
	"github.com/prebid/go-gpp/sections/uspva"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// Kind names a consent string's framework.
type Kind string

// The kinds.
const (
	TCF Kind = "tcf"
	GPP Kind = "gpp"
)

// MaxLen bounds a consent string (TC strings with long vendor lists run to
// a few kilobytes).
const MaxLen = 16 << 10

// MinTCFPolicyVersion is the oldest TCF policy version a mapping may
// accept: 4, TCF v2.2 (v2.3 is 5).
const MinTCFPolicyVersion = 4

// The refusals; each names what is wrong, never the string.
var (
	ErrMalformed   = errors.New("consentstring: malformed")
	ErrUnsupported = errors.New("consentstring: not supported")
	ErrUnmapped    = errors.New("consentstring: nothing the mapping covers")
)

// Opt-outs of the GPP US sections a mapping can name.
const (
	OptOutSale                = "sale"
	OptOutSharing             = "sharing"
	OptOutTargetedAdvertising = "targeted_advertising"
)

// Mapping maps the frameworks' choices to the pipeline's purposes
// (schemas/consent-strings.json).
type Mapping struct {
	// Version names the mapping; it becomes the changes' policy version
	// when the caller gives none ("consent-strings:" + Version).
	Version string `json:"version"`
	Doc     string `json:"doc,omitempty"`
	TCF     struct {
		// MinPolicyVersion refuses TC strings of older TCF policies
		// (at least MinTCFPolicyVersion).
		MinPolicyVersion int `json:"min_policy_version"`
		// VendorID, when not 0, is the deploying company's id in the
		// Global Vendor List: a purpose is granted only with consent for
		// that vendor too.
		VendorID int `json:"vendor_id"`
		// Purposes maps each pipeline purpose to the TCF purposes (1-11)
		// that must all have consent.
		Purposes map[string][]int `json:"purposes"`
	} `json:"tcf"`
	GPP struct {
		// USOptOuts maps an opt-out of the US sections (sale, sharing,
		// targeted_advertising) to the purposes it denies.
		USOptOuts map[string][]string `json:"us_opt_outs"`
		// GPC records the GPC segment's signal as the subject's GPC.
		GPC bool `json:"gpc"`
	} `json:"gpp"`
}

// Load parses and validates a mapping (strict JSON: an unknown field is an
// error).
func Load(b []byte) (*Mapping, error) {
	var m Mapping
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("consentstring: mapping: %w", err)
	}
	if dec.More() {
		return nil, errors.New("consentstring: mapping: trailing data")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every name and number of the mapping.
func (m *Mapping) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("consentstring: mapping: "+f, a...) }
	if strings.TrimSpace(m.Version) == "" || len(m.Version) > 64 {
		return bad("version: 1-64 characters")
	}
	if m.TCF.MinPolicyVersion < MinTCFPolicyVersion || m.TCF.MinPolicyVersion > 63 {
		return bad("tcf.min_policy_version %d: at least %d (TCF v2.2)", m.TCF.MinPolicyVersion, MinTCFPolicyVersion)
	}
	if m.TCF.VendorID < 0 || m.TCF.VendorID > 65535 {
		return bad("tcf.vendor_id %d: 0 (none) to 65535", m.TCF.VendorID)
	}
	if len(m.TCF.Purposes) == 0 && len(m.GPP.USOptOuts) == 0 && !m.GPP.GPC {
		return bad("maps nothing")
	}
	for name, ids := range m.TCF.Purposes {
		if _, err := purpose.Parse(name); err != nil {
			return bad("tcf.purposes: %w", err)
		}
		if len(ids) == 0 {
			return bad("tcf.purposes.%s: lists no TCF purpose", name)
		}
		seen := map[int]bool{}
		for _, id := range ids {
			if id < 1 || id > 11 || seen[id] {
				return bad("tcf.purposes.%s: TCF purpose %d is not 1-11 or is listed twice", name, id)
			}
			seen[id] = true
		}
	}
	for o, ps := range m.GPP.USOptOuts {
		if o != OptOutSale && o != OptOutSharing && o != OptOutTargetedAdvertising {
			return bad("gpp.us_opt_outs: %q (want %s, %s or %s)", o, OptOutSale, OptOutSharing, OptOutTargetedAdvertising)
		}
		if len(ps) == 0 {
			return bad("gpp.us_opt_outs.%s: names no purpose", o)
		}
		for _, p := range ps {
			if _, err := purpose.Parse(p); err != nil {
				return bad("gpp.us_opt_outs.%s: %w", o, err)
			}
		}
	}
	return nil
}

// Result is what a consent string says, mapped.
type Result struct {
	Kind Kind
	// States holds a choice per mapped purpose (consent.Unset: none).
	States [purpose.Count]consent.State
	// GPC is true when a GPP GPC segment carries the signal (and the
	// mapping records it).
	GPC bool
	// Summary describes the string without personal data (CMP id and
	// version, TCF policy version, GPP sections), for the API's answer.
	Summary map[string]any
	// LastUpdated is when the TC string (or a GPP string's TCF section)
	// was last updated, zero when it carries no time (GPP US sections).
	LastUpdated time.Time
}

// MaxAge refuses a TC string last updated longer ago: 13 months, after
// which TCF expects the choices to be asked for again; an old banner
// cookie must not outweigh newer choices.
const MaxAge = 395 * 24 * time.Hour

// alphabet reports whether s holds only the characters of base64url
// segments, separated by "." (and, in GPP, "~"): the decoders would skip
// others (base64 ignores line breaks), and a consent string kept as
// evidence must be the string that was read.
func alphabet(s string, gpp bool) bool {
	for _, c := range []byte(s) {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		case c == '~' && gpp:
		default:
			return false
		}
	}
	return true
}

// Any reports whether the result changes anything.
func (r Result) Any() bool {
	if r.GPC {
		return true
	}
	for _, s := range r.States {
		if s != consent.Unset {
			return true
		}
	}
	return false
}

// Expand decodes s of kind and maps it.
func (m *Mapping) Expand(kind Kind, s string) (res Result, err error) {
	if len(s) > MaxLen {
		return Result{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxLen)
	}
	if strings.TrimSpace(s) == "" {
		return Result{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if !alphabet(s, kind == GPP) {
		return Result{}, fmt.Errorf("%w: a character outside the string's alphabet (base64url, '.', and '~' in GPP)", ErrMalformed)
	}
	defer func() { // the decoders are not ours: hostile input must not stop the API
		if p := recover(); p != nil {
			res, err = Result{}, fmt.Errorf("%w: the decoder failed on it", ErrMalformed)
		}
	}()
	res = Result{Kind: kind, Summary: map[string]any{"kind": string(kind)}}
	switch kind {
	case TCF:
		err = m.tcf(s, &res, "")
	case GPP:
		err = m.gpp(s, &res)
	default:
		return Result{}, fmt.Errorf("%w: kind %q (want tcf or gpp)", ErrUnsupported, kind)
	}
	if err != nil {
		return Result{}, err
	}
	if !res.Any() {
		return Result{}, ErrUnmapped
	}
	return res, nil
}

func (m *Mapping) tcf(s string, res *Result, prefix string) error {
	vc, err := tcf2.ParseString(s)
	if err != nil || vc == nil {
		return fmt.Errorf("%w: not a TC string", ErrMalformed)
	}
	if vc.Version() != 2 {
		return fmt.Errorf("%w: TC string version %d (want 2)", ErrUnsupported, vc.Version())
	}
	if pv := int(vc.TCFPolicyVersion()); pv < m.TCF.MinPolicyVersion {
		return fmt.Errorf("%w: TCF policy version %d predates the minimum %d (TCF v2.2 is 4, v2.3 is 5)", ErrUnsupported, pv, m.TCF.MinPolicyVersion)
	}
	res.Summary[prefix+"cmp_id"] = vc.CmpID()
	res.Summary[prefix+"cmp_version"] = vc.CmpVersion()
	res.Summary[prefix+"tcf_policy_version"] = vc.TCFPolicyVersion()
	res.Summary[prefix+"vendor_list_version"] = vc.VendorListVersion()
	res.Summary[prefix+"last_updated"] = vc.LastUpdated().UTC().Format("2006-01-02")
	if age := time.Since(vc.LastUpdated()); age > MaxAge {
		return fmt.Errorf("%w: the TC string was last updated %d days ago, over 13 months: ask for the choices again", ErrUnsupported, int(age.Hours()/24))
	}
	res.LastUpdated = vc.LastUpdated()
	vendorOK := m.TCF.VendorID == 0 || vc.VendorConsent(uint16(m.TCF.VendorID))
	for _, p := range purpose.All {
		ids, ok := m.TCF.Purposes[p.String()]
		if !ok {
			continue
		}
		granted := vendorOK
		for _, id := range ids {
			granted = granted && vc.PurposeAllowed(consentconstants.Purpose(id))
		}
		switch {
		case res.States[p] == consent.Denied: // an opt-out of another section stands
		case granted:
			res.States[p] = consent.Granted
		default:
			res.States[p] = consent.Denied
		}
	}
	return nil
}

// MaxGPPHeader bounds a GPP string's header (its part before the first
// "~"): a real one lists a few section ids in a dozen characters.
const MaxGPPHeader = 24

// MaxGPPSections bounds the sections of a GPP string.
const MaxGPPSections = 32

func (m *Mapping) gpp(s string, res *Result) error {
	header, _, _ := strings.Cut(s, "~")
	if len(header) > MaxGPPHeader || strings.Count(s, "~") > MaxGPPSections {
		return fmt.Errorf("%w: a GPP header over %d characters or over %d sections", ErrMalformed, MaxGPPHeader, MaxGPPSections)
	}
	if !fibonacciBounded(header) {
		return fmt.Errorf("%w: a GPP header whose section ids are not Fibonacci codes of 16-bit numbers", ErrMalformed)
	}
	c, errs := gpp.Parse(s)
	if len(errs) > 0 {
		return fmt.Errorf("%w: not a GPP string (%d sections unreadable)", ErrMalformed, len(errs))
	}
	var names []string
	for _, sec := range c.Sections {
		id := sec.GetID()
		names = append(names, gppconst.SectionNamesByID[int(id)])
		var core sections.CommonUSCoreSegment
		var sharing byte
		var gpc *sections.CommonUSGPCSegment
		switch v := sec.(type) {
		case uspnat.USPNAT:
			core.SaleOptOut, core.TargetedAdvertisingOptOut, sharing, gpc = v.CoreSegment.SaleOptOut, v.CoreSegment.TargetedAdvertisingOptOut, v.CoreSegment.SharingOptOut, &v.GPCSegment
		case uspca.USPCA:
			core.SaleOptOut, sharing, gpc = v.CoreSegment.SaleOptOut, v.CoreSegment.SharingOptOut, &v.GPCSegment
		case uspva.USPVA:
			core = v.CoreSegment
		case uspco.USPCO:
			core, gpc = v.CoreSegment, &v.GPCSegment
		case uspct.USPCT:
			core, gpc = v.CoreSegment, &v.GPCSegment
		case usput.USPUT:
			core.SaleOptOut, core.TargetedAdvertisingOptOut = v.CoreSegment.SaleOptOut, v.CoreSegment.TargetedAdvertisingOptOut
		default:
			if id == gppconst.SectionTCFEU2 {
				if err := m.tcf(sec.GetValue(), res, "tcf_"); err != nil {
					return err
				}
			}
			continue
		}
		m.optOut(res, OptOutSale, core.SaleOptOut)
		m.optOut(res, OptOutSharing, sharing)
		m.optOut(res, OptOutTargetedAdvertising, core.TargetedAdvertisingOptOut)
		if gpc != nil && gpc.Gpc && m.GPP.GPC {
			res.GPC = true
		}
	}
	res.Summary["sections"] = names
	return nil
}

// fibonacciBounded reports whether the header's section-id range (its
// bits after the type, version and entry count: 24) never runs for longer
// than a 16-bit Fibonacci code can, a range flag bit plus 25 bits, without
// the code's terminator "11". go-gpp v0.2.0 computes each Fibonacci number
// by naive recursion, so a long run of bits without "11" costs it seconds
// per character (FuzzExpand found headers of 16 characters taking 5 s);
// such a header cannot be a valid one, and is refused before it is read.
func fibonacciBounded(header string) bool {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(header, "="))
	if err != nil {
		return false // go-gpp refuses it quickly too; say malformed
	}
	run, prev := 0, false
	for i := 24; i < len(b)*8; i++ {
		on := b[i/8]&(0x80>>uint(i%8)) != 0
		run++
		if on && prev {
			run, on = 0, false // a terminator; the next bit starts afresh
		}
		if run > 27 {
			return false
		}
		prev = on
	}
	return true
}

// optOut denies the purposes of an opt-out the section says was exercised
// (1); "did not opt out" (2) and "not applicable" (0) change nothing, and
// never lift a denial made by another section.
func (m *Mapping) optOut(res *Result, o string, v byte) {
	if v != 1 {
		return
	}
	for _, name := range m.GPP.USOptOuts[o] {
		if p, err := purpose.Parse(name); err == nil {
			res.States[p] = consent.Denied
		}
	}
}

// Evidence is the text a change keeps of the string that made it:
// "tcf:" or "gpp:" and the string.
func Evidence(kind Kind, s string) string { return string(kind) + ":" + s }
