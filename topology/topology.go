// Package topology declares, once, the topics of SPEC section 2 and the
// processors that read and write them, as a value that can be validated,
// printed (a table and a Mermaid graph) and applied to a cluster with kadm.
//
// It imports purpose and franz-go's kadm/kgo (for Apply).
package topology

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// Topic is one declared topic.
type Topic struct {
	Name        string
	Partitions  int32
	Replication int16
	// Configs are topic configs (retention.ms, cleanup.policy, ...).
	Configs map[string]string
	// Key says what the record key is.
	Key string
	// Holds says what the topic holds.
	Holds string
	// Restricted topics are not for analytics consumers (raw, quarantine).
	Restricted bool
	// FixedPartitions: Apply never changes the partition count (a topic
	// whose keys must stay on the partition they were first written to).
	FixedPartitions bool
	// Purpose is the wire name of the purpose whose consumers may read the
	// topic (its clean, aggregate and record-level k-anonymous topics);
	// empty for the pipeline's own topics. The ACLs read it.
	Purpose string
	// External topics are written by producers outside the pipeline (raw);
	// the ACL file's producers may write them.
	External bool
}

// Processor is one stream processor and its topics.
type Processor struct {
	Name string
	// Command is the 'pipeline run' command that runs the processor (the
	// kanon command runs two); the ACL file names principals by command.
	Command string
	Group   string
	Inputs  []string
	Outputs []string
	// Reads are topics the processor may read besides its inputs, outside
	// its consumer group (the privacy processor's consent log).
	Reads []string
	// State are the outputs that hold its checkpoints, read back on
	// restore.
	State []string
	// Transactional processors run in the exactly-once runner, whose
	// transactional ids start with the group (unless
	// PIPELINE_TRANSACTIONAL_ID is set).
	Transactional bool
	// Stores are external state the processor reads or writes (e.g. Redis).
	Stores []string
	Doc    string
}

// Topology is the declared graph.
type Topology struct {
	Topics     []Topic
	Processors []Processor
}

// Names of the topics, configurable.
type Names struct {
	Raw, Consent, Requests, Erasures, Audit, Quarantine string
	// Keys holds the wrapped per-subject data keys.
	Keys string
	// CleanTemplate contains {purpose}.
	CleanTemplate string
	// StateTemplate names a stateful processor's checkpoint topic; it
	// contains {processor}.
	StateTemplate string
	// AggTemplate names aggregate topics ({purpose}, {name}); KanonTemplate
	// names record-level k-anonymous topics ({purpose}).
	AggTemplate, KanonTemplate string
	// Kanon declares the k-anonymity outputs (nil: none).
	Kanon *kanonspec.Spec
	// Groups are the processors' consumer groups.
	Groups Groups
}

// Groups names the consumer group of each processor.
type Groups struct {
	Privacy, ConsentSync, KeySync, Requests, KanonAggregates, KanonMerge, KanonRecords string
}

// State returns the checkpoint topic of a stateful processor.
func (n Names) State(processor string) string {
	return strings.ReplaceAll(n.StateTemplate, "{processor}", processor)
}

// Names of the k-anonymity processors.
const (
	// KanonAggregates is the aggregates' first stage (windows per input
	// partition, publishing partial windows).
	KanonAggregates = "kanon-aggregates"
	// KanonMerge is the aggregates' second stage (merges the partials of
	// every input partition and publishes the rows).
	KanonMerge   = "kanon-merge"
	KanonRecords = "kanon-records"
	// KanonPartials names the internal topic between the aggregates' two
	// stages, through the state template (privacy.state.kanon-partials).
	KanonPartials = "kanon-partials"
)

// Partials returns the internal topic between the aggregates' two stages.
func (n Names) Partials() string { return n.State(KanonPartials) }

// The SPEC section 2 names that a producer or a consumer outside the
// pipeline may need as constants; DefaultNames holds them all.
const (
	// DefaultRawTopic is the raw input topic.
	DefaultRawTopic = "raw.customer-events"
	// DefaultQuarantineTopic receives what the privacy processor cannot read.
	DefaultQuarantineTopic = "quarantine.customer-events"
	// DefaultConsentTopic is the consent log.
	DefaultConsentTopic = "privacy.consent"
	// DefaultKeysTopic holds the wrapped per-subject data keys.
	DefaultKeysTopic = "privacy.keys"
)

// DefaultNames are the SPEC section 2 names: the one place the defaults
// are written. internal/app/config documents the same values as the
// PIPELINE_* defaults, and a test of internal/app/wiring checks that the
// configuration's defaults map to exactly these names.
func DefaultNames() Names {
	return Names{
		Raw: DefaultRawTopic, Consent: DefaultConsentTopic, Requests: "privacy.requests",
		Erasures: "privacy.erasures", Audit: "privacy.audit", Quarantine: DefaultQuarantineTopic, Keys: DefaultKeysTopic,
		CleanTemplate: "clean.{purpose}.customer-events", StateTemplate: "privacy.state.{processor}",
		AggTemplate: kanonspec.DefaultAggregateTopicTemplate, KanonTemplate: kanonspec.DefaultKanonTopicTemplate,
		Kanon: defaultKanon(),
		Groups: Groups{Privacy: "privacy-pipeline-privacy", ConsentSync: "privacy-pipeline-consent-sync", KeySync: "privacy-pipeline-key-sync", Requests: "privacy-pipeline-requests",
			KanonAggregates: "privacy-pipeline-" + KanonAggregates, KanonMerge: "privacy-pipeline-" + KanonMerge,
			KanonRecords: "privacy-pipeline-" + KanonRecords},
	}
}

func defaultKanon() *kanonspec.Spec {
	s, err := kanonspec.Default()
	if err != nil {
		return nil // a test of kanonspec fails on the checked-in file
	}
	return s
}

func (n Names) cleanOf(purposeName string) string {
	return strings.ReplaceAll(n.CleanTemplate, "{purpose}", purposeName)
}

// Clean returns the clean topic of a purpose.
func (n Names) Clean(p purpose.Purpose) string {
	return strings.ReplaceAll(n.CleanTemplate, "{purpose}", p.String())
}

// Options size the topics.
type Options struct {
	// Partitions of the raw and clean topics: the maximum parallelism of the
	// privacy processor (default 12).
	Partitions int32
	// Replication factor of every topic (default 3; 1 for a single broker).
	Replication int16
	// RawRetention keeps raw events short (data minimisation; default 24h).
	RawRetention time.Duration
	// CleanRetention is the retention of a purpose's topics when
	// PurposeRetention names no value for the purpose (default 30 days).
	CleanRetention time.Duration
	// PurposeRetention is the retention of each purpose's topics, by the
	// purpose's wire name: its clean topic and the k-anonymity outputs
	// derived from it. Wiring sets it from the policy's retention_days
	// (policy.Policy.RetentionByPurpose); a purpose it leaves out, or a
	// value <= 0, gets CleanRetention.
	PurposeRetention map[string]time.Duration
}

// Retention returns the retention of a purpose's topics: its
// PurposeRetention, else CleanRetention (after defaults).
func (o Options) Retention(purposeName string) time.Duration {
	if d := o.PurposeRetention[purposeName]; d > 0 {
		return d
	}
	if o.CleanRetention > 0 {
		return o.CleanRetention
	}
	return 30 * 24 * time.Hour
}

