// Package synth generates synthetic customer events and consent states for
// the demo, tests and benchmarks: deterministic for a seed, spread across
// jurisdictions and consent states, with PII in every sensitive field and a
// few malformed records. It never produces real personal data.
//
// It imports producer, consent and purpose.
package synth

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// Generator makes events for a fixed population of subjects.
type Generator struct {
	rng      *rand.Rand
	subjects int
	now      time.Time
}

// New returns a generator for n subjects; events are timed just before now.
func New(seed uint64, subjects int, now time.Time) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), subjects: subjects, now: now}
}

// SubjectID names subject i.
func SubjectID(i int) string { return fmt.Sprintf("cust-%07d", i) }

var jurisdictions = []struct {
	name string
	pct  int
}{{"gdpr", 30}, {"ccpa", 25}, {"uk_gdpr", 10}, {"pdpa", 10}, {"vn_decree13", 15}, {"unknown", 10}}

// JurisdictionOf returns the jurisdiction of subject i (stable).
func JurisdictionOf(i int) string {
	h := int(uint32(i)*2654435761) % 100
	for _, j := range jurisdictions {
		if h < j.pct {
			return j.name
		}
		h -= j.pct
	}
	return "unknown"
}

var (
	eventTypes = []string{"page_view", "page_view", "page_view", "search", "add_to_cart", "purchase", "support_message", "login"}
	firstNames = []string{"An", "Binh", "Chloe", "Dara", "Emil", "Farah", "Giulia", "Hiro", "Ines", "Jonas", "Kavya", "Linh"}
	lastNames  = []string{"Nguyen", "Tan", "Smith", "Garcia", "Muller", "Okafor", "Rossi", "Sato", "Silva", "Tran"}
	cities     = []struct{ city, country, postal string }{
		{"Ha Noi", "VN", "100000"}, {"Ho Chi Minh City", "VN", "700000"}, {"Singapore", "SG", "238859"},
		{"Berlin", "DE", "10115"}, {"Paris", "FR", "75008"}, {"London", "GB", "SW1A 1AA"},
		{"San Francisco", "US", "94103"}, {"Los Angeles", "US", "90012"}, {"Madrid", "ES", "28013"},
	}
	agents   = []string{"Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (X11; Linux x86_64)"}
	messages = []string{
		"Hi, my order has not arrived yet, can you check?",
		"Please call me back on %s, thanks",
		"My new email is %s, please update my account",
		"I was charged twice on card %s",
		"Login fails from %s since yesterday",
		"Great service, thank you!",
	}
)

// Event returns a plausible raw event with a fresh id for a random subject.
func (g *Generator) Event(seq int) producer.Event {
	s := g.rng.IntN(g.subjects)
	return g.EventFor(seq, s)
}

