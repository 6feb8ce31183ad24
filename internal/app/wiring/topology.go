package wiring

import (
	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/topology"
)

// Topology returns the declared topology of the configuration: its names
// (Names) and, unless o already sets them, each purpose's topic retention
// from the configured policy's retention_days (clean topics and the
// k-anonymity outputs derived from them). topology describe, apply and
// ropa start from it.
func Topology(cfg config.Config, o topology.Options) (topology.Topology, error) {
	n, err := Names(cfg)
	if err != nil {
		return topology.Topology{}, err
	}
	if o.PurposeRetention == nil {
		_, pol, err := LoadPolicy(cfg)
		if err != nil {
			return topology.Topology{}, err
		}
		o.PurposeRetention = pol.RetentionByPurpose()
	}
	return topology.Default(n, o), nil
}
