package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/topology"
)

// The principals of the secured listeners that scripts/services starts.
// The broker's authorizer is on and only User:ANONYMOUS (the plaintext
// listener the rig administers through) is a super user: these get what
// grantACLs grants them and nothing else.
const (
	// processorPrincipal is the SCRAM user the processors run as ("sasl").
	processorPrincipal = "User:pipeline"
	// consumerPrincipal is the SCRAM user of an analytics consumer
	// ("consumer").
	consumerPrincipal = "User:analytics"
	// producerPrincipal is the test client certificate's subject ("mtls"),
	// an application that publishes raw events.
	producerPrincipal = "User:CN=pipeline-mtls"
)

// secured returns the connection to one of the broker's secured listeners
// that scripts/services starts: "sasl" (SASL_SSL, SCRAM-SHA-512, password
// from a file, processorPrincipal), "consumer" (the same listener as
// consumerPrincipal) or "mtls" (SSL with the test client certificate,
// producerPrincipal). It fails under CI when they are missing and skips
// (loudly) elsewhere.
func secured(t testing.TB, kind string) kafkaconn.Config {
	t.Helper()
	env := func(k string) string { return os.Getenv("PIPELINE_TEST_KAFKA_" + k) }
	if env("SASL_BROKERS") == "" || env("CA_FILE") == "" {
		msg := "the security tests need the secured listeners of scripts/services: run 'make test', or eval \"$(scripts/services up)\" first"
		missing(t, msg)
	}
	switch kind {
	case "sasl":
		return kafkaconn.Config{Brokers: []string{env("SASL_BROKERS")}, Security: kafkaconn.Security{CAFile: env("CA_FILE"),
			SASLMechanism: kafkaconn.MechanismScramSHA512, SASLUsername: env("SASL_USERNAME"), SASLPasswordFile: env("SASL_PASSWORD_FILE")}}
	case "consumer":
		return kafkaconn.Config{Brokers: []string{env("SASL_BROKERS")}, Security: kafkaconn.Security{CAFile: env("CA_FILE"),
			SASLMechanism: kafkaconn.MechanismScramSHA512, SASLUsername: env("CONSUMER_USERNAME"), SASLPasswordFile: env("CONSUMER_PASSWORD_FILE")}}
	case "mtls":
		return kafkaconn.Config{Brokers: []string{env("MTLS_BROKERS")}, Security: kafkaconn.Security{CAFile: env("CA_FILE"),
			CertFile: env("CLIENT_CERT_FILE"), KeyFile: env("CLIENT_KEY_FILE")}}
	}
	t.Fatalf("unknown listener %q", kind)
	return kafkaconn.Config{}
}

// TestPrivacyPathOverSASLSSL: the privacy processor's runner (its
// transactional session, the limits and the state it reads) runs over
// SASL_SSL with SCRAM-SHA-512 on the real broker, with only the ACLs that
// 'topology apply --acls' derives for it; events produced over mutual TLS
// (a producer principal's ACLs) come out on every clean topic, read back
// over SASL_SSL by a consumer principal granted every purpose, and the
// accounting identity holds.
func TestPrivacyPathOverSASLSSL(t *testing.T) {
	sasl, mtls, consumer := secured(t, "sasl"), secured(t, "mtls"), secured(t, "consumer")
	r := newRig(t) // topics, consent and checks over the plaintext listener
	r.grantACLs(topology.ACLSpec{Processors: map[string]string{wiring.CommandPrivacy: processorPrincipal},
		Producers: []string{producerPrincipal},
		Consumers: []topology.ACLConsumer{{Principal: consumerPrincipal, Purposes: purpose.Names()}}})
	for _, c := range []kafkaconn.Config{sasl, mtls, consumer} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	r.grantAll(context.Background(), 50, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	produced := r.produceAs(ctx, mtls, 31, 50, 300) // over mutual TLS

	plain := r.cfg.Kafka
	r.cfg.Kafka = sasl // the runner connects over SASL_SSL
	r.start()
	r.waitCaughtUp(2 * time.Minute)
	r.cfg.Kafka = consumer // read back as the consumer principal
	counts := r.checkAccounting(produced)
	r.cfg.Kafka = plain
	total := 0
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		t.Fatal("nothing published over the secured listeners")
	}
	t.Logf("over mutual TLS and SASL_SSL (SCRAM-SHA-512), with ACLs: %d events in, %v published", produced, counts)
}

