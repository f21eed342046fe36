package relay

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/wire"
)

// agentBind is the relay's conn.Bind: WireGuard messages from every agent's
// TCP connection (and, if enabled, from UDP) reach the one WireGuard device
// through it. Each TCP connection is its own conn.Endpoint, so WireGuard's
// roaming (the peer's endpoint follows its last authenticated packet) sends
// replies down the connection the hub last spoke on.
//
// The TCP listener and the connections are owned by the Server, not by
// Open/Close: WireGuard reopens its bind when the UDP port is set, and that
// must not drop every connected hub.
type agentBind struct {
	udp     conn.Bind // nil when UDP is off
	udpPort uint16

	in chan inbound // frames from all agent connections

	mu      sync.Mutex
	closing chan struct{} // nil while closed
}

var _ conn.Bind = (*agentBind)(nil)

// inbound is one WireGuard message read from an agent connection.
type inbound struct {
	buf *[wire.MaxFrame]byte
	n   int
	ep  *agentConn
}

var framePool = sync.Pool{New: func() any { return new([wire.MaxFrame]byte) }}

func newAgentBind(udpPort uint16) *agentBind {
	b := &agentBind{in: make(chan inbound, 256), udpPort: udpPort}
	if udpPort != 0 {
		b.udp = conn.NewStdNetBind()
	}
	return b
}

func (b *agentBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns := []conn.ReceiveFunc{b.receiveTCP}
	port := b.udpPort
	if b.udp != nil {
		ufns, p, err := b.udp.Open(b.udpPort)
		if err != nil {
			return nil, 0, err
		}
		fns, port = append(fns, ufns...), p
	}
	b.closing = make(chan struct{})
	return fns, port, nil
}

func (b *agentBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing == nil {
		return nil
	}
	close(b.closing)
	b.closing = nil
	if b.udp != nil {
		return b.udp.Close()
	}
	return nil
}

func (b *agentBind) receiveTCP(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	b.mu.Lock()
	closing := b.closing
	b.mu.Unlock()
	if closing == nil {
		return 0, net.ErrClosed
	}
	n := 0
	for n < len(packets) {
		var m inbound
		if n == 0 {
			select {
			case m = <-b.in:
			case <-closing:
				return 0, net.ErrClosed
			}
		} else {
			select {
			case m = <-b.in:
			default:
				return n, nil
			}
		}
		sizes[n] = copy(packets[n], m.buf[:m.n])
		eps[n] = m.ep
		framePool.Put(m.buf)
		n++
	}
	return n, nil
}

func (b *agentBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if ac, ok := ep.(*agentConn); ok {
		return ac.write(bufs)
	}
	if b.udp == nil {
		return conn.ErrWrongEndpointType
	}
	return b.udp.Send(bufs, ep)
}

func (b *agentBind) SetMark(mark uint32) error {
	if b.udp != nil {
		return b.udp.SetMark(mark)
	}
	return nil
}

// ParseEndpoint parses UDP endpoints; TCP endpoints are only ever learned.
func (b *agentBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if b.udp == nil {
		return nil, conn.ErrWrongEndpointType
	}
	return b.udp.ParseEndpoint(s)
}

// BatchSize follows the UDP bind, whose receive functions need exactly
// their own batch size; without UDP, a small batch keeps memory low.
func (b *agentBind) BatchSize() int {
	if b.udp != nil {
		return b.udp.BatchSize()
	}
	return tcpBatchSize
}

// tcpBatchSize is the batch WireGuard reads from agent connections without
// UDP: it keeps tcpBatchSize × 64 KiB of buffers per receive routine.
const tcpBatchSize = 16

// agentConn is one agent's TCP connection, and a WireGuard endpoint.
type agentConn struct {
	conn   *wire.Conn
	remote netip.AddrPort
	dst    []byte // DstToBytes, for WireGuard's cookie MACs

	hub atomic.Pointer[hub] // the hub its Hello claims, if known

	// state goes from connUnverified to connVerified when the relay first
	// answers a handshake initiation on this connection (wireguard-go only
	// answers initiations it has authenticated, so from then on the
	// connection carries a real hub), and to connDone when its reader ends.
	state    atomic.Int32
	onVerify func() // called once, by the write that verified the connection

	counters wire.Counters
}

