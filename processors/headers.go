package processors

// Header keys of the records the processors publish to clean, kanon and
// aggregate topics: the one place they are named (consumers and the
// k-anonymity processors read them back).
const (
	// HeaderSchema names the record's Avro schema (full name @ fingerprint).
	HeaderSchema = "pp-schema"
	// HeaderKeyID names the pseudonym key of a clean record's pseudonyms;
	// the k-anonymity processors count people per key id (identity domain).
	HeaderKeyID = "pp-key-id"
	// HeaderDataKey names the subject's data key (subjectkey.ID) of a
	// clean record with encrypted or tokenized fields; the key's record on
	// the key topic has this key.
	HeaderDataKey = "pp-data-key"
	// HeaderPolicyVersion is the policy version a clean record was made under.
	HeaderPolicyVersion = "pp-policy-version"
	// HeaderConsentVersion is the version of the consent record it was
	// decided on.
	HeaderConsentVersion = "pp-consent-version"
	// HeaderConsentBasis is the legal basis the decision used.
	HeaderConsentBasis = "pp-consent-basis"
	// HeaderProcessor names the processor that published the record.
	HeaderProcessor = "pp-processor"
	// HeaderK is the k a k-anonymous row or record was released under.
	HeaderK = "pp-k"
)
