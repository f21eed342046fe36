//go:build !linux

package uplink

import "syscall"

// controlUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist;
// keepalives alone notice a dead relay there.
func controlUserTimeout(network, address string, c syscall.RawConn) error { return nil }
