// Package relay is hubrelay's server: it accepts agents on one TCP port
// (and UDP for plain WireGuard), runs one WireGuard device with a peer per
// hub on its own userspace netstack, and connects users arriving on the
// public ports of the fixed map to the hub their Host header names.
//
// The relay never forwards packets between peers: its netstack owns only
// the relay's tunnel address and does not route, so a hub can reach nothing
// but the relay itself, and certainly not another hub.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/netstack"
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
	// agentReadBuffer is small: thousands of idle agents each hold one.
	agentReadBuffer = 4 << 10
	// goingAwayMillis is how long agents wait before redialing a relay
	// that is shutting down, plus their own jitter.
	goingAwayMillis = 1000
	// goingAwayGrace bounds how long Close waits for agents to hang up
	// after their GoingAway: a round trip and a FIN for an agent that is
	// there at all.
	goingAwayGrace = time.Second
	// maxInboundPerHub is how many of a hub's data packets may wait inside
	// WireGuard on the way to the netstack. WireGuard holds each in a 64 KiB
	// buffer whatever its size, and a tunnel TCP window of 1 MiB from a fast
	// hub is ~760 packets, ~48 MiB. Beyond the bound that hub's connection
	// is not read, and the backlog waits in the socket buffers at its real
	// size. The count is per hub, so one hub's backlog never holds back
	// another's. 128 packets are 8 MiB; throughput did not change.
	maxInboundPerHub = 128
	// reconnectWindow and reconnectWait: a request for a hub whose agent
	// connection ended less than reconnectWindow ago (the agent updating
	// or restarting, its network blinking) waits up to reconnectWait for
	// the agent to connect again, rather than failing with "Hub offline"
	// in the second the agent needs. A relay that restarts knows of no
	// earlier connection.
	reconnectWindow = 30 * time.Second
	reconnectWait   = 5 * time.Second
)

// agentKeepAlive is far slower than the agent's own (90 s): the agent keeps
// an idle connection alive, and its probes do not reset the relay's timer,
// so every relay probe is extra idle traffic (30 KB/day at 5 minutes). The
// relay's own timer only clears out agents that vanished without a word.
var agentKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Minute, Interval: time.Minute, Count: 5}

// tunnelMTU is the relay netstack's MTU: large, so that TCP-transport agents
// (default mtu 8000) get full-size segments. TCP's MSS negotiation keeps
// segments to UDP agents (mtu 1420) at their size.
const tunnelMTU = 8000

// Server is a running relay. Create it with New, then Start; Close stops it.
type Server struct {
	cfg     Config
	logf    logger.Logf
	key     vpn.PrivateKey
	version string

	hubs  map[string]*hub
	byKey map[vpn.PublicKey]*hub
	byIP  map[netip.Addr]*hub // by tunnel address

	stack *netstack.Stack
	bind  *agentBind
	dev   *vpn.Device
	tls   *tls.Config

	agentLn  net.Listener
	publicLn map[uint16]net.Listener // by tunnel port
	releases *http.Server            // nil without releases_dir

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu        sync.Mutex
	conns     map[net.Conn]struct{} // agent and public connections, closed at Close
	agent     map[*agentConn]struct{}
	agentsWG  sync.WaitGroup // serveAgent calls that registered in agent
	goingAway bool           // Close has begun telling agents; no new ones
}

// hub is a configured hub and what the relay knows about it now.
type hub struct {
	HubConfig
	online atomic.Int32 // live agent connections that named this hub and completed a handshake; changed under mu

	mu     sync.Mutex
	goneAt time.Time     // when its last connection ended; zero if it never had one
	back   chan struct{} // closed when it connects again; nil while nobody waits

	// inbound counts the hub's data packets that its agent connections
	// have handed to WireGuard and WireGuard has not yet written to the
	// netstack (see maxInboundPerHub). roomMu: one reader waits at a time.
	inbound *inflight.Window
	roomMu  sync.Mutex
}

