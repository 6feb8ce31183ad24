package fieldaction

// MaxGeoPrecision is the largest geohash precision AppendGeoCell accepts
// (12 characters, 60 bits, cells of about 3.7 cm x 1.9 cm).
const MaxGeoPrecision = 12

const geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// AppendGeoCell appends the geohash of (lat, lon) with precision characters
// to dst and reports whether the input was valid. Typical precisions for
// generalisation are 4 (about 39 x 20 km) and 5 (about 4.9 x 4.9 km).
//
// lat must be in [-90, 90] and lon in [-180, 180] (NaN and infinities are
// invalid) and precision in [1, MaxGeoPrecision]; otherwise nothing is
// appended and ok is false. Points exactly on a cell boundary belong to the
// cell to the north/east (so (0, 0) is "s000...", 90 and 180 fall in the
// northern- and eastern-most cells), matching integer-based encoders such
// as Lucene's. Example: (57.64911, 10.40744) at precision 11 is
// "u4pruydqqvj".
func AppendGeoCell(dst []byte, lat, lon float64, precision int) ([]byte, bool) {
	if !(lat >= -90 && lat <= 90) || !(lon >= -180 && lon <= 180) ||
		precision < 1 || precision > MaxGeoPrecision {
		return dst, false
	}
	latMin, latMax := -90.0, 90.0
	lonMin, lonMax := -180.0, 180.0
	evenBit := true // bits alternate, longitude first
	for range precision {
		var c byte
		for range 5 {
			c <<= 1
			if evenBit {
				mid := (lonMin + lonMax) / 2
				if lon >= mid {
					c |= 1
					lonMin = mid
				} else {
					lonMax = mid
				}
			} else {
				mid := (latMin + latMax) / 2
				if lat >= mid {
					c |= 1
					latMin = mid
				} else {
					latMax = mid
				}
			}
			evenBit = !evenBit
		}
		dst = append(dst, geohashAlphabet[c])
	}
	return dst, true
}