func (o *Options) defaults() {
	if o.Partitions <= 0 {
		o.Partitions = 12
	}
	if o.Replication <= 0 {
		o.Replication = 3
	}
	if o.RawRetention <= 0 {
		o.RawRetention = 24 * time.Hour
	}
	if o.CleanRetention <= 0 {
		o.CleanRetention = 30 * 24 * time.Hour
	}
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Default returns the product's topology.
func Default(n Names, o Options) Topology {
	o.defaults()
	minISR := "1"
	if o.Replication >= 3 {
		minISR = "2"
	}
	t := Topology{}
	add := func(tp Topic) {
		tp.Replication = o.Replication
		if tp.Configs == nil {
			tp.Configs = map[string]string{}
		}
		tp.Configs["min.insync.replicas"] = minISR
		t.Topics = append(t.Topics, tp)
	}
	add(Topic{Name: n.Raw, Partitions: o.Partitions, Key: "subject id", Restricted: true, External: true,
		Holds:   "raw events from producers (Avro with the raw schema, Confluent-framed or single-object); only the pipeline reads it",
		Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(o.RawRetention)}})
	add(Topic{Name: n.Consent, Partitions: o.Partitions, Key: "subject id", Restricted: true,
		Holds:   "consent changes (key subject/purpose, partitioned by subject), the source of truth; Redis is a cache of it; 30 days of full history before compaction",
		Configs: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": ms(30 * 24 * time.Hour)}})
	// A shredded key's wrapped bytes are gone from the log once the
	// segment holding its tombstone has rolled and the cleaner has
	// compacted it. Kafka never compacts the active segment and rolls it
	// only on an append, once its first record is older than
	// min(segment.ms, max.compaction.lag.ms); the key sync's heartbeat
	// (a tombstone under keysync.HeartbeatKey on every partition every
	// PIPELINE_KEY_HEARTBEAT_INTERVAL, H) provides that append on a quiet
	// partition. The rolled segment is due for cleaning once its first
	// record is older than max.compaction.lag.ms, and the cleaner looks at
	// least every log.cleaner.backoff.ms (B, broker default 15s); an open
	// transaction holds cleaning back at most the transaction timeout (T,
	// 10s). Bound, from the tombstone's commit:
	//   max(min(segment.ms, max.compaction.lag.ms) + H, max.compaction.lag.ms) + B + T
	// = 1h + 1m + 15s + 10s with these settings (about 1h 1.5m), plus the
	// cleaner's time on other logs ahead of it. Measured with small
	// settings by TestKeyCompactionBoundOnRealServices. The tombstone
	// itself (no key bytes) goes after delete.retention.ms. Each broker's
	// cleaner does this for its own replica; on disk, the replaced segment
	// file is deleted file.delete.delay.ms (1m) after the cleaning.
	add(Topic{Name: n.Keys, Partitions: o.Partitions, Key: "data key id (dk1.<purpose>.<pseudonym key id>.<pseudonym>)", Restricted: true,
		Holds: "wrapped per-subject data keys (encrypt, tokenize), the source of truth; Redis caches them; a tombstone shreds a key (erasure): the wrapped bytes are gone from the log within about 1h 1.5m of the tombstone (segment.ms and max.compaction.lag.ms 1h, the key sync's heartbeat every 1m rolls quiet partitions, log.cleaner.backoff.ms 15s, transaction timeout 10s)",
		Configs: map[string]string{"cleanup.policy": "compact", "segment.ms": ms(time.Hour), "max.compaction.lag.ms": ms(time.Hour),
			"min.compaction.lag.ms": "0", "delete.retention.ms": ms(time.Hour)}})
	// Keyed by request id, compacted: the latest state of every request
	// is kept (accountability), and once a subject is erased its requests'
	// latest records carry its ledger mark, not its raw id, so compaction
	// removes the raw id: within about the key topic's bound (segment.ms,
	// max.compaction.lag.ms 1 h, the requests service's heartbeat
	// PIPELINE_REQUEST_HEARTBEAT_INTERVAL rolling quiet partitions, the
	// cleaner's backoff).
	add(Topic{Name: n.Requests, Partitions: o.Partitions, Key: "request id", Restricted: true,
		Holds: "data-subject requests (erasure, access, portability): every change of each, JSON; the latest per request id is its state (raw subject id until erased, then the ledger mark: the raw id's records are compacted away within about 1 h, heartbeats rolling quiet partitions)",
		Configs: map[string]string{"cleanup.policy": "compact", "segment.ms": ms(time.Hour), "max.compaction.lag.ms": ms(time.Hour),
			"min.compaction.lag.ms": "0"}})
	add(Topic{Name: n.Erasures, Partitions: o.Partitions, Key: "pseudonym",
		Holds:   "erasure notices for downstream stores",
		Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(365 * 24 * time.Hour)}})
	add(Topic{Name: n.Audit, Partitions: 1, Key: "processor",
		Holds:   "audit records (internal/audit, JSON v1): the privacy processor's decision summary per committed batch, consent changes and requests with their principal, erasures; never PII (a subject only as its erasure-ledger mark)",
		Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(400 * 24 * time.Hour)}})
	cleans := make([]string, 0, purpose.Count)
	for _, p := range purpose.All {
		add(Topic{Name: n.Clean(p), Partitions: o.Partitions, Key: "pseudonym (per-purpose key), never the raw id", Purpose: p.String(),
			Holds:   "clean events for purpose " + p.String() + " (Avro, Confluent-framed, derived schema schemas/clean/" + p.String() + ".customer-events.avsc under <topic>-value)",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(o.Retention(p.String()))}})
		cleans = append(cleans, n.Clean(p))
	}
	add(Topic{Name: n.Quarantine, Partitions: 1, Key: "none", Restricted: true,
		Holds:   "records that could not be decoded or validated; reason code in header pp-quarantine-reason",
		Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(14 * 24 * time.Hour)}})
	kanonTopics(n, o, add)
	t.Processors = []Processor{{
		Name: "privacy", Command: "privacy", Group: n.Groups.Privacy, Transactional: true,
		Inputs: []string{n.Raw}, Outputs: append(cleans, n.Quarantine, n.Keys, n.Audit), Reads: []string{n.Consent}, Stores: []string{"redis consent cache", "redis data keys"},
		Doc: "decode, consent join, field policy per purpose, encode, publish (exactly once)",
	}, {
		Name: "consent-api", Command: "consent-api", Outputs: []string{n.Consent, n.Requests, n.Audit}, Stores: []string{"redis consent cache", "redis requests"},
		Doc: "HTTP API: set, withdraw, read, history, bulk import; file and follow data-subject requests",
	}, {
		Name: "consent-sync", Command: "consent-sync", Group: n.Groups.ConsentSync,
		Inputs: []string{n.Consent}, Stores: []string{"redis consent cache"},
		Doc: "materialise consent into Redis, in order per subject and purpose; invalidate processors' caches; rebuild",
	}, {
		Name: "key-sync", Command: "consent-sync", Group: n.Groups.KeySync,
		Inputs: []string{n.Keys}, Outputs: []string{n.Keys}, Stores: []string{"redis data keys"},
		Doc: "materialise the wrapped data keys into Redis (logged), apply shreds; rebuild when Redis lost them; heartbeat tombstones on every partition so quiet segments roll and shredded keys compact away",
	}}
	t.Processors = append(t.Processors, Processor{
		Name: "requests", Command: "requests", Group: n.Groups.Requests, Transactional: true,
		Inputs: []string{n.Requests}, Outputs: []string{n.Requests, n.Keys, n.Consent, n.Erasures, n.Audit}, Reads: cleans,
		Stores: []string{"redis requests", "redis consent cache", "redis data keys"},
		Doc:    "carry out verified data-subject requests: erasure (shred keys, tombstones, ledger, notices), access and portability exports",
	})
	t.Processors = append(t.Processors, kanonProcessors(n)...)
	return t
}

