package portmap

// Data path of one session:
//
//  1. Serve accepts a tunnel-side connection (normally from the netstack
//     listener on a mapped port) and registers it with the Forwarder, so that
//     Close can find and end it.
//  2. Handle dials the local target with DialTimeout, from LocalSource's
//     address (see LocalSource for the rule). If the dial fails the tunnel
//     side is reset at once (Abort, or RST via SetLinger(0)), so the client
//     sees "connection reset" rather than a clean but empty EOF.
//  3. Splice copies both directions, each through a small buffer while the
//     data comes in small pieces, and one pooled 256 KiB buffer while it
//     streams. A direction waits for data without a goroutine parked in
//     Read where its source can call back (startSplice), so a held session
//     holds no buffer and no goroutine of its own:
//     - EOF on one side is passed on as CloseWrite on the other, and the
//       other direction keeps running until it ends too (HTTP/1.0 clients
//       half-close after the request and still get the whole response);
//     - an error in either direction (reset, timeout, closed) resets both
//       sides at once, so a truncated stream never looks complete.
//  4. Both connections are closed and the session is unregistered.
//
// The copy loop is our own rather than io.CopyBuffer: io.CopyBuffer hands the
// copy to ReaderFrom/WriterTo when a side has them (*net.TCPConn does), which
// would bypass the pooled buffer (the generic fallback of TCPConn.ReadFrom
// allocates its own), bypass the live byte counters, and buys nothing here:
// kernel splice(2) needs sockets on both ends and the tunnel side is a
// userspace netstack connection.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

// Defaults for Forwarder's zero fields.
const (
	DefaultDialTimeout = 5 * time.Second
	dialKeepAlive      = 30 * time.Second
	// bufSize is a streaming direction's buffer. Against 32 KiB, a
	// download through the TCP transport took the agent 4-19 % less CPU
	// per GB (one stream; 9-15 % for eight) and the relay 1-18 % less, in
	// alternated hold rigs (issue 18; BENCHMARKS.md): an eighth of the
	// reads from the hub's socket, each of which sends an ACK on loopback
	// in the agent's own time, and writes into the tunnel's TCP that fill
	// its segments. 8 streams hold 2 MiB of it.
	bufSize = 256 << 10
)

// Forwarder carries tunnel-side connections to local targets. The zero value
// is ready to use. A Forwarder must not be copied after first use.
type Forwarder struct {
	// Dial opens the connection to a local target. The context carries
	// DialTimeout and is cancelled by Close.
	// Default: net.Dialer{Timeout: DialTimeout, KeepAlive: 30s}.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// LocalSource returns the address local targets are dialed from: the
	// source address the hub's services see. It is called once per
	// session. A valid address is bound for the dial, and a target on the
	// default host (Route.HostDefault: nothing in the config named its host)
	// is dialed on that address's same port instead of 127.0.0.1, since
	// the hub's services listen on all its addresses; a target whose host
	// the config names keeps it. An invalid address leaves the choice to
	// the kernel: 127.0.0.1 for the default targets, as a loopback
	// connection. A Dial hook gets the rewritten target but binds
	// nothing itself. Default: nil, the kernel chooses (see
	// Targets.SourceFunc for the agent's "auto").
	LocalSource func() netip.Addr

	// DialTimeout bounds a dial of a local target. Default 5s.
	DialTimeout time.Duration

	// Logf receives the Forwarder's few log lines (failed dials, accept
	// errors), each prefixed "portmap: ". Never payload or secrets.
	// Default: discard.
	Logf logger.Logf

	// MaxSessions bounds the sessions in flight: a connection beyond it is
	// reset at once, counted (Refused) and logged at most once a second.
	// Default 0: no bound.
	MaxSessions int

	sessions atomic.Uint64 // sessions started, total
	refused  atomic.Uint64 // connections reset for MaxSessions, total
	bytesIn  atomic.Uint64 // tunnel side -> local target, total
	bytesOut atomic.Uint64 // local target -> tunnel side, total

	mu sync.Mutex
	// Guarded by mu:
	closed bool
	active map[*session]struct{}
	ctx    context.Context    // parent of dials; cancelled by Close
	cancel context.CancelFunc // cancels ctx
	// refusedLogged is when a refusal for MaxSessions was last logged;
	// refusedSince counts those left out since.
	refusedLogged time.Time
	refusedSince  int
	wg            sync.WaitGroup // one per active session; Add only with mu held and !closed
}

// session is one tunnel-side connection in flight.
type session struct {
	client net.Conn // tunnel side
	target net.Conn // local side, nil until dialed; guarded by Forwarder.mu
}

// Aborter is implemented by connections that can be ended with a reset
// (RST) instead of an orderly close. Abort must be safe to call concurrently
// with Read, Write and Close, and after Close.
type Aborter interface {
	Abort()
}

