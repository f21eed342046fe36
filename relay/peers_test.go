package relay

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// peers is how many WireGuard peers the relay's device has.
func (tr *testRelay) peers(t *testing.T) int {
	t.Helper()
	st, err := tr.dev.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(st)) != tr.peerCount.Load() {
		t.Fatalf("WireGuard has %d peers, the relay counts %d", len(st), tr.peerCount.Load())
	}
	return len(st)
}

// idle lets hub h's peer go idle: sweeps, each a peerIdleAfter later on
// the relay's clock, until the peer is gone.
func (tr *testRelay) idle(t *testing.T, h *hub) {
	t.Helper()
	tr.idleBy(t, h, tr.sweepPeers, peerIdleAfter)
}

// udpIdle is idle for a UDP hub: sweepUDPPeers, udpPeerDataIdleAfter apart.
func (tr *testRelay) udpIdle(t *testing.T, h *hub) {
	t.Helper()
	tr.idleBy(t, h, tr.sweepUDPPeers, udpPeerDataIdleAfter)
}

func (tr *testRelay) idleBy(t *testing.T, h *hub, sweep func(), d time.Duration) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the idle hub's WireGuard peer to be removed", func() bool {
		sweep()
		tr.clock.advance(d)
		sweep()
		return !h.peerOn.Load()
	})
}

// TestIdleHubHasNoPeerAndStillConnects: a configured hub costs the relay
// no WireGuard peer until it is active; an agent connecting over TCP gets
// one with its first handshake, loses it once idle for peerIdleAfter while
// it stays connected, and a request for it then still goes through (the
// relay adds the peer for the request's packets and handshakes itself), as
// does the agent's own next handshake.
func TestIdleHubHasNoPeerAndStillConnects(t *testing.T) {
	tr := startTestRelay(t, false, "a", "b")
	if n := tr.peers(t); n != 0 {
		t.Fatalf("a relay with 2 hubs, none connected, has %d WireGuard peers; want 0", n)
	}
	h := tr.hubs.name("a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(h) })
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET a: %d %v", code, err)
	}
	if n := tr.peers(t); n != 1 {
		t.Fatalf("%d WireGuard peers with hub a connected; want 1", n)
	}

	tr.idle(t, h)
	if n := tr.peers(t); n != 0 || !tr.hubs.online(h) {
		t.Fatalf("idle hub a: %d peers, online %v; want 0 peers and still online", n, tr.hubs.online(h))
	}
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET a after it was idle: %d %v, want 200", code, err)
	}
	if n := tr.peers(t); n != 1 {
		t.Fatalf("%d WireGuard peers after a request for idle hub a; want 1", n)
	}

	tr.idle(t, h)
	before := a.lastHandshake()
	// WireGuard refuses a second initiation within 20 ms of the last.
	poll.Until(t, time.Second, "20 ms since the last handshake", func() bool { return time.Since(before) > 25*time.Millisecond })
	a.dev.Handshake(tr.PublicKey())
	poll.Until(t, 10*time.Second, "the agent's handshake after it was idle", func() bool { return a.lastHandshake().After(before) })
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET a after the agent's handshake: %d %v, want 200", code, err)
	}
}

