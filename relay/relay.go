// Package relay is hubrelay's server: it accepts agents on one TCP port
// (and UDP for plain WireGuard), runs one WireGuard device with a peer per
// hub on its own userspace netstack, and forwards each request of users
// arriving on the public ports of the fixed map to the hub its Host header
// names.
//
// An agent connection (agentconn.go): the agent dials agent_listen and
// both sides say Hello; the agent's names the hub it claims to be, and the
// hub registry (hubs.go) counts the hub online once WireGuard has answered a
// handshake on that connection, which proves the claim.
//
// The data path, a user's request:
//
//  1. public.go accepts the user on a public port, terminates TLS where the
//     map says so, and Go's HTTP server reads each request on its own; the
//     per-address limits (limits.go), a strict head, the hub its Host
//     names and authorize decide whether it goes on.
//  2. The registry says whether the hub is online. A hub whose last agent
//     connection ended less than 30 s ago is waited for up to 5 s; any other
//     offline hub gets the same 404 page as an unknown name, at once.
//  3. proxy.go forwards the request with httputil.ReverseProxy over a
//     kept-alive connection of the hub's own pool, which the relay's
//     netstack dials to the hub's tunnel address on the same port.
//  4. peerTUN (peers.go) makes sure the hub has a WireGuard peer (only
//     active hubs have one), and WireGuard encrypts the netstack's packets for it and sends
//     them through agentBind (bind.go) to the endpoint the hub last spoke
//     from: its agent connection, whose wire.Conn frames a batch into one
//     write (agentconn.go).
//  5. The agent's packets come back on that connection: its reader
//     (agentconn.go) reads each frame into a pooled buffer, counts a data
//     packet into the hub's inbound window (waiting while 128 are inside
//     WireGuard: one hub cannot fill the relay's memory), and hands it to
//     agentBind's receive function.
//  6. WireGuard decrypts it and writes the packet to the netstack through
//     inboundTUN (hubs.go), which counts it out of the hub's window; the
//     netstack delivers it to the connection step 3 dialed.
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
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/netstack"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
	"github.com/hubtunnel/hubtunnel/wire"
	"golang.zx2c4.com/wireguard/device"
)

// tunnelMTU is the relay netstack's MTU: the largest a frame carries, so
// that TCP-transport agents get segments of their own MTU (mtu, default
// wire.MaxTunnelMTU). TCP's MSS negotiation keeps segments to agents with a
// smaller one (UDP agents: 1420; agents before Features: 8000) at their
// size, and the netstack sends nothing else larger: ICMP echo replies are
// the size of the request, ICMP errors at most 576 bytes (IPv4) or 1280
// (IPv6), and it speaks no UDP.
const tunnelMTU = wire.MaxTunnelMTU

