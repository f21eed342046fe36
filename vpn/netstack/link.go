package netstack

// The packet path between WireGuard and the stack:
//
// Outbound (stack to WireGuard)
//  1. A TCP endpoint builds a segment; ipv4/ipv6 add the IP header.
//  2. link.WritePackets takes a reference on the packet and queues it in the
//     ring, dropping it if the ring is full. A bare ACK may wait instead,
//     for a later packet of its connection to carry it (delack.go).
//  3. Device.Read (WireGuard's TUN reader) takes up to BatchSize packets off
//     the ring at once and copies each into WireGuard's buffer, cutting a
//     large TCP segment into packets of its MSS on the way (gso.go); what
//     does not fit in this Read is held for the next. With
//     Config.MaxInFlight it first waits until fewer than that many packets
//     it handed out are still inside WireGuard (Stack.Sent counts them
//     out), so that a backlog waits here, in the stack's own buffers,
//     rather than in WireGuard's 64 KiB message buffers.
//
// Inbound (WireGuard to stack)
//  1. WireGuard decrypts a batch and calls Device.Write.
//  2. link.write copies each packet into a pooled gVisor buffer and delivers
//     it to the NIC, which hands TCP segments to the stack's TCP workers.
//     Consecutive segments of one connection in the batch are copied into
//     one packet (join.go); gVisor's GRO then joins what is left, segments
//     of one connection apart in the batch, as a chain of buffers. So TCP
//     handles, and acknowledges, one segment where the peer sent several.

import (
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
)

const (
	// queueLen is how many outbound packets the link holds for WireGuard to
	// read. When it is full the stack's packets are dropped, as a NIC's ring
	// would drop them, and TCP retransmits; it never blocks the stack.
	queueLen = 1024

	// batchSize is how many packets one Device.Read returns at most.
	// wireguard-go keeps its TUN reader's batch of 64 KiB buffers for
	// good: 16 of them are 1 MiB, conn.IdealBatchSize's 128 would be 8.
	batchSize = 16
)

// link is the stack's only NIC: a stack.LinkEndpoint whose outbound packets
// wait in a ring until WireGuard reads them through the tun.Device, and whose
// inbound packets are whatever WireGuard writes to the tun.Device.
type link struct {
	mtu    uint32
	gsoMax uint32                         // gsoMaxSize(mtu)
	caps   stack.LinkEndpointCapabilities // checksum offloads (checksum.go)
	// needsChecksum, under TX checksum offload, says which destinations
	// get TCP checksums from read (fillChecksum).
	needsChecksum func(netip.Addr) bool

	// readMu serializes Device.Read, which owns batch, held and from,
	// and waits on inFlight.
	readMu sync.Mutex
	batch  [batchSize]*stack.PacketBuffer
	// held are the packets Read took off the ring and has not copied out
	// yet, in order: a large segment (gso.go) can fill more than one
	// Read. from is the payload offset of held[0]'s next packet.
	held []*stack.PacketBuffer
	from int

	// inFlight counts the packets Read handed to WireGuard that Sent has
	// not yet counted out (nil: unbounded).
	inFlight *inflight.Window

	mu struct {
		sync.Mutex
		dispatcher stack.NetworkDispatcher
		ring       [queueLen]*stack.PacketBuffer
		head, n    int // ring[head] is the oldest of n queued packets
		closed     bool
		acks       delayedAcks // bare ACKs waiting to be carried (delack.go)
	}
	notify chan struct{} // capacity 1: a packet was queued
	done   chan struct{} // closed by Close

	// gros lends write a GRO engine (gro.GRO) for one batch: WireGuard
	// writes each peer's batches from a goroutine of its own. Nil when the
	// stack verifies checksums: a joined segment's are not recomputed.
	gros *sync.Pool

	packetsIn, bytesIn   atomic.Uint64
	packetsOut, bytesOut atomic.Uint64
	dropped              atomic.Uint64
	acksCarried          atomic.Uint64 // bare ACKs dropped: a later packet carried them (delack.go)
	joined               atomic.Uint64 // inbound packets copied into the one before them (join.go)
}

