package integration

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keyredis"
	"github.com/privacy-pipeline/pipeline/internal/keys/keysync"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
)

// keyCompactionBound is the bound stated in topology.Default for a
// shredded key's wrapped bytes to be gone from the key topic, from its
// tombstone's commit: the active segment rolls on the first append (a
// heartbeat, every heartbeat) once older than min(segment.ms,
// max.compaction.lag.ms); the rolled segment is due once its first record
// is older than max.compaction.lag.ms; the cleaner looks every
// log.cleaner.backoff.ms; an open transaction holds it back at most
// txnTimeout.
func keyCompactionBound(segment, maxLag, heartbeat, backoff, txnTimeout time.Duration) time.Duration {
	return max(min(segment, maxLag)+heartbeat, maxLag) + backoff + txnTimeout
}

// TestKeyCompactionBoundOnRealServices measures, on the real broker, how
// long a shredded data key's wrapped bytes stay in the key topic's log
// after its tombstone. Two compacted topics with small settings
// (segment.ms = max.compaction.lag.ms = 3s, delete.retention.ms 1s): one
// followed by a key sync with its heartbeat on (every 1s), one with
// nothing else ever written. The attack: a key shredded on a quiet
// partition, whose active segment Kafka never rolls without an append and
// never compacts, so the "crypto-shredded" key would stay readable in the
// log indefinitely. Asserted: on the heartbeat topic the wrapped bytes are
// gone (read from the beginning) within keyCompactionBound of the
// settings and the broker's log.cleaner.backoff.ms (read from the
// broker, not assumed), the heartbeats counted; on the quiet topic they
// are still there after that bound.
func TestKeyCompactionBoundOnRealServices(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const segment, maxLag, heartbeat = 3 * time.Second, 3 * time.Second, time.Second
	backoff := brokerCleanerBackoff(t, r)
	bound := keyCompactionBound(segment, maxLag, heartbeat, backoff, r.cfg.Runner.TransactionTimeout)

	beating, quiet := r.cfg.Names.KeysTopic+".hb", r.cfg.Names.KeysTopic+".quiet"
	configs := map[string]*string{}
	for k, v := range map[string]string{"cleanup.policy": "compact", "segment.ms": ms(segment), "max.compaction.lag.ms": ms(maxLag),
		"min.compaction.lag.ms": "0", "delete.retention.ms": "1000"} {
		configs[k] = &v
	}
	for _, name := range []string{beating, quiet} {
		res, err := r.adm.CreateTopic(ctx, 1, 1, configs, name)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.adm.DeleteTopics(context.Background(), name) })
	}

	// A real wrapped key, made as the processor makes one.
	_, _, kms := pipelinetest.EncryptingPolicy(t)
	store, err := keyredis.New(keyredis.Config{Redis: r.rdb, Prefix: r.cfg.Keys.DataKeyPrefix, KMS: kms})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.MarkLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	id := "dk1.personalization.it.compaction-subject"
	var lk subjectkey.Lookup
	if err := store.Get(ctx, []string{id}, &lk); err != nil || len(lk.Unlogged) != 1 {
		t.Fatalf("a new key: %v (%d unlogged)", err, len(lk.Unlogged))
	}
	wrapped, err := lk.Unlogged[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}

	// The key sync with its heartbeat follows the first topic.
	reg := prometheus.NewRegistry()
	ks, err := keysync.New(keysync.Config{Kafka: r.cfg.Kafka, Topic: beating, Group: r.cfg.Names.KeySyncGroup, Store: store,
		Metrics: keysync.NewMetrics(reg), Heartbeat: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- ks.Run(sctx) }()
	defer func() { scancel(); <-sdone }()

	// The key, then (a moment later, as an erasure would) its tombstone.
	cl, err := r.cfg.Kafka.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, topic := range []string{beating, quiet} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(id), Value: wrapped}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: beating, Key: []byte(id)}, &kgo.Record{Topic: quiet, Key: []byte(id)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tombstoned := time.Now()
	holds := func(topic string) bool {
		recs, err := kafkaio.ReadAll(ctx, r.cfg.Kafka, topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if bytes.Equal(rec.Value, wrapped) {
				return true
			}
		}
		return false
	}
	if !holds(beating) || !holds(quiet) {
		t.Fatal("the wrapped key is not in the log after its tombstone: nothing to measure")
	}
	// Poll the beating topic from the beginning until the bytes are gone
	// (the deadline is generous: the assertion is against the bound).
	for holds(beating) {
		if time.Since(tombstoned) > 3*bound {
			t.Fatalf("the wrapped key still in the log %v after its tombstone (bound %v)", time.Since(tombstoned).Round(time.Millisecond), bound)
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(tombstoned)
	snap, _ := metrics.Snapshot(reg)
	t.Logf("wrapped key gone from the log %v after its tombstone (bound %v = max(min(segment.ms %v, max.compaction.lag.ms %v) + heartbeat %v, max.compaction.lag.ms) + log.cleaner.backoff.ms %v + transaction timeout %v); %v heartbeats written",
		took.Round(time.Millisecond), bound, segment, maxLag, heartbeat, backoff, r.cfg.Runner.TransactionTimeout, snap["pipeline_key_sync_heartbeats_total"])
	if took > bound {
		t.Errorf("the wrapped key stayed %v, over the bound %v", took.Round(time.Millisecond), bound)
	}
	if snap["pipeline_key_sync_heartbeats_total"] == 0 {
		t.Error("no heartbeat counted")
	}
	// Without the heartbeat, past the same bound (less the transaction
	// allowance: no transaction is open here), the quiet topic still holds
	// the bytes: its active segment never rolled.
	if wait := bound - r.cfg.Runner.TransactionTimeout - time.Since(tombstoned); wait > 0 {
		time.Sleep(wait)
	}
	if !holds(quiet) {
		t.Error("the quiet topic lost the wrapped key without a heartbeat: the measurement proves nothing about the heartbeat")
	}
}

// brokerCleanerBackoff reads log.cleaner.backoff.ms from the broker.
func brokerCleanerBackoff(t *testing.T, r *rig) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bs, err := r.adm.ListBrokers(ctx)
	if err != nil || len(bs) == 0 {
		t.Fatalf("list brokers: %v", err)
	}
	rcs, err := r.adm.DescribeBrokerConfigs(ctx, bs.NodeIDs()...)
	if err != nil {
		t.Fatal(err)
	}
	longest := time.Duration(0)
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "log.cleaner.backoff.ms" && c.Value != nil {
				n, err := strconv.ParseInt(*c.Value, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				longest = max(longest, time.Duration(n)*time.Millisecond)
			}
		}
	}
	if longest == 0 {
		t.Fatal("the broker did not report log.cleaner.backoff.ms")
	}
	return longest
}

func ms(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }
