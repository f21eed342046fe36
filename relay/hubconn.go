package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/vpn/netstack"
)

// The hub leg of a request: the relay's own HTTP/1.1 client, in place of
// http.Transport. Transport hands each request from the handler's
// goroutine to its connection's write loop and the answer back from its
// read loop: two goroutine wake-ups per request, each a scheduler hand-off
// that cost CPU and latency (issue 18: 13 % of a small request's CPU in
// the whole path). Here the handler's goroutine writes the request and
// reads the answer itself, with net/http's own wire code
// ((*http.Request).Write, http.ReadResponse):
//
//  1. RoundTrip takes the user connection's kept connection to the hub, if
//     it is idle, of the hub's current agent (goneAt) and not closed by
//     the hub meanwhile (Readable), or dials one to the hub's tunnel
//     address: nothing else is ever dialled.
//  2. A request without a body (GET, HEAD: the common case) is written
//     and flushed on the handler's goroutine, and so is one with a small
//     body that the user has sent whole (an app's XML-RPC or JSON-RPC
//     call: sentBody), head and body in one write. Any other body is
//     written by a goroutine of its own, so that a hub that answers before
//     it has read the whole body (413) is read meanwhile rather than
//     deadlocked; the hub gets the body as the user sends it, and a body
//     that breaks off (the user left, broken chunks) closes the connection
//     to the hub at once rather than leave the hub waiting for the rest.
//  3. The answer's head is read on the handler's goroutine; 1xx answers go
//     on to the user (ReverseProxy's Got1xxResponse) and a 100 lets the body
//     go (Expect: 100-continue, else after continueTimeout).
//  4. The body, read to its end, hands the connection back for the user
//     connection's next request; an answer cut short, an error, a
//     Connection: close or a body that ran to the hub's EOF closes it. A
//     101 takes the connection out of the pool for the upgraded protocol.
//
// One timer per connection, made at its dial and never per request, closes
// it when idle for idleTimeout or when the hub sends no answer head within
// answerTimeout; it is moved only when it would fire too late, so a busy
// connection does not touch it. The user going away (the request's context
// ends) closes the connection through context.AfterFunc.
//
// Measured against Transport (BenchmarkFullPathRequest/parallel-16, CPU
// profile samples labelled side=relay, 3 runs each, loaded machine): 204 →
// 170 µs of relay CPU a request; 180 → 152 allocations a request in the
// whole path.

// maxHubHead bounds an answer head from a hub (Transport's default is
// 10 MiB; a CCU's heads are well under 1 KiB).
const maxHubHead = 1 << 20

// maxSentBody bounds the request body that sentBody reads before the
// request goes to the hub.
const maxSentBody = 16 << 10

// errUserBody is a request whose body broke off on the user's side: the
// user's fault or their network's, not the hub's.
var errUserBody = errors.New("relay: the user's request body broke off")

// errRetry is a reused connection that the hub had closed before it read
// the request: the request, which has no body and changes nothing, goes
// again on a new connection (as Transport does).
var errRetry = errors.New("relay: the hub closed a kept connection")

type hubConnState uint8

const (
	connIdle     hubConnState = iota // in its pool, waiting for a request
	connAwait                        // a request is being sent or awaits its answer head
	connBody                         // the answer's body is being read
	connUpgraded                     // a 101's: the proxy owns it now
	connClosed
)

// hubConn is one connection from the relay to a hub, kept for one user
// connection's requests to that hub, one at a time.
type hubConn struct {
	conn   net.Conn // a *trackedConn
	raw    net.Conn // the netstack connection under it
	hub    *hub
	pools  *userPools
	goneAt time.Time // the hub's goneAt when it was dialled
	p      *hubProxy
	rd     hubReader
	br     *bufio.Reader
	bw     *bufio.Writer
	timer  *time.Timer // made at the dial, moved only when too late

	mu sync.Mutex
	// Guarded by mu:
	state    hubConnState
	due      time.Time // when an idle or awaiting connection is closed
	armedFor time.Time // when timer fires; zero: not known to be armed
	timedOut bool      // closed for want of an answer head

	userErr error // the user's body broke off (userBody)

	// Used by the request's goroutine only:
	body      hubBody
	stopWatch func() bool // ends the request's context.AfterFunc
	keep      bool        // the connection may carry another request
	writer    chan error  // the body writer's result; nil without a body
	cont      chan bool   // Expect: 100-continue: true sends the body
}

