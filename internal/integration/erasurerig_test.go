package integration

import (
	"context"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/keys/keysync"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
)

// erasing configures the rig as a deployment that erases: the encrypting
// policy (pipelinetest.EncryptingPolicy) and its key-encryption key, an
// erasure ledger key, the pseudonym keyring in a file (the executor, the
// exporter and 'pipeline run requests' read them from the configuration).
// It returns the KMS of the key-encryption key.
func (r *rig) erasing() *subjectkey.FileKMS {
	r.t.Helper()
	pol, kek, kms := pipelinetest.EncryptingPolicy(r.t)
	dir := r.t.TempDir()
	r.cfg.Privacy.PolicyFile, r.cfg.Keys.KEKFile = pol, kek
	r.cfg.Keys.ErasureKeyFile = filepath.Join(dir, "ledger.key")
	if err := erasure.GenerateLedgerKeyFile(r.cfg.Keys.ErasureKeyFile); err != nil {
		r.t.Fatal(err)
	}
	r.cfg.Privacy.PseudonymKeysFile = filepath.Join(dir, "keys.json")
	if err := writeKeyring(r); err != nil {
		r.t.Fatal(err)
	}
	return kms
}

// startErasing builds the privacy processor with the rig's (erasing)
// configuration as 'pipeline run privacy' does, follows the consent
// invalidations, and runs the key sync (until it has loaded the key
// topic) and consent-sync, all until ctx ends. It returns the processor's
// Redis client.
func (r *rig) startErasing(ctx context.Context) *redis.Client {
	r.t.Helper()
	ropts, _ := wiring.RedisOptions(r.cfg)
	rdb := redis.NewClient(ropts)
	r.t.Cleanup(func() { rdb.Close() })
	r.reg = newRegistry() // the processor's metrics (snapshot, the privacy center's operator view)
	pp, err := wiring.BuildPrivacy(ctx, r.cfg, wiring.Deps{Redis: rdb, Registry: r.reg, Keys: r.keys})
	if err != nil {
		r.t.Fatal(err)
	}
	r.pp = pp
	go consentredis.FollowInvalidations(ctx, pp.Store, pp.Cache, nil)
	ks, err := keysync.New(keysync.Config{Kafka: r.cfg.Kafka, Topic: r.cfg.Names.KeysTopic, Group: r.cfg.Names.KeySyncGroup, Store: pp.DataKeys})
	if err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ks.Run(ctx) }()
	r.t.Cleanup(func() { <-done })
	waitUntil(r.t, "the key sync loaded", time.Minute, ks.Ready)
	r.startSync(false)
	return rdb
}

// grantAllPurposes grants every purpose to the subjects through the
// consent topic and waits until consent-sync has them in Redis.
func (r *rig) grantAllPurposes(ctx context.Context, subjects ...string) {
	r.t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	var grants []consentlog.Change
	for _, sub := range subjects {
		for _, p := range purpose.All {
			grants = append(grants, ch(sub, p, consent.Granted, consent.GDPR, now.Add(-time.Minute)))
		}
	}
	r.publishConsent(ctx, grants...)
	waitUntil(r.t, "consent in Redis", time.Minute, func() bool {
		out := make([]consent.Lookup, len(subjects))
		if r.pp.Store.Lookup(ctx, subjects, out) != nil {
			return false
		}
		for _, l := range out {
			if !l.Found {
				return false
			}
		}
		return true
	})
}

// alternating returns 40 synthetic events about the subjects in turn,
// each with a canary e-mail address naming its subject (the encrypted
// field the erasure tests decrypt).
func alternating(seed uint64, subjects ...string) []producer.Event {
	gen := synth.New(seed, 2, time.Now())
	var evs []producer.Event
	for i := range 40 {
		ev := gen.Event(i)
		ev.SubjectID = subjects[i%len(subjects)]
		ev.Email = "canary-mail-" + ev.SubjectID + "@example.com"
		evs = append(evs, ev)
	}
	return evs
}
