package fieldaction

import "net/netip"

// Prefix lengths used by AppendIPPrefix.
const (
	IPv4PrefixBits = 24
	IPv6PrefixBits = 48
)

// MaxIPPrefixLen is the longest output of AppendIPPrefix
// ("ffff:ffff:ffff::/48").
const MaxIPPrefixLen = len("ffff:ffff:ffff::/48")

// AppendIPPrefix appends the network prefix containing the IP address ip to
// dst in CIDR notation and reports whether ip was valid: IPv4 addresses are
// generalised to their /24 ("203.0.113.7" -> "203.0.113.0/24"), IPv6 to
// their /48 ("2001:db8:1:2::5" -> "2001:db8:1::/48").
//
// Parsing is that of netip.ParseAddr: no surrounding spaces, ports or
// prefixes. IPv4-mapped IPv6 addresses ("::ffff:203.0.113.7") are treated as
// IPv4, and an IPv6 zone ("fe80::1%eth0") is dropped. On invalid input
// nothing is appended and ok is false. The output is at most MaxIPPrefixLen
// bytes. It does not allocate, except when parsing an address with a zone.
func AppendIPPrefix(dst []byte, ip string) ([]byte, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return dst, false
	}
	addr = addr.Unmap()
	bits := IPv6PrefixBits
	if addr.Is4() {
		bits = IPv4PrefixBits
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return dst, false
	}
	return p.AppendTo(dst), true
}
