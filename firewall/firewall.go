// Package firewall decides which packets arriving through the WireGuard
// tunnel may reach the agent's userspace TCP/IP stack.
//
// The agent accepts tunnel traffic only from allowed source prefixes and only
// TCP to the ports of the fixed port map (plus, optionally, ICMP echo requests
// for diagnosis); everything else is dropped and counted. The filter sits in
// front of the netstack as a wrapper around its tun.Device (see Device): the
// netstack's listeners never see a packet the policy does not admit.
//
// The filter is stateless and fail-closed. It must never let through a packet
// it cannot fully classify, never modify a packet, never allocate or log per
// packet, and never block the packet path on anything but the inner device.
//
// Classification order, for every packet (Check):
//
//  1. The fixed IP header must be sound (version 4 or 6, IHL >= 5, total or
//     payload length within the packet), else DropMalformed.
//  2. The source address must be in Policy.Allowed, else DropSource. A packet
//     from a stranger is counted as DropSource whatever it carries.
//  3. Fragments are dropped (DropProto), see below. IPv6 extension headers are
//     walked, see below.
//  4. The transport header must be complete (TCP: 20 bytes and its data offset;
//     UDP and ICMP: 8 bytes), else DropMalformed.
//  5. TCP to a port in Policy.TCPPorts passes, and so does TCP from one of
//     Policy.Services (see there); TCP or UDP to any other port is
//     DropPort (no UDP port is ever mapped). An ICMP echo request (IPv4 type 8,
//     ICMPv6 type 128, code 0) passes if Policy.AllowPing. Everything else,
//     including other ICMP types, is DropProto.
//
// Fragments: every IPv4 fragment is dropped, the first one (MF set, offset 0)
// included. A later fragment carries no port and cannot be checked, and since
// those are always dropped, a first fragment could never be reassembled into a
// whole packet; letting it through would only make the stack hold it in its
// reassembly queue. Both ends of the tunnel are netstacks sharing the tunnel
// MTU, so legitimate traffic is never fragmented. The same holds for IPv6: a
// Fragment header is accepted only as an atomic fragment (offset 0, M clear,
// RFC 6946), which is then treated like an unfragmented packet.
//
// IPv6 extension headers: Hop-by-Hop Options (first only; elsewhere it is
// DropMalformed), Destination Options, Routing with Segments Left 0 and atomic
// Fragment headers are walked, at most five of them; any other next
// header (ESP, AH, No Next Header, Mobility, unknown), a Routing header with
// segments left, or a longer chain is DropProto. A header that runs past the
// payload is DropMalformed. Options inside the headers are not inspected.
//
// ICMP errors (Destination Unreachable, Packet Too Big, Time Exceeded) and
// Neighbor Discovery are DropProto: the tunnel is a point-to-point layer 3
// link with no link-layer resolution, both ends share its MTU, and the agent
// opens no connection through it but to Policy.Services.
package firewall

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"sort"
	"strconv"
)

// Policy says what may reach the hub through the tunnel. The zero Policy
// admits nothing.
type Policy struct {
	// Allowed lists the source prefixes that may reach the hub through the
	// tunnel. Empty means nothing is allowed. IPv4 prefixes match IPv4
	// packets, IPv6 prefixes (4-in-6 ones included) match IPv6 packets, as
	// netip.Prefix.Contains does. Invalid (zero) prefixes match nothing.
	Allowed []netip.Prefix

	// TCPPorts lists the destination TCP ports that are mapped (the
	// tunnel-side ports of the port map). Anything else is dropped.
	TCPPorts []uint16

	// AllowPing lets ICMP and ICMPv6 echo requests from Allowed sources
	// through, for diagnosis. Default false.
	AllowPing bool

	// Services are TCP services inside the tunnel that the agent itself
	// connects to (the relay's release server). TCP segments from an
	// Allowed source whose source address and port are one of these pass
	// whatever their destination port. That admits only replies: the
	// netstack listens on mapped ports alone and resets anything else.
	Services []netip.AddrPort
}

