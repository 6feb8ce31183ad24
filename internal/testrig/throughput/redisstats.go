package throughput

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/metrics"
)

// roundTrips is a go-redis hook that counts round trips: one per command,
// one per pipeline (or MULTI/EXEC transaction) however many commands it
// carries.
type roundTrips struct{ n atomic.Int64 }

var _ redis.Hook = (*roundTrips)(nil)

// DialHook leaves dialling as it is.
func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook counts one round trip per command.
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts one round trip per pipeline.
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// reset zeroes the count and returns what it was.
func (h *roundTrips) reset() int64 { return h.n.Swap(0) }

func (h *roundTrips) load() int64 { return h.n.Load() }

// jobRegistry returns a fresh registry for one privacy processor of the
// current run, kept to read its consent cache counters after the run.
func (b *bench) jobRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	b.regs = append(b.regs, reg)
	return reg
}

// cacheHitRate is hits / (hits + misses) of the consent caches of the
// registries (0 when there was no lookup).
func cacheHitRate(regs []*prometheus.Registry) (float64, error) {
	var hits, misses float64
	for _, reg := range regs {
		snap, err := metrics.Snapshot(reg)
		if err != nil {
			return 0, fmt.Errorf("bench throughput: %w", err)
		}
		hits += snap["pipeline_consent_cache_hits_total"]
		misses += snap["pipeline_consent_cache_misses_total"]
	}
	return ratio(hits, hits+misses), nil
}

// ratio is a / b, or 0 when b is 0 (a figure not measured: JSON has no
// NaN or infinity).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
