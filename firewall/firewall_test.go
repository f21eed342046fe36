package firewall

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
)

const (
	relay4    = "10.77.0.1"   // the relay's tunnel address, allowed
	peer4     = "10.77.0.200" // another allowed address
	hub4      = "10.77.0.2"   // the hub's tunnel address
	lan4      = "10.77.1.5"   // just outside the allowed /24
	stranger4 = "192.0.2.9"

	relay6    = "fd77::1"
	hub6      = "fd77::2"
	stranger6 = "2001:db8::9"
	mapped6   = "::ffff:10.77.0.1" // relay4 as a 4-in-6 address: not an IPv4 source
)

var (
	std = &Policy{
		Allowed:   []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24"), netip.MustParsePrefix("fd77::/64")},
		TCPPorts:  []uint16{80, 443, 2001, 8181},
		AllowPing: true,
	}
	noPing = &Policy{Allowed: std.Allowed, TCPPorts: std.TCPPorts}
	// withService also admits replies from the relay's release server.
	withService = &Policy{Allowed: std.Allowed, TCPPorts: std.TCPPorts, Services: []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr(relay4), 80), netip.AddrPortFrom(netip.MustParseAddr(relay6), 80)}}
	none = &Policy{}
)

// checkTests are the packets of the table test; they also seed FuzzCheck.
var checkTests = []struct {
	name string
	pol  *Policy
	pkt  []byte
	want Verdict
}{
	// IPv4: what passes.
	{"v4 tcp to 80", std, ip4(relay4, protoTCP, tcp(80)), Pass},
	{"v4 tcp to 8181 from another allowed host", std, ip4(peer4, protoTCP, tcp(8181)), Pass},
	{"v4 tcp with IP options", std, ip4(relay4, protoTCP, tcp(443), 1, 1, 1, 0), Pass},
	{"v4 tcp with TCP options", std, ip4(relay4, protoTCP, cat(edit(tcp(2001), func(b []byte) { b[12] = 6 << 4 }), []byte{1, 1, 1, 0})), Pass},
	{"v4 tcp with trailing bytes", std, cat(ip4(relay4, protoTCP, tcp(80)), []byte{0, 0, 0, 0}), Pass},
	{"v4 ping", std, ip4(relay4, protoICMP, icmp(8, 0)), Pass},

	// IPv4: source.
	{"v4 stranger to 80", std, ip4(stranger4, protoTCP, tcp(80)), DropSource},
	{"v4 lan host outside the prefix", std, ip4(lan4, protoTCP, tcp(80)), DropSource},
	{"v4 empty policy", none, ip4(relay4, protoTCP, tcp(80)), DropSource},
	{"v4 nil policy", nil, ip4(relay4, protoTCP, tcp(80)), DropSource},
	{"v4 stranger ping", std, ip4(stranger4, protoICMP, icmp(8, 0)), DropSource},
	{"v4 stranger truncated tcp", std, ip4(stranger4, protoTCP, tcp(80)[:10]), DropSource},

	// IPv4: port and protocol.
	{"v4 tcp to unmapped 8080", std, ip4(relay4, protoTCP, tcp(8080)), DropPort},
	{"v4 tcp to port 0", std, ip4(relay4, protoTCP, tcp(0)), DropPort},
	{"v4 udp to 80", std, ip4(relay4, protoUDP, udp(80)), DropPort},
	{"v4 udp to 53", std, ip4(relay4, protoUDP, udp(53)), DropPort},
	{"v4 ping not allowed", noPing, ip4(relay4, protoICMP, icmp(8, 0)), DropProto},
	{"v4 echo request code 1", std, ip4(relay4, protoICMP, icmp(8, 1)), DropProto},
	{"v4 echo reply", std, ip4(relay4, protoICMP, icmp(0, 0)), DropProto},
	{"v4 fragmentation needed", std, ip4(relay4, protoICMP, icmp(3, 4)), DropProto},
	{"v4 carrying icmpv6", std, ip4(relay4, protoICMPv6, icmp(128, 0)), DropProto},
	{"v4 gre", std, ip4(relay4, 47, make([]byte, 8)), DropProto},
	{"v4 first fragment", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[6] = 0x20 }), DropProto},
	{"v4 middle fragment", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[6], b[7] = 0x20, 0xb9 }), DropProto},
	{"v4 last fragment", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[6], b[7] = 0x00, 0xb9 }), DropProto},

	// Replies from a tunnel service the agent connected to.
	{"v4 reply from the release server", withService, ip4(relay4, protoTCP, from(80, tcp(50123))), Pass},
	{"v6 reply from the release server", withService, ip6(relay6, protoTCP, from(80, tcp(50123))), Pass},
	{"v4 reply from another port of the relay", withService, ip4(relay4, protoTCP, from(81, tcp(50123))), DropPort},
	{"v4 port 80 of another allowed host", withService, ip4(peer4, protoTCP, from(80, tcp(50123))), DropPort},
	{"v4 udp from the release server's port", withService, ip4(relay4, protoUDP, udp(50123)), DropPort},
	{"v4 stranger claiming port 80", withService, ip4(stranger4, protoTCP, from(80, tcp(50123))), DropSource},
	{"v4 no services, reply dropped", std, ip4(relay4, protoTCP, from(80, tcp(50123))), DropPort},

	// IPv4: malformed.
	{"empty", std, []byte{}, DropMalformed},
	{"version 0", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[0] = 0x05 }), DropMalformed},
	{"version 5", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[0] = 0x55 }), DropMalformed},
	{"v4 shorter than a header", std, cut(ip4(relay4, protoTCP, tcp(80)), 19), DropMalformed},
	{"v4 IHL 4", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[0] = 0x44 }), DropMalformed},
	{"v4 IHL 4 from stranger", std, edit(ip4(stranger4, protoTCP, tcp(80)), func(b []byte) { b[0] = 0x44 }), DropMalformed},
	{"v4 IHL past total length", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[0] = 0x4f }), DropMalformed},
	{"v4 total length past packet", std, cut(ip4(relay4, protoTCP, tcp(80)), 39), DropMalformed},
	{"v4 total length below header", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[2], b[3] = 0, 19 }), DropMalformed},
	{"v4 tcp header cut", std, ip4(relay4, protoTCP, tcp(80)[:19]), DropMalformed},
	{"v4 tcp cut by total length", std, edit(ip4(relay4, protoTCP, tcp(80)), func(b []byte) { b[2], b[3] = 0, 30 }), DropMalformed},
	{"v4 tcp data offset 4", std, ip4(relay4, protoTCP, edit(tcp(80), func(b []byte) { b[12] = 4 << 4 })), DropMalformed},
	{"v4 tcp data offset past packet", std, ip4(relay4, protoTCP, edit(tcp(80), func(b []byte) { b[12] = 6 << 4 })), DropMalformed},
	{"v4 no transport header", std, ip4(relay4, protoTCP, nil), DropMalformed},
	{"v4 udp cut", std, ip4(relay4, protoUDP, udp(80)[:7]), DropMalformed},
	{"v4 icmp cut", std, ip4(relay4, protoICMP, icmp(8, 0)[:7]), DropMalformed},

	// IPv6.
	{"v6 tcp to 443", std, ip6(relay6, protoTCP, tcp(443)), Pass},
	{"v6 tcp with trailing bytes", std, cat(ip6(relay6, protoTCP, tcp(443)), []byte{0, 0}), Pass},
	{"v6 ping", std, ip6(relay6, protoICMPv6, icmp(128, 0)), Pass},
	{"v6 stranger", std, ip6(stranger6, protoTCP, tcp(443)), DropSource},
	{"v6 4-in-6 source is not IPv4", std, ip6(mapped6, protoTCP, tcp(443)), DropSource},
	{"v6 tcp to unmapped 22", std, ip6(relay6, protoTCP, tcp(22)), DropPort},
	{"v6 udp", std, ip6(relay6, protoUDP, udp(443)), DropPort},
	{"v6 ping not allowed", noPing, ip6(relay6, protoICMPv6, icmp(128, 0)), DropProto},
	{"v6 echo reply", std, ip6(relay6, protoICMPv6, icmp(129, 0)), DropProto},
	{"v6 neighbor solicitation", std, ip6(relay6, protoICMPv6, icmp(135, 0)), DropProto},
	{"v6 packet too big", std, ip6(relay6, protoICMPv6, icmp(2, 0)), DropProto},
	{"v6 carrying icmpv4", std, ip6(relay6, protoICMP, icmp(8, 0)), DropProto},
	{"v6 esp", std, ip6(relay6, 50, make([]byte, 16)), DropProto},
	{"v6 no next header", std, ip6(relay6, 59, nil), DropProto},
	{"v6 shorter than a header", std, cut(ip6(relay6, protoTCP, tcp(443)), 39), DropMalformed},
	{"v6 payload length past packet", std, cut(ip6(relay6, protoTCP, tcp(443)), 59), DropMalformed},
	{"v6 payload length 0", std, edit(ip6(relay6, protoTCP, tcp(443)), func(b []byte) { b[4], b[5] = 0, 0 }), DropMalformed},
	{"v6 tcp header cut", std, ip6(relay6, protoTCP, tcp(443)[:12]), DropMalformed},
	{"v6 icmp cut", std, ip6(relay6, protoICMPv6, icmp(128, 0)[:4]), DropMalformed},

	// IPv6 extension headers.
	{"v6 hop-by-hop", std, ip6(relay6, protoHopByHop, cat(opts6(protoTCP, 0), tcp(80))), Pass},
	{"v6 long destination options", std, ip6(relay6, protoDstOpts, cat(opts6(protoTCP, 3), tcp(80))), Pass},
	{"v6 routing, no segments left", std, ip6(relay6, protoRouting, cat(routing6(protoTCP, 0), tcp(80))), Pass},
	{"v6 atomic fragment", std, ip6(relay6, protoFragment, cat(frag6(protoTCP, 0, false), tcp(80))), Pass},
	{"v6 five extension headers", std, ip6(relay6, protoHopByHop, cat(opts6(protoDstOpts, 0), opts6(protoRouting, 0), routing6(protoFragment, 0), frag6(protoDstOpts, 0, false), opts6(protoTCP, 0), tcp(80))), Pass},
	{"v6 ping after destination options", std, ip6(relay6, protoDstOpts, cat(opts6(protoICMPv6, 0), icmp(128, 0))), Pass},
	{"v6 unmapped port after options", std, ip6(relay6, protoDstOpts, cat(opts6(protoTCP, 0), tcp(22))), DropPort},
	{"v6 stranger with bad options", std, ip6(stranger6, protoDstOpts, cat(opts6(protoTCP, 9)[:16], tcp(80))), DropSource},
	{"v6 six extension headers", std, ip6(relay6, protoDstOpts, cat(opts6(protoDstOpts, 0), opts6(protoDstOpts, 0), opts6(protoDstOpts, 0), opts6(protoDstOpts, 0), opts6(protoDstOpts, 0), opts6(protoTCP, 0), tcp(80))), DropProto},
	{"v6 routing with segments left", std, ip6(relay6, protoRouting, cat(routing6(protoTCP, 1), tcp(80))), DropProto},
	{"v6 first fragment", std, ip6(relay6, protoFragment, cat(frag6(protoTCP, 0, true), tcp(80))), DropProto},
	{"v6 later fragment", std, ip6(relay6, protoFragment, cat(frag6(protoTCP, 185, false), tcp(80))), DropProto},
	{"v6 ah", std, ip6(relay6, protoDstOpts, cat(opts6(51, 0), make([]byte, 24))), DropProto},
	{"v6 hop-by-hop not first", std, ip6(relay6, protoDstOpts, cat(opts6(protoHopByHop, 0), opts6(protoTCP, 0), tcp(80))), DropMalformed},
	{"v6 extension header cut", std, ip6(relay6, protoDstOpts, opts6(protoTCP, 0)[:4]), DropMalformed},
	{"v6 extension header past payload", std, ip6(relay6, protoDstOpts, cat(opts6(protoTCP, 9)[:16], tcp(80))), DropMalformed},
	{"v6 tcp cut after options", std, ip6(relay6, protoDstOpts, cat(opts6(protoTCP, 0), tcp(80)[:12])), DropMalformed},
}