// hubReader is what a connection's bufio.Reader reads: it counts the bytes
// of each answer and bounds its head.
type hubReader struct {
	c     net.Conn
	n     int64 // bytes read since the request was sent
	limit int64 // while > 0: bytes left for the head
}

var errHeadTooLarge = fmt.Errorf("relay: the hub's answer head is over %d bytes", maxHubHead)

func (r *hubReader) Read(p []byte) (int, error) {
	if r.limit > 0 && int64(len(p)) > r.limit {
		p = p[:r.limit]
	} else if r.limit < 0 {
		return 0, errHeadTooLarge
	}
	n, err := r.c.Read(p)
	r.n += int64(n)
	if r.limit > 0 {
		if r.limit -= int64(n); r.limit == 0 {
			r.limit = -1
		}
	}
	return n, err
}

// hubWriter is what a connection's bufio.Writer writes to. Its ReadFrom,
// which bufio.Writer calls with a request's body once the head is flushed,
// sends the body on as it comes from the user, not 4 KiB at a time (as
// Transport's connection writer does).
type hubWriter struct{ c net.Conn }

func (w hubWriter) Write(p []byte) (int, error) { return w.c.Write(p) }

func (w hubWriter) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{w.c}, r, *bp)
}

// readable is what a netstack connection says about itself without
// blocking (netstack.TCPConn).
type readable interface{ Readable() bool }

var _ readable = (*netstack.TCPConn)(nil) // or a closed kept connection goes unseen

// userPools are one user connection's kept connections to hubs, one per
// hub: its requests come one at a time (HTTP/1.1), so one is enough. The
// map is locked anyway: Close, timers and cuts come from other goroutines.
type userPools struct {
	mu     sync.Mutex
	conns  map[*hub]*hubConn
	closed bool
}

// take returns u's connection to h, if it may carry a request now, marked
// busy; a connection of the hub's former agent or one the hub has closed
// is closed.
func (u *userPools) take(h *hub, goneAt time.Time) *hubConn {
	u.mu.Lock()
	c := u.conns[h]
	u.mu.Unlock()
	if c == nil {
		return nil
	}
	if c.goneAt.Equal(goneAt) && c.takeIdle() {
		return c
	}
	c.close()
	return nil
}

// put keeps c as u's connection to its hub: at most maxHubsPerUserConn
// hubs, so a connection that walks through hub names holds no more than
// that many tunnel connections.
func (u *userPools) put(c *hubConn) {
	var drop []*hubConn
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		c.keep = false
		return
	}
	if u.conns == nil {
		u.conns = map[*hub]*hubConn{}
	}
	if old := u.conns[c.hub]; old != nil {
		drop = append(drop, old)
	} else if len(u.conns) >= maxHubsPerUserConn {
		for _, old := range u.conns {
			drop = append(drop, old)
		}
		clear(u.conns)
	}
	u.conns[c.hub] = c
	u.mu.Unlock()
	for _, old := range drop {
		old.close()
	}
}

// remove forgets c, if it is still u's connection to its hub.
func (u *userPools) remove(c *hubConn) {
	u.mu.Lock()
	if u.conns[c.hub] == c {
		delete(u.conns, c.hub)
	}
	u.mu.Unlock()
}

// drop closes u's connection to h, if idle: after an error its state is
// unknown.
func (u *userPools) drop(h *hub) {
	u.mu.Lock()
	c := u.conns[h]
	u.mu.Unlock()
	if c != nil && c.takeIdle() {
		c.close()
	}
}