// streamer is implemented by connections whose send buffer grows while a
// copy into them streams (the tunnel's *netstack.TCPConn: a larger window
// over a fast path). Streaming must be cheap.
type streamer interface {
	Streaming(on bool)
}

// closeWriter is implemented by connections that can half-close:
// *net.TCPConn, *tls.Conn, gonet's *TCPConn and the tunnel's conns.
type closeWriter interface {
	CloseWrite() error
}

var (
	_ closeWriter = (*net.TCPConn)(nil)
	_ net.Conn    = (*net.TCPConn)(nil)
)

// Serve accepts connections on ln and forwards each to target until ln is
// closed. It returns nil when Accept reports net.ErrClosed and a wrapped
// error for any other permanent accept error. Temporary accept errors (for
// example too many open files) are logged and retried with a short backoff.
//
// Every accepted connection is registered with f before Serve moves on, so
// once Serve has returned, its sessions are either over or tracked by Close.
// Serve never closes ln; the caller does.
func (f *Forwarder) Serve(ln net.Listener, r Route) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !isTemporary(err) {
				return fmt.Errorf("portmap.Serve: %w", err)
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else {
				delay = min(2*delay, time.Second)
			}
			f.logf("accept on %v: %v; retrying in %v", ln.Addr(), err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s := f.track(c)
		if s == nil {
			Abort(c)
			continue
		}
		go f.run(s, r, nil)
	}
}

// Handle dials r's target and splices c to it; it blocks until both
// directions have ended and both connections are closed. If the dial fails,
// c is reset. After Close, Handle resets c and returns at once.
func (f *Forwarder) Handle(c net.Conn, r Route) {
	s := f.track(c)
	if s == nil {
		Abort(c)
		return
	}
	done := make(chan struct{})
	f.run(s, r, func() { close(done) })
	<-done
}

// Active reports the number of sessions in flight (dialing or splicing).
func (f *Forwarder) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.active)
}

// Refused reports how many connections were reset for MaxSessions since f
// was created.
func (f *Forwarder) Refused() uint64 { return f.refused.Load() }

// Stats reports totals since f was created: sessions started, bytes from the
// tunnel side to local targets (bytesIn) and bytes from local targets back
// to the tunnel side (bytesOut). Byte counts include sessions still in
// flight, up to the last completed write.
func (f *Forwarder) Stats() (sessions uint64, bytesIn, bytesOut uint64) {
	return f.sessions.Load(), f.bytesIn.Load(), f.bytesOut.Load()
}

// Close resets every active session, cancels dials in progress and waits
// until all session goroutines have returned. Connections handed to Serve
// or Handle after Close are reset at once. Close does not close listeners
// given to Serve; their owners do. Close is idempotent and always returns nil.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		if f.cancel != nil {
			f.cancel()
		}
		for s := range f.active {
			Abort(s.client)
			if s.target != nil {
				Abort(s.target)
			}
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// track registers c as a new session. It returns nil if f is closed.
func (f *Forwarder) track(c net.Conn) *session {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if f.active == nil {
		f.active = make(map[*session]struct{})
		f.ctx, f.cancel = context.WithCancel(context.Background())
	}
	if f.MaxSessions > 0 && len(f.active) >= f.MaxSessions {
		f.refused.Add(1)
		f.refusedSince++
		if now := time.Now(); now.Sub(f.refusedLogged) >= time.Second {
			f.logf("%d sessions in flight (max_sessions): reset a new one from %v (%d reset since the last line; logged at most once a second)", f.MaxSessions, c.RemoteAddr(), f.refusedSince)
			f.refusedLogged, f.refusedSince = now, 0
		}
		return nil
	}
	s := &session{client: c}
	f.active[s] = struct{}{}
	f.wg.Add(1)
	f.sessions.Add(1)
	return s
}

// run dials r's target for session s and starts the splice; it returns
// once the splice runs (see startSplice: a held session has no goroutine of
// its own). When the session has ended it is unregistered and ended, if not
// nil, is called.
func (f *Forwarder) run(s *session, r Route, ended func()) {
	spliced := false
	defer func() {
		if !spliced {
			f.untrack(s, ended)
		}
	}()
	var src netip.Addr
	if f.LocalSource != nil {
		src = f.LocalSource()
	}
	target := r.target(src)

	f.mu.Lock()
	parent := f.ctx
	f.mu.Unlock()
	timeout := f.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	tc, err := f.dial(ctx, timeout, src, target)
	cancel()
	if err != nil {
		Abort(s.client)
		if parent.Err() != nil {
			return // Close cancelled the dial; nothing to report
		}
		if src.IsValid() {
			f.logf("session from %v: local target %s unreachable from %v: %v", s.client.RemoteAddr(), target, src, err)
		} else {
			f.logf("session from %v: local target %s unreachable: %v", s.client.RemoteAddr(), target, err)
		}
		return
	}

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		Abort(tc)
		Abort(s.client)
		return
	}
	s.target = tc
	f.mu.Unlock()

	spliced = true
	startSplice(s.client, tc, &f.bytesIn, &f.bytesOut, func(int64, int64, error) { f.untrack(s, ended) })
}

