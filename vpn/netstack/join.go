package netstack

// Joining a batch's segments before the stack sees them.
//
// WireGuard writes a batch of packets; over the UDP transport a download's
// are 1,420 bytes each. gVisor's GRO joins a run of them into one TCP
// segment too, but as a chain of the packets' buffers: every packet still
// costs two pooled chunks, a pooled view for each, a PacketBuffer and an IP
// header parse, the pools are drawn on WireGuard's goroutine and filled on
// the reader's (often a steal from another P's pool), and the reader's copy
// walks the chain a packet at a time. At the relay, the link's write and
// the reader's copy out of the stack were a third of its CPU in a UDP
// hub's download. So link.write first copies a run of packets
// that continue one another into one packet, in one chunk: what a NIC's
// receive offload hands the kernel. gVisor then sees one packet where the
// peer sent a batch's worth (16 at the relay and the agent, WireGuard's
// batch size there; 64 KiB at most).
//
// Only where the stack does not verify checksums (the link's
// CapabilityRXChecksumOffload: WireGuard authenticated every byte): a joined
// packet's TCP checksum is not recomputed.

import (
	"bytes"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// joinMax is the largest joined packet: IPv4's total length field, and so
// the payload stays within gVisor's largest pooled chunk
// (buffer.MaxChunkSize).
const joinMax = 1<<16 - 1

// joinHeader returns the length of p's IP and TCP headers if p is a TCP
// segment that join may join to another, else 0: IPv4 without options,
// not a fragment, or IPv6 with TCP as its next header; the IP length as
// the packet's; data after the headers; and no flag but ACK and PSH.
func joinHeader(p []byte) int {
	var ip int
	switch {
	case len(p) < header.IPv4MinimumSize+header.TCPMinimumSize:
		return 0
	case p[0]>>4 == 4:
		h := header.IPv4(p)
		if h.HeaderLength() != header.IPv4MinimumSize || int(h.TotalLength()) != len(p) ||
			h.Protocol() != uint8(header.TCPProtocolNumber) ||
			h.FragmentOffset() != 0 || h.Flags()&header.IPv4FlagMoreFragments != 0 {
			return 0
		}
		ip = header.IPv4MinimumSize
	case p[0]>>4 == 6 && len(p) >= header.IPv6MinimumSize+header.TCPMinimumSize:
		h := header.IPv6(p)
		if h.NextHeader() != uint8(header.TCPProtocolNumber) || int(h.PayloadLength())+header.IPv6MinimumSize != len(p) {
			return 0
		}
		ip = header.IPv6MinimumSize
	default:
		return 0
	}
	t := header.TCP(p[ip:])
	off := int(t.DataOffset())
	if off < header.TCPMinimumSize || ip+off >= len(p) {
		return 0
	}
	if f := t.Flags(); f != header.TCPFlagAck && f != header.TCPFlagAck|header.TCPFlagPsh {
		return 0
	}
	return ip + off
}

// continues reports whether b, whose headers are hdr bytes as a's are
// (joinHeader), carries the data that follows a's on a's connection, with
// the same IP fields, acknowledgment and TCP options, and a has no PSH: a
// pushed segment ends a run.
func continues(a, b []byte, hdr int) bool {
	if a[0]>>4 != b[0]>>4 || joinHeader(b) != hdr {
		return false // another family can have headers as long
	}
	ip := header.IPv4MinimumSize
	if a[0]>>4 == 6 {
		ip = header.IPv6MinimumSize
		// Version, traffic class, flow label; next header, hop limit and
		// both addresses (the payload length, bytes 4–5, differs).
		if !bytes.Equal(a[:4], b[:4]) || !bytes.Equal(a[6:ip], b[6:ip]) {
			return false
		}
	} else if a[1] != b[1] || header.IPv4(a).Flags() != header.IPv4(b).Flags() ||
		!bytes.Equal(a[8:10], b[8:10]) || !bytes.Equal(a[12:ip], b[12:ip]) {
		// TOS, the flags (DF), TTL and protocol, both addresses.
		return false
	}
	ta, tb := header.TCP(a[ip:hdr]), header.TCP(b[ip:hdr])
	return ta.Flags() == header.TCPFlagAck &&
		bytes.Equal(ta[:4], tb[:4]) && // ports
		bytes.Equal(ta[8:13], tb[8:13]) && // acknowledgment, data offset
		bytes.Equal(ta[header.TCPMinimumSize:], tb[header.TCPMinimumSize:]) && // options
		tb.SequenceNumber() == ta.SequenceNumber()+uint32(len(a)-hdr)
}

// run returns where the run of packets that join can join, starting at
// bufs[i], ends (i+1 if there is none), their headers' length, and the
// length of the packet join makes of them.
func run(bufs [][]byte, offset, i int) (end, hdr, total int) {
	a := bufs[i][offset:]
	if hdr = joinHeader(a); hdr == 0 {
		return i + 1, 0, len(a)
	}
	total = len(a)
	for end = i + 1; end < len(bufs); end++ {
		b := bufs[end][offset:]
		if len(b) <= hdr || total+len(b)-hdr > joinMax || !continues(a, b, hdr) {
			break
		}
		total += len(b) - hdr
		a = b
	}
	return end, hdr, total
}

// join returns a run of packets (run's) as one of total bytes: the first
// one's headers, with the lengths of the whole, the last one's window and
// flags, and all their data in order, in two chunks as packetData would
// (the headers and a little more in one of their own).
func join(run [][]byte, offset, hdr, total int) buffer.Buffer {
	first, last := run[0][offset:], run[len(run)-1][offset:]
	var head [headChunk]byte
	n := copy(head[:], first)
	ip := header.IPv4MinimumSize
	if first[0]>>4 == 6 {
		ip = header.IPv6MinimumSize
		header.IPv6(head[:]).SetPayloadLength(uint16(total - ip))
	} else {
		h := header.IPv4(head[:])
		h.SetTotalLength(uint16(total))
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
	}
	t, lt := header.TCP(head[ip:hdr]), header.TCP(last[ip:hdr])
	t.SetFlags(uint8(lt.Flags()))
	t.SetWindowSize(lt.WindowSize()) // the latest the peer offered

	b := buffer.MakeWithData(head[:n])
	v := buffer.NewView(total - n)
	v.Write(first[n:])
	for _, p := range run[1:] {
		v.Write(p[offset+hdr:])
	}
	b.Append(v)
	return b
}
