// Command consumer is an example reader of the pipeline's output topics
// (clean.<purpose>.customer-events, agg.analytics.<name>,
// clean.ai_training.kanon), whose records use the Confluent Schema Registry
// wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro
// binary body.
//
// It reads committed records only (franz-go's kgo with
// FetchIsolationLevel(ReadCommitted)), from the earliest offset, in a fresh
// consumer group unless -group is given. It decodes each value with goavro
// and the writer schema that the id names in the registry (franz-go's sr
// client, cached by id), and prints one JSON object per record on stdout:
//
//	{"topic":..., "partition":..., "offset":...,
//	 "key":"<utf-8 key>" (or null, plus "key_b64" when the key is not UTF-8),
//	 "headers":{"name":"<utf-8 value>"}, "value":{...the decoded record...}}
//
// Values are made JSON-safe as examples/python/consumer.py does it:
// timestamps become epoch milliseconds, dates days since 1970-01-01, times of
// day milliseconds since midnight, bytes and fixed base64, decimals strings;
// unions are unwrapped to their value. It stops after -max records or when
// nothing arrived for -idle-timeout seconds (counted from the last record,
// or from the partition assignment before the first); progress and errors
// go to stderr, and it exits non-zero on any error (an undecodable record
// included).
//
//	go run ./examples/consumer -bootstrap 127.0.0.1:19092 \
//	    -registry http://127.0.0.1:18081/apis/ccompat/v7 \
//	    -topic clean.analytics.customer-events -max 10
//
// The registry password comes from -registry-password or, better (it then
// stays out of the process list), SCHEMA_REGISTRY_PASSWORD; it is never
// printed. -ca-file, -cert-file and -key-file configure TLS for both the
// brokers and the registry.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

type options struct {
	bootstrap, registry, topic, group   string
	max                                 int
	idle                                float64
	registryUser, registryPassword      string
	securityProtocol, ca, cert, keyFile string
}

