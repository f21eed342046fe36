package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// newcomer is a hub that joins the relay with a code: its own folder with
// an agent config that names no relay.
type newcomer struct {
	name, dir, conf, ui string
	agent               *proc
}

func (s *hubSetup) newcomer(name, proxy string) *newcomer {
	s.t.Helper()
	dir := filepath.Join(s.dir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	a, err := testbed.NewAgent(&ports, filepath.Join(dir, "hub.toml"), s.bed, testbed.Hub{Name: name}, testbed.AgentSpec{
		Proxy:      proxy,
		Targets:    testbed.SimTargets(func(svc string) string { return s.sim[svc] }),
		Unenrolled: true,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return &newcomer{name: name, dir: dir, conf: a.Conf, ui: a.UI}
}

// enroll runs `hubtunnel enroll CODE --config …` and returns its output and
// whether it succeeded.
func (n *newcomer) enroll(code string) (string, error) {
	return runErr(bin.hubtunnel, "enroll", code, "--config", n.conf)
}

func (n *newcomer) start(s *hubSetup) {
	n.agent = start(s.t, n.dir, "agent-"+n.name, bin.hubtunnel, "run", "--config", n.conf)
}

// waitConnected waits until the agent says it is connected as this hub.
func (n *newcomer) waitConnected(t *testing.T) {
	t.Helper()
	poll.Until(t, 20*time.Second, n.name+"'s agent to report state \"connected\"", func() bool {
		if !n.agent.alive() {
			t.Fatalf("agent %s exited: %v", n.name, n.agent.err)
		}
		st, err := (&hubSetup{uiAddr: n.ui}).status()
		return err == nil && st.State == "connected" && st.Name == n.name
	})
}

// files is what is in the newcomer's folder, name → content, logs aside.
func (n *newcomer) files(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(n.dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			m[e.Name()] = readFileString(filepath.Join(n.dir, e.Name()))
		}
	}
	return m
}

// mustGetWebUIOf fails the test unless hub's WebUI page loads through the
// relay with the hub's token.
func (s *hubSetup) mustGetWebUIOf(hub string) {
	s.t.Helper()
	code, body, err := s.get(s.url("http", hub, 80, "/"))
	if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
		s.t.Fatalf("GET %s's WebUI through the relay: status %d, err %v, body %.200q", hub, code, err, body)
	}
}

// keepFetching fetches hub demo's WebUI through the relay, one request
// every 20 ms, until the returned function is called; that function fails
// the test if any request failed, and returns how many succeeded.
func (s *hubSetup) keepFetching() func() int {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			code, body, err := s.get(s.url("http", "demo", 80, "/"))
			if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d, err %v", code, err))
				continue
			}
			ok.Add(1)
		}
	}()
	return func() int {
		close(done)
		<-stopped
		if n := failed.Load(); n > 0 {
			s.t.Errorf("hub demo was interrupted: %d of %d requests failed, the first with %v", n, n+ok.Load(), firstErr.Load())
		}
		return int(ok.Load())
	}
}

