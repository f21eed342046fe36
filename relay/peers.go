package relay

import (
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// WireGuard peers only for active hubs.
//
// A WireGuard peer costs the relay ~29 KB whether it carries anything or
// not: wireguard-go gives every peer an inbound and an outbound queue of
// 1024 slots (16 KB), a staged queue, two goroutines, five timers and its
// handshake state. With a peer for every configured hub that was most of
// the relay's memory per idle hub (issue 18). So a hub has a peer only
// while packets move:
//
//   - added when one of the hub's handshake initiations arrives, before
//     WireGuard reads it: over TCP by the connection's reader (serveAgent),
//     over UDP by the socket's receive path (udpInbound.learnLocked notes
//     the hub, agentBind.receiveUDP waits for wakePeers); and when the
//     relay sends the hub a packet (peerTUN.Read: a request for it),
//     pointed at the hub's latest verified connection or UDP address, so
//     that WireGuard's initiation goes where the hub is;
//   - removed by sweepPeers once nothing moved either way (WireGuard's
//     byte counts, and the packets peerTUN and the reader saw) for
//     peerIdleAfter, and its last handshake is as old: longer than
//     WireGuard's REJECT_AFTER_TIME, so neither side still holds a session
//     key that could carry a packet, and the hub's next packet after it is
//     a handshake initiation, which adds the peer again. Removing it loses
//     nothing but WireGuard's replay state for the hub, which the relay
//     already resets for hubs whose clock is behind (clock.go): an old
//     initiation over UDP adds no peer (only one newer than every
//     initiation read from the hub does), and one replayed over TCP meets
//     the clone check while the hub is connected.
//
// A UDP hub's keepalives (every 25 s) and rekeys (every ~2 minutes) would
// keep its peer for good, and its session keys fresh (an agent that pings
// instead, wire.UDPPing, neither keeps it nor rekeys). So, with UDP on, a
// hub without a TCP connection loses its peer by a rule of its own
// (sweepUDPPeers), its sessions fresh or not: once nothing but
// keepalives moved for udpPeerIdleAfter (an idle hub's rekey) and no data
// for udpPeerDataIdleAfter (someone who used the hub may click again: the
// next click should not wait for a handshake). The hub is not told and
// need not be:
//   - its keepalives on the removed peer's sessions (udpInbound's stale
//     indices) are dropped before WireGuard, which no longer knows them,
//     and its pings answered; they keep its NAT open and say it is there
//     (hub.udpSeen, for online and the clock check of clock_udp.go);
//   - a data packet on one is answered with SessionUnknown (unknown.go):
//     the agent handshakes at once, and the peer is added for it;
//   - its next rekey adds the peer for the handshake; a request for it
//     adds it and WireGuard handshakes from the relay's side, to the
//     hub's address (udpInbound), which its keepalives hold open;
//   - online reads when udpInbound last heard it: a handshake completed
//     (hub.udpHandshake) or a keepalive or ping (hub.udpSeen). A session the
//     relay started is renewed only once it expired, by the hub's next
//     keepalive after REJECT_AFTER_TIME.
//
// A relay that follows another takes up its UDP hubs the same way
// (resumeUDP): their sessions are stale here from the start.
//
// An idle UDP hub so holds a peer for udpPeerIdleAfter to
// udpPeerIdleAfter + udpPeerSweepEvery after each of its handshakes, every
// ~2 minutes; a request after that waits for one handshake, as one for a
// TCP hub idle for peerIdleAfter does. Each of those handshakes costs the
// relay a peer added again: ~30 KB to allocate and collect, and the
// static-static X25519 that wireguard-go computes in NewPeer.
//
// wireguard-go holds at most 65,536 peers (device.MaxPeers), so that is
// how many hubs one relay can have active at once. Beyond it, a hub gets
// no peer and cannot connect until others go idle: the relay says so,
// counts it (hubrelay_wireguard_peers_refused_total, beside the gauge
// hubrelay_wireguard_peers) and does not ask WireGuard, which would refuse
// each of the hub's retries with an error.
//
// WireGuard's own goroutines never add a peer themselves: wireguard-go's
// Close holds the lock that adding one takes while it waits for them. They
// ask wakePeer, whose goroutine adds it, and wait for it or for Close.
//
// The memory of removed peers goes back to the operating system: most of a
// peer is its two queues, which wireguard-go frees from a finalizer, so
// they are garbage only after the second collection once the peer is gone,
// and Go hands freed memory back only slowly, down to about twice what is
// in use. A sweep that leaves returnMemAfter or more peers removed since the
// last time calls debug.FreeOSMemory (a full collection, then all free
// memory back), and the next sweep once more for the queues: two collections
// for a relay that just shed at least 7 MB, at most once per
// returnMemEvery. Without it, a relay whose 10,000 hubs went idle kept
// 190 MB of freed queues resident. Hubs that connected together go idle
// over several sweeps (19,500 over 91 s): at one return per 5 minutes the
// later sweeps' peers stayed resident (230 MB, 11.8 KB per idle hub), so
// it is once a minute: while peers go by hundreds.
const (
	peerIdleAfter        = rejectAfterTime + 30*time.Second
	peerSweepEvery       = 30 * time.Second
	udpPeerIdleAfter     = 15 * time.Second
	udpPeerDataIdleAfter = 2 * time.Minute
	udpPeerSweepEvery    = 5 * time.Second
	returnMemAfter       = 256 // peers, ~29 KB each
	returnMemEvery       = time.Minute
)

// memReturn is when removed peers' memory was last handed back and what
// is due (Server.returnMemory). Under Server.peersMu.
type memReturn struct {
	removed int       // peers removed since the last return
	last    time.Time // when memory was last returned
	again   bool      // the next sweep returns memory once more
}

// usePeer makes sure hub h has a WireGuard peer, adding it if it has none,
// and marks it used. From WireGuard's goroutines (wait = true) it waits
// for wakePeer's goroutine instead of adding it itself; it reports false
// if the relay closed meanwhile.
func (s *Server) usePeer(h *hub, wait bool) bool {
	if h.peerOn.Load() {
		if !h.peerUsed.Load() {
			h.peerUsed.Store(true)
		}
		return true
	}
	if !wait {
		s.addPeer(h)
		return true
	}
	select {
	case <-s.wakePeer(h):
		return true
	case <-s.closing:
		return false
	}
}

// markUsed notes that a packet came from h, if it has a peer, so that the
// sweep leaves it.
func (h *hub) markUsed() {
	if h.peerOn.Load() && !h.peerUsed.Load() {
		h.peerUsed.Store(true)
	}
}

// markData notes that data went to or came from h (sweepUDPPeers).
func (h *hub) markData() {
	if !h.peerData.Load() {
		h.peerData.Store(true)
	}
}

// wakePeer adds h's peer from a goroutine of its own and returns a channel
// closed once that is done; callers for the same hub share it.
func (s *Server) wakePeer(h *hub) <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if ch, ok := s.waking[h]; ok {
		return ch
	}
	if s.waking == nil {
		s.waking = map[*hub]chan struct{}{}
	}
	ch := make(chan struct{})
	s.waking[h] = ch
	go func() {
		s.addPeer(h)
		s.wakeMu.Lock()
		delete(s.waking, h)
		s.wakeMu.Unlock()
		close(ch)
	}()
	return ch
}