// TestIdleUDPHubHandshakesAgain: a UDP hub, which has no connection, gets
// its peer from its first initiation, and again from its next one after
// the relay removed it for idleness; the relay keeps the hub's static
// secret from the first (noise.SecretCache), and none for a stranger.
func TestIdleUDPHubHandshakesAgain(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	if n := tr.peers(t); n != 0 {
		t.Fatalf("a relay with hub a not connected has %d WireGuard peers; want 0", n)
	}
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	poll.Until(t, 10*time.Second, "the UDP agent's first handshake", a.handshaken)
	if n := tr.peers(t); n != 1 {
		t.Fatalf("%d WireGuard peers with UDP hub a handshaken; want 1", n)
	}

	h := tr.hubs.name("a")
	// The relay read the initiation (clock_udp.go) and keeps the DH of
	// both static keys for the next; a key it serves no hub for takes no
	// room.
	if want, _ := tr.key.SharedSecret(h.key); h.staticSecret.Load() == nil || *h.staticSecret.Load() != want {
		t.Errorf("hub a's static secret is not kept after its initiation was read")
	}
	stranger, _ := vpn.GeneratePrivateKey()
	tr.hubs.Put(stranger.Public(), [32]byte{1})
	if _, ok := tr.hubs.Get(stranger.Public()); ok {
		t.Errorf("a secret was kept for a key the relay serves no hub for")
	}
	tr.udpIdle(t, h)
	if n := tr.peers(t); n != 0 {
		t.Fatalf("%d WireGuard peers with UDP hub a idle; want 0", n)
	}
	before := a.lastHandshake()
	poll.Until(t, time.Second, "20 ms since the last handshake", func() bool { return time.Since(before) > 25*time.Millisecond })
	a.dev.Handshake(tr.PublicKey())
	poll.Until(t, 10*time.Second, "the UDP agent's handshake after it was idle", func() bool { return a.lastHandshake().After(before) })
	if n := tr.peers(t); n != 1 {
		t.Fatalf("%d WireGuard peers after UDP hub a handshook again; want 1", n)
	}
}

// TestHubBeyondWireGuardsPeerLimitWaits: wireguard-go holds at most 65,536
// peers (this relay's limit is set to 1). A hub beyond the limit gets no
// peer and is not online; the relay counts that in its metrics rather
// than asking WireGuard, which would refuse it. Once the other hub's peer
// went idle, the waiting hub's next handshake gets one, and a request for
// it is served.
func TestHubBeyondWireGuardsPeerLimitWaits(t *testing.T) {
	tr := startTestRelayHook(t, false, withMetrics(nil), func(s *Server) { s.maxPeers = 1 }, "a", "b")
	ha, hb := tr.hubs.name("a"), tr.hubs.name("b")
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(ha) })
	b := startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "the relay to refuse hub b a WireGuard peer", func() bool {
		return scrape(t, tr.Server)["hubrelay_wireguard_peers_refused_total"] >= 1
	})
	if n := tr.peers(t); n != 1 || tr.hubs.online(hb) || b.handshaken() {
		t.Fatalf("beyond the limit: %d peers, hub b online %v, its handshake done %v; want 1 peer (a's) and b waiting", n, tr.hubs.online(hb), b.handshaken())
	}
	wantMetrics(t, tr.Server, map[string]float64{"hubrelay_wireguard_peers": 1})

	tr.idle(t, ha)
	b.dev.Handshake(tr.PublicKey())
	poll.Until(t, 10*time.Second, "hub b online once a's peer went", func() bool { return tr.hubs.online(hb) })
	if code, err := tr.get("b"); err != nil || code != 200 {
		t.Fatalf("GET b: %d %v, want 200", code, err)
	}
	wantMetrics(t, tr.Server, map[string]float64{"hubrelay_wireguard_peers": 1})
}

// udpSweep sweeps UDP hubs' peers twice, d apart on the relay's clock.
func (tr *testRelay) udpSweep(d time.Duration) {
	tr.sweepUDPPeers()
	tr.clock.advance(d)
	tr.sweepUDPPeers()
}

// quiet waits until no packet has gone to or come from UDP hub h for 50 ms
// of real time, sweeping at the fake clock's time meanwhile: a request's
// last packets (the netstack's delayed ACK follows an answer by up to
// 10 ms) must not meet the fake clock's steps that follow, where they
// would count as data minutes later.
func (tr *testRelay) quiet(t *testing.T, h *hub) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.sweepUDPPeers() // takes the marks
		time.Sleep(50 * time.Millisecond)
		if !h.peerData.Load() && !h.peerUsed.Load() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("packets still went to or came from hub %s 10s after its request", h.Name)
		}
	}
}

