// Package testpki makes a throwaway certificate authority for tests: a CA,
// a server certificate for localhost and 127.0.0.1, and client
// certificates with a chosen subject, as tls.Certificate values and as PEM
// files in a test's temporary directory.
//
// It imports only the standard library.
package testpki

import (
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
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate; File is where it is written.
	PEM  []byte
	File string
	// Pool trusts the CA.
	Pool *x509.CertPool
}

var serial atomic.Int64

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// New makes a CA valid for a day and writes it to ca.pem in a temporary
// directory.
func New(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "pipeline test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{t: t, dir: t.TempDir(), cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.File = filepath.Join(ca.dir, "ca.pem")
	ca.write(ca.File, ca.PEM)
	return ca
}

func (ca *CA) write(path string, b []byte) {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		ca.t.Fatal(err)
	}
}

// Leaf is a certificate signed by the CA.
type Leaf struct {
	TLS               tls.Certificate
	CertFile, KeyFile string
	Subject           pkix.Name
}

func (ca *CA) leaf(name string, subject pkix.Name, usage x509.ExtKeyUsage, server bool) Leaf {
	ca.t.Helper()
	key := newKey(ca.t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: subject, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	l := Leaf{TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, Subject: subject,
		CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+".key")}
	ca.write(l.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	ca.write(l.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	return l
}

// Server returns a server certificate for localhost and 127.0.0.1, written
// to <name>.pem and <name>.key.
func (ca *CA) Server(name string) Leaf {
	ca.t.Helper()
	return ca.leaf(name, pkix.Name{CommonName: "localhost"}, x509.ExtKeyUsageServerAuth, true)
}

// Client returns a client certificate with the subject, written to
// <name>.pem and <name>.key.
func (ca *CA) Client(name string, subject pkix.Name) Leaf {
	ca.t.Helper()
	return ca.leaf(name, subject, x509.ExtKeyUsageClientAuth, false)
}

// ClientConfig returns a client TLS configuration trusting the CA, with
// the client certificates given.
func (ca *CA) ClientConfig(certs ...Leaf) *tls.Config {
	tc := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	for _, c := range certs {
		tc.Certificates = append(tc.Certificates, c.TLS)
	}
	return tc
}
