package relay

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/gopool"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

const (
	// helloTimeout is how long a new agent connection may take to say
	// Hello; idle half-open connections are dropped after it.
	helloTimeout = 10 * time.Second
	// handshakeTimeout is how long it may then take to complete a
	// WireGuard handshake (three of WireGuard's 5 s retries fit in it);
	// a connection that claims a hub but cannot prove it is dropped.
	handshakeTimeout = 20 * time.Second
	// agentWriteTimeout bounds a write to one agent, so a stuck agent
	// cannot hold up WireGuard's send routine for long.
	agentWriteTimeout = 10 * time.Second
	// agentReadBuffer is the read buffer of an agent connection, held only
	// while it holds part of a frame (wire.ConnConfig.ReleaseIdle): an
	// idle agent holds none.
	agentReadBuffer = 4 << 10
	// goingAwayMillis is how long agents wait before redialing a relay
	// that is shutting down, plus their own jitter.
	goingAwayMillis = 1000
	// goingAwayGrace bounds how long Close waits for agents to hang up
	// after their GoingAway: a round trip and a FIN for an agent that is
	// there at all.
	goingAwayGrace = time.Second
)

// agentKeepAlive is far slower than the agent's own (90 s): the agent keeps
// an idle connection alive, and its probes do not reset the relay's timer,
// so every relay probe is extra idle traffic (30 KB/day at 5 minutes). The
// relay's own timer only clears out agents that vanished without a word.
var agentKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Minute, Interval: time.Minute, Count: 5}

// agentConn is one agent's TCP connection, read by serveAgent and written
// by WireGuard through agentBind, and a WireGuard endpoint.
type agentConn struct {
	conn      *wire.Conn
	remote    netip.AddrPort
	transport string // how the agent came: "tcp", or "tls" (agenttls.go); hub list, logs
	dst       []byte // DstToBytes, for WireGuard's cookie MACs

	hub  atomic.Pointer[hub] // the hub its Hello claims, if known
	info store.AgentInfo     // what its Hello said of the agent; set before it is verified
	// enrolling: the connection carries an enrollment (enroll.go), which
	// a GoingAway would spoil; it ends by itself.
	enrolling atomic.Bool

	// probe is the Ping this connection was sent to prove it is alive
	// (clone.go), while one is in flight; the reader answers it on the Pong.
	probe atomic.Pointer[probe]
	gone  chan struct{} // closed when agentGone has cleaned up after it

	// state goes from connUnverified to connVerified when the relay first
	// answers a handshake initiation on this connection (wireguard-go only
	// answers initiations it has authenticated, so from then on the
	// connection carries a real hub), and to connDone when its reader ends.
	state    atomic.Int32
	onVerify func(announcedNext bool) // by the write that verified the connection
	// hubInfo is the HubInfo for the initiation the relay answers, sent
	// with that answer (keys.go hubInfo); nil once sent.
	hubInfo atomic.Pointer[hubInfoFrame]
	// firstDone: the connection's first initiation has gone to WireGuard
	// (clock.go); only its reader uses it.
	firstDone bool

	counters wire.Counters
	// noChecksum: the agent's Features said it verifies no checksums
	// inside the tunnel (hub.noChecksum).
	noChecksum atomic.Bool
}

const (
	connUnverified = iota
	connVerified
	connDone
)

func newAgentConn(c net.Conn) *agentConn {
	ac := &agentConn{transport: transportOf(c), gone: make(chan struct{})}
	ac.conn = wire.NewConn(c, wire.ConnConfig{WriteTimeout: agentWriteTimeout, ReadBuffer: agentReadBuffer, ReleaseIdle: true, Counters: &ac.counters})
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ac.remote = ta.AddrPort()
	}
	ac.dst, _ = ac.remote.MarshalBinary()
	return ac
}

// acceptAgents serves the agent port: frames over TCP, or over TLS
// (agenttls.go serveAgentPort).
func (s *Server) acceptAgents() {
	s.acceptLoop(s.agentLn, "the agent port", s.agentGate, s.serveAgentPort)
}