// close closes the connections of a user connection that has ended (or
// was cut): a request in flight on one fails at once.
func (u *userPools) close() {
	u.mu.Lock()
	u.closed = true
	conns := make([]*hubConn, 0, len(u.conns))
	for _, c := range u.conns {
		conns = append(conns, c)
	}
	clear(u.conns)
	u.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// hubConnTo returns a connection to rt's hub for a request: the kept one,
// or a new one. reused says it has carried a request before.
func (p *hubProxy) hubConnTo(ctx context.Context, rt *route, addr netip.AddrPort, fresh bool) (c *hubConn, reused bool, err error) {
	h := rt.hub
	h.mu.Lock()
	goneAt := h.goneAt
	h.mu.Unlock()
	if !fresh {
		if c = rt.pools.take(h, goneAt); c != nil {
			return c, true, nil
		}
	}
	dctx, cancel := context.WithTimeout(ctx, hubDialTimeout)
	nc, err := p.s.stack.DialTCP(dctx, addr)
	cancel()
	if err != nil {
		return nil, false, err
	}
	if !p.s.track(nc) {
		return nil, false, net.ErrClosed
	}
	tc := &trackedConn{Conn: nc, s: p.s}
	c = &hubConn{conn: tc, raw: nc, hub: h, pools: rt.pools, goneAt: goneAt, p: p, state: connAwait, keep: true}
	c.rd.c = tc
	c.br = bufio.NewReaderSize(&c.rd, 4<<10)
	c.bw = bufio.NewWriterSize(hubWriter{tc}, 4<<10)
	c.timer = time.AfterFunc(p.answerTimeout, c.onTimer)
	c.armedFor = time.Now().Add(p.answerTimeout)
	rt.pools.put(c)
	return c, false, nil
}

// takeIdle marks an idle connection busy, if the hub has not closed it
// meanwhile (anything readable on an idle connection is its end or junk).
func (c *hubConn) takeIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connIdle {
		return false
	}
	if r, ok := c.raw.(readable); ok && r.Readable() || c.br.Buffered() > 0 {
		return false
	}
	c.state = connAwait
	c.keep = true
	return true
}

// setLocked moves c to st, to be closed at due if that is not zero.
func (c *hubConn) setLocked(st hubConnState, due time.Time) {
	c.state, c.due = st, due
	if !due.IsZero() && (c.armedFor.IsZero() || due.Before(c.armedFor)) {
		c.timer.Reset(time.Until(due))
		c.armedFor = due
	}
}

// onTimer closes a connection idle or awaiting an answer past its due
// time, or moves the timer to the due time.
func (c *hubConn) onTimer() {
	c.mu.Lock()
	c.armedFor = time.Time{}
	if c.state != connIdle && c.state != connAwait {
		c.mu.Unlock()
		return
	}
	if wait := time.Until(c.due); wait > 0 {
		c.timer.Reset(wait)
		c.armedFor = c.due
		c.mu.Unlock()
		return
	}
	c.timedOut = c.state == connAwait
	c.mu.Unlock()
	c.close()
}

// close closes c for good and forgets it; safe from any goroutine, and
// more than once.
func (c *hubConn) close() {
	c.mu.Lock()
	if c.state == connClosed {
		c.mu.Unlock()
		return
	}
	c.state = connClosed
	c.mu.Unlock()
	c.timer.Stop()
	c.pools.remove(c)
	c.conn.Close()
}

// sentBody reads, in one read, what the user has sent so far of a small
// request body of known length (≤ maxSentBody, no Expect: 100-continue,
// which waits for the hub's word first). whole says that was all of it:
// the request returned carries it in memory, and goes out head and body
// in one write on the handler's goroutine. Else the part read goes first
// and the rest as the user sends it. The read waits only for the body's
// first bytes, which a client sends right after the head.
//
// Measured (BenchmarkKeptAliveRequest/relay/POST, a 250-byte body, 3
// alternated runs): 145–168 µs a request with the body writer's goroutine
// and the head flushed apart from the body (two segments through the
// tunnel), 123–139 µs this way; the tunnel alone takes 84–88.
func sentBody(r *http.Request) (out *http.Request, whole bool, err error) {
	if r.Body == nil || r.ContentLength <= 0 || r.ContentLength > maxSentBody || hasToken(r.Header.Values("Expect"), "100-continue") {
		return r, false, nil
	}
	buf := make([]byte, r.ContentLength)
	n, err := r.Body.Read(buf)
	if err == io.EOF && n < len(buf) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		return nil, false, fmt.Errorf("%w: %v", errUserBody, err)
	}
	out = new(http.Request)
	*out = *r
	if n == len(buf) {
		out.Body = io.NopCloser(bytes.NewReader(buf)) // in memory: Request.Write sends head and body together
		return out, true, nil
	}
	out.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf[:n]), r.Body), r.Body}
	return out, false, nil
}