// TestIdleUDPHubLosesItsPeerWithItsSessionFresh: a UDP hub's keepalives
// and rekeys would keep its WireGuard peer for good; the relay removes it
// while the hub's session is fresh, udpPeerIdleAfter after a handshake
// that nothing followed, udpPeerDataIdleAfter after the last data once it
// carried some. The hub stays online (udpInbound saw its handshake), a
// request for it then goes through (the relay handshakes with it at its
// address), and a TCP hub on the same relay keeps its peer by its own rule.
func TestIdleUDPHubLosesItsPeerWithItsSessionFresh(t *testing.T) {
	tr := startTestRelay(t, true, "a", "b")
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	a.waitOnline(t, tr, "a")
	startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", vpn.PublicKey{})
	ha, hb := tr.hubs.name("a"), tr.hubs.name("b")
	poll.Until(t, 10*time.Second, "hub b online", func() bool { return tr.hubs.online(hb) })
	if code, err := tr.get("b"); err != nil || code != 200 {
		t.Fatalf("GET b: %d %v", code, err)
	}
	if n := tr.peers(t); n != 2 {
		t.Fatalf("%d WireGuard peers with hub a (UDP) handshaken and b (TCP) busy; want 2", n)
	}

	// Nothing after the handshake: the peer goes after udpPeerIdleAfter.
	before := a.lastHandshake()
	tr.udpSweep(udpPeerIdleAfter)
	if ha.peerOn.Load() {
		t.Fatalf("UDP hub a kept its peer %v after a handshake that nothing followed", udpPeerIdleAfter)
	}
	if n := tr.peers(t); n != 1 || !hb.peerOn.Load() {
		t.Fatalf("%d WireGuard peers after UDP hub a went idle (hub b's there: %v); want 1, hub b's", n, hb.peerOn.Load())
	}
	if after := a.lastHandshake(); !after.Equal(before) || time.Since(after) > time.Minute {
		t.Fatalf("the UDP agent's handshake moved from %v to %v: the test wants its session fresh", before, after)
	}
	// online asks WireGuard's peers, as it does once udpUntil passed, with
	// a dump taken now.
	ha.udpUntil.Store(0)
	tr.udpPeers.mu.Lock()
	tr.udpPeers.peers = nil
	tr.udpPeers.mu.Unlock()
	if !tr.hubs.online(ha) {
		t.Errorf("UDP hub a offline once its idle peer was removed, with a handshake %v ago", time.Since(before).Round(time.Millisecond))
	}
	tr.sweepUDPHubs()
	ha.mu.Lock()
	rec := ha.record
	ha.mu.Unlock()
	if rec.transport != "udp" {
		t.Errorf("the store is told hub a is online over %q; want udp", rec.transport)
	}

	// A request: the relay handshakes with the hub, and the peer that
	// carried data stays while someone may click again.
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET a after its peer was removed: %d %v, want 200", code, err)
	}
	if !ha.peerOn.Load() || !a.lastHandshake().After(before) {
		t.Fatalf("after a request for idle UDP hub a: peer %v, the agent's handshake %v (was %v); want a peer and the relay's handshake", ha.peerOn.Load(), a.lastHandshake(), before)
	}
	tr.quiet(t, ha)
	tr.udpSweep(udpPeerIdleAfter)
	if !ha.peerOn.Load() {
		t.Fatalf("UDP hub a lost the peer that carried a request %v after it", udpPeerIdleAfter)
	}
	// The hub rekeys (every ~2 minutes) shortly before the data's window
	// ends: that handshake holds the peer udpPeerIdleAfter more, not
	// another udpPeerDataIdleAfter.
	tr.udpSweep(udpPeerDataIdleAfter - udpPeerIdleAfter - time.Second)
	tr.usePeer(ha, false) // what the hub's initiation does
	tr.clock.advance(2 * time.Second)
	tr.sweepUDPPeers()
	if !ha.peerOn.Load() {
		t.Fatalf("UDP hub a lost its peer right after its handshake")
	}
	tr.clock.advance(udpPeerIdleAfter)
	tr.sweepUDPPeers()
	if ha.peerOn.Load() {
		t.Errorf("UDP hub a kept its peer more than %v after its last request and %v after its handshake", udpPeerDataIdleAfter, udpPeerIdleAfter)
	}
	if !hb.peerOn.Load() {
		t.Errorf("TCP hub b lost its peer to the UDP hubs' sweep")
	}
}

