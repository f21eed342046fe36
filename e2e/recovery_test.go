package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestRelayRestart kills the relay with SIGKILL, starts it again with the
// same config and key, and checks that the running agent comes back by
// itself and the WebUI loads again.
func TestRelayRestart(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	first := s.waitConnected(15 * time.Second)
	s.mustGetWebUI()
	agentPID := s.agent.cmd.Process.Pid

	s.relay.kill()
	var st status
	poll.Until(t, 15*time.Second, "the agent to notice the relay is gone (state \"connecting\")", func() bool {
		var err error
		st, err = s.status()
		return err == nil && st.State == "connecting"
	})
	if st.LastError == "" {
		t.Errorf("agent status while the relay is down has no last_error to tell the user why")
	}
	t.Logf("agent while the relay is down: state %q, last_error %q", st.State, st.LastError)

	restarted := time.Now()
	s.relay = s.startRelay("relay-2")
	var took time.Duration
	poll.Until(t, 30*time.Second, "the WebUI to load through the restarted relay", func() bool {
		code, body, err := s.get(s.url("http", "demo", 80, "/"))
		took = time.Since(restarted)
		return err == nil && code == 200 && strings.Contains(body, "HomeMatic WebUI")
	})
	t.Logf("relay restart to first successful GET: %v", took.Round(time.Millisecond))

	s.waitSessionsLogged(1) // before cleanup stops anything: see TestRelayStopsWithSessionToVanishedHub
	st = s.waitConnected(10 * time.Second)
	if !s.agent.alive() || s.agent.cmd.Process.Pid != agentPID {
		t.Errorf("the agent process did not survive the relay restart")
	}
	if !st.ConnectedSince.After(first.ConnectedSince) {
		t.Errorf("connected_since %v did not move past the first connection's %v", st.ConnectedSince, first.ConnectedSince)
	}
}

// TestRelayGracefulRestart stops the relay with SIGTERM, as systemd does
// on a restart, while the agent is connected: the relay tells the agent it
// is restarting (the agent does not just find its connection gone), and
// the agent is back through the new relay by itself.
func TestRelayGracefulRestart(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)
	s.mustGetWebUI()

	s.relay.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.relay.done:
	case <-time.After(10 * time.Second):
		t.Fatal("relay still running 10 s after SIGTERM")
	}
	if !strings.Contains(s.relay.logText(), `msg="shutting down: telling the agents to come back" agents=1 `) {
		t.Errorf("the relay's log does not say it told the agent to come back:\n%s", s.relay.logText())
	}
	poll.Until(t, 5*time.Second, "the agent to log that the relay is restarting", func() bool {
		return strings.Contains(s.agent.logText(), "connection to relay lost: relay is restarting")
	})

	s.relay = s.startRelay("relay-2")
	poll.Until(t, 30*time.Second, "the WebUI to load through the restarted relay", func() bool {
		code, body, err := s.get(s.url("http", "demo", 80, "/"))
		return err == nil && code == 200 && strings.Contains(body, "HomeMatic WebUI")
	})
	s.waitSessionsLogged(1) // before cleanup stops anything: see TestRelayStopsWithSessionToVanishedHub
}

// TestRequestWaitsThroughRelayRestart: a user's request that reaches a
// relay which has just started, before the hub's agent is back, waits for
// the agent and is served, rather than answered "Hub offline": after a
// graceful stop (the store says when the agent left) and after a crash
// (the store still says it is online). The agent is held (SIGSTOP) so
// that the request surely comes first. A hub that was not online is
// answered at once. A UDP hub is taken up by the new relay from the
// sessions the old one left (relay resumeUDP): the request adds its peer
// at once and WireGuard handshakes from the relay's side, which the held
// agent answers once it goes on.
func TestRequestWaitsThroughRelayRestart(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			testRequestWaitsThroughRelayRestart(t, transport)
		})
	}
}