// Server is a running relay. Create it with New, then Start; Close stops it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	logf    logger.Logf // log's, for the components that take a Logf
	key     vpn.PrivateKey
	pub     vpn.PublicKey // key's
	pending pendingKeys   // hubs' announced next keys (keys.go)
	// nextKeyTag's last read: the tag, and when (unix ns; 0: never).
	nextTag   atomic.Uint32
	nextTagAt atomic.Int64
	version   string

	hubs     *registry
	udpPeers peerDump   // lastUDPHeard's
	saveMu   sync.Mutex // writers of the UDP sessions file (unknown.go)
	// startHubs is the store's hubs as openStore read them, before it
	// cleared their online marks: the first syncHubs serves them, and
	// counts those whose agents are on their way back as reconnecting.
	startHubs []store.Hub
	db        *store.Store // Config.Store, open from Start to Close
	lock      *store.Lock  // the SQLite store's, held from Start to Close
	now       func() time.Time
	began     time.Time // when Start began, by now

	// Access control (auth.go): the store's Revision as last polled, the
	// connections with a decision, the portal's hand-off codes, the audit
	// writer, and the portal's handler for the portal host.
	revision  atomic.Int64
	refreshMu sync.Mutex // one refresh (auth.go) at a time
	decisions decisionCache
	live      liveConns
	handoffs  handoffs
	audit     *auditor
	rec       *recorder // the hubs' online state, to the store (record.go)
	portal    portals
	// storeErrLog logs the store's failures on the request path, each
	// message at most once a minute.
	storeErrLog *slog.Logger
	// repeatLog logs what can come per connection or request (agents with
	// a key the relay does not serve, requests waiting for a hub), each
	// message at most once every 10 s: a scan or a swarm of stale agents
	// must not flood the log.
	repeatLog *slog.Logger

	// enrollLimit counts enrollment attempts per source (enroll.go).
	enrollLimit *enrollLimiter

	stack *netstack.Stack
	bind  *agentBind
	// features is what the relay's Features frame says (wire.Ours). The
	// relay's tests play a relay from before it with legacy.
	features wire.Features
	legacy   bool // no Features sent, frames up to wire.LegacyMaxFrame, MTU 8000, checksums verified and sent
	// udpClock reads UDP hubs' initiations for bind.udpIn and resets a
	// hub whose clock is behind (clock_udp.go); nil when UDP is off.
	udpClock *udpClock
	// initiations reads the hubs' handshake initiations (the hub a
	// connection is for, clock.go, clock_udp.go).
	initiations *noise.Responder
	// mac1 checks that an agent's handshake initiation was made for this
	// relay's key (agentconn.go wrongKey).
	mac1 device.CookieChecker
	dev  *vpn.Device
	tls  *tls.Config
	// certs is the certificate the TLS ports serve (tls.go); acme, with
	// [acme], what the ACME client keeps between orders (acme.go).
	certs certStore
	acme  *acmeState
	// metrics count for the metrics listener (metrics.go).
	metrics    metrics
	metricsLn  net.Listener
	metricsSrv *http.Server
	reloadMu   sync.Mutex // one Reload at a time
	// agentTLS is tls offering agents ALPN hubtunnel/1: public port 443
	// and the agent port (agenttls.go).
	agentTLS *tls.Config

	agentLn  net.Listener
	publicLn map[uint16]net.Listener // by tunnel port
	limits   *limiter                // of the public ports, per address
	proxy    *hubProxy               // to the hubs
	hubAPI   *http.Server            // releases and keys, inside the tunnel (hubapi.go)
	debugSrv *http.Server            // debug_listen (debug.go), or nil
	debugLn  net.Listener            // its listener
	debug    debugCounters

	// publicGate and agentGate bound the open connections of the public
	// ports and of the agent port (limits.go); sessions the requests in
	// flight to each hub.
	publicGate, agentGate *connGate
	sessions              *hubSessions

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu        sync.Mutex
	conns     map[net.Conn]struct{} // agent and public connections, closed at Close
	agent     map[*agentConn]struct{}
	agentsWG  sync.WaitGroup // serveAgent calls that registered in agent
	parker    *wire.Parker   // idle agent connections wait here, with no goroutine (agentconn.go); nil where there is none
	goingAway bool           // Close has begun telling agents; no new ones

	// peersMu: one change of WireGuard's peers at a time (syncHubs,
	// resetReplay in clock.go, addPeer, sweepPeers and sweepUDPPeers in
	// peers.go).
	// peerCount: the hubs with a peer now.
	peersMu   sync.Mutex
	peerCount atomic.Int64
	maxPeers  int // WireGuard's limit (peers.go); tests set less
	// udpPeerSweep is how often sweepUDPPeers looks: udpPeerSweepEvery;
	// tests sweep themselves.
	udpPeerSweep time.Duration
	memReturn    memReturn // what removed peers left to hand back (peers.go); under peersMu
	// wakeMu guards the peers being added for WireGuard's goroutines
	// (wakePeer) and those UDP initiations asked for (wantPeer).
	wakeMu sync.Mutex
	waking map[*hub]chan struct{}
	wanted []*hub
}

