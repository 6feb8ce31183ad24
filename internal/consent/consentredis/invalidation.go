package consentredis

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The invalidation protocol: whoever writes consent changes to the store
// (the consent sync) publishes the changed subjects, newline-separated, on
// the store's invalidation channel (prefix without its trailing colon, then
// "-invalidate": "pp:consent-invalidate" by default); every cache in front
// of the store drops its entries for them. Both ends are here, so the
// channel and the message format have one owner.

// invalidationChannel returns the store's invalidation channel.
func (s *RedisStore) invalidationChannel() string {
	return strings.TrimSuffix(s.prefix, ":") + "-invalidate"
}

// PublishInvalidation announces that the records of subjects changed. It
// returns the client's error as is; the caller wraps it.
func (s *RedisStore) PublishInvalidation(ctx context.Context, subjects []string) error {
	return s.client.Publish(ctx, s.invalidationChannel(), strings.Join(subjects, "\n")).Err()
}

// SubscribeInvalidations subscribes to the store's invalidation channel.
// Pass each message's payload to ParseInvalidation; close the subscription
// when done.
func (s *RedisStore) SubscribeInvalidations(ctx context.Context) *redis.PubSub {
	return s.client.Subscribe(ctx, s.invalidationChannel())
}

// ParseInvalidation returns the subjects an invalidation message announces.
func ParseInvalidation(payload string) []string {
	if payload == "" {
		return nil
	}
	return strings.Split(payload, "\n")
}

// FollowInvalidations drops cached consent entries of the subjects the
// consent sync announces on the store's invalidation channel, until ctx
// ends. On every (re)subscription it drops the whole cache, since
// announcements may have been missed while disconnected.
func FollowInvalidations(ctx context.Context, store *RedisStore, cache *Cache, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		ps := store.SubscribeInvalidations(ctx)
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
				for _, sub := range ParseInvalidation(m.Payload) {
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
