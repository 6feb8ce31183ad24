package tlsfiles

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/testrig/testpki"
)

// served returns the serial number of the certificate a TLS server built
// from tc presents, and whether it asked for a client certificate.
func served(t *testing.T, tc *tls.Config, client *tls.Config) (string, bool) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	asked := make(chan bool, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			asked <- false
			return
		}
		defer c.Close()
		tlsConn := c.(*tls.Conn)
		_ = tlsConn.Handshake()
		asked <- len(tlsConn.ConnectionState().PeerCertificates) > 0
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sn := c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	return sn, <-asked
}

// TestServerReloadsRenewedCertificate: a certificate renewed on disk is
// served at the next handshake after the check interval, without a
// restart; a renewal that cannot be read keeps the previous certificate.
func TestServerReloadsRenewedCertificate(t *testing.T) {
	ca := testpki.New(t)
	first := ca.Server("first")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cp := func(l testpki.Leaf) {
		for src, dst := range map[string]string{l.CertFile: cert, l.KeyFile: key} {
			b, _ := os.ReadFile(src)
			if err := os.WriteFile(dst+".tmp", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dst+".tmp", dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	cp(first)
	var reloadErr error
	tc, err := Server(cert, key, ca.File, func(err error) { reloadErr = err })
	if err != nil {
		t.Fatal(err)
	}
	client := ca.Client("client", pkix.Name{CommonName: "c"})
	sn1, asked := served(t, tc, ca.ClientConfig(client))
	if !asked {
		t.Fatal("a client CA was configured but the client certificate was not taken")
	}
	second := ca.Server("second")
	cp(second)
	time.Sleep(1100 * time.Millisecond)
	sn2, _ := served(t, tc, ca.ClientConfig())
	if sn1 == sn2 {
		t.Fatal("the renewed certificate was not served")
	}
	if err := os.WriteFile(cert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if sn3, _ := served(t, tc, ca.ClientConfig()); sn3 != sn2 || reloadErr == nil {
		t.Fatalf("an unreadable renewal: served %s (want %s), reload error %v", sn3, sn2, reloadErr)
	}
	if _, err := Server(cert, "", "", nil); err == nil {
		t.Fatal("a listener without a key was accepted")
	}
}
