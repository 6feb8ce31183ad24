package topology

// Kafka ACLs (SPEC 3.10): who may read and write which of the declared
// topics, groups and transactional ids, derived from the Topology and an
// ACL file that names the principals, and reconciled with kadm.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
)

// ACLSpec is the ACL file: which principal runs each 'pipeline run'
// command, and which purposes each consumer principal may read.
//
// A principal named in the file belongs to it: ApplyACLs deletes that
// principal's ACLs on the pipeline's topics, groups and transactional
// ids that the file does not derive.
type ACLSpec struct {
	// Processors maps a 'pipeline run' command (privacy, consent-sync,
	// consent-api, kanon, kanon-records) to the principal it runs as. A
	// command left out gets no ACLs.
	Processors map[string]string `json:"processors"`
	// Admin is the principal that runs 'pipeline topology apply'. It gets
	// nothing from the file and is only reported: it must be a super user
	// or hold ALTER on the cluster (and CREATE, ALTER_CONFIGS to create and
	// configure the topics).
	Admin string `json:"admin,omitempty"`
	// Consumers are the analytics and AI consumers.
	Consumers []ACLConsumer `json:"consumers"`
	// Producers are the principals of the applications that publish raw
	// events: WRITE on the external topics (raw) only.
	Producers []string `json:"producers,omitempty"`
	// TransactionalIDPrefix maps a command to the prefix of its
	// transactional ids, when PIPELINE_TRANSACTIONAL_ID is set.
	// Default: each processor's consumer group (the runner's ids are
	// <group>-<host>-<random>).
	TransactionalIDPrefix map[string]string `json:"transactional_id_prefix,omitempty"`
}

// ACLConsumer is one consumer principal and what it may read.
type ACLConsumer struct {
	// Principal is the consumer's Kafka principal, User:<name>.
	Principal string `json:"principal"`
	// Purposes are the wire names of the purposes whose clean, aggregate
	// and record-level k-anonymous topics it may read.
	Purposes []string `json:"purposes"`
	// Groups are the consumer-group prefixes it may use.
	Groups []string `json:"groups"`
}

// ACL is one Kafka ACL binding.
type ACL struct {
	Principal  string
	Host       string
	Resource   kmsg.ACLResourceType
	Name       string
	Pattern    kadm.ACLPattern
	Operation  kadm.ACLOperation
	Permission kmsg.ACLPermissionType
}

// String renders the ACL as one line, for example
// "ALLOW User:x READ TOPIC raw.customer-events (literal)".
func (a ACL) String() string {
	s := fmt.Sprintf("%s %s %s %s %s (%s)", a.Permission, a.Principal, a.Operation, a.Resource, a.Name, strings.ToLower(a.Pattern.String()))
	if a.Host != "*" {
		s += " from host " + a.Host
	}
	return s
}

func compareACL(a, b ACL) int {
	return cmp.Or(strings.Compare(a.Principal, b.Principal), cmp.Compare(a.Resource, b.Resource),
		strings.Compare(a.Name, b.Name), cmp.Compare(a.Pattern, b.Pattern), cmp.Compare(a.Operation, b.Operation),
		cmp.Compare(a.Permission, b.Permission), strings.Compare(a.Host, b.Host))
}

