package relay

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
)

const (
	// maxInboundPerHub is how many of a hub's data packets may wait inside
	// WireGuard on the way to the netstack. WireGuard holds each in a 64 KiB
	// buffer whatever its size, and a tunnel TCP window of 1 MiB from a fast
	// hub is ~760 packets, ~48 MiB. Beyond the bound that hub's connection
	// is not read, and the backlog waits in the socket buffers at its real
	// size. The count is per hub, so one hub's backlog never holds back
	// another's. 128 packets are 8 MiB; throughput did not change.
	maxInboundPerHub = 128
	// maxInboundPerUDPHub is the same bound for a UDP hub, whose packets
	// beyond it are dropped, not left waiting (udpInbound): each drop is a
	// loss the tunnel's TCP recovers from, and at 128 packets (180 KB of
	// 1420-byte packets, 2 ms at 600 Mbit/s) every pause of the relay
	// dropped some. make bench, UDP downloads (1 / 8 streams, Mbit/s) and
	// the relay's peak RSS: 128: 458–499 / 527–633, 84–88 MB; 256: 475 /
	// 531, 102 MB; 512: 587–910 / 621–703, 104–110 MB; 1024: 577 / 619,
	// 119 MB. At most 32 MiB of WireGuard's buffers per busy UDP hub.
	maxInboundPerUDPHub = 512
	// reconnectWindow and reconnectWait: a request for a hub whose agent
	// connection ended less than reconnectWindow ago (the agent updating
	// or restarting, its network blinking) waits up to reconnectWait for
	// the agent to connect again, rather than failing with "Hub offline"
	// in the second the agent needs. A relay that has just started counts
	// the hubs the store says were online, or went less than
	// reconnectWindow before, as gone at its start (recentlyOnline).
	reconnectWindow = 30 * time.Second
	reconnectWait   = 5 * time.Second
	// udpSessionFresh is how recently a UDP hub must have been heard from
	// (udpLastHeard) to count as online: WireGuard rekeys every 2 minutes
	// while the agent's persistent keepalives flow, a session the relay
	// started (peers.go) at the first keepalive after REJECT_AFTER_TIME
	// (180 s), within 25 s, and the keepalives come every 25 s; an agent
	// that pings (wire.UDPPing) pings every 25 s and need not rekey.
	udpSessionFresh = rejectAfterTime + 30*time.Second
	// udpRecordEvery is how often a relay with UDP agents looks at their
	// handshakes to record which are online (recordUDPHubs): UDP agents
	// say nothing but WireGuard, so there is no connect to record.
	udpRecordEvery = 30 * time.Second
	// udpFirstRecord is when recordUDPHubs first looks after the start.
	udpFirstRecord = 5 * time.Second
	// udpPeersMaxAge is how old the dump of WireGuard's peers that
	// online checks of UDP hubs read may be (lastUDPHeard), and
	// udpWaitPoll how often a request waiting for a UDP hub looks.
	udpPeersMaxAge = 50 * time.Millisecond
	udpWaitPoll    = 50 * time.Millisecond
)

// registry is the hub registry: every hub the relay serves by name, key
// and tunnel address, and what the relay knows of each now: online,
// reconnecting, and its packets inside WireGuard. The hubs are the store's
// enabled ones (Server.syncHubs); the set is replaced whole when they
// change, so the lookups on the packet path take no lock.
type registry struct {
	set atomic.Pointer[hubSet]

	now func() time.Time // Config.Now
	// udpHeard, set when UDP agents are allowed, is when the hub was last
	// heard from over UDP: a handshake, or a keepalive or ping on one of
	// its sessions (zero: never, or its peer's last endpoint is an agent's
	// TCP connection). UDP agents say no Hello.
	udpHeard func(vpn.PublicKey) time.Time
}

// hubSet is one version of the registry's hubs; never changed once made.
type hubSet struct {
	byName map[string]*hub
	byKey  map[vpn.PublicKey]*hub
	byIP   map[netip.Addr]*hub
}