// EventFor returns a plausible raw event of subject s.
func (g *Generator) EventFor(seq, s int) producer.Event {
	r := g.rng
	fn, ln := firstNames[s%len(firstNames)], lastNames[(s/7)%len(lastNames)]
	c := cities[(s/3)%len(cities)]
	bd := time.Date(1950+s%55, time.Month(1+s%12), 1+s%28, 0, 0, 0, 0, time.UTC)
	et := eventTypes[r.IntN(len(eventTypes))]
	phone := fmt.Sprintf("+84 9%02d %03d %03d", s%100, (s/100)%1000, r.IntN(1000))
	email := fmt.Sprintf("%s.%s%d@example.com", lower(fn), lower(ln), s)
	ip := fmt.Sprintf("203.0.%d.%d", s%256, 1+r.IntN(254))
	ev := producer.Event{
		EventID:      fmt.Sprintf("evt-%d-%08x", seq, r.Uint32()),
		SubjectID:    SubjectID(s),
		EventType:    et,
		EventTime:    g.now.Add(-time.Duration(r.IntN(3600_000)) * time.Millisecond).Truncate(time.Millisecond),
		Jurisdiction: JurisdictionOf(s),
		GPC:          JurisdictionOf(s) == "ccpa" && s%10 == 0,
		Name:         fn + " " + ln,
		Email:        email,
		Phone:        phone,
		Address:      &producer.Address{Street: fmt.Sprintf("%d Example Street", 1+s%200), City: c.city, PostalCode: c.postal, Country: c.country},
		IPAddress:    ip,
		DeviceID:     fmt.Sprintf("dev-%08x", uint32(s)*2246822519),
		UserAgent:    agents[s%len(agents)],
		Location:     &producer.GeoPoint{Lat: -60 + float64(s%120) + r.Float64(), Lon: -170 + float64(s%340) + r.Float64()},
		BirthDate:    &bd,
		Gender:       []string{"female", "male", "non_binary", "undisclosed"}[s%4],
		PageURL:      "https://shop.example.com/p/" + strconv.Itoa(r.IntN(5000)),
	}
	if et == "purchase" || et == "add_to_cart" {
		amt := float64(r.IntN(50000)) / 100
		ev.OrderAmount, ev.Currency = &amt, "USD"
		if et == "purchase" {
			ev.CardNumber = "4111 1111 1111 1111"
		}
	}
	if et == "support_message" {
		m := messages[r.IntN(len(messages))]
		switch m {
		case messages[1]:
			m = fmt.Sprintf(m, phone)
		case messages[2]:
			m = fmt.Sprintf(m, email)
		case messages[3]:
			m = fmt.Sprintf(m, "4111 1111 1111 1111")
		case messages[4]:
			m = fmt.Sprintf(m, ip)
		}
		ev.Message = m
	}
	return ev
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// Consent returns the stored consent of subject i and whether it has one:
// about 85% of subjects have a record; per purpose 55% granted, 15% denied,
// 10% withdrawn, 20% no choice. Of the other 15%, the CCPA subjects with an
// even index have a record that carries only their jurisdiction (what a
// CCPA business bulk-loads), so the opt-out default applies to them; the
// rest are unknown subjects, denied everything whatever their events claim.
func Consent(i int, now time.Time) (consent.Record, bool) {
	h := uint64(i)*0x9e3779b97f4a7c15 + 12345
	next := func() int { h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 29; return int(h % 100) }
	j, _ := consent.LookupJurisdiction(JurisdictionOf(i))
	if next() < 15 {
		if j == consent.CCPA && i%2 == 0 {
			at := now.Add(-48 * time.Hour).UnixMilli()
			return consent.Record{Jurisdiction: j, JurisdictionMs: at, Version: at}, true
		}
		return consent.Record{}, false
	}
	rec := consent.Record{Jurisdiction: j, GPC: j == consent.CCPA && i%10 == 0}
	at := now.Add(-24 * time.Hour).UnixMilli()
	for _, p := range purpose.All {
		switch v := next(); {
		case v < 55:
			rec.Apply(p, consent.Granted, j, at)
		case v < 70:
			rec.Apply(p, consent.Denied, j, at)
		case v < 80:
			rec.Apply(p, consent.Granted, j, at-1000)
			rec.Apply(p, consent.Withdrawn, j, at)
		}
	}
	return rec, true
}

// Malformed returns bad record number i (cycling through kinds) and the
// quarantine reason the pipeline must give it.
func Malformed(i int, enc *producer.Encoder, now time.Time) ([]byte, string) {
	good := producer.Event{EventID: "evt-bad-" + strconv.Itoa(i), SubjectID: "cust-bad", EventType: "page_view", EventTime: now, Jurisdiction: "gdpr"}
	switch i % 7 {
	case 0:
		return []byte(`{"subject_id":"not avro at all"}`), "not_avro"
	case 1:
		b, _ := enc.AppendEncoded(nil, &good)
		b[5] ^= 0xFF // unknown fingerprint
		return b, "unknown_schema"
	case 2:
		b, _ := enc.AppendEncoded(nil, &good)
		return b[:len(b)-3], "malformed_avro"
	case 3:
		n := good.Native(nil)
		n["subject_id"] = ""
		b, _ := enc.AppendNative(nil, n)
		return b, "missing_subject"
	case 4:
		n := good.Native(nil)
		n["event_time"] = now.Add(48 * time.Hour)
		b, _ := enc.AppendNative(nil, n)
		return b, "timestamp_out_of_range"
	case 5:
		n := good.Native(nil)
		n["name"] = goavro.Union("string", "bad \xff\xfe utf8")
		b, _ := enc.AppendNative(nil, n)
		return b, "invalid_utf8"
	default:
		n := good.Native(nil)
		big := make([]byte, 20<<10)
		for k := range big {
			big[k] = 'x'
		}
		n["message"] = goavro.Union("string", string(big))
		b, _ := enc.AppendNative(nil, n)
		return b, "oversized"
	}
}