// serveAgent runs one agent connection until it ends: the Hellos, the
// hub the agent claims to be, then every frame it sends, read into a
// pooled buffer and handed to WireGuard. Anything malformed ends this
// connection and nothing else. Its slot in gate (limits.go) stops counting
// as before Hello once the agent has said one, and is busy (not closed to
// make room for others) once the connection holds something: a hub proven
// by its handshake, or an enrollment. It calls done (if not nil) once the
// connection has ended, which over TCP may be after it returned: an idle
// connection then waits in s.parker, with no goroutine of its own.
func (s *Server) serveAgent(c net.Conn, gate *connGate, slot *gateSlot, done func()) {
	if done == nil {
		done = func() {}
	}
	// Before its Hello a connection holds as little as it can: a scan or a
	// flood of idle connections must not cost a read buffer (4 KiB) each. The first frame is read on its own, into a
	// buffer of its size.
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	first := make([]byte, firstFrameMax)
	n, err := readFirstFrame(c, first)
	if err != nil {
		done()
		return // not an agent, or silent: drop it quietly
	}
	ac := newAgentConn(c)
	ac.counters.RxOverhead.Add(uint64(2 + n))
	s.mu.Lock()
	if s.goingAway {
		s.mu.Unlock()
		done()
		return
	}
	s.agent[ac] = struct{}{}
	s.agentsWG.Add(1)
	s.mu.Unlock()
	end := func() {
		s.agentGone(ac)
		s.agentsWG.Done()
		done()
	}

	// Over TCP the hub's Hello and its frames are read on gopool's
	// goroutines, whose stacks have grown for the handshake's cryptography
	// and WireGuard's receive path. While the agent is quiet the
	// connection waits in s.parker (epoll) with neither a buffer nor a
	// goroutine (an idle hub's goroutine cost ~4 KB of stack), or where
	// there is no parker, on this goroutine with a shallow stack
	// (wire.Conn.WaitReadable). Over TLS (no socket to wait on) all of it
	// runs here.
	if !ac.conn.CanWait() {
		defer end()
		if hb := s.greet(ac, first[:n], gate, slot); hb != nil {
			s.readFrames(ac, hb)
		}
		return
	}
	// The first frame's buffer goes with greet's closure once it ran.
	r := &agentReader{s: s, ac: ac, done: make(chan bool, 1), end: end}
	greet := func() { r.hb = s.greet(ac, first[:n], gate, slot); r.done <- r.hb != nil }
	if gopool.Go(greet); !<-r.done {
		end()
		return
	}
	if s.parker != nil {
		// Parked, the connection's read deadline (handshakeTimeout until
		// WireGuard answers the hub's handshake) is not looked at: a
		// timer closes it instead if it is still unverified then.
		time.AfterFunc(handshakeTimeout, func() {
			if ac.state.Load() == connUnverified {
				ac.conn.Close()
			}
		})
		r.done = nil
		r.resumeFn, r.wake = r.resume, r.wakeUp
		r.wake() // the initiation that came with the Hello, on a grown stack
		return
	}
	defer end()
	read := func() { r.done <- s.readFrames(ac, r.hb) }
	for {
		if ac.conn.WaitReadable() != nil {
			return
		}
		if gopool.Go(read); !<-r.done {
			return
		}
	}
}

// agentReader is what serveAgent hands gopool and the parker: made once per
// connection, so that a wake-up allocates nothing. What a parked
// connection holds while its hub is idle, with its agentConn.
type agentReader struct {
	s    *Server
	ac   *agentConn
	hb   *hub
	done chan bool // gopool's reads report here, until the connection is parked
	// With the parker: wake, the parker's, starts resume on gopool; end
	// cleans up after the connection.
	resumeFn, wake, end func()
}

// resume reads what the agent has sent and parks the connection again, or
// ends it.
func (r *agentReader) resume() {
	if !r.s.readFrames(r.ac, r.hb) || r.s.parker.Park(r.ac.conn, r.wake) != nil {
		r.end()
	}
}

func (r *agentReader) wakeUp() { gopool.Go(r.resumeFn) }

