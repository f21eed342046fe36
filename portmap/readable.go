package portmap

import "net"

// notifierFor returns how to wait for c to become readable without a
// goroutine parked in Read: c itself if it is a readNotifier (the tunnel's
// connections), a watcher of the socket for a *net.TCPConn where the
// platform has one (readable_linux.go), else nil.
func notifierFor(c net.Conn) readNotifier {
	if rn, ok := c.(readNotifier); ok {
		return rn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return socketNotifier(tc)
	}
	return nil
}
