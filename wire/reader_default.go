//go:build !linux

package wire

import (
	"net"
	"syscall"
)

// rawConn is nil where the reader does not read sockets itself: its buffer
// is kept.
func rawConn(c net.Conn) syscall.RawConn { return nil }

func (rd *readBuf) fillRaw() error { panic("wire: no raw reads on this platform") }

func (rd *readBuf) readDirectRaw(p []byte) (int, error) {
	panic("wire: no raw reads on this platform")
}

func (rd *readBuf) wait() error { panic("wire: no raw reads on this platform") }
