package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// dialFrom connects to addr from the loopback address from and closes the
// connection at the end of the test.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refusedFrom reports whether the relay refused a connection from from to
// addr at once: closed (closedByRelay), or reset so soon that the reset
// came before Go's connect looked at the socket, failing the dial itself.
func refusedFrom(t *testing.T, from, addr string) bool {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return closedByRelay(c)
}

// closedByRelay reports whether the relay closed c (EOF or a reset) within
// 5 s, far less than any of its deadlines.
func closedByRelay(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestAgentPortFloodLeavesHubsServed: connections that never say Hello,
// from one address beyond limit_agent_prehello_per_address, are closed at
// once; from many addresses beyond limit_agent_conns, the oldest of them
// make room. Meanwhile a hub online stays online and served, and another
// hub connects; each limit is logged at most once a second.
func TestAgentPortFloodLeavesHubsServed(t *testing.T) {
	const total, perAddr = 24, 8
	tr := startTestRelayWith(t, false, withMetrics(func(c *Config) {
		c.LimitAgentConns = total
		c.LimitAgentPreHelloPerAddress = perAddr
	}), "a", "b")
	start := time.Now()
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(tr.hubs.name("a")) })

	addr := tr.AgentAddr().String()
	var held []net.Conn
	for range perAddr {
		c := dialFrom(t, "127.0.0.2", addr)
		c.Write([]byte{0x00}) // half a frame header, and nothing more
		held = append(held, c)
	}
	poll.Until(t, 10*time.Second, "the relay to count 8 connections before Hello", func() bool { return tr.agentGate.inUse() == 1+perAddr })
	if !refusedFrom(t, "127.0.0.2", addr) {
		t.Fatal("a 9th connection from one address before Hello was not closed at once")
	}
	for i := range 3 * perAddr { // from three more addresses: past limit_agent_conns
		held = append(held, dialFrom(t, fmt.Sprintf("127.0.0.%d", 3+i/perAddr), addr))
	}
	poll.Until(t, 10*time.Second, "the oldest idle connections to be closed for room", func() bool {
		return tr.agentGate.evicted.Load() >= uint64(1+4*perAddr-total)
	})
	if !closedByRelay(held[0]) {
		t.Error("the oldest idle connection was not the one closed for room")
	}
	m := scrape(t, tr.Server)
	if n := m["hubrelay_limit_refusals_total{limit=limit_agent_prehello_per_address}"]; n != 1 {
		t.Errorf("metrics: %v refusals before Hello per address, want 1", n)
	}
	if n := m["hubrelay_limit_evictions_total{listener=agent}"]; n < 1+4*perAddr-total {
		t.Errorf("metrics: %v agent connections closed for room, want at least %d", n, 1+4*perAddr-total)
	}
	// A victim's socket is closed at once; its slot goes back when its
	// handler has ended, a moment later (connGate.admit): the count
	// settles within the limit.
	poll.Until(t, 10*time.Second, fmt.Sprintf("at most %d agent connections counted", total), func() bool {
		return tr.agentGate.inUse() <= total
	})

	startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", [32]byte{})
	poll.Until(t, 10*time.Second, "hub b online during the flood", func() bool { return tr.hubs.online(tr.hubs.name("b")) })
	for _, h := range []string{"a", "b"} {
		if code, err := tr.get(h); code != 200 {
			t.Errorf("hub %s during the flood: %d %v", h, code, err)
		}
	}
	secs := int(time.Since(start)/time.Second) + 1
	if n := tr.logged("listener=agent ", "limit=limit_agent_prehello_per_address "); n < 1 || n > secs {
		t.Errorf("%d log lines about connections before Hello per address in %d s; want 1 to %d", n, secs, secs)
	}
	if n := tr.logged("listener=agent ", "limit=limit_agent_conns "); n < 1 || n > secs {
		t.Errorf("%d log lines about limit_agent_conns in %d s; want 1 to %d", n, secs, secs)
	}
}