// hub is a configured hub and what the relay knows about it now.
type hub struct {
	HubConfig
	online atomic.Int32 // live agent connections that named this hub and completed a handshake; changed under mu
	// udpUntil is when its last UDP handshake stops counting as online
	// (Unix ns; 0: not known to be online over UDP), so that a request to
	// an online UDP hub does not look it up in WireGuard's peers. Cleared
	// under mu when a TCP connection comes.
	udpUntil atomic.Int64
	// staticSecret is the DH of the relay's and the hub's static keys,
	// once an initiation of the hub's was read (registry's
	// noise.SecretCache): one X25519 less for each of its initiations.
	staticSecret atomic.Pointer[[32]byte]

	mu             sync.Mutex
	conns          []*agentConn  // its verified agent connections (online counts them)
	goneAt         time.Time     // when its last connection ended; zero if it never had one
	back           chan struct{} // closed when it connects again; nil while nobody waits
	wrongKeyLogged time.Time     // when a connection with a wrong relay key was last logged
	foreignLogged  time.Time     // when a connection naming this hub with another key's handshake was last logged

	// A second connection with the hub's key (clone.go): the Ping in
	// flight to its open connection, if any, and how many were sent; the
	// connection that last answered one, and when; when a refused clone
	// was last logged.
	probing     *probe
	probes      int
	proven      *agentConn
	provenAt    time.Time
	cloneLogged time.Time
	// keyCommitted is when the hub last replaced its key (keys.go): at
	// most once a minute, as each one makes the relay re-check every
	// open connection.
	keyCommitted time.Time
	// newestStamp is the newest handshake timestamp of the hub's that the
	// relay handed WireGuard, and clockLogged when a reset for a clock
	// behind it was last logged (clock.go).
	newestStamp noise.Timestamp
	clockLogged time.Time
	// For a UDP hub (clock_udp.go): WireGuard's count of bytes received
	// from it, since when it has not moved, and when its clock was last
	// looked at.
	// newestAt is when newestStamp last went forward on a UDP read.
	rxSeen      uint64
	rxSince     time.Time
	clockLooked time.Time
	newestAt    time.Time

	// What the store should say of the hub (record) and what it was last
	// told (recorded); recording while it waits in the recorder's queue
	// (record.go).
	record, recorded hubRecord
	recording        bool

	// inbound counts the hub's data packets that its agent connections
	// have handed to WireGuard and WireGuard has not yet written to the
	// netstack (see maxInboundPerHub): counted in by the connection's
	// reader (admitInbound), out by inboundTUN. roomMu: one reader waits
	// at a time.
	inbound *inflight.Window
	roomMu  sync.Mutex

	// noChecksum: the agent of the hub's latest verified connection said
	// (wire.Features) that it verifies no TCP checksums inside the tunnel,
	// so the relay's netstack leaves them out of the packets to it
	// (Server.needsChecksum). Cleared when its last connection goes: a UDP
	// agent, or one before Features, gets them.
	noChecksum atomic.Bool

	// peerOn: WireGuard has a peer for the hub now (peers.go: only while
	// it is active), changed under Server.peersMu; peerUsed: a packet
	// went to or came from it since the last sweep; peerData: data did
	// (not a handshake or a keepalive: sweepUDPPeers). peerBytes,
	// peerQuiet and peerDataAt, the sweeps': WireGuard's byte count of the
	// peer when it last moved, when, and when data last moved since the
	// peer was added (zero: never). Under peersMu.
	peerOn, peerUsed, peerData atomic.Bool
	peerBytes                  uint64
	peerQuiet, peerDataAt      time.Time
	// A UDP hub loses its peer while its session is fresh
	// (sweepUDPPeers). What online and the clock check (clock_udp.go)
	// read while it has none, as udpInbound sees its packets (by address
	// and session index; WireGuard alone authenticates them): when it
	// last completed a handshake (its first message on a new session) and
	// when it last sent a keepalive or ping. Unix ns on the relay's clock; 0: never.
	udpHandshake, udpSeen atomic.Int64
}

