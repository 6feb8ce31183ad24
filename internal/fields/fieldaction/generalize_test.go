package fieldaction

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// days returns the Avro date (days since epoch) of y-m-d, via package time.
func days(y int, m time.Month, d int) int32 {
	return int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func millis(y int, m time.Month, d, h, min, s, ms int) int64 {
	return time.Date(y, m, d, h, min, s, ms*int(time.Millisecond), time.UTC).UnixMilli()
}

func TestAgeBand(t *testing.T) {
	event := millis(2024, 5, 15, 12, 0, 0, 0)
	tests := []struct {
		name  string
		birth int32
		at    int64
		want  string
	}{
		{"born on event day", days(2024, 5, 15), event, AgeBandUnder18},
		{"born on event day, event at midnight", days(2024, 5, 15), millis(2024, 5, 15, 0, 0, 0, 0), AgeBandUnder18},
		{"born on event day, last ms", days(2024, 5, 15), millis(2024, 5, 15, 23, 59, 59, 999), AgeBandUnder18},
		{"born day after event", days(2024, 5, 16), event, AgeBandUnknown},
		{"born 1 ms after event day", days(2024, 5, 15), millis(2024, 5, 14, 23, 59, 59, 999), AgeBandUnknown},
		{"17, day before 18th birthday", days(2006, 5, 16), event, AgeBandUnder18},
		{"18th birthday", days(2006, 5, 15), event, AgeBand18To24},
		{"24", days(1999, 5, 16), event, AgeBand18To24},
		{"25th birthday", days(1999, 5, 15), event, AgeBand25To34},
		{"34", days(1989, 5, 16), event, AgeBand25To34},
		{"35th birthday", days(1989, 5, 15), event, AgeBand35To44},
		{"44", days(1979, 5, 16), event, AgeBand35To44},
		{"45th birthday", days(1979, 5, 15), event, AgeBand45To54},
		{"54, born before 1970", days(1969, 5, 16), event, AgeBand45To54},
		{"55th birthday, born before 1970", days(1969, 5, 15), event, AgeBand55To64},
		{"64", days(1959, 5, 16), event, AgeBand55To64},
		{"65th birthday", days(1959, 5, 15), event, AgeBand65Plus},
		{"very old", days(1900, 1, 1), event, AgeBand65Plus},
		{"birthday earlier in the month", days(2006, 5, 1), event, AgeBand18To24},
		{"birthday later in the year", days(2006, 12, 31), event, AgeBandUnder18},
		// Leap days.
		{"leap-day birth, 28 Feb of 18th year", days(2000, 2, 29), millis(2018, 2, 28, 23, 59, 59, 999), AgeBandUnder18},
		{"leap-day birth, 1 Mar of 18th year", days(2000, 2, 29), millis(2018, 3, 1, 0, 0, 0, 0), AgeBand18To24},
		{"leap-day birth, 18th birthday in a leap year", days(2004, 2, 29), millis(2022, 2, 28, 0, 0, 0, 0), AgeBandUnder18},
		{"leap-day birth, 18 on a real 29 Feb", days(1996, 2, 29), millis(2014, 2, 28, 12, 0, 0, 0), AgeBandUnder18},
		{"event on leap day", days(2002, 2, 28), millis(2020, 2, 29, 0, 0, 0, 0), AgeBand18To24},
		{"event on leap day, birthday 1 Mar", days(2002, 3, 1), millis(2020, 2, 29, 0, 0, 0, 0), AgeBandUnder18},
		// Events before 1970 (negative millis).
		{"event before 1970", days(1940, 1, 1), millis(1960, 1, 1, 0, 0, 0, 0), AgeBand18To24},
		{"event before 1970, day before birthday", days(1940, 1, 1), millis(1957, 12, 31, 23, 59, 59, 999), AgeBandUnder18},
		{"18th birthday at epoch", days(1952, 1, 1), 0, AgeBand18To24},
		{"1 ms before epoch, day before 18th birthday", days(1952, 1, 1), -1, AgeBandUnder18},
		{"born on epoch day, event 1 ms before epoch", 0, -1, AgeBandUnknown},
		{"born day before epoch, event 1 ms before epoch", -1, -1, AgeBandUnder18},
		// Extremes.
		{"min birth, max event", math.MinInt32, math.MaxInt64, AgeBand65Plus},
		{"max birth, epoch", math.MaxInt32, 0, AgeBandUnknown},
		{"min event", math.MinInt32, math.MinInt64, AgeBandUnknown},
		{"min birth, epoch", math.MinInt32, 0, AgeBand65Plus},
	}
	for _, tt := range tests {
		if got := AgeBand(tt.birth, tt.at); got != tt.want {
			t.Errorf("%s: AgeBand(%d, %d) = %q, want %q", tt.name, tt.birth, tt.at, got, tt.want)
		}
	}
}

// refAge computes completed years with package time.
func refAge(birth int32, at int64) int {
	b := time.Unix(int64(birth)*86400, 0).UTC()
	e := time.UnixMilli(at).UTC()
	age := e.Year() - b.Year()
	if e.Month() < b.Month() || e.Month() == b.Month() && e.Day() < b.Day() {
		age--
	}
	return age
}

func TestAgeBandMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bands := []struct {
		lo   int
		band string
	}{{65, AgeBand65Plus}, {55, AgeBand55To64}, {45, AgeBand45To54}, {35, AgeBand35To44}, {25, AgeBand25To34}, {18, AgeBand18To24}, {0, AgeBandUnder18}}
	for range 200000 {
		birth := int32(rng.IntN(200*366)) - 100*366 // 1870..2070
		at := rng.Int64N(200*366*msPerDay) - 100*366*msPerDay
		want := AgeBandUnknown
		if int64(birth) <= floorDiv(at, msPerDay) {
			age := refAge(birth, at)
			for _, b := range bands {
				if age >= b.lo {
					want = b.band
					break
				}
			}
		}
		if got := AgeBand(birth, at); got != want {
			t.Fatalf("AgeBand(%d, %d) = %q, want %q", birth, at, got, want)
		}
	}
}