// TestStaleUDPSessions: once a UDP hub's idle peer is removed, its
// keepalives on the peer's sessions go no further than the relay's
// socket and get no answer (they only keep the hub's NAT open, and say it
// is there), while data on one is answered with SessionUnknown, so that
// the agent handshakes at once. A session learned later is the hub's
// again: the first message on it completes a handshake, which online
// reads, and its data goes to WireGuard and keeps the peer.
func TestStaleUDPSessions(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	h := tr.hubs.name("a")
	u := tr.bind.udpIn
	hubSock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hubSock.Close()
	addr := hubSock.LocalAddr().(*net.UDPAddr).AddrPort()
	u.tie(h, addr)
	u.mu.Lock()
	u.peers[addr].idx.learn(7)
	u.mu.Unlock()
	u.stale(h)

	admit := func(p []byte) int {
		return u.admit([][]byte{p}, []int{len(p)}, []conn.Endpoint{&conn.StdNetEndpoint{AddrPort: addr}}, 1)
	}
	seenBefore := h.udpSeen.Load()
	if n := admit(transportMessage(7, 32)); n != 0 {
		t.Errorf("a keepalive on a stale session went on to WireGuard")
	}
	u.mu.Lock()
	_, answered := u.unknown.last[addr]
	u.mu.Unlock()
	if answered {
		t.Errorf("a keepalive on a stale session was answered with SessionUnknown")
	}
	if h.udpSeen.Load() == seenBefore {
		t.Errorf("a keepalive on a stale session did not note that the hub is there")
	}

	if n := admit(transportMessage(7, 96)); n != 0 {
		t.Errorf("data on a stale session went on to WireGuard")
	}
	hubSock.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := hubSock.Read(buf)
	if err != nil {
		t.Fatalf("no answer to data on a stale session: %v", err)
	}
	if i, ok := wire.ParseSessionUnknown(buf[:n]); !ok || i != 7 {
		t.Errorf("answer %x to data on stale session 7: index %d, %v; want SessionUnknown for 7", buf[:n], i, ok)
	}

	// A new session: WireGuard's again, and its data keeps a peer.
	u.mu.Lock()
	u.peers[addr].idx.learn(8)
	u.mu.Unlock()
	tr.addPeer(h)
	h.peerUsed.Store(false)
	if h.udpHandshake.Load() != 0 {
		t.Fatalf("a handshake noted before any message on a session")
	}
	if n := admit(transportMessage(8, 32)); n != 1 {
		t.Errorf("a keepalive on the hub's current session did not go on to WireGuard")
	}
	done := h.udpHandshake.Load()
	if done == 0 {
		t.Errorf("the hub's first message on its new session did not complete a handshake")
	}
	if n := admit(transportMessage(8, 96)); n != 1 {
		t.Errorf("data on the hub's current session did not go on to WireGuard")
	}
	if !h.peerUsed.Load() {
		t.Errorf("data on the hub's current session did not mark its peer used")
	}
	if h.udpHandshake.Load() != done {
		t.Errorf("a second message on the same session counted as a handshake again")
	}
}

// transportMessage is a WireGuard transport message of size bytes (32: a
// keepalive) for receiver index idx, its counter and payload zero.
func transportMessage(idx uint32, size int) []byte {
	p := make([]byte, size)
	p[0] = 4 // transport data
	binary.LittleEndian.PutUint32(p[4:8], idx)
	return p
}
