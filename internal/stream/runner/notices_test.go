package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/processors"
)

// noticesCluster starts a kfake cluster with "in" and "out" of partitions
// each and "notes" of notePartitions, and one record per partition of "in"
// and "notes".
func noticesCluster(t *testing.T, partitions, notePartitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "in", "out"), kfake.SeedTopics(notePartitions, "notes"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for p := range partitions {
		recs = append(recs, &kgo.Record{Topic: "in", Partition: p, Value: []byte("event")})
	}
	for p := range notePartitions {
		recs = append(recs, &kgo.Record{Topic: "notes", Partition: p, Value: []byte("notice")})
	}
	if err := kafkaio.ProduceAll(context.Background(), cl, recs); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

// TestNoticesAreCoPartitionedWithTheInput: with Notices set, two replicas
// of a group each own the same partition numbers of both topics (the range
// balancer), a notice reaches the batch of its partition, and its offset
// is committed with the batch. The attack it rules out: a notice read by
// a replica that does not hold its subject's state would be applied
// nowhere, and the subject's held records released later. (With three
// partitions per topic the cooperative sticky balancer splits them
// unaligned - one member gets in 0 and 1 but notes 0 - so this test fails
// without the range balancer.)
func TestNoticesAreCoPartitionedWithTheInput(t *testing.T) {
	brokers := noticesCluster(t, 3, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probes := []*probe{{}, {}}
	for i, p := range probes {
		r, _ := newRunner(t, brokers, p, &pipelinetest.SyncBuffer{}, func(c *Config) {
			c.Notices = "notes"
			c.TransactionalID = fmt.Sprintf("notices-%d", i)
		})
		go func() { _ = r.Run(ctx) }()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the group did not settle with two members owning partitions of both topics")
		}
		time.Sleep(100 * time.Millisecond)
		groups, err := adm.DescribeGroups(context.Background(), "g")
		if err != nil {
			continue
		}
		g := groups["g"]
		if g.State != "Stable" || len(g.Members) != 2 {
			continue
		}
		ok := true
		for _, m := range g.Members {
			a, _ := m.Assigned.AsConsumer()
			if a == nil {
				ok = false
				break
			}
			parts := map[string][]int32{}
			for _, tp := range a.Topics {
				parts[tp.Topic] = slices.Sorted(slices.Values(tp.Partitions))
			}
			if len(parts["in"]) == 0 {
				ok = false
				break
			}
			if !slices.Equal(parts["in"], parts["notes"]) {
				t.Fatalf("member %s owns %v of in but %v of notes", m.MemberID, parts["in"], parts["notes"])
			}
		}
		if ok {
			break
		}
	}
	// Every record of both topics is committed once: the notices' offsets
	// are the group's too.
	for {
		if time.Now().After(deadline) {
			t.Fatal("the records of both topics were not all committed")
		}
		os, err := adm.FetchOffsets(context.Background(), "g")
		done := err == nil
		for _, topic := range []string{"in", "notes"} {
			for p := range int32(3) {
				if o, ok := os.Lookup(topic, p); !ok || o.At != 1 {
					done = false
				}
			}
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := map[string]int{}
	for _, p := range probes {
		p.mu.Lock()
		for _, batch := range p.processed {
			for _, r := range batch {
				seen[fmt.Sprintf("%s/%d", r.Topic, r.Partition)]++
			}
		}
		p.mu.Unlock()
	}
	for _, topic := range []string{"in", "notes"} {
		for p := range 3 {
			if seen[fmt.Sprintf("%s/%d", topic, p)] == 0 {
				t.Fatalf("no worker got %s/%d: %v", topic, p, seen)
			}
		}
	}
}

// TestNoticesWithAnotherPartitionCountRefuseToRun: a notices topic that is
// not co-partitioned with the input ends the session with a clear error
// before anything is consumed (the runner retries with backoff, so
// nothing is lost once the operator fixes it).
func TestNoticesWithAnotherPartitionCountRefuseToRun(t *testing.T) {
	brokers := noticesCluster(t, 4, 3)
	p := &probe{}
	r, _ := newRunner(t, brokers, p, &pipelinetest.SyncBuffer{}, func(c *Config) { c.Notices = "notes" })
	err := r.session(context.Background(), []processors.Worker{p})
	if err == nil || !strings.Contains(err.Error(), "co-partitioned") {
		t.Fatalf("session error %v, want a co-partitioning error", err)
	}
	if len(p.processed) != 0 {
		t.Fatal("records were processed")
	}
	if _, err := New(Config{Conn: r.cfg.Conn, Group: "g", Input: "in", Notices: "in"}, p); err == nil {
		t.Fatal("Notices equal to Input accepted")
	}
}
