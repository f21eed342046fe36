package wire

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDelayACKs reads back the kernel's quick-ACK state: a fresh
// connection acknowledges at once, and after DelayACKs it does not.
func TestDelayACKs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	quickACK := func() int {
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		raw.Control(func(fd uintptr) {
			v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK)
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if quickACK() != 1 {
		t.Fatal("a fresh connection is not in quick-ACK mode; the test cannot tell anything")
	}
	DelayACKs(c)
	if quickACK() != 0 {
		t.Error("DelayACKs left the connection in quick-ACK mode")
	}
	DelayACKs(nopConn{}) // not a socket: nothing happens
}

type nopConn struct{ net.Conn }