// admitInbound waits until the hub has room for one more data packet
// inside WireGuard and counts it in. It reports false once stop is closed.
func (h *hub) admitInbound(stop <-chan struct{}) bool {
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	if h.inbound.Room(1, stop) == 0 {
		return false
	}
	h.inbound.Enter(1)
	return true
}

// connected counts a verified agent connection in and wakes waitOnline.
func (h *hub) connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.online.Add(1)
	if h.back != nil {
		close(h.back)
		h.back = nil
	}
}

// disconnected counts a verified agent connection out and reports whether
// it was the hub's last.
func (h *hub) disconnected() (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.online.Add(-1) != 0 {
		return false
	}
	h.goneAt = time.Now()
	return true
}

// reconnecting reports whether h has no connection now but had one less
// than reconnectWindow ago.
func (h *hub) reconnecting() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online.Load() == 0 && !h.goneAt.IsZero() && time.Since(h.goneAt) < reconnectWindow
}

// waitOnline waits up to max, or until done is closed, for h to have an
// agent connection, and reports whether it has one.
func (h *hub) waitOnline(max time.Duration, done <-chan struct{}) bool {
	h.mu.Lock()
	if h.online.Load() > 0 {
		h.mu.Unlock()
		return true
	}
	if h.back == nil {
		h.back = make(chan struct{})
	}
	back := h.back
	h.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-back:
		return true
	case <-t.C:
	case <-done:
	}
	return false
}

// New prepares a relay from a validated config. version is shown to agents.
func New(cfg Config, version string, logf logger.Logf) (*Server, error) {
	logf = logger.OrDiscard(logf)
	s := &Server{
		cfg:      cfg,
		logf:     logf,
		version:  version,
		hubs:     map[string]*hub{},
		byKey:    map[vpn.PublicKey]*hub{},
		byIP:     map[netip.Addr]*hub{},
		publicLn: map[uint16]net.Listener{},
		closing:  make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
		agent:    map[*agentConn]struct{}{},
	}
	for _, hc := range cfg.Hubs {
		h := &hub{HubConfig: hc, inbound: inflight.New(maxInboundPerHub)}
		s.hubs[h.Name] = h
		s.byKey[h.key] = h
		s.byIP[h.ip] = h
	}
	return s, nil
}

// Start opens every listener and brings the tunnel up; on error nothing is
// left open.
func (s *Server) Start() (err error) {
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	k, created, err := vpn.LoadOrCreatePrivateKey(s.cfg.PrivateKeyFile)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.key = k
	if created {
		s.logf("relay: created a new key in %s", s.cfg.PrivateKeyFile)
	}
	if s.tls, err = s.tlsConfig(); err != nil {
		return err
	}

	udpPort := uint16(0)
	if s.cfg.AgentListenUDP != "off" {
		_, p, _ := net.SplitHostPort(s.cfg.AgentListenUDP)
		n, _ := strconv.ParseUint(p, 10, 16)
		udpPort = uint16(n)
	}
	if s.stack, err = netstack.New(netstack.Config{Addrs: []netip.Addr{s.cfg.tunnelIP}, MTU: tunnelMTU}); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.bind = newAgentBind(udpPort)
	if s.dev, err = vpn.NewDevice(&inboundTUN{Device: s.stack.Device(), byIP: s.byIP}, s.bind, k, s.logf); err != nil {
		s.stack.Close()
		s.stack = nil
		return fmt.Errorf("relay: %w", err)
	}
	if udpPort != 0 {
		if err := s.dev.SetListenPort(udpPort); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
	}
	for _, h := range s.hubs {
		err := s.dev.AddPeer(vpn.Peer{PublicKey: h.key, AllowedIPs: []netip.Prefix{netip.PrefixFrom(h.ip, h.ip.BitLen())}})
		if err != nil {
			return fmt.Errorf("relay: hub %s: %w", h.Name, err)
		}
	}
	if err := s.dev.Up(); err != nil {
		return fmt.Errorf("relay: agent_listen_udp %s: %w", s.cfg.AgentListenUDP, err)
	}
	if s.cfg.ReleasesDir != "" {
		if err := s.serveReleases(); err != nil {
			return fmt.Errorf("relay: releases_dir: %w", err)
		}
	}

	lc := net.ListenConfig{KeepAliveConfig: agentKeepAlive}
	if s.agentLn, err = lc.Listen(context.Background(), "tcp", s.cfg.AgentListen); err != nil {
		return fmt.Errorf("relay: agent_listen: %w", err)
	}
	for _, e := range portmap.Fixed() {
		addr := net.JoinHostPort(s.cfg.PublicListen, strconv.Itoa(int(e.Port)+s.cfg.PortOffset))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("relay: public port %d (%s): %w", e.Port, addr, err)
		}
		s.publicLn[e.Port] = ln
	}

	s.wg.Add(1)
	go s.acceptAgents()
	for _, e := range portmap.Fixed() {
		s.wg.Add(1)
		go s.acceptPublic(s.publicLn[e.Port], e)
	}
	s.logf("relay: agents connect to %s (tcp%s); public key %s", s.agentLn.Addr(), udpNote(udpPort), k.Public())
	s.logf("relay: %d hubs, e.g. http://%s.%s:%d/", len(s.hubs), firstHub(s.cfg.Hubs), s.cfg.PublicHost, 80+s.cfg.PortOffset)
	return nil
}

