// Package schemaregistry owns the connection to the user's schema registry
// (the Confluent REST API: Confluent, Apicurio's ccompat API, Redpanda,
// Karapace) and what the pipeline does with it (SPEC 3a):
//
//   - Config: URL, authentication (basic or bearer token, secrets from
//     files or the environment, never printed) and TLS, read from
//     PIPELINE_SCHEMA_REGISTRY_* by internal/app/config; every registry
//     client is built from it (NewClient);
//   - Client.Framer: the Confluent wire format for the outputs. A
//     processor's derived schema is registered under its topic's
//     TopicNameStrategy subject ("<topic>-value") when the processor is
//     built, or only looked up when auto-registration is off; the
//     registry's compatibility check decides whether a policy change may
//     ship, and a refusal stops the start with the registry's verdict and
//     the changed fields;
//   - Client.SchemaByID: the writer schemas of Confluent-framed inputs, by
//     id, cached (an id's schema never changes);
//   - Client.Apply: what 'pipeline topology apply' does: set each
//     subject's compatibility level, check each derived schema against the
//     latest registered version, register it, and refuse, naming the
//     fields, a change the registry calls incompatible.
//
// It imports franz-go's pkg/sr, internal/codec/wireformat and
// internal/tlsfiles.
package schemaregistry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
)

// Config is the connection to one schema registry. Its env tags are
// relative to the prefix internal/app/config gives it
// (PIPELINE_SCHEMA_REGISTRY_), so URL is PIPELINE_SCHEMA_REGISTRY_URL.
type Config struct {
	// URL is the registry's Confluent-compatible API, e.g.
	// http://registry:8081 (Confluent) or
	// http://apicurio:8080/apis/ccompat/v7 (Apicurio); several are tried in
	// turn when comma separated. Required with the Confluent wire format.
	URL []string `env:"URL" envSeparator:","`
	// Username and Password authenticate with HTTP basic auth; the
	// password may come from PasswordFile instead.
	Username     string `env:"USERNAME"`
	Password     string `env:"PASSWORD"`
	PasswordFile string `env:"PASSWORD_FILE"`
	// TokenFile holds a bearer token (OAuth), sent instead of basic auth.
	TokenFile string `env:"TOKEN_FILE"`
	// CAFile verifies the registry's TLS certificate (default: the system
	// roots); CertFile and KeyFile are a client certificate (mutual TLS).
	CAFile   string `env:"CA_FILE"`
	CertFile string `env:"CERT_FILE"`
	KeyFile  string `env:"KEY_FILE"`
	// Timeout bounds one registry request.
	Timeout time.Duration `env:"TIMEOUT" envDefault:"10s"`
	// Compatibility is the level 'topology apply' sets on the pipeline's
	// subjects: BACKWARD (the default, Confluent's), BACKWARD_TRANSITIVE,
	// FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.
	Compatibility string `env:"COMPATIBILITY" envDefault:"BACKWARD"`
	// AutoRegister makes a processor register its derived schema when it
	// starts; false: it only looks the schema up (registered by 'pipeline
	// topology apply'), so its credentials may be read-only.
	AutoRegister bool `env:"AUTO_REGISTER" envDefault:"true"`

	// Extra are further client options, for what the environment cannot
	// express (tests). Never read from the environment.
	Extra []sr.ClientOpt `env:"-"`
}