func newRegistry(hubs []HubConfig, now func() time.Time) *registry {
	r := &registry{now: now}
	r.replace(hubs)
	return r
}

// name, key and ip look a hub up; nil when the relay serves none such.
func (r *registry) name(n string) *hub       { return r.set.Load().byName[n] }
func (r *registry) key(k vpn.PublicKey) *hub { return r.set.Load().byKey[k] }
func (r *registry) ip(a netip.Addr) *hub     { return r.set.Load().byIP[a] }

// Get and Put keep the relay's noise.Responder's secrets on the hubs
// served, so a stranger's keys take no room.
func (r *registry) Get(k vpn.PublicKey) ([32]byte, bool) {
	if h := r.key(k); h != nil {
		if ss := h.staticSecret.Load(); ss != nil {
			return *ss, true
		}
	}
	return [32]byte{}, false
}

func (r *registry) Put(k vpn.PublicKey, ss [32]byte) {
	if h := r.key(k); h != nil {
		h.staticSecret.Store(&ss)
	}
}

func (r *registry) count() int           { return len(r.set.Load().byName) }
func (r *registry) all() map[string]*hub { return r.set.Load().byName }
func newHubSet(n int) *hubSet {
	return &hubSet{byName: make(map[string]*hub, n), byKey: make(map[vpn.PublicKey]*hub, n), byIP: make(map[netip.Addr]*hub, n)}
}

// replace makes list the registry's hubs and says which hubs came and
// went. A hub whose name, key and address stay is kept as it is, with its
// connections, window and reconnect state; one whose key or address
// changed counts as gone and new. The caller serialises replaces.
func (r *registry) replace(list []HubConfig) (added, removed []*hub) {
	old := r.set.Load()
	if old == nil {
		old = newHubSet(0)
	}
	next := newHubSet(len(list))
	for _, hc := range list {
		h := old.byName[hc.Name]
		if h == nil || h.key != hc.key || h.ip != hc.ip {
			prev := h
			h = &hub{HubConfig: hc, inbound: inflight.New(maxInboundPerHub)}
			if prev != nil && prev.ip == hc.ip {
				// A hub that replaced its key (keys.go) comes back with
				// the new one in a moment: its requests wait for it as
				// for a restarting agent, and its next replacement waits
				// for the last one's minute.
				h.goneAt = r.now()
				prev.mu.Lock()
				h.keyCommitted = prev.keyCommitted
				prev.mu.Unlock()
			}
			added = append(added, h)
		}
		next.byName[h.Name] = h
		next.byKey[h.key] = h
		next.byIP[h.ip] = h
	}
	for name, h := range old.byName {
		if next.byName[name] != h {
			removed = append(removed, h)
		}
	}
	r.set.Store(next)
	return added, removed
}

// online reports whether a hub can be reached now: a verified TCP agent
// connection, or a hub heard from over UDP (a handshake, or a keepalive
// or ping on a session of its) less than udpSessionFresh ago. WireGuard's part of
// that comes from a dump of all of its peers (lastUDPHeard), so it is
// asked only for hubs without a TCP connection, only when UDP is enabled,
// and only once per time heard: the time it stops counting is kept
// (udpUntil).
func (r *registry) online(h *hub) bool {
	if h.online.Load() > 0 {
		return true
	}
	if r.udpHeard == nil {
		return false
	}
	now := r.now()
	if until := h.udpUntil.Load(); until != 0 && now.UnixNano() < until {
		return true
	}
	last := r.udpHeard(h.key)
	if last.IsZero() {
		return false
	}
	until := last.Add(udpSessionFresh)
	h.mu.Lock()
	if h.online.Load() == 0 { // no TCP connection came meanwhile
		h.udpUntil.Store(until.UnixNano())
	}
	h.mu.Unlock()
	return now.Before(until)
}