// untrack unregisters s and then calls ended, if not nil.
func (f *Forwarder) untrack(s *session, ended func()) {
	f.mu.Lock()
	delete(f.active, s)
	f.mu.Unlock()
	if ended != nil {
		ended()
	}
	f.wg.Done()
}

func (f *Forwarder) dial(ctx context.Context, timeout time.Duration, src netip.Addr, target string) (net.Conn, error) {
	if f.Dial != nil {
		return f.Dial(ctx, "tcp", target)
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: dialKeepAlive}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	return d.DialContext(ctx, "tcp", target)
}

// target is where r leads when dialed from src: r.Target, or for a target
// on the default host, src's address with the target's port.
func (r Route) target(src netip.Addr) string {
	if !src.IsValid() || !r.HostDefault {
		return r.Target
	}
	_, port, err := net.SplitHostPort(r.Target)
	if err != nil {
		return r.Target
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return r.Target
	}
	return net.JoinHostPort(src.String(), port)
}

func (f *Forwarder) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf("portmap: "+format, args...)
	}
}

// isTemporary reports whether an accept error is worth retrying.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Abort ends c with a reset where the connection supports one: Abort if c
// has it, SetLinger(0) and Close for a *net.TCPConn, else a plain Close.
func Abort(c net.Conn) {
	switch c := c.(type) {
	case Aborter:
		c.Abort()
	case *net.TCPConn:
		c.SetLinger(0)
		c.Close()
	default:
		c.Close()
	}
}

var errInvalidWrite = errors.New("invalid write result")

// smallSize is the buffer a session's read waits with (copyConn).
const smallSize = 2 << 10

var smallPool = sync.Pool{
	New: func() any {
		b := make([]byte, smallSize)
		return &b
	},
}

var bufPool = sync.Pool{
	New: func() any {
		b := make([]byte, bufSize)
		return &b
	},
}

// Splice copies a to b and b to a until both directions have ended, then
// closes both and returns the byte counts. EOF from one side becomes
// CloseWrite on the other (a side without CloseWrite is closed, ending the
// session, since the peer could not otherwise learn of the EOF); the other
// direction continues. An error in either direction resets both connections
// at once (see Aborter) and is returned, wrapped; errors caused by that
// teardown are not reported.
func Splice(a, b net.Conn) (aToB, bToA int64, err error) {
	return splice(a, b, nil, nil)
}

// splice is Splice with optional live counters for each direction.
func splice(a, b net.Conn, aToBCount, bToACount *atomic.Uint64) (aToB, bToA int64, err error) {
	done := make(chan struct{})
	startSplice(a, b, aToBCount, bToACount, func(x, y int64, e error) {
		aToB, bToA, err = x, y, e
		close(done)
	})
	<-done
	return aToB, bToA, err
}

// startSplice is splice without waiting: ended gets its results, once both
// directions have ended and both connections are closed. A direction whose
// source can tell when it is readable (notifierFor: the tunnel side, and a
// *net.TCPConn on Linux) has no goroutine while it waits for data; 1,500
// held sessions with two goroutines parked in Read each took 13 MB of
// stacks (8 KiB each: copying into the netstack is a deep call).
func startSplice(a, b net.Conn, aToBCount, bToACount *atomic.Uint64, ended func(aToB, bToA int64, err error)) {
	var (
		once  sync.Once
		first error // set once, by stop
	)
	stop := func(err error) {
		once.Do(func() {
			first = err
			if err != nil {
				Abort(a)
				Abort(b)
			} else {
				a.Close()
				b.Close()
			}
		})
	}

	var (
		aToB, bToA int64 // each written by its direction before it counts down left
		left       atomic.Int32
	)
	left.Store(2)
	end := func() {
		if left.Add(-1) != 0 {
			return
		}
		stop(nil)
		var err error
		if first != nil {
			err = fmt.Errorf("portmap.Splice: %w", first)
		}
		ended(aToB, bToA, err)
	}
	sa, sb := sideOf(a), sideOf(b)
	way(sb, sa, aToBCount, stop, func(n int64) { aToB = n; end() })
	way(sa, sb, bToACount, stop, func(n int64) { bToA = n; end() })
}

