package agent

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// transportConfig is a validated config for transport tr to relay.
func transportConfig(t *testing.T, tr, relay string, relayKey vpn.PublicKey) *Config {
	t.Helper()
	c := &Config{Relay: relay, RelayPublicKey: relayKey.String(), Transport: tr, TunnelIP: "100.96.0.2", Proxy: "none"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// hostsResolver is a dnsfix resolver that knows only the hosts file it is
// given and asks no resolver at all.
func hostsResolver(t *testing.T, hosts string) (*dnsfix.Resolver, string) {
	t.Helper()
	dir := t.TempDir()
	file, resolvConf := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	writeTestFile(t, file, hosts)
	writeTestFile(t, resolvConf, "")
	r, err := dnsfix.New(dnsfix.Config{HostsFile: file, ResolvConf: resolvConf, Fallback: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	return r, file
}

func writeTestFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testKey(t *testing.T) vpn.PrivateKey {
	t.Helper()
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTransportChosenFromConfig: the transport setting alone picks the
// bind, the TUN wrapping and the relay peer's endpoint.
func TestTransportChosenFromConfig(t *testing.T) {
	relayKey := testKey(t).Public()
	for _, tt := range []struct {
		transport, relay, hosts string // hosts: the hosts file, for a relay given by name
		want, endpoint          string
		ipv6                    bool
	}{
		{"", "127.0.0.1:7443", "", "tcp", "127.0.0.1:7443", false},
		{"tcp", "relay.test:7443", "127.0.0.1 relay.test\n", "tcp", "relay.test:7443", false},
		{"udp", "127.0.0.1:7443", "", "udp", "127.0.0.1:7443", false},
		{"udp", "[::1]:7443", "", "udp", "[::1]:7443", true},
		{"udp", "[::ffff:127.0.0.1]:7443", "", "udp", "127.0.0.1:7443", false},
		{"udp", "relay.test:7443", "127.0.0.1 relay.test\n", "udp", "127.0.0.1:7443", false},
		{"udp", "relay.test:7443", "::1 relay.test\n", "udp", "[::1]:7443", true},
		{"udp", "relay.test:7443", "# not yet\n", "udp", "", false}, // resolved again once started
	} {
		cfg := transportConfig(t, tt.transport, tt.relay, relayKey)
		env := transportEnv{sent: func(int) {}, logf: t.Logf}
		if cfg.relayIsName() {
			env.dns, _ = hostsResolver(t, tt.hosts)
		}
		tr, err := newTransport(cfg, env)
		if err != nil {
			t.Errorf("%s %s: %v", tt.transport, tt.relay, err)
			continue
		}
		dev := tuntest.NewChannelTUN().TUN()
		got, ipv6 := "", false
		switch tr := tr.(type) {
		case *tcpTransport:
			_, isTCP := tr.bind().(*uplink.TCPBind)
			if got = "tcp"; !isTCP || tr.wrapTUN(dev) != dev {
				t.Errorf("%s %s: TCP transport with bind %T and a wrapped TUN", tt.transport, tt.relay, tr.bind())
			}
		case *udpTransport:
			cb, counted := tr.bind().(*countingBind) // for the traffic record
			isUDP := counted && cb.Bind == conn.Bind(tr.b)
			if got, ipv6 = "udp", tr.ipv6.Load(); !isUDP || tr.wrapTUN(dev) == dev {
				t.Errorf("%s %s: UDP transport with bind %T and no inbound window on the TUN", tt.transport, tt.relay, tr.bind())
			}
		}
		if got != tt.want || tr.endpoint() != tt.endpoint || ipv6 != tt.ipv6 {
			t.Errorf("%s %s: %s transport to %q (IPv6 %v), want %s to %q (IPv6 %v)", tt.transport, tt.relay, got, tr.endpoint(), ipv6, tt.want, tt.endpoint, tt.ipv6)
		}
		tr.close() // never started: nothing to stop
	}

	cfg := transportConfig(t, "tcp", "127.0.0.1:7443", relayKey)
	cfg.Transport = "quic"
	if tr, err := newTransport(cfg, transportEnv{}); err == nil || tr != nil {
		t.Errorf("transport \"quic\": got %v, %v; want an error", tr, err)
	}
}

// TestUDPTransportStatus: over UDP the tunnel counts as connected while
// WireGuard's last handshake is under 3.5 minutes old, and the byte counts
// are WireGuard's own.
func TestUDPTransportStatus(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tr := newUDPTransport(transportConfig(t, "udp", "127.0.0.1:7443", testKey(t).Public()), transportEnv{})
	tr.now = func() time.Time { return now }
	for _, tt := range []struct {
		ago       time.Duration // since the last handshake; -1: never
		connected bool
	}{
		{-1, false},
		{0, true},
		{3*time.Minute + 29*time.Second, true},
		{210 * time.Second, false},
		{time.Hour, false},
	} {
		ps := vpn.PeerStats{RxBytes: 1000, TxBytes: 2000}
		if tt.ago >= 0 {
			ps.LastHandshake = now.Add(-tt.ago)
		}
		want := linkStatus{connected: tt.connected, rx: 1000, tx: 2000}
		if got := tr.status(ps); got != want {
			t.Errorf("handshake %v ago: %+v, want %+v", tt.ago, got, want)
		}
	}
	// Pinging, a pong counts as a handshake would, until three pings in a
	// row went unanswered.
	ps := vpn.PeerStats{LastHandshake: now.Add(-time.Hour)}
	tr.pinging.Store(true)
	for _, tt := range []struct {
		ago       time.Duration // since the last pong
		connected bool
	}{{0, true}, {75 * time.Second, true}, {76 * time.Second, false}} {
		tr.lastPong.Store(now.Add(-tt.ago).UnixNano())
		if got := tr.status(ps).connected; got != tt.connected {
			t.Errorf("pinging, last pong %v ago: connected %v, want %v", tt.ago, got, tt.connected)
		}
	}
}

// fakeRelay accepts agent connections on loopback and hands them out.
type fakeRelay struct {
	ln    net.Listener
	conns chan net.Conn
}

func newFakeRelay(t *testing.T) *fakeRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRelay{ln: ln, conns: make(chan net.Conn, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			r.conns <- c
		}
	}()
	return r
}

func (r *fakeRelay) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-r.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not connect within 10 s")
		return nil
	}
}

// readFrame reads one frame's payload; io.EOF when the agent hung up.
func readFrame(c net.Conn) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	p := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	_, err := io.ReadFull(c, p)
	return p, err
}

// initiations reads frames until the first handshake initiation (until
// EOF when toEOF) and returns how many it read.
func initiations(t *testing.T, c net.Conn, toEOF bool) int {
	t.Helper()
	n := 0
	for {
		p, err := readFrame(c)
		if toEOF && errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("reading the agent's frames: %v", err)
		}
		if len(p) > 0 && p[0] == device.MessageInitiationType {
			if n++; !toEOF {
				return n
			}
		}
	}
}