func udpNote(port uint16) string {
	if port == 0 {
		return ""
	}
	return fmt.Sprintf(", udp :%d", port)
}

func firstHub(hs []HubConfig) string {
	if len(hs) == 0 {
		return "NAME"
	}
	return hs[0].Name
}

// PublicKey is the relay's WireGuard public key, which agents pin.
func (s *Server) PublicKey() vpn.PublicKey { return s.key.Public() }

// AgentAddr is the address agents connect to.
func (s *Server) AgentAddr() net.Addr { return s.agentLn.Addr() }

// PublicAddr is the listener for a tunnel port of the map.
func (s *Server) PublicAddr(port uint16) net.Addr {
	if ln := s.publicLn[port]; ln != nil {
		return ln.Addr()
	}
	return nil
}

// Close stops accepting, tells every agent the relay is going away and
// gives them up to goingAwayGrace to hang up, then closes everything and
// waits for the goroutines it started. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.agentLn != nil {
			s.agentLn.Close()
		}
		for _, ln := range s.publicLn {
			ln.Close()
		}
		if s.releases != nil {
			s.releases.Close()
		}
		s.sayGoingAway()
		close(s.closing)
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		if s.dev != nil {
			s.dev.Close() // closes the bind and the netstack's device
		}
		if s.stack != nil {
			s.stack.Close()
		}
	})
	return nil
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
	s.logf("relay: shutting down: telling %d agent connection(s) to come back in %v", len(agents), goingAwayMillis*time.Millisecond)
	gone := make(chan struct{})
	go func() {
		s.agentsWG.Wait()
		close(gone)
	}()
	for _, ac := range agents {
		// One at a time could wait agentWriteTimeout on each stalled agent.
		go ac.goAway(goingAwayMillis * time.Millisecond)
	}
	t := time.NewTimer(goingAwayGrace)
	defer t.Stop()
	select {
	case <-gone:
	case <-t.C:
		s.logf("relay: closing %d agent connection(s) that did not hang up within %v", s.agentCount(), goingAwayGrace)
	}
}

func (s *Server) agentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.agent)
}

// track registers a connection to be closed by Close; it reports false
// (and closes c) when the server is already closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		c.Close()
		return false
	default:
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// acceptLoop accepts until ln is closed, handing each connection to handle
// in a goroutine counted by s.wg.
func (s *Server) acceptLoop(ln net.Listener, what string, handle func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logf("relay: accept %s: %v", what, err)
			select {
			case <-s.closing:
				return
			case <-time.After(100 * time.Millisecond): // e.g. out of file descriptors
			}
			continue
		}
		if !s.track(c) {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			handle(c)
		}()
	}
}

func (s *Server) acceptAgents() {
	s.acceptLoop(s.agentLn, "agent", s.serveAgent)
}

