// Package integration holds the integration tests that run the pipeline
// against a real Apache Kafka broker, a real redis-server and a real schema
// registry (Apicurio, Confluent-compatible API), as started by
// scripts/services (make test does it). The services are found through
// PIPELINE_KAFKA_BROKERS, PIPELINE_REDIS_ADDR and
// PIPELINE_SCHEMA_REGISTRY_URL. With CI=true a missing
// service fails the tests; elsewhere they skip with a message saying how to
// start the services.
package integration
