//go:build !linux

package uplink

import "syscall"

// readSocket has nothing to read where there is no TCP_INFO.
func readSocket(rc syscall.RawConn, v6 bool) (SocketCounters, bool) { return SocketCounters{}, false }
