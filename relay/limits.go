package relay

import (
	"container/list"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

const (
	// defaultConnsPerAddress and defaultRequestsPerSecond are the limits
	// of Config.LimitConnsPerAddress and LimitRequestsPerSecond. A browser
	// opens 6 connections per host and the CCU's WebUI loads ~100 files on
	// its first page: 20 a second with bursts of 200 serve that, and slow a
	// name-guesser down to 20 guesses a second.
	defaultConnsPerAddress   = 64
	defaultRequestsPerSecond = 20
	// burstSeconds: an address may spend this many seconds' worth of
	// its request rate at once.
	burstSeconds = 10
	// limitLogEvery: an address over a limit is logged at most this often.
	limitLogEvery = 30 * time.Second
	// overLimitDeadline bounds the time a connection over the limit may
	// take to be told so.
	overLimitDeadline = 5 * time.Second
	// sweepEvery: entries of addresses with no connection and a full
	// bucket are dropped at most this often.
	sweepEvery = time.Minute
)

// limiter keeps the per-source-address limits of the public ports: open
// connections and a token bucket of requests. IPv4 addresses count one by
// one, IPv6 addresses by /64, the smallest network one user usually has.
type limiter struct {
	// rates are swapped whole by set (Reload); each use loads them once.
	rates atomic.Pointer[rates]
	now   func() time.Time

	mu        sync.Mutex
	addrs     map[netip.Prefix]*addrState
	lastSweep time.Time
}

// addrState is one source address's share.
type addrState struct {
	key   netip.Prefix
	conns atomic.Int32 // changed under limiter.mu

	mu      sync.Mutex
	tokens  float64
	last    time.Time // when tokens was last filled up
	lastLog time.Time
}

// rates are limit_conns_per_address and limit_requests_per_second.
type rates struct {
	maxConns int
	rate     float64 // requests a second
	burst    float64
}

func newLimiter(maxConns int, rate float64, now func() time.Time) *limiter {
	l := &limiter{now: now, addrs: map[netip.Prefix]*addrState{}}
	l.set(maxConns, rate)
	return l
}

// set makes maxConns and rate the limits from now on (0: the default).
// A lower maxConns closes no connection open beyond it: it refuses the
// next ones. A bucket holding more than the new burst keeps its tokens
// until its next request, which takes them down to it.
func (l *limiter) set(maxConns int, rate float64) {
	if maxConns <= 0 {
		maxConns = defaultConnsPerAddress
	}
	if rate <= 0 {
		rate = defaultRequestsPerSecond
	}
	l.rates.Store(&rates{maxConns: maxConns, rate: rate, burst: rate * burstSeconds})
}

// addrKey is the share a remote address counts in.
func addrKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// open counts a new connection from key in and reports whether it is
// within the limit; either way, close must count it out.
func (l *limiter) open(key netip.Prefix) (st *addrState, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.addrs) > 0 && now.Sub(l.lastSweep) >= sweepEvery {
		l.lastSweep = now
		for k, st := range l.addrs {
			if st.conns.Load() == 0 && st.full(now, l) {
				delete(l.addrs, k)
			}
		}
	}
	st = l.addrs[key]
	if st == nil {
		st = &addrState{key: key, tokens: l.rates.Load().burst, last: now}
		l.addrs[key] = st
	}
	return st, int(st.conns.Add(1)) <= l.rates.Load().maxConns
}

// close counts a connection out.
func (l *limiter) close(st *addrState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st.conns.Add(-1) == 0 && st.full(l.now(), l) {
		delete(l.addrs, st.key)
	}
}

// full reports whether the bucket would be full now: forgetting the
// address loses nothing.
func (st *addrState) full(now time.Time, l *limiter) bool {
	r := l.rates.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.tokens+now.Sub(st.last).Seconds()*r.rate >= r.burst
}

// allow takes a token for one request, if there is one.
func (l *limiter) allow(st *addrState) bool {
	now, r := l.now(), l.rates.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	if d := now.Sub(st.last); d > 0 {
		st.tokens = min(r.burst, st.tokens+d.Seconds()*r.rate)
		st.last = now
	}
	if st.tokens < 1 {
		return false
	}
	st.tokens--
	return true
}

// shouldLog reports whether a refusal of this address may be logged now:
// at most once per limitLogEvery.
func (l *limiter) shouldLog(st *addrState) bool {
	now := l.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.lastLog.IsZero() && now.Sub(st.lastLog) < limitLogEvery {
		return false
	}
	st.lastLog = now
	return true
}