func TestCivilFromDaysMatchesTime(t *testing.T) {
	check := func(d int64) {
		y, m, dd := civilFromDays(d)
		ty, tm, td := time.Unix(d*86400, 0).UTC().Date()
		if y != int64(ty) || m != int(tm) || dd != td {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %d-%d-%d", d, y, m, dd, ty, tm, td)
		}
	}
	for d := int64(-800000); d <= 800000; d++ { // about 1 BC .. 4160 AD
		check(d)
	}
	for _, d := range []int64{math.MinInt32, math.MaxInt32, math.MinInt32 + 1, math.MaxInt32 - 1, -719528, -719529, 2932896, 2932897} {
		check(d)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		check(rng.Int64N(1<<36) - 1<<35)
	}
}

func TestDateToYear(t *testing.T) {
	tests := []struct {
		days int32
		want int32
	}{
		{0, 1970},
		{-1, 1969},
		{364, 1970},
		{365, 1971},
		{days(2024, 1, 1), 2024},
		{days(2024, 2, 29), 2024},
		{days(2024, 12, 31), 2024},
		{days(2025, 1, 1), 2025},
		{days(1900, 2, 28), 1900},
		{days(1, 1, 1), 1},
		{days(1, 1, 1) - 1, 0}, // 1 BC is year 0
		{days(-1, 6, 1), -1},
		{math.MaxInt32, int32(time.Unix(math.MaxInt32*86400, 0).UTC().Year())},
		{math.MinInt32, int32(time.Unix(math.MinInt32*86400, 0).UTC().Year())},
	}
	for _, tt := range tests {
		if got := DateToYear(tt.days); got != tt.want {
			t.Errorf("DateToYear(%d) = %d, want %d", tt.days, got, tt.want)
		}
	}
}