// New prepares a relay from a validated config. version is shown to agents.
// Its lines go to cfg.Logger or, without one, as text to logf.
func New(cfg Config, version string, logf logger.Logf) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = logger.ToSlog(logf)
	}
	logf = logger.FromSlog(log)
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		cfg:         cfg,
		log:         log,
		logf:        logf,
		version:     version,
		hubs:        newRegistry(nil, now),
		now:         now,
		storeErrLog: logger.Limited(log, time.Minute),
		repeatLog:   logger.Limited(log, 10*time.Second),
		publicLn:    map[uint16]net.Listener{},
		closing:     make(chan struct{}),
		conns:       map[net.Conn]struct{}{},
		agent:       map[*agentConn]struct{}{},
		features:    wire.Ours,
		rec:         newRecorder(),
		maxPeers:    device.MaxPeers,
	}
	s.udpPeerSweep = udpPeerSweepEvery
	s.limits = newLimiter(cfg.LimitConnsPerAddress, cfg.LimitRequestsPerSecond, now)
	pub, ag, perAddr, perHub := cfg.connLimits()
	s.publicGate = newConnGate("public", "limit_public_conns", pub, 0, log)
	s.agentGate = newConnGate("agent", "limit_agent_conns", ag, perAddr, log)
	s.sessions = newHubSessions(perHub, log)
	s.enrollLimit = newEnrollLimiter(now)
	s.proxy = newHubProxy(s)
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
	s.began = s.now()
	k, created, err := vpn.LoadOrCreatePrivateKey(s.cfg.PrivateKeyFile)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.key, s.pub = k, k.Public()
	if s.initiations, err = noise.NewResponder(k, s.hubs); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.mac1.Init(device.NoisePublicKey(s.pub))
	if s.tls, err = s.tlsConfig(); err != nil {
		return err
	}
	s.agentTLS = withAgentALPN(s.tls)
	if err := s.openStore(); err != nil {
		return err
	}
	if created {
		if err := s.refuseNewKey(); err != nil {
			return err
		}
		s.log.Info("created a new key", "file", s.cfg.PrivateKeyFile)
	}
	s.audit = newAuditor(s.db, s.log)
	s.audit.count = s.metrics.event
	s.startRecorder()
	if s.portal, err = s.newPortals(); err != nil {
		return err
	}

	udpPort := uint16(0)
	if s.cfg.AgentListenUDP != "off" {
		_, p, _ := net.SplitHostPort(s.cfg.AgentListenUDP)
		n, _ := strconv.ParseUint(p, 10, 16)
		udpPort = uint16(n)
	}
	if s.stack, err = netstack.New(s.stackConfig()); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.bind = newAgentBind(udpPort)
	if udpPort != 0 {
		s.bind.udpIn = newUDPInbound(s)
		s.udpClock = newUDPClock(s)
	}
	if s.dev, err = vpn.NewDevice(&peerTUN{&inboundTUN{Device: s.stack.Device(), hubs: s.hubs}, s}, s.bind, k, s.logf); err != nil {
		s.stack.Close()
		s.stack = nil
		return fmt.Errorf("relay: %w", err)
	}
	if udpPort != 0 {
		if err := s.dev.SetListenPort(udpPort); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		s.hubs.udpHeard = s.lastUDPHeard
	}
	if err := s.syncHubs(); err != nil {
		return err
	}
	if err := s.dev.Up(); err != nil {
		return fmt.Errorf("relay: agent_listen_udp %s: %w", s.cfg.AgentListenUDP, err)
	}
	s.resumeUDP()
	if err := s.serveHubAPI(); err != nil {
		return err
	}

	lc := net.ListenConfig{KeepAliveConfig: agentKeepAlive}
	if s.agentLn, err = lc.Listen(context.Background(), "tcp", s.cfg.AgentListen); err != nil {
		return fmt.Errorf("relay: agent_listen: %w", err)
	}
	s.pickedEnrollAddress()
	for _, e := range portmap.Fixed() {
		if !s.servesPort(e) {
			continue
		}
		addr := net.JoinHostPort(s.cfg.PublicListen, strconv.Itoa(int(e.Port)+s.cfg.PortOffset))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("relay: public port %d (%s): %w", e.Port, addr, err)
		}
		s.publicLn[e.Port] = ln
	}

	if err := s.serveMetrics(); err != nil {
		return err
	}
	if err := s.startDebug(); err != nil {
		return err
	}
	s.startParker()
	s.wg.Add(2)
	go s.acceptAgents()
	go s.watchRevision()
	switch {
	case s.acme != nil:
		s.wg.Add(1)
		go s.acmeLoop()
	case s.cfg.TLSCertFile == "":
		s.wg.Add(1)
		go s.every(12*time.Hour, s.renewSelfSigned)
	}
	if udpPort != 0 {
		s.wg.Add(3)
		go s.recordUDPHubs()
		go s.keepUDPSessions()
		go s.every(s.udpPeerSweep, s.sweepUDPPeers)
	}
	s.wg.Add(1)
	go s.every(peerSweepEvery, s.sweepPeers)
	for _, e := range portmap.Fixed() {
		if ln := s.publicLn[e.Port]; ln != nil {
			s.wg.Add(1)
			go s.acceptPublic(ln, e)
		}
	}
	s.log.Info("agents connect to this relay", "listen", s.agentLn.Addr().String(), "udp_port", udpPort, "key", k.Public().String(), "procs", runtime.GOMAXPROCS(0))
	s.log.Info("serving hubs", "hubs", s.hubs.count(), "example", "https://"+net.JoinHostPort(firstHub(s.cfg.Hubs)+"."+s.cfg.Domain, strconv.Itoa(443+s.cfg.PortOffset))+"/")
	return nil
}

