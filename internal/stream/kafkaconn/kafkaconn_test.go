package kafkaconn

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

func TestValidate(t *testing.T) {
	good := [][]string{
		{"localhost:9092"},
		{"127.0.0.1:19092", "kafka-1.internal:9093"},
		{"kafka"}, // franz-go's default port
		{"[::1]:9092"},
		{"[::1]"},
		{"::1"},
	}
	for _, b := range good {
		if err := (Config{Brokers: b}).Validate(); err != nil {
			t.Errorf("%q: %v", b, err)
		}
	}
	bad := [][]string{
		nil,
		{},
		{""},
		{"localhost:9092", ""}, // "a,,b" in the environment
		{" localhost:9092"},    // "a, b"
		{":9092"},
		{"localhost:"},
		{"localhost:http"},
		{"localhost:0"},
		{"localhost:65536"},
		{"kafka://localhost:9092"},
	}
	for _, b := range bad {
		err := (Config{Brokers: b}).Validate()
		if err == nil {
			t.Errorf("%q accepted", b)
			continue
		}
		if len(b) > 0 && !errors.Is(err, errBadAddr) {
			t.Errorf("%q: %v does not wrap errBadAddr", b, err)
		}
	}
}

// TestOptsApplied: a client built from the connection has its seed brokers
// and extra options, and the call's own options after them.
func TestOptsApplied(t *testing.T) {
	c := Config{Brokers: []string{"127.0.0.1:1", "127.0.0.1:2"}, Extra: []kgo.Opt{kgo.ClientID("from-conn")}}
	cl, err := c.NewClient(kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.SeedBrokers); !slices.Equal(got.([]string), c.Brokers) {
		t.Errorf("seed brokers %v, want %v", got, c.Brokers)
	}
	if got := cl.OptValue(kgo.ClientID); got != "from-conn" {
		t.Errorf("client id %v", got)
	}
	if got := cl.OptValue(kgo.DefaultProduceTopic); got != "t" {
		t.Errorf("the call's own option was lost: %v", got)
	}
	// Opts returns a fresh slice: appending to one does not change the next.
	a := c.Opts()
	_ = append(a, kgo.ClientID("other"))
	if len(c.Opts()) != 2 || len(c.Extra) != 1 {
		t.Errorf("Opts aliases its result: %d options", len(c.Opts()))
	}
}

// TestExtraReachesTheCluster: on a cluster that requires SASL, the admin
// client of a connection without credentials cannot list topics, and with
// them in Extra it can.
func TestExtraReachesTheCluster(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "pipeline", "s3cret"),
		kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	anon, err := Config{Brokers: cluster.ListenAddrs()}.NewAdmin()
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if _, err := anon.ListTopics(short); err == nil {
		t.Fatal("an unauthenticated client listed the topics of a SASL cluster")
	}

	c := Config{Brokers: cluster.ListenAddrs(), Extra: []kgo.Opt{kgo.SASL(plain.Auth{User: "pipeline", Pass: "s3cret"}.AsMechanism())}}
	adm, err := c.NewAdmin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !td.Has("t") {
		t.Fatalf("topics %v", td.Names())
	}
}

// TestNewClientWrapsErrors: franz-go's refusal is returned, wrapped.
func TestNewClientWrapsErrors(t *testing.T) {
	_, err := Config{Brokers: []string{"localhost:abc"}}.NewClient()
	if err == nil || !strings.HasPrefix(err.Error(), "kafkaconn: client: ") || errors.Unwrap(err) == nil {
		t.Fatalf("got %v", err)
	}
}

// FuzzValidate: Validate never panics, and a broker list it accepts is
// one franz-go accepts too (a client is built without dialing), so a
// start-up check can never pass an address the clients then refuse.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"localhost:9092", "k1:9092,k2:19092", "[::1]:9092", "::1", "host", "a,,b", "h:0", "h:65536", ":9092", "h: 1", "["} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		c := Config{Brokers: strings.Split(list, ",")}
		if c.Validate() != nil {
			return
		}
		cl, err := c.NewClient()
		if err != nil {
			t.Fatalf("Validate accepted %q, franz-go refused it: %v", list, err)
		}
		cl.Close()
	})
}
