package netstack

// Checksums inside the tunnel. WireGuard's AEAD authenticates every packet
// the stack receives, so TCP's and IP's checksums cannot catch anything it
// has not: the link tells gVisor they were verified already
// (CapabilityRXChecksumOffload), unless Config.VerifyChecksums asks for
// the old behaviour. Leaving them out on the way out is safe only towards
// a peer that does not verify them either: with Config.NeedsChecksum the
// link takes the computation over from gVisor
// (CapabilityTXChecksumOffload) and does it only for the packets whose
// destination needs it, during the copy out to WireGuard.

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// capabilities are the link's checksum offloads: verify is
// Config.VerifyChecksums, needs Config.NeedsChecksum.
func capabilities(verify bool, needs func(netip.Addr) bool) stack.LinkEndpointCapabilities {
	c := stack.CapabilityNone
	if !verify {
		c |= stack.CapabilityRXChecksumOffload
	}
	if needs != nil {
		c |= stack.CapabilityTXChecksumOffload
	}
	return c
}

// fillChecksum writes the TCP checksum of the IP packet p if needs says its
// destination verifies one, and zero otherwise. gVisor, under TX offload,
// leaves the field zero, or partial under segmentation offload (gso.go);
// only TCP's depends on the offload (IPv4's header checksum and ICMP's are
// always computed), and the stack speaks no other transport.
func fillChecksum(p []byte, needs func(netip.Addr) bool) {
	var (
		dst      netip.Addr
		src, tcp []byte // src: both addresses, as the pseudo-header has them
	)
	switch {
	case len(p) >= header.IPv4MinimumSize && p[0]>>4 == 4:
		h := header.IPv4(p)
		hl := int(h.HeaderLength())
		if h.Protocol() != uint8(header.TCPProtocolNumber) || h.More() || h.FragmentOffset() != 0 ||
			hl < header.IPv4MinimumSize || int(h.TotalLength()) > len(p) || int(h.TotalLength()) < hl {
			return
		}
		src, dst = p[12:20], netip.AddrFrom4([4]byte(p[16:20]))
		tcp = p[hl:h.TotalLength()]
	case len(p) >= header.IPv6MinimumSize && p[0]>>4 == 6:
		h := header.IPv6(p)
		if h.NextHeader() != uint8(header.TCPProtocolNumber) || header.IPv6MinimumSize+int(h.PayloadLength()) > len(p) {
			return
		}
		src, dst = p[8:40], netip.AddrFrom16([16]byte(p[24:40]))
		tcp = p[header.IPv6MinimumSize : header.IPv6MinimumSize+int(h.PayloadLength())]
	default:
		return
	}
	if len(tcp) < header.TCPMinimumSize {
		return
	}
	t := header.TCP(tcp)
	t.SetChecksum(0)
	if !needs(dst) {
		return
	}
	// The pseudo-header: both addresses, the protocol and the length.
	xsum := checksum.Checksum(src, 0)
	xsum = checksum.Combine(xsum, uint16(header.TCPProtocolNumber))
	xsum = checksum.Combine(xsum, uint16(len(tcp)))
	t.SetChecksum(^checksum.Checksum(tcp, xsum))
}