// ReadACLSpec reads and parses an ACL file (ParseACLSpec).
func ReadACLSpec(path string) (ACLSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ACLSpec{}, fmt.Errorf("acls: %w", err)
	}
	s, err := ParseACLSpec(b)
	if err != nil {
		return ACLSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseACLSpec decodes an ACL file strictly (unknown fields refused) and
// checks what needs no topology: the principals' format, known and
// distinct purposes, non-empty group prefixes. Validate checks the rest.
func ParseACLSpec(data []byte) (ACLSpec, error) {
	var s ACLSpec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return ACLSpec{}, fmt.Errorf("acls: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ACLSpec{}, errors.New("acls: data after the JSON object")
	}
	if err := s.checkSyntax(); err != nil {
		return ACLSpec{}, err
	}
	return s, nil
}

// checkSyntax checks what needs no topology (ParseACLSpec).
func (s ACLSpec) checkSyntax() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("acls: "+format, a...)) }
	if len(s.Processors) == 0 && len(s.Consumers) == 0 && len(s.Producers) == 0 {
		bad("the file names no processor, consumer or producer")
	}
	for i, p := range s.Producers {
		if err := checkPrincipal(p); err != nil {
			bad("producers[%d]: %v", i, err)
		}
		if slices.Contains(s.Producers[:i], p) {
			bad("producers: %s listed twice", p)
		}
	}
	for _, cmd := range sortedKeys(s.Processors) {
		if err := checkPrincipal(s.Processors[cmd]); err != nil {
			bad("processors: %s: %v", cmd, err)
		}
	}
	if s.Admin != "" {
		if err := checkPrincipal(s.Admin); err != nil {
			bad("admin: %v", err)
		}
	}
	for _, cmd := range sortedKeys(s.TransactionalIDPrefix) {
		if p := s.TransactionalIDPrefix[cmd]; p == "" || p == "*" || hasControl(p) {
			bad("transactional_id_prefix: %s: prefix %q would match every transactional id or is not a name", cmd, p)
		}
	}
	seen := map[string]bool{}
	for i, c := range s.Consumers {
		where := fmt.Sprintf("consumers[%d]", i)
		if err := checkPrincipal(c.Principal); err != nil {
			bad("%s: %v", where, err)
		} else {
			where += " (" + c.Principal + ")"
		}
		if seen[c.Principal] {
			bad("%s: principal listed twice: give one entry all its purposes", where)
		}
		seen[c.Principal] = true
		if len(c.Purposes) == 0 {
			bad("%s: no purposes", where)
		}
		ps := map[string]bool{}
		for _, p := range c.Purposes {
			if _, err := purpose.Parse(p); err != nil {
				bad("%s: %v", where, err)
			}
			if ps[p] {
				bad("%s: purpose %s listed twice", where, p)
			}
			ps[p] = true
		}
		gs := map[string]bool{}
		for _, g := range c.Groups {
			if g == "" || g == "*" || hasControl(g) {
				bad("%s: group prefix %q would match every consumer group or is not a name", where, g)
			}
			if gs[g] {
				bad("%s: group prefix %s listed twice", where, g)
			}
			gs[g] = true
		}
	}
	return errors.Join(errs...)
}

// checkPrincipal accepts Kafka's principal format, User:<name> (mutual
// TLS principals are User:CN=...), and refuses the wildcard User:*.
func checkPrincipal(p string) error {
	name, ok := strings.CutPrefix(p, "User:")
	switch {
	case !ok:
		return fmt.Errorf("principal %q is not User:<name> (Kafka's principal format; mutual TLS: User:CN=...)", truncate(p, 60))
	case name == "":
		return fmt.Errorf("principal %q has no name", p)
	case name == "*":
		return errors.New("principal User:* is every principal: name each one")
	case strings.TrimSpace(name) != name || hasControl(name):
		return fmt.Errorf("principal %q has surrounding spaces or control characters", truncate(p, 60))
	}
	return nil
}