func testRequestWaitsThroughRelayRestart(t *testing.T, transport string) {
	s := newHub(t, setupOpts{offlineHubs: 1, udp: transport == "udp"})
	metrics := ""
	if transport == "udp" {
		metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		s.restartRelayWith("relay-metrics", fmt.Sprintf("metrics_listen = %q\n", metrics), "")
	}
	s.startAgent(agentOpts{transport: transport})
	// Before the agent's own cleanup stops it: a held agent would not.
	t.Cleanup(func() { s.agent.cmd.Process.Signal(syscall.SIGCONT) })
	s.waitConnected(15 * time.Second)
	s.mustGetWebUI()
	if transport == "udp" {
		// The relay records a UDP hub as online 5 s after its start,
		// then every 30 s: a relay that crashed before left the store
		// nothing to say the hub was online.
		poll.Until(t, 45*time.Second, "the relay to record the UDP hub online", func() bool {
			out, err := runErr(bins.Hubrelay, "hub", "list", "--config", s.relayConf)
			return err == nil && strings.Contains(out, "online since") && strings.Contains(out, "udp")
		})
	}
	type result struct {
		code int
		body string
		err  error
	}
	// The crash first, while the relay is the one that recorded the hub
	// online above; then a crash of the relay that just started: it read
	// and removed the sessions file its predecessor left, and the next
	// one takes a UDP hub up only if this one kept the hub's sessions
	// again (here, while the agent is held, no keepalive would tell the
	// next relay of the hub).
	sessions := filepath.Join(filepath.Dir(s.relayConf), "udp-sessions.json")
	for i, how := range []string{"SIGKILL", "SIGKILL", "SIGTERM"} {
		if i == 1 && transport == "udp" {
			poll.Until(t, 2*time.Second, "the new relay to keep the UDP hub's session", func() bool {
				_, err := os.Stat(sessions)
				return err == nil
			})
		}
		s.agent.cmd.Process.Signal(syscall.SIGSTOP)
		if how == "SIGKILL" {
			s.relay.kill()
		} else {
			s.relay.stop(t)
		}
		s.relay = s.startRelay(fmt.Sprintf("relay-%d", i+2))

		start := time.Now()
		code, _, err := s.get(s.url("http", "offline1", 80, "/"))
		if err != nil || code != http.StatusNotFound {
			t.Errorf("after %s: GET a hub that was offline: %d %v, want 404", how, code, err)
		}
		if took := time.Since(start); took > 2*time.Second || strings.Contains(s.relay.logText(), "a request waits\" hub=offline1 ") {
			t.Errorf("after %s: the request for a hub that was offline waited (%v)", how, took)
		}

		got := make(chan result, 1)
		go func() {
			code, body, err := s.get(s.url("http", "demo", 80, "/"))
			got <- result{code, body, err}
		}()
		if transport == "udp" {
			poll.Until(t, 10*time.Second, "the request to add demo's WireGuard peer", func() bool {
				return scrape(t, metrics)["hubrelay_wireguard_peers"] == 1
			})
		} else {
			poll.Until(t, 10*time.Second, "the relay to hold the request for demo", func() bool {
				return strings.Contains(s.relay.logText(), `msg="hub is reconnecting; a request waits" hub=demo `)
			})
		}
		s.agent.cmd.Process.Signal(syscall.SIGCONT)
		back := time.Now()
		r := <-got
		if r.err != nil || r.code != 200 || !strings.Contains(r.body, "HomeMatic WebUI") {
			t.Fatalf("after %s: GET the WebUI while the agent came back: status %d, err %v, body %.200q", how, r.code, r.err, r.body)
		}
		t.Logf("after %s: the request was served %v after the agent went on", how, time.Since(back).Round(time.Millisecond))
	}
}

// TestConnectionCut cuts the agent's TCP connection underneath it (a
// forwarder between agent and relay closes both sides but keeps listening)
// and checks that the agent reconnects and the WebUI loads again, with
// nothing restarted.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	fwd := newForwarder(t, "127.0.0.1:"+strconv.Itoa(s.agentPort))
	s.startAgent(agentOpts{relay: fwd.addr()})
	first := s.waitConnected(15 * time.Second)
	s.mustGetWebUI()
	if n := fwd.accepted(); n != 1 {
		t.Fatalf("forwarder accepted %d connections before the cut; want 1", n)
	}
	// Cut only once the relay has logged the session as over: this test is
	// about the agent's connection, not about a session cut in the middle.
	s.waitSessionsLogged(1)

	fwd.cut()
	sawConnecting := false
	var st status
	poll.Until(t, 30*time.Second, "the agent to reconnect through the forwarder", func() bool {
		var err error
		st, err = s.status()
		if err != nil {
			return false
		}
		if st.State == "connecting" {
			sawConnecting = true
		}
		return st.State == "connected" && st.ConnectedSince.After(first.ConnectedSince)
	})
	if n := fwd.accepted(); n < 2 {
		t.Errorf("forwarder accepted %d connections in all; want a second one after the cut", n)
	}
	t.Logf("after the cut: state \"connecting\" seen: %v; forwarder connections: %d", sawConnecting, fwd.accepted())
	s.mustGetWebUI()
	s.waitSessionsLogged(2)
	if !s.agent.alive() || !s.relay.alive() {
		t.Errorf("agent alive %v, relay alive %v; both should have stayed up", s.agent.alive(), s.relay.alive())
	}
}