func TestAppendDateToMonth(t *testing.T) {
	tests := []struct {
		days int32
		want string
	}{
		{0, "1970-01"},
		{-1, "1969-12"},
		{days(2024, 5, 15), "2024-05"},
		{days(2024, 2, 29), "2024-02"},
		{days(2024, 12, 31), "2024-12"},
		{days(2025, 1, 1), "2025-01"},
		{days(999, 10, 3), "0999-10"},
		{days(9, 1, 1), "0009-01"},
		{days(0, 1, 1), "0000-01"},
		{days(-1, 12, 31), "-0001-12"},
		{days(-12345, 7, 4), "-12345-07"},
		{days(10000, 3, 1), "10000-03"},
		{math.MaxInt32, "5881580-07"},
		{math.MinInt32, "-5877641-06"},
	}
	for _, tt := range tests {
		got := AppendDateToMonth([]byte("pre|"), tt.days)
		if string(got) != "pre|"+tt.want {
			t.Errorf("AppendDateToMonth(%d) = %q, want %q", tt.days, got[4:], tt.want)
		}
		if len(got)-4 > 11 {
			t.Errorf("AppendDateToMonth(%d) longer than documented bound: %q", tt.days, got)
		}
		// Agrees with time.Format, which pads and signs years the same way.
		if ref := time.Unix(int64(tt.days)*86400, 0).UTC().Format("2006-01"); ref != tt.want {
			t.Errorf("time.Format gives %q for %d, test wants %q", ref, tt.days, tt.want)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		d := int32(rng.Uint32())
		if got, ref := string(AppendDateToMonth(nil, d)), time.Unix(int64(d)*86400, 0).UTC().Format("2006-01"); got != ref {
			t.Fatalf("AppendDateToMonth(%d) = %q, time.Format = %q", d, got, ref)
		}
	}
}

func TestTimestampTruncation(t *testing.T) {
	const h, d = int64(msPerHour), int64(msPerDay)
	tests := []struct {
		ms, hour, day int64
	}{
		{0, 0, 0},
		{1, 0, 0},
		{h - 1, 0, 0},
		{h, h, 0},
		{d - 1, 23 * h, 0},
		{d, d, d},
		{-1, -h, -d},
		{-h, -h, -d},
		{-h - 1, -2 * h, -d},
		{-d, -d, -d},
		{-d - 1, -d - h, -2 * d},
		{millis(2024, 5, 15, 13, 45, 12, 345), millis(2024, 5, 15, 13, 0, 0, 0), millis(2024, 5, 15, 0, 0, 0, 0)},
		{millis(1969, 7, 20, 20, 17, 40, 0), millis(1969, 7, 20, 20, 0, 0, 0), millis(1969, 7, 20, 0, 0, 0, 0)},
		{math.MaxInt64, math.MaxInt64 - math.MaxInt64%h, math.MaxInt64 - math.MaxInt64%d},
	}
	for _, tt := range tests {
		if got := TimestampToHour(tt.ms); got != tt.hour {
			t.Errorf("TimestampToHour(%d) = %d, want %d", tt.ms, got, tt.hour)
		}
		if got := TimestampToDay(tt.ms); got != tt.day {
			t.Errorf("TimestampToDay(%d) = %d, want %d", tt.ms, got, tt.day)
		}
	}
	// Near math.MinInt64 the floor is unrepresentable: saturate upward.
	for _, ms := range []int64{math.MinInt64, math.MinInt64 + 1, math.MinInt64 + d} {
		for _, c := range []struct {
			fn   func(int64) int64
			unit int64
		}{{TimestampToHour, h}, {TimestampToDay, d}} {
			got := c.fn(ms)
			if got%c.unit != 0 || got-ms >= c.unit {
				t.Errorf("truncation of %d to unit %d = %d", ms, c.unit, got)
			}
		}
	}
	// Agreement with package time over a broad range.
	rng := rand.New(rand.NewPCG(7, 8))
	for range 100000 {
		ms := rng.Int64N(1<<50) - 1<<49
		tm := time.UnixMilli(ms).UTC()
		if got, want := TimestampToHour(ms), tm.Truncate(time.Hour).UnixMilli(); got != want {
			t.Fatalf("TimestampToHour(%d) = %d, want %d", ms, got, want)
		}
		y, m, dd := tm.Date()
		if got, want := TimestampToDay(ms), time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).UnixMilli(); got != want {
			t.Fatalf("TimestampToDay(%d) = %d, want %d", ms, got, want)
		}
	}
}