// TestSecuredListenersRefuse: a wrong password, a broker certificate from
// an untrusted CA and a client without a certificate on the mutual-TLS
// listener are each refused with a clear error that shows no secret, and
// what such a client tried to produce was not written.
func TestSecuredListenersRefuse(t *testing.T) {
	sasl, mtls := secured(t, "sasl"), secured(t, "mtls")
	r := newRig(t)
	dir := t.TempDir()
	password, err := os.ReadFile(sasl.SASLPasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	wrong := sasl
	wrong.SASLPasswordFile = filepath.Join(dir, "wrong")
	os.WriteFile(wrong.SASLPasswordFile, []byte("not-"+strings.TrimSpace(string(password))), 0o600)
	untrusted := sasl
	untrusted.CAFile = filepath.Join(dir, "other-ca.pem")
	writeOtherCA(t, untrusted.CAFile)
	noCert := mtls
	noCert.CertFile, noCert.KeyFile = "", ""

	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			conn kafkaconn.Config
			want string
		}{
			"wrong password":        {wrong, "SASL"},
			"untrusted certificate": {untrusted, "certificate"},
			"no client certificate": {noCert, "certificate"},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				refused(t, tc.conn, r.cfg.Names.RawTopic, tc.want, strings.TrimSpace(string(password)))
			})
		}
	})
	if recs := r.read(r.cfg.Names.RawTopic); len(recs) != 0 {
		t.Fatalf("%d records were written by refused clients", len(recs))
	}
}

// refused produces one record with conn and checks that it fails, saying
// want and never secret.
func refused(t *testing.T, conn kafkaconn.Config, topic, want, secret string) {
	t.Helper()
	cl, err := conn.NewClient(kgo.RequestRetries(0), kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("must not be written")}).FirstErr()
	if err == nil {
		t.Fatal("the broker accepted the record")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("the error does not say %q", want)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Fatal("the error shows the password")
	}
}

// writeOtherCA writes a freshly made CA certificate that signed nothing
// the broker uses.
func writeOtherCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "an untrusted CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// redisTLS returns the Redis settings of the TLS port with the ACL user
// that scripts/services starts (failing under CI when missing).
func redisTLS(t testing.TB) config.Redis {
	t.Helper()
	env := func(k string) string { return os.Getenv("PIPELINE_TEST_REDIS_" + k) }
	if env("TLS_ADDR") == "" {
		msg := "the security tests need the Redis TLS port of scripts/services: run 'make test', or eval \"$(scripts/services up)\" first"
		missing(t, msg)
	}
	return config.Redis{Addr: env("TLS_ADDR"), Username: env("USERNAME"), PasswordFile: env("PASSWORD_FILE"), TLSCAFile: env("CA_FILE")}
}

// TestPrivacyPathOverRedisTLS: the privacy processor decides on consent
// read over TLS as the Redis ACL user (password from a file), on the real
// redis-server, with Kafka over SASL_SSL; no password, a wrong password
// and an untrusted server certificate are refused, showing no secret.
func TestPrivacyPathOverRedisTLS(t *testing.T) {
	sasl := secured(t, "sasl")
	rc := redisTLS(t)
	r := newRig(t)
	r.grantACLs(topology.ACLSpec{Processors: map[string]string{wiring.CommandPrivacy: processorPrincipal}})
	cfg := r.cfg
	cfg.Redis = rc
	if err := cfg.Redis.Validate(); err != nil {
		t.Fatal(err)
	}
	ropts, err := wiring.RedisOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	reg := newRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pp, err := wiring.BuildPrivacy(ctx, cfg, wiring.Deps{Redis: rdb, Registry: reg, Keys: r.keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := pp.Store.MarkLoaded(ctx); err != nil {
		t.Fatalf("writing to Redis over TLS as %s: %v", rc.Username, err)
	}
	r.pp, r.reg = pp, reg // the rig's checks read this processor's metrics
	r.grantAll(ctx, 40, time.Now())
	gen := synth.New(41, 40, time.Now())
	var evs []producer.Event
	for i := range 200 {
		evs = append(evs, gen.Event(i))
	}
	r.produce(ctx, evs)
	plain := r.cfg.Kafka
	r.cfg.Kafka = sasl
	r.start()
	r.waitCaughtUp(2 * time.Minute)
	r.cfg.Kafka = plain // the processor's principal may not read what it wrote
	counts := r.checkAccounting(len(evs))
	if n := counts[wiring.CleanTopic(r.cfg, purpose.Analytics)]; n != len(evs) {
		t.Fatalf("analytics published %d of %d events decided on consent read over Redis TLS", n, len(evs))
	}

	password, _ := os.ReadFile(rc.PasswordFile)
	secret := strings.TrimSpace(string(password))
	wrong := cfg
	wrong.Redis.PasswordFile = filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong.Redis.PasswordFile, []byte("not-"+secret), 0o600)
	untrusted := cfg
	untrusted.Redis.TLSCAFile = filepath.Join(t.TempDir(), "other-ca.pem")
	writeOtherCA(t, untrusted.Redis.TLSCAFile)
	anonymous := cfg // the default user is off on the TLS port
	anonymous.Redis.Username, anonymous.Redis.PasswordFile = "", ""
	for name, c := range map[string]config.Config{"wrong password": wrong, "untrusted certificate": untrusted, "no user": anonymous} {
		o, err := wiring.RedisOptions(c)
		if err != nil {
			t.Fatal(err)
		}
		cl := redis.NewClient(o)
		err = cl.Ping(ctx).Err()
		cl.Close()
		t.Logf("%s: %v", name, err)
		if err == nil {
			t.Fatalf("%s: Redis accepted the connection", name)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("%s: the error shows the password", name)
		}
	}
}