// Validate reports a configuration no client can use: a URL that is not
// http(s), an unknown compatibility level, a client certificate without
// its key, a password both inline and in a file.
func (c Config) Validate() error {
	for _, u := range c.URL {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("schemaregistry: PIPELINE_SCHEMA_REGISTRY_URL %q is not an http(s) URL", redactURL(u))
		}
		if p.User != nil {
			// A client error names the URL it requested: credentials in it
			// would reach the logs.
			return fmt.Errorf("schemaregistry: PIPELINE_SCHEMA_REGISTRY_URL %s carries credentials; set PIPELINE_SCHEMA_REGISTRY_USERNAME and _PASSWORD_FILE (or _TOKEN_FILE) instead", p.Redacted())
		}
	}
	if _, err := c.level(); err != nil {
		return err
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("schemaregistry: PIPELINE_SCHEMA_REGISTRY_CERT_FILE and _KEY_FILE go together")
	}
	if c.Password != "" && c.PasswordFile != "" {
		return errors.New("schemaregistry: set PIPELINE_SCHEMA_REGISTRY_PASSWORD or _PASSWORD_FILE, not both")
	}
	if c.TokenFile != "" && (c.Username != "" || c.Password != "" || c.PasswordFile != "") {
		return errors.New("schemaregistry: a bearer token (PIPELINE_SCHEMA_REGISTRY_TOKEN_FILE) replaces basic auth; set one")
	}
	if c.Timeout <= 0 {
		return errors.New("schemaregistry: PIPELINE_SCHEMA_REGISTRY_TIMEOUT must be positive")
	}
	return nil
}

// Configured reports whether a registry URL is set.
func (c Config) Configured() bool { return len(c.URL) > 0 }

// Redacted returns a copy safe to print.
func (c Config) Redacted() Config {
	if c.Password != "" {
		c.Password = "[redacted]"
	}
	return c
}

// redactURL hides what could be a password in a URL that does not parse.
func redactURL(u string) string {
	if i := strings.LastIndex(u, "@"); i >= 0 {
		return "[redacted]@" + u[i+1:]
	}
	return u
}

func (c Config) level() (sr.CompatibilityLevel, error) {
	var l sr.CompatibilityLevel
	if err := l.UnmarshalText([]byte(strings.ToUpper(c.Compatibility))); err != nil || l == 0 {
		return 0, fmt.Errorf("schemaregistry: PIPELINE_SCHEMA_REGISTRY_COMPATIBILITY %q is not a compatibility level", c.Compatibility)
	}
	return l, nil
}

// Client is a registry client with the pipeline's operations. It is safe
// for concurrent use.
type Client struct {
	cl    *sr.Client
	level sr.CompatibilityLevel
	auto  bool

	mu    sync.Mutex
	byID  map[uint32][]byte
	frame map[string]uint32 // subject + "\x00" + schema -> id
}

// maxCachedSchemas bounds the id cache (the ids that exist in a registry;
// when full it starts over).
const maxCachedSchemas = 4096

// NewClient builds a client from the configuration. Secret files are read
// here; their contents never appear in an error.
func (c Config) NewClient() (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Configured() {
		return nil, errors.New("schemaregistry: no registry: set PIPELINE_SCHEMA_REGISTRY_URL (or PIPELINE_WIRE_FORMAT=single-object)")
	}
	level, _ := c.level()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.CAFile != "" || c.CertFile != "" || strings.HasPrefix(c.URL[0], "https:") {
		tc, err := tlsfiles.Client(c.CAFile, c.CertFile, c.KeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("schemaregistry: TLS (PIPELINE_SCHEMA_REGISTRY_CA_FILE, _CERT_FILE, _KEY_FILE): %w", err)
		}
		tr.TLSClientConfig = tc
	}
	opts := []sr.ClientOpt{sr.URLs(c.URL...), sr.HTTPClient(&http.Client{Transport: tr, Timeout: c.Timeout}),
		sr.UserAgent("privacy-pipeline")}
	pw := c.Password
	if c.PasswordFile != "" {
		var err error
		if pw, err = tlsfiles.Secret(c.PasswordFile); err != nil {
			return nil, fmt.Errorf("schemaregistry: password (PIPELINE_SCHEMA_REGISTRY_PASSWORD_FILE): %w", err)
		}
	}
	if c.Username != "" || pw != "" {
		opts = append(opts, sr.BasicAuth(c.Username, pw))
	}
	if c.TokenFile != "" {
		tok, err := tlsfiles.Secret(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("schemaregistry: token (PIPELINE_SCHEMA_REGISTRY_TOKEN_FILE): %w", err)
		}
		opts = append(opts, sr.BearerToken(tok))
	}
	cl, err := sr.NewClient(append(opts, c.Extra...)...)
	if err != nil {
		return nil, fmt.Errorf("schemaregistry: %w", err)
	}
	return &Client{cl: cl, level: level, auto: c.AutoRegister, byID: map[uint32][]byte{}, frame: map[string]uint32{}}, nil
}

