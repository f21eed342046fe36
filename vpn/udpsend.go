package vpn

import (
	"errors"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
)

// SendUDP sends bufs through a UDP bind (internal/udpbind's, or one
// around it), one at a time when the batch comes back EMSGSIZE.
//
// The bind sends a batch of equal-sized packets as one UDP GSO write
// (UDP_SEGMENT), and the kernel refuses a GSO write whose segments are
// larger than the path MTU it knows (udp_send_skb: EMSGSIZE), where it
// fragments the same packets sent one by one. WireGuard's 1420-byte MTU
// makes 1480- and 1500-byte datagrams: larger than a PPPoE line's 1492
// once an ICMP "fragmentation needed" taught the kernel that path MTU, or
// than a 1280-byte link. Without the retry every batch — a download's bulk
// — was lost while single packets got through, and a download over such a
// path stalled (e2e TestNetworkFaults "mtu 1280"). A packet of the batch
// that went out before the error goes twice; WireGuard's replay window
// drops the copy.
func SendUDP(b conn.Bind, bufs [][]byte, ep conn.Endpoint) error {
	err := b.Send(bufs, ep)
	if err == nil || len(bufs) < 2 || !errors.Is(err, syscall.EMSGSIZE) {
		return err
	}
	err = nil
	for i := range bufs {
		if e := b.Send(bufs[i:i+1], ep); e != nil && err == nil {
			err = e
		}
	}
	return err
}
