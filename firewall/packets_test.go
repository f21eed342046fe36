package firewall

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Builders for real packet bytes: correct lengths and checksums, so that a
// real stack accepts what they build (TestNetstack).

const testSrcPort = 40000

// tcp is a TCP SYN header to dport, without options.
func tcp(dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], testSrcPort)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304) // sequence number
	b[12] = 5 << 4                                // data offset
	b[13] = 0x02                                  // SYN
	binary.BigEndian.PutUint16(b[14:], 65535)     // window
	return b
}

// udp is a UDP header to dport with 4 bytes of payload.
// from sets a TCP or UDP header's source port.
func from(sport uint16, hdr []byte) []byte {
	binary.BigEndian.PutUint16(hdr[0:], sport)
	return hdr
}

func udp(dport uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], testSrcPort)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], "ping")
	return b
}

// icmp is an ICMP or ICMPv6 message of type typ and code, id 7, seq 1, with
// 4 bytes of payload.
func icmp(typ, code uint8) []byte {
	return []byte{typ, code, 0, 0, 0, 7, 0, 1, 'p', 'i', 'n', 'g'}
}

// ip4 is an IPv4 packet from src to hub4 carrying l4 as proto, with
// options opts (a multiple of 4 bytes).
func ip4(src string, proto uint8, l4 []byte, opts ...byte) []byte {
	return ip4to(src, hub4, proto, l4, opts...)
}

func ip4to(src, dst string, proto uint8, l4 []byte, opts ...byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl+len(l4))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234) // identification
	b[6] = 0x40                               // don't fragment
	b[8] = 64                                 // TTL
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], checksum(b[:hl], 0))
	copy(b[hl:], l4)
	setL4Checksum(b[hl:], proto, b[12:16], b[16:20])
	return b
}

// ip6 is an IPv6 packet from src to hub6 whose first next header is nh.
func ip6(src string, nh uint8, payload []byte) []byte {
	return ip6to(src, hub6, nh, payload)
}

func ip6to(src, dst string, nh uint8, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = nh
	b[7] = 64 // hop limit
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], payload)
	setL4Checksum(b[40:], nh, b[8:24], b[24:40])
	return b
}

// opts6 is a Hop-by-Hop or Destination Options header of (units+1)*8 bytes
// followed by next header nh, padded with Pad1 options.
func opts6(nh uint8, units uint8) []byte {
	b := make([]byte, (int(units)+1)*8)
	b[0], b[1] = nh, units
	return b
}

// routing6 is a Routing header (type 2) with segments left.
func routing6(nh uint8, segmentsLeft uint8) []byte {
	return []byte{nh, 0, 2, segmentsLeft, 0, 0, 0, 0}
}

// frag6 is a Fragment header with offset (in 8-byte units) and M flag.
func frag6(nh uint8, offset uint16, more bool) []byte {
	b := []byte{nh, 0, 0, 0, 0, 0, 0x56, 0x78}
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

// cat concatenates headers.
func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// edit returns a copy of b changed by f.
func edit(b []byte, f func(b []byte)) []byte {
	b = slices.Clone(b)
	f(b)
	return b
}

// cut is the first n bytes of b, as if the packet were truncated on the way.
func cut(b []byte, n int) []byte { return slices.Clone(b[:n]) }

func setL4Checksum(b []byte, proto uint8, src, dst []byte) {
	var at int
	switch proto {
	case protoTCP:
		at = 16
	case protoUDP:
		at = 6
	case protoICMP:
		at = 2
		if len(b) >= 4 {
			binary.BigEndian.PutUint16(b[at:], checksum(b, 0))
		}
		return
	case protoICMPv6:
		at = 2
	default:
		return
	}
	if len(b) < at+2 {
		return
	}
	// Pseudo-header: addresses, protocol, length.
	var sum uint32
	for _, a := range [][]byte{src, dst} {
		for i := 0; i < len(a); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	sum += uint32(proto) + uint32(len(b))
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[at:], checksum(b, uint16(sum)))
}

// checksum is the Internet checksum (RFC 1071) of b, starting from initial.
func checksum(b []byte, initial uint16) uint16 {
	sum := uint32(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
