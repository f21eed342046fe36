package netstack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/hubtunnel/hubtunnel/internal/gopool"
)

// A Listener accepts TCP connections on one port of a Stack. It implements
// net.Listener.
type Listener struct {
	s    *Stack
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	port uint16

	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next connection and returns it as a *TCPConn with
// keepalive set. After Close, or after the Stack's Close, it returns an error
// that wraps net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	l.wq.EventRegister(&entry)
	defer l.wq.EventUnregister(&entry)

	for {
		ep, wq, terr := l.ep.Accept(nil)
		if terr == nil {
			c, err := l.s.newConn(ep, wq)
			if err != nil {
				return nil, l.opError(err)
			}
			return c, nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			if l.closed() {
				return nil, l.opError(net.ErrClosed)
			}
			return nil, l.opError(toErrno(terr))
		}
		select {
		case <-ch:
		case <-l.done:
			return nil, l.opError(net.ErrClosed)
		case <-l.s.done:
			return nil, l.opError(net.ErrClosed)
		}
	}
}

func (l *Listener) closed() bool {
	select {
	case <-l.done:
		return true
	case <-l.s.done:
		return true
	default:
		return false
	}
}

func (l *Listener) opError(err error) error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
}

// Close stops listening; connections already accepted stay open. Pending
// Accepts return net.ErrClosed. Close is idempotent.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.ep.Close()
	})
	return nil
}

// Addr returns the port with an unspecified address: the listener serves all
// of the stack's addresses.
func (l *Listener) Addr() net.Addr {
	return &net.TCPAddr{Port: int(l.port)}
}

// A TCPConn is a TCP connection on a Stack. It behaves like a *net.TCPConn:
// errors wrap syscall errnos (errors.Is(err, syscall.ECONNRESET) after a
// reset), and after Close or Abort, Read and Write fail with net.ErrClosed.
type TCPConn struct {
	c  *gonet.TCPConn
	ep tcpip.Endpoint
	wq *waiter.Queue
	s  *Stack

	closeOnce sync.Once
	closed    atomic.Bool
	streaming atomic.Bool // holds one of the stack's StreamConns
}

var _ net.Conn = (*TCPConn)(nil)

// newConn wraps an established endpoint, after setting its keepalives.
func (s *Stack) newConn(ep tcpip.Endpoint, wq *waiter.Queue) (*TCPConn, error) {
	if err := s.tune(ep); err != nil {
		ep.Abort()
		ep.Close()
		return nil, err
	}
	return &TCPConn{c: gonet.NewTCPConn(wq, ep), ep: ep, wq: wq, s: s}, nil
}

func (c *TCPConn) Read(b []byte) (int, error) {
	n, err := c.c.Read(b)
	if err == io.EOF && c.closed.Load() {
		// gonet reads a closed endpoint as EOF.
		return n, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: net.ErrClosed}
	}
	if err != nil {
		err = c.fixErr(err)
	}
	return n, err
}

func (c *TCPConn) Write(b []byte) (int, error) {
	n, err := c.c.Write(b)
	if err != nil {
		err = c.fixErr(err)
	}
	return n, err
}

// Close closes the connection gracefully (FIN). It is idempotent.
//
// It turns the keepalives off first: gVisor counts TIME_WAIT (and the
// other closing states) as connected and kept probing a closed
// connection, 60 s after its last packet; over a tunnel that probe woke a
// hub's idle WireGuard peer (relay/peers.go). A closed connection has no
// reader left to tell that its peer vanished, and gVisor ends the closing
// states by its own timers.
func (c *TCPConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.ep.SocketOptions().SetKeepAlive(false)
		c.ep.Close()
		c.wq.Notify(readyEvents) // a graceful close does not notify
		c.endStream()
	})
	return nil
}

// Streaming says whether the connection streams: its writes keep its
// send buffer full (portmap says so while a copy toward the tunnel reads
// whole buffers, and no longer once it does not). While fewer than
// Config.StreamConns connections of the stack stream, the connection's
// send buffer is Config.StreamSendBuffer until it stops or is closed;
// otherwise nothing changes, and a later call tries again. Cheap enough
// for every change of a copy's pace: atomic operations, and the
// endpoint's lock when the buffer grows.
func (c *TCPConn) Streaming(on bool) {
	if !on {
		c.endStream()
		return
	}
	cfg := &c.s.cfg
	if cfg.StreamSendBuffer == 0 || c.streaming.Load() || c.closed.Load() {
		return
	}
	if c.s.streams.Add(1) > int32(cfg.StreamConns) {
		c.s.streams.Add(-1)
		return
	}
	if !c.streaming.CompareAndSwap(false, true) {
		c.s.streams.Add(-1) // another call won
		return
	}
	// As SO_SNDBUF: this also turns gVisor's send buffer tuning off for
	// the endpoint. Left on, the tuning sets a buffer above the stack's
	// maximum back to the maximum on an ACK but wakes the writer only when
	// that same ACK takes the bytes queued below half the new size; a
	// writer waiting on a 2 MiB buffer then waited for ever
	// (TestStreamingSendBuffer).
	c.ep.SocketOptions().SetSendBufferSize(int64(cfg.StreamSendBuffer), true)
	if c.closed.Load() {
		c.endStream() // closed meanwhile: the close may have missed it
	}
}

