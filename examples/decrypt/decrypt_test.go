package decrypt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/processors"
)

// TestReadTopicAndDecrypt: a consumer reads privacy.keys, decrypts a clean
// record's encrypted and tokenized fields by its pp-data-key header; after
// the key's tombstone (erasure) the same record no longer decrypts, and a
// record of the key written again later does not revive it; a record of
// an unknown key, one without the header, and a wrapped key under another
// id are refused.
func TestReadTopicAndDecrypt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "privacy.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kek := filepath.Join(t.TempDir(), "kek.json")
	if err := subjectkey.GenerateKEKFile(kek); err != nil {
		t.Fatal(err)
	}
	kr, err := Open(kek)
	if err != nil {
		t.Fatal(err)
	}
	kms, _ := subjectkey.LoadKEKFile(kek)
	const id = "dk1.personalization.p-1.AAAAAAAAAAAAAAAAAAAAAA"
	dk, w, err := subjectkey.NewDataKey(ctx, kms, id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := w.Marshal()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(recs ...*kgo.Record) {
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(&kgo.Record{Topic: "privacy.keys", Key: []byte(id), Value: b})
	if n, err := kr.ReadTopic(ctx, kafkaconn.Config{Brokers: c.ListenAddrs()}, "privacy.keys"); err != nil || n != 1 {
		t.Fatalf("read %d: %v", n, err)
	}
	enc, _ := dk.Encrypt([]byte("jane@example.com"), "email")
	tok, _ := dk.Tokenize([]byte("+84 90 555 0100"), "phone")
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: processors.HeaderDataKey, Value: []byte(id)}}}
	if pt, err := kr.Field(ctx, rec, "email", enc); err != nil || string(pt) != "jane@example.com" {
		t.Fatalf("email: %q %v", pt, err)
	}
	if pt, err := kr.Field(ctx, rec, "phone", tok); err != nil || string(pt) != "+84 90 555 0100" {
		t.Fatalf("phone: %q %v", pt, err)
	}
	if _, err := kr.Field(ctx, &kgo.Record{}, "email", enc); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no header: %v", err)
	}
	other := &kgo.Record{Headers: []kgo.RecordHeader{{Key: processors.HeaderDataKey, Value: []byte("dk1.personalization.p-1.other")}}}
	if _, err := kr.Field(ctx, other, "email", enc); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if err := kr.Add(&kgo.Record{Key: []byte("dk1.personalization.p-1.other"), Value: b}); err == nil {
		t.Fatal("a wrapped key under another id was accepted")
	}

	produce(&kgo.Record{Topic: "privacy.keys", Key: []byte(id)}, &kgo.Record{Topic: "privacy.keys", Key: []byte(id), Value: b})
	if _, err := kr.ReadTopic(ctx, kafkaconn.Config{Brokers: c.ListenAddrs()}, "privacy.keys"); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Field(ctx, rec, "email", enc); !errors.Is(err, ErrErased) {
		t.Fatalf("after the tombstone: %v", err)
	}
}