// publicListener hands the public port's HTTP server connections that
// the relay tracks (Close closes them) and counts per source address.
type publicListener struct {
	net.Listener
	s       *Server
	backoff acceptBackoff
}

func (ln *publicListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !ln.backoff.wait(err, ln.s.closing) {
				return nil, err
			}
			continue // Go's server would log every one
		}
		ln.backoff.ok()
		if !ln.s.track(c) {
			continue
		}
		key := addrKey(c.RemoteAddr())
		slot := ln.s.publicGate.admit(key, func() { c.Close() })
		if slot == nil {
			abort(c)
			ln.s.untrack(c)
			continue
		}
		pc := &publicConn{Conn: c, rw: c, s: ln.s, slot: slot}
		if sock := sockio.Of(c); sock != nil {
			pc.rw = sock
		}
		pc.addr, pc.withinLimit = ln.s.limits.open(key)
		if !pc.withinLimit {
			c.SetDeadline(time.Now().Add(overLimitDeadline))
		}
		return pc, nil
	}
}

// abort closes c with a reset: a connection refused for a limit costs the
// relay no time in TIME_WAIT.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// publicConn is a user's connection to a public port.
type publicConn struct {
	net.Conn
	rw          io.ReadWriter // Conn, or its sockio.Socket
	s           *Server
	addr        *addrState
	slot        *gateSlot // in Server.publicGate
	withinLimit bool      // false: this connection is over its address's limit
	in, out     atomic.Int64
	// auditIn and auditOut are in and out at the last log line; only
	// the connection's request handler (one at a time) uses them.
	auditIn, auditOut int64
	closeOnce         sync.Once
	// pools are this connection's own connections to hubs (hubProxy).
	pools userPools

	mu sync.Mutex
	// Guarded by mu:
	access          *access        // the decision its requests go on (auth.go)
	closed          bool           // Close has begun
	rec             *sessionRecord // the audit record being built (audit.go)
	markIn, markOut int64          // in and out when the last record ended
}

func (c *publicConn) Read(p []byte) (int, error) {
	n, err := c.rw.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *publicConn) Write(p []byte) (int, error) {
	n, err := c.rw.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// cut ends the connection because the access it went on was taken away:
// its requests in flight fail, its WebSockets close.
func (c *publicConn) cut() {
	c.endRecord("cut")
	// A reset, not a FIN: what the hub sent and the relay had not yet
	// passed on (up to the socket's send buffer, megabytes) must not
	// reach a user whose access ended.
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (c *publicConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.s.live.drop(c)
		c.endRecord("ok")
		c.pools.close()
		c.s.limits.close(c.addr)
		c.s.untrack(c.Conn)
		c.s.publicGate.release(c.slot)
	})
	return nil
}

// Overall limits. A relay serves on file descriptors: each connection is
// one, and when they run out every accept fails (EMFILE) and a normal
// request waits seconds (measured: 19,990 half-sent request heads filled
// 20,000). So each side gets a share of the process's RLIMIT_NOFILE
// (defaultConnLimits), and a connection over it is made room for by
// closing the oldest one that holds nothing: a public connection before its
// first request head or idle between requests, an agent connection before
// its Hello or unproven. A flood of such connections pushes out only its
// own; hubs online and requests in flight are never closed for room.
const (
	// fdReserve is left to the relay's own files (store, log, listeners,
	// the netstack) below the descriptor limit.
	fdReserve = 256
	// publicShare is the public ports' share of the rest, in tenths; the
	// agent port gets the remainder: a hub's one connection lasts, a
	// user's come and go.
	publicShare = 4
	// defaultPreHelloPerAddress is Config.LimitAgentPreHelloPerAddress's
	// default: agents say Hello within a round trip, so even a network of
	// many hubs behind one address has few in that state at once.
	defaultPreHelloPerAddress = 16
	// defaultSessionsPerHub is Config.LimitSessionsPerHub's default: the
	// brief wants 200 concurrent sessions through one hub without an error.
	defaultSessionsPerHub = 256
	// limitLogOnce: an overall limit is logged at most this often, with a
	// count of what was left out.
	limitLogOnce = time.Second
)

