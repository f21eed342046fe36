package uplink

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// BindBatchSize is how many WireGuard messages one receive or send call
// moves. wireguard-go keeps BatchSize × 64 KiB of buffers per receive
// routine, so this trades memory on a small hub against syscalls.
const BindBatchSize = 16

// writeTimeout bounds one write to the relay; a relay that stops reading for
// this long is treated as gone and the connection is replaced.
const writeTimeout = 30 * time.Second

// TCPBind is a conn.Bind that carries WireGuard over the agent's single
// outbound TCP connection to the relay, framed as in package wire.
//
// It owns that connection: Open starts a loop that dials the relay, says
// Hello, and redials with capped exponential backoff and jitter whenever the
// connection ends. wireguard-go never notices: its receive routine blocks
// while no connection is up, and sends fail softly (and are retried by
// WireGuard's own timers). Only Close makes the receive function return
// net.ErrClosed, as conn.Bind requires.
type TCPBind struct {
	// Addr is the relay's "host:port"; the host is resolved on every dial.
	Addr string
	// Dialer opens the connection, by the routes it is configured with
	// (Dialer.DialRelay, with Addr as the agent port). Nil means a zero
	// Dialer (TCP, direct).
	Dialer *Dialer
	// Hello is sent first on every connection; SetHello changes it for
	// the connections to come.
	Hello wire.Hello
	// Features, if set, is sent after the Hello on every connection
	// (wire.Ours for the agent); nil sends none, as agents before it.
	Features *wire.Features
	// OnHello, if set, hears the relay's Hello on each connection (on the
	// bind's reader: it must not block). The agent follows a relay that
	// switched to the next key it announced.
	OnHello func(wire.Hello)
	// PongSecret, if set, gives the static Diffie-Hellman secret of the
	// hub's key that hello names and the relay's key relay names (the
	// relay's Hello on the same connection), which keys the MAC of the Pong
	// that answers the relay's Ping (wire.PongMAC). Without it, or when it
	// knows neither key, the Ping is left unanswered: a Pong without the
	// MAC proves nothing to the relay.
	PongSecret func(hello, relay [32]byte) ([32]byte, bool)
	// HubInfoSecret, if set, gives the static Diffie-Hellman secret of the
	// hub's key that hello names and the relay key the agent has pinned
	// (not the one the relay's Hello names: that is only a claim), which
	// keys the MAC of the relay's HubInfo (wire.OpenHubInfo).
	HubInfoSecret func(hello [32]byte) ([32]byte, bool)
	// OnHubInfo, if set, hears each HubInfo whose MAC proves the pinned
	// relay key and one of this connection's handshake initiations (on the
	// bind's reader: it must not block). It comes before the handshake
	// response it goes with.
	OnHubInfo func(wire.HubInfo)
	// OnError, if set, hears each Error frame the relay sends (on the
	// bind's reader: it must not block).
	OnError func(wire.Error)
	// OnConnect, if set, runs after each new connection is up. The agent
	// uses it to start a WireGuard handshake at once instead of waiting
	// for WireGuard's 5 s retry.
	OnConnect func()
	// Backoff between attempts; zero value means DefaultBackoff.
	Backoff Backoff
	// Counters, if set, counts bytes each way, across reconnects.
	Counters *wire.Counters
	// Sent, if set, is called after each Send with its number of data
	// packets (not keepalives or handshakes), also when the write failed:
	// WireGuard does not retry them either (netstack.Config.MaxInFlight).
	Sent func(n int)
	// Logf logs connection changes (never per packet). Default: discard.
	Logf logger.Logf

	mu      sync.Mutex
	cur     *session      // nil while connecting
	changed chan struct{} // closed when cur changes or the bind closes
	closing chan struct{} // nil while not open
	ep      conn.Endpoint // the relay, made once so receive does not allocate
	done    chan struct{} // closed when the dial loop has ended
	kick    chan struct{} // Reconnect: connect again now
	status  Status
	wait    time.Duration // the dial loop's wait before its next attempt; 0 while it dials or is connected
	sock    sockTotals    // the kernel's counts of every connection (NetCounters)
	// relayNoChecksum: the current connection's relay said in its
	// Features that it verifies no checksums (RelayNeedsChecksum).
	relayNoChecksum atomic.Bool
}

