package ropa

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// measures describes the technical and organisational measures the
// pipeline's code implements (Art. 32), with what the inputs make of them
// (which fields, which topics). Each claim names the code that does it;
// a measure the inputs do not use says so.
func measures(in Inputs, r Record) []Measure {
	uses := func(actions ...policy.Action) string {
		var out []string
		for _, p := range r.Purposes {
			var fs []string
			for _, f := range p.Fields {
				if slices.Contains(actions, policy.Action(f.Action)) {
					fs = append(fs, f.Field)
				}
			}
			if len(fs) > 0 {
				out = append(out, p.Name+": "+strings.Join(fs, ", "))
			}
		}
		if len(out) == 0 {
			return "none under this policy"
		}
		return strings.Join(out, "; ")
	}
	var dropped []string
	for _, p := range r.Purposes {
		n := 0
		for _, f := range p.Fields {
			if f.Action == string(policy.Drop) {
				n++
			}
		}
		dropped = append(dropped, fmt.Sprintf("%s drops %d of %d", p.Name, n, len(p.Fields)))
	}
	var sensitive []string
	for _, f := range in.Raw.Fields {
		if f.Classification == schemas.Sensitive {
			sensitive = append(sensitive, f.Path+" ("+f.SensitiveCategory+")")
		}
	}
	rawRetention := "not declared"
	var restricted []string
	for _, t := range r.Topics {
		if t.Name == in.Names.Raw {
			rawRetention = t.Retention
		}
		if t.Restricted {
			restricted = append(restricted, t.Name)
		}
	}
	quarantine := "not declared"
	for _, t := range r.Topics {
		if t.Name == in.Names.Quarantine {
			quarantine = t.Retention
		}
	}
	var retention []string
	for _, p := range r.Purposes {
		retention = append(retention, fmt.Sprintf("%s %d days", p.Name, p.RetentionDays))
	}
	kanon := "none declared (schemas/kanon.json declares no output)"
	if k := in.Names.Kanon; k != nil {
		var outs []string
		for _, a := range k.Aggregates {
			outs = append(outs, a.TopicFrom(in.Names.AggTemplate)+" (aggregates of "+strings.ReplaceAll(in.Names.CleanTemplate, "{purpose}", a.Purpose)+")")
		}
		if rec := k.Records; rec != nil {
			outs = append(outs, rec.TopicFrom(in.Names.KanonTemplate)+" (CASTLE records of "+strings.ReplaceAll(in.Names.CleanTemplate, "{purpose}", rec.Purpose)+")")
		}
		if len(outs) > 0 {
			kanon = strings.Join(outs, "; ")
		}
	}
	ms := []Measure{{
		Name: "Data minimisation",
		Description: "The field policy decides, per purpose, every field of the raw schema; a field it does not list is dropped (" + strings.Join(dropped, ", ") +
			" raw fields). A field a producer adds that the raw schema does not classify is counted and never reaches a clean topic (codec/eventcodec). Raw events are kept " + rawRetention + " in " + in.Names.Raw + ".",
	}, {
		Name: "Pseudonymisation with a key per purpose",
		Description: "Identifiers are replaced by a keyed HMAC-SHA256 pseudonym under the purpose's own key (fields/pseudonym; keyring PIPELINE_PSEUDONYM_KEYS_FILE, rotatable, the key id in header pp-key-id), so two purposes' topics cannot be joined on them; clean topics are keyed by the pseudonym, never the raw subject id. Pseudonymised: " +
			uses(policy.Pseudonymize) + ".",
	}, {
		Name: "Per-subject encryption keys and crypto-shredding",
		Description: "The encrypt (AES-256-GCM) and tokenize (AES-256-SIV) actions use a data key per subject and purpose (fields/subjectkey, Tink), wrapped by a key-encryption key (PIPELINE_KEK_FILE) and kept in the compacted topic " + in.Names.Keys +
			" with a Redis cache (keys/keyredis). Erasure ('pipeline erase') shreds the subject's data keys (a shredded key is never created again), so their ciphertexts can no longer be decrypted, tombstones and deletes its consent state (so its later events are denied: an unknown subject is never published, and a purpose using data keys denies it as erased), records it in an erasure ledger of keyed hashes (no raw id; PIPELINE_ERASURE_KEY_FILE) which, where configured, makes the privacy processor deny its events for every purpose whatever consent says and the consent API refuse changes for it, and publishes notices on " + in.Names.Erasures + ". Encrypted or tokenized: " + uses(policy.Encrypt, policy.Tokenize) + ".",
	}, {
		Name: "Consent enforcement",
		Description: "Before any record of a purpose is published, the subject's consent for that purpose is decided from the consent log " + in.Names.Consent +
			" (cached in Redis): explicit choices first, then the jurisdiction's default (opt-in unless the regime is opt-out); a Global Privacy Control signal denies marketing and third-party sharing; denied events are counted per purpose and reason, never published (internal/consent, processors/privacy). Sensitive fields (" + strings.Join(sensitive, ", ") + ") reach a purpose only with the subject's explicit consent for it; otherwise they are withheld and counted.",
	}, {
		Name:        "Generalisation, masking and redaction",
		Description: "Generalised: " + uses(policy.Generalize) + ". Masked: " + uses(policy.Mask) + ". Free text redacted (e-mail, phone, card and IP patterns replaced, fields/redact): " + uses(policy.Redact) + ".",
	}, {
		Name:        "k-anonymity",
		Description: "Outputs released only for groups of at least k distinct subjects, counted by distinct pseudonym, never by events (schemas/kanon.json; internal/kanon, processors/kanonagg, kanonmerge, kanonrec): " + kanon + ".",
	}, {
		Name: "Storage limitation",
		Description: "Each purpose's topics, the clean topic and the k-anonymity outputs derived from it, keep records for the purpose's retention_days (" + strings.Join(retention, ", ") +
			"), set as retention.ms by 'pipeline topology apply', which also corrects existing topics. The retention of every topic is listed above.",
	}, {
		Name:        "Encryption in transit and authentication",
		Description: "Every Kafka client connects through one configuration (stream/kafkaconn): TLS (PIPELINE_KAFKA_TLS_*, optionally mutual TLS) and SASL PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER (PIPELINE_KAFKA_SASL_*). Redis: TLS and a password (PIPELINE_REDIS_TLS_*, PIPELINE_REDIS_PASSWORD_FILE). Schema registry: TLS and basic or bearer authentication. The consent API authenticates callers by token or client certificate (PIPELINE_CONSENT_API_AUTH, default token), with scopes and rate limits per principal, over TLS when PIPELINE_CONSENT_API_TLS_* are set. These are in effect where the deployment sets them.",
	}, {
		Name: "Access control (Kafka ACLs)",
		Description: "'pipeline topology apply --acls FILE' derives the ACLs from this topology and reconciles them (topology/acls.go): each processor gets only its own topics, groups and transactional ids; a consumer gets read access only to the topics of the purposes it is granted, never to a restricted topic (" +
			strings.Join(restricted, ", ") + "); raw producers may only write " + in.Names.Raw + ".",
	}, {
		Name:        "Quarantine",
		Description: "A record that cannot be decoded or validated goes, with its reason, to the restricted topic " + in.Names.Quarantine + " (kept " + quarantine + "), counted; nothing is lost and nothing stalls.",
	}, {
		Name:        "Integrity and accountability",
		Description: "The processors publish their outputs and commit their input offsets in one Kafka transaction (exactly once). Every clean record carries the policy version, consent version and pseudonym key id in its headers (pp-policy-version, pp-consent-version, pp-key-id); decisions are counted per purpose and reason in Prometheus metrics. The audit topic " + in.Names.Audit + " is declared.",
	}, {
		Name:        "Secrets",
		Description: "Keys and passwords are read from files (internal/tlsfiles) or the environment and are never printed, logged or put on a topic; 'pipeline config print' redacts them; this record holds none.",
	}}
	return ms
}