// defaultConnLimits are Config.LimitPublicConns and LimitAgentConns when
// unset, from the descriptor limit nofile (0: unknown).
func defaultConnLimits(nofile uint64) (public, agent int) {
	if nofile == 0 || nofile > 1<<20 {
		nofile = 1 << 20
	}
	usable := int(nofile) - fdReserve
	if usable < 20 {
		usable = 20
	}
	public = usable * publicShare / 10
	return public, usable - public
}

// connGate bounds one side's open connections. Each holds a slot from
// admit to done; a slot that holds nothing yet (spare) may be taken back,
// oldest first, for a new connection when all are in use. With perAddr set,
// an address may hold at most that many spare slots: more are refused.
type connGate struct {
	what string // "public" or "agent", in log lines
	key  string // the config key, in log lines
	// max and perAddr (0: no per-address bound on spare slots) are set
	// anew by Reload; a lower max closes nothing by itself (set).
	max, perAddr atomic.Int64
	// log has each message at most once a second: refusals for perAddr,
	// refusals for max, and connections closed for room.
	log *slog.Logger

	mu     sync.Mutex
	open   int
	spare  list.List // of *gateSlot, oldest first
	byAddr map[netip.Prefix]int

	// For the metrics: connections closed for room, refused at max, and
	// refused for their address's perAddr.
	evicted, refused, refusedAddr atomic.Uint64
}

// gateSlot is one connection's place in a connGate.
type gateSlot struct {
	addr  netip.Prefix
	close func() // closes the connection, for room; done still follows
	el    *list.Element
	done  bool
	// counted: the slot counts in its address's spare slots (until
	// saidHello, busy or done).
	counted bool
}

func newConnGate(what, key string, max, perAddr int, log *slog.Logger) *connGate {
	g := &connGate{what: what, key: key, byAddr: map[netip.Prefix]int{}, log: logger.Limited(log, limitLogOnce)}
	g.set(max, perAddr)
	return g
}

// set makes max and perAddr the limits from now on. With more slots open
// than a lower max, nothing is closed: each new connection then takes an
// idle one's slot (as at any full gate) or is refused, until the count
// is within max. A lower perAddr refuses an address's next connections.
func (g *connGate) set(max, perAddr int) {
	g.max.Store(int64(max))
	g.perAddr.Store(int64(perAddr))
}

// admit gives a new connection from addr a spare slot, closing the oldest
// spare connection for room when every slot is taken. It returns nil when
// there is no room, or addr holds too many spare slots already: the caller
// closes the connection.
func (g *connGate) admit(addr netip.Prefix, close func()) *gateSlot {
	max, perAddr := int(g.max.Load()), int(g.perAddr.Load())
	g.mu.Lock()
	if perAddr > 0 && g.byAddr[addr] >= perAddr {
		g.mu.Unlock()
		g.refusedAddr.Add(1)
		g.log.Warn("limits: too many connections from one address have not said Hello yet: closing new ones", "listener", g.what, "limit", "limit_agent_prehello_per_address", "max", perAddr, "address", addr.String())
		return nil
	}
	var victim *gateSlot
	if g.open >= max {
		front := g.spare.Front()
		if front == nil {
			g.mu.Unlock()
			g.refused.Add(1)
			g.log.Warn("limits: all connections in use: closing new ones", "listener", g.what, "limit", g.key, "max", max)
			return nil
		}
		victim = front.Value.(*gateSlot)
		g.unspareLocked(victim)
		// The victim keeps its slot until done: open stays within max
		// plus the victims being closed right now.
	}
	sl := &gateSlot{addr: addr, close: close, counted: perAddr > 0}
	g.open++
	g.spareLocked(sl)
	if sl.counted {
		g.byAddr[addr]++
	}
	g.mu.Unlock()
	if victim != nil {
		g.evicted.Add(1)
		g.log.Warn("limits: all connections open: closed the oldest idle one for a new one", "listener", g.what, "limit", g.key, "max", max)
		victim.close()
	}
	return sl
}

// spare marks sl's connection as holding nothing: it may be closed for room.
func (g *connGate) markSpare(sl *gateSlot) {
	g.mu.Lock()
	if !sl.done && sl.el == nil {
		g.spareLocked(sl)
	}
	g.mu.Unlock()
}

// busy marks sl's connection as in use: it is not closed for room.
func (g *connGate) markBusy(sl *gateSlot) {
	g.mu.Lock()
	g.unspareLocked(sl)
	g.mu.Unlock()
}