var _ conn.Bind = (*TCPBind)(nil)

// Status is a snapshot of the connection to the relay.
type Status struct {
	Connected      bool
	Since          time.Time // when the current state began
	RelayAddr      string    // remote address of the current connection
	RelaySoftware  string    // from the relay's Hello
	Route          Route     // how the current connection was opened; "" while not connected
	LastError      string    // why the last attempt or connection ended, for the hub owner (Describe)
	Connects       uint64    // successful connections since start
	FailedAttempts uint64    // failed attempts since the last success

	// LastErrorKind and LastErrorDetail are LastError's kind and
	// technical detail (Explain).
	LastErrorKind, LastErrorDetail string
}

// Backoff is capped exponential backoff with jitter.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff retries a restarted relay within a second and a relay that
// stays away every 30 s at most, so thousands of agents do not storm it.
var DefaultBackoff = Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second}

// Delay is the wait before attempt n (0-based): Min·2ⁿ capped at Max, then
// a uniform pick from its upper half.
func (b Backoff) Delay(n int) time.Duration {
	if b.Min == 0 {
		b = DefaultBackoff
	}
	d := b.Max
	if n < 30 {
		d = min(b.Min<<n, b.Max)
	}
	return d/2 + rand.N(d/2+1)
}

// Waits the relay can impose. A relay (or something posing as one: the
// agent learns the relay is genuine only from its WireGuard handshake)
// must not keep a hub away for long with one frame.
const (
	// maxGoingAwayWait caps the wait after a GoingAway: its retry-after
	// (up to 65 s on the wire) is honoured up to half of it, plus jitter
	// up to as much again.
	maxGoingAwayWait = 30 * time.Second
	// maxErrorWait caps the wait after an Error, however often in a row.
	maxErrorWait = 5 * time.Minute
)

// goingAwayDelay is the wait after a GoingAway with retry-after ra: ra,
// honoured up to maxGoingAwayWait/2, plus a uniform jitter up to as much
// again, so a relay's agents do not all come back in the same moment.
func goingAwayDelay(ra time.Duration) time.Duration {
	d := min(ra, maxGoingAwayWait/2) + time.Millisecond
	return d + rand.N(d)
}

// errorDelay is the wait after the relay refused the hub with an Error of
// code, the n-th time in a row (0-based): per code, doubling with each
// refusal, capped at maxErrorWait, a uniform pick from the upper half
// (Backoff.Delay).
func errorDelay(code uint8, n int) time.Duration {
	first := time.Minute // 30–60 s
	switch code {
	case wire.CodeNotRegistered, wire.CodeOverloaded:
		// A hub enabled or enrolled a moment later is back within a
		// minute; an overloaded relay sees its agents spread out.
	case wire.CodeClone:
		first = 2 * time.Minute // a copy of the hub: ask rarely
	case wire.CodeVersion, wire.CodeWrongKey:
		first = maxErrorWait // only a change on the hub (which restarts the agent) mends these
	}
	return Backoff{Min: first, Max: maxErrorWait}.Delay(n)
}

// session is one TCP connection to the relay.
type session struct {
	conn *wire.Conn
	// hello is the hub's key this connection's Hello named; relay the key
	// the relay's Hello named (the Pong's MAC is keyed with both).
	hello, relay [32]byte
	// Set by a GoingAway or an Error frame before the conn closes.
	goingAway  bool
	retryAfter time.Duration // the GoingAway's
	refused    bool
	code       uint8 // the Error's

	// ephMu guards the ephemeral keys of the handshake initiations sent on
	// this connection, the last len(eph) of them: the relay's HubInfo is
	// bound to the one it answers.
	ephMu sync.Mutex
	eph   [4][32]byte
	nEph  int
}

