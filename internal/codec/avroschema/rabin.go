package avroschema

// Empty is the CRC-64-AVRO fingerprint of the empty input; it is also the
// polynomial the fingerprint table is built from.
const Empty uint64 = 0xc15d213aa4d7a795

var rabinTable = func() (t [256]uint64) {
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (Empty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

// Rabin returns the CRC-64-AVRO (Rabin) fingerprint of b, which is normally
// a schema's Parsing Canonical Form (see Canonical).
func Rabin(b []byte) uint64 {
	fp := Empty
	for _, c := range b {
		fp = (fp >> 8) ^ rabinTable[byte(fp)^c]
	}
	return fp
}