var _ stack.LinkEndpoint = (*link)(nil)

func newLink(mtu, maxInFlight int, verify bool, needs func(netip.Addr) bool, ackDelay time.Duration) *link {
	l := &link{
		mtu:           uint32(mtu),
		gsoMax:        gsoMaxSize(uint32(mtu)),
		caps:          capabilities(verify, needs),
		needsChecksum: needs,
		inFlight:      inflight.New(maxInFlight),
		notify:        make(chan struct{}, 1),
		done:          make(chan struct{}),
	}
	l.mu.acks.delay = ackDelay
	if l.caps&stack.CapabilityRXChecksumOffload != 0 {
		l.gros = &sync.Pool{New: func() any {
			g := new(gro.GRO)
			g.Init(true)
			return g
		}}
	}
	return l
}

// WritePackets queues the stack's outbound packets for Device.Read. It takes
// a reference on each packet instead of copying it.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return 0, &tcpip.ErrClosedForSend{}
	}
	n, before := 0, l.mu.n
	for _, pkt := range pkts.AsSlice() {
		if l.mu.n == queueLen {
			break
		}
		if !l.holdAck(pkt) {
			l.push(pkt.IncRef())
		}
		n++
	}
	queued := l.mu.n > before // not if every packet was an ACK that waits
	l.mu.Unlock()

	if n == 0 {
		l.dropped.Add(uint64(pkts.Len()))
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	l.dropped.Add(uint64(pkts.Len() - n))
	if queued {
		l.wake()
	}
	return n, nil
}

// push queues pkt, whose reference it takes, in the ring, or drops it if
// the ring is full. Under l.mu.
func (l *link) push(pkt *stack.PacketBuffer) {
	if l.mu.n == queueLen {
		pkt.DecRef()
		l.dropped.Add(1)
		return
	}
	l.mu.ring[(l.mu.head+l.mu.n)%queueLen] = pkt
	l.mu.n++
}

// wake tells Read that packets are queued.
func (l *link) wake() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// read copies up to len(bufs) queued packets into bufs[i][offset:], blocking
// while none is queued. It returns os.ErrClosed once the link is closed.
func (l *link) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	l.readMu.Lock()
	defer l.readMu.Unlock()

	for {
		room := l.inFlight.Room(min(len(bufs), len(sizes), len(l.batch)), l.done)
		if room == 0 {
			l.dropHeld()
			return 0, os.ErrClosed
		}
		if len(l.held) == 0 {
			// Take packets off the ring under mu, copy them out without
			// it: the stack's senders must not wait for our memcpy.
			l.mu.Lock()
			if l.mu.closed {
				l.mu.Unlock()
				return 0, os.ErrClosed
			}
			k := min(room, l.mu.n)
			for i := range k {
				l.batch[i] = l.mu.ring[l.mu.head]
				l.mu.ring[l.mu.head] = nil
				l.mu.head = (l.mu.head + 1) % queueLen
			}
			l.mu.n -= k
			l.mu.Unlock()
			l.held, l.from = l.batch[:k], 0
		}

		n := l.copyOut(bufs[:room], sizes, offset)
		if n > 0 {
			bytes := 0
			for _, size := range sizes[:n] {
				bytes += size
			}
			l.inFlight.Enter(n)
			l.packetsOut.Add(uint64(n))
			l.bytesOut.Add(uint64(bytes))
			return n, nil
		}

		select {
		case <-l.notify:
		case <-l.done:
		}
	}
}