// sentInitiations notes the ephemeral keys of the initiations in bufs.
func (s *session) sentInitiations(bufs [][]byte) {
	for _, p := range bufs {
		if wire.Classify(p) != wire.Initiation {
			continue
		}
		s.ephMu.Lock()
		s.eph[s.nEph%len(s.eph)] = wire.Ephemeral(p)
		s.nEph++
		s.ephMu.Unlock()
	}
}

// ephemerals returns the ephemeral keys noted so far.
func (s *session) ephemerals() [][32]byte {
	s.ephMu.Lock()
	defer s.ephMu.Unlock()
	return append([][32]byte(nil), s.eph[:min(s.nEph, len(s.eph))]...)
}

// Open starts the dial loop. The port is ignored: the agent only dials out.
func (b *TCPBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	b.closing = make(chan struct{})
	b.done = make(chan struct{})
	b.ep = relayEndpoint(b.Addr)
	b.kick = make(chan struct{}, 1)
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	go b.run(b.closing, b.done)
	return []conn.ReceiveFunc{b.receive}, port, nil
}

// Close ends the connection and the dial loop; receive functions return
// net.ErrClosed. Closing a closed bind is a no-op.
func (b *TCPBind) Close() error {
	b.mu.Lock()
	closing, done, s := b.closing, b.done, b.cur
	if closing == nil {
		b.mu.Unlock()
		return nil
	}
	close(closing)
	b.closing = nil
	b.setLocked(nil, localapi.Words{})
	b.mu.Unlock()
	if s != nil {
		s.conn.Close()
	}
	<-done
	return nil
}

// SetHello makes h the Hello of the connections to come (the hub's key
// changed); the current one keeps the Hello it said.
func (b *TCPBind) SetHello(h wire.Hello) {
	b.mu.Lock()
	b.Hello = h
	b.mu.Unlock()
}

// Reconnect ends the current connection, if any, and connects again at
// once, without the wait a relay's Error or GoingAway imposed.
func (b *TCPBind) Reconnect() {
	b.mu.Lock()
	s, kick := b.cur, b.kick
	b.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if s != nil {
		s.conn.Close()
	}
}

// setLocked replaces the current session and wakes waiters.
func (b *TCPBind) setLocked(s *session, why localapi.Words) {
	b.cur = s
	b.status.Connected = s != nil
	b.status.Since = time.Now()
	if s != nil {
		b.status.RelayAddr = s.conn.RemoteAddr().String()
		b.status.Connects++
		b.status.FailedAttempts = 0
	} else {
		b.status.RelayAddr = ""
		b.status.Route = ""
		if why.Text != "" {
			b.status.LastError, b.status.LastErrorKind, b.status.LastErrorDetail = why.Text, why.Kind, why.Detail
		}
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// RelayNeedsChecksum reports whether the packets to the relay need TCP
// checksums (netstack.Config.NeedsChecksum): unless the current
// connection's relay said in its Features that it verifies none. Relays
// before Features do verify them.
func (b *TCPBind) RelayNeedsChecksum(netip.Addr) bool { return !b.relayNoChecksum.Load() }

// NetCounters is what the network carried on every relay connection since
// the bind was made, headers, ACKs and keepalives included (TCP_INFO; a
// connection is counted for the last time as it closes).
func (b *TCPBind) NetCounters() SocketCounters { return b.sock.read() }

// Status returns a snapshot of the connection state.
func (b *TCPBind) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

// nextWait is how long the dial loop waits before its next attempt, 0 while
// it dials or is connected.
func (b *TCPBind) nextWait() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wait
}

func (b *TCPBind) logf(format string, args ...any) {
	if b.Logf != nil {
		b.Logf(format, args...)
	}
}

// run dials, serves one session until it ends, waits, and dials again.
func (b *TCPBind) run(closing, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-closing:
			cancel()
		case <-done:
		}
	}()
	d := b.Dialer
	if d == nil {
		d = &Dialer{}
	}
	attempt := 0
	refusals := 0 // Errors in a row
	for {
		c, route, err := d.dialRelay(ctx, b.Addr)
		if ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			return
		}
		var wait time.Duration
		if err != nil {
			b.mu.Lock()
			why := Explain(err)
			b.status.LastError, b.status.LastErrorKind, b.status.LastErrorDetail = why.Text, why.Kind, why.Detail
			b.status.FailedAttempts++
			n := b.status.FailedAttempts
			b.mu.Unlock()
			// The first failure and then every tenth: a relay that is
			// away for a day must not fill the hub's flash with log lines.
			if n == 1 || n%10 == 0 {
				b.logf("uplink: relay %s unreachable (attempt %d): %v", b.Addr, n, err)
			}
			wait = b.Backoff.Delay(attempt)
			attempt++
		} else {
			start := time.Now()
			s := b.serve(c, route)
			if time.Since(start) > time.Minute {
				attempt = 0 // a connection that lived is no reason to wait long
			}
			wait = b.Backoff.Delay(attempt)
			attempt++
			switch {
			case s.goingAway:
				wait = goingAwayDelay(s.retryAfter)
				attempt = 0
			case s.refused:
				wait = errorDelay(s.code, refusals)
				refusals++
				attempt = 0
			}
			if !s.refused {
				refusals = 0
			}
		}
		b.mu.Lock()
		b.wait = wait
		b.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-closing:
			t.Stop()
			return
		case <-b.kick:
			t.Stop()
			attempt = 0
		case <-t.C:
		}
		b.mu.Lock()
		b.wait = 0
		b.mu.Unlock()
	}
}

