// Package fieldaction implements the deterministic per-field transformations
// (masking and generalisation) that the privacy pipeline applies to customer
// events on its hot path.
//
// Functions that produce text follow the append convention of strconv: they
// append to a caller-supplied dst and return the extended slice, and they do
// not allocate when dst has enough spare capacity. Every function is
// deterministic, allocation-free (apart from growing dst, and except
// AppendIPPrefix for IPv6 addresses with a zone) and safe for concurrent
// use; none of them panics on any input.
//
// Masking functions ([AppendMaskEmail], [AppendMaskPhone], [AppendMaskCard],
// [AppendMaskKeepLast]) are rune-aware and treat every byte of invalid UTF-8
// as one character that is always masked, so their output is valid UTF-8
// and never longer than the input in bytes.
//
// Generalisation functions coarsen values: ages to bands ([AgeBand]), dates
// to years or months, timestamps to hours or days, postal codes to prefixes,
// coordinates to geohash cells and IP addresses to network prefixes. All
// calendar computations use the proleptic Gregorian calendar in UTC.
package fieldaction
