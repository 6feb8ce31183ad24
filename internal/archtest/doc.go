// Package archtest enforces the import rules of docs/architecture.md with
// a test over `go list -deps`: processors never link a Kafka or Redis
// client, algorithms link no adapter, and only commands and test rigs
// import the test rigs; and, over the parsed sources, that only kafkaconn
// says where the Kafka cluster is (kgo.SeedBrokers, kgo.NewClient). It has
// no code of its own.
package archtest