// TestEnroll: hubs join a running relay with codes, with the real
// binaries, while hub demo, already connected, keeps serving requests. A
// hub enrolled without a running agent and one whose running agent is
// asked through its API both become reachable, and stay so after an agent
// and a relay restart. Used, expired, mistyped and foreign codes and a
// relay that does not answer are refused in words a hub owner understands,
// and leave the hub's folder as it was.
func TestEnroll(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)
	s.mustGetWebUI()
	demoServed := s.keepFetching()
	now := time.Now()

	// Enrolled with no agent running: the agent connects when it starts.
	attic := s.newcomer("attic", "")
	code, err := s.bed.MakeCode("attic", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out, err := attic.enroll(code)
	if err != nil || !strings.Contains(out, "enrolled as hub attic at relay "+s.bed.AgentAddr()) || !strings.Contains(out, "start the agent") {
		t.Fatalf("hubtunnel enroll: %v\n%s", err, out)
	}
	if strings.Contains(s.relay.logText(), code) || strings.Contains(s.relay.logText(), strings.SplitN(code, "/", 2)[1]) {
		t.Error("the relay logged the code")
	}
	attic.start(s)
	attic.waitConnected(t)
	if err := s.bed.AddToken("attic"); err != nil {
		t.Fatal(err)
	}
	s.mustGetWebUIOf("attic")

	// The same code again, for another hub: refused, its folder untouched.
	again := s.newcomer("again", "")
	before := again.files(t)
	out, err = again.enroll(code)
	if err == nil || !strings.Contains(out, "this code has been used already") {
		t.Errorf("a used code: %v\n%s", err, out)
	}
	if after := again.files(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused enrollment changed the hub's folder: %v, was %v", after, before)
	}

	// Expired; made by another relay (its key, its store) for this relay's
	// address; a mistyped code (no connection made); a relay that does not
	// answer.
	expired, err := s.bed.MakeCode("late", now.Add(-48*time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := testbed.NewRelay(&ports, t.TempDir(), "other", testbed.RelayOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other.AgentPort = s.bed.AgentPort
	foreign, err := other.MakeCode("stranger", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := watch.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	var secret [enroll.SecretLen]byte
	rand.Read(secret[:])
	watched, _ := enroll.New(watch.Addr().String(), secret)
	slash := strings.IndexByte(watched.String(), '/')
	garbled := watched.String()[:slash+1] + "U" + watched.String()[slash+2:] // U is none of the code's letters
	closed, _ := enroll.New(fmt.Sprintf("127.0.0.1:%d", freePort(t)), secret)
	for _, c := range []struct{ name, code, want string }{
		{"expired", expired, "this code has expired"},
		{"foreign", foreign, "does not know this code"},
		{"garbled", garbled, "the code has a typo"},
		{"closed port", closed.String(), "cannot reach the relay at " + closed.Addr() + ": the relay is not accepting connections"},
	} {
		out, err := again.enroll(c.code)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s code: %v\n%s\nwant %q", c.name, err, out, c.want)
		}
		if after := again.files(t); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s code changed the hub's folder: %v", c.name, after)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("a mistyped code made %d connections", n)
	}

	// A running agent that waits for a code enrolls through its API and
	// restarts itself (the same process) to connect.
	garage := s.newcomer("garage", "")
	garage.start(s)
	poll.Until(t, 10*time.Second, "garage's agent to report state \"unenrolled\"", func() bool {
		st, err := (&hubSetup{uiAddr: garage.ui}).status()
		return err == nil && st.State == "unenrolled"
	})
	code, err = s.bed.MakeCode("garage", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out, err = garage.enroll(strings.ToLower(code))
	if err != nil || !strings.Contains(out, "connected: the hub is reachable at ") {
		t.Fatalf("hubtunnel enroll with the agent running: %v\n%s", err, out)
	}
	if !garage.agent.alive() {
		t.Fatal("the agent exited instead of restarting")
	}
	if err := s.bed.AddToken("garage"); err != nil {
		t.Fatal(err)
	}
	s.mustGetWebUIOf("garage")
	if n := demoServed(); n < 10 {
		t.Errorf("hub demo served only %d requests meanwhile", n)
	}

	// An agent restart, then a relay restart: both hubs come back.
	attic.agent.stop(t)
	attic.start(s)
	attic.waitConnected(t)
	s.mustGetWebUIOf("attic")
	s.relay.stop(t)
	s.relay = s.startRelay("relay-restarted")
	for _, hub := range []string{"attic", "garage", "demo"} {
		s.waitWebUIOf(hub)
	}
}

// waitWebUIOf waits until hub's WebUI page loads through the relay, as
// after a relay restart.
func (s *hubSetup) waitWebUIOf(hub string) {
	s.t.Helper()
	poll.Until(s.t, 15*time.Second, hub+"'s WebUI to load through the relay", func() bool {
		code, body, err := s.get(s.url("http", hub, 80, "/"))
		return err == nil && code == 200 && strings.Contains(body, "HomeMatic WebUI")
	})
}

// TestEnrollThroughProxy: a hub that reaches the internet only through an
// HTTP CONNECT proxy (tinyproxy) enrolls through it, with a code from
// `hubrelay hub add`, and connects through it.
func TestEnrollThroughProxy(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	proxyAddr, logFile := startTinyproxy(t, s.agentPort)

	// The operator makes this one: the code is the line after the first.
	shed := s.newcomer("shed", "http://"+proxyAddr)
	out := run(t, bin.hubrelay, "hub", "add", "shed", "--owner", s.bed.Owner, "--config", s.relayConf)
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[2], "    ") {
		t.Fatalf("hubrelay hub add printed:\n%s", out)
	}
	code := strings.TrimSpace(lines[2])
	out, err := shed.enroll(code)
	if err != nil || !strings.Contains(out, "enrolled as hub shed") {
		t.Fatalf("hubtunnel enroll through the proxy: %v\n%s", err, out)
	}
	want := fmt.Sprintf("CONNECT 127.0.0.1:%d", s.agentPort)
	poll.Until(t, 5*time.Second, "tinyproxy's log to show "+want, func() bool {
		return strings.Count(readFileString(logFile), want) == 1
	})
	shed.start(s)
	shed.waitConnected(t)
	if err := s.bed.AddToken("shed"); err != nil {
		t.Fatal(err)
	}
	s.mustGetWebUIOf("shed")
	if n := strings.Count(readFileString(logFile), want); n != 2 {
		t.Errorf("tinyproxy saw %d CONNECTs to the relay, want 2 (the enrollment, the tunnel)", n)
	}
}

// TestRenamedHubLearnsItsName: after `hubrelay hub rename`, the enrolled
// hub is served under its new name at once, and its agent shows the new
// name and URL (and keeps them in enrollment.json for its next start).
func TestRenamedHubLearnsItsName(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	cellar := s.newcomer("cellar", "")
	code, err := s.bed.MakeCode("cellar", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cellar.enroll(code); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	cellar.start(s)
	cellar.waitConnected(t)

	out := run(t, bin.hubrelay, "hub", "rename", "cellar", "vault", "--config", s.relayConf)
	if !strings.Contains(out, "hub cellar is called vault now") {
		t.Fatalf("hub rename: %s", out)
	}
	poll.Until(t, 20*time.Second, "the agent to show its new name", func() bool {
		st, err := (&hubSetup{uiAddr: cellar.ui}).status()
		return err == nil && st.State == "connected" && st.Name == "vault" && strings.HasPrefix(st.URL, "https://vault.")
	})
	if e := readFileString(filepath.Join(cellar.dir, "enrollment.json")); !strings.Contains(e, `"hub": "vault"`) {
		t.Errorf("enrollment.json keeps the old name:\n%s", e)
	}
	if err := s.bed.AddToken("vault"); err != nil {
		t.Fatal(err)
	}
	s.mustGetWebUIOf("vault")
}
