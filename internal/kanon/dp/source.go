package dp

import (
	"crypto/rand"
	"encoding/binary"
	randv2 "math/rand/v2"
)

// Source is a source of uniformly distributed 64-bit values.
type Source interface {
	// Uint64 returns 64 uniformly random bits.
	Uint64() uint64
}

// CryptoSource draws from crypto/rand. It is the default source and the
// only one fit for production: differential privacy needs noise an
// attacker cannot predict. The zero value is ready to use and safe for
// concurrent use.
type CryptoSource struct{}

// Uint64 returns 64 random bits from crypto/rand.
func (CryptoSource) Uint64() uint64 {
	var b [8]byte
	// crypto/rand.Read never returns an error (it aborts the program if
	// the operating system's generator fails).
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// NewSeededSource returns a deterministic source (PCG) for tests and
// reproducible experiments. It gives no privacy and is not safe for
// concurrent use.
func NewSeededSource(seed uint64) Source {
	return randv2.NewPCG(seed, seed^0x9e3779b97f4a7c15)
}

// uniform returns a uniform variate in (0, 1] with 53 bits of resolution.
func uniform(src Source) float64 {
	return (float64(src.Uint64()>>11) + 1) * 0x1p-53
}
