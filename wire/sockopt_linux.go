package wire

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// DelayACKs takes a TCP connection out of quick-ACK mode (TCP_QUICKACK 0),
// so that the kernel holds the ACK of the next segments it receives for a
// moment and sends it with the reply. Linux starts a connection in
// quick-ACK mode and enters it again when data arrives after the connection
// was quiet for longer than its RTO; it then acknowledges that data at once
// in a segment of its own (52 bytes with headers), although over the tunnel
// a reply usually follows within a millisecond. The agent calls it once
// connected, and Conn on the first write after AckIdle without writes (1 s:
// longer than a healthy connection's RTO). The kernel still acknowledges at
// once when two full segments arrive, and by itself within its delayed-ACK
// timeout (40 ms or more). Connections that are not syscall.Conns (behind a
// proxy's wrapper, say) are left as they are.
func DelayACKs(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
	})
}
