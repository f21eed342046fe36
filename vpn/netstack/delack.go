package netstack

// Delayed ACKs. gVisor's TCP has none: once it has handled a batch of
// segments that carried data, it acknowledges them at once. A request
// through the tunnel thus costs four packets, each encrypted, sent,
// received and decrypted: the request, the hub's bare ACK of it, the
// answer, and the relay's bare ACK of that. A kernel's TCP would have the
// answer carry the first ACK and the next request the second.
//
// The link does that for the stack, on the way out. A bare ACK that
// acknowledges at most ackAtMost new bytes of a connection waits up to the
// link's ackDelay; if the connection sends anything else meanwhile, that
// packet carries a newer acknowledgement and the waiting ACK is dropped.
// The rest go at once, most of them for a kernel's reasons:
//   - an ACK for a full-sized segment's worth or more: a transfer's ACKs
//     keep their pace, as gVisor sets it;
//   - a second ACK while one waits (the peer keeps sending: one of every
//     two goes);
//   - an ACK that acknowledges nothing new: a duplicate ACK (loss), a
//     window update, the answer to a keepalive;
//   - an ACK with SACK blocks (loss, or a reordered segment);
//   - an ACK of a connection that has sent its FIN;
//   - the first ACK of a connection the link knows nothing of yet.
//
// The link remembers each connection's last acknowledgement in a table of
// ackSlots entries, indexed by a hash of its addresses and ports. Two
// connections on one slot take turns: the newcomer takes the slot over,
// and the ACK the other one had waiting goes at once. The table is the
// link's only state per connection; it has a fixed size and is allocated
// with the first TCP packet.

import (
	"encoding/binary"
	"math/bits"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// ackDelayDefault is how long a bare ACK may wait for a packet of its
	// connection to carry it. Long enough for a hub's service to answer a
	// simple request; short against the 200 ms a TCP sender allows for a
	// delayed ACK when it has one segment in flight (RFC 8985's WCDelAckT,
	// gVisor's wcDelayedACKTimeout).
	ackDelayDefault = 10 * time.Millisecond

	// ackAtMost is the most new bytes a bare ACK may acknowledge and still
	// wait: less than a full-sized segment at the smallest tunnel MTU
	// (1280; 1208 bytes of payload over IPv6 with TCP timestamps), so that
	// no ACK of a transfer waits, only those of a request or an answer.
	// Letting an ACK of one full segment wait, as a kernel does, made
	// bulk transfers over UDP cost more CPU per GB.
	ackAtMost = 1200

	// ackSlots is the size of the link's table of connections: 512 slots
	// of 88 bytes, 44 KiB.
	ackSlotBits = 9
	ackSlots    = 1 << ackSlotBits
)

// flowKey is one direction of a TCP connection: the packet's source and
// destination address and ports.
type flowKey struct {
	addrs [32]byte // source, destination; an IPv4 address in the last 4 bytes of its 16
	ports uint32   // source << 16 | destination
	v6    bool
}

func (k *flowKey) slot() int {
	src := binary.BigEndian.Uint32(k.addrs[12:16])
	dst := binary.BigEndian.Uint32(k.addrs[28:32])
	h := (src ^ bits.RotateLeft32(dst, 16) ^ k.ports) * 0x9e3779b1
	return int(h >> (32 - ackSlotBits))
}

// ackSlot is what the link knows of one connection's acknowledgements.
type ackSlot struct {
	key     flowKey
	acked   uint32 // the ACK number of the connection's last packet out
	known   bool   // acked is set
	fin     bool   // the connection has sent its FIN
	held    *stack.PacketBuffer
	heldAck uint32    // held's ACK number
	until   time.Time // when held goes anyway
}

// delayedAcks is the link's table and its timer; guarded by link.mu.
type delayedAcks struct {
	delay time.Duration // ≤ 0: ACKs never wait (Config.AckDelay < 0)
	slots []ackSlot     // ackSlots of them, or nil before the first TCP packet
	held  int           // slots with an ACK waiting
	timer *time.Timer   // releases waiting ACKs; armed while held > 0
}

