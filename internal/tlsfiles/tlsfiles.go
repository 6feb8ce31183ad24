// Package tlsfiles builds client TLS configurations and reads secrets from
// files, the one way every connection of the pipeline (Kafka, Redis, the
// schema registry) does it: CAs from a PEM file (or the system roots), TLS
// 1.2 or later, a client certificate read again at every handshake (so a
// rotated certificate is used without a restart), and secrets trimmed,
// never echoed in an error.
//
// It imports only the standard library.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Client returns a client TLS configuration. caFile (PEM) replaces the
// system roots when set; certFile and keyFile, set together, are a client
// certificate for mutual TLS, loaded at every handshake; serverName, when
// set, is the name verified in the server's certificate. The files are
// checked now: an unreadable or empty one is an error naming it.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tlsfiles: CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tlsfiles: CA file %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tlsfiles: a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("tlsfiles: client certificate: %w", err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("tlsfiles: client certificate: %w", err)
			}
			return &c, nil
		}
	}
	return tc, nil
}

// Secret reads a secret (password, token) from a file, trimmed of
// surrounding white space. The error names the file, never its contents;
// an empty secret is an error.
func Secret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("tlsfiles: secret file: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("tlsfiles: secret file %s is empty", path)
	}
	return v, nil
}