func TestAppendPostalPrefix(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"SW1A 1AA", 3, "SW1"},
		{"sw1a 1aa", 4, "SW1A"},
		{"SW1A 1AA", 10, "SW1A1AA"},
		{"SW1A 1AA", 0, ""},
		{"SW1A 1AA", -1, ""},
		{"", 3, ""},
		{"   ", 3, ""},
		{"75008", 2, "75"},
		{"K1A-0B1", 4, "K1A0"},
		{"  d-10115 ", 3, "D10"},
		{"1234-567", 5, "12345"},
		{"１０１１５", 3, "101"}, // full-width digits folded to ASCII
		{"ｓｗ１ａ", 4, "SW1A"}, // full-width letters folded and upper-cased
		{"\xffAB", 2, "AB"}, // invalid bytes skipped
		{"A\xe6\x97B", 2, "AB"},
		{"çé12", 3, "ÇÉ1"},
		{"日本123", 3, "日本1"},
		{"ß1", 2, "ß1"},
		{"٠١٢", 2, "٠١"},
	}
	for _, tt := range tests {
		got := AppendPostalPrefix([]byte("pre|"), tt.in, tt.n)
		if string(got) != "pre|"+tt.want {
			t.Errorf("AppendPostalPrefix(%q, %d) = %q, want %q", tt.in, tt.n, got[4:], tt.want)
		}
	}
}

func TestGeneralizeZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 64)
	var sink string
	var sinkInt int64
	allocs := testing.AllocsPerRun(100, func() {
		sink = AgeBand(days(1990, 1, 1), 1715774400000)
		sinkInt = TimestampToHour(1715774400123) + TimestampToDay(1715774400123) + int64(DateToYear(19858))
		buf = AppendDateToMonth(buf[:0], 19858)
		buf = AppendPostalPrefix(buf[:0], "sw1a 1aa", 3)
		buf = AppendPostalPrefix(buf[:0], "çé12", 3)
	})
	_, _ = sink, sinkInt
	if allocs != 0 {
		t.Fatalf("generalisation functions allocate %v times, want 0", allocs)
	}
}

func FuzzAppendPostalPrefix(f *testing.F) {
	f.Add("SW1A 1AA", 3)
	f.Add("１０１１５", 3)
	f.Add("\xffAB", 2)
	f.Add("", 0)
	f.Add("ɐɐɐ", 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		out := AppendPostalPrefix([]byte("pre|"), s, n)
		if string(out[:4]) != "pre|" {
			t.Fatalf("dst prefix clobbered: %q", out)
		}
		out = out[4:]
		runes := utf8.RuneCount(out)
		// Documented bounds: at most n runes and 4*n bytes.
		if n <= 0 && len(out) != 0 || n > 0 && (runes > n || len(out) > 4*n) {
			t.Fatalf("output %q exceeds bound for n=%d", out, n)
		}
		if !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8 %q", out)
		}
		for _, r := range string(out) {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				t.Fatalf("output %q contains %q", out, r)
			}
			if strings.ContainsRune(" -\t", r) {
				t.Fatalf("separator in %q", out)
			}
		}
		// Prefix property: a longer prefix extends a shorter one.
		if n < 1<<20 {
			longer := AppendPostalPrefix(nil, s, n+1)
			if !strings.HasPrefix(string(longer), string(out)) {
				t.Fatalf("n=%d gives %q but n+1 gives %q", n, out, longer)
			}
		}
	})
}

func BenchmarkAgeBand(b *testing.B) {
	birth := days(1990, 6, 1)
	b.ReportAllocs()
	var s string
	for b.Loop() {
		s = AgeBand(birth, 1715774400000)
	}
	_ = s
}

func BenchmarkAppendPostalPrefix(b *testing.B) {
	buf := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPostalPrefix(buf[:0], "sw1a 1aa", 3)
	}
}

func BenchmarkAppendDateToMonth(b *testing.B) {
	buf := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDateToMonth(buf[:0], 19858)
	}
}