func firstHub(hs []HubConfig) string {
	if len(hs) == 0 {
		return "NAME"
	}
	return hs[0].Name
}

// every runs f every d until the relay closes, for a goroutine counted in
// s.wg.
func (s *Server) every(d time.Duration, f func()) {
	defer s.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			f()
		}
	}
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
		if s.hubAPI != nil {
			s.hubAPI.Close()
		}
		if s.metricsSrv != nil {
			s.metricsSrv.Close()
		}
		if s.debugSrv != nil {
			s.debugSrv.Close()
		}
		if s.bind != nil && s.bind.udpIn != nil {
			if answers := s.bind.udpIn.goodbye(); len(answers) > 0 {
				if _, err := s.saveUnknown(answers); err != nil {
					s.bind.sendUnknown(answers)
					s.log.Info("shutting down: told the UDP hubs to handshake with the relay that follows", "sessions", len(answers), "not_saved", err.Error())
				} else {
					s.log.Info("shutting down: left the UDP hubs' sessions for the relay that follows", "sessions", len(answers))
				}
			}
		}
		s.sayGoingAway()
		close(s.closing)
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.stopRecorder() // after the connections, whose hubs it records offline
		s.audit.close()  // after the connections, whose records it writes
		if s.dev != nil {
			s.dev.Close() // closes the bind and the netstack's device
		}
		if s.stack != nil {
			s.stack.Close()
		}
		if s.db != nil {
			s.db.Close()
		}
		s.lock.Release()
	})
	return nil
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

// acceptLoop accepts until ln is closed, handing each connection with its
// slot in gate to handle, in a goroutine counted by s.wg until handle calls
// done, exactly once, perhaps after it returned (an idle agent connection
// waits with no goroutine: agentconn.go). A connection the
// gate has no room for is reset at once; accept errors (out of file
// descriptors) back off (acceptBackoff).
func (s *Server) acceptLoop(ln net.Listener, what string, gate *connGate, handle func(c net.Conn, slot *gateSlot, done func())) {
	defer s.wg.Done()
	b := acceptBackoff{what: what, log: s.log}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !b.wait(err, s.closing) {
				return
			}
			continue
		}
		b.ok()
		if !s.track(c) {
			continue
		}
		slot := gate.admit(addrKey(c.RemoteAddr()), func() { c.Close() })
		if slot == nil {
			abort(c)
			s.untrack(c)
			continue
		}
		s.wg.Add(1)
		go handle(c, slot, func() {
			s.untrack(c)
			gate.release(slot)
			s.wg.Done()
		})
	}
}