// startParker makes the parker idle agent connections wait in, closed
// (waking every connection in it) when the relay closes; where there is
// none, each waits on a goroutine of its own.
func (s *Server) startParker() {
	p, err := wire.NewParker()
	if err != nil {
		s.log.Debug("idle agent connections wait on a goroutine each", "why", err.Error())
		return
	}
	s.parker = p
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.closing
		p.Close()
	}()
}

// readFrames reads the agent's frames, each into a pooled buffer taken
// once the frame is there (getFrame), and hands them to WireGuard. Over
// TCP it returns true when the agent has sent nothing more for now; false
// when the connection is to end.
func (s *Server) readFrames(ac *agentConn, hb *hub) bool {
	try := ac.conn.CanWait()
	for {
		var size int
		var err error
		if try {
			size, err = ac.conn.TryNext()
		} else {
			size, err = ac.conn.Next()
		}
		if err == wire.ErrWouldBlock {
			return true
		}
		if err != nil || s.legacy && size > wire.LegacyMaxFrame {
			return false
		}
		bp := getFrame(size)
		buf := *bp
		n, err := ac.conn.ReadFrame(buf)
		if err != nil {
			putFrame(bp)
			return false
		}
		kind := wire.Classify(buf[:n])
		if !kind.IsWireGuard() {
			switch buf[0] {
			case wire.TypePong:
				ac.pong(buf[:n])
			case wire.TypeFeatures:
				if !s.legacy {
					ac.features(hb, buf[:n])
				}
			}
			putFrame(bp)
			continue // other control messages: later versions'
		}
		if kind == wire.Initiation {
			s.metrics.handshakes.Add(1)
		}
		if kind == wire.Initiation && ac.state.Load() == connUnverified {
			if !s.mac1.CheckMAC1(buf[:n]) {
				s.wrongKey(ac, hb)
				return false
			}
			// The hub is the peer WireGuard authenticates, not the
			// key the Hello named: a connection whose handshake is
			// another key's goes.
			in, ok := s.initiations.ReadInitiation(buf[:n])
			if !ok || in.Static != hb.key {
				s.foreignHandshake(ac, hb, in.Static, ok)
				return false
			}
			// With the hub's key while the hub has a connection open:
			// a copy of the hub, or the hub back after its old
			// connection died without a word? The initiation waits
			// here until a Ping to the old one tells.
			if !s.admitSecond(ac, hb) {
				return false
			}
			s.noteInitiation(hb, in, !ac.firstDone) // a hub's clock behind (clock.go)
			ac.firstDone = true
			// Bound to this initiation: if WireGuard answers it (or
			// an earlier one: the agent knows its last few), the
			// answer carries it.
			ac.hubInfo.Store(s.hubInfo(hb, wire.Ephemeral(buf[:n])))
			s.usePeer(hb, false) // the hub's peer, if it was idle (peers.go)
		} else if kind == wire.Initiation {
			if in, ok := s.initiations.ReadInitiation(buf[:n]); ok && in.Static == hb.key {
				s.noteInitiation(hb, in, false)
				s.usePeer(hb, false)
			}
		} else if ac.state.Load() == connVerified {
			hb.markUsed()
		}
		// Only a connection the hub's handshake came over is held back: its
		// packets can reach the netstack and be counted out. Anything else
		// WireGuard drops at once, holding nothing.
		if kind == wire.Data && ac.state.Load() == connVerified && !hb.admitInbound(s.closing) {
			return false
		}
		// A buffer not handed on when the reader returns is left to
		// the garbage collector.
		select {
		case s.bind.in <- inbound{buf: bp, n: n, ep: ac}: // agentBind's receive returns it to the pool
		case <-s.closing:
			return false
		}
	}
}

// firstFrameMax bounds an agent connection's first frame: a Hello (at
// most 235 bytes) or an enrollment request (34).
const firstFrameMax = 256

