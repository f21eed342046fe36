//go:build !linux

package portmap

import "net"

// socketNotifier has no way to watch a socket here: the direction copies in
// a goroutine of its own, parked in Read while it waits.
func socketNotifier(*net.TCPConn) readNotifier { return nil }