// openStore opens and migrates Config.Store and imports the config's
// [[hub]] list into it: new hubs are added, a changed key or tunnel address
// is updated, and hubs only in the store stay. The registry serves the
// config's list, so after the import every hub it serves is in the store
// with the same key and address; a list that cannot be imported (a key or
// address that is another hub's in the store) stops the relay rather than
// serve hubs the store does not agree with.
func (s *Server) openStore() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One relay per SQLite store: a second would keep its own idea of
	// which hubs are online, and a restore must not swap the file under
	// a running relay.
	lock, err := store.LockStore(s.cfg.Store)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.lock = lock
	db, err := store.Open(ctx, s.cfg.Store, store.Options{Logf: s.logf, Now: s.cfg.Now})
	if err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	s.db = db
	if err := s.importHubs(ctx, s.cfg.Hubs); err != nil {
		return err
	}
	// No hub is connected yet; a relay that crashed left some marked online.
	// (One relay per store: a fleet sharing one would need a relay id.)
	// Those, and the hubs whose agent left a moment ago, come back soon:
	// read before the marks go.
	if s.startHubs, err = db.Hubs(ctx); err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	if _, err := db.ClearOnline(ctx); err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	rev, err := db.Revision(ctx)
	if err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	s.revision.Store(rev)
	return nil
}

// refuseNewKey stops a relay that has just made a new key while its store
// knows hubs that have connected before: they pinned the old key, and a
// new one would lock every one of them out. The new key file goes again,
// so that the next start does not take it for the real one.
func (s *Server) refuseNewKey() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hubs, err := s.db.Hubs(ctx)
	if err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	seen := 0
	for _, h := range hubs {
		if !h.LastSeen.IsZero() {
			seen++
		}
	}
	if seen == 0 {
		return nil
	}
	os.Remove(s.cfg.PrivateKeyFile)
	return fmt.Errorf("relay: private_key_file %s is missing, but %d hub(s) in the store have connected with this relay's key and pinned it; "+
		"a new key would lock every one of them out, so the relay does not make one. Restore the key file from a backup. "+
		"(If it is lost for good, move the store %s aside: every hub must then be connected anew.)", s.cfg.PrivateKeyFile, seen, s.db.Where())
}

func hubList(ns []string) string {
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, ", ")
}

// Store is the relay's database, open between Start and Close.
func (s *Server) Store() *store.Store { return s.db }

// stackConfig is the relay netstack's: its tunnel address, the MTU a frame
// carries, TCP checksums only for the hubs whose agents verify them
// (hub.noChecksum), and receive windows that grow to receiveBufferMax
// while the user keeps up.
//
// The one stack serves hubs on both transports, so its TCP recovers from
// loss as over UDP (netstack.Config.LossyLink): with RACK an upload to a
// UDP hub that lost a flight crawled (e2e burst loss upload: 16 MiB at
// 0.64-0.73 MB/s, against 9-14 MB/s without), while the spurious timeouts
// that keep the agent over TCP on RACK did not show in uploads (e2e slow
// downlink: 228-229 KB/s with RACK; without, 231-234 over TCP, 225 over
// UDP).
func (s *Server) stackConfig() netstack.Config {
	cfg := netstack.Config{Addrs: []netip.Addr{s.cfg.tunnelIP}, MTU: tunnelMTU, NeedsChecksum: s.needsChecksum, ReceiveBufferMax: receiveBufferMax, LossyLink: true}
	if s.legacy {
		cfg.MTU, cfg.NeedsChecksum, cfg.VerifyChecksums = 8000, nil, true
	}
	return cfg
}

// receiveBufferMax is how far a connection's receive buffer at the relay
// may grow (netstack.Config.ReceiveBufferMax): a hub's download over a fast
// path needs a window larger than the default 1 MiB (agent.streamSendBuffer
// is the other half). It grows only while the relay passes the data on as
// fast as it comes (a user slow from the start leaves it at 1 MiB; a grown
// buffer does not shrink, so a user who slows down later can have 4 MiB
// waiting at the relay).
const receiveBufferMax = 4 << 20

// needsChecksum reports whether the hub at tunnel address dst verifies the
// TCP checksums of the packets it receives: every hub but one whose agent
// said otherwise in its Features (UDP hubs, agents before Features).
func (s *Server) needsChecksum(dst netip.Addr) bool {
	h := s.hubs.ip(dst)
	return h == nil || !h.noChecksum.Load()
}
