package vpn

import (
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// UDPBind is the agent's conn.Bind for transport "udp": wireguard-go's
// StdNetBind with two changes that keep a hub's heap small.
//
//   - Open hands WireGuard the receive function of the relay's address
//     family only. wireguard-go gives every receive function a batch of
//     conn.IdealBatchSize (128) buffers of 64 KiB, 8 MiB of heap each, and
//     the agent only ever hears from its one relay. Both sockets stay open
//     (Send needs them); after the relay's family changes, the agent rebinds
//     (Device.Rebind).
//   - Send reports how many data packets it handed to the kernel, so that
//     the netstack can bound what waits inside WireGuard
//     (netstack.Config.MaxInFlight).
type UDPBind struct {
	conn.Bind // wireguard-go's StdNetBind

	// IPv6 reports whether the relay's address is IPv6. nil: read both.
	IPv6 func() bool
	// Sent is called after each Send with its number of data packets
	// (keepalives and handshakes are not counted). nil: not called.
	Sent func(n int)
}

var _ conn.Bind = (*UDPBind)(nil)

// NewUDPBind returns a UDPBind over a new conn.StdNetBind.
func NewUDPBind(ipv6 func() bool, sent func(n int)) *UDPBind {
	return &UDPBind{Bind: conn.NewStdNetBind(), IPv6: ipv6, Sent: sent}
}

// Open opens both sockets and returns the receive function of the relay's
// family. StdNetBind returns IPv4's before IPv6's when it opened both.
func (b *UDPBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	if err != nil || len(fns) != 2 || b.IPv6 == nil {
		return fns, p, err
	}
	if b.IPv6() {
		return fns[1:], p, nil
	}
	return fns[:1], p, nil
}

// Send sends bufs and reports its data packets to Sent, also on an error:
// WireGuard does not retry them either.
func (b *UDPBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := b.Bind.Send(bufs, ep)
	if b.Sent != nil {
		if n := dataMessages(bufs); n > 0 {
			b.Sent(n)
		}
	}
	return err
}

// dataMessages counts WireGuard transport messages that carry a packet.
func dataMessages(bufs [][]byte) int {
	n := 0
	for _, m := range bufs {
		if len(m) > device.MessageKeepaliveSize && m[0] == device.MessageTransportType && m[1] == 0 && m[2] == 0 && m[3] == 0 {
			n++
		}
	}
	return n
}
