// Package producer is the small Go library producers use to publish raw
// customer events: a typed Event, encoded as Avro single-object encoding
// with the project's raw schema (so the pipeline can identify the writer
// schema by fingerprint), keyed by subject id.
//
// The single-object header carries the writer schema's fingerprint as the
// Avro specification defines it (internal/codec/avroschema), the one Java
// Avro and fastavro compute; goavro's own SingleFromNative would write
// goavro's, which differs for schemas with a logical type.
//
// It imports schemas, goavro, internal/codec/avrosingle and franz-go's kgo
// (for Record and Publish).
package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

// DefaultTopic is the raw topic (SPEC section 2; the topology owns the name).
const DefaultTopic = topology.DefaultRawTopic

// Address is a postal address; empty strings are encoded as null.
type Address struct {
	Street, City, PostalCode, Country string
}

// GeoPoint is a WGS84 position.
type GeoPoint struct{ Lat, Lon float64 }

// Event is one raw customer event. Optional strings that are empty are
// encoded as null.
type Event struct {
	EventID      string
	SubjectID    string
	EventType    string
	EventTime    time.Time
	Jurisdiction string
	GPC          bool
	Name         string
	Email        string
	Phone        string
	Address      *Address
	IPAddress    string
	DeviceID     string
	UserAgent    string
	Location     *GeoPoint
	BirthDate    *time.Time
	Gender       string
	PageURL      string
	OrderAmount  *float64
	Currency     string
	CardNumber   string
	Message      string
}

// Encoder encodes events with the raw schema. It is safe for concurrent use.
type Encoder struct{ codec *avrosingle.Codec }

// NewEncoder returns an encoder for the checked-in raw schema.
func NewEncoder() (*Encoder, error) { return NewEncoderFor(schemas.RawEventSchemaJSON()) }

// NewEncoderFor returns an encoder for another writer schema (it must be
// registered with the pipeline, or its records are quarantined as
// unknown_schema).
func NewEncoderFor(schemaJSON []byte) (*Encoder, error) {
	c, err := avrosingle.NewCodec(string(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("producer: schema: %w", err)
	}
	return &Encoder{codec: c}, nil
}

// Fingerprint returns the writer schema's CRC-64-AVRO fingerprint, the
// specification's (avroschema.Fingerprint), as written in every record.
func (e *Encoder) Fingerprint() uint64 { return e.codec.Rabin }

// ErrInvalid is wrapped by validation errors.
var ErrInvalid = errors.New("producer: invalid event")

// Validate checks what the pipeline would otherwise quarantine.
func (ev *Event) Validate() error {
	switch {
	case strings.TrimSpace(ev.SubjectID) == "":
		return fmt.Errorf("%w: subject id is empty", ErrInvalid)
	case ev.EventID == "":
		return fmt.Errorf("%w: event id is empty", ErrInvalid)
	case ev.EventTime.IsZero():
		return fmt.Errorf("%w: event time is not set", ErrInvalid)
	}
	return nil
}

// Native returns the goavro native form of the event (the map goavro
// encodes), with extra top-level fields merged in (for writer schemas that
// add fields).
func (ev *Event) Native(extra map[string]any) map[string]any {
	opt := func(s string) any {
		if s == "" {
			return nil
		}
		return goavro.Union("string", s)
	}
	m := map[string]any{
		"event_id": ev.EventID, "subject_id": ev.SubjectID, "event_type": ev.EventType,
		"event_time": ev.EventTime, "jurisdiction": ev.Jurisdiction, "gpc": ev.GPC,
		"name": opt(ev.Name), "email": opt(ev.Email), "phone": opt(ev.Phone),
		"address": nil, "ip_address": opt(ev.IPAddress), "device_id": opt(ev.DeviceID),
		"user_agent": opt(ev.UserAgent), "location": nil, "birth_date": nil,
		"gender": opt(ev.Gender), "page_url": opt(ev.PageURL), "order_amount": nil,
		"currency": opt(ev.Currency), "card_number": opt(ev.CardNumber), "message": opt(ev.Message),
	}
	if a := ev.Address; a != nil {
		m["address"] = goavro.Union("privacy.raw.PostalAddress", map[string]any{
			"street": opt(a.Street), "city": opt(a.City), "postal_code": opt(a.PostalCode), "country": opt(a.Country),
		})
	}
	if l := ev.Location; l != nil {
		m["location"] = goavro.Union("privacy.raw.GeoPoint", map[string]any{"lat": l.Lat, "lon": l.Lon})
	}
	if ev.BirthDate != nil {
		m["birth_date"] = goavro.Union("int.date", *ev.BirthDate)
	}
	if ev.OrderAmount != nil {
		m["order_amount"] = goavro.Union("double", *ev.OrderAmount)
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// AppendEncoded validates ev and appends its single-object encoding to dst.
func (e *Encoder) AppendEncoded(dst []byte, ev *Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return dst, err
	}
	return e.AppendNative(dst, ev.Native(nil))
}

// AppendNative appends the single-object encoding of a goavro native map.
func (e *Encoder) AppendNative(dst []byte, native map[string]any) ([]byte, error) {
	out, err := e.codec.SingleFromNative(dst, native)
	if err != nil {
		return dst, fmt.Errorf("producer: encode: %w", err)
	}
	return out, nil
}

// Record returns a Kafka record for the event, keyed by subject id so a
// subject's events stay in order on one partition.
func (e *Encoder) Record(topic string, ev *Event) (*kgo.Record, error) {
	v, err := e.AppendEncoded(nil, ev)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: topic, Key: []byte(ev.SubjectID), Value: v}, nil
}

// Publish encodes and synchronously produces one event.
func (e *Encoder) Publish(ctx context.Context, cl *kgo.Client, topic string, ev *Event) error {
	rec, err := e.Record(topic, ev)
	if err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("producer: produce: %w", err)
	}
	return nil
}
