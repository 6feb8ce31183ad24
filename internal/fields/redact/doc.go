// Package redact removes personal data from free text (support-chat
// messages, ticket bodies, log lines) before it leaves the privacy
// pipeline's trusted zone.
//
// [AppendRedacted] scans its input once, left to right, with hand-written
// byte-level matchers (no regular expressions) and replaces every detected
// span by a fixed token. Every other byte, including invalid UTF-8, is
// copied verbatim, so the output is the input with the matched spans
// replaced. Redacting is idempotent: redacting the output again changes
// nothing. Detection is heuristic and tuned to redact too much rather than
// too little, but it is not perfect (see the limits below).
//
// # Detectors
//
//   - [Email] → "[EMAIL]": local@domain. The local part is 1–64 bytes of
//     A–Z a–z 0–9 . _ % + - without leading or doubled dots. The domain is
//     at least two dot-separated labels of letters, digits and '-' (not at
//     either end of a label; labels ≤ 63 bytes, ≤ 253 in all) ending in an
//     alphabetic top-level label of at least two letters. Sentence
//     punctuation after the address is not part of the match.
//   - [Phone] → "[PHONE]": 7–15 digits (the E.164 maximum) in digit groups
//     joined by a single ' ', '-', '.' or '/', possibly with parentheses:
//     "(555) 123-4567", "1-800-555-1234", "020 7946 0958", "090 123 4567",
//     "0901.234.567", "030/12345678", "6123 4567". Groups after the first
//     need at least two digits, except a parenthesised trunk prefix as in
//     "+44 (0)20 7946 0958". With a leading '+' ("+84 90 123 45 67",
//     "+65 6123 4567", "+49 30 1234567") any such grouping is a phone.
//     Without it, a bare digit run counts only with at least 10 digits, or
//     9 starting with 0 ("0901234567"), so "order 42", "2024" and "order
//     1234567" are kept; and separated numbers that look like amounts with
//     thousands separators ("1 000 000", "12.345.678", "250.000.000"),
//     decimal fractions ("3.14159", "106.7009"), dates ("2024-05-01", "01.05.2024",
//     "05/01/2024") or year ranges ("2023-2024") are not phones. If the
//     whole run of groups is not acceptable, the longest acceptable prefix
//     ending at a group boundary followed by a space is taken, so in
//     "call 0901 234 567 2024-05-01" only the phone is redacted.
//   - [Card] → "[CARD]": 13–19 digits not starting with 0, bare or in
//     groups of 3–8 digits joined by single spaces or dashes, that pass the
//     Luhn check. Shorter prefixes ending at a group boundary are tried
//     too, so "4111 1111 1111 1111 2029" keeps the year.
//   - [IPv4] → "[IP]": four dot-separated decimal octets of at most three
//     digits and at most 255 (leading zeros are accepted), not part of a
//     longer dotted number ("1.2.3.4.5", "v1.2.3.4"); a port or prefix
//     length stays ("[IP]:8080", "[IP]/24").
//   - [IPv6] → "[IP]": full, "::"-compressed and IPv4-embedded forms
//     ("2001:db8::1", "fe80::1", "::ffff:192.0.2.1"), validated by an
//     allocation-free parser that agrees with [net/netip.ParseAddr]. Zones
//     stay in the text ("fe80::1%eth0" becomes "[IP]%eth0"). The address
//     must contain a decimal digit, so words such as "Bad::Face" are not
//     addresses, and times such as "12:30:45" never parse as one.
//
// # Boundaries and ambiguities
//
// A match must start and end at a word boundary: the byte before it must
// not be an ASCII letter, digit or '_', and the byte after it not one of
// those or '@'. Numbers are also not cut out of longer numbers: not after
// or before a '.' or ':' joined to a digit ("1.2.3.4.5", "12:30"), and a
// phone or card not next to a '-' joined to a run of 1–4 digits
// ("2024-05-01", "ISBN 978-3-16-148410-0"). Bytes outside ASCII count as
// separators, so PII glued to a non-ASCII letter ("số0901234567") is
// found. Replacement tokens count as words on the side of their brackets
// ("]" before, "[" after) so that they behave like the text they replaced.
//
// At each position the matchers are tried in the order email (triggered by
// '@', looking back for the local part), IPv6, IPv4, card, phone; the
// first match wins and scanning resumes after it. A digit string of 13–15
// digits that fails Luhn is still a phone if it meets the phone rules
// (E.164 allows 15 digits), so a mistyped short card is hidden as [PHONE].
// A number grouped like a card (4-4-4-4, 4-4-4-4-3, 4-6-5, ...) that fails
// Luhn is left unredacted as a whole and no phone is cut out of it, as
// "1234 5678 9012 3456" is more likely an order or tracking number than a
// phone; bare runs of 16–19 digits that fail Luhn are also left alone.
//
// # Known limits
//
//   - Numbers are classified by shape, not context: IDs and amounts of
//     7–15 digits written with separators ("ticket 4417-2290") and bare
//     runs of 10–15 digits are redacted as phones; four-part versions
//     ("version 1.2.3.4") are redacted as IPv4; 8-digit national numbers
//     written without '+' or separators ("91234567") are not phones; nine
//     digits grouped 3-3-3 ("123 456 789") are phones, not amounts.
//   - Phone extensions glued to a number ("555-123-4567x89"), PII glued to
//     an ASCII letter ("SĐT0901234567", "call0901234567") and numbers
//     inside dash-joined IDs ("ext555-123-4567") are not redacted. A phone
//     followed directly by '+' and another phone loses only its digits:
//     "0901234567+84901234567" becomes "[PHONE]+[PHONE]", but
//     "+84 901 234 567 890 123" (too many digits) becomes "[PHONE] 123".
//   - Emails with quoted or non-ASCII local parts, internationalised
//     (non-ASCII or punycode) top-level domains or IP-literal domains are
//     not emails ("root@192.168.0.1" becomes "root@[IP]"); neither are
//     local parts over 64 bytes nor a domain glued to a following '['.
//   - IPv6 addresses written with hex letters only ("dead::beef") are not
//     redacted; MAC addresses,
//     IBANs, national ID numbers, postal addresses and names are out of
//     scope (see "Adding a detector").
//
// # Adding a detector
//
// Detectors live in the table detectors in redact.go. Each entry has a
// trigger (the bytes at which its matcher is tried), a flag saying whether
// it is tried anywhere or only at the start of a word, and a matcher
// func(s string, i, lo int) (start, end int, k Kind) that reports a span
// s[start:end] around position i (start may go back to lo, as the email
// matcher does from its '@'), or k == 0 for no match. To add one, add a
// [Kind] constant before numKinds, give it a name and token in kindNames
// and kindTokens, write the matcher with a bounded look-around window so
// that the scan stays linear, insert it into the table at its priority,
// and add table cases, canaries and fragments to the tests. The fuzz and
// random-fragment tests check that the new detector keeps redaction
// idempotent.
//
// # Performance and safety
//
// The scan is linear in the input: matchers run only at trigger bytes,
// mostly at word starts, and each looks at a bounded window (at most 65
// bytes back and about 320 forward for an email, a few dozen bytes for the
// others). A 200-byte message takes well under a microsecond.
// [AppendRedacted] does not allocate when dst has enough spare capacity;
// the package has no mutable state, so every function is safe for
// concurrent use, and no input makes it panic.
package redact