func newAgentConn(c net.Conn) *agentConn {
	ac := &agentConn{}
	ac.conn = wire.NewConn(c, wire.ConnConfig{WriteTimeout: agentWriteTimeout, ReadBuffer: agentReadBuffer, Counters: &ac.counters})
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ac.remote = ta.AddrPort()
	}
	ac.dst, _ = ac.remote.MarshalBinary()
	return ac
}

// write sends frames built from bufs.
func (ac *agentConn) write(bufs [][]byte) error {
	// Verified before the response goes out, so the hub is online by the
	// time its agent learns the tunnel is up. A failed write closes the
	// connection, and its reader's finish undoes it.
	if ac.state.Load() == connUnverified && hasHandshakeResponse(bufs) &&
		ac.state.CompareAndSwap(connUnverified, connVerified) && ac.onVerify != nil {
		ac.onVerify()
	}
	return ac.conn.Write(bufs)
}

const (
	connUnverified = iota
	connVerified
	connDone
)

// finish marks the connection done and reports whether it had been
// verified, so exactly one of onVerify's effects gets undone.
func (ac *agentConn) finish() (wasVerified bool) {
	return ac.state.Swap(connDone) == connVerified
}

// hasHandshakeResponse reports whether bufs holds a WireGuard handshake
// response.
func hasHandshakeResponse(bufs [][]byte) bool {
	for _, p := range bufs {
		if wire.Classify(p) == wire.Response {
			return true
		}
	}
	return false
}

// writeControl sends one control frame, bypassing WireGuard.
func (ac *agentConn) writeControl(p []byte) error {
	return ac.write([][]byte{p})
}

// goAway sends a GoingAway frame as the last thing on the connection and
// half-closes it (wire.Conn.WriteFinal); WireGuard's later sends are
// dropped, and the connection stays open for the agent to hang up.
func (ac *agentConn) goAway(retryAfter time.Duration) {
	ms := uint16(min(retryAfter.Milliseconds(), math.MaxUint16))
	ac.conn.WriteFinal(wire.GoingAway{RetryAfterMillis: ms}.Marshal())
}

// inboundTUN is the netstack's TUN device as WireGuard sees it: each
// packet WireGuard writes to it is counted out of the window of the hub it
// came from (hub.inbound), found by its IPv4 source address. WireGuard
// only writes packets whose source is the sending peer's tunnel address.
type inboundTUN struct {
	tun.Device
	byIP map[netip.Addr]*hub // read-only once the relay runs
}

func (d *inboundTUN) Write(bufs [][]byte, offset int) (int, error) {
	written, err := d.Device.Write(bufs, offset)
	// Counted out in runs: a batch comes from one peer.
	var last *hub
	n := 0
	for _, b := range bufs {
		h := d.byIP[sourceIPv4(b[offset:])]
		if h != last {
			if last != nil {
				last.inbound.Leave(n)
			}
			last, n = h, 0
		}
		n++
	}
	if last != nil {
		last.inbound.Leave(n)
	}
	return written, err
}

// sourceIPv4 is the source address of an IPv4 packet, or the zero Addr.
func sourceIPv4(p []byte) netip.Addr {
	if len(p) < 20 || p[0]>>4 != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(p[12:16]))
}

// tcpEndpointPrefix starts what WireGuard reports as the endpoint of a hub
// whose last handshake came over an agent's TCP connection.
const tcpEndpointPrefix = "tcp:"

func (ac *agentConn) ClearSrc()           {}
func (ac *agentConn) SrcToString() string { return "" }
func (ac *agentConn) DstToString() string { return tcpEndpointPrefix + ac.remote.String() }
func (ac *agentConn) DstToBytes() []byte  { return ac.dst }
func (ac *agentConn) DstIP() netip.Addr   { return ac.remote.Addr() }
func (ac *agentConn) SrcIP() netip.Addr   { return netip.Addr{} }
