// Package pipelinetest holds test helpers shared by unit and integration
// tests: a privacy processor built on a given Redis, canary events whose
// every sensitive field carries a unique marker, and a scanner that finds
// markers in bytes. It is imported only from _test files and cmd tools that
// verify the pipeline.
package pipelinetest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/stream/opsserver"

	"github.com/privacy-pipeline/pipeline/examples/producer"
)

// Marker is one canary string and the raw field it was planted in.
type Marker struct {
	Field string // raw field path, or "message:<kind>" for PII inside free text
	Value string
}

// LuhnValid returns a Luhn-valid 16-digit number starting with prefix (15 digits).
func LuhnValid(prefix15 string) string {
	sum := 0
	for i := 0; i < 15; i++ {
		d := int(prefix15[14-i] - '0')
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return prefix15 + strconv.Itoa((10-sum%10)%10)
}

// CanaryEvent returns an event of subject whose every PII field carries a
// marker unique to n, and the markers.
func CanaryEvent(n int, subject string, at time.Time) (producer.Event, []Marker) {
	tag := fmt.Sprintf("zq%04dx", n)
	card := LuhnValid(fmt.Sprintf("45391488%07d", n))
	msgCard := LuhnValid(fmt.Sprintf("52001111%07d", n))
	phone := fmt.Sprintf("+84 9%02d %03d %03d", n%100, 700+n%300, 100+n%900)
	msgPhone := fmt.Sprintf("+65 8%03d %04d", n%1000, 1000+n%9000)
	ip := fmt.Sprintf("198.51.%d.%d", n%250, 1+n%250)
	msgIP := fmt.Sprintf("192.0.2.%d", 1+(n+7)%250)
	bd := time.Date(1980+n%20, 3, 14, 0, 0, 0, 0, time.UTC)
	amt := 42.0
	ev := producer.Event{
		EventID: "evt-canary-" + tag, SubjectID: subject, EventType: "support_message",
		EventTime: at, Jurisdiction: "gdpr",
		Name:        "Canaryname " + tag,
		Email:       "canary.email." + tag + "@example.com",
		Phone:       phone,
		Address:     &producer.Address{Street: "CanaryStreet" + tag + " 1", City: "CanaryCity" + tag, PostalCode: "CPZ" + tag, Country: "CC" + tag},
		IPAddress:   ip,
		DeviceID:    "canary-device-" + tag,
		UserAgent:   "CanaryAgent/" + tag,
		Location:    &producer.GeoPoint{Lat: 10.762622, Lon: 106.660172},
		BirthDate:   &bd,
		Gender:      "canarygender" + tag,
		PageURL:     "https://canary.example/" + tag,
		OrderAmount: &amt, Currency: "VND",
		CardNumber: card,
		Message:    "this is Canaryname " + tag + " at CanaryStreet" + tag + "; please mail canary.msg." + tag + "@example.org or call " + msgPhone + ", card " + msgCard + ", from " + msgIP,
	}
	m := []Marker{
		{"subject_id", subject},
		{"name", ev.Name}, {"email", ev.Email}, {"phone", phone},
		{"address.street", ev.Address.Street}, {"address.city", ev.Address.City},
		{"address.postal_code", ev.Address.PostalCode}, {"address.country", ev.Address.Country},
		{"ip_address", ip}, {"device_id", ev.DeviceID}, {"user_agent", ev.UserAgent},
		{"gender", ev.Gender}, {"page_url", ev.PageURL}, {"card_number", card},
		{"message:email", "canary.msg." + tag + "@example.org"}, {"message:phone", msgPhone},
		{"message:card", msgCard}, {"message:ip", msgIP},
		{"location", "10.762622"}, {"birth_date", bd.Format("2006-01-02")},
	}
	return ev, m
}

// Find returns the markers whose value occurs in b.
func Find(b []byte, markers []Marker) []Marker {
	var out []Marker
	for _, m := range markers {
		if bytes.Contains(b, []byte(m.Value)) {
			out = append(out, m)
		}
	}
	return out
}

// MetricsText returns what /metrics serves for a registry.
func MetricsText(t testing.TB, g prometheus.Gatherer) string {
	t.Helper()
	srv := httptest.NewServer(opsserver.Handler(g, nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// SyncBuffer is a goroutine-safe log sink for tests: processors and
// runners log from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Bytes returns a copy of what was written.
func (s *SyncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// String returns what was written.
func (s *SyncBuffer) String() string { return string(s.Bytes()) }

// Request sends one HTTP request (header holds key, value pairs) and
// returns the status and body, failing the test if it cannot be sent.
func Request(t testing.TB, method, url, ctype, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
