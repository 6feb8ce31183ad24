// Package kafkaconn owns the connection to the Kafka cluster: the settings
// every client shares (seed brokers, TLS, mutual TLS, SASL),
// read from PIPELINE_KAFKA_* by internal/app/config, and the franz-go
// options built from them. Every production client, whether the runner's
// session, a state store, a sync, a tool or a test rig, is built from one
// Config, so a setting added here reaches all of them; internal/archtest
// fails if non-test code outside this package calls kgo.SeedBrokers or
// kgo.NewClient itself.
//
// It imports franz-go (kgo, kadm, sasl).
package kafkaconn

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is the connection to one Kafka cluster. Its env tags are relative
// to the prefix internal/app/config gives it (PIPELINE_KAFKA_), so Brokers
// is PIPELINE_KAFKA_BROKERS.
//
// Security (TLS, mutual TLS, SASL PLAIN, SCRAM and OAUTHBEARER) is built
// into Opts too, so every client gets it.
type Config struct {
	// Brokers are the seed brokers, host:port (a bare host means port
	// 9092, as in franz-go), comma separated in the environment.
	Brokers []string `env:"BROKERS" envDefault:"localhost:9092" envSeparator:","`

	// Security is TLS and SASL, PIPELINE_KAFKA_TLS_* and PIPELINE_KAFKA_SASL_*.
	Security

	// Extra are further connection options appended to Opts, for what the
	// environment cannot express: a test cluster's credentials, say. They
	// are never read from the environment.
	Extra []kgo.Opt `env:"-"`
}

// Validate reports a configuration no client can connect with: no seed
// broker, an empty entry, or an address that is not host, host:port or
// [ipv6]:port with a port in 1..65535.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafkaconn: no seed brokers (PIPELINE_KAFKA_BROKERS)")
	}
	for _, b := range c.Brokers {
		if err := checkAddr(b); err != nil {
			return fmt.Errorf("kafkaconn: seed broker %q (PIPELINE_KAFKA_BROKERS): %w", b, err)
		}
	}
	// franz-go's own seed parsing has the last word (it does not dial).
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		return fmt.Errorf("kafkaconn: seed brokers (PIPELINE_KAFKA_BROKERS): %w", err)
	}
	cl.Close()
	if err := c.Security.validate(); err != nil {
		return fmt.Errorf("kafkaconn: %w", err)
	}
	return nil
}

// Redacted returns a copy safe to print: the SASL password is replaced.
func (c Config) Redacted() Config {
	c.Security = c.Security.redacted()
	return c
}

// errBadAddr is wrapped by Validate for a malformed broker address.
var errBadAddr = errors.New("not host:port")

// checkAddr accepts what franz-go's seed parsing accepts and can dial.
func checkAddr(a string) error {
	if a == "" || strings.ContainsAny(a, " \t\r\n/") {
		return errBadAddr
	}
	if !strings.Contains(a, ":") {
		return nil // a bare host: franz-go's default port 9092
	}
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		return nil // a bracketed IPv6 address without a port
	}
	if ip := net.ParseIP(a); ip != nil {
		return nil // an IPv6 literal without brackets or port
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadAddr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: empty host", errBadAddr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%w: port %q is not in 1..65535", errBadAddr, port)
	}
	return nil
}

// Opts returns the connection options every client of the cluster shares:
// the seed brokers, the security options (TLS, SASL), then Extra. A client
// adds its own options (group, transactions, producer tuning) after them.
func (c Config) Opts() []kgo.Opt {
	sec := c.Security.opts()
	opts := make([]kgo.Opt, 0, 1+len(sec)+len(c.Extra))
	opts = append(opts, kgo.SeedBrokers(c.Brokers...))
	opts = append(opts, sec...)
	return append(opts, c.Extra...)
}

// NewClient returns a client with the connection options and extra after
// them. The caller closes it.
func (c Config) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(c.Opts(), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafkaconn: client: %w", err)
	}
	return cl, nil
}

// NewAdmin returns an admin client over a new client with the connection
// options and extra. The caller closes it (kadm.Client.Close closes the
// client under it).
func (c Config) NewAdmin(extra ...kgo.Opt) (*kadm.Client, error) {
	cl, err := c.NewClient(extra...)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}
