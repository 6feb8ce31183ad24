package fieldaction

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// Age bands returned by AgeBand. They are constants, so AgeBand never
// allocates.
const (
	AgeBandUnder18 = "under_18"
	AgeBand18To24  = "18-24"
	AgeBand25To34  = "25-34"
	AgeBand35To44  = "35-44"
	AgeBand45To54  = "45-54"
	AgeBand55To64  = "55-64"
	AgeBand65Plus  = "65+"
	AgeBandUnknown = "unknown"
)

const (
	msPerHour = 60 * 60 * 1000
	msPerDay  = 24 * msPerHour
)

// AgeBand returns the age band of a person born on birthDays (an Avro
// "date": days since 1970-01-01, negative before) at the event time
// atMillis (Unix milliseconds, UTC): one of AgeBandUnder18 ("under_18"),
// "18-24", "25-34", "35-44", "45-54", "55-64" or "65+". It returns
// AgeBandUnknown ("unknown") if the birth date is after the event date.
//
// The age is the number of completed years: a person is one year older
// from their birthday onward, so on the 18th birthday the band is "18-24".
// People born on 29 February turn a year older on 1 March in non-leap
// years.
func AgeBand(birthDays int32, atMillis int64) string {
	eventDays := floorDiv(atMillis, msPerDay)
	if int64(birthDays) > eventDays {
		return AgeBandUnknown
	}
	by, bm, bd := civilFromDays(int64(birthDays))
	ey, em, ed := civilFromDays(eventDays)
	age := ey - by
	if em < bm || em == bm && ed < bd {
		age--
	}
	switch {
	case age < 18:
		return AgeBandUnder18
	case age < 25:
		return AgeBand18To24
	case age < 35:
		return AgeBand25To34
	case age < 45:
		return AgeBand35To44
	case age < 55:
		return AgeBand45To54
	case age < 65:
		return AgeBand55To64
	default:
		return AgeBand65Plus
	}
}

// DateToYear returns the calendar year of days (days since 1970-01-01).
// Years before 1 AD follow astronomical numbering (0 is 1 BC).
func DateToYear(days int32) int32 {
	y, _, _ := civilFromDays(int64(days))
	return int32(y)
}

// AppendDateToMonth appends the year and month of days (days since
// 1970-01-01) as "YYYY-MM" to dst, e.g. "2024-05". Years are zero-padded to
// at least four digits and negative years carry a '-' sign ("-0001-12"),
// as in time.Format; the output is at most 11 bytes.
func AppendDateToMonth(dst []byte, days int32) []byte {
	y, m, _ := civilFromDays(int64(days))
	if y < 0 {
		dst = append(dst, '-')
		y = -y
	}
	var buf [8]byte // |y| < 6e6
	i := len(buf)
	for y > 0 || i > len(buf)-4 {
		i--
		buf[i] = byte('0' + y%10)
		y /= 10
	}
	dst = append(dst, buf[i:]...)
	return append(dst, '-', byte('0'+m/10), byte('0'+m%10))
}

// TimestampToHour truncates the Unix millisecond timestamp ms down to the
// start of its UTC hour (rounding towards the past, also before 1970).
// In the single unrepresentable case near math.MinInt64 it returns the
// earliest representable hour boundary instead.
func TimestampToHour(ms int64) int64 { return truncateMillis(ms, msPerHour) }

// TimestampToDay truncates the Unix millisecond timestamp ms down to UTC
// midnight of its day (rounding towards the past, also before 1970).
// In the single unrepresentable case near math.MinInt64 it returns the
// earliest representable day boundary instead.
func TimestampToDay(ms int64) int64 { return truncateMillis(ms, msPerDay) }

// AppendPostalPrefix appends the first n letters or digits of the postal
// code s to dst, upper-cased, dropping spaces, dashes and all other
// characters: ("SW1A 1AA", 3) -> "SW1", ("75008", 2) -> "75". If s has
// fewer than n letters and digits, all of them are appended; n <= 0
// appends nothing. Letters and digits are those of Unicode; full-width
// ASCII forms are folded to ASCII, invalid UTF-8 bytes are skipped. The
// output has at most n runes (at most n bytes for ASCII input, 4*n bytes
// in general).
func AppendPostalPrefix(dst []byte, s string, n int) []byte {
	for _, r := range s {
		if n <= 0 {
			break
		}
		if r >= 0xFF01 && r <= 0xFF5E { // full-width ASCII variants
			r -= 0xFF01 - '!'
		}
		switch {
		case 'a' <= r && r <= 'z':
			dst = append(dst, byte(r-'a'+'A'))
		case 'A' <= r && r <= 'Z' || '0' <= r && r <= '9':
			dst = append(dst, byte(r))
		case r < utf8.RuneSelf || r == utf8.RuneError:
			continue
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			dst = utf8.AppendRune(dst, unicode.ToUpper(r))
		default:
			continue
		}
		n--
	}
	return dst
}

// floorDiv returns floor(a / b) for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// truncateMillis rounds ms down to a multiple of unit, saturating upward
// when that multiple is not representable.
func truncateMillis(ms, unit int64) int64 {
	r := ms % unit
	if r < 0 {
		r += unit
	}
	if ms < math.MinInt64+r { // ms - r would overflow
		return ms + (unit - r)
	}
	return ms - r
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// (year, month, day). It is Howard Hinnant's days_from_civil inverse and is
// exact for every int64 day count derived from Unix milliseconds.
func civilFromDays(days int64) (year int64, month, day int) {
	z := days + 719468 // days since 0000-03-01
	era := floorDiv(z, 146097)
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], March-based
	day = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		month = int(mp + 3)
	} else {
		month = int(mp - 9)
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}