// serve publishes a new session and blocks until it ends.
func (b *TCPBind) serve(c net.Conn, route Route) *session {
	c = b.sock.track(c)
	s := &session{conn: wire.NewConn(c, wire.ConnConfig{WriteTimeout: writeTimeout, Counters: b.Counters})}
	b.mu.Lock()
	hello := b.Hello
	s.hello = hello.Key
	b.mu.Unlock()
	b.relayNoChecksum.Store(false) // until this relay's Features says so
	s.conn.Queue(hello.Marshal())  // sent with the first WireGuard message
	if b.Features != nil {
		s.conn.Queue(b.Features.Marshal())
	}
	wire.DelayACKs(c) // the relay's Hello is answered by ours, a moment later
	b.mu.Lock()
	if b.closing == nil {
		b.mu.Unlock()
		s.conn.Close()
		return s
	}
	b.setLocked(s, localapi.Words{})
	b.status.Route = route
	b.mu.Unlock()
	b.logf("uplink: connected to relay %s (%s) over %s", b.Addr, c.RemoteAddr(), route)

	if b.OnConnect != nil {
		b.OnConnect()
	}
	s.conn.Write(nil) // flush the Hello if OnConnect sent nothing

	<-s.conn.Done()
	err := s.conn.Err()
	b.mu.Lock()
	if b.cur == s {
		b.setLocked(nil, Explain(err))
	}
	b.mu.Unlock()
	if !errors.Is(err, net.ErrClosed) {
		b.logf("uplink: connection to relay lost: %v", err)
	}
	return s
}

// current returns the live session and a channel closed when it changes.
func (b *TCPBind) current() (*session, chan struct{}, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, b.changed, b.closing != nil
}

