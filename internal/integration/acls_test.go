package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/topology"
)

// grantACLs reconciles the rig's ACLs with spec on the real broker, as
// 'pipeline topology apply --acls' does (through the plaintext listener,
// whose User:ANONYMOUS is the broker's super user), and removes them when
// the test ends.
func (r *rig) grantACLs(spec topology.ACLSpec) topology.ACLReport {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := topology.ApplyACLs(ctx, r.adm, r.topo, spec)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		acls, err := topology.DesiredACLs(r.topo, spec)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, a := range acls {
			r.adm.DeleteACLs(ctx, aclBuilder(a))
		}
	})
	return rep
}

// aclBuilder is the kadm builder of exactly one ACL.
func aclBuilder(a topology.ACL) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow(a.Principal).AllowHosts(a.Host).ResourcePatternType(a.Pattern).Operations(a.Operation)
	switch a.Resource {
	case kmsg.ACLResourceTypeTopic:
		b.Topics(a.Name)
	case kmsg.ACLResourceTypeGroup:
		b.Groups(a.Name)
	case kmsg.ACLResourceTypeTransactionalId:
		b.TransactionalIDs(a.Name)
	default:
		panic(fmt.Sprintf("ACL resource %v", a.Resource))
	}
	return b
}

// produceAs writes n synthetic events of subjects subjects (seed seed) to
// the rig's raw topic as conn's principal and returns how many it wrote.
func (r *rig) produceAs(ctx context.Context, conn kafkaconn.Config, seed uint64, subjects, n int) int {
	r.t.Helper()
	gen := synth.New(seed, subjects, time.Now())
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		ev := gen.Event(i)
		rec, err := r.enc.Record(r.cfg.Names.RawTopic, &ev)
		if err != nil {
			r.t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	cl, err := conn.NewClient()
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.ProduceAll(ctx, cl, recs); err != nil {
		r.t.Fatalf("producing raw events: %v", err)
	}
	return len(recs)
}

// consumeAs reads topic in consumer group group as conn's principal until
// it has want records or an error comes back (an authorisation failure is
// not retried by the client: it comes back at once).
func consumeAs(ctx context.Context, conn kafkaconn.Config, group, topic string, want int) (int, error) {
	cl, err := conn.NewClient(kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		for _, fe := range fs.Errors() {
			return n, fmt.Errorf("topic %q partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		n += fs.NumRecords()
	}
	return n, nil
}

// TestKafkaACLsOnRealBroker: the ACLs that 'topology apply --acls' derives
// are enough for the privacy processor and an analytics consumer on the
// real broker (StandardAuthorizer, no ACL means denied), and nothing
// more: the consumer principal, granted the analytics purpose only, is
// refused on another purpose's clean topic, on raw, quarantine and the
// consent log, on a group outside its prefix, and when it tries to write;
// the refusals name the authorisation failure and write nothing. A second
// apply changes nothing; an ACL added behind the file's back for a
// principal it names is deleted, one for a principal it does not name is
// reported as drift and left.
func TestKafkaACLsOnRealBroker(t *testing.T) {
	sasl, consumer, mtls := secured(t, "sasl"), secured(t, "consumer"), secured(t, "mtls")
	r := newRig(t)
	group := r.cfg.Names.GroupID + "-dashboards"
	spec := topology.ACLSpec{
		Processors: map[string]string{wiring.CommandPrivacy: processorPrincipal},
		Producers:  []string{producerPrincipal},
		Consumers:  []topology.ACLConsumer{{Principal: consumerPrincipal, Purposes: []string{"analytics"}, Groups: []string{group}}},
	}
	rep := r.grantACLs(spec)
	t.Logf("applied:\n%s", rep)
	if len(rep.Created) == 0 {
		t.Fatal("no ACL was created")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if again, err := topology.ApplyACLs(ctx, r.adm, r.topo, spec); err != nil || !again.NothingChanged() {
		t.Fatalf("a second apply changed something (%v):\n%s", err, again)
	}

	// The pipeline runs with these ACLs only.
	r.grantAll(ctx, 30, time.Now())
	r.produceAs(ctx, mtls, 51, 30, 150) // the producer principal
	plain := r.cfg.Kafka
	r.cfg.Kafka = sasl
	r.start()
	r.waitCaughtUp(2 * time.Minute)
	r.cfg.Kafka = plain
	analytics, marketing := wiring.CleanTopic(r.cfg, purpose.Analytics), wiring.CleanTopic(r.cfg, purpose.Marketing)
	published := len(r.read(analytics))
	if published == 0 {
		t.Fatal("nothing published on the analytics topic")
	}

	// The consumer reads its purpose, in its groups.
	n, err := consumeAs(ctx, consumer, group+"-1", analytics, published)
	if err != nil || n != published {
		t.Fatalf("the analytics consumer read %d of %d records of its own topic: %v", n, published, err)
	}
	// And nothing else.
	for _, topic := range []string{marketing, r.cfg.Names.RawTopic, r.cfg.Names.QuarantineTopic, r.consentTopic()} {
		_, err := kafkaio.ReadAll(ctx, consumer, topic)
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("the analytics consumer reading %s: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
		}
		t.Logf("reading %s refused: %v", topic, err)
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = consumeAs(cctx, consumer, group+"-2", topic, 1)
		ccancel()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("the analytics consumer's group reading %s: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
		}
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = consumeAs(cctx, consumer, "someone-elses-group", analytics, 1)
	ccancel()
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("a group outside the consumer's prefix: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	before := len(r.read(analytics))
	// Writing: it holds WRITE on no topic, so the broker refuses even its
	// idempotent producer id (CLUSTER_AUTHORIZATION_FAILED).
	refused(t, consumer, analytics, "AUTHORIZATION_FAILED", "")
	refused(t, consumer, r.cfg.Names.RawTopic, "AUTHORIZATION_FAILED", "")
	if after := len(r.read(analytics)); after != before {
		t.Fatalf("the refused consumer's writes reached the analytics topic (%d -> %d records)", before, after)
	}

	// Drift.
	extra := aclBuilder(topology.ACL{Principal: consumerPrincipal, Host: "*", Resource: kmsg.ACLResourceTypeTopic,
		Name: r.cfg.Names.RawTopic, Pattern: kadm.ACLPatternLiteral, Operation: kadm.OpRead})
	stranger := aclBuilder(topology.ACL{Principal: "User:intruder", Host: "*", Resource: kmsg.ACLResourceTypeTopic,
		Name: r.cfg.Names.RawTopic, Pattern: kadm.ACLPatternLiteral, Operation: kadm.OpRead})
	for _, b := range []*kadm.ACLBuilder{extra, stranger} {
		if _, err := r.adm.CreateACLs(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { r.adm.DeleteACLs(context.Background(), stranger) })
	rep, err = topology.ApplyACLs(ctx, r.adm, r.topo, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after ACLs were added behind the file's back:\n%s", rep)
	if len(rep.Deleted) != 1 || rep.Deleted[0].Principal != consumerPrincipal || rep.Deleted[0].Name != r.cfg.Names.RawTopic {
		t.Fatalf("deleted %v, want the consumer's READ on raw", rep.Deleted)
	}
	if len(rep.Drift) != 1 || rep.Drift[0].ACL.Principal != "User:intruder" || !strings.Contains(rep.String(), "User:intruder") {
		t.Fatalf("drift %v, want the intruder's READ on raw reported", rep.Drift)
	}
	if _, err := kafkaio.ReadAll(ctx, consumer, r.cfg.Names.RawTopic); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("after the reconcile the consumer reads raw: %v", err)
	}
}
