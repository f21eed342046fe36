package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
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
	maxConns int
	rate     float64 // requests a second
	burst    float64
	now      func() time.Time

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

func newLimiter(maxConns int, rate float64, now func() time.Time) *limiter {
	if maxConns <= 0 {
		maxConns = defaultConnsPerAddress
	}
	if rate <= 0 {
		rate = defaultRequestsPerSecond
	}
	return &limiter{maxConns: maxConns, rate: rate, burst: rate * burstSeconds, now: now, addrs: map[netip.Prefix]*addrState{}}
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
		st = &addrState{key: key, tokens: l.burst, last: now}
		l.addrs[key] = st
	}
	return st, int(st.conns.Add(1)) <= l.maxConns
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
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.tokens+now.Sub(st.last).Seconds()*l.rate >= l.burst
}

// allow takes a token for one request, if there is one.
func (l *limiter) allow(st *addrState) bool {
	now := l.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if d := now.Sub(st.last); d > 0 {
		st.tokens = min(l.burst, st.tokens+d.Seconds()*l.rate)
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
	s *Server
}

func (ln *publicListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !ln.s.track(c) {
			continue
		}
		pc := &publicConn{Conn: c, s: ln.s}
		pc.addr, pc.withinLimit = ln.s.limits.open(addrKey(c.RemoteAddr()))
		if !pc.withinLimit {
			c.SetDeadline(time.Now().Add(overLimitDeadline))
		}
		return pc, nil
	}
}

// publicConn is a user's connection to a public port.
type publicConn struct {
	net.Conn
	s           *Server
	addr        *addrState
	withinLimit bool // false: this connection is over its address's limit
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
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *publicConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
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
	})
	return nil
}
