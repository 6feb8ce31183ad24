package kafkaio

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
)

// TestReadAllReportsATopicItCannotList: a topic that cannot be listed
// (here missing; on a secured cluster, not authorised) is an error, never
// an empty read that a leak check would take for "nothing there".
func TestReadAllReportsATopicItCannotList(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	cl, err := conn.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ProduceAll(ctx, cl, []*kgo.Record{{Topic: "t", Value: []byte("a")}, {Topic: "t", Value: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadAll(ctx, conn, "t")
	if err != nil || len(recs) != 2 {
		t.Fatalf("read %d records: %v", len(recs), err)
	}
	if _, err := ReadAll(ctx, conn, "t", "missing"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("reading a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}
