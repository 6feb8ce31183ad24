package integration

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keysync"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
)

// TestDataKeysRacingReplicasOnRealServices: three privacy replicas (each
// its own key store, Redis connection and transactional runner) process
// events of 120 subjects that have no key yet, all at once, on the real
// broker and redis-server, with the key sync running; each subject's
// events are spread over every partition, so the replicas race to create
// its key. Every subject gets
// exactly one data key for personalization (one distinct wrapped key per
// id on privacy.keys, however often its record was written), every
// personalization record names it in pp-data-key and its encrypted and
// tokenized fields decrypt with the key read back from privacy.keys
// (through the key-encryption key), no plaintext e-mail or phone reaches
// the topic, and the key sync marks every key logged in Redis.
func TestDataKeysRacingReplicasOnRealServices(t *testing.T) {
	r := newRig(t)
	pol, kek, kms := pipelinetest.EncryptingPolicy(t)
	r.cfg.Privacy.PolicyFile, r.cfg.Keys.KEKFile = pol, kek
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The key sync: rebuilds the (empty) cache, sets the loaded marker,
	// follows the topic.
	ropts, err := wiring.RedisOptions(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	syncStore, err := wiring.DataKeys(r.cfg, rdb)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keysync.New(keysync.Config{Kafka: r.cfg.Kafka, Topic: r.cfg.Names.KeysTopic, Group: r.cfg.Names.KeySyncGroup, Store: syncStore})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- ks.Run(sctx) }()
	defer func() { scancel(); <-sdone }()
	waitUntil(t, "the key sync loaded", time.Minute, ks.Ready)

	const subjects = 120
	now := time.Now()
	r.grantAll(ctx, subjects, now)
	gen := synth.New(71, subjects, now)
	var evs []producer.Event
	var rawRecs []*kgo.Record
	for i := range 1200 {
		ev := gen.Event(i)
		ev.Email, ev.Phone = "canary-mail-"+ev.SubjectID+"@example.com", "+84 90 555 0199"
		evs = append(evs, ev)
		rec, err := r.enc.Record(r.cfg.Names.RawTopic, &ev)
		if err != nil {
			t.Fatal(err)
		}
		// Round robin over the partitions, not by subject: every replica
		// meets every subject, so they race to create its key.
		rec.Partition = int32(i % 4)
		rawRecs = append(rawRecs, rec)
	}
	r.kproduce(rawRecs)

	// Three replicas, started together, each with its own store.
	var stops []func()
	for range 3 {
		reg := prometheus.NewRegistry()
		rc := redis.NewClient(ropts)
		defer rc.Close()
		pp, err := wiring.BuildPrivacy(ctx, r.cfg, wiring.Deps{Redis: rc, Registry: reg, Keys: r.keys})
		if err != nil {
			t.Fatal(err)
		}
		cfg := wiring.RunnerConfig(r.cfg, r.cfg.Names.GroupID, r.cfg.Names.RawTopic, slog.New(slog.NewJSONHandler(r.logs, nil)))
		cfg.MaxPollRecords = 50 // many small batches: the replicas meet new subjects at the same time
		rn, err := runner.New(cfg, pp.Processor)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { rn.Run(rctx); close(done) }()
		stops = append(stops, func() { rcancel(); <-done })
	}
	r.waitCaughtUp(3 * time.Minute)
	for _, stop := range stops {
		stop()
	}

	// privacy.keys: one distinct wrapped key per id.
	keyRecs := r.read(r.cfg.Names.KeysTopic)
	wrapped := map[string]string{}
	for _, rec := range keyRecs {
		id := string(rec.Key)
		for i := range subjects { // the key topic holds no raw subject id
			if sub := synth.SubjectID(i); strings.Contains(id, sub) || strings.Contains(string(rec.Value), sub) {
				t.Fatalf("subject id %s on the key topic", sub)
			}
		}
		if prev, ok := wrapped[id]; ok && prev != string(rec.Value) {
			t.Fatalf("two different keys for %s on the key topic", id)
		}
		wrapped[id] = string(rec.Value)
	}
	if len(wrapped) != subjects {
		t.Fatalf("%d keys on the key topic for %d subjects (%d records)", len(wrapped), subjects, len(keyRecs))
	}
	keys := map[string]*subjectkey.DataKey{}
	for id, v := range wrapped {
		w, err := subjectkey.ParseWrapped([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if keys[id], err = subjectkey.Unwrap(ctx, kms, w); err != nil {
			t.Fatal(err)
		}
	}
	// Every personalization record decrypts with its key.
	topic := wiring.CleanTopic(r.cfg, purpose.Personalization)
	recs := r.read(topic)
	if len(recs) != len(evs) {
		t.Fatalf("%d personalization records for %d events", len(recs), len(evs))
	}
	for _, rec := range recs {
		if strings.Contains(string(rec.Value), "canary-mail-") || strings.Contains(string(rec.Value), "555 0199") {
			t.Fatal("a plaintext reached the personalization topic")
		}
		id := headerOf(rec, processors.HeaderDataKey)
		k, ok := keys[id]
		if !ok {
			t.Fatalf("record names key %q, not on the key topic", id)
		}
		v := decodeCleanRecord(t, r, purpose.Personalization, rec)
		str := func(name string) string { s, _ := v[name].(map[string]any)["string"].(string); return s }
		email, err := k.Decrypt(str("email_encrypted"), "email")
		if err != nil || !strings.HasPrefix(string(email), "canary-mail-") {
			t.Fatalf("email: %q %v", email, err)
		}
		if phone, err := k.Decrypt(str("phone_token"), "phone"); err != nil || string(phone) != "+84 90 555 0199" {
			t.Fatalf("phone: %q %v", phone, err)
		}
	}
	// A client we did not write: Tink for Python (examples/python/decrypt.py)
	// unwraps the key from its privacy.keys record with the key-encryption
	// key and decrypts both fields of a record.
	last := recs[len(recs)-1]
	lv := decodeCleanRecord(t, r, purpose.Personalization, last)
	wrappedFile := filepath.Join(t.TempDir(), "wrapped.json")
	os.WriteFile(wrappedFile, []byte(wrapped[headerOf(last, processors.HeaderDataKey)]), 0o600)
	cmd := exec.CommandContext(ctx, pythonPath(t), filepath.Join(repoRoot(t), "examples", "python", "decrypt.py"), "--kek", kek, "--wrapped", wrappedFile,
		"--field", "email", lv["email_encrypted"].(map[string]any)["string"].(string), "--field", "phone", lv["phone_token"].(map[string]any)["string"].(string))
	pyOut, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("decrypt.py: %v\n%s", err, pyOut)
	}
	want, _ := keys[headerOf(last, processors.HeaderDataKey)].Decrypt(lv["email_encrypted"].(map[string]any)["string"].(string), "email")
	if !strings.Contains(string(pyOut), `"plaintext": "`+string(want)+`"`) || !strings.Contains(string(pyOut), `"plaintext": "+84 90 555 0199"`) {
		t.Fatalf("Tink for Python decrypted otherwise:\n%s", pyOut)
	}
	// The key sync marked every key logged.
	waitUntil(t, "every key logged in Redis", time.Minute, func() bool {
		for id := range wrapped {
			if st, _ := syncStore.State(ctx, id); st != "logged" {
				return false
			}
		}
		return true
	})
	t.Logf("3 replicas, %d subjects: %d keys, %d key records on the topic (rewritten until logged), %d records decrypted",
		subjects, len(wrapped), len(keyRecs), len(recs))
}

func headerOf(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// decodeCleanRecord decodes a Confluent-framed clean record of purpose with
// the schema derived from the rig's policy (what the processor registered).
func decodeCleanRecord(t *testing.T, r *rig, pur purpose.Purpose, rec *kgo.Record) map[string]any {
	t.Helper()
	raw, pol, err := wiring.LoadPolicy(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := pol.Derive(raw, pur)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(string(policy.CleanSchemaJSON(pur, fields)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Value) < 5 || rec.Value[0] != 0 {
		t.Fatal("not in the Confluent wire format")
	}
	native, _, err := codec.NativeFromBinary(rec.Value[5:])
	if err != nil {
		t.Fatal(err)
	}
	return native.(map[string]any)
}