// kanonTopics declares the k-anonymity outputs and the processors' state.
func kanonTopics(n Names, o Options, add func(Topic)) {
	if n.Kanon == nil {
		return
	}
	state := func(proc, input string) {
		add(Topic{Name: n.State(proc), Partitions: o.Partitions, Key: "input partition", Restricted: true,
			Holds:   "checkpoints of " + proc + " (state per partition of " + input + ", written in the same transaction as its outputs)",
			Configs: map[string]string{"cleanup.policy": "compact", "segment.ms": ms(time.Hour)}})
	}
	if len(n.Kanon.Aggregates) > 0 {
		// One partition, whatever Options.Partitions says, and never more:
		// the merge keeps an aggregate's pending windows and DP period
		// ledger in the state of the partials partition its key lands on;
		// more partitions would move the key to a fresh state (old windows
		// never complete, new ones release subsets, the budget restarts).
		add(Topic{Name: n.Partials(), Partitions: 1, FixedPartitions: true, Key: "aggregate name", Restricted: true,
			Holds:   "partial windows of " + KanonAggregates + " for " + KanonMerge + ": per input partition and closed window the level-0 cells with their distinct subject ids, and each partition's progress; kept until the merge has released them",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(7 * 24 * time.Hour)}})
		state(KanonMerge, n.Partials())
		for _, a := range n.Kanon.Aggregates {
			add(Topic{Name: a.TopicFrom(n.AggTemplate), Partitions: o.Partitions, Key: "window start, level and dimension values (one row for all input partitions)", Purpose: a.Purpose,
				Holds:   "k-anonymous aggregate rows (>= k distinct subjects each; Avro, schemas/" + schemas.AggregateSchemaFile(a.Purpose, a.Name) + ")",
				Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(o.Retention(a.Purpose))}})
		}
		state(KanonAggregates, n.cleanOf(n.Kanon.Aggregates[0].Purpose))
	}
	if r := n.Kanon.Records; r != nil {
		add(Topic{Name: r.TopicFrom(n.KanonTemplate), Partitions: o.Partitions, Key: "cluster id", Purpose: r.Purpose,
			Holds:   "record-level k-anonymous events (CASTLE; Avro, schemas/" + schemas.KanonSchemaFile(r.Purpose) + ")",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": ms(o.Retention(r.Purpose))}})
		state(KanonRecords, n.cleanOf(r.Purpose))
	}
}

func kanonProcessors(n Names) []Processor {
	if n.Kanon == nil {
		return nil
	}
	var ps []Processor
	if len(n.Kanon.Aggregates) > 0 {
		var outs []string
		for _, a := range n.Kanon.Aggregates {
			outs = append(outs, a.TopicFrom(n.AggTemplate))
		}
		ps = append(ps, Processor{Name: KanonAggregates, Command: "kanon", Group: n.Groups.KanonAggregates, Transactional: true,
			Inputs: []string{n.cleanOf(n.Kanon.Aggregates[0].Purpose), n.Erasures}, Outputs: []string{n.Partials(), n.State(KanonAggregates)}, State: []string{n.State(KanonAggregates)},
			Doc: "k-anonymous aggregates, stage 1: tumbling event-time windows per input partition, DP contribution bounding; publishes each closed window's partial contributions and the partition's progress; erasure notices (co-partitioned second input) drop the subject from open windows"},
			Processor{Name: KanonMerge, Command: "kanon", Group: n.Groups.KanonMerge, Transactional: true,
				Inputs: []string{n.Partials()}, Outputs: append(outs, n.State(KanonMerge)), State: []string{n.State(KanonMerge)},
				Doc: "k-anonymous aggregates, stage 2: merges every input partition's partials; a window is released once all have passed it: >= k distinct subjects per row, roll-up, margins from released rows, optional DP noise"})
	}
	if r := n.Kanon.Records; r != nil {
		ps = append(ps, Processor{Name: KanonRecords, Command: "kanon-records", Group: n.Groups.KanonRecords, Transactional: true,
			Inputs: []string{n.cleanOf(r.Purpose), n.Erasures}, Outputs: []string{r.TopicFrom(n.KanonTemplate), n.State(KanonRecords)}, State: []string{n.State(KanonRecords)},
			Doc: "record-level k-anonymisation (CASTLE): clusters of >= k distinct subjects within delay delta, outliers suppressed; erasure notices (co-partitioned second input) drop the subject's held records"})
	}
	return ps
}

// Topic returns the declared topic with that name.
func (t Topology) Topic(name string) (Topic, bool) {
	for _, tp := range t.Topics {
		if tp.Name == name {
			return tp, true
		}
	}
	return Topic{}, false
}

// Validate checks that names are unique and non-empty, sizes are positive,
// and every processor reads and writes only declared topics.
func (t Topology) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, tp := range t.Topics {
		switch {
		case tp.Name == "" || strings.ContainsAny(tp.Name, " /\\") || len(tp.Name) > 249:
			errs = append(errs, fmt.Errorf("topology: invalid topic name %q", tp.Name))
		case seen[tp.Name]:
			errs = append(errs, fmt.Errorf("topology: topic %s declared twice", tp.Name))
		}
		seen[tp.Name] = true
		if tp.Partitions <= 0 || tp.Replication <= 0 {
			errs = append(errs, fmt.Errorf("topology: topic %s needs positive partitions and replication", tp.Name))
		}
	}
	procs := map[string]bool{}
	for _, p := range t.Processors {
		if p.Name == "" || procs[p.Name] {
			errs = append(errs, fmt.Errorf("topology: processor name %q empty or repeated", p.Name))
		}
		procs[p.Name] = true
		for _, in := range p.Inputs {
			if !seen[in] {
				errs = append(errs, fmt.Errorf("topology: processor %s reads undeclared topic %s", p.Name, in))
			}
		}
		for _, out := range p.Outputs {
			if !seen[out] {
				errs = append(errs, fmt.Errorf("topology: processor %s writes undeclared topic %s", p.Name, out))
			}
		}
		for _, r := range p.Reads {
			if !seen[r] {
				errs = append(errs, fmt.Errorf("topology: processor %s reads undeclared topic %s", p.Name, r))
			}
		}
		for _, st := range p.State {
			if !slices.Contains(p.Outputs, st) {
				errs = append(errs, fmt.Errorf("topology: processor %s: state topic %s is not one of its outputs", p.Name, st))
			}
		}
		if p.Command == "" {
			errs = append(errs, fmt.Errorf("topology: processor %s names no command", p.Name))
		}
		if p.Transactional && p.Group == "" {
			errs = append(errs, fmt.Errorf("topology: transactional processor %s has no group", p.Name))
		}
	}
	return errors.Join(errs...)
}