// serveAgent reads one agent connection until it ends. The first frame
// must be a Hello; WireGuard messages go to the device; anything malformed
// ends this connection and nothing else.
func (s *Server) serveAgent(c net.Conn) {
	ac := newAgentConn(c)
	s.mu.Lock()
	if s.goingAway {
		s.mu.Unlock()
		return
	}
	s.agent[ac] = struct{}{}
	s.agentsWG.Add(1)
	s.mu.Unlock()
	defer s.agentsWG.Done()
	defer func() {
		ac.conn.Close()
		s.mu.Lock()
		delete(s.agent, ac)
		s.mu.Unlock()
		if h := ac.hub.Load(); ac.finish() && h != nil {
			if h.disconnected() {
				// Whoever connects next for this hub starts with a new
				// handshake; until it is confirmed, a request waiting for
				// the hub (awaitReconnect) must not go out with keys a
				// restarted agent no longer has.
				s.dev.ExpireSessions(h.key)
			}
			s.logf("relay: hub %s disconnected (%s; %d bytes in, %d out)", h.Name, ac.remote, ac.counters.Rx(), ac.counters.Tx())
		}
	}()

	// One frame buffer at a time: the one the next frame is read into,
	// handed to WireGuard with it.
	var buf *[wire.MaxFrame]byte
	defer func() {
		if buf != nil {
			framePool.Put(buf)
		}
	}()
	buf = framePool.Get().(*[wire.MaxFrame]byte)

	hello := wire.Hello{Version: wire.ProtocolVersion, Key: s.key.Public(), Software: "hubrelay/" + s.version}
	if err := ac.writeControl(hello.Marshal()); err != nil {
		return
	}
	ac.conn.SetReadDeadline(time.Now().Add(helloTimeout))
	n, err := ac.conn.ReadFrame(buf[:])
	if err != nil || buf[0] != wire.TypeHello {
		return // not an agent, or silent: drop it quietly
	}
	h, err := wire.ParseHello(buf[:n])
	if err != nil {
		ac.writeControl(wire.Error{Message: "malformed hello"}.Marshal())
		return
	}
	if h.Version != wire.ProtocolVersion {
		ac.writeControl(wire.Error{Code: wire.CodeVersion, Message: fmt.Sprintf("relay speaks protocol %d, agent %d: update the agent", wire.ProtocolVersion, h.Version)}.Marshal())
		return
	}
	hb := s.byKey[vpn.PublicKey(h.Key)]
	if hb == nil {
		s.logf("relay: unknown agent key %s from %s (%s)", vpn.PublicKey(h.Key).Short(), ac.remote, h.Software)
		ac.writeControl(wire.Error{Message: "this hub is not registered at the relay"}.Marshal())
		return
	}
	// The Hello is only a claim. The hub counts as online, and the
	// connection may idle, once WireGuard has answered its handshake.
	ac.hub.Store(hb)
	ac.onVerify = func() {
		hb.connected()
		ac.conn.SetReadDeadline(time.Time{}) // keepalives watch the connection from now on
		s.logf("relay: hub %s connected from %s (%s)", hb.Name, ac.remote, h.Software)
	}
	ac.conn.SetReadDeadline(time.Now().Add(handshakeTimeout))

	for {
		if buf == nil {
			buf = framePool.Get().(*[wire.MaxFrame]byte)
		}
		n, err := ac.conn.ReadFrame(buf[:])
		if err != nil {
			return
		}
		kind := wire.Classify(buf[:n])
		if !kind.IsWireGuard() {
			continue // later control messages; nothing to do yet
		}
		// Only a connection the hub's handshake came over is held back: its
		// packets can reach the netstack and be counted out. Anything else
		// WireGuard drops at once, holding nothing.
		if kind == wire.Data && ac.state.Load() == connVerified && !hb.admitInbound(s.closing) {
			return
		}
		select {
		case s.bind.in <- inbound{buf: buf, n: n, ep: ac}:
			buf = nil
		case <-s.closing:
			return
		}
	}
}
