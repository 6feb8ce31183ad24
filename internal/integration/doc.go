// Package integration holds the integration tests that run the pipeline
// against a real Apache Kafka broker and a real redis-server, as started by
// scripts/services (make test does it). The services are found through
// PIPELINE_KAFKA_BROKERS and PIPELINE_REDIS_ADDR. With CI=true a missing
// service fails the tests; elsewhere they skip with a message saying how to
// start the services.
package integration