// side is one connection of a splice and how its bytes move: through a
// sockio.Socket where it is a socket of its own (the local target's: its
// system calls are much of the agent's CPU per request), else its own
// Read and Write.
type side struct {
	c  net.Conn
	rw io.ReadWriter
}

func sideOf(c net.Conn) side {
	if s := sockio.Of(c); s != nil {
		return side{c, s}
	}
	return side{c, c}
}

// way copies src to dst (see oneWay) and calls finish with the byte count
// when done: as a pump if src has a readNotifier, else in a goroutine.
func way(dst, src side, count *atomic.Uint64, stop func(error), finish func(n int64)) {
	if rn := notifierFor(src.c); rn != nil {
		p := &pump{dst: dst, src: src.rw, rn: rn, count: count, stop: stop, finish: finish}
		rn.WhenReadable(p.run)
		return
	}
	go func() { finish(oneWay(dst, src.rw, count, stop)) }()
}

// readNotifier is implemented by connections that can wait for data without
// a goroutine (the tunnel's *netstack.TCPConn). WhenReadable calls f once,
// in a new goroutine, as soon as a Read would not block, including after
// Close or Abort.
type readNotifier interface {
	WhenReadable(f func())
}

// pump copies one direction whose source is a readNotifier: each time data
// arrives a goroutine copies until a read comes back short, then waits
// again through WhenReadable. A held session's tunnel side thus costs
// neither a goroutine nor a buffer.
type pump struct {
	dst    side
	src    io.Reader
	rn     readNotifier
	count  *atomic.Uint64
	stop   func(error)
	finish func(n int64) // called once, when the direction has ended
	n      int64
}

func (p *pump) run() {
	n, err := copyConn(p.dst.rw, p.src, p.count, true)
	p.n += n
	if err == errWait {
		p.rn.WhenReadable(p.run)
		return
	}
	endWay(p.dst.c, err, p.stop)
	p.finish(p.n)
}

// oneWay copies src to dst. On EOF it half-closes dst; on error, or when dst
// cannot half-close, it calls stop.
func oneWay(dst side, src io.Reader, count *atomic.Uint64, stop func(error)) int64 {
	n, err := copyConn(dst.rw, src, count, false)
	endWay(dst.c, err, stop)
	return n
}

// endWay ends a direction whose copy returned err: on EOF (nil) it
// half-closes dst; on error, or when dst cannot half-close, it calls stop.
func endWay(dst net.Conn, err error, stop func(error)) {
	if err != nil {
		stop(err)
		return
	}
	cw, ok := dst.(closeWriter)
	if !ok {
		stop(nil)
		return
	}
	if err := cw.CloseWrite(); err != nil {
		stop(err)
	}
}

// errWait is copyConn's answer when src has (probably) no more data for now.
var errWait = errors.New("portmap: waiting for data")

// copyConn copies src to dst until src reports EOF (nil error) or either
// side fails. It adds each written chunk to count, if count is not nil.
// With untilShort it returns errWait after a read that did not fill its
// buffer, when src has most likely nothing more for now (a pump).
//
// Most sessions wait most of the time (a kept-alive XML-RPC connection, a
// WebUI page's long poll), and a waiting read holds its buffer: 1,500 held
// sessions with a 32 KiB buffer each way took the agent past its memory
// limit. So a read waits with a small buffer, and a read that fills it
// takes a pooled 256 KiB one (bufSize) for the reads that follow, until a read comes
// back short again.
//
// A dst that is a streamer (the tunnel side) is told while the copy streams:
// from a read that fills the pooled buffer until one comes back short
// again.
func copyConn(dst io.Writer, src io.Reader, count *atomic.Uint64, untilShort bool) (n int64, err error) {
	small := smallPool.Get().(*[]byte)
	defer smallPool.Put(small)
	var big *[]byte
	st, _ := dst.(streamer)
	streaming := false
	defer func() {
		if big != nil {
			bufPool.Put(big)
		}
		if streaming {
			st.Streaming(false)
		}
	}()
	for {
		buf := *small
		if big != nil {
			buf = *big
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if nw < 0 || nw > nr {
				nw, werr = 0, errInvalidWrite
			}
			n += int64(nw)
			if count != nil {
				count.Add(uint64(nw))
			}
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
		if untilShort && nr < len(buf) {
			return n, errWait
		}
		switch {
		case big == nil && nr == len(buf):
			big = bufPool.Get().(*[]byte) // a stream
		case big != nil && nr == len(buf) && st != nil && !streaming:
			st.Streaming(true) // and one that keeps coming
			streaming = true
		case big != nil && nr < smallSize:
			bufPool.Put(big) // quiet again
			big = nil
			if streaming {
				st.Streaming(false)
				streaming = false
			}
		}
	}
}
