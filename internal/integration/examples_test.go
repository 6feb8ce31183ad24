package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/privacy-pipeline/pipeline/internal/codec/avroschema"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// The tests of the example clients in examples/: examples/python/producer.py
// writes Confluent-framed raw events; examples/python/consumer.py and
// examples/consumer (Go) read Confluent-framed topics read_committed and
// print the same JSON lines.

// exampleIdle is the --idle-timeout the tests give the example consumers:
// how long they wait for more records before they stop.
const exampleIdle = 6 * time.Second

// exampleRecord is one JSON line of the example consumers.
type exampleRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	KeyB64    string            `json:"key_b64,omitempty"`
	Headers   map[string]string `json:"headers"`
	Value     map[string]any    `json:"value"`
}

// kafkaBrokers returns PIPELINE_KAFKA_BROKERS, failing under CI when it is
// missing and skipping (loudly) elsewhere. Unlike services it needs no Redis.
func kafkaBrokers(t testing.TB) []string {
	t.Helper()
	brokers := os.Getenv("PIPELINE_KAFKA_BROKERS")
	if brokers == "" {
		msg := "the example tests need a real Kafka: run 'make test', or eval \"$(scripts/services up)\" first"
		missing(t, msg)
	}
	return strings.Split(brokers, ",")
}

// registryURL returns PIPELINE_SCHEMA_REGISTRY_URL (registryClient checks
// that it is set).
func registryURL(t testing.TB) string {
	t.Helper()
	registryClient(t)
	return os.Getenv("PIPELINE_SCHEMA_REGISTRY_URL")
}

// pythonPath returns PIPELINE_PYTHON, a python with confluent-kafka[avro]
// (scripts/pyenv), failing under CI when it is missing and skipping (loudly)
// elsewhere.
func pythonPath(t testing.TB) string {
	t.Helper()
	py := os.Getenv("PIPELINE_PYTHON")
	if py == "" {
		msg := `the example tests need PIPELINE_PYTHON, a python with confluent-kafka[avro]: export PIPELINE_PYTHON="$(scripts/pyenv)"`
		missing(t, msg)
	}
	return py
}

// exampleTopic creates a fresh topic for one test, deleted (with its
// TopicNameStrategy value subject) at the end.
func exampleTopic(t testing.TB, brokers []string, partitions int32) string {
	t.Helper()
	topic := fmt.Sprintf("it-ex-%s-%06x", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), rand.Uint32()&0xffffff)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		cl.Close()
		t.Fatalf("creating %s: %v", topic, err)
	}
	t.Cleanup(func() {
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, topic); err != nil {
			t.Logf("deleting %s: %v", topic, err)
		}
		reg := registryClient(t)
		subject := topic + "-value"
		if _, err := reg.DeleteSubject(ctx, subject, sr.SoftDelete); err == nil {
			if _, err := reg.DeleteSubject(ctx, subject, sr.HardDelete); err != nil {
				t.Logf("deleting %s: %v", subject, err)
			}
		}
	})
	return topic
}

// execConsumer runs an example consumer command and parses the JSON lines
// it prints; it returns its stderr too. It does not touch a testing.T, so
// tests can run several at once.
func execConsumer(cmd *exec.Cmd) ([]exampleRecord, string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	log := fmt.Sprintf("%s %s (%v):\n%s", filepath.Base(cmd.Args[0]), strings.Join(cmd.Args[1:], " "), time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil {
		return nil, log, fmt.Errorf("%s: %w", cmd.Args[0], err)
	}
	var recs []exampleRecord
	for i, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var r exampleRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, log, fmt.Errorf("output line %d %q: %w", i+1, line, err)
		}
		recs = append(recs, r)
	}
	return recs, log, nil
}

// consumerArgs are the flags both example consumers take.
func consumerArgs(t testing.TB, topic string, n int) []string {
	return []string{"--bootstrap", strings.Join(kafkaBrokers(t), ","), "--registry", registryURL(t),
		"--topic", topic, "--max", strconv.Itoa(n), "--idle-timeout", strconv.FormatFloat(exampleIdle.Seconds(), 'f', -1, 64)}
}

