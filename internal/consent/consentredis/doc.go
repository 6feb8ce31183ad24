// Package consentredis is consent's Redis adapter: the consent store
// (RedisStore: one string key per subject holding the encoded
// consent.Record, a batch fetched with one MGET, the loaded marker that
// makes an emptied Redis fail closed, the history list's key), the bounded
// TTL cache in front of a store (Cache, with the invalidation generations
// the privacy processor checks before publishing), and both ends of the
// invalidation protocol (PublishInvalidation, used by the consent sync;
// SubscribeInvalidations, ParseInvalidation and FollowInvalidations, used
// in front of every cache).
//
// It imports consent and go-redis; it knows nothing of Kafka.
package consentredis