func hasControl(s string) bool { return strings.ContainsFunc(s, unicode.IsControl) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Commands returns the 'pipeline run' commands of the topology's
// processors, sorted.
func (t Topology) Commands() []string {
	var cs []string
	for _, p := range t.Processors {
		if !slices.Contains(cs, p.Command) {
			cs = append(cs, p.Command)
		}
	}
	slices.Sort(cs)
	return cs
}

// Validate checks the spec against the topology: every command is one the
// topology runs, a transactional-id prefix only for a transactional
// command, the admin, the consumers and the producers share no principal
// with a processor or with each other, no consumer's group prefix covers a processor's group or
// another consumer's prefix, and no consumer would get a restricted
// topic.
func (s ACLSpec) Validate(t Topology) error {
	_, err := DesiredACLs(t, s)
	return err
}

func (s ACLSpec) check(t Topology) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("acls: "+format, a...)) }
	cmds := t.Commands()
	transactional := map[string]bool{}
	for _, p := range t.Processors {
		transactional[p.Command] = transactional[p.Command] || p.Transactional
	}
	for _, cmd := range sortedKeys(s.Processors) {
		if !slices.Contains(cmds, cmd) {
			bad("processors: unknown command %q (the commands of 'pipeline run': %s)", cmd, strings.Join(cmds, ", "))
		}
	}
	for _, cmd := range sortedKeys(s.TransactionalIDPrefix) {
		switch {
		case !slices.Contains(cmds, cmd):
			bad("transactional_id_prefix: unknown command %q (the commands of 'pipeline run': %s)", cmd, strings.Join(cmds, ", "))
		case !transactional[cmd]:
			bad("transactional_id_prefix: command %s uses no transactions", cmd)
		}
	}
	procs := map[string]string{} // principal -> a command
	for _, cmd := range sortedKeys(s.Processors) {
		if _, ok := procs[s.Processors[cmd]]; !ok {
			procs[s.Processors[cmd]] = cmd
		}
	}
	if cmd, ok := procs[s.Admin]; ok && s.Admin != "" {
		bad("admin %s is also the principal of %s: the file would reconcile the admin's own ACLs", s.Admin, cmd)
	}
	consumers := map[string]bool{}
	for _, c := range s.Consumers {
		consumers[c.Principal] = true
	}
	for _, p := range s.Producers {
		switch cmd, ok := procs[p]; {
		case ok:
			bad("producer %s is also the principal of %s: a producer must not share a processor's access", p, cmd)
		case consumers[p]:
			bad("producer %s is also a consumer: one principal would write raw events and read their clean form", p)
		case p == s.Admin:
			bad("producer %s is also the admin", p)
		}
	}
	var groups []string
	for _, p := range t.Processors {
		if p.Group != "" {
			groups = append(groups, p.Group)
		}
	}
	for i, c := range s.Consumers {
		if cmd, ok := procs[c.Principal]; ok {
			bad("consumer %s is also the principal of %s: a consumer must not share a processor's access to restricted topics", c.Principal, cmd)
		}
		if c.Principal == s.Admin {
			bad("consumer %s is also the admin", c.Principal)
		}
		for _, g := range c.Groups {
			for _, pg := range groups {
				if strings.HasPrefix(pg, g) {
					bad("consumer %s: group prefix %q covers the pipeline's group %s (the consumer could join it and take its partitions)", c.Principal, g, pg)
				}
			}
			for _, o := range s.Consumers[i+1:] {
				for _, og := range o.Groups {
					if strings.HasPrefix(og, g) || strings.HasPrefix(g, og) {
						bad("consumers %s and %s: group prefixes %q and %q overlap (either could join the other's groups)", c.Principal, o.Principal, g, og)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// txnPrefix is the transactional-id prefix of a transactional processor.
func (s ACLSpec) txnPrefix(p Processor) string {
	if x, ok := s.TransactionalIDPrefix[p.Command]; ok {
		return x
	}
	return p.Group
}

// DesiredACLs derives the ACLs the spec asks for from the topology, sorted
// (host *, ALLOW only):
//
//   - a processor's principal: READ and DESCRIBE on its inputs and on the
//     topics it reads besides them (the privacy processor's consent log);
//     WRITE, DESCRIBE and DESCRIBE_CONFIGS on its outputs; READ on its
//     state topics as well (restore reads them back); READ on its group;
//     WRITE and DESCRIBE on the transactional ids prefixed with its group
//     (or the file's prefix), if it is transactional;
//   - a consumer's principal: READ and DESCRIBE on every topic published
//     for its purposes (Topic.Purpose: clean, aggregate, record-level
//     k-anonymous); READ on the groups prefixed with each of its prefixes;
//   - a producer's principal: WRITE and DESCRIBE on the external topics
//     (Topic.External: raw).
//
// It fails if the spec is invalid for the topology (Validate), or if a
// consumer would get a restricted topic.
func DesiredACLs(t Topology, s ACLSpec) ([]ACL, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := errors.Join(s.checkSyntax(), s.check(t)); err != nil {
		return nil, err
	}
	set := map[ACL]bool{}
	add := func(principal string, rt kmsg.ACLResourceType, name string, pat kadm.ACLPattern, ops ...kadm.ACLOperation) {
		for _, op := range ops {
			set[ACL{Principal: principal, Host: "*", Resource: rt, Name: name, Pattern: pat, Operation: op, Permission: kmsg.ACLPermissionTypeAllow}] = true
		}
	}
	topic, group, txn := kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeTransactionalId
	lit, pre := kadm.ACLPatternLiteral, kadm.ACLPatternPrefixed
	for _, p := range t.Processors {
		who, ok := s.Processors[p.Command]
		if !ok {
			continue
		}
		for _, in := range slices.Concat(p.Inputs, p.Reads) {
			add(who, topic, in, lit, kadm.OpRead, kadm.OpDescribe)
		}
		for _, out := range p.Outputs {
			add(who, topic, out, lit, kadm.OpWrite, kadm.OpDescribe, kadm.OpDescribeConfigs)
		}
		for _, st := range p.State {
			add(who, topic, st, lit, kadm.OpRead)
		}
		if p.Group != "" {
			add(who, group, p.Group, lit, kadm.OpRead)
		}
		if p.Transactional {
			add(who, txn, s.txnPrefix(p), pre, kadm.OpWrite, kadm.OpDescribe)
		}
	}
	var errs []error
	for _, c := range s.Consumers {
		for _, name := range c.Purposes {
			n := 0
			for _, tp := range t.Topics {
				if tp.Purpose != name {
					continue
				}
				n++
				if tp.Restricted {
					// Never for a consumer, whatever the names say.
					errs = append(errs, fmt.Errorf("acls: consumer %s would read the restricted topic %s (purpose %s)", c.Principal, tp.Name, name))
					continue
				}
				add(c.Principal, topic, tp.Name, lit, kadm.OpRead, kadm.OpDescribe)
			}
			if n == 0 {
				errs = append(errs, fmt.Errorf("acls: consumer %s: the topology publishes no topic for purpose %s", c.Principal, name))
			}
		}
		for _, g := range c.Groups {
			add(c.Principal, group, g, pre, kadm.OpRead)
		}
	}
	for _, p := range s.Producers {
		for _, tp := range t.Topics {
			if tp.External {
				add(p, topic, tp.Name, lit, kadm.OpWrite, kadm.OpDescribe)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	acls := make([]ACL, 0, len(set))
	for a := range set {
		acls = append(acls, a)
	}
	slices.SortFunc(acls, compareACL)
	return acls, nil
}

// ACLDrift is an ACL that ApplyACLs reports and leaves alone.
type ACLDrift struct {
	ACL ACL
	// Why says what is wrong with it.
	Why string
}

// ACLReport says what ApplyACLs changed and what drift it left alone.
type ACLReport struct {
	// Admin is the spec's admin principal (reported only).
	Admin   string
	Created []ACL
	// Deleted are ACLs of the file's principals on the pipeline's
	// resources that the file no longer derives.
	Deleted []ACL
	// Drift are ACLs that grant a principal the file does not name access
	// to a pipeline resource, and every DENY on one or of a named
	// principal: reported, never deleted.
	Drift []ACLDrift
	// Unchanged counts the desired ACLs that already existed.
	Unchanged int
}

// NothingChanged reports whether the cluster already held exactly the
// desired ACLs of the file's principals.
func (r ACLReport) NothingChanged() bool { return len(r.Created) == 0 && len(r.Deleted) == 0 }

// String renders the report for humans, one line per ACL.
func (r ACLReport) String() string {
	var b strings.Builder
	if r.Admin != "" {
		fmt.Fprintf(&b, "admin     %s applies the ACLs (needs to be a super user or hold ALTER on the cluster; no ACLs from the file)\n", r.Admin)
	}
	for _, a := range r.Created {
		fmt.Fprintf(&b, "created   %s\n", a)
	}
	for _, a := range r.Deleted {
		fmt.Fprintf(&b, "deleted   %s\n", a)
	}
	for _, d := range r.Drift {
		fmt.Fprintf(&b, "DRIFT     %s: %s (not fixed: remove it by hand, or name the principal in the ACL file)\n", d.ACL, d.Why)
	}
	if r.NothingChanged() {
		fmt.Fprintf(&b, "nothing changed: %d ACLs already match the ACL file\n", r.Unchanged)
	} else {
		fmt.Fprintf(&b, "%d ACLs created, %d deleted, %d unchanged\n", len(r.Created), len(r.Deleted), r.Unchanged)
	}
	return b.String()
}

// scope is what belongs to the pipeline: the declared topics, the
// processors' groups, the consumers' group prefixes and the processors'
// transactional-id prefixes.
type scope struct {
	topics        map[string]bool
	groups        []string
	groupPrefixes []string
	txnPrefixes   []string
}

func newScope(t Topology, s ACLSpec) scope {
	sc := scope{topics: map[string]bool{}}
	for _, tp := range t.Topics {
		sc.topics[tp.Name] = true
	}
	for _, p := range t.Processors {
		if p.Group != "" {
			sc.groups = append(sc.groups, p.Group)
		}
		if p.Transactional {
			sc.txnPrefixes = append(sc.txnPrefixes, p.Group, s.txnPrefix(p))
		}
	}
	for _, c := range s.Consumers {
		sc.groupPrefixes = append(sc.groupPrefixes, c.Groups...)
	}
	return sc
}

// covers reports whether an ACL applies to any of the pipeline's
// resources: a literal name among them (or the wildcard *), or a prefix
// of one.
func (sc scope) covers(a ACL) bool {
	literal := a.Pattern == kadm.ACLPatternLiteral
	if a.Pattern != kadm.ACLPatternLiteral && a.Pattern != kadm.ACLPatternPrefixed {
		return false
	}
	// name is a resource name; prefix is a set of names.
	matchName := func(name string) bool {
		if literal {
			return a.Name == "*" || a.Name == name
		}
		return strings.HasPrefix(name, a.Name)
	}
	matchPrefix := func(prefix string) bool {
		if literal {
			return a.Name == "*" || strings.HasPrefix(a.Name, prefix)
		}
		return strings.HasPrefix(prefix, a.Name) || strings.HasPrefix(a.Name, prefix)
	}
	switch a.Resource {
	case kmsg.ACLResourceTypeTopic:
		if literal {
			return a.Name == "*" || sc.topics[a.Name]
		}
		for n := range sc.topics {
			if matchName(n) {
				return true
			}
		}
	case kmsg.ACLResourceTypeGroup:
		return slices.ContainsFunc(sc.groups, matchName) || slices.ContainsFunc(sc.groupPrefixes, matchPrefix)
	case kmsg.ACLResourceTypeTransactionalId:
		return slices.ContainsFunc(sc.txnPrefixes, matchPrefix)
	default: // the cluster and delegation tokens are not the pipeline's
	}
	return false
}

// ApplyACLs reconciles the cluster's ACLs with the spec: it describes every
// ACL, creates the desired ones that are missing, deletes the ACLs of the
// file's principals on the pipeline's resources that are not desired
// (after creating, so access is never interrupted), and reports as drift,
// without changing them, the ALLOW ACLs of other principals on the
// pipeline's resources and every DENY on them or of the file's principals
// (deleting a DENY could widen access). The admin's administrative ACLs
// (anything but READ, WRITE and ALL) are expected. Idempotent: a second
// run changes nothing.
//
// The principal of adm must be a super user or hold ALTER on the cluster.
func ApplyACLs(ctx context.Context, adm *kadm.Client, t Topology, spec ACLSpec) (ACLReport, error) {
	rep := ACLReport{Admin: spec.Admin}
	desired, err := DesiredACLs(t, spec)
	if err != nil {
		return rep, err
	}
	all := kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations().
		Allow().AllowHosts().Deny().DenyHosts()
	described, err := adm.DescribeACLs(ctx, all)
	if err != nil {
		return rep, fmt.Errorf("topology: describe ACLs: %w", err)
	}
	have := map[ACL]bool{}
	for _, r := range described {
		if r.Err != nil {
			return rep, fmt.Errorf("topology: describe ACLs: %w", errors.Join(r.Err, errMessage(r.ErrMessage)))
		}
		for _, d := range r.Described {
			have[ACL{Principal: d.Principal, Host: d.Host, Resource: d.Type, Name: d.Name, Pattern: d.Pattern, Operation: d.Operation, Permission: d.Permission}] = true
		}
	}
	want := map[ACL]bool{}
	var missing []ACL
	for _, a := range desired {
		want[a] = true
		if have[a] {
			rep.Unchanged++
		} else {
			missing = append(missing, a)
		}
	}
	managed := map[string]bool{}
	for _, p := range spec.Processors {
		managed[p] = true
	}
	for _, c := range spec.Consumers {
		managed[c.Principal] = true
	}
	for _, p := range spec.Producers {
		managed[p] = true
	}
	sc := newScope(t, spec)
	var toDelete []ACL
	for a := range have {
		if want[a] {
			continue
		}
		covers := sc.covers(a)
		switch {
		case a.Permission == kmsg.ACLPermissionTypeDeny:
			if covers || managed[a.Principal] {
				rep.Drift = append(rep.Drift, ACLDrift{a, "a DENY the ACL file does not manage (deleting it could widen access)"})
			}
		case !covers:
			// Not the pipeline's: another team's topics, the cluster.
		case managed[a.Principal]:
			toDelete = append(toDelete, a)
		case a.Principal == spec.Admin && spec.Admin != "":
			switch a.Operation {
			case kadm.OpRead, kadm.OpWrite, kadm.OpAll:
				rep.Drift = append(rep.Drift, ACLDrift{a, "the admin principal needs no data access to the pipeline's resources"})
			default: // creating and configuring topics
			}
		default:
			rep.Drift = append(rep.Drift, ACLDrift{a, "grants access to a pipeline resource to a principal the ACL file does not name"})
		}
	}
	slices.SortFunc(toDelete, compareACL)
	slices.SortFunc(rep.Drift, func(a, b ACLDrift) int { return compareACL(a.ACL, b.ACL) })
	// Report only what the broker did, also when it refused some.
	if rep.Created, err = createACLs(ctx, adm, missing); err != nil {
		return rep, err
	}
	rep.Deleted, err = deleteACLs(ctx, adm, toDelete)
	return rep, err
}

func errMessage(m string) error {
	if m == "" {
		return nil
	}
	return errors.New(m)
}

// aclBatch groups ACLs that one builder creates or deletes exactly: the
// builder multiplies principals, hosts, names and operations, so a batch
// varies only the name.
type aclBatch struct {
	principal, host string
	resource        kmsg.ACLResourceType
	pattern         kadm.ACLPattern
	operation       kadm.ACLOperation
}

func batches(acls []ACL) ([]aclBatch, map[aclBatch][]string) {
	var order []aclBatch
	names := map[aclBatch][]string{}
	for _, a := range acls {
		k := aclBatch{a.Principal, a.Host, a.Resource, a.Pattern, a.Operation}
		if _, ok := names[k]; !ok {
			order = append(order, k)
		}
		names[k] = append(names[k], a.Name)
	}
	return order, names
}

func (k aclBatch) builder(names []string) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow(k.principal).AllowHosts(k.host).ResourcePatternType(k.pattern).Operations(k.operation)
	switch k.resource {
	case kmsg.ACLResourceTypeTopic:
		b.Topics(names...)
	case kmsg.ACLResourceTypeGroup:
		b.Groups(names...)
	case kmsg.ACLResourceTypeTransactionalId:
		b.TransactionalIDs(names...)
	default: // covers never lets another type through
	}
	return b
}

func createACLs(ctx context.Context, adm *kadm.Client, acls []ACL) ([]ACL, error) {
	order, names := batches(acls)
	var created []ACL
	for _, k := range order {
		res, err := adm.CreateACLs(ctx, k.builder(names[k]))
		if err != nil {
			return created, fmt.Errorf("topology: create ACLs of %s: %w", k.principal, err)
		}
		var errs []error
		for _, r := range res {
			a := ACL{r.Principal, r.Host, r.Type, r.Name, r.Pattern, r.Operation, r.Permission}
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("topology: create ACL %s: %w", a, errors.Join(r.Err, errMessage(r.ErrMessage))))
				continue
			}
			created = append(created, a)
		}
		if err := errors.Join(errs...); err != nil {
			return created, err
		}
	}
	slices.SortFunc(created, compareACL)
	return created, nil
}

func deleteACLs(ctx context.Context, adm *kadm.Client, acls []ACL) ([]ACL, error) {
	order, names := batches(acls)
	var deleted []ACL
	for _, k := range order {
		res, err := adm.DeleteACLs(ctx, k.builder(names[k]))
		if err != nil {
			return deleted, fmt.Errorf("topology: delete ACLs of %s: %w", k.principal, err)
		}
		var errs []error
		for _, r := range res {
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("topology: delete ACLs of %s on %s: %w", k.principal, unptr(r.Name), errors.Join(r.Err, errMessage(r.ErrMessage))))
				continue
			}
			for _, d := range r.Deleted {
				a := ACL{d.Principal, d.Host, d.Type, d.Name, d.Pattern, d.Operation, d.Permission}
				if d.Err != nil {
					errs = append(errs, fmt.Errorf("topology: delete ACL %s: %w", a, errors.Join(d.Err, errMessage(d.ErrMessage))))
					continue
				}
				deleted = append(deleted, a)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return deleted, err
		}
	}
	slices.SortFunc(deleted, compareACL)
	return deleted, nil
}

func unptr(s *string) string {
	if s == nil {
		return "*"
	}
	return *s
}