// wantPeer notes that a UDP hub's initiation in the batch being read needs
// its peer; wakePeers adds them once the socket's lock is released.
// Called under udpInbound's lock.
func (s *Server) wantPeer(h *hub) {
	if h.peerOn.Load() {
		return
	}
	s.wakeMu.Lock()
	s.wanted = append(s.wanted, h)
	s.wakeMu.Unlock()
}

// wakePeers adds the peers wantPeer noted and waits until they are there
// (or the relay closes), before WireGuard reads the batch.
func (s *Server) wakePeers() {
	s.wakeMu.Lock()
	want := s.wanted
	s.wanted = nil
	s.wakeMu.Unlock()
	for _, h := range want {
		if !s.usePeer(h, true) {
			return
		}
	}
}

// addPeer gives h its WireGuard peer if it is still served and has none,
// pointed at the hub's latest verified connection or, failing that, its
// UDP address.
func (s *Server) addPeer(h *hub) {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	if h.peerOn.Load() || s.hubs.key(h.key) != h {
		return
	}
	if n := s.peerCount.Load(); n >= int64(s.maxPeers) {
		s.metrics.peersRefused.Add(1)
		s.repeatLog.Warn("WireGuard holds no more peers: this hub cannot connect until other hubs go idle", logger.Hub, h.Name, "peers", n)
		return
	}
	p := vpn.Peer{PublicKey: h.key, AllowedIPs: []netip.Prefix{netip.PrefixFrom(h.ip, h.ip.BitLen())}}
	var ac *agentConn
	h.mu.Lock()
	if n := len(h.conns); n > 0 {
		ac = h.conns[n-1]
	}
	h.mu.Unlock()
	if u := s.bind.udpIn; ac == nil && u != nil {
		u.mu.Lock()
		if a, ok := u.addr[h]; ok {
			p.Endpoint = a.String()
		}
		u.mu.Unlock()
	}
	if err := s.dev.AddPeer(p); err != nil {
		s.repeatLog.Warn("adding a hub's WireGuard peer failed", logger.Hub, h.Name, logger.Err, err)
		return
	}
	if ac != nil {
		s.dev.SetPeerEndpoint(h.key, ac)
	}
	s.peerOnLocked(h)
}

// peerOnLocked and peerOffLocked record that WireGuard has, or no longer
// has, h's peer. Under peersMu.
func (s *Server) peerOnLocked(h *hub) {
	if h.peerOn.Swap(true) {
		return
	}
	h.peerUsed.Store(true)
	h.peerData.Store(false)
	h.peerBytes, h.peerQuiet, h.peerDataAt = 0, s.now(), time.Time{}
	s.peerCount.Add(1)
}

func (s *Server) peerOffLocked(h *hub) {
	if h.peerOn.Swap(false) {
		s.peerCount.Add(-1)
	}
}