// TestTCPTransportHandshakesOncePerConnection: the TCP transport sends one
// handshake initiation on each new relay connection, however often it is
// asked (a second in the same instant would be dropped by the relay as a
// replay, and cost a 5 s retry); and the tunnel counts as connected only
// once a handshake has completed on that connection.
func TestTCPTransportHandshakesOncePerConnection(t *testing.T) {
	relay := newFakeRelay(t)
	relayKey, hubKey := testKey(t).Public(), testKey(t)
	cfg := transportConfig(t, "tcp", relay.ln.Addr().String(), relayKey)
	env := transportEnv{hello: wire.Hello{Version: wire.ProtocolVersion, Key: hubKey.Public(), Software: "test"}, logf: t.Logf}
	tr, err := newTCPTransport(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	tr.b.Backoff = uplink.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}

	// The pipeline of startTunnel, on a TUN of channels. The device comes
	// up on its own (the TUN reports up at once), so the bind may connect
	// before the peer exists.
	dev, err := vpn.NewDevice(tr.wrapTUN(tuntest.NewChannelTUN().TUN()), tr.bind(), hubKey, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.AddPeer(vpn.Peer{PublicKey: relayKey, Endpoint: tr.endpoint()}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	tr.start(dev)

	c1 := relay.accept(t)
	hello := wire.Hello{Version: wire.ProtocolVersion, Key: relayKey, Software: "fake relay"}.Marshal()
	c1.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(hello))), hello...))
	initiations(t, c1, false)
	poll.Until(t, 10*time.Second, "the relay's Hello to be read", func() bool { return tr.status(vpn.PeerStats{}).relaySoftware == "fake relay" })
	bs := tr.b.Status()
	if st := tr.status(vpn.PeerStats{LastHandshake: bs.Since.Add(-time.Second)}); st.connected || st.overhead == 0 {
		t.Errorf("status before a handshake on this connection: %+v; want not connected, with overhead counted", st)
	}
	if st := tr.status(vpn.PeerStats{LastHandshake: bs.Since}); !st.connected || !st.since.Equal(bs.Since) || st.lastError != "" {
		t.Errorf("status after a handshake on this connection: %+v; want connected since %v", st, bs.Since)
	}
	tr.handshake() // as a repeated OnConnect would
	tr.handshake()
	c1.(*net.TCPConn).CloseWrite() // the agent hangs up and connects again
	if n := initiations(t, c1, true); n != 0 {
		t.Errorf("%d more initiations on the first connection, want none", n)
	}

	c2 := relay.accept(t)
	initiations(t, c2, false)
	tr.handshake()
	tr.close()
	dev.Close() // closes the bind, and so the connection
	if n := initiations(t, c2, true); n != 0 {
		t.Errorf("%d more initiations on the second connection, want none", n)
	}
}

// TestUDPTransportFollowsTheRelay: over UDP, while no handshake succeeds,
// the relay's name is resolved again and the peer follows a new address,
// of the other family too.
func TestUDPTransportFollowsTheRelay(t *testing.T) {
	relayKey, hubKey := testKey(t).Public(), testKey(t)
	cfg := transportConfig(t, "udp", "relay.test:7443", relayKey)
	dns, hosts := hostsResolver(t, "127.0.0.1 relay.test\n")
	tr := newUDPTransport(cfg, transportEnv{dns: dns, sent: func(int) {}, logf: t.Logf})
	tr.every = 10 * time.Millisecond
	dev, err := vpn.NewDevice(tr.wrapTUN(tuntest.NewChannelTUN().TUN()), tr.bind(), hubKey, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.AddPeer(vpn.Peer{PublicKey: relayKey, Endpoint: tr.endpoint(), PersistentKeepalive: cfg.PersistentKeepalive}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	tr.start(dev)
	defer tr.close()
	endpoint := func() string {
		st, _ := dev.Stats()
		return st[relayKey].Endpoint
	}
	if got := endpoint(); got != "127.0.0.1:7443" || tr.ipv6.Load() {
		t.Fatalf("endpoint %q (IPv6 %v), want 127.0.0.1:7443", got, tr.ipv6.Load())
	}
	writeTestFile(t, hosts, "::1 relay.test\n")
	poll.Until(t, 10*time.Second, "the peer to follow the relay to [::1]", func() bool { return endpoint() == "[::1]:7443" && tr.ipv6.Load() })
}
