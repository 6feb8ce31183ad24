package eventcodec

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/schemas"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newDecoder(t testing.TB) (*Decoder, *schemas.EventSchema) {
	t.Helper()
	raw, err := schemas.RawEvent()
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecoder(raw, schemas.RawEventSchemaJSON(), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	return d, raw
}

func TestDecodeFullEvent(t *testing.T) {
	d, raw := newDecoder(t)
	enc, _ := producer.NewEncoder()
	ev := synth.New(1, 100, now).EventFor(1, 42)
	ev.Message = "hello"
	amt := 12.5
	ev.OrderAmount = &amt
	b, err := enc.AppendEncoded(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	var out Event
	if r := d.Decode(b, &out); r != OK {
		t.Fatalf("decode: %s", r)
	}
	get := func(p string) Value { return out.Values[raw.Index(p)] }
	if get("subject_id").Str != ev.SubjectID || get("email").Str != ev.Email || get("address.postal_code").Str != ev.Address.PostalCode {
		t.Fatalf("strings wrong: %+v", out.Values)
	}
	if get("event_time").Num != ev.EventTime.UnixMilli() {
		t.Fatalf("event_time %d want %d", get("event_time").Num, ev.EventTime.UnixMilli())
	}
	if days := get("birth_date").Num; days != ev.BirthDate.Unix()/86400 {
		t.Fatalf("birth_date %d", days)
	}
	if loc := get("location"); !loc.Present || loc.F != ev.Location.Lat || loc.F2 != ev.Location.Lon {
		t.Fatalf("location %+v", loc)
	}
	if get("order_amount").F != 12.5 || get("card_number").Present != (ev.CardNumber != "") {
		t.Fatalf("amount/card %+v", out.Values)
	}
	if get("gpc").Present != true {
		t.Fatal("gpc missing")
	}
}

func TestMalformedGetReasons(t *testing.T) {
	d, _ := newDecoder(t)
	enc, _ := producer.NewEncoder()
	for i := 0; i < 7; i++ {
		b, want := synth.Malformed(i, enc, now)
		var ev Event
		if got := d.Decode(b, &ev); got.String() != want {
			t.Errorf("malformed kind %d: got %s want %s", i, got, want)
		}
	}
	var ev Event
	for name, b := range map[string][]byte{"empty": nil, "marker only": {0xC3, 0x01}, "json": []byte(`{}`)} {
		if r := d.Decode(b, &ev); r != NotAvro {
			t.Errorf("%s: got %s", name, r)
		}
	}
}

func TestUnclassifiedFieldsCounted(t *testing.T) {
	d, raw := newDecoder(t)
	v2 := strings.Replace(string(schemas.RawEventSchemaJSON()), `"fields": [`,
		`"fields": [{"name":"shoe_size","type":["null","int"],"default":null},{"name":"nick","type":"string","classification":"direct_identifier"},`, 1)
	fp, err := d.Register([]byte(v2))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := producer.NewEncoderFor([]byte(v2))
	if enc.Fingerprint() != fp {
		t.Fatal("fingerprint mismatch")
	}
	ev := synth.New(1, 10, now).EventFor(1, 1)
	b, err := enc.AppendNative(nil, ev.Native(map[string]any{"shoe_size": goavro.Union("int", int32(44)), "nick": "CANARY-nick"}))
	if err != nil {
		t.Fatal(err)
	}
	var out Event
	if r := d.Decode(b, &out); r != OK || out.Unclassified != 2 {
		t.Fatalf("got %s unclassified=%d", r, out.Unclassified)
	}
	for _, v := range out.Values {
		if v.Str == "CANARY-nick" {
			t.Fatal("unclassified value reached the event view")
		}
	}
	_ = raw
}

func TestRegisterRejectsIncompatibleWriter(t *testing.T) {
	d, _ := newDecoder(t)
	bad := strings.Replace(string(schemas.RawEventSchemaJSON()), `{"name": "gender", "type": ["null", "string"]`, `{"name": "gender", "type": ["null", "int"]`, 1)
	if _, err := d.Register([]byte(bad)); err == nil || !strings.Contains(err.Error(), "gender") {
		t.Fatalf("want kind mismatch error, got %v", err)
	}
	noSubject := `{"type":"record","name":"X","fields":[{"name":"event_id","type":"string"}]}`
	if _, err := d.Register([]byte(noSubject)); err == nil {
		t.Fatal("writer without subject_id accepted")
	}
}

// FuzzDecode feeds arbitrary bytes, with and without a valid single-object
// header, to the decoder: it must never panic, and whatever it accepts must
// satisfy the validation rules.
func FuzzDecode(f *testing.F) {
	d, raw := newDecoder(f)
	enc, _ := producer.NewEncoder()
	gen := synth.New(7, 50, now)
	for i := 0; i < 8; i++ {
		ev := gen.Event(i)
		b, _ := enc.AppendEncoded(nil, &ev)
		f.Add(b)
		m, _ := synth.Malformed(i, enc, now)
		f.Add(m)
	}
	hdr := make([]byte, 10)
	copy(hdr, []byte{0xC3, 0x01})
	fp := enc.Fingerprint()
	for i := 0; i < 8; i++ {
		hdr[2+i] = byte(fp >> (8 * i))
	}
	subj := raw.Index("subject_id")
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev Event
		for _, in := range [][]byte{b, append(append([]byte{}, hdr...), b...)} {
			if r := d.Decode(in, &ev); r == OK {
				if s := ev.Values[subj]; !s.Present || strings.TrimSpace(s.Str) == "" {
					t.Fatal("accepted an event without subject")
				}
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	d, _ := newDecoder(b)
	enc, _ := producer.NewEncoder()
	ev := synth.New(1, 100, now).EventFor(1, 42)
	buf, _ := enc.AppendEncoded(nil, &ev)
	var out Event
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		d.Decode(buf, &out)
	}
}

// TestConfluentFraming: a record framed as Confluent's AvroSerializer
// frames it (magic 0, big-endian schema id) decodes once its id is
// registered, exactly like its single-object form; an unregistered id is
// unknown_schema (the caller resolves ids before decoding); a schema the
// raw schema cannot accept is refused at RegisterID, so its id stays
// unknown.
func TestConfluentFraming(t *testing.T) {
	d, raw := newDecoder(t)
	enc, _ := producer.NewEncoder()
	ev := synth.New(1, 100, now).EventFor(1, 42)
	single, err := enc.AppendEncoded(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	conf := append(wireformat.AppendConfluent(nil, 300), single[wireformat.SingleObjectHeaderLen:]...)
	var a, b Event
	if r := d.Decode(conf, &b); r != UnknownSchema || b.Header.Format != wireformat.Confluent || b.Header.ID != 300 {
		t.Fatalf("unregistered id: %s %+v", r, b.Header)
	}
	if d.KnownID(300) {
		t.Fatal("KnownID before RegisterID")
	}
	fp, err := d.RegisterID(300, schemas.RawEventSchemaJSON())
	if err != nil || fp != enc.Fingerprint() {
		t.Fatalf("RegisterID: %016x %v", fp, err)
	}
	if !d.KnownID(300) {
		t.Fatal("KnownID after RegisterID")
	}
	if r := d.Decode(single, &a); r != OK {
		t.Fatalf("single-object: %s", r)
	}
	if r := d.Decode(conf, &b); r != OK {
		t.Fatalf("confluent: %s", r)
	}
	if !reflect.DeepEqual(a.Values, b.Values) || b.Values[raw.Index("subject_id")].Str != ev.SubjectID {
		t.Fatal("the two framings decode differently")
	}
	if r := d.Decode(conf[:4], &b); r != NotAvro {
		t.Fatalf("truncated Confluent header: %s", r)
	}
	clean, _ := schemas.CleanSchemaJSON("analytics")
	if _, err := d.RegisterID(301, clean); err == nil || d.KnownID(301) {
		t.Fatalf("RegisterID accepted a clean schema as a raw writer schema: %v", err)
	}
}
