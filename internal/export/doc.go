// Package export builds the access and portability export of one data
// subject (SPEC 3.5, GDPR Art. 15 and 20): a machine-readable JSON
// document of everything the pipeline holds about it. It has one job:
// gather; the request plumbing (API, privacyctl, the requests processor
// that stores and delivers the document) calls Builder.Build.
//
// # The document (version 1)
//
// Fields, in this order (Document.JSON; Go's encoder keeps the declared
// order, record values keep their writer schema's order):
//
//   - "v": 1.
//   - "subject_id": the raw subject id. The document is delivered to the
//     subject, so it names it; it is as restricted as privacy.requests
//     and must never be logged or put on a non-restricted topic.
//   - "generated_at": RFC 3339, UTC, when the export started.
//   - "complete": false when a bound (Options) stopped the scan of the
//     clean topics before every partition reached its captured end;
//     "incomplete_reason" then says which: max_records_scanned,
//     max_duration or max_records_exported. A document is never silently
//     partial.
//   - "erased": the erasure ledger holds the subject's mark. The export
//     of an erased subject succeeds and says so in "notes": its data keys
//     are shredded (nothing of it is decryptable), its consent state and
//     history are gone; the records the clean topics still retain are
//     listed (pseudonymous, undecryptable) until their retention expires.
//   - "holds_data": false for a subject the pipeline holds nothing about
//     (no consent, history, data key, record or erasure mark): an unknown
//     subject is a document saying so, not an error.
//   - "notes": explanations in English.
//   - "consent": "state" (null when none is stored; per purpose, in the
//     fixed purpose order: state and updated_at; jurisdiction, GPC,
//     version; "unreadable" for a stored record that does not parse) and
//     "history" (every change the consent sync kept, newest first, with
//     its receipt id, source, policy version and who made it).
//   - "pseudonyms": per purpose and pseudonym key id (active and rotated
//     keys), the subject's pseudonym: the key of its clean records.
//   - "data_keys": per purpose and pseudonym key id, the data key's id and
//     status (logged, unlogged, shredded, absent) in the key store.
//   - "requests": the caller's (Request.Requests), copied as given.
//   - "records": per clean topic: whether it exists, its partition count,
//     the partitions scanned (start, captured end, reached), records
//     scanned, "matched" (keyed by one of the subject's pseudonyms of the
//     topic's purpose), "undecodable" (matched but not decodable: skipped
//     and counted, never fatal), "complete", and the records: topic,
//     partition, offset, timestamp, key, provenance (policy version,
//     consent version and basis, pseudonym key id, data key, schema),
//     writer schema, "value" (every field of the writer schema, decoded
//     with internal/codec/cleancodec: strings, numbers, booleans, bytes in
//     base64, timestamps in RFC 3339, null when absent; encrypted fields
//     as their "e1." ciphertext, tokens as tokens) and "decrypted" (each
//     encrypted field's plaintext under the subject's own data key, or why
//     not: key_shredded, key_absent, no_key_encryption_key,
//     data_key_mismatch, does_not_decrypt, unknown_source_field).
//   - "scan": whether partitions were pruned, records scanned, offsets to
//     scan, duration, and the bounds in force.
//
// # Finding the records, and what it costs
//
// Clean records are keyed by the subject's per-purpose pseudonym, and the
// runner produces them with franz-go's StickyKeyPartitioner, which for a
// keyed record is Kafka's default murmur2 partitioner: one key, one
// partition. So the export reads, per clean topic, only the partitions the
// subject's pseudonyms (one per pseudonym key) hash to (PartitionFor): with
// one key per purpose, one partition out of n, an n-fold saving. Pruning
// assumes the partition count the records were written with: after ops
// added partitions, set Options.PartitionCounts to the earlier counts (the
// partitions under each are read too), or Options.FullScan.
//
// Each scanned partition is read with read_committed from its start to
// the last stable offset captured when the export starts, so the export
// ends while events keep arriving, and never sees an aborted or open
// transaction's records. A record matches only when its key is one of the
// subject's pseudonyms for the topic's own purpose: another subject whose
// pseudonym lands in the same partition, or the subject's pseudonym of
// another purpose on this topic, is never included. An encrypted value is
// decrypted only with the subject's own data key for the record's purpose
// and pseudonym key, never with another key a header names.
//
// Bounds (Options): MaxRecordsScanned (default 5,000,000 records read,
// every subject's), MaxDuration (default 10 minutes), MaxRecordsExported
// (default 100,000 of the subject's records, bounding the document). A
// progress callback reports offsets scanned out of offsets to scan, per
// topic and overall.
package export
