// Package sockio reads and writes sockets with system calls the Go runtime
// is not told about.
//
// A socket's Read or Write goes through the runtime's syscall entry: the
// goroutine's P is marked as in a system call, and the runtime's monitor
// thread (sysmon) takes it away from a call that spans two of its ticks
// (20 µs at first) and starts another thread to run it, while the call
// itself wakes the monitor when it was asleep. On a hub the agent runs on
// one P and its sockets are loopback connections whose read(2) and
// write(2) run the receiving side's TCP too, often past 20 µs: profiled
// under 50 connections of small requests, the monitor's wake-ups and the
// thread hand-offs they start took a tenth of the agent's CPU.
//
// Go's sockets are non-blocking: read(2) and write(2) on them return
// EAGAIN instead of waiting, so a call the runtime is not told about is
// bounded by the kernel's work on the bytes given, like any other CPU
// work of the goroutine. Waiting for readability or writability still
// goes through the runtime's poller (syscall.RawConn), with deadlines and
// Close applying as to a net.Conn's Read and Write.
package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// Socket is a connection's reads and writes through its file descriptor.
// One Read and one Write may run at once, as on a net.Conn.
type Socket struct {
	c  net.Conn
	rc syscall.RawConn

	// What the RawConn's functions (made once, so that a call allocates
	// nothing) pass back.
	readFn, writeFn, writevFn func(fd uintptr) bool
	rp, wp                    []byte
	wv                        [][]byte // what Writev has left to write
	iov                       []Iovec  // Writev's room for its iovecs
	rn, wn                    int
	rerr, werr                error
}

// Of returns c's Socket when c is a *net.TCPConn or a Wrapper of one, else
// nil: TLS, a proxy's wrapper, the tunnel's netstack, any other type that
// embeds a *net.TCPConn (its Read or Write may add to the socket's, which
// the SyscallConn it gets from the socket would bypass), and platforms
// without raw calls. The caller then uses c's Read and Write.
func Of(c net.Conn) *Socket {
	if !supported {
		return nil
	}
	tc, ok := c.(*net.TCPConn)
	if w, isW := c.(Wrapper); isW {
		tc = w.TCPConn()
		ok = tc != nil
	}
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Socket{c: c, rc: rc}
	s.readFn, s.writeFn, s.writevFn = s.readOnce, s.writeOnce, s.writevOnce
	return s
}

// Wrapper is a connection that wraps a *net.TCPConn and reads and writes
// exactly its bytes (it adds to Close, say): Of may go past it. TCPConn
// returns nil where the wrapper holds something else.
type Wrapper interface {
	TCPConn() *net.TCPConn
}

// Read reads what the socket has, up to len(p), waiting in the runtime's
// poller while it has nothing. Its errors are a net.Conn's: io.EOF at the
// end, a *net.OpError otherwise.
func (s *Socket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	n, rerr := s.rn, s.rerr
	s.rp, s.rerr = nil, nil
	if err != nil {
		return 0, s.opErr("read", err)
	}
	if rerr != nil {
		return 0, s.opErr("read", os.NewSyscallError("read", rerr))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (s *Socket) readOnce(fd uintptr) bool {
	s.rn, s.rerr = Read(fd, s.rp)
	return s.rerr != syscall.EAGAIN
}

// Write writes all of p, waiting in the runtime's poller while the socket's
// send buffer is full.
func (s *Socket) Write(p []byte) (int, error) {
	s.wp, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	n, werr := s.wn, s.werr
	s.wp, s.werr = nil, nil
	if err == nil && werr != nil {
		err = os.NewSyscallError("write", werr)
	}
	if err != nil {
		return n, s.opErr("write", err)
	}
	return n, nil
}

func (s *Socket) writeOnce(fd uintptr) bool {
	for s.wn < len(s.wp) {
		n, err := Write(fd, s.wp[s.wn:])
		if n > 0 {
			s.wn += n
		}
		if err == syscall.EAGAIN {
			return false
		}
		if err != nil {
			s.werr = err
			return true
		}
	}
	return true
}

// Writev writes all of bufs, in order, as Write writes one buffer: one
// writev(2) where a Write of their concatenation would first copy them
// into one. It advances the elements of bufs past what it wrote: on
// return they are empty, but for what an error left unwritten.
func (s *Socket) Writev(bufs [][]byte) (int, error) {
	if cap(s.iov) < len(bufs) {
		s.iov = make([]Iovec, len(bufs))
	}
	s.wv, s.wn, s.werr = bufs, 0, nil
	err := s.rc.Write(s.writevFn)
	n, werr := s.wn, s.werr
	s.wv, s.werr = nil, nil
	if err == nil && werr != nil {
		err = os.NewSyscallError("writev", werr)
	}
	if err != nil {
		return n, s.opErr("write", err)
	}
	return n, nil
}

func (s *Socket) writevOnce(fd uintptr) bool {
	for {
		s.wv = consumed(s.wv, 0)
		if len(s.wv) == 0 {
			return true
		}
		n, err := Writev(fd, s.wv, s.iov)
		if n > 0 {
			s.wn += n
			s.wv = consumed(s.wv, n)
		}
		if err == syscall.EAGAIN {
			return false
		}
		if err != nil {
			s.werr = err
			return true
		}
	}
}

// consumed advances bufs past n bytes and drops the buffers then empty
// from its front.
func consumed(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && (n > 0 || len(bufs[0]) == 0) {
		k := min(n, len(bufs[0]))
		bufs[0] = bufs[0][k:]
		n -= k
		if len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return bufs
}

func (s *Socket) opErr(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		// The RawConn's own: a deadline, a closed connection. Name the
		// operation as the caller knows it.
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: s.c.LocalAddr().Network(), Source: s.c.LocalAddr(), Addr: s.c.RemoteAddr(), Err: err}
}
