package relay

import (
	"net"
	"sync"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// agentBind is the relay's conn.Bind: WireGuard messages from every agent's
// TCP connection (and, if enabled, from UDP) reach the one WireGuard device
// through it, and WireGuard's replies leave through it. Each TCP connection is its own conn.Endpoint, so WireGuard's
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
	return vpn.SendUDP(b.udp, bufs, ep) // batches too large for the path MTU go one by one
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