// hubRecord is what the relay records of a hub in the store, for those
// who ask in another process (hubrelay hub list): online since when (zero:
// offline), over which transport, and what its agent said of itself.
type hubRecord struct {
	since     time.Time
	transport string
	info      store.AgentInfo
}

// connected counts a verified agent connection ac of h in, wakes
// waitOnline, and notes for the store what ac's agent said of itself and,
// for the hub's first connection, that it is online from now over ac's
// transport.
func (r *registry) connected(h *hub, ac *agentConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns = append(h.conns, ac)
	h.noChecksum.Store(ac.noChecksum.Load())
	h.record.info = ac.info
	h.udpUntil.Store(0) // its endpoint is this connection now
	if h.online.Add(1) == 1 {
		h.record.since, h.record.transport = r.now(), ac.transport
	}
	if h.back != nil {
		close(h.back)
		h.back = nil
	}
}

// disconnected counts a verified agent connection ac of h out and reports
// whether it was the hub's last; that starts its reconnect window, and the
// hub is offline for the store.
func (r *registry) disconnected(h *hub, ac *agentConn) (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range h.conns {
		if c == ac {
			h.conns = append(h.conns[:i], h.conns[i+1:]...)
			break
		}
	}
	if h.online.Add(-1) != 0 {
		return false
	}
	h.noChecksum.Store(false)
	h.goneAt = r.now()
	h.record.since, h.record.transport = time.Time{}, ""
	return true
}

// due reports whether something done at most once a minute per hub (a log
// line, a key replacement), last done at *last (one of h's fields), may be
// done at now, and if so records now there.
func (h *hub) due(last *time.Time, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(*last) < time.Minute {
		return false
	}
	*last = now
	return true
}

// goneNow counts h, which has no connection, as gone now: reconnecting
// for the next reconnectWindow.
func (r *registry) goneNow(h *hub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.online.Load() == 0 {
		h.goneAt = r.now()
	}
}

// reconnecting reports whether h has no connection now but had one less
// than reconnectWindow ago.
func (r *registry) reconnecting(h *hub) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online.Load() == 0 && !h.goneAt.IsZero() && r.now().Sub(h.goneAt) < reconnectWindow
}