// Table renders the topics and processors as aligned text.
func (t Topology) Table() string {
	var b strings.Builder
	w := len("TOPIC")
	for _, tp := range t.Topics {
		w = max(w, len(tp.Name))
	}
	fmt.Fprintf(&b, "%-*s %5s %3s  %-10s %-11s %s\n", w, "TOPIC", "PARTS", "RF", "CLEANUP", "RETENTION", "KEY / HOLDS")
	for _, tp := range t.Topics {
		ret := "-"
		if v, ok := tp.Configs["retention.ms"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				ret = (time.Duration(n) * time.Millisecond).String()
			}
		}
		r := ""
		if tp.Restricted {
			r = " [restricted]"
		}
		fmt.Fprintf(&b, "%-*s %5d %3d  %-10s %-11s %s: %s%s\n", w, tp.Name, tp.Partitions, tp.Replication, tp.Configs["cleanup.policy"], ret, tp.Key, tp.Holds, r)
	}
	fmt.Fprintf(&b, "\n%-17s %-34s %s\n", "PROCESSOR", "GROUP", "READS -> WRITES")
	for _, p := range t.Processors {
		fmt.Fprintf(&b, "%-17s %-34s %s -> %s\n", p.Name, p.Group, strings.Join(p.Inputs, ","), strings.Join(p.Outputs, ","))
	}
	return b.String()
}