// readFirstFrame reads one frame of at most len(p) bytes from c, unbuffered:
// nothing is read beyond it, so a wire.Conn can take over after it.
func readFirstFrame(c net.Conn, p []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 || n > len(p) {
		return 0, fmt.Errorf("relay: first frame of %d bytes", n)
	}
	if _, err := io.ReadFull(c, p[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

// greet answers the agent's first frame, first, and returns the hub the
// agent claims to be, or nil after telling the agent why not. The claim is
// proven only by the WireGuard handshake that follows (serveAgent, write).
// The relay says nothing of itself (key, version) before the agent has
// said Hello: a port scan learns nothing.
func (s *Server) greet(ac *agentConn, first []byte, gate *connGate, slot *gateSlot) *hub {
	if first[0] == wire.TypeEnrollRequest {
		ac.enrolling.Store(true)
		gate.markBusy(slot)        // bounded by the enrollment limits of its address (enroll.go)
		bp := getFrame(smallFrame) // enrollment frames are small (enroll)
		defer putFrame(bp)
		s.serveEnroll(ac, first, *bp) // a hub enrolling (enroll.go): nothing else follows
		return nil
	}
	if first[0] != wire.TypeHello {
		return nil // not an agent: drop it quietly
	}
	h, err := wire.ParseHello(first)
	if err != nil {
		ac.writeControl(wire.Error{Message: "malformed hello"}.Marshal())
		return nil
	}
	if h.Version != wire.ProtocolVersion {
		ac.writeControl(wire.Error{Code: wire.CodeVersion, Message: fmt.Sprintf("relay speaks protocol %d, agent %d: update the agent", wire.ProtocolVersion, h.Version)}.Marshal())
		return nil
	}
	hello := wire.Hello{Version: wire.ProtocolVersion, Key: s.key.Public(), Software: "hubrelay/" + s.version}
	// Features follows the Hello; agents before it ignore the frame.
	greeting := [][]byte{hello.Marshal(), s.features.Marshal()}
	if s.legacy {
		greeting = greeting[:1]
	}
	if err := ac.write(greeting); err != nil {
		return nil
	}
	hb := s.hubs.key(vpn.PublicKey(h.Key))
	if hb == nil {
		s.repeatLog.Info("unknown agent key", "key", vpn.PublicKey(h.Key).Short(), logger.Remote, ac.remote, "software", h.Software)
		// Not added or enrolled yet, removed, or disabled: the agent asks
		// again within a minute, then less often (CodeNotRegistered).
		ac.writeControl(wire.Error{Code: wire.CodeNotRegistered, Message: "this hub is not registered at the relay"}.Marshal())
		return nil
	}
	// The Hello is only a claim. The hub counts as online, and the
	// connection may idle, once WireGuard has answered its handshake.
	gate.saidHello(slot)
	ac.hub.Store(hb)
	ac.info = parseSoftware(h.Software)
	ac.onVerify = func(announcedNext bool) {
		if announcedNext {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.learnedKeys(context.Background(), hb)
			}()
		}
		gate.markBusy(slot)
		s.hubs.connected(hb, ac)
		s.metrics.agentConnected(ac.transport)
		ac.conn.SetReadDeadline(time.Time{}) // keepalives watch the connection from now on
		s.log.Info("hub connected", logger.Hub, hb.Name, logger.Remote, ac.remote, logger.Transport, ac.transport, "software", h.Software)
		s.hubEvent(hb, store.KindHubConnect, ac.remote.String(), h.Software)
	}
	ac.conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	return hb
}

// wrongKey tells an agent whose handshake initiation was made for another
// relay key (its MAC1 is keyed with the responder's public key, so the
// relay can tell without decrypting anything) that its relay_public_key
// is wrong, in words its owner can act on, and logs it at most once a
// minute per hub. WireGuard itself would drop such a handshake in silence,
// and the agent would wait for an answer forever.
func (s *Server) wrongKey(ac *agentConn, hb *hub) {
	if hb.due(&hb.wrongKeyLogged, s.now()) {
		s.log.Warn("hub has another relay key pinned (relay_public_key): its handshakes are not for this relay", logger.Hub, hb.Name, logger.Remote, ac.remote, "relay_key", s.key.Public().String())
	}
	ac.writeControl(wire.Error{Code: wire.CodeWrongKey, Message: fmt.Sprintf(
		"relay_public_key in this hub's config is not this relay's key; this relay's key is %s", s.key.Public())}.Marshal())
}

// foreignHandshake drops a connection whose Hello named hub hb but whose
// handshake comes from another key (a registered hub's, or none the relay
// knows), logging it at most once a minute per named hub: a copied
// config, or someone trying to pass for hb.
func (s *Server) foreignHandshake(ac *agentConn, hb *hub, key vpn.PublicKey, readable bool) {
	if hb.due(&hb.foreignLogged, s.now()) {
		from := "an unreadable handshake"
		if readable {
			from = "the handshake of key " + key.Short()
			if other := s.hubs.key(key); other != nil {
				from += " (hub " + other.Name + ")"
			}
		}
		s.log.Warn("a connection named a hub in its Hello but sent another handshake: dropped", logger.Remote, ac.remote, logger.Hub, hb.Name, "sent", from)
	}
	ac.writeControl(wire.Error{Message: "this connection's WireGuard key is not the one its Hello named"}.Marshal())
}

// agentGone cleans up after serveAgent: a verified connection is counted
// out of its hub, and the hub's last one starts its reconnect window.
func (s *Server) agentGone(ac *agentConn) {
	defer close(ac.gone)
	ac.conn.Close()
	s.mu.Lock()
	delete(s.agent, ac)
	s.mu.Unlock()
	if h := ac.hub.Load(); ac.finish() && h != nil {
		if s.hubs.disconnected(h, ac) {
			s.recordHub(h)
			// Whoever connects next for this hub starts with a new
			// handshake; until it is confirmed, a request waiting for
			// the hub (awaitReconnect) must not go out with keys a
			// restarted agent no longer has.
			s.dev.ExpireSessions(h.key)
		}
		s.log.Info("hub disconnected", logger.Hub, h.Name, logger.Remote, ac.remote, "bytes_in", ac.counters.Rx(), "bytes_out", ac.counters.Tx())
		s.audit.add(store.Event{Kind: store.KindHubGone, Hub: h.Name, Source: ac.remote.String(),
			BytesUp: int64(ac.counters.Rx()), BytesDown: int64(ac.counters.Tx()), Outcome: "ok"})
	}
}

// hubEvent records that hub h's agent connected from remote and what it
// said of itself: an audit record, and in the store the hub's last seen,
// version, model and firmware, and online since when over which transport
// (recordHub; the agent's connection does not wait for the disk).
func (s *Server) hubEvent(h *hub, kind, remote, software string) {
	s.audit.add(store.Event{Kind: kind, Hub: h.Name, Source: remote, Outcome: "ok", Detail: software})
	s.recordHub(h)
}

// parseSoftware reads an agent's Hello software string, "hubtunnel/0.2.0
// (raspberrymatic 3.79.6.20241122 (Raspberry Pi 3 Model B Rev 1.2,
// arm64))": the version, the hub's kind and board as its model, and its
// firmware. Whatever does not fit that form is left empty.
func parseSoftware(sw string) store.AgentInfo {
	var info store.AgentInfo
	prog, rest, _ := strings.Cut(sw, " ")
	if _, v, ok := strings.Cut(prog, "/"); ok {
		info.Version = v
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
		return info
	}
	hub := rest[1 : len(rest)-1]
	kind, more, _ := strings.Cut(hub, " ")
	info.Model = kind
	if more != "" && !strings.HasPrefix(more, "(") {
		info.Firmware, more, _ = strings.Cut(more, " ")
	}
	if more = strings.TrimSpace(more); more != "" {
		info.Model += " " + more
	}
	return info
}

// write sends bufs, each as a frame, in one write (wire.Conn.Write).
func (ac *agentConn) write(bufs [][]byte) error {
	// Verified before the response goes out, so the hub is online by the
	// time its agent learns the tunnel is up. A failed write closes the
	// connection, and its reader's finish undoes it. The HubInfo goes
	// first, so the agent has it before WireGuard says the tunnel is up.
	if ac.state.Load() == connUnverified && hasHandshakeResponse(bufs) &&
		ac.state.CompareAndSwap(connUnverified, connVerified) {
		info := ac.hubInfo.Swap(nil)
		if info != nil {
			bufs = append([][]byte{info.frame}, bufs...)
		}
		if ac.onVerify != nil {
			ac.onVerify(info != nil && info.next)
			ac.onVerify = nil // once; what it holds need not stay with an idle hub
		}
	}
	return ac.conn.Write(bufs)
}

// features takes the agent's Features frame: an agent that does not
// verify checksums inside the tunnel gets packets without them, from now on
// if the connection is its hub's already (else from onVerify on).
func (ac *agentConn) features(hb *hub, p []byte) {
	f, err := wire.ParseFeatures(p)
	if err != nil {
		return // a malformed optional frame changes nothing
	}
	ac.noChecksum.Store(f.NoChecksum)
	if ac.state.Load() == connVerified {
		hb.noChecksum.Store(f.NoChecksum)
	}
}

// finish marks the connection done and reports whether it had been
// verified, so exactly one of onVerify's effects gets undone.
func (ac *agentConn) finish() (wasVerified bool) {
	return ac.state.Swap(connDone) == connVerified
}

// hasHandshakeResponse reports whether bufs holds a WireGuard handshake
// response.
func hasHandshakeResponse(bufs [][]byte) bool {
	for _, p := range bufs {
		if wire.Classify(p) == wire.Response {
			return true
		}
	}
	return false
}

// writeControl sends one control frame, bypassing WireGuard.
func (ac *agentConn) writeControl(p []byte) error {
	return ac.write([][]byte{p})
}

// goAway sends a GoingAway frame as the last thing on the connection and
// half-closes it (wire.Conn.WriteFinal); WireGuard's later sends are
// dropped, and the connection stays open for the agent to hang up.
func (ac *agentConn) goAway(retryAfter time.Duration) {
	ms := uint16(min(retryAfter.Milliseconds(), math.MaxUint16))
	ac.conn.WriteFinal(wire.GoingAway{RetryAfterMillis: ms}.Marshal())
}

// sayGoingAway sends every agent a GoingAway and waits until each has hung
// up, or goingAwayGrace has passed. Agent readers keep reading until then,
// so no connection is reset with the frame still unread; one whose agent
// does not answer (gone, or its network stalled) is closed with the rest.
func (s *Server) sayGoingAway() {
	s.mu.Lock()
	s.goingAway = true // serveAgent registers no new connections
	agents := make([]*agentConn, 0, len(s.agent))
	for ac := range s.agent {
		agents = append(agents, ac)
	}
	s.mu.Unlock()
	if len(agents) == 0 {
		return
	}
	s.log.Info("shutting down: telling the agents to come back", "agents", len(agents), "in", (goingAwayMillis * time.Millisecond).String())
	gone := make(chan struct{})
	go func() {
		s.agentsWG.Wait()
		close(gone)
	}()
	for _, ac := range agents {
		if ac.enrolling.Load() {
			continue // let it finish within the grace rather than break it off
		}
		// One at a time could wait agentWriteTimeout on each stalled agent.
		go ac.goAway(goingAwayMillis * time.Millisecond)
	}
	t := time.NewTimer(goingAwayGrace)
	defer t.Stop()
	select {
	case <-gone:
	case <-t.C:
		s.log.Warn("closing the agent connections that did not hang up", "agents", s.agentCount(), "grace", goingAwayGrace.String())
	}
}

func (s *Server) agentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.agent)
}

// tcpEndpointPrefix starts what WireGuard reports as the endpoint of a hub
// whose last handshake came over an agent's TCP connection.
const tcpEndpointPrefix = "tcp:"

func (ac *agentConn) ClearSrc()           {}
func (ac *agentConn) SrcToString() string { return "" }
func (ac *agentConn) DstToString() string { return tcpEndpointPrefix + ac.remote.String() }
func (ac *agentConn) DstToBytes() []byte  { return ac.dst }
func (ac *agentConn) DstIP() netip.Addr   { return ac.remote.Addr() }
func (ac *agentConn) SrcIP() netip.Addr   { return netip.Addr{} }
