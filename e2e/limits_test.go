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
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// startAgentWithKeys is startAgent (tcp, no proxy) with top-level keys
// added to the agent's config.
func (s *hubSetup) startAgentWithKeys(keys string) {
	s.t.Helper()
	a, err := testbed.NewAgent(&ports, filepath.Join(s.dir, "hub.toml"), s.bed, s.hub, testbed.AgentSpec{
		Targets: testbed.SimTargets(func(svc string) string { return s.sim[svc] }),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	conf := readFileString(a.Conf)
	conf = strings.Replace(conf, "ui_listen = ", keys+"\nui_listen = ", 1)
	writeFile(s.t, a.Conf, conf)
	s.uiAddr = a.UI
	s.agent = start(s.t, s.dir, "agent", a.Args(bins)...)
}

// heldSession is a user's kept-alive connection to the hub's XML-RPC port
// 2001 through the relay's plain port, after one call: the relay keeps its
// own connection to the hub open with it, and the agent its session.
type heldSession struct {
	c  net.Conn
	br *bufio.Reader
}

const getValueCall = `<?xml version="1.0"?><methodCall><methodName>getValue</methodName><params>` +
	`<param><value>NEQ0000002:1</value></param><param><value>STATE</value></param></params></methodCall>`

func (s *hubSetup) holdSession(t *testing.T) (*heldSession, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", 2001+s.offset), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &heldSession{c: c, br: bufio.NewReader(c)}
	code, err := h.get(s)
	if err != nil {
		t.Fatalf("a held session: %v", err)
	}
	return h, code
}

// get makes an XML-RPC call on the held connection and returns the status.
func (h *heldSession) get(s *hubSetup) (int, error) {
	h.c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(h.c, "POST / HTTP/1.1\r\nHost: demo.localhost:%d\r\nAuthorization: %s\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s",
		2001+s.offset, s.bed.AuthHeader("demo"), len(getValueCall), getValueCall)
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// TestAgentMaxSessions: an agent with max_sessions sessions in flight
// resets the next tunnel connection at once; the user gets an error page
// from the relay, the status counts it, the log says it once a second at
// most, and once a session ends the hub is served again.
func TestAgentMaxSessions(t *testing.T) {
	const max = 8
	s := newHub(t, setupOpts{})
	s.startAgentWithKeys("max_sessions = " + strconv.Itoa(max))
	s.waitConnected(20 * time.Second)
	start := time.Now()
	var held []*heldSession
	for range max {
		h, code := s.holdSession(t)
		if code != 200 {
			t.Fatalf("session %d of %d: status %d", len(held)+1, max, code)
		}
		held = append(held, h)
	}
	poll.Until(t, 10*time.Second, "the agent to hold 8 sessions", func() bool {
		st, err := s.status()
		return err == nil && st.SessionsActive == max
	})
	for range 3 {
		if _, code := s.holdSession(t); code != http.StatusBadGateway {
			t.Fatalf("a session beyond max_sessions: status %d, want the relay's 502", code)
		}
	}
	st, err := s.status()
	if err != nil || st.SessionsRefused < 3 {
		t.Fatalf("status after 3 refused sessions: sessions_refused %d, %v", st.SessionsRefused, err)
	}
	secs := int(time.Since(start)/time.Second) + 1
	if n := strings.Count(s.agent.logText(), "(max_sessions): reset a new one"); n < 1 || n > secs {
		t.Errorf("%d log lines about max_sessions in %d s; want 1 to %d", n, secs, secs)
	}
	held[0].c.Close()
	poll.Until(t, 10*time.Second, "a new session once one ended", func() bool {
		_, code := s.holdSession(t)
		return code == 200
	})
}

// TestAgentHoldsManySessions: 1,500 sessions held open at once through the
// relay (the budget's case) all work within the default max_sessions. The
// agent's memory is logged (35 MB measured, 12 KiB a session; 60 MB with
// two goroutines parked in Read per session, 64.5 MB with 32 KiB buffers on
// those reads); the budget (48 MB) is make bench's.
func TestAgentHoldsManySessions(t *testing.T) {
	const n = 1500
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(20 * time.Second)
	before := vmRSS(t, s.agent.cmd.Process.Pid)
	held := make([]*heldSession, n)
	for i := range n {
		h, code := s.holdSession(t)
		if code != 200 {
			t.Fatalf("session %d: status %d", i+1, code)
		}
		held[i] = h
	}
	// The relay drops a connection to a hub after 10 s idle: calls on
	// every held connection, 50 at a time, keep all of them in use.
	poll.Until(t, 60*time.Second, "the agent to hold 1,500 sessions", func() bool {
		sem := make(chan struct{}, 50)
		var wg sync.WaitGroup
		for _, h := range held {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if code, err := h.get(s); code != 200 {
					t.Errorf("a call on a held session: status %d, %v", code, err)
				}
			}()
		}
		wg.Wait()
		st, err := s.status()
		return err == nil && st.SessionsActive >= n
	})
	after := vmRSS(t, s.agent.cmd.Process.Pid)
	t.Logf("agent RSS: %.1f MB idle, %.1f MB with %d sessions held (%.1f KiB each)", float64(before)/1e6, float64(after)/1e6, n, float64(after-before)/1024/n)
	if st, err := s.status(); err != nil || st.SessionsRefused != 0 {
		t.Errorf("sessions refused with %d held: %d, %v; want none", n, st.SessionsRefused, err)
	}
}

// vmRSS is the process's resident memory in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestRelayOutOfFileDescriptors: a relay started with ulimit -n 96 and
// limits set above it (so that they do not stop the flood first) runs out
// of descriptors under a flood of idle connections. Its accepts back off
// and are logged at most once a second with a count; the hub stays
// connected, and once the flood ends users are served again.
func TestRelayOutOfFileDescriptors(t *testing.T) {
	s := newHub(t, setupOpts{})
	s.relay.stop(t)
	writeFile(t, s.relayConf, strings.Replace(readFileString(s.relayConf), "plaintext_ports = true\n",
		"plaintext_ports = true\nlimit_public_conns = 10000\n", 1))
	args := strings.Join(s.bed.Args(bins), " ")
	s.relay = start(t, s.dir, "relay-ulimit", "sh", "-c", "ulimit -n 96 && exec "+args)
	poll.Until(t, 10*time.Second, "the relay to listen", func() bool {
		if !s.relay.alive() {
			t.Fatalf("relay exited: %v\n%s", s.relay.err, s.relay.logText())
		}
		return strings.Contains(s.relay.logText(), testbed.RelayReady)
	})
	s.startAgent(agentOpts{})
	s.waitConnected(20 * time.Second)
	s.mustGetWebUI()

	start := time.Now()
	var flood []net.Conn
	for range 120 { // more than the relay's 96 descriptors
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", 80+s.offset), 5*time.Second)
		if err != nil {
			break // the kernel's accept queue is full too
		}
		flood = append(flood, c)
	}
	poll.Until(t, 10*time.Second, "the relay to log running out of descriptors", func() bool {
		return strings.Contains(s.relay.logText(), "too many open files")
	})
	// The second line comes a second after the first at the earliest, and
	// counts the errors in between: a handful with the backoff (5 ms
	// doubling), thousands from a loop that spins.
	var second string
	poll.Until(t, 20*time.Second, "a second log line about accept errors", func() bool {
		var lines []string
		for _, l := range strings.Split(s.relay.logText(), "\n") {
			if strings.Contains(l, "too many open files") {
				lines = append(lines, l)
			}
		}
		if len(lines) >= 2 {
			second = lines[1]
		}
		return second != ""
	})
	var n int
	if i := strings.Index(second, " errors="); i < 0 {
		t.Fatalf("second line: %q; want a count of errors", second)
	} else if fmt.Sscanf(second[i+len(" errors="):], "%d", &n); n < 1 || n > 20 {
		t.Errorf("accept errors within about a second: %d (%q); want a handful, backing off", n, second)
	}
	for _, c := range flood {
		c.Close()
	}
	poll.Until(t, 20*time.Second, "users to be served once the flood ended", func() bool {
		code, _, err := s.get(s.url("http", "demo", 80, "/"))
		return err == nil && code == 200
	})
	secs := int(time.Since(start)/time.Second) + 1
	if n := strings.Count(s.relay.logText(), "too many open files"); n > secs {
		t.Errorf("%d log lines about accept errors in %d s; want at most one a second", n, secs)
	}
	if st, err := s.status(); err != nil || st.State != "connected" {
		t.Errorf("the hub during the flood: %+v, %v; want it connected", st.State, err)
	}
}