// waitOnline waits up to max, or until done is closed, for h to be
// online again, and reports whether it is. An agent connection wakes it
// at once; a UDP agent's handshake wakes nothing, so with UDP enabled it
// also looks every udpWaitPoll.
func (r *registry) waitOnline(h *hub, max time.Duration, done <-chan struct{}) bool {
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
	var look <-chan time.Time
	if r.udpHeard != nil {
		tick := time.NewTicker(udpWaitPoll)
		defer tick.Stop()
		look = tick.C
	}
	for {
		select {
		case <-back:
			return true
		case <-look:
			if r.online(h) {
				return true
			}
		case <-t.C:
			return r.online(h)
		case <-done:
			return false
		}
	}
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

// peerDump is the last dump of WireGuard's peers that lastUDPHeard
// took: wireguard-go tells one peer's last handshake only in a text dump
// of every peer, which on a relay with thousands of hubs takes
// milliseconds. Online checks within udpPeersMaxAge of each other (a
// metrics scrape asking for each hub, the portal's hub list, requests to
// UDP hubs that are offline or waited for) share one.
type peerDump struct {
	mu    sync.Mutex
	taken time.Time // by the monotonic clock, not Config.Now
	peers map[vpn.PublicKey]vpn.PeerStats
	dumps int // taken so far
}

// lastUDPHeard is the registry's udpHeard for a relay with UDP agents:
// udpLastHeard with WireGuard's view of the hub's peer.
func (s *Server) lastUDPHeard(key vpn.PublicKey) time.Time {
	d := &s.udpPeers
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peers == nil || time.Since(d.taken) >= udpPeersMaxAge {
		st, err := s.dev.Stats()
		if err != nil {
			return time.Time{}
		}
		d.peers, d.taken = st, time.Now()
		d.dumps++
	}
	ps, ok := d.peers[key]
	return udpLastHeard(s.hubs.key(key), ps, ok)
}

// udpLastHeard is when hub h (nil: none) was last heard from over UDP:
// its peer's last handshake, ps if ok, or what udpInbound saw (the hub may
// have no peer: sweepUDPPeers, resumeUDP): the last handshake completed,
// or a keepalive or ping on one of its sessions from its address, whichever
// is latest; zero if never, or if its peer is on an agent's TCP connection.
// A keepalive on a session WireGuard no longer has, or a ping, is not
// authenticated;
// it takes the hub's address and session index, which only someone on
// the hub's path has, and makes the relay try the hub, no more
// (clock_udp.go says the same of its use there).
func udpLastHeard(h *hub, ps vpn.PeerStats, ok bool) time.Time {
	if ok && strings.HasPrefix(ps.Endpoint, tcpEndpointPrefix) {
		return time.Time{}
	}
	last := ps.LastHandshake
	if h != nil {
		for _, t := range []int64{h.udpHandshake.Load(), h.udpSeen.Load()} {
			if t != 0 && t > last.UnixNano() {
				last = time.Unix(0, t)
			}
		}
	}
	return last
}

// recordUDPHubs records, every udpRecordEvery until the relay closes,
// which hubs without a TCP connection are online over UDP. The first time
// comes udpFirstRecord after the start, so that the store soon says the
// hubs the relay took up from the relay before (resumeUDP) are online,
// or, of those that were online by the store and not in its file (a relay
// that follows a crash counts them as on their way back: recentlyOnline),
// which came back. Their sessions are kept as they change
// (keepUDPSessions).
func (s *Server) recordUDPHubs() {
	first := time.NewTimer(udpFirstRecord)
	select {
	case <-s.closing:
		first.Stop()
		s.wg.Done()
		return
	case <-first.C:
		s.sweepUDPHubs()
	}
	s.every(udpRecordEvery, s.sweepUDPHubs)
}

// sweepUDPHubs notes for the store, of each hub without a TCP connection,
// whether it is online over UDP (heard from lately, udpLastHeard), from
// one dump of WireGuard's peers.
func (s *Server) sweepUDPHubs() {
	st, err := s.dev.Stats()
	if err != nil {
		return
	}
	now := s.now()
	for _, h := range s.hubs.all() {
		ps, ok := st[h.key]
		if ok {
			h.sawRx(ps.RxBytes, now) // for clock_udp.go
		}
		last := udpLastHeard(h, ps, ok)
		fresh := !last.IsZero() && now.Sub(last) < udpSessionFresh
		h.mu.Lock()
		changed := false
		if h.online.Load() == 0 {
			switch {
			case fresh && h.record.transport != "udp":
				h.record.since, h.record.transport, changed = now, "udp", true
			case !fresh && h.record.transport == "udp":
				h.record.since, h.record.transport, changed = time.Time{}, "", true
			}
		}
		h.mu.Unlock()
		if changed {
			s.recordHub(h)
		}
	}
}

// inboundTUN is the netstack's TUN device as WireGuard sees it: each
// packet WireGuard writes to it is counted out of the window of the hub it
// came from (hub.inbound), found by its IPv4 source address. WireGuard
// only writes packets whose source is the sending peer's tunnel address.
type inboundTUN struct {
	tun.Device
	hubs *registry
}

func (d *inboundTUN) Write(bufs [][]byte, offset int) (int, error) {
	written, err := d.Device.Write(bufs, offset)
	// Counted out in runs: a batch comes from one peer.
	byIP := d.hubs.set.Load().byIP
	var last *hub
	n := 0
	for _, b := range bufs {
		h := byIP[sourceIPv4(b[offset:])]
		if h != last {
			if last != nil {
				last.inbound.Leave(n)
			}
			last, n = h, 0
		}
		n++
	}
	if last != nil {
		last.inbound.Leave(n)
	}
	return written, err
}

// sourceIPv4 is the source address of an IPv4 packet, or the zero Addr.
func sourceIPv4(p []byte) netip.Addr {
	if len(p) < 20 || p[0]>>4 != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(p[12:16]))
}