// forwarder is a TCP forwarder on loopback whose connections the test can
// cut while its listener stays open.
type forwarder struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	count int
	wg    sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, target: target}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.cut()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", f.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.count++
		f.conns = append(f.conns, c, u)
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(c, u)
		go f.pipe(u, c)
	}
}

func (f *forwarder) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes every current connection, on both sides.
func (f *forwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// accepted is how many connections the forwarder has carried.
func (f *forwarder) accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// TestRelayStopsWithSessionToVanishedHub stops the relay (SIGTERM) while it
// still holds a user session whose hub vanished: the user has closed the
// connection, the hub was killed before its side of the session ended. The
// relay must still stop promptly.
//
// The relay's Close waits for every session; it must close the tunnel side
// of each too, or this one would wait for a FIN from a hub that is gone.
func TestRelayStopsWithSessionToVanishedHub(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(80+s.offset))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: demo.localhost:%d\r\nAuthorization: %s\r\n\r\n", 80+s.offset, s.bed.AuthHeader("demo"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	s.agent.kill() // the hub vanishes; the keep-alive session is still open
	c.Close()      // then the user leaves

	began := time.Now()
	s.relay.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.relay.done:
		t.Logf("relay stopped %v after SIGTERM", time.Since(began).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("relay still running 10 s after SIGTERM, held by a session to a vanished hub")
		s.relay.cmd.Process.Signal(syscall.SIGQUIT) // goroutines to the log
		<-s.relay.done
	}
}

// TestUDPHubBackAfterRelayRestart: a UDP hub has no connection that ends
// with the relay, and an idle one sends only keepalives, which never start
// a handshake: before SessionUnknown it was unreachable for up to two
// minutes after a relay restart. After SIGTERM the old relay leaves its
// sessions in a file, and the new one takes the hub up from it: a request
// handshakes with the hub from the relay's side at once. Here each SIGKILL
// comes within the 0.1 s after a handshake in which a relay has not yet
// kept the sessions (TestRequestWaitsThroughRelayRestart kills one that
// has): the new relay answers the hub's next keepalive (every 25 s) with
// SessionUnknown. The bounds are far below the two minutes the hub would
// otherwise take.
func TestUDPHubBackAfterRelayRestart(t *testing.T) {
	t.Parallel()
	for _, kill := range []bool{false, true} {
		name := map[bool]string{false: "SIGTERM", true: "SIGKILL"}[kill]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newHub(t, setupOpts{udp: true})
			s.startAgent(agentOpts{transport: "udp"})
			s.waitConnected(15 * time.Second)
			s.mustGetWebUI()
			s.waitSessionsLogged(1)

			// Three in a row, as make bench does: each restart soon
			// after the hub came back.
			for i := range 3 {
				if kill {
					s.relay.kill()
				} else {
					s.relay.stop(t)
					if !strings.Contains(s.relay.logText(), "left the UDP hubs' sessions for the relay that follows") {
						t.Errorf("the stopping relay did not leave its UDP sessions:\n%s", s.relay.logText())
					}
				}
				restarted := time.Now()
				s.relay = s.startRelay(fmt.Sprintf("relay-%d", i+2))
				bound := 20 * time.Second
				if kill {
					bound = 45 * time.Second // the agent's keepalive (25 s), then a handshake
				}
				poll.Until(t, bound, "the WebUI to load through the restarted relay", func() bool {
					code, body, err := s.get(s.url("http", "demo", 80, "/"))
					return err == nil && code == 200 && strings.Contains(body, "HomeMatic WebUI")
				})
				t.Logf("relay %s, then start (%d): the UDP hub was back after %v", name, i+1, time.Since(restarted).Round(time.Millisecond))
			}
			if kill && !strings.Contains(s.agent.logText(), "the relay has no session for this hub") {
				t.Errorf("the agent's log does not say the relay asked it to handshake again")
			}
			if !kill && (!strings.Contains(s.relay.logText(), `msg="took up the UDP hubs of the relay before" sessions=`) ||
				!strings.Contains(s.relay.logText(), " hubs=1 asked_to_handshake=0")) {
				t.Errorf("the new relay did not take up the hub the old one left:\n%s", s.relay.logText())
			}
			s.waitSessionsLogged(1)
		})
	}
}
