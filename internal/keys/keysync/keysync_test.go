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

// TestHeartbeatsOnEveryPartition: with Heartbeat set, the key sync writes
// a tombstone under HeartbeatKey to every partition of the key topic at
// each interval (counted), and skips its own (and any other replica's)
// heartbeats when it applies the topic: nothing is shredded, stored or
// rejected for them. The attack: a quiet partition whose active segment
// never rolls, so a shredded key's wrapped bytes are never compacted away.
func TestHeartbeatsOnEveryPartition(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "privacy.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store, _ := keyredis.New(keyredis.Config{Redis: rdb})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store.MarkLoaded(ctx)
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	reg := prometheus.NewRegistry()
	s, err := New(Config{Kafka: conn, Topic: "privacy.keys", Group: "key-sync", Store: store, Metrics: NewMetrics(reg), Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	snap := func() map[string]float64 { m, _ := metrics.Snapshot(reg); return m }
	waitFor(t, "two heartbeat rounds", func() bool { return snap()["pipeline_key_sync_heartbeats_total"] >= 6 })
	waitFor(t, "the sync following", s.Ready)
	recs, err := kafkaio.ReadAll(ctx, conn, "privacy.keys")
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int32]bool{}
	for _, r := range recs {
		if string(r.Key) != HeartbeatKey || r.Value != nil {
			t.Fatalf("a record other than a heartbeat tombstone: %q", r.Key)
		}
		parts[r.Partition] = true
	}
	if len(parts) != 3 {
		t.Fatalf("heartbeats on %d of 3 partitions", len(parts))
	}
	cancel()
	<-done
	m := snap()
	if m["pipeline_key_sync_shredded_total"] != 0 || m["pipeline_key_sync_rejected_total"] != 0 || m["pipeline_key_sync_stored_total"] != 0 {
		t.Fatalf("heartbeats were applied as keys: %v", m)
	}
	if st, _ := store.State(context.Background(), HeartbeatKey); st != "missing" {
		t.Fatalf("the heartbeat key is %s in Redis", st)
	}
}
