package kafkaconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files.
type testPKI struct {
	dir                       string
	ca                        *x509.Certificate
	caKey                     *ecdsa.PrivateKey
	caFile, certFile, keyFile string
	server                    tls.Certificate
	otherCAFile               string // a CA that signed nothing here
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.ca, p.caKey, p.caFile = selfSigned(t, p.dir, "ca", "pipeline test CA")
	_, _, p.otherCAFile = selfSigned(t, p.dir, "other", "another CA")
	srvPEM, srvKeyPEM := p.issue(t, "broker", x509.ExtKeyUsageServerAuth)
	var err error
	if p.server, err = tls.X509KeyPair(srvPEM, srvKeyPEM); err != nil {
		t.Fatal(err)
	}
	cert, key := p.issue(t, "pipeline-client", x509.ExtKeyUsageClientAuth)
	p.certFile, p.keyFile = write(t, p.dir, "client.pem", cert), write(t, p.dir, "client-key.pem", key)
	return p
}

func selfSigned(t *testing.T, dir, name, cn string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, write(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func write(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cluster starts kfake over TLS (requiring a client certificate when
// mtls), with SASL users when sasl.
func (p *testPKI) cluster(t *testing.T, mtls bool, opts ...kfake.Opt) *kfake.Cluster {
	tc := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if mtls {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.ClientCAs = x509.NewCertPool()
		tc.ClientCAs.AddCert(p.ca)
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.TLS(tc), kfake.SeedTopics(1, "t")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// reach lists the cluster's topics with a client of c.
func reach(c Config) error {
	adm, err := c.NewAdmin()
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = adm.ListTopics(ctx)
	return err
}

const canaryPassword = "canary-kafka-password-7f3a"

// TestSASLOverTLS: SCRAM-SHA-512 and PLAIN over TLS reach a cluster that
// requires both; the password file is re-read (a rotated password works
// without a new Config); a wrong password and an untrusted broker
// certificate are refused, and no error shows the password.
func TestSASLOverTLS(t *testing.T) {
	p := newPKI(t)
	for _, mech := range []string{MechanismScramSHA512, MechanismScramSHA256, MechanismPlain} {
		t.Run(mech, func(t *testing.T) {
			cl := p.cluster(t, false, kfake.EnableSASL(), kfake.Superuser(mech, "pipeline", canaryPassword))
			pw := write(t, t.TempDir(), "password", []byte(canaryPassword+"\n"))
			c := Config{Brokers: cl.ListenAddrs(), Security: Security{CAFile: p.caFile,
				SASLMechanism: mech, SASLUsername: "pipeline", SASLPasswordFile: pw}}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := reach(c); err != nil {
				t.Fatalf("%s over TLS: %v", mech, err)
			}
			os.WriteFile(pw, []byte("wrong-"+canaryPassword), 0o600)
			err := reach(c)
			if err == nil {
				t.Fatal("a wrong password was accepted")
			}
			if strings.Contains(err.Error(), canaryPassword) {
				t.Fatalf("the error shows the password: %v", err)
			}
			untrusted := c
			untrusted.CAFile = p.otherCAFile
			os.WriteFile(pw, []byte(canaryPassword), 0o600)
			if err := reach(untrusted); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("a broker certificate from an untrusted CA: %v", err)
			}
		})
	}
}

// TestMutualTLS: a cluster that requires a client certificate accepts one
// signed by its CA and refuses a client without one.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	cl := p.cluster(t, true)
	c := Config{Brokers: cl.ListenAddrs(), Security: Security{CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := reach(c); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	anon := c
	anon.CertFile, anon.KeyFile = "", ""
	if err := reach(anon); err == nil {
		t.Fatal("a client without a certificate reached a cluster that requires one")
	}
}

// TestSecurityValidate: settings no client can use are refused at load,
// naming the variable; none of the errors shows a secret.
func TestSecurityValidate(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	empty := write(t, dir, "empty", nil)
	notPEM := write(t, dir, "ca.txt", []byte("not a certificate"))
	for name, s := range map[string]Security{
		"cert without key":          {CertFile: p.certFile},
		"missing CA file":           {CAFile: filepath.Join(dir, "nope.pem")},
		"CA file without PEM":       {CAFile: notPEM},
		"unknown mechanism":         {TLS: true, SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: canaryPassword},
		"SCRAM without user":        {TLS: true, SASLMechanism: MechanismScramSHA512, SASLPassword: canaryPassword},
		"password twice":            {TLS: true, SASLMechanism: MechanismScramSHA512, SASLUsername: "u", SASLPassword: canaryPassword, SASLPasswordFile: empty},
		"empty password file":       {TLS: true, SASLMechanism: MechanismScramSHA512, SASLUsername: "u", SASLPasswordFile: empty},
		"PLAIN in the clear":        {SASLMechanism: MechanismPlain, SASLUsername: "u", SASLPassword: canaryPassword},
		"OAUTHBEARER without token": {TLS: true, SASLMechanism: MechanismOAuthBearer},
		"credentials without SASL":  {SASLUsername: "u", SASLPassword: canaryPassword},
	} {
		err := Config{Brokers: []string{"127.0.0.1:9092"}, Security: s}.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), canaryPassword) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	r := Config{Security: Security{SASLPassword: canaryPassword}}.Redacted()
	if r.SASLPassword == canaryPassword {
		t.Fatal("Redacted keeps the SASL password")
	}
}

// TestOAuthBearerReadsTheTokenAtEveryAuthentication: the token file is
// re-read for each new session, so a token refreshed on disk is used at
// the next connection.
func TestOAuthBearerReadsTheTokenAtEveryAuthentication(t *testing.T) {
	f := write(t, t.TempDir(), "token", []byte("token-one\n"))
	m := Security{TLS: true, SASLMechanism: MechanismOAuthBearer, SASLTokenFile: f}.mechanism()
	if m == nil || m.Name() != "OAUTHBEARER" {
		t.Fatalf("mechanism %v", m)
	}
	for _, want := range []string{"token-one", "token-two"} {
		os.WriteFile(f, []byte(want), 0o600)
		_, first, err := m.Authenticate(context.Background(), "broker:9093")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(first), "auth=Bearer "+want) {
			t.Fatalf("the first message does not carry %s", want)
		}
	}
}
