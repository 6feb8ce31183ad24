package runner

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/processors"
)

// storeEcho is echo with a state store it reads before each batch, so a
// batch commits only if the store's clients reach the cluster too.
type storeEcho struct {
	echo
	store processors.StateStore
	reads atomic.Int64
}

func (e *storeEcho) StateTopic() string               { return "state" }
func (e *storeEcho) UseStore(s processors.StateStore) { e.store = s }
func (e *storeEcho) NewWorker() processors.Worker     { return e }
func (e *storeEcho) Process(ctx context.Context, in []processors.Record, out *processors.Batch) error {
	if _, _, err := e.store.Latest(ctx, in[0].Partition); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	e.reads.Add(1)
	return e.echo.Process(ctx, in, out)
}

// TestConnectionReachesSessionAndStore: on a cluster that requires SASL,
// the one connection in Config.Conn (credentials in Extra here, from the
// environment later) reaches the transactional session and the state
// store's clients: the runner checks the state topic, reads checkpoints
// and commits.
func TestConnectionReachesSessionAndStore(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "pipeline", "s3cret"),
		kfake.SeedTopics(2, "in", "out", "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := kafkaconn.Config{Brokers: c.ListenAddrs(),
		Extra: []kgo.Opt{kgo.SASL(plain.Auth{User: "pipeline", Pass: "s3cret"}.AsMechanism())}}
	cl, err := conn.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := 0; i < 50; i++ {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte(fmt.Sprint(i % 5)), Value: []byte(fmt.Sprint(i))})
	}
	if err := kafkaio.ProduceAll(context.Background(), cl, recs); err != nil {
		t.Fatal(err)
	}
	p := &storeEcho{}
	r, err := New(Config{Conn: conn, Group: "g", Input: "in", Workers: 1}, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for r.Committed() == 0 && time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("runner stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if r.Committed() == 0 || p.reads.Load() == 0 {
		t.Fatalf("committed %d batches, %d store reads", r.Committed(), p.reads.Load())
	}
	got, err := kafkaio.ReadAll(context.Background(), conn, "out")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("nothing read back from out")
	}
}