// TestPublicFloodOfHalfSentHeads: connections that send half a request head
// and wait, from many addresses, fill limit_public_conns; the oldest of them
// make room for users, who keep being served, and the limit is logged at
// most once a second.
func TestPublicFloodOfHalfSentHeads(t *testing.T) {
	const total = 20
	tr := twoHubs(t, func(c *Config) { c.LimitPublicConns = total })
	start := time.Now()
	var held []net.Conn
	for i := range 2 * total {
		c := tr.dialPublic(t, 443, sni("a.localhost"), fmt.Sprintf("127.0.0.%d", 2+i%5))
		io.WriteString(c, "GET /who HTTP/1.1\r\nHost: a.local")
		held = append(held, c)
	}
	poll.Until(t, 10*time.Second, "the oldest half-sent heads to be closed for room", func() bool {
		return tr.publicGate.evicted.Load() >= total
	})
	if !closedByRelay(held[0]) {
		t.Error("the oldest half-sent head was not closed for room")
	}
	for _, h := range []string{"a", "b"} {
		c := tr.dialPublic(t, 443, sni(h+".localhost"), "127.0.0.1")
		if got := exchange(t, c, "GET /who HTTP/1.1\r\nHost: "+h+".localhost\r\n"+tr.auth(h)+"\r\n", 1)[0]; got.code != 200 || got.body != who(h) {
			t.Errorf("a user of hub %s during the flood: %d %q %v", h, got.code, got.body, got.err)
		}
	}
	poll.Until(t, 10*time.Second, fmt.Sprintf("at most %d public connections counted", total), func() bool {
		return tr.publicGate.inUse() <= total // a victim's slot comes back as its handler ends
	})
	secs := int(time.Since(start)/time.Second) + 1
	if n := tr.logged("listener=public ", "limit=limit_public_conns "); n < 1 || n > secs {
		t.Errorf("%d log lines about limit_public_conns in %d s; want 1 to %d", n, secs, secs)
	}
}

// TestSessionsPerHub: a hub with limit_sessions_per_hub requests in flight
// answers more with a clear 503; another hub is served meanwhile, and the
// hub again once its sessions end.
func TestSessionsPerHub(t *testing.T) {
	const max = 3
	tr := twoHubs(t, withMetrics(func(c *Config) { c.LimitSessionsPerHub = max }))
	var streams []net.Conn
	for i := range max {
		c := tr.dialPublic(t, 443, sni("a.localhost"), fmt.Sprintf("127.0.0.%d", 2+i))
		io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n")
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil { // the stream's first bytes: in flight
			t.Fatal(err)
		}
		streams = append(streams, c)
	}
	ask := func(h string) answer {
		c := tr.dialPublic(t, 443, sni(h+".localhost"), "127.0.0.1")
		return exchange(t, c, "GET /who HTTP/1.1\r\nHost: "+h+".localhost\r\n"+tr.auth(h)+"\r\n", 1)[0]
	}
	for range 3 {
		if got := ask("a"); got.code != 503 || !strings.Contains(got.body, "too many open connections") {
			t.Fatalf("a request to a hub at its session limit: %d %.200q %v; want 503 saying why", got.code, got.body, got.err)
		}
	}
	if got := ask("b"); got.code != 200 || got.body != who("b") {
		t.Errorf("another hub meanwhile: %d %q %v", got.code, got.body, got.err)
	}
	if n := tr.logged(" hub=a ", "limit=limit_sessions_per_hub max=3"); n != 1 {
		t.Errorf("%d log lines about hub a's sessions, want 1", n)
	}
	wantMetrics(t, tr.Server, map[string]float64{"hubrelay_limit_refusals_total{limit=limit_sessions_per_hub}": 3})
	for _, c := range streams {
		c.Close()
	}
	poll.Until(t, 10*time.Second, "hub a to serve again once its sessions ended", func() bool { return ask("a").code == 200 })
}

// errListener fails every Accept with EMFILE, as a listener of a process
// out of file descriptors does, and counts the calls.
type errListener struct {
	net.Listener
	mu    sync.Mutex
	calls int
}

func (l *errListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

// TestAcceptErrorsBackOff: a listener whose accepts fail is retried after
// 5 ms doubling to 1 s, not in a spin, and logged at most once a second
// with a count.
func TestAcceptErrorsBackOff(t *testing.T) {
	s := &Server{closing: make(chan struct{})}
	var mu sync.Mutex
	var lines []string
	s.log = logger.ToSlog(func(f string, a ...any) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf(f, a...))
		mu.Unlock()
	})
	ln := &errListener{}
	s.wg.Add(1)
	start := time.Now()
	go s.acceptLoop(ln, "the agent port", newConnGate("agent", "limit_agent_conns", 1, 1, s.log), func(_ net.Conn, _ *gateSlot, done func()) { done() })
	poll.Until(t, 10*time.Second, "the accept loop to back off past 1 s", func() bool {
		ln.mu.Lock()
		defer ln.mu.Unlock()
		return ln.calls >= 10
	})
	close(s.closing)
	s.wg.Wait()
	took := time.Since(start)
	// 5+10+…+640 ms is 1.3 s for 9 waits: 10 calls cannot come sooner.
	if took < 1270*time.Millisecond {
		t.Errorf("10 failing accepts in %v: not backing off", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) > int(took/time.Second)+1 || !strings.Contains(lines[0], "too many open files") || !strings.Contains(lines[0], "retry_in=") {
		t.Errorf("log after %v:\n%s", took, strings.Join(lines, "\n"))
	}
}

// TestUDPHubInboundWindow: a UDP hub's data packets count into its window
// inside WireGuard as a TCP hub's do (maxInboundPerUDPHub): during a download
// from the hub the window fills, never beyond its bound, and the download
// completes whole.
func TestUDPHubInboundWindow(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	const size = 8 << 20
	startUDPAgentServing(t, tr, tr.keys["a"], "100.96.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for range size / len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	h := tr.hubs.name("a")
	poll.Until(t, 10*time.Second, "hub a online over UDP", func() bool { return tr.hubs.online(h) })

	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if n := int64(h.inbound.Len()); n > peak.Load() {
				peak.Store(n)
			}
			runtime.Gosched()
		}
	}()
	c := tr.dialPublic(t, 443, sni("a.localhost"), "")
	c.SetDeadline(time.Now().Add(120 * time.Second))
	got := exchange(t, c, "GET /big HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n", 1)[0]
	close(done)
	if got.code != 200 || len(got.body) != size {
		t.Fatalf("download from a UDP hub: %d, %d bytes, %v; want 200 and %d bytes", got.code, len(got.body), got.err, size)
	}
	if p := peak.Load(); p == 0 || p > maxInboundPerUDPHub {
		t.Errorf("the UDP hub's packets inside WireGuard peaked at %d; want 1 to %d", p, maxInboundPerUDPHub)
	}
}

// TestDefaultConnLimits: the defaults leave the relay its own descriptors
// and split the rest between the public ports and the agent port.
func TestDefaultConnLimits(t *testing.T) {
	for _, tt := range []struct {
		nofile             uint64
		wantPub, wantAgent int
	}{
		{20000, 7897, 11847},
		{1024, 307, 461},
		{100, 8, 12},        // tiny: 20 usable at least
		{0, 419328, 628992}, // unknown: 1<<20
	} {
		pub, ag := defaultConnLimits(tt.nofile)
		if pub != tt.wantPub || ag != tt.wantAgent {
			t.Errorf("defaultConnLimits(%d) = %d, %d; want %d, %d", tt.nofile, pub, ag, tt.wantPub, tt.wantAgent)
		}
	}
}