// syncHubs makes the registry and WireGuard's peers the store's enabled
// hubs: at start, and whenever the store's Revision moves (a hub added,
// changed, disabled or removed by hubrelay or the portal), so no change
// needs a restart. A hub that went has its peer removed and its agent
// connections closed; a hub that came gets its peer once it is active
// (peers.go). The caller
// serialises calls (Start, then refresh under refreshMu).
func (s *Server) syncHubs() error {
	var err error
	stored := s.startHubs // the first call's, read by openStore
	s.startHubs = nil
	if stored == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if stored, err = s.db.Hubs(ctx); err != nil {
			return fmt.Errorf("relay: store: %w", err)
		}
	}
	list := make([]HubConfig, 0, len(stored))
	for _, sh := range stored {
		if sh.Disabled {
			continue
		}
		hc := HubConfig{Name: sh.Name, PublicKey: sh.PublicKey, TunnelIP: sh.TunnelIP}
		if hc.key, err = vpn.ParsePublicKey(sh.PublicKey); err != nil {
			s.storeErrLog.Warn("store: a hub's key is unusable; not serving it", logger.Hub, sh.Name, logger.Err, err)
			continue
		}
		if hc.ip, err = netip.ParseAddr(sh.TunnelIP); err != nil || hc.ip == s.cfg.tunnelIP {
			s.storeErrLog.Warn("store: a hub's tunnel address is not usable; not serving it", logger.Hub, sh.Name, "tunnel_ip", sh.TunnelIP)
			continue
		}
		list = append(list, hc)
	}
	starting := s.hubs.count() == 0
	var back map[string]bool
	if starting {
		back = recentlyOnline(stored, s.now())
	}
	s.peersMu.Lock() // resetReplay (clock.go) re-adds peers too
	defer s.peersMu.Unlock()
	added, removed := s.hubs.replace(list)
	if s.bind != nil && s.bind.udpIn != nil {
		s.bind.udpIn.forget(removed)
	}
	for _, h := range removed {
		s.dev.RemovePeer(h.key)
		s.peerOffLocked(h)
		n := s.closeAgents(h)
		s.log.Info("hub no longer served (disabled, removed or changed in the store)", logger.Hub, h.Name, "agents_closed", n)
	}
	for _, h := range added {
		// Its WireGuard peer comes with its first packet (peers.go).
		if !starting {
			s.log.Info("hub served now", logger.Hub, h.Name, "tunnel_ip", h.ip)
		} else if back[h.Name] {
			s.hubs.goneNow(h)
		}
	}
	return nil
}

// recentlyOnline names the stored hubs whose agent was connected when
// the relay before this one stopped (still marked online: it crashed, or
// stopped before the record reached the store), or left less than
// reconnectWindow before now. Their agents come back within seconds of
// this relay's start, and a request for one of them in those seconds
// waits for it (awaitReconnect) rather than failing with "Hub offline".
func recentlyOnline(stored []store.Hub, now time.Time) map[string]bool {
	back := map[string]bool{}
	for _, h := range stored {
		if !h.OnlineSince.IsZero() || (!h.LastSeen.IsZero() && now.Sub(h.LastSeen) < reconnectWindow) {
			back[h.Name] = true
		}
	}
	return back
}

// closeAgents closes the agent connections that claimed h and says how
// many.
func (s *Server) closeAgents(h *hub) int {
	s.mu.Lock()
	var acs []*agentConn
	for ac := range s.agent {
		if ac.hub.Load() == h {
			acs = append(acs, ac)
		}
	}
	s.mu.Unlock()
	for _, ac := range acs {
		ac.conn.Close()
	}
	return len(acs)
}
