package keysync

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSyncStoresShredsAndRebuilds: key records become logged in Redis, a
// tombstone shreds its key, a record that is not a wrapped key (or stored
// under another key's id) is counted and skipped; when Redis loses its
// data the sync rebuilds it from the topic (the shredded key stays
// shredded) and sets the loaded marker, and only then may keys be served.
func TestSyncStoresShredsAndRebuilds(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "privacy.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	kek := filepath.Join(t.TempDir(), "kek.json")
	subjectkey.GenerateKEKFile(kek)
	kms, err := subjectkey.LoadKEKFile(kek)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := keyredis.New(keyredis.Config{Redis: rdb, KMS: kms})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store.MarkLoaded(ctx)
	ids := []string{"dk1.analytics.k1.a", "dk1.analytics.k1.b", "dk1.analytics.k1.c"}
	var lk subjectkey.Lookup
	if err := store.Get(ctx, ids, &lk); err != nil {
		t.Fatal(err)
	}
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	cl, _ := conn.NewClient()
	defer cl.Close()
	var recs []*kgo.Record
	for _, w := range lk.Unlogged {
		b, _ := w.Marshal()
		recs = append(recs, &kgo.Record{Topic: "privacy.keys", Key: []byte(w.ID), Value: b})
	}
	moved, _ := lk.Unlogged[0].Marshal()
	recs = append(recs,
		&kgo.Record{Topic: "privacy.keys", Key: []byte("dk1.analytics.k1.junk"), Value: []byte("not a key")},
		&kgo.Record{Topic: "privacy.keys", Key: []byte("dk1.analytics.k1.other"), Value: moved},
		&kgo.Record{Topic: "privacy.keys", Key: []byte(ids[2])}) // tombstone
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(Config{Kafka: conn, Topic: "privacy.keys", Group: "key-sync", Store: store, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	state := func(id string) string { st, _ := store.State(ctx, id); return st }
	waitFor(t, "the keys logged and the tombstone applied", func() bool {
		return state(ids[0]) == "logged" && state(ids[1]) == "logged" && state(ids[2]) == "shredded"
	})
	snap, _ := metrics.Snapshot(reg)
	if snap["pipeline_key_sync_rejected_total"] != 2 {
		t.Fatalf("rejected %v, want the junk and the moved record", snap["pipeline_key_sync_rejected_total"])
	}
	if state("dk1.analytics.k1.other") != "missing" {
		t.Fatal("a wrapped key stored under another id")
	}

	mr.FlushAll() // Redis loses everything
	if err := store.Get(ctx, ids[:1], &lk); err == nil {
		t.Fatal("keys served from a flushed Redis")
	}
	waitFor(t, "the rebuild", func() bool {
		ok, _ := store.Loaded(ctx)
		return ok && state(ids[0]) == "logged" && state(ids[2]) == "shredded"
	})
	if err := store.Get(ctx, ids, &lk); err != nil || lk.Keys[0] == nil || !lk.Shredded[2] || lk.Created != 0 {
		t.Fatalf("after the rebuild: %v, created %d", err, lk.Created)
	}
	cancel()
	<-done
}