// pythonConsumerCmd is the command that runs examples/python/consumer.py.
func pythonConsumerCmd(t testing.TB, topic string, n int) *exec.Cmd {
	t.Helper()
	script := filepath.Join(repoRoot(t), "examples", "python", "consumer.py")
	return exec.Command(pythonPath(t), append([]string{script}, consumerArgs(t, topic, n)...)...)
}

// readAllWithPythonConsumer reads Confluent-framed topics with
// examples/python/consumer.py (read_committed, a fresh group, from the
// start), one consumer process per topic, all at once, each until it has n
// records or nothing arrived for exampleIdle, and returns what they
// printed, by topic. Give n above what you expect to see that nothing more
// arrives.
func readAllWithPythonConsumer(t testing.TB, n int, topics ...string) map[string][]exampleRecord {
	t.Helper()
	type result struct {
		topic string
		recs  []exampleRecord
		log   string
		err   error
	}
	results := make(chan result, len(topics))
	for _, topic := range topics {
		cmd := pythonConsumerCmd(t, topic, n)
		go func() {
			recs, log, err := execConsumer(cmd)
			results <- result{topic, recs, log, err}
		}()
	}
	out := map[string][]exampleRecord{}
	var errs []error
	for range topics {
		r := <-results
		t.Log(r.log)
		if r.err != nil {
			errs = append(errs, r.err)
		}
		out[r.topic] = r.recs
	}
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	return out
}

// buildGoConsumer builds examples/consumer into a temporary directory and
// returns the binary's path.
func buildGoConsumer(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consumer")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/consumer")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/consumer: %v\n%s", err, out)
	}
	return bin
}

// goConsumerCmd is the command that runs the examples/consumer binary that
// buildGoConsumer built; it reads as readAllWithPythonConsumer does.
func goConsumerCmd(t testing.TB, bin, topic string, n int) *exec.Cmd {
	return exec.Command(bin, consumerArgs(t, topic, n)...)
}

// normJSON is v as JSON with sorted keys and numbers as JSON reads them, so
// that equal values compare equal whoever wrote them.
func normJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(x)
	return string(b)
}