// SR returns the underlying franz-go client (tools and tests).
func (c *Client) SR() *sr.Client { return c.cl }

// SchemaByID implements wireformat.Resolver: the schema text of an id,
// cached; an id the registry does not have is an error wrapping
// wireformat.ErrUnknownID, anything else a registry that cannot answer.
func (c *Client) SchemaByID(ctx context.Context, id uint32) ([]byte, error) {
	c.mu.Lock()
	s, ok := c.byID[id]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	sch, err := c.cl.SchemaByID(ctx, int(id))
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("schemaregistry: schema id %d: %w", id, wireformat.ErrUnknownID)
		}
		return nil, fmt.Errorf("schemaregistry: schema id %d: %w", id, err)
	}
	// A schema that is not Avro (Protobuf, JSON Schema) is handed over
	// as it is: the decoder refuses it, a definite answer.
	s = []byte(sch.Schema)
	c.mu.Lock()
	if len(c.byID) >= maxCachedSchemas {
		clear(c.byID)
	}
	c.byID[id] = s
	c.mu.Unlock()
	return s, nil
}

// SubjectSchemas returns every schema registered under subject, by id, in
// one request (processors/kit/writers reads the input topic's subject so);
// a subject the registry does not have is an error wrapping
// wireformat.ErrUnknownID.
func (c *Client) SubjectSchemas(ctx context.Context, subject string) (map[uint32][]byte, error) {
	all, err := c.cl.Schemas(ctx, subject)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("schemaregistry: subject %s: %w", subject, wireformat.ErrUnknownID)
		}
		return nil, fmt.Errorf("schemaregistry: subject %s: %w", subject, err)
	}
	out := make(map[uint32][]byte, len(all))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range all {
		if s.ID <= 0 || s.ID > 1<<31-1 {
			continue
		}
		out[uint32(s.ID)] = []byte(s.Schema.Schema)
		if len(c.byID) < maxCachedSchemas {
			c.byID[uint32(s.ID)] = out[uint32(s.ID)]
		}
	}
	return out, nil
}

func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || sr.IsNotFoundError(re.ErrorCode))
}

// Framer returns the framer of the outputs: Frame registers the schema
// under the topic's subject (or looks it up, without auto-registration)
// and returns the Confluent header with its id. ctx bounds those calls; a
// framer is used while processors are built.
func (c *Client) Framer(ctx context.Context) wireformat.Framer { return framer{c: c, ctx: ctx} }

type framer struct {
	c   *Client
	ctx context.Context
}

// Frame implements wireformat.Framer.
func (f framer) Frame(topic string, schemaJSON []byte) ([]byte, error) {
	id, err := f.c.idOf(f.ctx, wireformat.TopicSubject(topic), schemaJSON)
	if err != nil {
		return nil, err
	}
	return wireformat.AppendConfluent(nil, id), nil
}