// holdAck decides for one packet on its way out, under l.mu: it returns
// true if pkt is a bare ACK that waits (the link keeps a reference), false
// if pkt goes into the ring now. Either way, an ACK that pkt makes
// redundant is dropped, and one that must make room goes into the ring.
func (l *link) holdAck(pkt *stack.PacketBuffer) bool {
	a := &l.mu.acks
	if a.delay <= 0 || pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return false
	}
	tcp := header.TCP(pkt.TransportHeader().Slice())
	key, ok := flowOf(pkt.NetworkHeader().Slice(), tcp)
	if !ok {
		return false
	}
	if a.slots == nil {
		a.slots = make([]ackSlot, ackSlots)
	}
	s := &a.slots[key.slot()]
	if s.key != key {
		if s.held != nil {
			l.release(s)
		}
		*s = ackSlot{key: key}
	}
	hadHeld := s.held != nil
	if hadHeld {
		// pkt acknowledges at least as much as the waiting ACK did.
		s.held.DecRef()
		s.held = nil
		a.held--
		l.acksCarried.Add(1)
	}

	flags := tcp.Flags()
	switch {
	case flags&(header.TCPFlagSyn|header.TCPFlagRst) != 0:
		// A connection begins or ends: what the slot knew is stale.
		*s = ackSlot{key: key}
		if flags&header.TCPFlagSyn != 0 && flags&header.TCPFlagAck != 0 {
			s.acked, s.known = tcp.AckNumber(), true // a SYN-ACK
		}
		return false
	case flags&header.TCPFlagAck == 0:
		return false
	}
	ack := tcp.AckNumber()
	if flags&header.TCPFlagFin != 0 {
		s.fin = true
	}
	if !hadHeld && s.known && !s.fin && flags == header.TCPFlagAck && pkt.Data().Size() == 0 {
		if adv := int32(ack - s.acked); adv > 0 && adv <= ackAtMost && !hasSACK(tcp.Options()) {
			s.held, s.heldAck = pkt.IncRef(), ack
			s.until = time.Now().Add(a.delay)
			a.held++
			if a.held == 1 {
				if a.timer == nil {
					a.timer = time.AfterFunc(a.delay, l.releaseAcks)
				} else {
					a.timer.Reset(a.delay)
				}
			}
			return true
		}
	}
	s.acked, s.known = ack, true
	return false
}

// release puts s's waiting ACK into the ring, under l.mu.
func (l *link) release(s *ackSlot) {
	l.push(s.held)
	s.acked, s.known = s.heldAck, true
	s.held = nil
	l.mu.acks.held--
}

// releaseAcks is the timer's: it puts the ACKs whose wait is over into the
// ring and sets the timer for the next.
func (l *link) releaseAcks() {
	l.mu.Lock()
	a := &l.mu.acks
	if l.mu.closed || a.held == 0 {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	var next time.Time
	released := false
	for i := range a.slots {
		s := &a.slots[i]
		switch {
		case s.held == nil:
		case !s.until.After(now):
			l.release(s)
			released = true
		case next.IsZero() || s.until.Before(next):
			next = s.until
		}
	}
	if a.held > 0 {
		a.timer.Reset(next.Sub(now))
	}
	l.mu.Unlock()
	if released {
		l.wake()
	}
}

// dropAcks lets go of the waiting ACKs; the link is closed. Under l.mu.
func (l *link) dropAcks() {
	a := &l.mu.acks
	if a.timer != nil {
		a.timer.Stop()
	}
	for i := range a.slots {
		if s := &a.slots[i]; s.held != nil {
			s.held.DecRef()
			s.held = nil
		}
	}
	a.held = 0
}

// flowOf returns the connection direction of a TCP packet from its network
// and TCP headers.
func flowOf(ip []byte, tcp header.TCP) (flowKey, bool) {
	var k flowKey
	if len(tcp) < header.TCPMinimumSize || len(ip) == 0 {
		return k, false
	}
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < header.IPv4MinimumSize {
			return k, false
		}
		copy(k.addrs[12:16], ip[12:16])
		copy(k.addrs[28:32], ip[16:20])
	case 6:
		if len(ip) < header.IPv6MinimumSize {
			return k, false
		}
		copy(k.addrs[:], ip[8:40])
		k.v6 = true
	default:
		return k, false
	}
	k.ports = uint32(tcp.SourcePort())<<16 | uint32(tcp.DestinationPort())
	return k, true
}

// hasSACK reports whether TCP options carry SACK blocks; options it cannot
// read count as SACK, so that their ACK goes at once.
func hasSACK(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return false
		case header.TCPOptionNOP:
			i++
		case header.TCPOptionSACK:
			return true
		default:
			if i+1 >= len(opts) || opts[i+1] < 2 {
				return true
			}
			i += int(opts[i+1])
		}
	}
	return false
}
