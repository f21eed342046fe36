package wire

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawConn is c's file descriptor access, or nil when c is not a socket of
// its own (TLS, a proxy's wrapper): such a reader keeps its buffer.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// fillRaw reads what the socket has into the buffer, taking one from the
// pool only for the read itself: when the socket has nothing (EAGAIN) an
// empty buffer goes back while the runtime's poller waits for it to become
// readable. The read deadline and Close apply as to a Read.
func (rd *readBuf) fillRaw() error {
	if rd.fillFn == nil {
		rd.fillFn = rd.fillOnce // one method value per connection, not one per read
	}
	rd.dst = nil
	n, err := rd.rawDo(rd.fillFn)
	if err != nil {
		return err
	}
	rd.w += n
	return nil
}

func (rd *readBuf) fillOnce(fd uintptr) bool {
	if rd.bp == nil {
		rd.bp = rd.pool.Get().(*[]byte)
	}
	rd.n, rd.rerr = readFD(fd, (*rd.bp)[rd.w:])
	if rd.rerr == unix.EAGAIN {
		rd.release()
		return false // wait for readability, then call again
	}
	return true
}

// readDirectRaw reads into p straight from the socket.
func (rd *readBuf) readDirectRaw(p []byte) (int, error) {
	if rd.directFn == nil {
		rd.directFn = rd.directOnce
	}
	rd.dst = p
	n, err := rd.rawDo(rd.directFn)
	rd.dst = nil
	return n, err
}

func (rd *readBuf) directOnce(fd uintptr) bool {
	rd.n, rd.rerr = readFD(fd, rd.dst)
	return rd.rerr != unix.EAGAIN
}

// rawDo runs f through the RawConn and returns what its last read(2) did,
// with the errors a socket's Read would give.
func (rd *readBuf) rawDo(f func(uintptr) bool) (int, error) {
	rd.n, rd.rerr = 0, nil
	if err := rd.raw.Read(f); err != nil {
		return 0, err
	}
	n, rerr := rd.n, rd.rerr
	rd.rerr = nil
	if rerr != nil {
		return 0, os.NewSyscallError("read", rerr)
	}
	if n <= 0 {
		return 0, io.EOF
	}
	return n, nil
}

func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		if err != unix.EINTR {
			return n, err
		}
	}
}