// receive is the bind's one ReceiveFunc. It reads frames straight into
// WireGuard's buffers, as many as are already buffered, up to len(packets);
// control frames are read into the next free buffer too, and handled.
func (b *TCPBind) receive(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	for {
		s, changed, open := b.current()
		if !open {
			return 0, net.ErrClosed
		}
		if s == nil {
			<-changed
			continue
		}
		n, err := b.readBatch(s, packets, sizes, eps)
		if err != nil {
			s.conn.CloseWithError(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (b *TCPBind) readBatch(s *session, packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	n := 0
	for n < len(packets) {
		if n > 0 && !s.conn.Buffered() {
			return n, nil
		}
		k, err := s.conn.ReadFrame(packets[n])
		if errors.Is(err, wire.ErrShortBuffer) {
			continue // cannot be a valid message for our MTU; dropped
		}
		if err != nil {
			return n, err
		}
		p := packets[n][:k]
		if wire.Classify(p).IsWireGuard() {
			sizes[n] = k
			eps[n] = b.ep
			n++
			continue
		}
		if err := b.control(s, p); err != nil {
			return n, err
		}
	}
	return n, nil
}

// control handles a control frame from the relay; an error ends the session.
func (b *TCPBind) control(s *session, p []byte) error {
	switch p[0] {
	case wire.TypeHello:
		h, err := wire.ParseHello(p)
		if err != nil {
			return err
		}
		s.relay = h.Key
		b.mu.Lock()
		b.status.RelaySoftware = h.Software
		b.mu.Unlock()
		if b.OnHello != nil {
			b.OnHello(h)
		}
	case wire.TypeFeatures:
		if f, err := wire.ParseFeatures(p); err == nil {
			b.relayNoChecksum.Store(f.NoChecksum)
		}
	case wire.TypeHubInfo:
		if b.OnHubInfo == nil || b.HubInfoSecret == nil {
			return nil
		}
		shared, ok := b.HubInfoSecret(s.hello)
		if !ok {
			return nil
		}
		info, err := wire.OpenHubInfo(p, shared, s.ephemerals()...)
		if err != nil {
			// Not the pinned relay's (or damaged): the agent asks through
			// the tunnel instead, as of a relay before HubInfo.
			b.logf("uplink: ignoring the relay's hub info: %v", err)
			return nil
		}
		b.OnHubInfo(info)
	case wire.TypeError:
		e, err := wire.ParseError(p)
		if err != nil {
			return err
		}
		s.refused, s.code = true, e.Code // the relay said no: ask again later (errorDelay)
		if b.OnError != nil {
			b.OnError(e)
		}
		return e
	case wire.TypeGoingAway:
		g, err := wire.ParseGoingAway(p)
		if err != nil {
			return err
		}
		s.goingAway, s.retryAfter = true, time.Duration(g.RetryAfterMillis)*time.Millisecond
		return errors.New("relay is restarting")
	case wire.TypePing:
		ping, err := wire.ParsePing(p)
		if err != nil {
			return err
		}
		if b.PongSecret == nil {
			return nil
		}
		shared, ok := b.PongSecret(s.hello, s.relay)
		if !ok {
			return nil
		}
		// At once: the relay waits 2 s for it before it takes this
		// connection for dead and lets another with our key in.
		pong := wire.Pong{Token: ping.Token, MAC: wire.PongMAC(shared, ping.Token)}
		return s.conn.Write([][]byte{pong.Marshal()})
	}
	return nil // unknown control frames are for later versions
}

// Send writes bufs to the relay in one write. Without a connection it
// fails softly; WireGuard retries handshakes itself, and OnConnect starts
// one as soon as the next connection is up.
func (b *TCPBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.Sent != nil {
		defer func() {
			if n := dataMessages(bufs); n > 0 {
				b.Sent(n)
			}
		}()
	}
	s, _, _ := b.current()
	if s == nil {
		return vpn.ErrNotConnected
	}
	s.sentInitiations(bufs)
	return s.conn.Write(bufs)
}

func (b *TCPBind) SetMark(uint32) error { return nil }

// ParseEndpoint accepts anything: there is one peer, the relay.
func (b *TCPBind) ParseEndpoint(s string) (conn.Endpoint, error) { return relayEndpoint(s), nil }

func (b *TCPBind) BatchSize() int { return BindBatchSize }

// relayEndpoint is the relay, wherever the current connection leads.
type relayEndpoint string

func (e relayEndpoint) ClearSrc()           {}
func (e relayEndpoint) SrcToString() string { return "" }
func (e relayEndpoint) DstToString() string { return string(e) }
func (e relayEndpoint) DstToBytes() []byte  { return []byte(e) }
func (e relayEndpoint) DstIP() netip.Addr   { return netip.Addr{} }
func (e relayEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }
