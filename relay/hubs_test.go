package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/netstack"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestRegistryReconnectWindow: only a hub's last disconnect starts its
// reconnect window, which lasts reconnectWindow on the relay's clock.
func TestRegistryReconnectWindow(t *testing.T) {
	clock := &fakeClock{}
	r := newRegistry([]HubConfig{{Name: "a"}}, clock.now)
	h := r.name("a")
	if r.reconnecting(h) || r.online(h) {
		t.Fatal("a hub that never connected is reconnecting or online")
	}
	c1, c2 := &agentConn{}, &agentConn{}
	r.connected(h, c1)
	r.connected(h, c2)
	if r.disconnected(h, c1) || r.reconnecting(h) || !r.online(h) {
		t.Fatal("the first of two connections ending took the hub offline or started its window")
	}
	if !r.disconnected(h, c2) || !r.reconnecting(h) || r.online(h) {
		t.Fatal("the last connection ending did not start the hub's reconnect window")
	}
	clock.advance(reconnectWindow - time.Millisecond)
	if !r.reconnecting(h) {
		t.Error("the window ended early")
	}
	clock.advance(time.Millisecond)
	if r.reconnecting(h) {
		t.Error("the window did not end after reconnectWindow")
	}
}

// TestRecentlyOnline: a relay that starts counts as on their way back the
// hubs the store still says are online (the last relay crashed) and those
// whose agent left less than reconnectWindow ago; not the others.
func TestRecentlyOnline(t *testing.T) {
	now := time.Now()
	stored := []store.Hub{
		{Name: "crashed", OnlineSince: now.Add(-48 * time.Hour), LastSeen: now.Add(-48 * time.Hour)},
		{Name: "left", LastSeen: now.Add(-reconnectWindow + time.Second)},
		{Name: "long-gone", LastSeen: now.Add(-reconnectWindow)},
		{Name: "never"},
	}
	got := recentlyOnline(stored, now)
	if len(got) != 2 || !got["crashed"] || !got["left"] {
		t.Errorf("recentlyOnline = %v, want crashed and left", got)
	}
}

// TestHubOnlineOnlyAfterProvenHandshake: a Hello naming a hub's key is
// only a claim. Neither a connection that says no more, nor an agent with
// another WireGuard key that claims the hub, makes it online; the hub's own
// agent does, and the relay counts it online before that agent's handshake
// completes, so a request never finds a connected hub offline.
func TestHubOnlineOnlyAfterProvenHandshake(t *testing.T) {
	tr := startTestRelay(t, false, "a", "b")
	h := tr.hubs.name("a")

	claim := tr.dialAgent(t, tr.keys["a"].Public())
	poll.Until(t, 10*time.Second, "the relay to take the claim in", func() bool { return tr.claims(h) == 1 })
	if tr.hubs.online(h) {
		t.Fatal("a Hello alone made the hub online")
	}

	// The hub is the peer WireGuard authenticates: a connection whose
	// handshake is another key's — unknown, or another hub's — is dropped
	// before WireGuard answers it, and its agent told why.
	other, _ := vpn.GeneratePrivateKey()
	impostor := startTestAgent(t, tr, other, "100.96.0.2", tr.keys["a"].Public())
	hubB := startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", tr.keys["a"].Public())
	for _, a := range []*testAgent{impostor, hubB} {
		poll.Until(t, 10*time.Second, "the relay to drop a connection with another key's handshake", func() bool {
			return strings.Contains(a.bind.Status().LastError, "this connection's WireGuard key is not the one its Hello named")
		})
	}
	if tr.hubs.online(h) || tr.hubs.online(tr.hubs.name("b")) {
		t.Fatal("an agent with another key that claims the hub made a hub online")
	}
	// Logged once a minute per named hub: the line names whichever of the
	// two foreign keys came first.
	impostorLine := tr.logged(`hub=a sent="the handshake of key ` + other.Public().Short() + `"`)
	hubBLine := tr.logged(`hub=a sent="the handshake of key ` + tr.keys["b"].Public().Short() + ` (hub b)"`)
	if tr.logged("hub=a sent=") != 1 || impostorLine+hubBLine != 1 {
		t.Errorf("the relay's log of the foreign handshakes: %d lines, %d naming the impostor's key, %d hub b's; want one naming either", tr.logged("hub=a sent="), impostorLine, hubBLine)
	}

	genuine := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "the hub's agent to complete its handshake", genuine.handshaken)
	if !tr.hubs.online(h) {
		t.Fatal("the hub's agent has its handshake answered, but the hub is not online")
	}
	if n := h.online.Load(); n != 1 {
		t.Errorf("%d connections count for the hub, want 1: the claims were counted", n)
	}
	if impostor.handshaken() {
		t.Error("the relay answered the impostor's handshake")
	}
	claim.Close()
}

// TestUnknownKeyGetsError: an agent whose key no hub has is told so in an
// Error frame after the relay's Hello, and the connection ends; no hub
// comes online.
func TestUnknownKeyGetsError(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	stranger, _ := vpn.GeneratePrivateKey()
	c := tr.dialAgent(t, stranger.Public())
	r := newFrames(c)
	if p, err := r.Next(); err != nil || p[0] != wire.TypeHello {
		t.Fatalf("first frame %x, %v; want the relay's Hello", p, err)
	}
	p, err := r.Next()
	if err != nil {
		t.Fatalf("no Error frame: %v", err)
	}
	e, err := wire.ParseError(p)
	if err != nil || e.Message != "this hub is not registered at the relay" || e.Code != wire.CodeNotRegistered {
		t.Fatalf("second frame %+v, %v; want an Error saying the hub is not registered", e, err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the Error: %v, want the end of the stream", err)
	}
	if tr.hubs.online(tr.hubs.name("a")) {
		t.Error("a hub came online")
	}
	poll.Until(t, 10*time.Second, "the relay to drop the connection", func() bool { return tr.agentCount() == 0 })
}

// TestRequestWaitsForReconnectingHub: a request that arrives while the
// hub's agent restarts (an update, say) waits for it and is served,
// rather than failing with "Hub offline" or, with UDP agents allowed,
// being sent after the agent's closed connection. Once the hub has been
// gone longer than reconnectWindow, a request fails at once.
func TestRequestWaitsForReconnectingHub(t *testing.T) {
	for _, udp := range []bool{false, true} {
		t.Run(fmt.Sprintf("relay UDP %v", udp), func(t *testing.T) { testRequestWaitsForReconnectingHub(t, udp) })
	}
}

func testRequestWaitsForReconnectingHub(t *testing.T, relayUDP bool) {
	tr := startTestRelay(t, relayUDP, "a")
	h := tr.hubs.name("a")
	old := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(h) })
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET before the restart: %d %v", code, err)
	}
	last := old.lastHandshake()
	old.Close()
	poll.Until(t, 10*time.Second, "the relay to see hub a reconnecting", func() bool {
		return !tr.hubs.online(h) && tr.hubs.reconnecting(h)
	})

	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := tr.get("a")
		res <- result{code, err}
	}()
	poll.Until(t, 10*time.Second, "the request to wait for hub a", func() bool { return waiting(h) })

	// WireGuard refuses a second initiation from a peer within 20 ms of
	// the last (its flood limit); a real restart is never that fast.
	poll.Until(t, time.Second, "20 ms since the last handshake", func() bool { return time.Since(last) > 25*time.Millisecond })
	again := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	if r := <-res; r.err != nil || r.code != 200 {
		t.Fatalf("GET while the agent restarted: %d %v, want 200", r.code, r.err)
	}

	again.Close()
	poll.Until(t, 10*time.Second, "the relay to see hub a reconnecting again", func() bool {
		return !tr.hubs.online(h) && tr.hubs.reconnecting(h)
	})
	tr.clock.advance(reconnectWindow)
	start := time.Now()
	code, err := tr.get("a")
	if err != nil || code != 404 {
		t.Fatalf("GET for a hub gone longer than reconnectWindow: %d %v, want 404", code, err)
	}
	if waiting(h) || time.Since(start) >= reconnectWait {
		t.Errorf("the request for a hub gone longer than reconnectWindow waited (%v)", time.Since(start))
	}
}

// TestRequestWaitsForUDPHub: a request for a UDP hub the relay counts as
// reconnecting (as a relay that has just started counts those the store
// says were online) is served as soon as the agent's handshake comes, not
// after reconnectWait with "Hub offline": a UDP handshake wakes no waiter,
// the wait looks for it.
func TestRequestWaitsForUDPHub(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	h := tr.hubs.name("a")
	tr.hubs.goneNow(h)
	type result struct {
		code int
		err  error
		took time.Duration
	}
	res := make(chan result, 1)
	go func() {
		start := time.Now()
		code, err := tr.get("a")
		res <- result{code, err, time.Since(start)}
	}()
	poll.Until(t, 10*time.Second, "the request to wait for hub a", func() bool { return waiting(h) })
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Fatalf("GET while the UDP agent came: %d %v, want 200", r.code, r.err)
	}
	if r.took >= reconnectWait {
		t.Errorf("the request waited %v, all of reconnectWait, for an agent that handshook at %v", r.took, a.lastHandshake().Format("15:04:05.000"))
	}
}

// TestUDPOnlineCheckSharesOneDump: online checks of UDP hubs (a metrics
// scrape asks for every hub) share one dump of WireGuard's peers, and a
// hub seen online over UDP is not looked up again while its handshake is
// fresh.
func TestUDPOnlineCheckSharesOneDump(t *testing.T) {
	tr := startTestRelay(t, true, "a", "b", "c")
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	a.waitOnline(t, tr, "a")
	dumps := func(stale bool) int {
		tr.udpPeers.mu.Lock()
		defer tr.udpPeers.mu.Unlock()
		if stale {
			tr.udpPeers.taken = time.Time{}
		}
		return tr.udpPeers.dumps
	}
	check := func(names ...string) {
		for range 100 {
			for _, name := range names {
				if got, want := tr.hubs.online(tr.hubs.name(name)), name == "a"; got != want {
					t.Fatalf("hub %s online %v, want %v", name, got, want)
				}
			}
		}
	}
	before := dumps(true)
	check("a")
	if n := dumps(false) - before; n != 0 {
		t.Errorf("100 online checks of a hub online over UDP dumped WireGuard's peers %d times", n)
	}
	before = dumps(true)
	start := time.Now()
	check("a", "b", "c")
	if n, most := dumps(false)-before, 1+int(time.Since(start)/udpPeersMaxAge)+1; n > most {
		t.Errorf("300 online checks dumped WireGuard's peers %d times in %v", n, time.Since(start))
	}
}

// waiting reports whether a request waits for h to come back.
func waiting(h *hub) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.back != nil
}

// fakeClock is the relay's clock in a test: real time, moved on by advance.
type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// testRelay is a relay on loopback with hubs whose private keys the test
// holds, on a fakeClock.
type testRelay struct {
	*Server
	clock  *fakeClock
	keys   map[string]vpn.PrivateKey
	offset int
	// tokens are an operator's app token per hub, with every port;
	// session is a login of user "owner", who owns every hub.
	tokens  map[string]string
	session string

	log logLines // what the relay logged
}

// logged counts the relay's log lines that contain every one of words.
func (tr *testRelay) logged(words ...string) int { return tr.log.count(words...) }

// logLines keeps a relay's log lines for a test to look through.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// all is a copy of the lines so far.
func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// find is the first line that holds s, or "".
func (l *logLines) find(s string) string {
	for _, line := range l.all() {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// count is how many lines hold every one of words.
func (l *logLines) count(words ...string) int {
	n := 0
next:
	for _, line := range l.all() {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		n++
	}
	return n
}

// startTestRelay starts a relay with the named hubs (tunnel addresses
// 100.96.0.2, .3, …), listening for UDP agents too if udp is set, and
// closes it at the end of the test.
func startTestRelay(t *testing.T, udp bool, names ...string) *testRelay {
	t.Helper()
	return startTestRelayWith(t, udp, nil, names...)
}

// startTestRelayWith is startTestRelay with changes to the config made by
// change, if not nil, before it is validated.
func startTestRelayWith(t testing.TB, udp bool, change func(*Config), names ...string) *testRelay {
	t.Helper()
	return startTestRelayHook(t, udp, change, nil, names...)
}

// startTestRelayHook is startTestRelayWith with before, if not nil, called
// on the Server before it starts.
func startTestRelayHook(t testing.TB, udp bool, change func(*Config), before func(*Server), names ...string) *testRelay {
	t.Helper()
	agentPort, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	offset, err := ports.Offset()
	if err != nil {
		t.Fatal(err)
	}
	udpListen := "off"
	if udp {
		p, err := ports.FreeUDP()
		if err != nil {
			t.Fatal(err)
		}
		udpListen = fmt.Sprintf("127.0.0.1:%d", p)
	}
	tr := &testRelay{clock: &fakeClock{}, keys: map[string]vpn.PrivateKey{}, offset: offset}
	cfg := Config{
		AgentListen:    fmt.Sprintf("127.0.0.1:%d", agentPort),
		AgentListenUDP: udpListen,
		Domain:         "localhost",
		PublicListen:   "127.0.0.1",
		PortOffset:     offset,
		PrivateKeyFile: filepath.Join(t.TempDir(), "relay.key"),
		Now:            tr.clock.now,
	}
	for i, name := range names {
		k, err := vpn.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		tr.keys[name] = k
		cfg.Hubs = append(cfg.Hubs, HubConfig{Name: name, PublicKey: k.Public().String(), TunnelIP: fmt.Sprintf("100.96.0.%d", i+2)})
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, bench := t.(*testing.B)
	logf := testLogf(t)
	s, err := New(cfg, "test", func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		if bench {
			return // the formatting is the relay's cost; keeping lines is the test's
		}
		tr.log.add(line)
		logf("%s", line)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.udpPeerSweep = 24 * time.Hour // tests call sweepUDPPeers
	if before != nil {
		before(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tr.Server = s
	tr.credentials(t, names)
	return tr
}

// testLogf is t.Logf, except under a fuzz target, which panics at a line
// of its *testing.F while an input runs: there the relay's and WireGuard's
// lines are left out (tr.log keeps the relay's).
func testLogf(t testing.TB) func(string, ...any) {
	if _, fuzz := t.(*testing.F); fuzz {
		return func(string, ...any) {}
	}
	return t.Logf
}

// dialAgent connects to the relay's agent port and says Hello with key,
// and nothing more.
func (tr *testRelay) dialAgent(t *testing.T, key vpn.PublicKey) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tr.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hello, _ := wire.AppendFrame(nil, wire.Hello{Version: wire.ProtocolVersion, Key: key, Software: "test"}.Marshal())
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	return c
}

// claims counts the agent connections whose Hello claimed h.
func (tr *testRelay) claims(h *hub) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for ac := range tr.agent {
		if ac.hub.Load() == h {
			n++
		}
	}
	return n
}

// get fetches / of a hub through the relay's public port 443.
func (tr *testRelay) get(hub string) (int, error) {
	port := 443 + tr.offset
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: hub + ".localhost"},
	}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", port), nil)
	req.Host = fmt.Sprintf("%s.localhost:%d", hub, port)
	req.SetBasicAuth("hubtunnel", tr.tokens[hub])
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && !bytes.Equal(body, []byte(testAgentPage)) {
		return 0, fmt.Errorf("GET: a page that is not the hub's: %.100q", body)
	}
	return resp.StatusCode, err
}

const testAgentPage = "hub page\n"

// testAgent is as little of an agent as the relay can tell from a real
// one: a WireGuard device on a netstack over the agent's own transport
// (uplink.TCPBind), starting a handshake on every new connection, serving
// testHub on tunnel ports 80, 443, 2001, 4431, 8181 and 44381 (the relay
// terminates TLS).
type testAgent struct {
	bind     *uplink.TCPBind
	dev      *vpn.Device
	stack    *netstack.Stack
	web      *http.Server
	relayKey vpn.PublicKey

	ready     atomic.Pointer[vpn.Device]
	hsMu      sync.Mutex
	hsConn    uint64
	closeOnce sync.Once
}

// startTestAgent starts an agent with key k at tunnelIP that connects to
// tr; its Hello claims claim, or k's public key if claim is zero.
func startTestAgent(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string, claim vpn.PublicKey) *testAgent {
	t.Helper()
	return startTestAgentPinning(t, tr, k, tunnelIP, claim, tr.PublicKey())
}

// startTestAgentPinning is startTestAgent with relayKey pinned as the
// relay's key, as an agent's relay_public_key does.
func startTestAgentPinning(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string, claim, relayKey vpn.PublicKey) *testAgent {
	t.Helper()
	return startTestAgentVia(t, tr, k, tunnelIP, claim, relayKey, tr.AgentAddr().String(), nil)
}

// startTestAgentVia is startTestAgentPinning dialing the relay at addr (a
// forwarder the test controls, say) with the dialer d (nil: TCP).
func startTestAgentVia(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string, claim, relayKey vpn.PublicKey, addr string, d *uplink.Dialer) *testAgent {
	t.Helper()
	return startTestAgentOpts(t, tr, k, tunnelIP, claim, relayKey, addr, d, testAgentOpts{})
}

// testAgentOpts are how a test agent differs from an agent before
// wire.Features, which its zero value plays: netstack's default MTU, no
// Features frame, checksums verified.
type testAgentOpts struct {
	mtu      int
	features *wire.Features // sent after the Hello; the relay's are followed
}

// startTestAgentOpts is startTestAgentVia with o.
func startTestAgentOpts(t testing.TB, tr *testRelay, k vpn.PrivateKey, tunnelIP string, claim, relayKey vpn.PublicKey, addr string, d *uplink.Dialer, o testAgentOpts) *testAgent {
	t.Helper()
	if claim == (vpn.PublicKey{}) {
		claim = k.Public()
	}
	a := &testAgent{relayKey: relayKey}
	var err error
	scfg := netstack.Config{Addrs: []netip.Addr{netip.MustParseAddr(tunnelIP)}, MTU: o.mtu, VerifyChecksums: o.features == nil}
	if o.features != nil {
		scfg.NeedsChecksum = func(dst netip.Addr) bool { return a.bind.RelayNeedsChecksum(dst) }
	}
	if a.stack, err = netstack.New(scfg); err != nil {
		t.Fatal(err)
	}
	a.bind = &uplink.TCPBind{
		Features:  o.features,
		Addr:      addr,
		Dialer:    d,
		Hello:     wire.Hello{Version: wire.ProtocolVersion, Key: claim, Software: "relay-test-agent"},
		OnConnect: a.handshake,
		Logf:      testLogf(t),
		// The Pong proves the hub's key (k), as the agent's does.
		PongSecret: func(_, relay [32]byte) ([32]byte, bool) { return k.SharedSecret(vpn.PublicKey(relay)) },
	}
	if a.dev, err = vpn.NewDevice(a.stack.Device(), a.bind, k, testLogf(t)); err != nil {
		a.stack.Close()
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	relayIP := tr.cfg.tunnelIP
	peer := vpn.Peer{PublicKey: a.relayKey, AllowedIPs: []netip.Prefix{netip.PrefixFrom(relayIP, relayIP.BitLen())}, Endpoint: a.bind.Addr}
	if err := a.dev.AddPeer(peer); err != nil {
		t.Fatal(err)
	}
	a.web = &http.Server{Handler: testHub(tunnelIP)}
	for _, port := range []uint16{80, 443, 2001, 4431, 8181, 44381} {
		ln, err := a.stack.ListenTCP(port)
		if err != nil {
			t.Fatal(err)
		}
		go a.web.Serve(ln)
	}
	if err := a.dev.Up(); err != nil {
		t.Fatal(err)
	}
	a.ready.Store(a.dev)
	a.handshake()
	return a
}

// handshake starts a handshake once per relay connection, as the agent
// does.
func (a *testAgent) handshake() {
	d := a.ready.Load()
	st := a.bind.Status()
	if d == nil || !st.Connected {
		return
	}
	a.hsMu.Lock()
	defer a.hsMu.Unlock()
	if a.hsConn == st.Connects {
		return
	}
	a.hsConn = st.Connects
	d.Handshake(a.relayKey)
}

func (a *testAgent) lastHandshake() time.Time {
	st, err := a.dev.Stats()
	if err != nil {
		return time.Time{}
	}
	return st[a.relayKey].LastHandshake
}

func (a *testAgent) handshaken() bool { return !a.lastHandshake().IsZero() }

// Close stops the agent as a restarting agent stops: its connection ends.
func (a *testAgent) Close() {
	a.closeOnce.Do(func() {
		a.web.Close()
		a.dev.Close()
		a.stack.Close()
	})
}

// TestWrongRelayKeySaysSo: an agent that pinned another relay key learns
// so from the relay at its first handshake, in words its owner can act
// on, and the relay logs it once; WireGuard alone would drop the
// handshake in silence and the agent would wait forever.
func TestWrongRelayKeySaysSo(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	other, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a := startTestAgentPinning(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{}, other.Public())
	poll.Until(t, 10*time.Second, "the agent to be told its relay key is wrong", func() bool {
		return strings.Contains(a.bind.Status().LastError, "relay_public_key in this hub's config is not this relay's key; this relay's key is "+tr.PublicKey().String())
	})
	if tr.hubs.online(tr.hubs.name("a")) {
		t.Fatal("a hub with the wrong relay key counts as online")
	}
	poll.Until(t, 10*time.Second, "the relay's log line", func() bool {
		return tr.logged(`msg="hub has another relay key pinned (relay_public_key)`, " hub=a ") == 1
	})
}

// TestHubsChangeWithoutRestart: the relay serves the store's enabled hubs
// and follows the store while it runs: a hub added (by hubrelay, the
// portal, enrollment) is served within a second, its agent connects and
// its users reach it; a hub disabled or removed is cut off — its agent's
// connection closed, its users refused — and a hub enabled again comes
// back; the other hubs are not interrupted.
func TestHubsChangeWithoutRestart(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	online := func(name string) bool { h := tr.hubs.name(name); return h != nil && tr.hubs.online(h) }
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return online("a") })
	ctx := context.Background()
	db := tr.Store()

	kb, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpsertHub(ctx, store.HubSpec{Name: "b", PublicKey: kb.Public().String(), TunnelIP: "100.96.0.3"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetHubOwner(ctx, "b", "owner"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 2*time.Second, "the relay to serve hub b", func() bool { return tr.hubs.name("b") != nil })
	startTestAgent(t, tr, kb, "100.96.0.3", [32]byte{})
	poll.Until(t, 10*time.Second, "hub b online", func() bool { return online("b") })
	if got := tr.ask(t, 443, "b.localhost", "/who", tr.cookie(true)); got.code != 200 || got.body != "100.96.0.3" {
		t.Fatalf("hub b after it was added: %d %q", got.code, got.body)
	}

	a := tr.hubs.name("a")
	if err := db.SetHubDisabled(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, time.Second, "hub a's agent connection closed", func() bool { return tr.hubs.name("a") == nil && tr.claims(a) == 0 })
	for _, creds := range []string{tr.cookie(true), tr.auth("a")} {
		if got := tr.ask(t, 443, "a.localhost", "/who", creds); got.code == 200 {
			t.Fatalf("a disabled hub answered: %q", got.body)
		}
	}
	if got := tr.ask(t, 443, "b.localhost", "/who", tr.cookie(true)); got.code != 200 || !online("b") {
		t.Fatalf("hub b while a was disabled: %d %q", got.code, got.body)
	}

	if err := db.SetHubDisabled(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 2*time.Second, "the relay to serve hub a again", func() bool { return tr.hubs.name("a") != nil })
	// The first agent may have been told meanwhile that its hub is not
	// served, and waits long before it asks again; a restarted one
	// connects at once.
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online again", func() bool { return online("a") })
	if got := tr.ask(t, 443, "a.localhost", "/who", tr.auth("a")); got.code != 200 || got.body != "100.96.0.2" {
		t.Fatalf("hub a enabled again: %d %q", got.code, got.body)
	}

	b := tr.hubs.name("b")
	if err := db.RemoveHub(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, time.Second, "hub b's agent connection closed", func() bool { return tr.hubs.name("b") == nil && tr.claims(b) == 0 })
	if got := tr.ask(t, 443, "b.localhost", "/who", tr.cookie(true)); got.code != http.StatusNotFound {
		t.Fatalf("a removed hub: %d %q, want the 404 page", got.code, got.body)
	}
	if tr.logged(`msg="hub served now" hub=b `) != 1 || tr.logged(`msg="hub no longer served (disabled, removed or changed in the store)" hub=a `) != 1 {
		t.Error("the relay did not log the hubs it started and stopped serving")
	}
}

// TestRelaySaysNothingFirst: a connection to the agent port that says
// nothing learns nothing of the relay (its key, its version); after an
// agent's Hello, the relay says its own.
func TestRelaySaysNothingFirst(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	c, err := net.Dial("tcp", tr.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); n > 0 || err == nil {
		t.Fatalf("the relay sent %d bytes before the agent spoke", n)
	}
	hello, _ := wire.AppendFrame(nil, wire.Hello{Version: wire.ProtocolVersion, Key: tr.keys["a"].Public(), Software: "test"}.Marshal())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	wc := wire.NewConn(c, wire.ConnConfig{})
	buf := make([]byte, wire.MaxFrame)
	n, err := wc.ReadFrame(buf)
	if err != nil {
		t.Fatal(err)
	}
	h, err := wire.ParseHello(buf[:n])
	if err != nil || vpn.PublicKey(h.Key) != tr.PublicKey() || h.Software != "hubrelay/test" {
		t.Fatalf("the relay's Hello after the agent's: %+v %v", h, err)
	}
}

// TestRenamedHubIsServedUnderItsNewName: a hub renamed in the store (as
// hubrelay hub rename does) is reached under the new name within seconds,
// and the old name reaches nothing.
func TestRenamedHubIsServedUnderItsNewName(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	online := func(name string) bool { h := tr.hubs.name(name); return h != nil && tr.hubs.online(h) }
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return online("a") })
	if err := tr.Store().RenameHub(context.Background(), "a", "lodge"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "hub lodge online", func() bool { return online("lodge") })
	if got := tr.ask(t, 443, "lodge.localhost", "/who", tr.cookie(true)); got.code != 200 || got.body != "100.96.0.2" {
		t.Fatalf("hub lodge: %d %q", got.code, got.body)
	}
	if got := tr.ask(t, 443, "a.localhost", "/who", tr.cookie(true)); got.code != http.StatusNotFound {
		t.Fatalf("the old name: %d %q, want the 404 page", got.code, got.body)
	}
}

// TestStrangersDoNotFloodTheLog: many agents with keys the relay does not
// serve (a scan, stale hubs) are each told so, but logged at most once in
// ten seconds.
func TestStrangersDoNotFloodTheLog(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	for i := 0; i < 20; i++ {
		stranger, _ := vpn.GeneratePrivateKey()
		r := newFrames(tr.dialAgent(t, stranger.Public()))
		r.Next() // the relay's Hello
		if p, err := r.Next(); err != nil || p[0] != wire.TypeError {
			t.Fatalf("stranger %d: %x %v; want an Error frame", i, p, err)
		}
	}
	if n := tr.logged(`msg="unknown agent key"`); n != 1 {
		t.Errorf("20 strangers made %d log lines; want 1", n)
	}
}