// release gives sl's slot back; it is idempotent.
func (g *connGate) release(sl *gateSlot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sl.done {
		return
	}
	sl.done = true
	g.unspareLocked(sl)
	g.open--
}

// saidHello stops counting sl in its address's spare slots: its agent has
// said Hello for a hub the relay serves. It may still be closed for room
// until its handshake proves the hub (markBusy).
func (g *connGate) saidHello(sl *gateSlot) {
	g.mu.Lock()
	g.uncountLocked(sl)
	g.mu.Unlock()
}

func (g *connGate) spareLocked(sl *gateSlot) {
	sl.el = g.spare.PushBack(sl)
}

func (g *connGate) unspareLocked(sl *gateSlot) {
	g.uncountLocked(sl)
	if sl.el == nil {
		return
	}
	g.spare.Remove(sl.el)
	sl.el = nil
}

func (g *connGate) uncountLocked(sl *gateSlot) {
	if !sl.counted {
		return
	}
	sl.counted = false
	if g.byAddr[sl.addr]--; g.byAddr[sl.addr] <= 0 {
		delete(g.byAddr, sl.addr)
	}
}

// inUse is the number of slots held now.
func (g *connGate) inUse() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// setLimits makes c's limit_* keys the limits from now on: at New, and at
// every Reload. Each is read through an atomic, so the request path takes
// no lock for it. A lowered limit closes nothing open beyond it; it
// applies to the connections and requests that come next.
func (s *Server) setLimits(c *Config) {
	s.limits.set(c.LimitConnsPerAddress, c.LimitRequestsPerSecond)
	pub, ag, perAddr, perHub := c.connLimits()
	s.publicGate.set(pub, 0)
	s.agentGate.set(ag, perAddr)
	s.sessions.max.Store(int64(perHub))
}

// hubSessions counts the requests in flight to each hub (a WebSocket or an
// upgraded connection for as long as it lasts), so that one hub's users
// cannot take every connection the relay has from the others.
type hubSessions struct {
	max atomic.Int64 // set anew by Reload; a lower one ends no session
	log *slog.Logger // rate-limited per hub by lastLog

	mu      sync.Mutex
	n       map[*hub]int
	lastLog map[*hub]time.Time
}

func newHubSessions(max int, log *slog.Logger) *hubSessions {
	hs := &hubSessions{log: log, n: map[*hub]int{}, lastLog: map[*hub]time.Time{}}
	hs.max.Store(int64(max))
	return hs
}

// enter counts a session to h in; false: h has max already.
func (hs *hubSessions) enter(h *hub, now time.Time) bool {
	max := int(hs.max.Load())
	hs.mu.Lock()
	if hs.n[h] < max {
		hs.n[h]++
		hs.mu.Unlock()
		return true
	}
	logIt := now.Sub(hs.lastLog[h]) >= limitLogOnce
	if logIt {
		hs.lastLog[h] = now
	}
	hs.mu.Unlock()
	if logIt {
		hs.log.Warn("limits: a hub's sessions through the relay are all in use: refusing new ones", logger.Hub, h.Name, "limit", "limit_sessions_per_hub", "max", max)
	}
	return false
}

// leave counts a session to h out.
func (hs *hubSessions) leave(h *hub) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.n[h]--; hs.n[h] <= 0 {
		delete(hs.n, h)
		delete(hs.lastLog, h)
	}
}

// acceptBackoff paces a listener's retries after accept errors (out of
// file descriptors, mostly): 5 ms doubling to 1 s, as Go's HTTP server
// does, logged at most once a second with a count.
type acceptBackoff struct {
	what   string
	log    *slog.Logger
	delay  time.Duration
	errors int // since the last line
	last   time.Time
}

// wait logs err (rate-limited) and waits before the next accept; false:
// stop closed meanwhile.
func (b *acceptBackoff) wait(err error, stop <-chan struct{}) bool {
	if b.delay == 0 {
		b.delay = 5 * time.Millisecond
	} else {
		b.delay = min(2*b.delay, time.Second)
	}
	b.errors++
	if now := time.Now(); now.Sub(b.last) >= time.Second {
		b.log.Warn("accept failed; retrying", "listener", b.what, logger.Err, err, "errors", b.errors, "retry_in", b.delay.String())
		b.last, b.errors = now, 0
	}
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// ok resets the backoff after an accept that worked.
func (b *acceptBackoff) ok() { b.delay = 0 }
