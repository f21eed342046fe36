package relay

import (
	"crypto/rand"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/netstack"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestUDPHubWithClockBehindConnectsAtOnce: a UDP hub was connected, went
// silent (a reboot), and WireGuard last accepted an initiation of its key
// stamped a day ahead (what the relay sees when the hub comes back a day
// behind the clock it last used). The hub's next agent, with the machine's
// clock, must connect at once, and the relay says why it reset the hub.
func TestUDPHubWithClockBehindConnectsAtOnce(t *testing.T) {
	tr, first := startUDPHub(t)
	first.Close()

	// A reboot takes longer than WireGuard's least time between two
	// initiations of one key: sooner, it drops the second as a flood.
	time.Sleep(2 * device.HandshakeInitationRate)
	sendUDP(t, tr, initiation(t, tr, tr.keys["a"], noise.Stamp(time.Now().Add(24*time.Hour))), true)
	tr.sweepUDPHubs()              // the relay samples what the hub sent, as every 30 s
	tr.clock.advance(udpSilentFor) // and the hub stays silent while it reboots

	started := time.Now()
	second := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	second.waitOnline(t, tr, "a")
	t.Logf("handshake %v after the agent started", time.Since(started).Round(time.Millisecond))
	if code, err := tr.get("a"); code != 200 {
		t.Errorf("the UDP hub's page after the reset: %d, %v", code, err)
	}
	if n := tr.debug.replayResets.Load(); n != 1 {
		t.Errorf("%d replay resets; want 1", n)
	}
	if tr.logged("clock is behind", "udp") != 1 {
		t.Errorf("the relay did not log once why it reset the hub")
	}
}

// TestReplayedUDPInitiationLeavesLiveHubAlone: someone replays an old
// initiation of a hub that is connected over UDP and sending. Resetting
// its replay state would drop its session keys; the relay must not.
func TestReplayedUDPInitiationLeavesLiveHubAlone(t *testing.T) {
	tr, a := startUDPHub(t)
	tr.sweepUDPHubs()
	if code, err := tr.get("a"); code != 200 { // the hub sends after the sample
		t.Fatalf("the UDP hub's page: %d, %v", code, err)
	}
	// A minute later on the relay's clock, within WireGuard's session
	// lifetime: only the hub's traffic since the sample says it is live.
	tr.clock.advance(time.Minute)
	before := a.lastHandshake()

	replayResetsNothing(t, tr, "a")
	if after := a.lastHandshake(); !after.Equal(before) {
		t.Errorf("the hub had to handshake again after the replay (%v, was %v)", after, before)
	}
}

// TestReplayedUDPInitiationLeavesIdleHubAlone: the same replay while the
// hub's idle peer is removed (peers.go) and its session is fresh. The
// handshake and the keepalive udpInbound saw say it is live.
func TestReplayedUDPInitiationLeavesIdleHubAlone(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	a.waitOnline(t, tr, "a")
	h := tr.hubs.name("a")
	poll.Until(t, 10*time.Second, "the agent's keepalive after its handshake", func() bool { return h.udpSeen.Load() != 0 })
	tr.udpSweep(udpPeerIdleAfter)
	if h.peerOn.Load() {
		t.Fatalf("the idle hub kept its peer")
	}

	replayResetsNothing(t, tr, "a")
}

// replayResetsNothing sends an initiation of hub name's an hour old, as a
// replay, and checks that the relay looked at it, reset nothing, and
// still serves the hub's page.
func replayResetsNothing(t *testing.T, tr *testRelay, name string) {
	t.Helper()
	h := tr.hubs.name(name)
	sendUDP(t, tr, initiation(t, tr, tr.keys[name], noise.Stamp(time.Now().Add(-time.Hour))), false)
	poll.Until(t, 10*time.Second, "the relay to look at the replayed initiation", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.clockLooked.IsZero()
	})
	if n := tr.debug.replayResets.Load(); n != 0 {
		t.Errorf("the replay reset the hub's WireGuard state (%d resets)", n)
	}
	if code, err := tr.get(name); code != 200 {
		t.Errorf("the UDP hub's page after the replay: %d, %v", code, err)
	}
}