// copyOut copies the held packets into bufs[i][offset:] until bufs are full
// or none is left, and lets go of each once it is all out.
func (l *link) copyOut(bufs [][]byte, sizes []int, offset int) int {
	n := 0
	for len(l.held) > 0 && n < len(bufs) {
		pkt := l.held[0]
		if split, partial := segmented(pkt); split {
			k, next := l.split(bufs[n:], sizes[n:], offset, pkt, l.from)
			n += k
			if next >= 0 && next < pkt.Data().Size() {
				l.from = next
				break // bufs are full
			}
			if next < 0 {
				l.dropped.Add(1) // larger than the caller's buffer
			}
		} else if size := copyPacket(bufs[n][offset:], pkt); size > 0 {
			l.fill(bufs[n][offset:offset+size], partial)
			sizes[n] = size
			n++
		} else {
			l.dropped.Add(1) // larger than the caller's buffer
		}
		pkt.DecRef()
		l.held[0] = nil
		l.held, l.from = l.held[1:], 0
	}
	return n
}

// dropHeld lets go of the packets Read still holds; the link is closed.
func (l *link) dropHeld() {
	for i, pkt := range l.held {
		pkt.DecRef()
		l.held[i] = nil
	}
	l.held, l.from = nil, 0
}

// copyPacket copies pkt into dst without allocating. It returns the packet's
// size, or 0 if it does not fit.
func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	size := pkt.Size()
	if size > len(dst) {
		return 0
	}
	views, skip := pkt.AsViewList()
	return copyAt(dst[:size], views, skip)
}

// copyAt copies up to len(dst) bytes of a packet whose views are views,
// from byte at on (its skip included), into dst, and returns how many.
func copyAt(dst []byte, views buffer.ViewList, at int) int {
	n := 0
	for v := views.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		if at >= len(b) {
			at -= len(b)
			continue
		}
		n += copy(dst[n:], b[at:])
		at = 0
	}
	return n
}

// write hands packets from WireGuard to the stack. Packets that are not IP
// are dropped: WireGuard stops nothing on a write error, but would lose the
// rest of the batch.
func (l *link) write(bufs [][]byte, offset int) (int, error) {
	l.mu.Lock()
	d, closed := l.mu.dispatcher, l.mu.closed
	l.mu.Unlock()
	if closed || d == nil {
		return 0, os.ErrClosed
	}

	// One packet goes straight to the stack; a batch goes through GRO,
	// which delivers what it cannot join at once and the rest at Flush.
	var g *gro.GRO
	if l.gros != nil && len(bufs) > 1 {
		g = l.gros.Get().(*gro.GRO)
		g.Dispatcher = d
		defer func() {
			g.Flush()
			g.Dispatcher = nil
			l.gros.Put(g)
		}()
	}
	n, bytes := 0, 0
	for i := 0; i < len(bufs); {
		packet := bufs[i][offset:]
		var proto tcpip.NetworkProtocolNumber
		switch {
		case len(packet) == 0:
			i++
			continue
		case packet[0]>>4 == 4:
			proto = header.IPv4ProtocolNumber
		case packet[0]>>4 == 6:
			proto = header.IPv6ProtocolNumber
		default:
			l.dropped.Add(1)
			i++
			continue
		}
		// The copy into pooled buffers: the stack keeps the payload past
		// this call, and WireGuard reuses buf.
		end, hdr, total := i+1, 0, 0
		if g != nil {
			end, hdr, total = run(bufs, offset, i) // join.go
		}
		var data buffer.Buffer
		if end-i > 1 {
			data = join(bufs[i:end], offset, hdr, total)
			for _, p := range bufs[i:end] {
				bytes += len(p) - offset
			}
			l.joined.Add(uint64(end - i - 1))
		} else {
			data = packetData(packet)
			bytes += len(packet)
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: data})
		if g != nil {
			// GRO needs both; the NIC sets the second again from caps.
			pkt.NetworkProtocolNumber, pkt.RXChecksumValidated = proto, true
			g.Enqueue(pkt)
		} else {
			d.DeliverNetworkPacket(proto, pkt)
		}
		pkt.DecRef()
		n += end - i
		i = end
	}
	l.packetsIn.Add(uint64(n))
	l.bytesIn.Add(uint64(bytes))
	return len(bufs), nil
}

