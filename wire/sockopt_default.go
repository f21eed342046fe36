//go:build !linux

package wire

import "net"

// DelayACKs does nothing where TCP_QUICKACK does not exist.
func DelayACKs(c net.Conn) {}