// TestUDPInitiationFloodIsBounded: a flood of initiations made for the
// relay with keys it does not know, of garbage shaped like initiations,
// and of a hub's own old initiations costs the relay at most its budget
// of reads (two X25519 each) and of resets, however many come.
func TestUDPInitiationFloodIsBounded(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	const rate = 20
	tr.udpClock.reads = newBucket(rate)
	var flood [][]byte
	for i := range 600 {
		k, err := vpn.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		garbage := make([]byte, initiationLen)
		rand.Read(garbage)
		garbage[0], garbage[1], garbage[2], garbage[3] = 1, 0, 0, 0
		flood = append(flood, initiation(t, tr, k, noise.Stamp(time.Now())), garbage)
		if i%3 == 0 {
			// Each older than the one before: all but the first behind.
			flood = append(flood, initiation(t, tr, tr.keys["a"], noise.Stamp(time.Now().Add(-time.Hour-time.Duration(i)*time.Second))))
		}
	}
	valid := 600 + 200 // with a MAC1 for the relay: the others never reach a read

	c, err := net.Dial("udp", tr.cfg.AgentListenUDP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for _, p := range flood {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 20*time.Second, "the relay to take in the flood", func() bool {
		return tr.udpClock.readCount.Load()+tr.udpClock.unread.Load() >= int64(valid)*9/10
	})
	took := time.Since(start)
	reads := tr.udpClock.readCount.Load()
	if limit := int64(rate + rate*took.Seconds() + 1); reads > limit {
		t.Errorf("%d initiations read in %v; the budget allows %d", reads, took, limit)
	}
	if limit := int64(1 + took/udpClockLookEvery); tr.debug.replayResets.Load() > limit {
		t.Errorf("%d replay resets in %v; want at most %d", tr.debug.replayResets.Load(), took, limit)
	}
	t.Logf("%d of %d initiations read in %v, %d resets", reads, valid, took.Round(time.Millisecond), tr.debug.replayResets.Load())
}

// udpAgent is a hub's agent with transport "udp": plain WireGuard, its
// web page on tunnel port 443 (the relay terminates TLS): testHub's, or
// the handler startUDPAgentServing is given.
type udpAgent struct {
	dev      *vpn.Device
	relayKey vpn.PublicKey
}

// startUDPHub starts a relay with hub "a" and its UDP agent, and waits
// until the relay serves the hub's page.
func startUDPHub(t *testing.T) (*testRelay, *udpAgent) {
	t.Helper()
	tr := startTestRelay(t, true, "a")
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	a.waitOnline(t, tr, "a")
	if code, err := tr.get("a"); code != 200 {
		t.Fatalf("the UDP hub's page: %d, %v", code, err)
	}
	return tr, a
}

func startUDPAgent(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string) *udpAgent {
	t.Helper()
	return startUDPAgentServing(t, tr, k, tunnelIP, testHub(tunnelIP))
}

func startUDPAgentServing(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string, page http.Handler) *udpAgent {
	t.Helper()
	return startUDPAgentWrapped(t, tr, k, tunnelIP, page, nil)
}

// startUDPAgentWrapped is startUDPAgentServing with WireGuard's TUN
// device, the agent's stack, wrapped by wrap if it is not nil.
func startUDPAgentWrapped(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string, page http.Handler, wrap func(tun.Device) tun.Device) *udpAgent {
	t.Helper()
	stack, err := netstack.New(netstack.Config{Addrs: []netip.Addr{netip.MustParseAddr(tunnelIP)}})
	if err != nil {
		t.Fatal(err)
	}
	var td tun.Device = stack.Device()
	if wrap != nil {
		td = wrap(td)
	}
	dev, err := vpn.NewDevice(td, conn.NewStdNetBind(), k, testLogf(t))
	if err != nil {
		stack.Close()
		t.Fatal(err)
	}
	ln, err := stack.ListenTCP(443)
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: page}
	go web.Serve(ln)
	t.Cleanup(func() { web.Close(); dev.Close(); stack.Close() })
	relayIP := tr.cfg.tunnelIP
	peer := vpn.Peer{PublicKey: tr.PublicKey(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(relayIP, 32)}, Endpoint: tr.cfg.AgentListenUDP, PersistentKeepalive: 25}
	if err := dev.AddPeer(peer); err != nil {
		t.Fatal(err)
	}
	// Up starts the handshake (the peer has a persistent keepalive), as
	// the agent's does; a second initiation at once would expire the
	// first's state and meet WireGuard's flood rule at the relay.
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return &udpAgent{dev: dev, relayKey: tr.PublicKey()}
}

func (a *udpAgent) lastHandshake() time.Time {
	st, err := a.dev.Stats()
	if err != nil {
		return time.Time{}
	}
	return st[a.relayKey].LastHandshake
}

// waitOnline waits until the relay counts hub name online over UDP.
func (a *udpAgent) waitOnline(t testing.TB, tr *testRelay, name string) {
	t.Helper()
	h := tr.hubs.name(name)
	poll.Until(t, 15*time.Second, "the UDP hub online", func() bool { return a.handshaken() && tr.hubs.online(h) })
}

func (a *udpAgent) handshaken() bool { return !a.lastHandshake().IsZero() }

// Close stops the agent as a rebooting hub does: nothing more comes.
func (a *udpAgent) Close() { a.dev.Close() }

// initiation is a handshake initiation from k to tr, stamped ts.
func initiation(t testing.TB, tr *testRelay, k vpn.PrivateKey, ts noise.Timestamp) []byte {
	t.Helper()
	msg, err := noise.MakeInitiation(k, tr.PublicKey(), 0x1234, ts)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// sendUDP sends p to the relay's UDP port from a socket of its own and,
// if answered is set, waits for WireGuard's handshake response.
func sendUDP(t *testing.T, tr *testRelay, p []byte, answered bool) {
	t.Helper()
	c, err := net.Dial("udp", tr.cfg.AgentListenUDP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	if !answered {
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil || wire.Classify(buf[:n]) != wire.Response {
		t.Fatalf("the relay did not answer the initiation: %v", err)
	}
}
