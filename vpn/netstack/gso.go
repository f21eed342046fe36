package netstack

// Segmentation offload on the way out. The link tells gVisor it segments
// TCP itself (stack.HostGSOSupported), so a TCP endpoint hands it one
// segment of up to 64 KiB, with the MSS it may carry per packet
// (PacketBuffer.GSOOptions), where it would otherwise build, account and
// route one segment per MSS. Over the UDP transport (MTU 1420) that
// per-segment work was the agent's largest cost beyond the cipher: a
// download's 64 KiB now passes gVisor's TCP sender and IP layer once, not
// 47 times. The link cuts the segment into MSS-sized packets while it
// copies them out to WireGuard (split), as a NIC's TSO would: each packet
// gets the segment's headers with its own sequence number, lengths, IPv4
// ID and header checksum; FIN and PSH go on the last packet only.
//
// Under this offload gVisor leaves the TCP checksum partial (the
// pseudo-header only) in every packet of such an endpoint, large or not:
// the link completes it where the destination verifies it (fill), which is
// every destination when the stack has no Config.NeedsChecksum.

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gsoMaxSize is the largest segment the link takes for a stack of MTU mtu.
// gVisor fills a segment's payload up to this size less the largest headers
// it allows and one byte (header.TCPTotalHeaderMaximumSize + 1). Under a
// small MTU that is as many full packets (IPv4, TCP and timestamps around
// the payload) as fit in IPv4's 64 KiB, so that only a segment's end makes
// a short packet. Under an MTU too large for two, it is
// one packet's payload however large the headers: there the offload only
// serves routes whose MSS is smaller than the link's (the relay's UDP hubs,
// agents with a smaller MTU), and a full-MTU segment is never cut into a
// packet and a sliver.
func gsoMaxSize(mtu uint32) uint32 {
	const (
		limit  = 1 << 16                                             // IPv4's total length, and gVisor's GVisorGSOMaxSize
		margin = header.TCPTotalHeaderMaximumSize + 1                // what gVisor keeps below the size
		full   = header.IPv4MinimumSize + header.TCPMinimumSize + 12 // a packet's headers with timestamps
		most   = header.IPv6MinimumSize + header.TCPTotalHeaderMaximumSize
	)
	if per := mtu - full; mtu > full && (limit-margin)/per >= 2 {
		return (limit-margin)/per*per + margin
	}
	return max(mtu, most) - most + margin
}

// GSOMaxSize implements stack.GSOEndpoint.
func (l *link) GSOMaxSize() uint32 { return l.gsoMax }

// SupportedGSO implements stack.GSOEndpoint: the link segments TCP.
func (l *link) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

// segmented reports whether pkt is a TCP segment the link must cut into
// packets of its GSO MSS, and whether its TCP checksum is partial.
func segmented(pkt *stack.PacketBuffer) (split, partial bool) {
	g := pkt.GSOOptions
	if g.Type != stack.GSOTCPv4 && g.Type != stack.GSOTCPv6 {
		return false, false
	}
	return g.MSS > 0 && pkt.Data().Size() > int(g.MSS), g.NeedsCsum
}

// split copies the next packets of the large TCP segment pkt into
// bufs[i][offset:], starting with the one whose payload begins at byte
// from of the segment's payload. It returns how many it wrote, their
// sizes in sizes, and the payload offset of the next packet: the
// segment's payload size once it is all out. A buffer too small for a
// packet ends the segment: it returns -1 as the next offset.
func (l *link) split(bufs [][]byte, sizes []int, offset int, pkt *stack.PacketBuffer, from int) (n, next int) {
	nh, th := pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice()
	hlen := len(nh) + len(th)
	mss, total := int(pkt.GSOOptions.MSS), pkt.Data().Size()
	views, skip := pkt.AsViewList()
	if len(th) < header.TCPMinimumSize {
		return 0, -1
	}
	seq := header.TCP(th).SequenceNumber()
	flags := header.TCP(th).Flags()
	var id uint16
	v4 := pkt.GSOOptions.Type == stack.GSOTCPv4
	if v4 {
		if len(nh) < header.IPv4MinimumSize {
			return 0, -1
		}
		id = header.IPv4(nh).ID()
	} else if len(nh) < header.IPv6MinimumSize {
		return 0, -1
	}

	for ; n < len(bufs) && from < total; n++ {
		size := min(mss, total-from)
		dst := bufs[n][offset:]
		if hlen+size > len(dst) {
			return n, -1
		}
		p := dst[:hlen+size]
		copy(p, nh)
		copy(p[len(nh):], th)
		copyAt(p[hlen:], views, skip+hlen+from)

		t := header.TCP(p[len(nh):])
		t.SetSequenceNumber(seq + uint32(from))
		f := flags
		if from+size < total {
			f &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if from > 0 {
			f &^= header.TCPFlagCwr
		}
		t.SetFlags(uint8(f))
		if v4 {
			h := header.IPv4(p)
			h.SetTotalLength(uint16(len(p)))
			h.SetID(id + uint16(from/mss))
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
		} else {
			header.IPv6(p).SetPayloadLength(uint16(len(p) - header.IPv6MinimumSize))
		}
		l.fill(p, true)
		sizes[n] = len(p)
		from += size
	}
	return n, from
}

// fill completes the TCP checksum of the IP packet p where its destination
// verifies it: by Config.NeedsChecksum if the stack has one, else always
// when partial says gVisor left it partial (without the offload gVisor
// computes it whole).
func (l *link) fill(p []byte, partial bool) {
	switch {
	case l.needsChecksum != nil:
		fillChecksum(p, l.needsChecksum)
	case partial:
		fillChecksum(p, always)
	}
}

func always(netip.Addr) bool { return true }
