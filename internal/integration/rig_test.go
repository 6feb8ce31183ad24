package integration

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/metrics"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/topology"
)

// missing reports a service the test needs that is not there: a failure
// under CI (make test starts everything, so it is a bug), a loud skip
// elsewhere.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// services returns the brokers and Redis address, failing under CI when
// they are missing and skipping (loudly) elsewhere.
func services(t testing.TB) ([]string, string) {
	t.Helper()
	brokers, raddr := os.Getenv("PIPELINE_KAFKA_BROKERS"), os.Getenv("PIPELINE_REDIS_ADDR")
	if brokers == "" || raddr == "" {
		msg := "integration tests need a real Kafka and Redis: run 'make test', or eval \"$(scripts/services up)\" first"
		missing(t, msg)
	}
	return strings.Split(brokers, ","), raddr
}

// repoRoot finds the repository root (for scripts/services).
func repoRoot(t testing.TB) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
}

// servicesCmd runs scripts/services with the given arguments.
func servicesCmd(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts", "services"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/services %v: %v\n%s", args, err, out)
	}
}

// rig is one isolated pipeline on the shared services: its own topics,
// consumer group and Redis key prefix.
type rig struct {
	t       testing.TB
	cfg     config.Config
	rdb     *redis.Client
	cl      *kgo.Client
	adm     *kadm.Client
	pp      *wiring.Privacy
	reg     *prometheus.Registry
	logs    *pipelinetest.SyncBuffer
	enc     *producer.Encoder
	keys    *pseudonym.Keyring
	topo    topology.Topology
	runners []*runner.Runner
}