// endStream gives the connection's stream slot back, and its send buffer
// the stack's default size (writes wait while it holds more). gVisor's
// tuning stays off for it, which at the default TCPBufferSize changes
// nothing: the default size is the maximum.
func (c *TCPConn) endStream() {
	if c.streaming.CompareAndSwap(true, false) {
		c.ep.SocketOptions().SetSendBufferSize(int64(c.s.sendBuffer), false)
		c.s.streams.Add(-1)
	}
}

// Abort closes the connection at once with an RST, discarding unsent data;
// the peer's reads fail with a connection reset. After Close it does nothing.
func (c *TCPConn) Abort() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		// SO_LINGER with a zero timeout turns Close into an abort, as on
		// Linux: gVisor resets an established, closing or half-open
		// connection and releases it in the same call.
		c.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
		c.ep.Close()
		c.wq.Notify(readyEvents)
		c.endStream()
	})
}

// readyEvents are the events after which a Read does not block.
const readyEvents = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

// WhenReadable calls f once, on a goroutine of gopool's, as soon as a Read would
// not block: data or EOF has arrived, the connection failed, or it was
// closed or aborted. Until then nothing waits for it: no goroutine, no
// buffer, only a callback in the endpoint's wait queue. Read deadlines do
// not apply. It is how portmap keeps a held session cheap (a goroutine
// parked in Read costs 4–8 KiB of stack).
func (c *TCPConn) WhenReadable(f func()) {
	w := &readWaiter{wq: c.wq, f: f}
	w.entry = waiter.NewFunctionEntry(readyEvents, w.notify)
	c.wq.EventRegister(&w.entry)
	// Register, then look: data that arrived in between is not missed.
	if c.closed.Load() || c.ep.Readiness(readyEvents) != 0 {
		w.notify(0)
	}
}

// readWaiter is one WhenReadable call.
type readWaiter struct {
	wq    *waiter.Queue
	entry waiter.Entry
	f     func()
	fired atomic.Bool
}

// notify runs f once. It is called from the stack's goroutines with the
// wait queue's lock held, so the entry is unregistered in f's goroutine.
func (w *readWaiter) notify(waiter.EventMask) {
	if w.fired.CompareAndSwap(false, true) {
		gopool.Go(func() {
			w.wq.EventUnregister(&w.entry)
			w.f()
		})
	}
}

// Readable reports whether a Read would not block now: data or EOF has
// arrived, the connection failed, or it was closed. On a connection that
// should be quiet (a kept-alive client connection between requests) it
// tells, without a goroutine parked in Read, that the peer has closed it.
func (c *TCPConn) Readable() bool {
	return c.closed.Load() || c.ep.Readiness(readyEvents) != 0
}

// CloseWrite shuts down the sending side (FIN); the peer reads EOF and may
// still send.
func (c *TCPConn) CloseWrite() error { return c.fixErr(c.c.CloseWrite()) }

// CloseRead shuts down the receiving side.
func (c *TCPConn) CloseRead() error { return c.fixErr(c.c.CloseRead()) }

func (c *TCPConn) LocalAddr() net.Addr                { return c.c.LocalAddr() }
func (c *TCPConn) RemoteAddr() net.Addr               { return c.c.RemoteAddr() }
func (c *TCPConn) SetDeadline(t time.Time) error      { return c.c.SetDeadline(t) }
func (c *TCPConn) SetReadDeadline(t time.Time) error  { return c.c.SetReadDeadline(t) }
func (c *TCPConn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// fixErr turns gonet's errors into what net.TCPConn would return. gonet
// flattens a tcpip.Error into errors.New(err.String()) inside a *net.OpError;
// the text is mapped back to its errno.
func (c *TCPConn) fixErr(err error) error {
	var op *net.OpError
	if err == nil || !errors.As(err, &op) {
		return err
	}
	if c.closed.Load() {
		op.Err = net.ErrClosed
	} else if errno, ok := errnoByText[op.Err.Error()]; ok {
		op.Err = errno
	}
	return err
}

// errnos maps the tcpip errors a connection can see to the errno Linux
// reports for them.
var errnos = []struct {
	err   tcpip.Error
	errno syscall.Errno
}{
	{&tcpip.ErrConnectionReset{}, syscall.ECONNRESET},
	{&tcpip.ErrConnectionRefused{}, syscall.ECONNREFUSED},
	{&tcpip.ErrConnectionAborted{}, syscall.ECONNABORTED},
	{&tcpip.ErrAborted{}, syscall.ECONNABORTED},
	{&tcpip.ErrTimeout{}, syscall.ETIMEDOUT},
	{&tcpip.ErrClosedForSend{}, syscall.EPIPE},
	{&tcpip.ErrNotConnected{}, syscall.ENOTCONN},
	{&tcpip.ErrHostUnreachable{}, syscall.EHOSTUNREACH},
	{&tcpip.ErrNetworkUnreachable{}, syscall.ENETUNREACH},
	{&tcpip.ErrPortInUse{}, syscall.EADDRINUSE},
	{&tcpip.ErrNoPortAvailable{}, syscall.EAGAIN},
}

var errnoByText = func() map[string]syscall.Errno {
	m := make(map[string]syscall.Errno, len(errnos))
	for _, e := range errnos {
		m[e.err.String()] = e.errno
	}
	return m
}()

// toErrno returns the errno for terr, or terr's text as an error.
func toErrno(terr tcpip.Error) error {
	if errno, ok := errnoByText[terr.String()]; ok {
		return errno
	}
	return fmt.Errorf("%s", terr)
}
