package udpbind

import (
	"net/netip"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// Endpoint is where a datagram came from, and the local address and
// interface it came to (IP_PKTINFO or IPV6_PKTINFO, as the kernel gave
// it), which a reply through it is sent from: a relay on a host with
// several addresses answers from the one the hub wrote to, as its NAT
// expects. Only ClearSrc changes an Endpoint once it is made.
type Endpoint struct {
	netip.AddrPort

	src     [srcSize]byte // the PKTINFO control message, src[:srcLen]
	srcLen  uint8
	cleared atomic.Bool // ClearSrc was called: send from any address
}

var _ conn.Endpoint = (*Endpoint)(nil)

// srcSize holds an IPV6_PKTINFO control message on every architecture
// (40 bytes with 64-bit alignment).
const srcSize = 40

// ClearSrc forgets the local address: replies go from whichever the
// kernel picks (WireGuard calls it when its bind changes).
func (e *Endpoint) ClearSrc() { e.cleared.Store(true) }

func (e *Endpoint) DstIP() netip.Addr { return e.AddrPort.Addr() }

func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.AddrPort.MarshalBinary()
	return b
}

func (e *Endpoint) DstToString() string { return e.AddrPort.String() }

func (e *Endpoint) SrcToString() string {
	if a := e.SrcIP(); a.IsValid() {
		return a.String()
	}
	return ""
}

// srcControl returns the PKTINFO control message a reply carries, nil for
// none.
func (e *Endpoint) srcControl() []byte {
	if e.srcLen == 0 || e.cleared.Load() {
		return nil
	}
	return e.src[:e.srcLen]
}

// AddrPort returns the address a WireGuard endpoint of a UDP bind sends
// to: one of this package's, or of wireguard-go's StdNetBind (the bind
// elsewhere than Linux, and what callers may make themselves). ok is
// false for any other endpoint (a relay's TCP connections).
func AddrPort(ep conn.Endpoint) (a netip.AddrPort, ok bool) {
	switch e := ep.(type) {
	case *Endpoint:
		return e.AddrPort, true
	case *conn.StdNetEndpoint:
		return e.AddrPort, true
	}
	return netip.AddrPort{}, false
}
