package statestore

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
)

// TestConnectionOptionsReachTheStore: on a cluster that requires SASL, a
// store whose connection lacks the credentials (an unauthenticated client,
// which is what restores used before the runner passed its connection on)
// cannot even list topics, and the same store with them checks and reads.
func TestConnectionOptionsReachTheStore(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "pipeline", "s3cret"),
		kfake.SeedTopics(2, "in", "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	anonymous := New(kafkaconn.Config{Brokers: brokers}, "in", "state", WithStableWait(time.Second))
	defer anonymous.Close()
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if err := anonymous.CheckPartitions(short); err == nil {
		t.Fatal("an unauthenticated store listed the topics of a SASL cluster")
	}

	auth := kgo.SASL(plain.Auth{User: "pipeline", Pass: "s3cret"}.AsMechanism())
	s := New(kafkaconn.Config{Brokers: brokers, Extra: []kgo.Opt{auth}}, "in", "state", WithStableWait(time.Second))
	defer s.Close()
	if err := s.CheckPartitions(ctx); err != nil {
		t.Fatalf("authenticated store: %v", err)
	}
	if _, ok, err := s.Latest(ctx, 0); err != nil || ok {
		t.Fatalf("authenticated store, empty state: ok=%v err=%v", ok, err)
	}
	// The long-lived admin client is reused across calls and reopened after
	// Close.
	s.Close()
	if err := s.CheckPartitions(ctx); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}
