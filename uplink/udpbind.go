package uplink

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/internal/udpbind"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// UDPBatchSize is how many WireGuard messages the agent's UDP bind hands
// WireGuard per receive call. wireguard-go keeps BatchSize 64 KiB buffers
// per receive routine (and, with the TUN's batch size, for reading
// packets), so the UDP bind's 128 would pin 16 MiB of a small hub's heap;
// see UDPBind.
const UDPBatchSize = 16

// UDPBind is the agent's conn.Bind for transport "udp": internal/udpbind's
// bind with four changes that keep a hub's heap small.
//
//   - Open hands WireGuard the receive function of the relay's address
//     family only; the agent only ever hears from its one relay. Both
//     sockets stay open (Send needs them); after the relay's family
//     changes, the agent rebinds (Device.Rebind).
//   - WireGuard is given batches of UDPBatchSize. The inner bind reads
//     (recvmmsg, with UDP GRO where the kernel has it) into a full batch of
//     its own size, of slots sized for one message of the tunnel's MTU
//     (vpn.Staging).
//   - Send reports how many data packets it handed to the kernel, so that
//     the netstack can bound what waits inside WireGuard on the way out
//     (netstack.Config.MaxInFlight).
//   - With Inbound, receive waits while that many data packets are inside
//     WireGuard on the way in, not yet written to the TUN (InboundTUN counts
//     them out). The backlog waits in the socket's receive buffer, and
//     beyond it the kernel drops, which TCP inside the tunnel answers by
//     slowing down, as on any full link. Only data messages for the
//     agent's own sessions count (see indices).
//
// And two additions: a relay's wire.SessionUnknown answer to a transport
// message the agent sent calls SessionUnknown, so that the agent starts a
// new handshake at once instead of two minutes later (the relay
// restarted); and the answer to a Ping calls Pong.
type UDPBind struct {
	conn.Bind // udpbind.New's

	// IPv6 reports whether the relay's address is IPv6. nil: read both.
	IPv6 func() bool
	// Sent is called after each Send with its number of data packets
	// (keepalives and handshakes are not counted). nil: not called.
	Sent func(n int)
	// MTU is the tunnel's; it sizes the receive slots. 0: vpn.MaxUDPMTU,
	// the most the agent's config allows.
	MTU int
	// Inbound bounds the data packets received but not yet written to the
	// TUN; wrap the TUN with InboundTUN(dev, Inbound). nil: unbounded.
	Inbound *inflight.Window
	// SessionUnknown is called with the session's index, on WireGuard's
	// receive goroutine, when the relay answers with wire.SessionUnknown
	// for the session the agent sends on now (older sessions' answers are stale: a handshake since
	// has replaced them); it must not block. nil: such answers are
	// dropped.
	SessionUnknown func(session uint32)
	// Pong is called with the session's index and the pong's next key
	// tag (wire.NextKeyTag), on WireGuard's receive goroutine, when the
	// relay answers a Ping for the session the agent sends on now; it
	// must not block. nil: pongs are dropped.
	Pong func(session, next uint32)

	mu   sync.Mutex
	stop chan struct{} // closed by Close; wakes a receive waiting for room

	ours   indices // the agent's receiver indices, learnt from Send
	sentTo indices // the relay's receiver indices of the agent's recent transport messages
}

var _ conn.Bind = (*UDPBind)(nil)

// NewUDPBind returns a UDPBind over a new udpbind.New() that lets at most
// maxInbound data packets wait inside WireGuard (0: unbounded).
func NewUDPBind(mtu int, ipv6 func() bool, sent func(n int), maxInbound int) *UDPBind {
	return &UDPBind{Bind: udpbind.New(), IPv6: ipv6, Sent: sent, MTU: mtu, Inbound: inflight.New(maxInbound)}
}

// Open opens both sockets and returns the receive function of the relay's
// family (the inner bind returns IPv4's before IPv6's when it opened both),
// each reading through its own staging batch.
func (b *UDPBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	if len(fns) == 2 && b.IPv6 != nil {
		if b.IPv6() {
			fns = fns[1:]
		} else {
			fns = fns[:1]
		}
	}
	mtu := b.MTU
	if mtu <= 0 {
		mtu = vpn.MaxUDPMTU
	}
	stop := make(chan struct{})
	b.mu.Lock()
	b.stop = stop
	b.mu.Unlock()
	for i, fn := range fns {
		s := &staging{Staging: vpn.NewStaging(fn, b.Bind.BatchSize(), mtu+device.MessageTransportSize),
			inbound: b.Inbound, stop: stop, ours: &b.ours, sentTo: &b.sentTo, unknown: b.SessionUnknown, pong: b.Pong}
		fns[i] = s.receive
	}
	return fns, p, nil
}

// Close closes the sockets and wakes a receive waiting for room.
func (b *UDPBind) Close() error {
	b.mu.Lock()
	if b.stop != nil {
		close(b.stop)
		b.stop = nil
	}
	b.mu.Unlock()
	return b.Bind.Close()
}

// BatchSize is UDPBatchSize, or the inner bind's if that is smaller.
func (b *UDPBind) BatchSize() int { return min(UDPBatchSize, b.Bind.BatchSize()) }