// sweepPeers removes the peers of hubs idle for peerIdleAfter (above),
// every peerSweepEvery until the relay closes; with UDP on, those of hubs
// without a TCP connection are sweepUDPPeers'.
func (s *Server) sweepPeers() {
	st, err := s.dev.Stats() // only the peers there are: the active hubs
	if err != nil {
		return
	}
	now := s.now()
	s.peersMu.Lock()
	defer s.unlockPeersReturning(now)
	for _, h := range s.hubs.all() {
		if !h.peerOn.Load() {
			continue
		}
		if s.udpSwept(h) {
			continue
		}
		ps, ok := st[h.key]
		moved := ps.RxBytes + ps.TxBytes
		if h.peerUsed.Swap(false) || !ok || moved != h.peerBytes {
			h.peerBytes, h.peerQuiet = moved, now // !ok: added after the dump
			continue
		}
		if now.Sub(h.peerQuiet) < peerIdleAfter || !ps.LastHandshake.IsZero() && now.Sub(ps.LastHandshake) < peerIdleAfter {
			continue
		}
		s.dev.RemovePeer(h.key)
		s.peerOffLocked(h)
		s.memReturn.removed++
	}
}

// udpSwept reports whether h's peer is sweepUDPPeers' to remove: UDP is
// on and h has no TCP connection (a UDP hub, or a request for a hub that
// is offline).
func (s *Server) udpSwept(h *hub) bool {
	return s.bind != nil && s.bind.udpIn != nil && h.online.Load() == 0
}

// sweepUDPPeers removes the peers of idle UDP hubs (above), every
// udpPeerSweepEvery until the relay closes. It dumps no peers: a dump
// holds the lock that adding a peer waits for, and the UDP socket's
// receive path waits for those (wakePeers). It takes peersMu for each
// removal, so that peers are added in between.
func (s *Server) sweepUDPPeers() {
	now := s.now()
	var due []*hub
	s.peersMu.Lock()
	for _, h := range s.hubs.all() {
		if !h.peerOn.Load() || !s.udpSwept(h) {
			continue
		}
		if h.peerData.Swap(false) {
			h.peerDataAt = now
		}
		if h.peerUsed.Swap(false) {
			h.peerQuiet = now
		} else if now.Sub(h.peerQuiet) >= udpPeerIdleAfter && now.Sub(h.peerDataAt) >= udpPeerDataIdleAfter {
			// The last handshake as much as the last data: a
			// rekey must not hold a peer that carried data once
			// for another udpPeerDataIdleAfter (every ~2 minutes,
			// for good).
			due = append(due, h)
		}
	}
	s.peersMu.Unlock()
	for _, h := range due {
		s.peersMu.Lock()
		// A packet since the first look, or a peer removed and added
		// again meanwhile (peerOnLocked marks it used), keeps it.
		if h.peerOn.Load() && !h.peerUsed.Load() && s.udpSwept(h) {
			s.bind.udpIn.stale(h)
			s.dev.RemovePeer(h.key)
			s.peerOffLocked(h)
			s.memReturn.removed++
		}
		s.peersMu.Unlock()
	}
	s.peersMu.Lock()
	s.unlockPeersReturning(now)
}

// unlockPeersReturning releases peersMu and, if due, hands the memory of
// removed peers back to the system (above).
func (s *Server) unlockPeersReturning(now time.Time) {
	removed := s.memReturn.removed
	free := s.memReturn.due(now)
	s.peersMu.Unlock()
	if free {
		debug.FreeOSMemory() // not under peersMu: it takes a whole collection
		s.log.Debug("handed the memory of idle hubs' WireGuard peers back to the system", "peers_removed", removed)
	}
}

// due reports whether memory is to be handed back now (above), and notes
// that it is.
func (m *memReturn) due(now time.Time) bool {
	if m.again {
		m.again = false
		return true
	}
	if m.removed < returnMemAfter || !m.last.IsZero() && now.Sub(m.last) < returnMemEvery {
		return false
	}
	m.removed, m.last, m.again = 0, now, true
	return true
}

// peerTUN is the netstack's TUN device as WireGuard reads from it: each
// packet for a hub makes sure the hub has a peer (usePeer) before
// WireGuard looks for one, so that a request for a hub idle for minutes
// goes out at once, with a new handshake, rather than being dropped.
type peerTUN struct {
	*inboundTUN
	s *Server
}

func (d *peerTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.inboundTUN.Read(bufs, sizes, offset)
	byIP := d.s.hubs.set.Load().byIP
	var last netip.Addr
	for i := range n {
		dst := destIPv4(bufs[i][offset : offset+sizes[i]])
		if dst == last {
			continue // a batch goes mostly to one hub
		}
		last = dst
		if h := byIP[dst]; h != nil {
			if !d.s.usePeer(h, true) {
				return n, err // closing: WireGuard drops them
			}
			h.markData()
		}
	}
	return n, err
}

// destIPv4 is the destination address of an IPv4 packet, or the zero Addr.
func destIPv4(p []byte) netip.Addr {
	if len(p) < 20 || p[0]>>4 != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(p[16:20]))
}