func (p *Policy) isService(src netip.Addr, port uint16) bool {
	for _, s := range p.Services {
		if s.Port() == port && s.Addr() == src {
			return true
		}
	}
	return false
}

// allowsSource reports whether a is inside one of p.Allowed.
func (p *Policy) allowsSource(a netip.Addr) bool {
	for _, pfx := range p.Allowed {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// Verdict is what the firewall decided about one packet.
//
// The zero Verdict is not a valid verdict and is never returned, so a verdict
// that was never set is never mistaken for Pass.
type Verdict uint8

const (
	// Pass: the packet may reach the stack.
	Pass Verdict = iota + 1
	// DropSource: the source address is not in Policy.Allowed.
	DropSource
	// DropPort: TCP or UDP to a port that is not mapped.
	DropPort
	// DropProto: a protocol other than TCP and allowed ICMP echo, or a
	// fragment or extension header chain that cannot be checked.
	DropProto
	// DropMalformed: a truncated or inconsistent IP or transport header.
	DropMalformed

	numVerdicts = iota + 1 // size of arrays indexed by Verdict
)

var verdictNames = [numVerdicts]string{
	Pass:          "Pass",
	DropSource:    "DropSource",
	DropPort:      "DropPort",
	DropProto:     "DropProto",
	DropMalformed: "DropMalformed",
}

func (v Verdict) String() string {
	if v > 0 && int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// Check classifies one IP packet (IPv4 or IPv6, no link-layer header) under
// policy p, as described in the package documentation. A nil p admits
// nothing. Check is pure, safe for concurrent use and does not allocate; it
// matches by linear search, Device uses a precompiled form of the policy
// with the same result.
func Check(pkt []byte, p *Policy) Verdict {
	if p == nil {
		p = &noPolicy
	}
	ip, v := parseIP(pkt)
	if v != Pass {
		return v
	}
	if !p.allowsSource(ip.src) {
		return DropSource
	}
	t, v := ip.transport()
	if v != Pass {
		return v
	}
	return t.verdict(t.kind == kindTCP && (slices.Contains(p.TCPPorts, t.port) || p.isService(ip.src, t.srcPort)), p.AllowPing)
}

var noPolicy Policy

// compiled is a Policy prepared for the packet path: a port bitmap and the
// allowed prefixes merged into sorted, disjoint address ranges. It is
// immutable once built.
type compiled struct {
	policy Policy      // a deep copy of what was compiled, for Device.Policy
	v4, v6 []addrRange // sorted by lo, disjoint
	ping   bool
	ports  [65536 / 64]uint64 // bit p set: TCP port p is mapped
}

// addrRange is the inclusive range of addresses a prefix covers.
type addrRange struct{ lo, hi u128 }

// u128 is an address as a big-endian number; IPv4 addresses use lo only.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func key(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// compile prepares p for the packet path.
func compile(p Policy) *compiled {
	c := &compiled{
		policy: Policy{
			Allowed:   slices.Clone(p.Allowed),
			TCPPorts:  slices.Clone(p.TCPPorts),
			AllowPing: p.AllowPing,
			Services:  slices.Clone(p.Services),
		},
		ping: p.AllowPing,
	}
	for _, port := range p.TCPPorts {
		c.ports[port>>6] |= 1 << (port & 63)
	}
	for _, pfx := range p.Allowed {
		if !pfx.IsValid() {
			continue
		}
		pfx = pfx.Masked()
		lo, bits := key(pfx.Addr()), pfx.Bits()
		var host u128 // the bits a prefix of this length leaves free
		switch {
		case pfx.Addr().Is4():
			host.lo = uint64(^uint32(0) >> bits)
		case bits >= 64:
			host.lo = ^uint64(0) >> (bits - 64)
		default:
			host = u128{^uint64(0) >> bits, ^uint64(0)}
		}
		r := addrRange{lo, u128{lo.hi | host.hi, lo.lo | host.lo}}
		if pfx.Addr().Is4() {
			c.v4 = append(c.v4, r)
		} else {
			c.v6 = append(c.v6, r)
		}
	}
	c.v4, c.v6 = mergeRanges(c.v4), mergeRanges(c.v6)
	return c
}

// mergeRanges sorts rs and merges overlapping ranges, so that a binary search
// on the lower bounds finds the only candidate. Prefixes either nest or are
// disjoint, so this only removes nested ones.
func mergeRanges(rs []addrRange) []addrRange {
	// sort.Slice, not slices.SortFunc: a generic sort instantiated for
	// addrRange cost the agent 6 KB.
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo.cmp(rs[j].lo) < 0 })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.lo.cmp(out[n-1].hi) <= 0 {
			if r.hi.cmp(out[n-1].hi) > 0 {
				out[n-1].hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// inRanges reports whether x is in one of the sorted, disjoint ranges rs.
func inRanges(rs []addrRange, x u128) bool {
	// Find the first range starting above x; only the one before it can hold x.
	i, j := 0, len(rs)
	for i < j {
		h := int(uint(i+j) >> 1)
		if rs[h].lo.cmp(x) <= 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	return i > 0 && x.cmp(rs[i-1].hi) <= 0
}

func (c *compiled) allowsSource(a netip.Addr) bool {
	if a.Is4() {
		return inRanges(c.v4, key(a))
	}
	return inRanges(c.v6, key(a))
}

func (c *compiled) mapsPort(port uint16) bool {
	return c.ports[port>>6]&(1<<(port&63)) != 0
}

// check is Check with a compiled policy; the two must always agree.
func (c *compiled) check(pkt []byte) Verdict {
	ip, v := parseIP(pkt)
	if v != Pass {
		return v
	}
	if !c.allowsSource(ip.src) {
		return DropSource
	}
	t, v := ip.transport()
	if v != Pass {
		return v
	}
	return t.verdict(t.kind == kindTCP && (c.mapsPort(t.port) || c.policy.isService(ip.src, t.srcPort)), c.ping)
}

// ipPacket is a packet whose fixed IP header has been validated.
type ipPacket struct {
	b   []byte // the packet, trimmed to the length its IP header declares
	src netip.Addr
	hl  int  // IPv4 header length; 40 for IPv6
	v6  bool // IPv6
}

const (
	ipv4MinHeader = 20
	ipv6Header    = 40

	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoICMPv6   = 58
	protoDstOpts  = 60

	// maxExtHeaders bounds the IPv6 extension header chain we walk. A
	// legitimate packet has at most Hop-by-Hop, Destination Options, Routing,
	// Fragment and another Destination Options header; the relay's stack
	// sends none.
	maxExtHeaders = 5
)

// parseIP validates the fixed IP header (step 1 of the classification).
// It returns Pass and the packet if the header is sound.
func parseIP(pkt []byte) (ipPacket, Verdict) {
	if len(pkt) == 0 {
		return ipPacket{}, DropMalformed
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4MinHeader {
			return ipPacket{}, DropMalformed
		}
		hl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if hl < ipv4MinHeader || total < hl || total > len(pkt) {
			return ipPacket{}, DropMalformed
		}
		return ipPacket{
			b:   pkt[:total],
			src: netip.AddrFrom4([4]byte(pkt[12:16])),
			hl:  hl,
		}, Pass
	case 6:
		if len(pkt) < ipv6Header {
			return ipPacket{}, DropMalformed
		}
		total := ipv6Header + int(binary.BigEndian.Uint16(pkt[4:6]))
		if total > len(pkt) {
			return ipPacket{}, DropMalformed
		}
		return ipPacket{
			b:   pkt[:total],
			src: netip.AddrFrom16([16]byte(pkt[8:24])),
			hl:  ipv6Header,
			v6:  true,
		}, Pass
	}
	return ipPacket{}, DropMalformed
}

type l4Kind uint8

const (
	kindOther l4Kind = iota // anything not below: DropProto
	kindTCP
	kindUDP
	kindEcho // ICMP or ICMPv6 echo request
)

// l4 is what the firewall needs to know about a packet's transport header.
type l4 struct {
	kind    l4Kind
	port    uint16 // destination port, for kindTCP and kindUDP
	srcPort uint16 // source port, for kindTCP
}

// verdict is step 5 of the classification.
func (t l4) verdict(portMapped, allowPing bool) Verdict {
	switch t.kind {
	case kindTCP:
		if portMapped {
			return Pass
		}
		return DropPort
	case kindUDP:
		return DropPort
	case kindEcho:
		if allowPing {
			return Pass
		}
	}
	return DropProto
}

// transport finds and checks the transport header (steps 3 and 4 of the
// classification).
func (ip ipPacket) transport() (l4, Verdict) {
	var proto uint8
	var payload []byte
	if !ip.v6 {
		// Flags and fragment offset: any fragment is dropped, see the package doc.
		frag := binary.BigEndian.Uint16(ip.b[6:8])
		const moreFragments, offsetMask = 0x2000, 0x1fff
		if frag&(moreFragments|offsetMask) != 0 {
			return l4{}, DropProto
		}
		proto, payload = ip.b[9], ip.b[ip.hl:]
	} else {
		var v Verdict
		proto, payload, v = walkIPv6(ip.b[6], ip.b[ipv6Header:])
		if v != Pass {
			return l4{}, v
		}
	}

	switch proto {
	case protoTCP:
		if len(payload) < 20 {
			return l4{}, DropMalformed
		}
		if off := int(payload[12]>>4) * 4; off < 20 || off > len(payload) {
			return l4{}, DropMalformed
		}
		return l4{kind: kindTCP, port: binary.BigEndian.Uint16(payload[2:4]), srcPort: binary.BigEndian.Uint16(payload[0:2])}, Pass
	case protoUDP:
		if len(payload) < 8 {
			return l4{}, DropMalformed
		}
		return l4{kind: kindUDP, port: binary.BigEndian.Uint16(payload[2:4])}, Pass
	case protoICMP, protoICMPv6:
		// ICMP in an IPv6 packet or ICMPv6 in an IPv4 packet is nonsense.
		if (proto == protoICMPv6) != ip.v6 {
			return l4{}, DropProto
		}
		if len(payload) < 8 {
			return l4{}, DropMalformed
		}
		echo := uint8(8) // ICMP echo request
		if ip.v6 {
			echo = 128
		}
		if payload[0] == echo && payload[1] == 0 {
			return l4{kind: kindEcho}, Pass
		}
	}
	return l4{}, DropProto
}

// walkIPv6 follows the extension header chain starting with next header nh
// over payload, as the package documentation describes, and returns the
// transport protocol and its header.
func walkIPv6(nh uint8, payload []byte) (uint8, []byte, Verdict) {
	for i := 0; ; i++ {
		switch nh {
		case protoHopByHop, protoDstOpts, protoRouting, protoFragment:
		default:
			return nh, payload, Pass
		}
		if i == maxExtHeaders {
			return 0, nil, DropProto
		}
		if len(payload) < 8 { // every extension header is a multiple of 8 bytes
			return 0, nil, DropMalformed
		}
		n := 8
		switch nh {
		case protoHopByHop:
			if i != 0 {
				return 0, nil, DropMalformed // RFC 8200 4.1: only right after the IPv6 header
			}
			n = (int(payload[1]) + 1) * 8
		case protoDstOpts:
			n = (int(payload[1]) + 1) * 8
		case protoRouting:
			n = (int(payload[1]) + 1) * 8
			if payload[3] != 0 { // segments left: we would not be the final destination
				return 0, nil, DropProto
			}
		case protoFragment:
			// Fragment offset (13 bits) and M flag; only atomic fragments.
			if binary.BigEndian.Uint16(payload[2:4])&0xfff9 != 0 {
				return 0, nil, DropProto
			}
		}
		if n > len(payload) {
			return 0, nil, DropMalformed
		}
		nh, payload = payload[0], payload[n:]
	}
}
