package fieldaction

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestAppendGeoCell(t *testing.T) {
	tests := []struct {
		lat, lon  float64
		precision int
		want      string
	}{
		{57.64911, 10.40744, 11, "u4pruydqqvj"}, // Wikipedia example
		{57.64911, 10.40744, 5, "u4pru"},
		{57.64911, 10.40744, 4, "u4pr"},
		{57.64911, 10.40744, 1, "u"},
		{42.605, -5.603, 5, "ezs42"}, // Wikipedia example
		{0, 0, 5, "s0000"},           // boundaries go north/east
		{0, 0, 12, "s00000000000"},
		{math.Copysign(0, -1), math.Copysign(0, -1), 5, "s0000"},
		{90, 180, 12, "zzzzzzzzzzzz"},
		{-90, -180, 12, "000000000000"},
		{90, -180, 6, "bpbpbp"},
		{-90, 180, 6, "pbpbpb"},
		{-0.000001, -0.000001, 5, "7zzzz"},
		{51.501, -0.142, 5, "gcpuu"}, // London, Buckingham Palace
		{-33.8568, 151.2153, 5, "r3gx2"},
	}
	for _, tt := range tests {
		got, ok := AppendGeoCell([]byte("pre|"), tt.lat, tt.lon, tt.precision)
		if !ok || string(got) != "pre|"+tt.want {
			t.Errorf("AppendGeoCell(%v, %v, %d) = %q, %v; want %q", tt.lat, tt.lon, tt.precision, got, ok, tt.want)
		}
	}
}

func TestAppendGeoCellInvalid(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		lat, lon  float64
		precision int
	}{
		{nan, 0, 5},
		{0, nan, 5},
		{inf, 0, 5},
		{-inf, 0, 5},
		{0, inf, 5},
		{90.000001, 0, 5},
		{-90.000001, 0, 5},
		{0, 180.000001, 5},
		{0, -180.000001, 5},
		{0, 0, 0},
		{0, 0, -1},
		{0, 0, MaxGeoPrecision + 1},
	}
	for _, tt := range tests {
		got, ok := AppendGeoCell([]byte("pre|"), tt.lat, tt.lon, tt.precision)
		if ok || string(got) != "pre|" {
			t.Errorf("AppendGeoCell(%v, %v, %d) = %q, %v; want unchanged, false", tt.lat, tt.lon, tt.precision, got, ok)
		}
	}
}

// decodeGeohash is an independent decoder returning the cell bounds.
func decodeGeohash(t *testing.T, h string) (latMin, latMax, lonMin, lonMax float64) {
	latMin, latMax, lonMin, lonMax = -90, 90, -180, 180
	even := true
	for _, c := range h {
		v := strings.IndexRune("0123456789bcdefghjkmnpqrstuvwxyz", c)
		if v < 0 {
			t.Fatalf("bad geohash char %q", c)
		}
		for bit := 4; bit >= 0; bit-- {
			on := v>>bit&1 == 1
			if even {
				mid := (lonMin + lonMax) / 2
				if on {
					lonMin = mid
				} else {
					lonMax = mid
				}
			} else {
				mid := (latMin + latMax) / 2
				if on {
					latMin = mid
				} else {
					latMax = mid
				}
			}
			even = !even
		}
	}
	return
}

func TestAppendGeoCellContainsPoint(t *testing.T) {
	points := [][2]float64{{57.64911, 10.40744}, {-33.8568, 151.2153}, {40.6892, -74.0445}, {-54.8019, -68.3030}, {89.9999, 179.9999}, {-89.9999, -179.9999}, {10.762622, 106.660172}}
	for _, p := range points {
		for prec := 1; prec <= MaxGeoPrecision; prec++ {
			h, ok := AppendGeoCell(nil, p[0], p[1], prec)
			if !ok || len(h) != prec {
				t.Fatalf("AppendGeoCell(%v, %d) = %q, %v", p, prec, h, ok)
			}
			latMin, latMax, lonMin, lonMax := decodeGeohash(t, string(h))
			if p[0] < latMin || p[0] >= latMax || p[1] < lonMin || p[1] >= lonMax {
				t.Errorf("%v not in cell %q [%v,%v)x[%v,%v)", p, h, latMin, latMax, lonMin, lonMax)
			}
			// Cell sizes: precision 4 is 0.3515625 deg lon x 0.17578125 deg lat
			// (~39 x 20 km at the equator), precision 5 is ~0.044 x 0.044 deg.
			lonBits := (5*prec + 1) / 2
			latBits := 5 * prec / 2
			if lonMax-lonMin != 360/math.Exp2(float64(lonBits)) || latMax-latMin != 180/math.Exp2(float64(latBits)) {
				t.Errorf("cell %q has unexpected size", h)
			}
			// Prefix property.
			if prec > 1 {
				shorter, _ := AppendGeoCell(nil, p[0], p[1], prec-1)
				if !strings.HasPrefix(string(h), string(shorter)) {
					t.Errorf("%q is not a prefix of %q", shorter, h)
				}
			}
		}
	}
}

func TestAppendIPPrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.0/24"},
		{"203.0.113.0", "203.0.113.0/24"},
		{"203.0.113.255", "203.0.113.0/24"},
		{"255.255.255.255", "255.255.255.0/24"},
		{"0.0.0.0", "0.0.0.0/24"},
		{"10.1.2.3", "10.1.2.0/24"},
		{"2001:db8:1:2::5", "2001:db8:1::/48"},
		{"2001:db8:1::", "2001:db8:1::/48"},
		{"2001:0DB8:0001:ffff:ffff:ffff:ffff:ffff", "2001:db8:1::/48"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff::/48"},
		{"::1", "::/48"},
		{"::", "::/48"},
		{"::ffff:203.0.113.7", "203.0.113.0/24"}, // IPv4-mapped -> IPv4
		{"fe80::1%eth0", "fe80::/48"},            // zone dropped
		{"2001:db8::1:2:3:4", "2001:db8::/48"},
		{"64:ff9b::192.0.2.33", "64:ff9b::/48"},
	}
	for _, tt := range tests {
		got, ok := AppendIPPrefix([]byte("pre|"), tt.in)
		if !ok || string(got) != "pre|"+tt.want {
			t.Errorf("AppendIPPrefix(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	for _, in := range []string{"", " ", "1.2.3", "1.2.3.4.5", "1.2.3.4/24", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4:80",
		"256.1.1.1", "01.2.3.4", "example.com", "::g", "[::1]", "2001:db8::/48", "fe80::1%", "\xff", "1.2.3.４"} {
		got, ok := AppendIPPrefix([]byte("pre|"), in)
		if ok || string(got) != "pre|" {
			t.Errorf("AppendIPPrefix(%q) = %q, %v; want unchanged, false", in, got, ok)
		}
	}
}

func TestGeoIPZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = AppendGeoCell(buf[:0], 57.64911, 10.40744, 12)
		buf, _ = AppendIPPrefix(buf[:0], "203.0.113.7")
		buf, _ = AppendIPPrefix(buf[:0], "2001:db8:1:2::5")
		buf, _ = AppendIPPrefix(buf[:0], "::ffff:203.0.113.7")
	})
	if allocs != 0 {
		t.Fatalf("geo/IP functions allocate %v times, want 0", allocs)
	}
}

func FuzzAppendIPPrefix(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "2001:db8:1:2::5", "::ffff:1.2.3.4", "fe80::1%eth0", "", "1.2.3.4:80", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, ok := AppendIPPrefix([]byte("pre|"), s)
		if string(out[:4]) != "pre|" {
			t.Fatalf("dst prefix clobbered: %q", out)
		}
		out = out[4:]
		addr, err := netip.ParseAddr(s)
		if !ok {
			if len(out) != 0 {
				t.Fatalf("invalid input %q appended %q", s, out)
			}
			if err == nil {
				t.Fatalf("valid address %q rejected", s)
			}
			return
		}
		if err != nil {
			t.Fatalf("accepted %q that netip rejects: %v", s, err)
		}
		if len(out) > MaxIPPrefixLen {
			t.Fatalf("output %q longer than %d", out, MaxIPPrefixLen)
		}
		p, err := netip.ParsePrefix(string(out))
		if err != nil {
			t.Fatalf("output %q does not parse: %v", out, err)
		}
		addr = addr.Unmap().WithZone("")
		wantBits := IPv6PrefixBits
		if addr.Is4() {
			wantBits = IPv4PrefixBits
		}
		if p.Bits() != wantBits || p != p.Masked() || !p.Contains(addr) {
			t.Fatalf("%q -> %q: wrong prefix", s, out)
		}
	})
}

func BenchmarkAppendGeoCell(b *testing.B) {
	for _, prec := range []int{5, 12} {
		b.Run(fmt.Sprintf("precision=%d", prec), func(b *testing.B) {
			buf := make([]byte, 0, 16)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendGeoCell(buf[:0], 57.64911, 10.40744, prec)
			}
		})
	}
}

func BenchmarkAppendIPPrefix(b *testing.B) {
	for _, ip := range []string{"203.0.113.7", "2001:db8:1:2::5"} {
		b.Run(ip, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendIPPrefix(buf[:0], ip)
			}
		})
	}
}
