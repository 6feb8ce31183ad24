package topology

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Change is one thing Apply did or could not do.
type Change struct {
	Topic string
	What  string
}

// Report says what Apply changed and what drift it could not fix.
type Report struct {
	Created   []string
	Changed   []Change
	Drift     []Change // differences Apply cannot fix (fewer partitions wanted, other replication)
	Unchanged []string
}

// NothingChanged reports whether the cluster already matched.
func (r Report) NothingChanged() bool { return len(r.Created) == 0 && len(r.Changed) == 0 }

// String renders the report for humans.
func (r Report) String() string {
	var b strings.Builder
	for _, c := range r.Created {
		fmt.Fprintf(&b, "created   %s\n", c)
	}
	for _, c := range r.Changed {
		fmt.Fprintf(&b, "changed   %s: %s\n", c.Topic, c.What)
	}
	for _, c := range r.Drift {
		fmt.Fprintf(&b, "DRIFT     %s: %s (not fixed: do it by hand or recreate the topic)\n", c.Topic, c.What)
	}
	if r.NothingChanged() {
		fmt.Fprintf(&b, "nothing changed: %d topics already match the declared topology\n", len(r.Unchanged))
	} else {
		fmt.Fprintf(&b, "%d created, %d changed, %d unchanged\n", len(r.Created), len(r.Changed), len(r.Unchanged))
	}
	return b.String()
}

// Apply creates missing topics, raises partition counts and sets declared
// configs, idempotently. It reports drift it cannot fix.
func Apply(ctx context.Context, adm *kadm.Client, t Topology) (Report, error) {
	var rep Report
	if err := t.Validate(); err != nil {
		return rep, err
	}
	names := make([]string, len(t.Topics))
	for i, tp := range t.Topics {
		names[i] = tp.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return rep, fmt.Errorf("topology: list topics: %w", err)
	}
	var existing []string
	for _, tp := range t.Topics {
		d, ok := details[tp.Name]
		if ok && d.Err == nil {
			existing = append(existing, tp.Name)
			continue
		}
		if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return rep, fmt.Errorf("topology: topic %s: %w", tp.Name, d.Err)
		}
		cfg := map[string]*string{}
		for k, v := range tp.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, tp.Partitions, tp.Replication, cfg, tp.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Metadata lagged behind: it exists, so compare it below.
			existing = append(existing, tp.Name)
			continue
		case err != nil:
			return rep, fmt.Errorf("topology: create %s: %w", tp.Name, err)
		}
		rep.Created = append(rep.Created, tp.Name)
	}
	// Wait until every declared topic is visible, so that the processors
	// started next never see an unknown topic.
	if details, err = waitVisible(ctx, adm, names); err != nil {
		return rep, err
	}
	if len(existing) == 0 {
		return rep, nil
	}
	configs, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return rep, fmt.Errorf("topology: describe configs: %w", err)
	}
	for _, name := range existing {
		tp, _ := t.Topic(name)
		d := details[name]
		changed := false
		parts := int32(len(d.Partitions))
		grow, drift := partitionChange(tp, parts)
		if drift != "" {
			rep.Drift = append(rep.Drift, Change{name, drift})
		}
		if grow {
			resp, err := adm.UpdatePartitions(ctx, int(tp.Partitions), name)
			if err == nil {
				for _, r := range resp {
					err = errors.Join(err, r.Err)
				}
			}
			if err != nil {
				return rep, fmt.Errorf("topology: add partitions to %s: %w", name, err)
			}
			rep.Changed = append(rep.Changed, Change{name, fmt.Sprintf("partitions %d -> %d", parts, tp.Partitions)})
			changed = true
		}
		if rf := replication(d); rf != 0 && rf != tp.Replication {
			rep.Drift = append(rep.Drift, Change{name, fmt.Sprintf("replication factor %d, declared %d", rf, tp.Replication)})
		}
		rc, err := configs.On(name, nil)
		if err != nil {
			return rep, fmt.Errorf("topology: configs of %s: %w", name, err)
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			if c.Value != nil {
				have[c.Key] = *c.Value
			}
		}
		var alters []kadm.AlterConfig
		var what []string
		keys := make([]string, 0, len(tp.Configs))
		for k := range tp.Configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if v := tp.Configs[k]; have[k] != v {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
				what = append(what, fmt.Sprintf("%s %q -> %q", k, have[k], v))
			}
		}
		if len(alters) > 0 {
			resp, err := adm.AlterTopicConfigs(ctx, alters, name)
			if err == nil {
				for _, r := range resp {
					err = errors.Join(err, r.Err)
				}
			}
			if err != nil {
				return rep, fmt.Errorf("topology: alter configs of %s: %w", name, err)
			}
			rep.Changed = append(rep.Changed, Change{name, strings.Join(what, ", ")})
			changed = true
		}
		if !changed {
			rep.Unchanged = append(rep.Unchanged, name)
		}
	}
	return rep, nil
}

func waitVisible(ctx context.Context, adm *kadm.Client, names []string) (kadm.TopicDetails, error) {
	for {
		details, err := adm.ListTopics(ctx, names...)
		if err != nil {
			return nil, fmt.Errorf("topology: list topics: %w", err)
		}
		missing := ""
		for _, n := range names {
			if d, ok := details[n]; !ok || d.Err != nil || len(d.Partitions) == 0 {
				missing = n
				break
			}
		}
		if missing == "" {
			return details, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topology: topic %s not visible: %w", missing, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func replication(d kadm.TopicDetail) int16 {
	for _, p := range d.Partitions {
		return int16(len(p.Replicas))
	}
	return 0
}

// MaxMessageBytes returns the effective max.message.bytes of each topic as
// the broker reports it (a topic override, or the broker's
// message.max.bytes): the largest record batch the topic accepts. A topic
// that does not exist or cannot be described is left out, with its error
// joined into err.
func MaxMessageBytes(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]int, error) {
	configs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("topology: describe topic configs: %w", err)
	}
	out := map[string]int{}
	var errs []error
	for _, rc := range configs {
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("topology: %s: %w", rc.Name, rc.Err))
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			var n int
			if _, err := fmt.Sscan(*c.Value, &n); err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("topology: %s: max.message.bytes %q is not a positive number", rc.Name, *c.Value))
				continue
			}
			out[rc.Name] = n
		}
	}
	return out, errors.Join(errs...)
}

// partitionChange decides what Apply does about an existing topic with
// have partitions: grow it to the declared count, or report a drift it
// cannot fix (fewer wanted: Kafka cannot remove partitions; or a topic
// with FixedPartitions, which is never changed).
func partitionChange(tp Topic, have int32) (grow bool, drift string) {
	switch {
	case have == tp.Partitions:
		return false, ""
	case tp.FixedPartitions:
		return false, fmt.Sprintf("has %d partitions, declared %d; never changed (its keys must not move to another partition)", have, tp.Partitions)
	case have < tp.Partitions:
		return true, ""
	default:
		return false, fmt.Sprintf("has %d partitions, declared %d (Kafka cannot remove partitions)", have, tp.Partitions)
	}
}