// userBody is a request's body as the body writer reads it from the user:
// a read error other than its end closes the connection to the hub.
type userBody struct {
	io.ReadCloser
	c *hubConn
}

func (b userBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.c.mu.Lock()
		b.c.userErr = err
		b.c.mu.Unlock()
		b.c.close()
	}
	return n, err
}

// roundTrip sends r on c and reads its answer's head. reused says c has
// carried a request before: if the hub had closed it, errRetry. whole
// says r's body, if any, is in memory (sentBody).
func (c *hubConn) roundTrip(r *http.Request, reused, whole bool) (*http.Response, error) {
	ctx := r.Context()
	c.mu.Lock()
	c.setLocked(connAwait, time.Now().Add(c.p.answerTimeout))
	c.mu.Unlock()
	c.stopWatch = context.AfterFunc(ctx, c.close)
	c.rd.n, c.rd.limit = 0, maxHubHead
	c.writer, c.cont = nil, nil

	var err error
	if r.Body == nil || whole {
		if err = r.Write(c.bw); err == nil {
			err = c.bw.Flush()
		}
	} else {
		c.writer = make(chan error, 1)
		w := *r // ReverseProxy reads r.Body again after RoundTrip
		w.Body = userBody{ReadCloser: r.Body, c: c}
		if r.ProtoAtLeast(1, 1) && hasToken(r.Header.Values("Expect"), "100-continue") {
			c.cont = make(chan bool, 1)
			w.Body = &continueBody{ReadCloser: w.Body, cont: c.cont, timeout: c.p.continueTimeout}
		}
		go c.writeRequest(&w, c.writer)
	}
	var resp *http.Response
	if err == nil {
		resp, err = c.readHead(r)
	}
	if err != nil {
		return nil, c.fail(r, reused, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		c.stopWatch() // ReverseProxy watches the context of an upgrade itself
		c.mu.Lock()
		up := c.state != connClosed
		if up {
			c.state = connUpgraded
		}
		c.mu.Unlock()
		c.timer.Stop()
		c.pools.remove(c)
		if !up {
			return nil, c.fail(r, false, net.ErrClosed)
		}
		// ReverseProxy refuses a switch to another protocol than asked
		// for without closing the body: refused here, it is closed.
		if want := r.Header.Get("Upgrade"); want == "" || !strings.EqualFold(want, resp.Header.Get("Upgrade")) || !hasToken(resp.Header.Values("Connection"), "upgrade") {
			c.conn.Close()
			return nil, fmt.Errorf("relay: the hub switched to protocol %q, not the %q asked for", resp.Header.Get("Upgrade"), want)
		}
		resp.Body = &upgradedBody{br: c.br, Conn: c.conn}
		return resp, nil
	}
	c.keep = c.keep && !resp.Close && !r.Close
	if resp.Body == http.NoBody {
		c.finish(true)
		return resp, nil
	}
	c.mu.Lock()
	c.setLocked(connBody, time.Time{})
	c.mu.Unlock()
	c.body = hubBody{c: c, rc: resp.Body, ctx: ctx}
	resp.Body = &c.body
	return resp, nil
}

// writeRequest writes a request with a body, on a goroutine of its own.
func (c *hubConn) writeRequest(r *http.Request, done chan<- error) {
	err := r.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	done <- err
}

// readHead reads the head of r's answer, passing 1xx answers on.
func (c *hubConn) readHead(r *http.Request) (*http.Response, error) {
	for n1xx := 0; ; n1xx++ {
		resp, err := http.ReadResponse(c.br, r)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			c.rd.limit = 0
			if c.cont != nil {
				// A final answer before 100 Continue: the body is not
				// sent, and the connection cannot carry another request.
				c.cont <- false
				c.cont = nil
				c.keep = false
			}
			return resp, nil
		}
		if n1xx >= 5 {
			return nil, errors.New("relay: the hub sent too many 1xx answers")
		}
		if trace := httptrace.ContextClientTrace(r.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
		if code == http.StatusContinue && c.cont != nil {
			c.cont <- true
			c.cont = nil
		}
		c.rd.limit = maxHubHead
	}
}

// fail closes c after a request on it failed and says why, in the words
// ReverseProxy's ErrorHandler and the log expect.
func (c *hubConn) fail(r *http.Request, reused bool, err error) error {
	if c.cont != nil {
		c.cont <- false
		c.cont = nil
	}
	c.stopWatch()
	c.mu.Lock()
	timedOut, userErr := c.timedOut, c.userErr
	c.mu.Unlock()
	c.close()
	switch {
	case r.Context().Err() != nil:
		return r.Context().Err()
	case userErr != nil:
		return fmt.Errorf("%w: %v", errUserBody, userErr)
	case timedOut:
		return fmt.Errorf("relay: the hub sent no answer within %v", c.p.answerTimeout)
	case reused && c.rd.n == 0 && r.Body == nil && idempotent(r):
		return errRetry
	}
	return err
}

// finish ends a request on c: the connection waits for the next one if
// the answer was read to its end (ok), nothing asked to close it and the
// request's body went out whole; else it is closed.
func (c *hubConn) finish(ok bool) {
	watched := c.stopWatch()
	ok = ok && watched && c.keep
	if ok && c.writer != nil {
		select {
		case err := <-c.writer:
			ok = err == nil
		default:
			ok = false // the hub answered before it had the whole body
		}
	}
	if ok {
		c.mu.Lock()
		if c.state != connClosed {
			c.setLocked(connIdle, time.Now().Add(c.p.idleTimeout))
		}
		c.mu.Unlock()
		return
	}
	c.close()
}

// hubBody is an answer's body: read to its end, it hands its connection
// back; closed before, it closes it.
type hubBody struct {
	c    *hubConn
	rc   io.ReadCloser
	ctx  context.Context // the request's
	done bool
}

func (b *hubBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.done = true
		b.c.finish(err == io.EOF)
		if err != io.EOF && b.ctx.Err() != nil {
			// The user left and close cut the read short. Say so:
			// ReverseProxy logs any other error as the hub's.
			err = b.ctx.Err()
		}
	}
	return n, err
}

func (b *hubBody) Close() error {
	if !b.done {
		b.done = true
		b.c.finish(false)
	}
	return nil
}

// upgradedBody is a 101's body, as ReverseProxy wants it: the connection
// itself, its buffered bytes first.
type upgradedBody struct {
	br *bufio.Reader
	net.Conn
}

func (b *upgradedBody) Read(p []byte) (int, error) { return b.br.Read(p) }

// continueBody holds a request's body back until the hub says 100
// Continue, or for timeout; a final answer first means never.
type continueBody struct {
	io.ReadCloser
	cont    chan bool
	timeout time.Duration
	decided bool
}

var errNoContinue = errors.New("relay: the hub answered before it wanted the body")

func (b *continueBody) Read(p []byte) (int, error) {
	if !b.decided {
		b.decided = true
		// Request.Write has flushed the head (FlushHeaders).
		t := time.NewTimer(b.timeout)
		select {
		case send := <-b.cont:
			if !send {
				t.Stop()
				return 0, errNoContinue
			}
		case <-t.C:
		}
		t.Stop()
	}
	return b.ReadCloser.Read(p)
}

// idempotent reports whether r may be sent again (RFC 9110 9.2.2), as
// Transport decides.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}