func newRig(t testing.TB) *rig {
	t.Helper()
	brokers, raddr := services(t)
	id := fmt.Sprintf("it-%s-%06x", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), rand.Uint32()&0xffffff)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers, cfg.Redis.Addr = brokers, raddr
	cfg.Names.RawTopic = id + ".raw"
	cfg.Names.CleanTopicTemplate = id + ".clean.{purpose}"
	cfg.Names.QuarantineTopic = id + ".quarantine"
	cfg.Names.GroupID = id + ".privacy"
	cfg.Consent.KeyPrefix = id + ":consent:"
	cfg.Names.StateTopicTemplate = id + ".state.{processor}"
	cfg.Names.AggTopicTemplate = id + ".agg.{purpose}.{name}"
	cfg.Names.KanonTopicTemplate = id + ".kanon.{purpose}"
	cfg.Names.KanonAggregatesGroup, cfg.Names.CastleGroup = id+".kanon-aggregates", id+".kanon-records"
	cfg.Names.KanonMergeGroup = id + ".kanon-merge"
	cfg.Names.ConsentTopic, cfg.Names.ConsentSyncGroup = id+".consent", id+".consent-sync"
	cfg.Names.KeysTopic, cfg.Names.KeySyncGroup, cfg.Keys.DataKeyPrefix = id+".keys", id+".key-sync", id+":dk:"
	cfg.Names.ErasuresTopic = id + ".erasures"
	cfg.Names.AuditTopic = id + ".audit"
	cfg.Names.RequestsTopic, cfg.Names.RequestsGroup, cfg.Requests.KeyPrefix = id+".requests", id+".requests", id+":rq:"
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	t.Cleanup(func() { rdb.Close() })
	cl, err := cfg.Kafka.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	keys, err := pseudonym.GenerateKeyring(purpose.Names(), "it")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, cfg: cfg, rdb: rdb, cl: cl, adm: kadm.NewClient(cl), logs: &pipelinetest.SyncBuffer{}, keys: keys}
	names, err := wiring.Names(cfg) // topics and groups as the commands name them
	if err != nil {
		t.Fatal(err)
	}
	r.topo = topology.Default(names, topology.Options{Partitions: 4, Replication: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := topology.Apply(ctx, r.adm, r.topo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var names []string
		for _, tp := range r.topo.Topics {
			names = append(names, tp.Name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r.adm.DeleteTopics(ctx, names...)
	})
	r.reg = prometheus.NewRegistry()
	r.pp, err = wiring.BuildPrivacy(ctx, cfg, wiring.Deps{Redis: rdb, Registry: r.reg, Keys: keys,
		Log: slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.pp.Store.MarkLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	r.enc, _ = producer.NewEncoder()
	return r
}

// start runs a runner (a processor replica) until the returned stop is called.
func (r *rig) start() (*runner.Runner, func()) {
	rc := wiring.RunnerConfig(r.cfg, r.cfg.Names.GroupID, r.cfg.Names.RawTopic, slog.New(slog.NewJSONHandler(r.logs, nil)))
	rc.MaxPollRecords = 2000
	rn, err := runner.New(rc, r.pp.Processor)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rn.Run(ctx); close(done) }()
	r.runners = append(r.runners, rn)
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(stop)
	return rn, stop
}

func (r *rig) produce(ctx context.Context, evs []producer.Event, raw ...[]byte) {
	r.t.Helper()
	var recs []*kgo.Record
	for i := range evs {
		rec, err := r.enc.Record(r.cfg.Names.RawTopic, &evs[i])
		if err != nil {
			r.t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	for _, b := range raw {
		recs = append(recs, &kgo.Record{Topic: r.cfg.Names.RawTopic, Value: b})
	}
	if err := kafkaio.ProduceAll(ctx, r.cl, recs); err != nil {
		r.t.Fatal(err)
	}
}

// caughtUp reports whether the group committed up to the raw topic's end.
func (r *rig) caughtUp(ctx context.Context) (bool, error) {
	return r.groupCaughtUp(ctx, r.cfg.Names.GroupID, r.cfg.Names.RawTopic)
}

// groupCaughtUp reports whether a group committed up to a topic's end.
func (r *rig) groupCaughtUp(ctx context.Context, group, topic string) (bool, error) {
	ends, err := r.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, err
	}
	committed, err := r.adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err
	}
	ok := true
	ends.Each(func(o kadm.ListedOffset) {
		c, found := committed.Lookup(o.Topic, o.Partition)
		if o.Offset > 0 && (!found || c.At < o.Offset) {
			ok = false
		}
	})
	return ok, nil
}

func (r *rig) waitCaughtUp(timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := r.caughtUp(ctx)
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the privacy processor did not catch up within %s (last error %v)", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *rig) cleanTopics() []string {
	var out []string
	for _, p := range purpose.All {
		out = append(out, wiring.CleanTopic(r.cfg, p))
	}
	return out
}

func (r *rig) read(topics ...string) []*kgo.Record {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recs, err := kafkaio.ReadAll(ctx, r.cfg.Kafka, topics...)
	if err != nil {
		r.t.Fatal(err)
	}
	return recs
}

func (r *rig) snapshot() map[string]float64 {
	s, err := metrics.Snapshot(r.reg)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// checkAccounting asserts the identity of SPEC 6 from the metrics, and that
// the topics hold exactly what the metrics say was published.
func (r *rig) checkAccounting(wantIn int) map[string]int {
	r.t.Helper()
	tally, err := privacy.ReadTally(r.reg)
	if err != nil {
		r.t.Fatal(err)
	}
	if tally.EventsIn != wantIn {
		r.t.Fatalf("events_in %d, produced %d", tally.EventsIn, wantIn)
	}
	if err := tally.Check(); err != nil {
		r.t.Error(err)
	}
	counts := map[string]int{}
	for _, rec := range r.read(r.cleanTopics()...) {
		counts[rec.Topic]++
	}
	for _, p := range purpose.All {
		if got, pub := counts[wiring.CleanTopic(r.cfg, p)], tally.Published[p.String()]; got != pub {
			r.t.Errorf("%s: topic holds %d records, metrics say %d published", p, got, pub)
		}
	}
	return counts
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