// idOf registers (or looks up) schema under subject and returns its id.
func (c *Client) idOf(ctx context.Context, subject string, schemaJSON []byte) (uint32, error) {
	key := subject + "\x00" + string(schemaJSON)
	c.mu.Lock()
	id, ok := c.frame[key]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	s := sr.Schema{Schema: string(schemaJSON), Type: sr.TypeAvro}
	var ss sr.SubjectSchema
	var err error
	if c.auto {
		if ss, err = c.register(ctx, subject, s); err != nil {
			return 0, err
		}
	} else {
		ss, err = c.cl.LookupSchema(ctx, subject, s)
		if err != nil {
			if notFound(err) {
				return 0, fmt.Errorf("schemaregistry: %s: this schema is not registered and PIPELINE_SCHEMA_REGISTRY_AUTO_REGISTER is false: run 'pipeline topology apply' first", subject)
			}
			return 0, fmt.Errorf("schemaregistry: %s: %w", subject, err)
		}
	}
	if ss.ID <= 0 || ss.ID > 1<<31-1 {
		return 0, fmt.Errorf("schemaregistry: %s: the registry answered id %d", subject, ss.ID)
	}
	id = uint32(ss.ID)
	c.mu.Lock()
	c.frame[key] = id
	c.mu.Unlock()
	return id, nil
}

// register registers s under subject. Replicas starting at once register
// the same schema at the same moment: a registry may answer the losers 409
// without the schema being incompatible (Apicurio: "An artifact with ID ...
// already exists"), or fail under the contention (a 5xx, a timeout). On a
// 409 the schema is looked up (another replica registered it) and the
// subject's compatibility checked: only a schema the check refuses is an
// IncompatibleError. A 409 that is not that, a 5xx or a transport error is
// retried with backoff (8 attempts, within ctx); any other answer (401,
// 403, 422: an invalid schema) is final.
func (c *Client) register(ctx context.Context, subject string, s sr.Schema) (sr.SubjectSchema, error) {
	const attempts = 8
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ss, err := c.cl.CreateSchema(ctx, subject, s)
		if err == nil {
			return ss, nil
		}
		var re *sr.ResponseError
		isResp := errors.As(err, &re)
		switch {
		case isResp && re.StatusCode == http.StatusConflict:
			if found, lerr := c.cl.LookupSchema(ctx, subject, s); lerr == nil {
				return found, nil // another replica registered it
			}
			if ok, _, cerr := c.check(ctx, subject, s); (cerr == nil && !ok) || attempt == attempts {
				return ss, c.refusal(ctx, subject, []byte(s.Schema), err)
			}
		case isResp && re.StatusCode < 500, attempt == attempts, ctx.Err() != nil:
			return ss, fmt.Errorf("schemaregistry: registering %s: %w", subject, err)
		}
		select {
		case <-ctx.Done():
			return ss, fmt.Errorf("schemaregistry: registering %s: %w (after %w)", subject, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// refusal explains a failed registration: for an incompatible schema (HTTP
// 409), the registry's verdict and the fields that changed against the
// latest registered version.
func (c *Client) refusal(ctx context.Context, subject string, schemaJSON []byte, err error) error {
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict {
		return fmt.Errorf("schemaregistry: registering %s: %w", subject, err)
	}
	changes := ""
	if latest, lerr := c.cl.SchemaByVersion(ctx, subject, -1); lerr == nil {
		changes = describeChanges([]byte(latest.Schema.Schema), schemaJSON)
	}
	return &IncompatibleError{Subject: subject, Verdict: re.Message, Changes: changes}
}

// IncompatibleError is a schema the registry refuses as incompatible with
// the subject's registered versions.
type IncompatibleError struct {
	// Subject is the refused subject ("<topic>-value").
	Subject string
	// Verdict is the registry's explanation.
	Verdict string
	// Changes lists the fields that differ from the latest registered
	// version ("field age: int -> string; removed: email"), when known.
	Changes string
}

// Error names the subject, the changed fields and the registry's verdict.
func (e *IncompatibleError) Error() string {
	msg := "schemaregistry: the registry refuses the new schema of " + e.Subject + " as incompatible"
	if e.Changes != "" {
		msg += " (changed fields: " + e.Changes + ")"
	}
	if e.Verdict != "" {
		msg += "; registry verdict: " + e.Verdict
	}
	return msg
}
