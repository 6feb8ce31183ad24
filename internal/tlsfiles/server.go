package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Server returns a server TLS configuration (TLS 1.2 or later) whose
// certificate and key come from certFile and keyFile, and, when
// clientCAFile is set, which asks for a client certificate and verifies a
// given one against that CA (mutual TLS; a client without a certificate
// may still connect, and the HTTP layer decides what it may do). The
// files are read now, an unreadable one is an error naming it, and read
// again at a handshake once they changed on disk (checked at most once a
// second), so a renewed certificate or CA is served without a restart; a
// renewal that cannot be read keeps the previous one (and OnReloadError,
// when set, hears why).
func Server(certFile, keyFile, clientCAFile string, onReloadError func(error)) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tlsfiles: a TLS listener needs both its certificate and its key file")
	}
	r := &serverFiles{cert: certFile, key: keyFile, ca: clientCAFile, onError: onReloadError}
	if err := r.load(); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := r.current()
		c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
		if pool != nil {
			c.ClientCAs = pool
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	return base, nil
}

// serverFiles holds the loaded certificate and client CA and reloads them
// when a file's modification time or size changes.
type serverFiles struct {
	cert, key, ca string
	onError       func(error)

	mu      sync.Mutex
	checked time.Time
	stamp   string
	tlsCert *tls.Certificate
	pool    *x509.CertPool
}

// stampOf returns the files' modification times and sizes.
func (r *serverFiles) stampOf() (string, error) {
	s := ""
	for _, p := range []string{r.cert, r.key, r.ca} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("tlsfiles: %w", err)
		}
		s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

// load reads every file; on error nothing changes.
func (r *serverFiles) load() error {
	stamp, err := r.stampOf()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return fmt.Errorf("tlsfiles: server certificate: %w", err)
	}
	var pool *x509.CertPool
	if r.ca != "" {
		pem, err := os.ReadFile(r.ca)
		if err != nil {
			return fmt.Errorf("tlsfiles: client CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tlsfiles: client CA file %s holds no PEM certificate", r.ca)
		}
	}
	r.mu.Lock()
	r.tlsCert, r.pool, r.stamp, r.checked = &c, pool, stamp, time.Now()
	r.mu.Unlock()
	return nil
}

// current returns the certificate and CA, reloading them first when the
// files changed since the last check (at most once a second).
func (r *serverFiles) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	due := time.Since(r.checked) >= time.Second
	if due {
		r.checked = time.Now()
	}
	stamp := r.stamp
	r.mu.Unlock()
	if due {
		if now, err := r.stampOf(); err != nil || now != stamp {
			if err == nil {
				err = r.load()
			}
			if err != nil && r.onError != nil {
				r.onError(err)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tlsCert, r.pool
}
