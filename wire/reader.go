package wire

import (
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

// readBuf is Conn's read buffer. Like a bufio.Reader it pulls as many bytes
// as the kernel has (up to its size) per system call and hands them out
// frame by frame, and reads a frame at least the buffer's size straight
// into the caller's buffer (with ReleaseIdle, and what follows it into the
// buffer in the same system call: readDirectRaw).
//
// With ConnConfig.ReleaseIdle on a connection that is a syscall.Conn (TCP),
// the buffer comes from a pool and goes back whenever it holds nothing:
// the reader then waits for the socket to become readable without one
// (fillRaw), so a relay's idle agent connection holds no read buffer. That
// costs no system call: a Read on a socket also tries read(2) first and
// waits in the runtime's poller on EAGAIN; here the buffer goes back to the
// pool in between.
type readBuf struct {
	src  io.Reader
	raw  syscall.RawConn // set when the buffer is released while empty
	pool *sync.Pool      // of *[]byte of size bytes; with raw
	size int

	bp   *[]byte // the buffer, nil while released
	r, w int     // bytes r:w of *bp are unread

	// For the RawConn's Read (reader_linux.go): the functions it is given,
	// made once, and what they pass back, so that a read allocates nothing.
	fillFn, directFn, waitFn func(fd uintptr) bool
	dst                      []byte
	n                        int
	rerr                     error
	vec                      [2][]byte       // readDirectRaw's: dst, then the buffer
	iov                      [2]sockio.Iovec // readDirectRaw's room for its iovecs

	// nowait: a read that finds the socket empty returns ErrWouldBlock
	// instead of waiting (Conn.TryNext); waitCalls counts the calls of
	// waitFn in one wait (Conn.WaitReadable).
	nowait    bool
	waitCalls int
}

// Buffer pools by size: connections with the same ReadBuffer share one.
var readPools sync.Map // int → *sync.Pool

func newReadBuf(c net.Conn, sock *sockio.Socket, size int, releaseIdle bool) *readBuf {
	rd := &readBuf{src: c, size: size}
	if sock != nil {
		rd.src = sock
	}
	if releaseIdle {
		rd.raw = rawConn(c)
	}
	if rd.raw == nil {
		b := make([]byte, size)
		rd.bp = &b
		return rd
	}
	p, ok := readPools.Load(size)
	if !ok {
		p, _ = readPools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	}
	rd.pool = p.(*sync.Pool)
	return rd
}

// buffered is how many bytes are read and not yet handed out.
func (rd *readBuf) buffered() int { return rd.w - rd.r }

// fill reads once more from the connection, after what is buffered. Its
// caller has fewer bytes buffered than it needs.
func (rd *readBuf) fill() error {
	if rd.r > 0 && rd.bp != nil {
		copy(*rd.bp, (*rd.bp)[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
	}
	if rd.raw != nil {
		return rd.fillRaw()
	}
	n, err := rd.src.Read((*rd.bp)[rd.w:])
	rd.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release gives an empty buffer back to the pool.
func (rd *readBuf) release() {
	if rd.raw != nil && rd.bp != nil && rd.r == rd.w {
		rd.pool.Put(rd.bp)
		rd.bp, rd.r, rd.w = nil, 0, 0
	}
}

// peek returns the next n bytes (n ≤ size) without consuming them,
// reading as needed; fewer, with the error that stopped it.
func (rd *readBuf) peek(n int) ([]byte, error) {
	for rd.buffered() < n {
		if err := rd.fill(); err != nil {
			return rd.bytes(), err
		}
	}
	return (*rd.bp)[rd.r : rd.r+n], nil
}

func (rd *readBuf) bytes() []byte {
	if rd.bp == nil {
		return nil
	}
	return (*rd.bp)[rd.r:rd.w]
}

// readFull fills p, from the buffer first; the rest of a p at least the
// buffer's size is read straight into it (and what follows into the
// buffer, where readDirect can). Its errors are io.ReadFull's.
func (rd *readBuf) readFull(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if rd.buffered() > 0 {
			k := copy(p[n:], (*rd.bp)[rd.r:rd.w])
			rd.r += k
			n += k
			continue
		}
		rd.release()
		if len(p)-n >= rd.size {
			k, err := rd.readDirect(p[n:])
			n += k
			if err != nil {
				return n, fullErr(n, err)
			}
			continue
		}
		if err := rd.fill(); err != nil {
			return n, fullErr(n, err)
		}
	}
	rd.release()
	return n, nil
}

// discard drops the next n bytes.
func (rd *readBuf) discard(n int) error {
	for n > 0 {
		if rd.buffered() == 0 {
			if err := rd.fill(); err != nil {
				return err
			}
		}
		k := min(n, rd.buffered())
		rd.r += k
		n -= k
	}
	rd.release()
	return nil
}

// readDirect reads into p with no buffer in between; with raw, what the
// socket has after p's bytes lands in the (empty) buffer.
func (rd *readBuf) readDirect(p []byte) (int, error) {
	if rd.raw != nil {
		return rd.readDirectRaw(p)
	}
	n, err := rd.src.Read(p)
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	return n, err
}

func fullErr(n int, err error) error {
	if n > 0 && err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