func main() {
	var o options
	flag.StringVar(&o.bootstrap, "bootstrap", "", "Kafka bootstrap servers, host:port[,host:port] (required)")
	flag.StringVar(&o.registry, "registry", "", "schema registry URL, Confluent API (required)")
	flag.StringVar(&o.topic, "topic", "", "topic to read (required)")
	flag.StringVar(&o.group, "group", "", "consumer group (default: a fresh random one, so it reads from the start)")
	flag.IntVar(&o.max, "max", 0, "stop after this many records (0: no limit)")
	flag.Float64Var(&o.idle, "idle-timeout", 10, "stop when nothing arrived for this many seconds")
	flag.StringVar(&o.registryUser, "registry-user", "", "registry basic-auth user")
	flag.StringVar(&o.registryPassword, "registry-password", "", "registry basic-auth password (default: $SCHEMA_REGISTRY_PASSWORD)")
	flag.StringVar(&o.securityProtocol, "security-protocol", "", "PLAINTEXT or SSL (default SSL when -ca-file or -cert-file is given)")
	flag.StringVar(&o.ca, "ca-file", "", "PEM CA bundle to verify the brokers and the registry")
	flag.StringVar(&o.cert, "cert-file", "", "PEM client certificate (mutual TLS) for the brokers and the registry")
	flag.StringVar(&o.keyFile, "key-file", "", "PEM client key for -cert-file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("consumer: ")
	if o.bootstrap == "" || o.registry == "" || o.topic == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	tlsCfg, err := tlsConfig(o)
	if err != nil {
		return err
	}
	if o.registryPassword == "" {
		o.registryPassword = os.Getenv("SCHEMA_REGISTRY_PASSWORD")
	}
	sropts := []sr.ClientOpt{sr.URLs(o.registry)}
	if o.registryUser != "" {
		sropts = append(sropts, sr.BasicAuth(o.registryUser, o.registryPassword))
	}
	if tlsCfg != nil {
		sropts = append(sropts, sr.DialTLSConfig(tlsCfg))
	}
	reg, err := sr.NewClient(sropts...)
	if err != nil {
		return fmt.Errorf("registry client: %w", err)
	}
	if o.group == "" {
		b := make([]byte, 6)
		rand.Read(b)
		o.group = "example-consumer-go-" + hex.EncodeToString(b)
	}
	// The idle timeout counts from the last record or, before the first, from
	// when the group assigned the partitions (joining takes a few seconds).
	var assigned atomic.Int64 // UnixNano of the last assignment
	kopts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(o.bootstrap, ",")...),
		kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			assigned.Store(time.Now().UnixNano())
		}),
	}
	if tlsCfg != nil {
		kopts = append(kopts, kgo.DialTLSConfig(tlsCfg))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close() // commits what was polled (autocommit) and leaves the group

	log.Printf("reading %s (group %s, read_committed)", o.topic, o.group)
	dec := &decoder{reg: reg, byID: map[int]*writerSchema{}}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	idle := time.Duration(o.idle * float64(time.Second))
	n, last := 0, time.Now()
	for o.max <= 0 || n < o.max {
		since := last
		if a := time.Unix(0, assigned.Load()); a.After(since) {
			since = a
		}
		wait := idle - time.Since(since)
		if wait <= 0 {
			log.Printf("nothing for %gs, stopping", o.idle)
			break
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fetches := cl.PollRecords(pctx, o.max-n)
		cancel()
		if ctx.Err() != nil {
			break // interrupted
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("fetching %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		if fetches.NumRecords() > 0 {
			last = time.Now()
		}
		for _, r := range fetches.Records() {
			rec, err := dec.record(ctx, r)
			if err != nil {
				return err
			}
			if err := out.Encode(rec); err != nil {
				return fmt.Errorf("writing: %w", err)
			}
			n++
		}
	}
	log.Printf("read %d records", n)
	return nil
}

// tlsConfig is the TLS configuration of the flags, nil for PLAINTEXT.
func tlsConfig(o options) (*tls.Config, error) {
	proto := strings.ToUpper(o.securityProtocol)
	if proto == "" && (o.ca != "" || o.cert != "") {
		proto = "SSL"
	}
	switch proto {
	case "", "PLAINTEXT":
		return nil, nil
	case "SSL":
	default:
		return nil, fmt.Errorf("security protocol %q: want PLAINTEXT or SSL", o.securityProtocol)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", o.ca)
		}
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// output is one printed record, the shape examples/python/consumer.py prints.
type output struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	KeyB64    string            `json:"key_b64,omitempty"`
	Headers   map[string]string `json:"headers"`
	Value     any               `json:"value"`
}

// writerSchema is a registry schema, compiled.
type writerSchema struct {
	codec *goavro.Codec
	conv  converter
	root  any // the schema, parsed JSON
}

// decoder decodes Confluent-framed values, fetching writer schemas by id.
type decoder struct {
	reg  *sr.Client
	byID map[int]*writerSchema
}

func (d *decoder) record(ctx context.Context, r *kgo.Record) (*output, error) {
	o := &output{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Headers: map[string]string{}}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			k := string(r.Key)
			o.Key = &k
		} else {
			o.KeyB64 = base64.StdEncoding.EncodeToString(r.Key)
		}
	}
	for _, h := range r.Headers {
		o.Headers[h.Key] = strings.ToValidUTF8(string(h.Value), "\uFFFD")
	}
	if r.Value == nil {
		return o, nil // a tombstone
	}
	where := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
	id, body, err := (&sr.ConfluentHeader{}).DecodeID(r.Value)
	if err != nil {
		return nil, fmt.Errorf("%s: not Confluent-framed: %w", where, err)
	}
	ws, err := d.schema(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	native, rest, err := ws.codec.NativeFromBinary(body)
	if err != nil {
		return nil, fmt.Errorf("%s: decoding with schema id %d: %w", where, id, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%s: %d bytes left after the record (schema id %d)", where, len(rest), id)
	}
	o.Value = ws.conv.value(ws.root, "", native)
	return o, nil
}

func (d *decoder) schema(ctx context.Context, id int) (*writerSchema, error) {
	if ws, ok := d.byID[id]; ok {
		return ws, nil
	}
	s, err := d.reg.SchemaByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fetching schema id %d: %w", id, err)
	}
	if s.Type != sr.TypeAvro {
		return nil, fmt.Errorf("schema id %d is %s, not Avro", id, s.Type)
	}
	codec, err := goavro.NewCodec(s.Schema)
	if err != nil {
		return nil, fmt.Errorf("compiling schema id %d: %w", id, err)
	}
	ws := &writerSchema{codec: codec, conv: converter{named: map[string]map[string]any{}}}
	if err := json.Unmarshal([]byte(s.Schema), &ws.root); err != nil {
		return nil, fmt.Errorf("parsing schema id %d: %w", id, err)
	}
	ws.conv.collect(ws.root, "")
	d.byID[id] = ws
	return ws, nil
}

// converter turns goavro's native values into JSON-safe ones, guided by the
// writer schema (goavro's time.Time does not say whether it was a date or a
// timestamp, and unions come wrapped as {"type name": value}).
type converter struct {
	named map[string]map[string]any // full name -> record, enum or fixed schema
}

var primitives = map[string]bool{"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true}

// qualify is the full name and the namespace for the children of a named
// schema s that appears in namespace ns.
func qualify(s map[string]any, ns string) (full, childNS string) {
	name, _ := s["name"].(string)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name, name[:i]
	}
	if n, ok := s["namespace"].(string); ok {
		ns = n
	}
	if ns == "" {
		return name, ""
	}
	return ns + "." + name, ns
}

// collect records the named schemas in s (found in namespace ns).
func (c converter) collect(s any, ns string) {
	switch s := s.(type) {
	case []any:
		for _, b := range s {
			c.collect(b, ns)
		}
	case map[string]any:
		switch s["type"] {
		case "record", "error", "enum", "fixed":
			full, childNS := qualify(s, ns)
			c.named[full] = s
			fields, _ := s["fields"].([]any)
			for _, f := range fields {
				if f, ok := f.(map[string]any); ok {
					c.collect(f["type"], childNS)
				}
			}
		case "array":
			c.collect(s["items"], ns)
		case "map":
			c.collect(s["values"], ns)
		default:
			c.collect(s["type"], ns)
		}
	}
}

// lookup finds a named schema referenced as name from namespace ns.
func (c converter) lookup(name, ns string) (map[string]any, string) {
	full := name
	if !strings.Contains(name, ".") && ns != "" {
		full = ns + "." + name
	}
	if s, ok := c.named[full]; ok {
		return s, ns
	}
	return c.named[name], ns
}

// value converts the native value v of schema s (in namespace ns).
func (c converter) value(s any, ns string, v any) any {
	switch s := s.(type) {
	case string:
		if primitives[s] {
			return scalar(nil, v)
		}
		if def, dns := c.lookup(s, ns); def != nil {
			return c.value(def, dns, v)
		}
	case []any: // a union: goavro gives nil or {"type name": value}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return scalar(nil, v)
		}
		for k, bv := range m {
			for _, b := range s {
				if c.unionMember(b, ns, k) {
					return c.value(b, ns, bv)
				}
			}
			return scalar(nil, bv)
		}
	case map[string]any:
		switch t := s["type"].(type) {
		case string:
			switch t {
			case "record", "error":
				_, childNS := qualify(s, ns)
				rec, _ := v.(map[string]any)
				out := make(map[string]any, len(rec))
				fields, _ := s["fields"].([]any)
				for _, f := range fields {
					f, _ := f.(map[string]any)
					name, _ := f["name"].(string)
					out[name] = c.value(f["type"], childNS, rec[name])
				}
				return out
			case "array":
				items, _ := v.([]any)
				out := make([]any, len(items))
				for i, x := range items {
					out[i] = c.value(s["items"], ns, x)
				}
				return out
			case "map":
				vals, _ := v.(map[string]any)
				out := make(map[string]any, len(vals))
				for k, x := range vals {
					out[k] = c.value(s["values"], ns, x)
				}
				return out
			case "enum":
				return v
			}
			if primitives[t] || t == "fixed" {
				return scalar(s, v)
			}
			return c.value(t, ns, v)
		default: // {"type": {...}} or {"type": [...]}
			return c.value(t, ns, v)
		}
	}
	return scalar(nil, v)
}

