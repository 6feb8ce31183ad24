package wiring

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/consent"
)

// FollowInvalidations drops cached consent entries of the subjects the
// consent sync announces on the store's invalidation channel, until ctx
// ends. On every (re)subscription it drops the whole cache, since
// announcements may have been missed while disconnected.
func FollowInvalidations(ctx context.Context, store *consent.RedisStore, cache *consent.Cache, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		ps := store.Client().Subscribe(ctx, store.InvalidationChannel())
		// A blocked Receive does not watch ctx: closing the subscription ends it.
		stop := context.AfterFunc(ctx, func() { ps.Close() })
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("consent invalidation subscription lost; resubscribing", "err", err)
				}
				break
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				cache.InvalidateAll()
			case *redis.Message:
				for _, sub := range strings.Split(m.Payload, "\n") {
					cache.Invalidate(sub)
				}
			}
		}
		stop()
		ps.Close()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