func TestCheck(t *testing.T) {
	for _, tt := range checkTests {
		if got := Check(tt.pkt, tt.pol); got != tt.want {
			t.Errorf("%s: Check = %v, want %v", tt.name, got, tt.want)
		}
		// The compiled policy Device uses must agree.
		pol := tt.pol
		if pol == nil {
			pol = none
		}
		if got := compile(*pol).check(tt.pkt); got != tt.want {
			t.Errorf("%s: compiled check = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheckAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		for _, tt := range checkTests {
			Check(tt.pkt, tt.pol)
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times per table", allocs)
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{
		Pass: "Pass", DropSource: "DropSource", DropPort: "DropPort", DropProto: "DropProto",
		DropMalformed: "DropMalformed", 0: "Verdict(0)", 42: "Verdict(42)",
	} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", v, got, want)
		}
	}
}

// TestSourceRanges checks the compiled prefix ranges against
// netip.Prefix.Contains at the edges of every prefix, for nested, adjacent,
// overlapping, unmasked, invalid, 4-in-6 and whole-space prefixes.
func TestSourceRanges(t *testing.T) {
	sets := [][]string{
		{},
		{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32", "11.0.0.0/8", "9.255.255.255/32"},
		{"192.168.1.77/24", "192.168.0.0/24", "172.16.0.0/12"},
		{"0.0.0.0/0"},
		{"::/0"},
		{"0.0.0.0/0", "::/0"},
		{"fd77::/64", "fd77::1/128", "fd77:0:0:1::/64", "2001:db8::/32", "2001:db8:ffff::/48"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", "::/1", "8000::/1"},
		{"ffff:ffff:ffff:ffff::/64", "255.255.255.255/32", "::/128", "0.0.0.0/32"},
		{"fd00::/63", "fd00:0:0:1::/64", "fd00:0:0:1:8000::/65"},
	}
	for _, set := range sets {
		var p Policy
		for _, s := range set {
			p.Allowed = append(p.Allowed, netip.MustParsePrefix(s))
		}
		p.Allowed = append(p.Allowed, netip.Prefix{}) // invalid: matches nothing
		c := compile(p)

		probes := []netip.Addr{netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("2001:db7::1")}
		for _, pfx := range p.Allowed {
			if !pfx.IsValid() {
				continue
			}
			pfx = pfx.Masked()
			first := pfx.Addr()
			last := lastAddr(pfx)
			probes = append(probes, first, first.Prev(), first.Next(), last, last.Prev(), last.Next())
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			if got, want := c.allowsSource(a), p.allowsSource(a); got != want {
				t.Errorf("%v: allowsSource(%v) = %v, want %v", set, a, got, want)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// fuzzPolicy is the real port map, a few prefixes, and a prefix around the
// packet's own source of fuzzed length, so that the checks after the source
// are reached often.
func fuzzPolicy(pkt []byte, bits uint8, ping bool) Policy {
	p := Policy{
		Allowed: []netip.Prefix{
			netip.MustParsePrefix("10.77.0.0/24"),
			netip.MustParsePrefix("fd77::/64"),
			netip.MustParsePrefix("::ffff:10.0.0.0/104"),
		},
		TCPPorts:  []uint16{80, 443, 2000, 2001, 2002, 2010, 4430, 4431, 4432, 4433, 4434, 8181, 44381},
		AllowPing: ping,
	}
	if src, ok := oracleSource(pkt); ok {
		if pfx, err := src.Prefix(int(bits) % (src.BitLen() + 1)); err == nil {
			p.Allowed = append(p.Allowed, pfx)
		}
	}
	return p
}

// oracleSource reads the source address at its fixed place.
func oracleSource(pkt []byte) (netip.Addr, bool) {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(pkt[12:16])), true
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(pkt[8:24])), true
	}
	return netip.Addr{}, false
}

// oraclePassOK independently re-derives why pkt may pass under p and reports
// what is wrong if it may not.
func oraclePassOK(pkt []byte, p *Policy) string {
	src, ok := oracleSource(pkt)
	if !ok {
		return "not an IP packet"
	}
	if !slices.ContainsFunc(p.Allowed, func(pfx netip.Prefix) bool { return pfx.Contains(src) }) {
		return "source not allowed"
	}
	var proto uint8
	var l4 []byte
	if src.Is4() {
		hl := int(pkt[0]&15) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if hl < 20 || total < hl || total > len(pkt) {
			return "bad IPv4 header"
		}
		if binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
			return "IPv4 fragment"
		}
		proto, l4 = pkt[9], pkt[hl:total]
	} else {
		total := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
		if total > len(pkt) {
			return "bad IPv6 header"
		}
		proto, l4 = pkt[6], pkt[40:total]
		for proto == protoHopByHop || proto == protoDstOpts || proto == protoRouting || proto == protoFragment {
			n := 8
			if len(l4) < 8 {
				return "IPv6 extension header cut"
			}
			if proto != protoFragment {
				n = (int(l4[1]) + 1) * 8
			}
			if n > len(l4) {
				return "IPv6 extension header cut"
			}
			proto, l4 = l4[0], l4[n:]
		}
	}
	switch {
	case proto == protoTCP:
		if len(l4) < 20 || int(l4[12]>>4)*4 < 20 || int(l4[12]>>4)*4 > len(l4) {
			return "TCP header cut"
		}
		if !slices.Contains(p.TCPPorts, binary.BigEndian.Uint16(l4[2:])) {
			return "TCP port not mapped"
		}
		return ""
	case proto == protoICMP && src.Is4() && len(l4) >= 8 && l4[0] == 8,
		proto == protoICMPv6 && src.Is6() && len(l4) >= 8 && l4[0] == 128:
		if !p.AllowPing {
			return "ping not allowed"
		}
		return ""
	}
	return "neither TCP nor echo request"
}

func FuzzCheck(f *testing.F) {
	for _, tt := range checkTests {
		f.Add(tt.pkt, uint8(0), true)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, bits uint8, ping bool) {
		p := fuzzPolicy(pkt, bits, ping)
		v := Check(pkt, &p)
		if v < Pass || v > DropMalformed {
			t.Fatalf("Check = %v, not a verdict", v)
		}
		if got := compile(p).check(pkt); got != v {
			t.Fatalf("compiled check = %v, Check = %v", got, v)
		}
		if v == Pass {
			if why := oraclePassOK(pkt, &p); why != "" {
				t.Fatalf("Check passed a packet that must not pass: %s\npacket %x", why, pkt)
			}
		}
		if v := Check(pkt, nil); v == Pass {
			t.Fatalf("Check passed a packet with a nil policy")
		}
		if v := Check(pkt, &Policy{TCPPorts: p.TCPPorts, AllowPing: true}); v == Pass {
			t.Fatalf("Check passed a packet with no allowed sources")
		}
	})
}
