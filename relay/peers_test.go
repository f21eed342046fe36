package relay

import (
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
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
	poll.Until(t, 10*time.Second, "the idle hub's WireGuard peer to be removed", func() bool {
		tr.sweepPeers()
		tr.clock.advance(peerIdleAfter)
		tr.sweepPeers()
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
	tr.idle(t, h)
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