// producedEvent is what examples/python/producer.py reports per event.
type producedEvent struct {
	EventID   string `json:"event_id"`
	SubjectID string `json:"subject_id"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// runPythonProducer runs examples/python/producer.py against the real
// broker and registry, publishing to topic with the given arguments, and
// returns the events it reported, by event id.
func runPythonProducer(t testing.TB, py string, brokers []string, topic string, args ...string) map[string]producedEvent {
	t.Helper()
	script := filepath.Join(repoRoot(t), "examples", "python", "producer.py")
	cmd := exec.Command(py, append([]string{script, "--bootstrap", strings.Join(brokers, ","), "--registry", registryURL(t), "--topic", topic}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	t.Logf("producer.py: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("producer.py: %v", err)
	}
	want := map[string]producedEvent{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var p producedEvent
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("producer.py printed %q: %v", line, err)
		}
		want[p.EventID] = p
	}
	return want
}

// TestPythonProducerWritesConfluentRaw runs examples/python/producer.py and
// reads its records back with franz-go: each is magic byte 0, a schema id
// that the registry resolves to schemas/customer_event.avsc (same Parsing
// Canonical Form), then an Avro body that decodes to the events the script
// reported.
func TestPythonProducerWritesConfluentRaw(t *testing.T) {
	brokers, py, reg := kafkaBrokers(t), pythonPath(t), registryClient(t)
	topic := exampleTopic(t, brokers, 3)
	const count = 20
	prefix := fmt.Sprintf("it-ex-subject-%06x", rand.Uint32()&0xffffff)
	want := runPythonProducer(t, py, brokers, topic, "--count", strconv.Itoa(count), "--subject-prefix", prefix, "--seed", "7", "--jurisdiction", "pdpa")
	if len(want) != count {
		t.Fatalf("producer.py reported %d distinct events, want %d", len(want), count)
	}

	wantCanon, err := avroschema.Canonical(schemas.RawEventSchemaJSON())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	latest, err := reg.SchemaByVersion(ctx, topic+"-value", -1)
	if err != nil {
		t.Fatalf("the producer registered no schema under %s-value: %v", topic, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	codecs := map[uint32]*goavro.Codec{}
	seen := 0
	for seen < count {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading %s after %d records: %v", topic, seen, err)
		}
		for _, r := range fs.Records() {
			seen++
			where := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
			if len(r.Value) < 5 || r.Value[0] != 0 {
				t.Fatalf("%s: value does not start with magic 0 and a schema id: % x", where, r.Value[:min(len(r.Value), 8)])
			}
			id := binary.BigEndian.Uint32(r.Value[1:5])
			codec := codecs[id]
			if codec == nil {
				s, err := reg.SchemaByID(ctx, int(id))
				if err != nil {
					t.Fatalf("%s: schema id %d does not resolve: %v", where, id, err)
				}
				canon, err := avroschema.Canonical([]byte(s.Schema))
				if err != nil {
					t.Fatalf("%s: registry schema %d: %v", where, id, err)
				}
				if !bytes.Equal(canon, wantCanon) {
					t.Fatalf("%s: schema id %d has canonical form\n%s\nwant (schemas/customer_event.avsc)\n%s", where, id, canon, wantCanon)
				}
				if int(id) != latest.ID {
					t.Errorf("%s: schema id %d, but %s-value's latest is id %d", where, id, topic, latest.ID)
				}
				if codec, err = goavro.NewCodec(s.Schema); err != nil {
					t.Fatal(err)
				}
				codecs[id] = codec
				t.Logf("registry: %s-value id %d, canonical form matches schemas/customer_event.avsc", topic, id)
			}
			native, rest, err := codec.NativeFromBinary(r.Value[5:])
			if err != nil || len(rest) != 0 {
				t.Fatalf("%s: decoding the body: %v (%d bytes left)", where, err, len(rest))
			}
			ev := native.(map[string]any)
			id2, _ := ev["event_id"].(string)
			p, ok := want[id2]
			if !ok {
				t.Fatalf("%s: event %q was not reported by producer.py", where, id2)
			}
			delete(want, id2)
			if ev["subject_id"] != p.SubjectID || string(r.Key) != p.SubjectID || !strings.HasPrefix(p.SubjectID, prefix+"-") {
				t.Errorf("%s: subject %v key %q, producer.py reported %q", where, ev["subject_id"], r.Key, p.SubjectID)
			}
			if r.Partition != p.Partition || r.Offset != p.Offset {
				t.Errorf("%s: producer.py reported %s at %d@%d", where, id2, p.Partition, p.Offset)
			}
			if ev["jurisdiction"] != "pdpa" {
				t.Errorf("%s: jurisdiction %v, want pdpa", where, ev["jurisdiction"])
			}
			if et, ok := ev["event_time"].(time.Time); !ok || time.Since(et) > time.Hour || time.Until(et) > time.Minute {
				t.Errorf("%s: event_time %v, want about now", where, ev["event_time"])
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("events reported but not read: %v", want)
	}
}

// TestConsumersReadConfluentCommitted writes Confluent-framed records of the
// analytics clean schema in an aborted and then a committed transaction, and
// checks that examples/python/consumer.py and examples/consumer each print
// exactly the committed ones, with the values, keys and headers written, and
// that both print the same.
func TestConsumersReadConfluentCommitted(t *testing.T) {
	brokers, reg := kafkaBrokers(t), registryClient(t)
	pythonPath(t)
	topic := exampleTopic(t, brokers, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	schemaJSON, err := schemas.File("clean/analytics.customer-events.avsc")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := reg.CreateSchema(ctx, topic+"-value", sr.Schema{Type: sr.TypeAvro, Schema: string(schemaJSON)})
	if err != nil {
		t.Fatalf("registering the analytics schema under %s-value: %v", topic, err)
	}
	codec, err := goavro.NewCodec(string(schemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	var serde sr.Serde
	serde.Register(ss.ID, map[string]any{}, sr.EncodeFn(func(v any) ([]byte, error) { return codec.BinaryFromNative(nil, v) }))

	var fields []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(jsonField(t, schemaJSON, "fields"), &fields); err != nil {
		t.Fatal(err)
	}
	const committedN, abortedM = 12, 5
	base := time.Now().UTC().Truncate(time.Millisecond)
	type written struct {
		rec  *kgo.Record
		want map[string]any // the value as the consumers should print it
	}
	event := func(tag string, i int) written {
		id := fmt.Sprintf("%s-%02d", tag, i)
		at := base.Add(time.Duration(i) * time.Second)
		native := map[string]any{
			"event_id_pseudonym":   goavro.Union("string", id),
			"subject_id_pseudonym": goavro.Union("string", "subj-"+id),
			"event_type":           goavro.Union("string", "purchase"),
			"event_time":           goavro.Union("long.timestamp-millis", at),
			"jurisdiction":         goavro.Union("string", "gdpr"),
			"address_city":         goavro.Union("string", "Zürich"),
			"order_amount":         goavro.Union("double", 10.25+float64(i)),
			"message_redacted":     goavro.Union("string", `call [PHONE] <now> & "quote"`),
			"address_country":      nil,
		}
		want := map[string]any{
			"event_id_pseudonym": id, "subject_id_pseudonym": "subj-" + id, "event_type": "purchase",
			"event_time": at.UnixMilli(), "jurisdiction": "gdpr", "address_city": "Zürich",
			"order_amount": 10.25 + float64(i), "message_redacted": `call [PHONE] <now> & "quote"`,
		}
		for _, f := range fields { // every other field is null
			if _, ok := want[f.Name]; !ok {
				want[f.Name] = nil
			}
		}
		value, err := serde.Encode(native)
		if err != nil {
			t.Fatalf("encoding %s: %v", id, err)
		}
		key := []byte("subj-" + id)
		if i%4 == 3 {
			key = []byte{0xff, 0xfe, byte(i)} // not UTF-8: printed as key_b64
		}
		return written{rec: &kgo.Record{Topic: topic, Key: key, Value: value,
			Headers: []kgo.RecordHeader{{Key: "pp-policy-version", Value: []byte("it-1")}, {Key: "pp-key-id", Value: []byte("analytics-it")}}}, want: want}
	}

	tx, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(fmt.Sprintf("it-ex-tx-%06x", rand.Uint32()&0xffffff)), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	transaction := func(recs []*kgo.Record, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := tx.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("producing in the transaction: %v", err)
		}
		if err := tx.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("ending the transaction (commit=%v): %v", commit, err)
		}
	}
	var aborted, committed []*kgo.Record
	wantByID := map[string]written{}
	for i := range abortedM {
		aborted = append(aborted, event("aborted", i).rec)
	}
	for i := range committedN {
		w := event("committed", i)
		committed = append(committed, w.rec)
		wantByID[w.want["event_id_pseudonym"].(string)] = w
	}
	transaction(aborted, kgo.TryAbort) // first, so a consumer that reads them meets them before the committed ones
	transaction(committed, kgo.TryCommit)
	t.Logf("wrote %d records in an aborted and %d in a committed transaction to %s (schema id %d)", abortedM, committedN, topic, ss.ID)

	// Both at once (each waits exampleIdle at the end), asking for more than
	// the committed records so that any aborted one would show.
	cmds := []*exec.Cmd{pythonConsumerCmd(t, topic, committedN+abortedM), goConsumerCmd(t, buildGoConsumer(t), topic, committedN+abortedM)}
	outs := make([][]exampleRecord, len(cmds))
	logs, errs := make([]string, len(cmds)), make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i], logs[i], errs[i] = execConsumer(cmd) }()
	}
	wg.Wait()
	for i := range cmds {
		t.Log(logs[i])
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	py, gor := outs[0], outs[1]

	check := func(name string, recs []exampleRecord) {
		t.Helper()
		if len(recs) != committedN {
			t.Errorf("%s printed %d records, want the %d committed ones", name, len(recs), committedN)
		}
		got := map[string]bool{}
		for _, r := range recs {
			id, _ := r.Value["event_id_pseudonym"].(string)
			w, ok := wantByID[id]
			if !ok {
				t.Errorf("%s printed %s/%d@%d with event %q, not a committed one", name, r.Topic, r.Partition, r.Offset, id)
				continue
			}
			if got[id] {
				t.Errorf("%s printed %s twice", name, id)
			}
			got[id] = true
			if g, e := normJSON(t, r.Value), normJSON(t, w.want); g != e {
				t.Errorf("%s: value of %s\n got %s\nwant %s", name, id, g, e)
			}
			if r.Topic != topic {
				t.Errorf("%s: %s: topic %q", name, id, r.Topic)
			}
			if utf8Key := string(w.rec.Key); w.rec.Key[0] == 0xff {
				if r.Key != nil || r.KeyB64 == "" {
					t.Errorf("%s: %s: non-UTF-8 key printed as key=%v key_b64=%q", name, id, r.Key, r.KeyB64)
				}
			} else if r.Key == nil || *r.Key != utf8Key {
				t.Errorf("%s: %s: key %v, want %q", name, id, r.Key, utf8Key)
			}
			if want := map[string]string{"pp-policy-version": "it-1", "pp-key-id": "analytics-it"}; !reflect.DeepEqual(r.Headers, want) {
				t.Errorf("%s: %s: headers %v, want %v", name, id, r.Headers, want)
			}
		}
	}
	check("consumer.py", py)
	check("examples/consumer", gor)

	// Both print the same lines (ordered by partition and offset).
	order := func(rs []exampleRecord) {
		sort.Slice(rs, func(i, j int) bool {
			return rs[i].Partition < rs[j].Partition || rs[i].Partition == rs[j].Partition && rs[i].Offset < rs[j].Offset
		})
	}
	order(py)
	order(gor)
	if a, b := normJSON(t, py), normJSON(t, gor); a != b {
		t.Errorf("consumer.py and examples/consumer disagree:\n py %s\n go %s", a, b)
	}
}

// jsonField is the raw JSON of one top-level field of a JSON object.
func jsonField(t testing.TB, doc []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}

// TestConsumersFailOnUnframedRecords checks that both example consumers exit
// non-zero, saying why, on a record that is not Confluent-framed (here a
// bare Avro single-object encoding header) and on one whose schema id the
// registry does not know.
func TestConsumersFailOnUnframedRecords(t *testing.T) {
	brokers := kafkaBrokers(t)
	pythonPath(t)
	bin := buildGoConsumer(t)
	for _, tc := range []struct{ name, value, want string }{
		{"single-object", "\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08body", ""},
		{"unknown-id", "\x00\x7f\xff\xff\xf0body", "2147483632"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := exampleTopic(t, brokers, 1)
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte(tc.value)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			cmds := []*exec.Cmd{pythonConsumerCmd(t, topic, 1), goConsumerCmd(t, bin, topic, 1)}
			var wg sync.WaitGroup
			logs, errs := make([]string, len(cmds)), make([]error, len(cmds))
			for i, cmd := range cmds {
				wg.Add(1)
				go func() { defer wg.Done(); _, logs[i], errs[i] = execConsumer(cmd) }()
			}
			wg.Wait()
			for i := range cmds {
				t.Log(logs[i])
				if errs[i] == nil {
					t.Errorf("%s exited 0 on a record it cannot decode", cmds[i].Args[0])
				} else if !strings.Contains(logs[i], topic+"/0@0") || !strings.Contains(logs[i], tc.want) {
					t.Errorf("%s: stderr does not name the record (%s/0@0) and %q", cmds[i].Args[0], topic, tc.want)
				}
			}
		})
	}
}