// headChunk is how much of an inbound packet packetData copies into a
// chunk of its own: a pool size of gVisor's buffers, and more than an IP
// and a TCP header with every option (60 + 60 bytes).
const headChunk = 128

// packetData copies an inbound packet into gVisor's buffers: its first
// headChunk bytes, which hold its headers, into one chunk, the rest into
// another. In one chunk, gVisor's IP receive path copied each packet
// whole once more: it keeps a clone of the network header's view while it
// handles the packet (ipv4 and ipv6 parseAndValidate), and a header read
// from a view whose chunk is shared makes a private copy of that whole
// chunk first, cleared, then copied into (buffer.PullUp). At the TCP
// transport's MTU that was 64 KiB per packet, 3 % of the relay's CPU
// during a download; now it is the 128 bytes of the head.
func packetData(p []byte) buffer.Buffer {
	if len(p) <= 2*headChunk {
		return buffer.MakeWithData(p)
	}
	b := buffer.MakeWithData(p[:headChunk])
	b.Append(buffer.NewViewWithData(p[headChunk:])) // the head's chunk is full: appended as it is
	return b
}

// Close implements stack.LinkEndpoint; the stack calls it when it removes the
// NIC. It wakes Read, which then returns os.ErrClosed, and drops what is
// still queued. It is idempotent.
func (l *link) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return
	}
	l.mu.closed = true
	l.dropAcks()
	for ; l.mu.n > 0; l.mu.n-- {
		l.mu.ring[l.mu.head].DecRef()
		l.mu.ring[l.mu.head] = nil
		l.mu.head = (l.mu.head + 1) % queueLen
	}
	close(l.done)
}

// Attach implements stack.LinkEndpoint.
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.mu.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (l *link) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.dispatcher != nil
}

// The rest of stack.LinkEndpoint: a point-to-point IP link with no link
// header, no link address, checksum offloads only (checksum.go) and a fixed
// MTU.

func (l *link) MTU() uint32                                  { return l.mtu }
func (l *link) SetMTU(uint32)                                {}
func (l *link) MaxHeaderLength() uint16                      { return 0 }
func (l *link) LinkAddress() tcpip.LinkAddress               { return "" }
func (l *link) SetLinkAddress(tcpip.LinkAddress)             {}
func (l *link) Capabilities() stack.LinkEndpointCapabilities { return l.caps }
func (l *link) Wait()                                        {}
func (l *link) ARPHardwareType() header.ARPHardwareType      { return header.ARPHardwareNone }
func (l *link) AddHeader(*stack.PacketBuffer)                {}
func (l *link) ParseHeader(*stack.PacketBuffer) bool         { return true }
func (l *link) SetOnCloseAction(func())                      {}

// tunDevice is the Stack seen from WireGuard.
type tunDevice struct {
	s *Stack
}

var _ tun.Device = (*tunDevice)(nil)

// Read returns up to len(bufs) packets the stack has sent, at least one; it
// blocks while there are none. After Close it returns os.ErrClosed.
func (d *tunDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.s.link.read(bufs, sizes, offset)
}

// Write delivers packets to the stack. After Close it returns os.ErrClosed.
func (d *tunDevice) Write(bufs [][]byte, offset int) (int, error) {
	return d.s.link.write(bufs, offset)
}

func (d *tunDevice) MTU() (int, error)        { return int(d.s.link.mtu), nil }
func (d *tunDevice) Name() (string, error)    { return "hubtunnel", nil }
func (d *tunDevice) File() *os.File           { return nil }
func (d *tunDevice) Events() <-chan tun.Event { return d.s.events }
func (d *tunDevice) BatchSize() int           { return batchSize }
func (d *tunDevice) Close() error             { return d.s.Close() }