// Send sends bufs and reports its data packets to Sent, also on an error:
// WireGuard does not retry them either.
func (b *UDPBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.Inbound != nil {
		b.ours.learn(bufs)
	}
	err := vpn.SendUDP(b.Bind, bufs, ep) // batches too large for the path MTU go one by one
	n := 0
	for _, m := range bufs {
		switch wire.Classify(m) {
		case wire.Data:
			n++
			fallthrough
		case wire.Keepalive:
			b.sentTo.note(wire.Index(m))
		}
	}
	if b.Sent != nil && n > 0 {
		b.Sent(n)
	}
	return err
}

// Ping returns a wire.UDPPing for the session the agent sent its last
// transport message on, nil if it has sent none yet (nothing to ping
// with).
func (b *UDPBind) Ping() []byte {
	i := b.sentTo.latest()
	if i == 0 {
		return nil
	}
	return wire.AppendUDPPing(nil, i)
}

// indices remembers the receiver indices of the agent's latest sessions,
// from the handshake messages it sends (an initiation's or a response's
// sender field). WireGuard drops a data message for any other index, so
// such a message must not take room in Inbound: forged ones would fill it
// and stall receiving for inflight.StallTimeout each time. Four, because
// wireguard-go keeps the previous, current and next session and may have
// a handshake under way.
type indices struct {
	next atomic.Uint32
	ids  [4]atomic.Uint64 // 1<<32 | index; 0: empty
}

func (x *indices) learn(bufs [][]byte) {
	for _, m := range bufs {
		if k := wire.Classify(m); k == wire.Initiation || k == wire.Response {
			i := x.next.Add(1) % uint32(len(x.ids))
			x.ids[i].Store(1<<32 | uint64(wire.Index(m)))
		}
	}
}

// ours reports whether m is a data message for one of the indices.
func (x *indices) ours(m []byte) bool {
	return wire.Classify(m) == wire.Data && x.has(wire.Index(m))
}

func (x *indices) has(i uint32) bool {
	id := 1<<32 | uint64(i)
	for j := range x.ids {
		if x.ids[j].Load() == id {
			return true
		}
	}
	return false
}

// latest is the index noted last, 0 if none (an index the relay picks at
// random may be 0: then it is ignored like one never sent to).
func (x *indices) latest() uint32 {
	v := x.ids[x.next.Load()%uint32(len(x.ids))].Load()
	if v == 0 {
		return 0
	}
	return uint32(v)
}

// note adds i unless it is one of the indices already: for the many
// transport messages of one session, four loads and no store.
func (x *indices) note(i uint32) {
	if !x.has(i) {
		j := x.next.Add(1) % uint32(len(x.ids))
		x.ids[j].Store(1<<32 | uint64(i))
	}
}

// InboundTUN wraps dev so that every packet WireGuard writes to it is
// counted out of w (UDPBind.Inbound).
func InboundTUN(dev tun.Device, w *inflight.Window) tun.Device {
	if w == nil {
		return dev
	}
	return &inboundTUN{Device: dev, w: w}
}

type inboundTUN struct {
	tun.Device
	w *inflight.Window
}

func (d *inboundTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := d.Device.Write(bufs, offset)
	d.w.Leave(len(bufs))
	return n, err
}

// staging is one receive function's vpn.Staging with what the agent
// checks as it hands messages out. Only WireGuard's one receive goroutine
// for this function calls receive.
type staging struct {
	*vpn.Staging

	inbound *inflight.Window
	stop    <-chan struct{}
	ours    *indices
	sentTo  *indices
	unknown func(uint32)         // UDPBind.SessionUnknown
	pong    func(uint32, uint32) // UDPBind.Pong
}

func (s *staging) receive(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	if err := s.Fill(); err != nil {
		return 0, err
	}
	want := min(len(packets), len(sizes), len(eps))
	if want == 0 {
		return 0, nil
	}
	room := s.inbound.Room(want, s.stop)
	if room == 0 {
		return 0, net.ErrClosed
	}
	// room bounds the data messages handed out; the others take none.
	k, data := 0, 0
	for k < want {
		m, ep, ok := s.Peek()
		if !ok {
			break
		}
		if idx, ok := wire.ParseSessionUnknown(m); ok {
			// Not WireGuard's: taken here, or dropped.
			s.Pop()
			if s.unknown != nil && s.sentTo.latest() == idx {
				s.unknown(idx)
			}
			continue
		}
		if idx, next, ok := wire.ParseUDPPong(m); ok {
			s.Pop()
			if s.pong != nil && s.sentTo.latest() == idx {
				s.pong(idx, next)
			}
			continue
		}
		if s.inbound != nil && s.ours.ours(m) {
			if data == room {
				break
			}
			data++
		}
		sizes[k] = copy(packets[k], m)
		eps[k] = ep
		s.Pop()
		k++
	}
	s.inbound.Enter(data)
	return k, nil
}

// dataMessages counts WireGuard transport messages that carry a packet.
func dataMessages(bufs [][]byte) int {
	n := 0
	for _, m := range bufs {
		if wire.Classify(m) == wire.Data {
			n++
		}
	}
	return n
}
