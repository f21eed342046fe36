package wire

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hubtunnel/hubtunnel/internal/sockio"
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
		return rd.nowait // else wait for readability, then call again
	}
	return true
}

// wait waits until the socket is readable, with no buffer. The runtime's
// poller wakes a RawConn's Read only for readiness that comes after the
// Read began (it forgets what came between an earlier read that found the
// socket empty and this one), so it asks poll(2) first: one system call
// per wake-up, which under load reads many frames. The poller's wake-up is
// taken as readable: a read that then finds nothing only waits again.
func (rd *readBuf) wait() error {
	if rd.waitFn == nil {
		rd.waitFn = rd.waitOnce
	}
	rd.waitCalls = 0
	return rd.raw.Read(rd.waitFn)
}

func (rd *readBuf) waitOnce(fd uintptr) bool {
	rd.waitCalls++
	return rd.waitCalls > 1 || sockio.Readable(fd) // a second call: woken by the poller
}

// readDirectRaw reads into p straight from the socket, and what comes
// after p's bytes into the (empty) buffer in the same read (readv(2)):
// while frames stream, one system call per frame instead of two, the
// frame's rest and the next one's start.
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
	if rd.bp == nil {
		rd.bp = rd.pool.Get().(*[]byte)
	}
	rd.vec = [2][]byte{rd.dst, (*rd.bp)[rd.w:]}
	n, err := sockio.Readv(fd, rd.vec[:], rd.iov[:])
	rd.vec = [2][]byte{}
	if n > len(rd.dst) {
		rd.w += n - len(rd.dst)
		n = len(rd.dst)
	}
	rd.n, rd.rerr = n, err
	if err == unix.EAGAIN {
		rd.release() // none while the rest of the frame is on its way
		return false
	}
	return true
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
	if rerr == unix.EAGAIN {
		return 0, ErrWouldBlock // nowait
	}
	if rerr != nil {
		return 0, os.NewSyscallError("read", rerr)
	}
	if n <= 0 {
		return 0, io.EOF
	}
	return n, nil
}

func readFD(fd uintptr, p []byte) (int, error) { return sockio.Read(fd, p) }
