package wiring

import (
	"context"
	"errors"
	"fmt"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/schemaregistry"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// OutputSchema is the derived schema of one output topic.
type OutputSchema struct {
	// Topic is the output topic.
	Topic string
	// Schema is its derived Avro schema (JSON).
	Schema []byte
}

// OutputSchemas returns the schema of every output topic, derived as the
// processors derive them: the clean topics' from the policy
// (PIPELINE_POLICY_FILE), the aggregate and record-level topics' from the
// k-anonymity spec (PIPELINE_KANON_SPEC_FILE), with the configured names.
func OutputSchemas(cfg config.Config) ([]OutputSchema, error) {
	raw, pol, err := LoadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	var out []OutputSchema
	for _, p := range purpose.All {
		fields, err := pol.Derive(raw, p)
		if err != nil {
			return nil, err
		}
		out = append(out, OutputSchema{Topic: CleanTopic(cfg, p), Schema: policy.CleanSchemaJSON(p, fields)})
	}
	spec, err := LoadKanonSpec(cfg)
	if err != nil {
		return nil, err
	}
	for _, a := range spec.Aggregates {
		out = append(out, OutputSchema{Topic: a.TopicFrom(cfg.Names.AggTopicTemplate), Schema: a.AggregateSchemaJSON()})
	}
	if r := spec.Records; r != nil {
		s, err := r.KanonSchemaJSON()
		if err != nil {
			return nil, err
		}
		out = append(out, OutputSchema{Topic: r.TopicFrom(cfg.Names.KanonTopicTemplate), Schema: s})
	}
	return out, nil
}

// ErrNoRegistry is returned by ApplySchemas when the Confluent wire format
// is configured without a registry.
var ErrNoRegistry = errors.New("wiring: PIPELINE_WIRE_FORMAT=confluent (the default) needs a schema registry: set PIPELINE_SCHEMA_REGISTRY_URL, or PIPELINE_WIRE_FORMAT=single-object")

// ApplySchemas is the schema half of 'pipeline topology apply': it sets
// the compatibility level of every output subject, registers each derived
// schema the registry accepts, and refuses (naming the fields, with the
// registry's verdict) the ones it calls incompatible; the raw topic's
// subject is seeded with the checked-in raw schema when it has no version.
// With single-object encoding and no registry there is nothing to do
// (done is false).
func ApplySchemas(ctx context.Context, cfg config.Config) (rep schemaregistry.Report, done bool, err error) {
	if !cfg.Schemas.Registry.Configured() {
		if cfg.Schemas.Format() == wireformat.Confluent {
			return rep, false, ErrNoRegistry
		}
		return rep, false, nil
	}
	outs, err := OutputSchemas(cfg)
	if err != nil {
		return rep, false, err
	}
	cl, err := cfg.Schemas.Registry.NewClient()
	if err != nil {
		return rep, false, err
	}
	subjects := []schemaregistry.Subject{{Name: wireformat.TopicSubject(cfg.Names.RawTopic), Schema: schemas.RawEventSchemaJSON(), SeedOnly: true}}
	for _, o := range outs {
		subjects = append(subjects, schemaregistry.Subject{Name: wireformat.TopicSubject(o.Topic), Schema: o.Schema})
	}
	rep, err = cl.Apply(ctx, subjects)
	if err != nil {
		return rep, true, fmt.Errorf("wiring: %w", err)
	}
	return rep, true, nil
}
