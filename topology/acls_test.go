package topology

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

const exampleACLs = "../deploy/acls.example.json"

func testSpec(t *testing.T) ACLSpec {
	t.Helper()
	s, err := ReadACLSpec(exampleACLs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExampleACLFileValid: the checked-in example parses and validates
// against the default topology.
func TestExampleACLFileValid(t *testing.T) {
	s := testSpec(t)
	top := Default(DefaultNames(), Options{})
	if err := s.Validate(top); err != nil {
		t.Fatal(err)
	}
	if s.Admin != "User:pipeline-admin" || len(s.Consumers) != 2 || len(s.Processors) != len(top.Commands()) {
		t.Fatalf("example: %+v (commands %v)", s, top.Commands())
	}
}

// grants returns the operations principal holds on a literal topic.
func grants(acls []ACL, principal string, rt kmsg.ACLResourceType, name string) []kadm.ACLOperation {
	var ops []kadm.ACLOperation
	for _, a := range acls {
		if a.Principal == principal && a.Resource == rt && a.Name == name {
			ops = append(ops, a.Operation)
		}
	}
	return ops
}

func has(ops []kadm.ACLOperation, want ...kadm.ACLOperation) bool {
	for _, w := range want {
		if !slices.Contains(ops, w) {
			return false
		}
	}
	return true
}

// TestDesiredACLsProcessors (attack: a processor's principal given less
// than it needs stalls the pipeline; given more, a stolen credential reads
// more): the privacy principal reads raw and consent, writes every clean
// topic, quarantine, the data keys and the audit topic (never reads it),
// uses its group and transactional ids, and holds nothing else; kanon
// reads its state back; the consent API writes the consent log and the
// audit topic.
func TestDesiredACLsProcessors(t *testing.T) {
	n := DefaultNames()
	top := Default(n, Options{})
	acls, err := DesiredACLs(top, testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	const priv = "User:pipeline-privacy"
	topic := kmsg.ACLResourceTypeTopic
	for _, in := range []string{n.Raw, n.Consent} {
		if ops := grants(acls, priv, topic, in); !has(ops, kadm.OpRead, kadm.OpDescribe) || has(ops, kadm.OpWrite) {
			t.Errorf("privacy on %s: %v", in, ops)
		}
	}
	outs := []string{n.Quarantine, n.Keys, n.Audit}
	for _, p := range purpose.All {
		outs = append(outs, n.Clean(p))
	}
	for _, out := range outs {
		if ops := grants(acls, priv, topic, out); !has(ops, kadm.OpWrite, kadm.OpDescribe, kadm.OpDescribeConfigs) || has(ops, kadm.OpRead) {
			t.Errorf("privacy on %s: %v", out, ops)
		}
	}
	if ops := grants(acls, priv, kmsg.ACLResourceTypeGroup, n.Groups.Privacy); !slices.Equal(ops, []kadm.ACLOperation{kadm.OpRead}) {
		t.Errorf("privacy group: %v", ops)
	}
	if ops := grants(acls, priv, kmsg.ACLResourceTypeTransactionalId, n.Groups.Privacy); !has(ops, kadm.OpWrite, kadm.OpDescribe) {
		t.Errorf("privacy transactional ids: %v", ops)
	}
	for _, a := range acls {
		if a.Principal == priv && a.Resource == topic && !slices.Contains(append(outs, n.Raw, n.Consent), a.Name) {
			t.Errorf("privacy holds more: %s", a)
		}
		if a.Host != "*" || a.Permission != kmsg.ACLPermissionTypeAllow {
			t.Errorf("not ALLOW from *: %s", a)
		}
		if a.Resource == kmsg.ACLResourceTypeTransactionalId && a.Pattern != kadm.ACLPatternPrefixed {
			t.Errorf("transactional ids not prefixed: %s", a)
		}
	}
	for _, out := range []string{n.Consent, n.Audit} {
		if ops := grants(acls, "User:pipeline-consent", topic, out); !has(ops, kadm.OpWrite, kadm.OpDescribe) {
			t.Errorf("consent-api on %s: %v", out, ops)
		}
	}
	// kanon: reads its checkpoints back, writes the partials the merge reads.
	for _, st := range []string{n.State(KanonAggregates), n.State(KanonMerge)} {
		if ops := grants(acls, "User:pipeline-kanon", topic, st); !has(ops, kadm.OpRead, kadm.OpWrite, kadm.OpDescribe) {
			t.Errorf("kanon on %s: %v", st, ops)
		}
	}
	if ops := grants(acls, "User:pipeline-kanon", topic, n.Partials()); !has(ops, kadm.OpRead, kadm.OpWrite) {
		t.Errorf("kanon on partials: %v", ops)
	}
	// A producer writes raw, and nothing else.
	var prod []string
	for _, a := range acls {
		if a.Principal == "User:event-producer" {
			prod = append(prod, a.String())
		}
	}
	if want := []string{"ALLOW User:event-producer WRITE TOPIC raw.customer-events (literal)", "ALLOW User:event-producer DESCRIBE TOPIC raw.customer-events (literal)"}; !slices.Equal(prod, want) {
		t.Errorf("producer: %q", prod)
	}
	// consent-api and consent-sync share a principal: write and read consent,
	// no transactional ids (neither is transactional).
	if ops := grants(acls, "User:pipeline-consent", topic, n.Consent); !has(ops, kadm.OpRead, kadm.OpWrite) {
		t.Errorf("consent on %s: %v", n.Consent, ops)
	}
	for _, a := range acls {
		if a.Principal == "User:pipeline-consent" && a.Resource == kmsg.ACLResourceTypeTransactionalId {
			t.Errorf("consent holds transactional ids: %s", a)
		}
	}
}

// TestDesiredACLsConsumers (attack: an analytics consumer reads raw
// events, quarantined originals, consent, state or another purpose's
// data): for each purpose, a consumer reads exactly its purpose's clean,
// aggregate and k-anonymous topics, nothing restricted, nothing written.
func TestDesiredACLsConsumers(t *testing.T) {
	n := DefaultNames()
	top := Default(n, Options{})
	for _, p := range purpose.All {
		t.Run(p.String(), func(t *testing.T) {
			const who = "User:consumer"
			s := ACLSpec{Consumers: []ACLConsumer{{Principal: who, Purposes: []string{p.String()}, Groups: []string{"c-"}}}}
			acls, err := DesiredACLs(top, s)
			if err != nil {
				t.Fatal(err)
			}
			own := map[string]bool{n.Clean(p): true}
			for _, a := range n.Kanon.Aggregates {
				if a.Purpose == p.String() {
					own[a.TopicFrom(n.AggTemplate)] = true
				}
			}
			if r := n.Kanon.Records; r != nil && r.Purpose == p.String() {
				own[r.TopicFrom(n.KanonTemplate)] = true
			}
			for name := range own {
				if ops := grants(acls, who, kmsg.ACLResourceTypeTopic, name); !has(ops, kadm.OpRead, kadm.OpDescribe) {
					t.Errorf("own topic %s: %v", name, ops)
				}
			}
			for _, a := range acls {
				switch {
				case a.Resource == kmsg.ACLResourceTypeTopic && !own[a.Name]:
					tp, _ := top.Topic(a.Name)
					t.Errorf("consumer of %s gets %s (restricted %v, purpose %q)", p, a, tp.Restricted, tp.Purpose)
				case a.Operation != kadm.OpRead && a.Operation != kadm.OpDescribe:
					t.Errorf("consumer may %s", a)
				case a.Resource == kmsg.ACLResourceTypeGroup && (a.Name != "c-" || a.Pattern != kadm.ACLPatternPrefixed):
					t.Errorf("group: %s", a)
				case a.Resource == kmsg.ACLResourceTypeTransactionalId || a.Resource == kmsg.ACLResourceTypeCluster:
					t.Errorf("consumer gets %s", a)
				}
			}
			for _, tp := range top.Topics {
				if tp.Restricted && len(grants(acls, who, kmsg.ACLResourceTypeTopic, tp.Name)) > 0 {
					t.Errorf("restricted %s granted", tp.Name)
				}
			}
		})
	}
	// The examples' purposes own their k-anonymous topics.
	acls, _ := DesiredACLs(top, testSpec(t))
	if len(grants(acls, "User:analytics-team", kmsg.ACLResourceTypeTopic, n.Kanon.Aggregates[0].TopicFrom(n.AggTemplate))) == 0 ||
		len(grants(acls, "User:ml-training", kmsg.ACLResourceTypeTopic, n.Kanon.Records.TopicFrom(n.KanonTemplate))) == 0 {
		t.Error("consumers lack their k-anonymous topics")
	}
}

// TestConsumerNeverGetsRestricted (attack: a topic template or a
// declaration mistake publishes a restricted topic for a purpose, and the
// ACLs follow it to the consumer): the derivation refuses.
func TestConsumerNeverGetsRestricted(t *testing.T) {
	top := Default(DefaultNames(), Options{})
	for i := range top.Topics {
		if top.Topics[i].Name == DefaultRawTopic {
			top.Topics[i].Purpose = "analytics"
		}
	}
	s := ACLSpec{Consumers: []ACLConsumer{{Principal: "User:a", Purposes: []string{"analytics"}}}}
	if _, err := DesiredACLs(top, s); err == nil || !strings.Contains(err.Error(), "restricted topic "+DefaultRawTopic) {
		t.Fatalf("got %v", err)
	}
}

// TestACLSpecRefused (attack: a typo silently grants nothing, or too
// much): each bad file is refused with a message naming the problem.
func TestACLSpecRefused(t *testing.T) {
	top := Default(DefaultNames(), Options{})
	for _, c := range []struct{ name, file, want string }{
		{"unknown field", `{"processors":{"privacy":"User:p"},"consumers":[{"principal":"User:a","purposes":["analytics"],"grups":["a-"]}]}`, `unknown field "grups"`},
		{"unknown top-level field", `{"processor":{"privacy":"User:p"}}`, `unknown field "processor"`},
		{"bad principal", `{"processors":{"privacy":"pipeline-privacy"}}`, `processors: privacy: principal "pipeline-privacy" is not User:<name>`},
		{"empty principal", `{"consumers":[{"principal":"User:","purposes":["analytics"]}]}`, `has no name`},
		{"wildcard principal", `{"consumers":[{"principal":"User:*","purposes":["analytics"]}]}`, `User:* is every principal`},
		{"unknown purpose", `{"consumers":[{"principal":"User:a","purposes":["analytic"]}]}`, `unknown purpose "analytic"`},
		{"no purposes", `{"consumers":[{"principal":"User:a","purposes":[]}]}`, `no purposes`},
		{"unknown command", `{"processors":{"kanon-merge":"User:k"}}`, `unknown command "kanon-merge" (the commands of 'pipeline run': consent-api, consent-sync, kanon, kanon-records, privacy, requests)`},
		{"empty group prefix", `{"consumers":[{"principal":"User:a","purposes":["analytics"],"groups":[""]}]}`, `group prefix "" would match every consumer group`},
		{"group covers the pipeline's", `{"consumers":[{"principal":"User:a","purposes":["analytics"],"groups":["privacy-"]}]}`, `covers the pipeline's group privacy-pipeline-privacy`},
		{"overlapping consumers", `{"consumers":[{"principal":"User:a","purposes":["analytics"],"groups":["team-"]},{"principal":"User:b","purposes":["marketing"],"groups":["team-b"]}]}`, `overlap`},
		{"consumer is a processor", `{"processors":{"privacy":"User:p"},"consumers":[{"principal":"User:p","purposes":["analytics"]}]}`, `also the principal of privacy`},
		{"admin is a processor", `{"processors":{"privacy":"User:p"},"admin":"User:p"}`, `admin User:p is also the principal of privacy`},
		{"duplicate consumer", `{"consumers":[{"principal":"User:a","purposes":["analytics"]},{"principal":"User:a","purposes":["marketing"]}]}`, `listed twice`},
		{"prefix for a non-transactional command", `{"processors":{"consent-api":"User:c"},"transactional_id_prefix":{"consent-api":"c-"}}`, `command consent-api uses no transactions`},
		{"empty file", `{}`, `names no processor, consumer or producer`},
		{"producer is a consumer", `{"consumers":[{"principal":"User:a","purposes":["analytics"]}],"producers":["User:a"]}`, `producer User:a is also a consumer`},
		{"bad producer", `{"producers":["event-producer"]}`, `producers[0]: principal "event-producer" is not User:<name>`},
		{"trailing data", `{"processors":{"privacy":"User:p"}} {}`, `data after the JSON object`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseACLSpec([]byte(c.file))
			if err == nil {
				err = s.Validate(top)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
		})
	}
}

// TestTransactionalIDPrefixOverride: with PIPELINE_TRANSACTIONAL_ID
// set, the file's prefix replaces the group for every processor of the
// command (kanon runs two).
func TestTransactionalIDPrefixOverride(t *testing.T) {
	s, err := ParseACLSpec([]byte(`{"processors":{"kanon":"User:k"},"transactional_id_prefix":{"kanon":"kanon-pod-"}}`))
	if err != nil {
		t.Fatal(err)
	}
	acls, err := DesiredACLs(Default(DefaultNames(), Options{}), s)
	if err != nil {
		t.Fatal(err)
	}
	var txn []string
	for _, a := range acls {
		if a.Resource == kmsg.ACLResourceTypeTransactionalId {
			txn = append(txn, a.Name)
		}
	}
	slices.Sort(txn)
	if txn = slices.Compact(txn); len(txn) != 1 || txn[0] != "kanon-pod-" {
		t.Fatalf("transactional ids %v", txn)
	}
}

func newAdmin(t *testing.T, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func lines(acls []ACL) []string {
	var out []string
	for _, a := range acls {
		out = append(out, a.String())
	}
	return out
}

// TestApplyACLsReconciles (attacks: a re-run grants twice or churns; a
// purpose removed from the file keeps its access; an ACL someone gave
// User:intern on raw goes unnoticed): apply creates everything, a second
// apply changes nothing, removing a consumer's purpose deletes exactly
// those ACLs, and an unmanaged principal's ACL on raw and any DENY are
// reported as drift and left in place.
func TestApplyACLsReconciles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	adm := newAdmin(t, kgo.SeedBrokers(c.ListenAddrs()...))
	top := Default(DefaultNames(), Options{Partitions: 2, Replication: 1})
	spec := testSpec(t)
	desired, err := DesiredACLs(top, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's ACLs: the cluster's and another team's are not ours.
	other := func(b *kadm.ACLBuilder) {
		t.Helper()
		res, err := adm.CreateACLs(ctx, b)
		if err == nil {
			for _, r := range res {
				err = errors.Join(err, r.Err)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	other(kadm.NewACLs().Allow("User:other-team").Topics("other.topic").Operations(kadm.OpRead))
	other(kadm.NewACLs().Allow("User:pipeline-admin").Clusters().Operations(kadm.OpAlter))

	rep, err := ApplyACLs(ctx, adm, top, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created) != len(desired) || len(rep.Deleted) != 0 || len(rep.Drift) != 0 || rep.Unchanged != 0 {
		t.Fatalf("first apply:\n%s", rep)
	}
	if !strings.Contains(rep.String(), "created   ALLOW User:pipeline-privacy READ TOPIC raw.customer-events (literal)\n") {
		t.Errorf("report:\n%s", rep)
	}
	rep, err = ApplyACLs(ctx, adm, top, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.NothingChanged() || rep.Unchanged != len(desired) || len(rep.Drift) != 0 {
		t.Fatalf("second apply changed something:\n%s", rep)
	}
	if !strings.Contains(rep.String(), "nothing changed") {
		t.Errorf("report:\n%s", rep)
	}

	// Drift: User:intern reads raw, a prefixed grant covers the clean
	// topics, and a DENY on a consumer.
	other(kadm.NewACLs().Allow("User:intern").Topics(DefaultRawTopic).Operations(kadm.OpRead))
	other(kadm.NewACLs().Allow("User:intern").Topics("clean.").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead))
	other(kadm.NewACLs().Deny("User:analytics-team").Topics("clean.analytics.customer-events").Operations(kadm.OpWrite))
	// And a managed consumer holds more than the file says: deleted.
	other(kadm.NewACLs().Allow("User:analytics-team").Topics(DefaultQuarantineTopic).Operations(kadm.OpRead))

	// The analytics consumer loses its purpose: it now reads marketing.
	spec.Consumers[0].Purposes = []string{"marketing"}
	rep, err = ApplyACLs(ctx, adm, top, spec)
	if err != nil {
		t.Fatal(err)
	}
	deleted := strings.Join(lines(rep.Deleted), "\n")
	for _, want := range []string{
		"ALLOW User:analytics-team READ TOPIC clean.analytics.customer-events (literal)",
		"ALLOW User:analytics-team DESCRIBE TOPIC agg.analytics.events_by_segment (literal)",
		"ALLOW User:analytics-team READ TOPIC quarantine.customer-events (literal)",
	} {
		if !strings.Contains(deleted, want) {
			t.Errorf("not deleted: %s\n%s", want, rep)
		}
	}
	if len(rep.Deleted) != 5 || len(rep.Created) != 2 {
		t.Errorf("want 5 deleted (4 analytics, 1 quarantine), 2 created (marketing):\n%s", rep)
	}
	var drift []string
	for _, d := range rep.Drift {
		drift = append(drift, d.ACL.String())
	}
	wantDrift := []string{
		"ALLOW User:intern READ TOPIC clean. (prefixed)",
		"ALLOW User:intern READ TOPIC raw.customer-events (literal)",
		"DENY User:analytics-team WRITE TOPIC clean.analytics.customer-events (literal)",
	}
	slices.Sort(drift)
	if !slices.Equal(drift, wantDrift) {
		t.Errorf("drift %q, want %q\n%s", drift, wantDrift, rep)
	}
	if !strings.Contains(rep.String(), "DRIFT     ALLOW User:intern READ TOPIC raw.customer-events (literal): grants access") {
		t.Errorf("report:\n%s", rep)
	}
	// Drift is left in place; other teams' ACLs too; the next apply only
	// reports the drift again.
	all, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations().Allow().AllowHosts().Deny().DenyHosts())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, d := range all[0].Described {
		left = append(left, d.Principal+" "+d.Name)
	}
	for _, want := range []string{"User:intern raw.customer-events", "User:other-team other.topic", "User:pipeline-admin kafka-cluster"} {
		if !slices.Contains(left, want) {
			t.Errorf("%s was deleted", want)
		}
	}
	rep, err = ApplyACLs(ctx, adm, top, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.NothingChanged() || len(rep.Drift) != 3 {
		t.Fatalf("third apply:\n%s", rep)
	}
}

// TestApplyACLsAdminDataAccessIsDrift: the admin may hold the ACLs it
// needs to administer topics, never data access.
func TestApplyACLsAdminDataAccessIsDrift(t *testing.T) {
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	adm := newAdmin(t, kgo.SeedBrokers(c.ListenAddrs()...))
	for _, op := range []kadm.ACLOperation{kadm.OpAlterConfigs, kadm.OpRead} {
		if _, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:pipeline-admin").Topics(DefaultRawTopic).Operations(op)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := ApplyACLs(ctx, adm, Default(DefaultNames(), Options{}), testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Drift) != 1 || rep.Drift[0].ACL.Operation != kadm.OpRead || !strings.Contains(rep.String(), "admin     User:pipeline-admin") {
		t.Fatalf("report:\n%s", rep)
	}
}

func scramClient(t *testing.T, c *kfake.Cluster, user, pass string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// firstFetch polls until a record or an error arrives.
func firstFetch(ctx context.Context, cl *kgo.Client) (*kgo.Record, error) {
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, e := range fs.Errors() {
			return nil, e.Err
		}
		if rs := fs.Records(); len(rs) > 0 {
			return rs[0], nil
		}
	}
}

// TestACLsEnforcedOnKfake (attacks: the analytics team reads the AI
// training topic, or raw; a consumer joins a group outside its prefixes;
// and the other way round, the ACLs are too tight for the pipeline's own
// exactly-once path): on kfake with SASL/SCRAM and ACLs enforced, after
// ApplyACLs as the super user, the analytics principal reads its clean
// topic, gets TOPIC_AUTHORIZATION_FAILED on ai_training's and raw, and
// GROUP_AUTHORIZATION_FAILED outside its prefix; the privacy principal
// consumes raw and produces to clean in a transaction with its group and a
// runner-style transactional id.
func TestACLsEnforcedOnKfake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const mech = "SCRAM-SHA-256"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(mech, "pipeline-admin", "admin-pw"),
		kfake.User(mech, "analytics-team", "analytics-pw"),
		kfake.User(mech, "pipeline-privacy", "privacy-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	n := DefaultNames()
	top := Default(n, Options{Partitions: 1, Replication: 1})
	admCl := scramClient(t, c, "pipeline-admin", "admin-pw")
	adm := kadm.NewClient(admCl)
	if _, err := Apply(ctx, adm, top); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyACLs(ctx, adm, top, testSpec(t)); err != nil {
		t.Fatal(err)
	}
	// A principal without ALTER on the cluster cannot apply (nor read) the ACLs.
	if _, err := ApplyACLs(ctx, kadm.NewClient(scramClient(t, c, "analytics-team", "analytics-pw")), top, testSpec(t)); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Errorf("apply as a consumer: want CLUSTER_AUTHORIZATION_FAILED, got %v", err)
	}
	clean, other := n.Clean(purpose.Analytics), n.Clean(purpose.AITraining)
	for _, tp := range []string{clean, other, n.Raw} {
		if err := admCl.ProduceSync(ctx, &kgo.Record{Topic: tp, Value: []byte("v-" + tp)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	consume := func(topic, group string) (*kgo.Record, error) {
		opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
		if group != "" {
			opts = append(opts, kgo.ConsumerGroup(group))
		}
		cl := scramClient(t, c, "analytics-team", "analytics-pw", opts...)
		defer cl.Close()
		fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
		defer fcancel()
		return firstFetch(fctx, cl)
	}
	if r, err := consume(clean, "analytics-dashboard"); err != nil || string(r.Value) != "v-"+clean {
		t.Fatalf("analytics reading its own topic: %v %v", r, err)
	}
	for _, tp := range []string{other, n.Raw, n.Quarantine} {
		if _, err := consume(tp, ""); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Errorf("analytics reading %s: want TOPIC_AUTHORIZATION_FAILED, got %v", tp, err)
		}
	}
	if _, err := consume(clean, "ml-sneaky"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("analytics in group ml-sneaky: want GROUP_AUTHORIZATION_FAILED, got %v", err)
	}
	// Writing its own clean topic is refused too: an idempotent producer
	// gets no producer id (it may WRITE no topic), a plain one is refused
	// on the topic.
	w := scramClient(t, c, "analytics-team", "analytics-pw")
	if err := w.ProduceSync(ctx, &kgo.Record{Topic: clean, Value: []byte("forged")}).FirstErr(); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Errorf("analytics writing %s idempotently: want CLUSTER_AUTHORIZATION_FAILED, got %v", clean, err)
	}
	w = scramClient(t, c, "analytics-team", "analytics-pw", kgo.DisableIdempotentWrite())
	if err := w.ProduceSync(ctx, &kgo.Record{Topic: clean, Value: []byte("forged")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("analytics writing %s: want TOPIC_AUTHORIZATION_FAILED, got %v", clean, err)
	}

	// The privacy principal's exactly-once path: consume raw in its group,
	// produce to clean in a transaction, commit the offsets with it.
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(c.ListenAddrs()...), kgo.SASL(scram.Auth{User: "pipeline-privacy", Pass: "privacy-pw"}.AsSha256Mechanism()),
		kgo.TransactionalID(n.Groups.Privacy+"-host-1234abcd"), kgo.ConsumerGroup(n.Groups.Privacy),
		kgo.ConsumeTopics(n.Raw), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequireStableFetchOffsets(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	fctx, fcancel := context.WithTimeout(ctx, 15*time.Second)
	defer fcancel()
	var got *kgo.Record
	for got == nil {
		fs := sess.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatal("privacy principal read nothing from raw")
		}
		for _, e := range fs.Errors() {
			t.Fatalf("privacy principal consuming raw: %v", e.Err)
		}
		if rs := fs.Records(); len(rs) > 0 {
			got = rs[0]
		}
	}
	if err := sess.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := sess.ProduceSync(ctx, &kgo.Record{Topic: other, Value: []byte("clean")}).FirstErr(); err != nil {
		t.Fatalf("privacy principal producing to %s: %v", other, err)
	}
	if committed, err := sess.End(ctx, kgo.TryCommit); err != nil || !committed {
		t.Fatalf("privacy principal's transaction: committed %v, %v", committed, err)
	}
	// Its max.message.bytes lookup works too.
	padm := kadm.NewClient(scramClient(t, c, "pipeline-privacy", "privacy-pw"))
	if _, err := MaxMessageBytes(ctx, padm, clean, n.Quarantine); err != nil {
		t.Fatalf("privacy principal describing its outputs' configs: %v", err)
	}
}
