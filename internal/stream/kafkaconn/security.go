package kafkaconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security is how clients authenticate to the cluster and encrypt: TLS
// (optionally with a client certificate: mutual TLS) and SASL. Its env tags
// are relative to PIPELINE_KAFKA_. Secrets come from files (re-read at every
// new connection, so a rotated password, token or certificate is used
// without a restart) or, for the password, the environment; none is ever
// printed (Redacted, and no error contains one).
type Security struct {
	// TLS turns TLS on (it is also on when a CA or client certificate is
	// set); the server is verified against CAFile, or the system roots.
	TLS bool `env:"TLS"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	CAFile string `env:"TLS_CA_FILE"`
	// CertFile and KeyFile are a client certificate and its key (PEM), for
	// mutual TLS; read at every handshake.
	CertFile string `env:"TLS_CERT_FILE"`
	KeyFile  string `env:"TLS_KEY_FILE"`
	// ServerName overrides the name checked in the brokers' certificates
	// (default: the host dialled).
	ServerName string `env:"TLS_SERVER_NAME"`

	// SASLMechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER
	// (empty: no SASL).
	SASLMechanism string `env:"SASL_MECHANISM"`
	// SASLUsername and SASLPassword (or SASLPasswordFile) are the PLAIN and
	// SCRAM credentials.
	SASLUsername     string `env:"SASL_USERNAME"`
	SASLPassword     string `env:"SASL_PASSWORD"`
	SASLPasswordFile string `env:"SASL_PASSWORD_FILE"`
	// SASLTokenFile holds the OAUTHBEARER token (re-read at every
	// authentication, so a token refreshed on disk is picked up).
	SASLTokenFile string `env:"SASL_TOKEN_FILE"`
}

// The SASL mechanisms.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	MechanismOAuthBearer = "OAUTHBEARER"
)

// tlsOn reports whether TLS is configured.
func (s Security) tlsOn() bool { return s.TLS || s.CAFile != "" || s.CertFile != "" }

// validate checks the settings and that every file they name can be read
// and parsed; errors name variables and files, never a secret.
func (s Security) validate() error {
	if (s.CertFile == "") != (s.KeyFile == "") {
		return errors.New("PIPELINE_KAFKA_TLS_CERT_FILE and PIPELINE_KAFKA_TLS_KEY_FILE go together")
	}
	if s.tlsOn() {
		if _, err := s.tlsConfig(); err != nil {
			return err
		}
	}
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" || s.SASLPasswordFile != "" || s.SASLTokenFile != "" {
			return errors.New("SASL credentials are set but PIPELINE_KAFKA_SASL_MECHANISM is not")
		}
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		if s.SASLUsername == "" {
			return fmt.Errorf("SASL %s needs PIPELINE_KAFKA_SASL_USERNAME", s.SASLMechanism)
		}
		if (s.SASLPassword == "") == (s.SASLPasswordFile == "") {
			return fmt.Errorf("SASL %s needs PIPELINE_KAFKA_SASL_PASSWORD or PIPELINE_KAFKA_SASL_PASSWORD_FILE (one of them)", s.SASLMechanism)
		}
		if s.SASLPasswordFile != "" {
			if _, err := secretFile(s.SASLPasswordFile); err != nil {
				return err
			}
		}
	case MechanismOAuthBearer:
		if s.SASLTokenFile == "" {
			return errors.New("SASL OAUTHBEARER needs PIPELINE_KAFKA_SASL_TOKEN_FILE")
		}
		if _, err := secretFile(s.SASLTokenFile); err != nil {
			return err
		}
	default:
		return fmt.Errorf("PIPELINE_KAFKA_SASL_MECHANISM %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", s.SASLMechanism)
	}
	if s.SASLMechanism != "" && !s.tlsOn() && !strings.EqualFold(s.SASLMechanism, MechanismScramSHA256) && !strings.EqualFold(s.SASLMechanism, MechanismScramSHA512) {
		return fmt.Errorf("SASL %s sends its secret in the clear without TLS: set PIPELINE_KAFKA_TLS=true", s.SASLMechanism)
	}
	return nil
}

// tlsConfig builds the client TLS configuration (package tlsfiles).
func (s Security) tlsConfig() (*tls.Config, error) {
	tc, err := tlsfiles.Client(s.CAFile, s.CertFile, s.KeyFile, s.ServerName)
	if err != nil {
		return nil, fmt.Errorf("TLS (PIPELINE_KAFKA_TLS_CA_FILE, _CERT_FILE, _KEY_FILE): %w", err)
	}
	return tc, nil
}

// mechanism returns the SASL mechanism, its secrets read at every
// authentication.
func (s Security) mechanism() sasl.Mechanism {
	pass := func() (string, error) {
		if s.SASLPasswordFile != "" {
			return secretFile(s.SASLPasswordFile)
		}
		return s.SASLPassword, nil
	}
	switch strings.ToUpper(s.SASLMechanism) {
	case MechanismPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			p, err := pass()
			return plain.Auth{User: s.SASLUsername, Pass: p}, err
		})
	case MechanismScramSHA256, MechanismScramSHA512:
		fn := func(context.Context) (scram.Auth, error) {
			p, err := pass()
			return scram.Auth{User: s.SASLUsername, Pass: p}, err
		}
		if strings.EqualFold(s.SASLMechanism, MechanismScramSHA256) {
			return scram.Sha256(fn)
		}
		return scram.Sha512(fn)
	case MechanismOAuthBearer:
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			t, err := secretFile(s.SASLTokenFile)
			return oauth.Auth{Token: t}, err
		})
	}
	return nil
}

// opts returns the security options; a configuration Validate refused
// (or whose files vanished since) makes every dial fail with the reason.
func (s Security) opts() []kgo.Opt {
	var opts []kgo.Opt
	if s.tlsOn() {
		tc, err := s.tlsConfig()
		if err != nil {
			return []kgo.Opt{kgo.Dialer(func(context.Context, string, string) (net.Conn, error) {
				return nil, fmt.Errorf("kafkaconn: %w", err)
			})}
		}
		opts = append(opts, kgo.DialTLSConfig(tc), kgo.DialTimeout(10*time.Second))
	}
	if m := s.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// redacted hides the password.
func (s Security) redacted() Security {
	if s.SASLPassword != "" {
		s.SASLPassword = "[redacted]"
	}
	return s
}

// secretFile reads a secret from a file (package tlsfiles).
func secretFile(path string) (string, error) {
	v, err := tlsfiles.Secret(path)
	if err != nil {
		return "", fmt.Errorf("kafkaconn: %w", err)
	}
	return v, nil
}