// Mermaid renders the graph as a Mermaid flowchart.
func (t Topology) Mermaid() string {
	id := func(s string) string {
		return strings.NewReplacer(".", "_", "-", "_", "{", "", "}", "").Replace(s)
	}
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	used := map[string]bool{}
	for _, p := range t.Processors {
		for _, in := range p.Inputs {
			used[in] = true
		}
		for _, out := range p.Outputs {
			used[out] = true
		}
	}
	names := make([]string, 0, len(t.Topics))
	for _, tp := range t.Topics {
		names = append(names, tp.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		if used[n] {
			fmt.Fprintf(&b, "  %s[(%s)]\n", id(n), n)
		}
	}
	for _, p := range t.Processors {
		fmt.Fprintf(&b, "  %s{{%s}}\n", id("proc_"+p.Name), p.Name)
		for _, s := range p.Stores {
			fmt.Fprintf(&b, "  %s[/%s/] -.-> %s\n", id("store_"+strings.ReplaceAll(s, " ", "_")), s, id("proc_"+p.Name))
		}
		for _, in := range p.Inputs {
			fmt.Fprintf(&b, "  %s --> %s\n", id(in), id("proc_"+p.Name))
		}
		for _, out := range p.Outputs {
			fmt.Fprintf(&b, "  %s --> %s\n", id("proc_"+p.Name), id(out))
		}
	}
	return b.String()
}
