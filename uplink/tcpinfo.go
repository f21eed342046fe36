package uplink

import (
	"net"
	"sync"
	"syscall"
)

// SocketCounters are what the network carried on the agent's relay
// connections, from the kernel's own counts (TCP_INFO, Linux): every byte
// of TCP payload (what the agent wrote and read: frames, TLS records, a
// proxy's CONNECT; retransmissions included when sent) plus one IP and TCP
// header per segment, ACKs and keepalive probes included. The header is
// 52 bytes over IPv4 with TCP timestamps (20 IP + 20 TCP + 12 option), 72
// over IPv6, 12 less without timestamps; SACK blocks and a SYN's longer
// options are not seen, and the payload of a segment that arrives twice
// (the relay sent it again) is counted once, as the kernel counts it.
type SocketCounters struct {
	Sent, Received  uint64 // bytes on the network, headers included
	SegsOut, SegsIn uint64 // segments
	Retransmitted   uint64 // payload bytes sent again (in Sent)
	// OK is false when the system gives no TCP_INFO (not Linux): then
	// the counters are zero.
	OK bool
}

func (c *SocketCounters) add(d SocketCounters) {
	c.Sent += d.Sent
	c.Received += d.Received
	c.SegsOut += d.SegsOut
	c.SegsIn += d.SegsIn
	c.Retransmitted += d.Retransmitted
	c.OK = c.OK || d.OK
}

// ReadSocketCounters reads c's counters from the kernel. c is a TCP
// connection or one of the dialer's wrappers of it (TLS, a proxy's
// tunnel).
func ReadSocketCounters(c net.Conn) (SocketCounters, bool) {
	rc, v6, ok := socketOf(c)
	if !ok {
		return SocketCounters{}, false
	}
	return readSocket(rc, v6)
}

// socketOf finds the socket under c's wrappers, and whether it is IPv6.
func socketOf(c net.Conn) (syscall.RawConn, bool, bool) {
	for range 8 { // wrappers nest a few deep at most
		switch x := c.(type) {
		case *countedConn:
			c = x.Conn
		case *bufferedConn:
			c = x.Conn
		case *tlsConn:
			c = x.NetConn()
		case *net.TCPConn:
			rc, err := x.SyscallConn()
			if err != nil {
				return nil, false, false
			}
			a, _ := x.LocalAddr().(*net.TCPAddr)
			return rc, a != nil && a.IP.To4() == nil, true
		default:
			return nil, false, false
		}
	}
	return nil, false, false
}

// sockTotals adds up the counters of a TCPBind's successive connections:
// those closed, read just before they closed, and the live one.
type sockTotals struct {
	mu     sync.Mutex
	closed SocketCounters
	live   *countedConn // nil between connections
}

// track makes c the live connection; its Close counts it.
func (t *sockTotals) track(c net.Conn) net.Conn {
	cc := &countedConn{Conn: c, totals: t}
	t.mu.Lock()
	t.live = cc
	t.mu.Unlock()
	return cc
}

// read is the closed connections' counters plus the live one's now.
func (t *sockTotals) read() SocketCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.closed
	if t.live != nil {
		if cur, ok := ReadSocketCounters(t.live.Conn); ok {
			s.add(cur)
		}
	}
	return s
}

// closing counts c for the last time, before its socket closes.
func (t *sockTotals) closing(c *countedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live != c {
		return
	}
	if cur, ok := ReadSocketCounters(c.Conn); ok {
		t.closed.add(cur)
	}
	t.live = nil
}

// countedConn is a relay connection whose counters are read as it closes.
type countedConn struct {
	net.Conn
	totals *sockTotals
	once   sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.totals.closing(c) })
	return c.Conn.Close()
}

func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// TCPConn is the connection under c when it is a bare socket (not TLS
// nor a proxy's buffered connection), for sockio: c's Read and Write are
// its own.
func (c *countedConn) TCPConn() *net.TCPConn {
	tc, _ := c.Conn.(*net.TCPConn)
	return tc
}

// SyscallConn is the socket's under every wrapper (wire.DelayACKs uses it).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	rc, _, ok := socketOf(c.Conn)
	if !ok {
		return nil, errNoSocket
	}
	return rc, nil
}

var errNoSocket = &net.OpError{Op: "syscallconn", Net: "tcp", Err: syscall.EINVAL}
