package agent

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// pongProxy stands between the agent and a real WireGuard device as the
// relay: it passes WireGuard's messages both ways, counts what the agent
// sends, and answers the agent's pings while answer is set (as hubrelay
// does; a plain WireGuard server never does).
type pongProxy struct {
	sock   *net.UDPConn
	relay  netip.AddrPort
	answer atomic.Bool

	pings, keepalives, initiations atomic.Int64
}

func newPongProxy(t *testing.T, relay netip.AddrPort) *pongProxy {
	t.Helper()
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &pongProxy{sock: sock, relay: relay}
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { sock.Close(); wg.Wait() })
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		var agent netip.AddrPort
		for {
			n, from, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m := buf[:n]
			if from == relay {
				if agent.IsValid() {
					sock.WriteToUDPAddrPort(m, agent)
				}
				continue
			}
			agent = from
			if i, ok := wire.ParseUDPPing(m); ok {
				p.pings.Add(1)
				if p.answer.Load() {
					sock.WriteToUDPAddrPort(wire.AppendUDPPong(nil, i, 0), from)
				}
				continue
			}
			switch wire.Classify(m) {
			case wire.Keepalive:
				p.keepalives.Add(1)
			case wire.Initiation:
				p.initiations.Add(1)
			}
			sock.WriteToUDPAddrPort(m, relay)
		}
	}()
	return p
}

// TestUDPTransportPingsInsteadOfKeepalives: once the relay answers its
// pings, an idle agent sends pings and no WireGuard keepalives (which
// would start a handshake every 2 minutes), and leaves TCP checksums out;
// when the pongs stop, it turns the keepalives and checksums on again and
// handshakes; a relay that answers again is pinged again. Against a real
// WireGuard device as the relay, through a proxy that plays hubrelay's
// part in answering pings.
func TestUDPTransportPingsInsteadOfKeepalives(t *testing.T) {
	relayPriv, hubKey := testKey(t), testKey(t)
	relayDev, err := vpn.NewDevice(tuntest.NewChannelTUN().TUN(), conn.NewStdNetBind(), relayPriv, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer relayDev.Close()
	relayPort := uint16(freeUDPPort(t))
	if err := relayDev.SetListenPort(relayPort); err != nil {
		t.Fatal(err)
	}
	if err := relayDev.AddPeer(vpn.Peer{PublicKey: hubKey.Public()}); err != nil {
		t.Fatal(err)
	}
	if err := relayDev.Up(); err != nil {
		t.Fatal(err)
	}
	proxy := newPongProxy(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relayPort))
	proxy.answer.Store(true)

	cfg := transportConfig(t, "udp", proxy.sock.LocalAddr().String(), relayPriv.Public())
	cfg.PersistentKeepalive = 1 // WireGuard's keepalive every second while it is on
	var logMu sync.Mutex
	var log strings.Builder
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		log.WriteString(strings.TrimSpace(fmt.Sprintf(format, args...)) + "\n")
	}
	logged := func(s string) bool {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Contains(log.String(), s)
	}
	tr := newUDPTransport(cfg, transportEnv{sent: func(int) {}, logf: logf})
	tr.pingEvery = 200 * time.Millisecond
	dev, err := vpn.NewDevice(tr.wrapTUN(tuntest.NewChannelTUN().TUN()), tr.bind(), hubKey, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.AddPeer(vpn.Peer{PublicKey: relayPriv.Public(), Endpoint: tr.endpoint(), PersistentKeepalive: cfg.PersistentKeepalive}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	relayIP := netip.MustParseAddr("100.64.0.1")
	if !tr.needsChecksum(relayIP) {
		t.Errorf("TCP checksums left out before the relay answered a ping")
	}
	tr.start(dev)
	defer tr.close()
	pinging := tr.pinging.Load
	// quiet checks that over n more pings the agent sent no keepalive.
	quiet := func(n int64) {
		t.Helper()
		k, p := proxy.keepalives.Load(), proxy.pings.Load()
		poll.Until(t, 10*time.Second, "more pings", func() bool { return proxy.pings.Load() >= p+n })
		if got := proxy.keepalives.Load() - k; got != 0 {
			t.Errorf("%d WireGuard keepalives over %d pings; want none while the relay answers pings", got, n)
		}
	}

	poll.Until(t, 10*time.Second, "the agent to ping the relay that answers", pinging)
	if tr.needsChecksum(relayIP) {
		t.Errorf("TCP checksums still sent to a relay that answers pings (one from after 12-02, which verifies none)")
	}
	if !logged("the relay answers pings") {
		t.Errorf("the agent did not log that it pings:\n%s", log.String())
	}
	quiet(1)  // the keepalive turned off
	quiet(10) // 2 s: two keepalives, were they on
	if st, _ := dev.Stats(); !tr.status(st[relayPriv.Public()]).connected {
		t.Errorf("not connected while pinging")
	}

	// The relay stops answering: after udpPongsLost pings, keepalives and
	// a handshake.
	proxy.answer.Store(false)
	inits, keeps := proxy.initiations.Load(), proxy.keepalives.Load()
	poll.Until(t, 10*time.Second, "the agent to give up pinging", func() bool { return !pinging() })
	poll.Until(t, 10*time.Second, "a handshake and a keepalive again", func() bool {
		return proxy.initiations.Load() > inits && proxy.keepalives.Load() > keeps
	})
	if !tr.needsChecksum(relayIP) {
		t.Errorf("TCP checksums still left out after the relay stopped answering pings")
	}
	if !logged("the relay answered none of the last 3 pings") {
		t.Errorf("the agent did not log why it handshakes:\n%s", log.String())
	}

	// It answers again: on the new session the agent probes (three
	// pings), and pings.
	proxy.answer.Store(true)
	poll.Until(t, 10*time.Second, "the agent to ping again", pinging)
	quiet(10)
	if tr.needsChecksum(relayIP) {
		t.Errorf("TCP checksums sent again to a relay that answers pings again")
	}
}

// freeUDPPort is a UDP port on loopback that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