// unionMember reports whether the union member b is the one goavro names k:
// a primitive's name (with ".<logicalType>" for logical types), a named
// type's full name, "array" or "map".
func (c converter) unionMember(b any, ns, k string) bool {
	switch b := b.(type) {
	case string:
		if primitives[b] {
			return b == k
		}
		def, dns := c.lookup(b, ns)
		if def == nil {
			return false
		}
		full, _ := qualify(def, dns)
		return full == k
	case map[string]any:
		t, _ := b["type"].(string)
		switch t {
		case "record", "error", "enum", "fixed":
			full, _ := qualify(b, ns)
			return full == k || (t == "fixed" && strings.HasPrefix(k, "fixed."))
		case "array", "map":
			return t == k
		}
		return t == k || strings.HasPrefix(k, t+".")
	}
	return false
}

// scalar converts a non-container value; s is its schema when it may carry
// a logical type.
func scalar(s map[string]any, v any) any {
	logical, _ := s["logicalType"].(string)
	switch v := v.(type) {
	case time.Time:
		if logical == "date" {
			return v.Unix() / 86400 // goavro gives midnight UTC
		}
		return v.UnixMilli()
	case time.Duration:
		return v.Milliseconds()
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case *big.Rat:
		scale, _ := s["scale"].(float64)
		return v.FloatString(int(scale))
	case float32:
		return float64(v) // as Python prints it: the float32's exact value
	}
	return v
}
