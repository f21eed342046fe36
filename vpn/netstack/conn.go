package netstack

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"
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

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ net.Conn = (*TCPConn)(nil)

// newConn wraps an established endpoint, after setting its keepalives.
func (s *Stack) newConn(ep tcpip.Endpoint, wq *waiter.Queue) (*TCPConn, error) {
	if err := s.tune(ep); err != nil {
		ep.Abort()
		ep.Close()
		return nil, err
	}
	return &TCPConn{c: gonet.NewTCPConn(wq, ep), ep: ep}, nil
}

func (c *TCPConn) Read(b []byte) (int, error) {
	n, err := c.c.Read(b)
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
func (c *TCPConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.ep.Close()
	})
	return nil
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
	})
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
