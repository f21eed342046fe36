// Package e2e runs hubtunnel's real binaries — hubrelay, the hubtunnel agent
// and ccusim — as separate processes on loopback (and, for the WireGuard
// interop test, in a network namespace the test creates) and checks what a
// user would check: pages load, XML-RPC calls answer, the tunnel comes back.
//
// TestMain builds the binaries once. Every test makes its own folder, keys,
// configs and ports, and never sends traffic anywhere but loopback or its
// own namespace. Missing tools skip a test locally and fail it in CI (CI set).
package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/bench"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// bin holds the paths of the binaries TestMain built; bins, the same for
// testbed.
var (
	bin  struct{ hubtunnel, hubrelay, ccusim string }
	bins testbed.Bins
)

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hubtunnel-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, pkgs := range [][]string{{"./cmd/hubrelay", "./cmd/ccusim"}, {"./cmd/hubtunnel"}} {
		tags, err := bench.BuildTags("..", filepath.Base(pkgs[0]))
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		cmd := exec.Command("go", append([]string{"build", "-tags", tags, "-o", dir + string(filepath.Separator)}, pkgs...)...)
		cmd.Dir = ".." // the module root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
			return 1
		}
	}
	bin.hubtunnel = filepath.Join(dir, "hubtunnel")
	bin.hubrelay = filepath.Join(dir, "hubrelay")
	bin.ccusim = filepath.Join(dir, "ccusim")
	bins = testbed.Bins{Hubtunnel: bin.hubtunnel, Hubrelay: bin.hubrelay, Ccusim: bin.ccusim}
	return m.Run()
}

// need returns the path of a tool the test needs (the first of names found
// in PATH or as an absolute path). A missing tool skips the test, or fails
// it when CI is set: CI must not pass by skipping.
func need(t *testing.T, why string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	missing(t, "%s is not installed (needed %s); scripts/deps.sh installs it", names[0], why)
	return ""
}

// needRoot requires root, e.g. for network namespaces.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "not running as root (needed %s)", why)
	}
}

func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// ports hands out loopback ports to the tests of this run, which run in
// parallel, never the same one twice.
var ports loopback.Ports

// freePort returns a free TCP port on 127.0.0.1 that no other test of this
// run has been given.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// proc is a process a test started. Its stdout and stderr go to a log file
// that is printed when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, once done is closed
}

// start runs argv[0] with argv[1:] in dir, its output going to
// dir/name.log. Cleanup stops it (see stop) and prints the log if the test
// failed.
func start(t *testing.T, dir, name string, argv ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s log (%s) ---\n%s", name, strings.Join(argv, " "), p.logText())
		}
	})
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the process with SIGTERM, as a service manager would. One that
// has not exited 10 s later fails the test and gets SIGQUIT, so that a Go
// binary writes its goroutines to the log, then SIGKILL.
func (p *proc) stop(t *testing.T) {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	t.Errorf("%s did not exit within 10 s of SIGTERM; its goroutines are in its log", p.name)
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) logText() string { return readFileString(p.log) }

// run runs a short command and returns its combined output, failing the
// test if it fails.
func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := runErr(argv...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

func runErr(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// keypair writes a new private key (mode 0600) made by `hubtunnel keygen`
// to dir/name and returns the path and the public key from `hubtunnel pubkey`.
func keypair(t *testing.T, dir, name string) (path, pub string) {
	t.Helper()
	priv := run(t, bin.hubtunnel, "keygen")
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(priv), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.hubtunnel, "pubkey")
	cmd.Stdin = strings.NewReader(priv)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hubtunnel pubkey: %v", err)
	}
	return path, strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// simAddrs waits for ccusim's "ccusim: <svc> listening on <addr>" lines on
// stdout and returns the address of each service.
func simAddrs(t *testing.T, p *proc) map[string]string {
	t.Helper()
	var addrs map[string]string
	poll.Until(t, 10*time.Second, "ccusim to listen", func() bool {
		if !p.alive() {
			t.Fatalf("ccusim exited: %v\n%s", p.err, p.logText())
		}
		addrs = testbed.SimAddrs(p.logText())
		return len(addrs) == 5
	})
	return addrs
}

// targets is the agent's [targets] section for ccusim's ports.
func targets(sim map[string]string) string {
	t := testbed.SimTargets(func(svc string) string { return sim[svc] })
	var b strings.Builder
	b.WriteString("[targets]\n[targets.ports]\n")
	for _, port := range slices.Sorted(maps.Keys(t)) {
		fmt.Fprintf(&b, "%d = %q\n", port, t[port])
	}
	return b.String()
}

// hubSetup is a relay with hub "demo", ccusim as the hub's services, and
// (after startAgent) the agent, all on loopback (testbed).
type hubSetup struct {
	t         *testing.T
	dir       string
	offset    int    // the relay's port_offset
	agentPort int    // the relay's agent port
	relayPub  string // the relay's public key
	hubPub    string // the agent's public key
	relayConf string
	uiAddr    string // the agent's status API
	sim       map[string]string
	relay     *proc
	agent     *proc
	client    *http.Client // dials 127.0.0.1 whatever host a URL names
	bed       *testbed.Relay
	hub       testbed.Hub
}

// setupOpts change newHub's defaults.
type setupOpts struct {
	filesDir    string // ccusim -files
	offlineHubs int    // extra [[hub]] entries that have no agent ("offline1", ...)
	udp         bool   // the relay also takes agents over UDP, on the agent port
	releasesDir string // the relay's releases_dir
}

// newHub starts ccusim and the relay; the agent comes with startAgent.
func newHub(t *testing.T, o setupOpts) *hubSetup {
	t.Helper()
	dir := t.TempDir()
	s := &hubSetup{t: t, dir: dir, client: loopbackClient(t)}
	s.sim = simAddrs(t, start(t, dir, "ccusim", testbed.SimArgs(bins, "demo", o.filesDir)...))

	var err error
	if s.hub, err = testbed.NewHub("demo", testbed.TunnelIP(0), filepath.Join(dir, "hub.key")); err != nil {
		t.Fatal(err)
	}
	hubs := []testbed.Hub{s.hub}
	for i := 1; i <= o.offlineHubs; i++ {
		h, err := testbed.NewHub(fmt.Sprintf("offline%d", i), testbed.TunnelIP(i), "")
		if err != nil {
			t.Fatal(err)
		}
		hubs = append(hubs, h)
	}
	s.bed, err = testbed.NewRelay(&ports, dir, "relay", testbed.RelayOptions{UDP: o.udp, ReleasesDir: o.releasesDir}, hubs)
	if err != nil {
		t.Fatal(err)
	}
	s.offset, s.agentPort, s.relayConf = s.bed.Offset, s.bed.AgentPort, s.bed.Conf
	s.relayPub, s.hubPub = s.bed.Key.Public().String(), s.hub.Key.Public().String()
	s.relay = s.startRelay("relay")
	return s
}

// startRelay starts hubrelay with the setup's config and waits until it
// accepts agents.
func (s *hubSetup) startRelay(name string) *proc {
	s.t.Helper()
	p := start(s.t, s.dir, name, s.bed.Args(bins)...)
	poll.Until(s.t, 10*time.Second, "the relay to listen", func() bool {
		if !p.alive() {
			s.t.Fatalf("relay exited: %v\n%s", p.err, p.logText())
		}
		return strings.Contains(p.logText(), testbed.RelayReady)
	})
	return p
}

// agentOpts change startAgent's defaults.
type agentOpts struct {
	relay     string // the agent's relay address; default the relay's agent port
	proxy     string // default "none"
	transport string // default "tcp"
	relayTLS  string // the agent's relay_tls, for transport "tls" and "auto"
	dns       string // the agent's [dns] table, written after [targets]; default none
	update    string // the agent's [update] table, written after that; default none
	// command runs the agent: a binary other than the one TestMain built,
	// after an emulator (e.g. qemu-arm-static, hubtunnel-armv7); it is
	// given "run --config FILE". Default: bins.Hubtunnel.
	command []string
}

// startAgent writes the agent's config (dir/hub.toml) and starts it; it
// does not wait for the tunnel (see waitConnected).
func (s *hubSetup) startAgent(o agentOpts) {
	s.t.Helper()
	a, err := testbed.NewAgent(&ports, filepath.Join(s.dir, "hub.toml"), s.bed, s.hub, testbed.AgentSpec{
		Relay:     o.relay,
		Transport: o.transport,
		Proxy:     o.proxy,
		Targets:   testbed.SimTargets(func(svc string) string { return s.sim[svc] }),
		Extra:     o.dns + o.update,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	if o.transport == "tls" || o.transport == "auto" { // testbed writes "tcp"
		conf := readFileString(a.Conf)
		conf = strings.Replace(conf, "transport = \"tcp\"", fmt.Sprintf("transport = %q\nrelay_tls = %q", o.transport, o.relayTLS), 1)
		writeFile(s.t, a.Conf, conf)
	}
	s.uiAddr = a.UI
	argv := a.Args(bins)
	if len(o.command) > 0 {
		argv = append(slices.Clone(o.command), argv[1:]...)
	}
	s.agent = start(s.t, s.dir, "agent", argv...)
}

// waitConnected waits until the agent reports the tunnel up.
func (s *hubSetup) waitConnected(timeout time.Duration) status {
	s.t.Helper()
	var st status
	poll.Until(s.t, timeout, "the agent to report state \"connected\"", func() bool {
		if !s.agent.alive() {
			s.t.Fatalf("agent exited: %v", s.agent.err)
		}
		var err error
		st, err = s.status()
		return err == nil && st.State == "connected"
	})
	return st
}

// status is what the agent's status API answers: the product's own type.
type status = localapi.Status

func (s *hubSetup) status() (status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return localapi.NewClient(s.uiAddr).Status(ctx)
}

// url is the address of tunnel port port of hub at the relay with hub's
// app token as user info, e.g. http://hubtunnel:htk_…@demo.localhost:10080/path.
// Go's client sends it as HTTP Basic credentials; testbed.Redacted hides
// the token in messages.
func (s *hubSetup) url(scheme, hub string, port int, path string) string {
	return s.bed.TokenURLScheme(scheme, hub, port, path)
}

// urlAs is url with the token of hub tokenOf: a credential that is valid,
// but for another hub.
func (s *hubSetup) urlAs(tokenOf, scheme, hub string, port int, path string) string {
	return testbed.WithToken(s.bed.URLScheme(scheme, hub, port, path), s.bed.Token(tokenOf))
}

// get fetches url through the relay and returns the status and body.
func (s *hubSetup) get(url string) (int, string, error) {
	resp, err := s.client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustGetWebUI fails the test unless the hub's WebUI page loads through
// the relay's port 80.
func (s *hubSetup) mustGetWebUI() {
	s.t.Helper()
	code, body, err := s.get(s.url("http", "demo", 80, "/"))
	if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
		s.t.Fatalf("GET WebUI through the relay: status %d, err %v, body %.200q", code, err, body)
	}
}

// waitSessionsLogged waits until the relay's audit log has n request lines
// for hub demo, i.e. until the relay has seen n requests end.
func (s *hubSetup) waitSessionsLogged(n int) {
	s.t.Helper()
	poll.Until(s.t, 10*time.Second, fmt.Sprintf("the relay to log %d sessions", n), func() bool {
		return strings.Count(s.relay.logText(), "msg=request hub=demo ") >= n
	})
}

// loopbackClient is an HTTP client that connects to 127.0.0.1 at the URL's
// port whatever host the URL names, so that "demo.localhost:10080" reaches
// the relay with that Host header (and TLS server name). Every request has
// its own connection.
func loopbackClient(t *testing.T) *http.Client {
	c := testbed.LoopbackClient(false, 60*time.Second)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// readFileString returns the file's content, or "" if it cannot be read.
func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// newNetns makes a network namespace named prefix-PID with its loopback
// up, deleted when the test ends, and returns its name and a function that
// prefixes a command line to run inside it.
func newNetns(t *testing.T, ip, prefix string) (string, func(argv ...string) []string) {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	run(t, ip, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := runErr(ip, "netns", "del", ns); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	run(t, ip, "-n", ns, "link", "set", "lo", "up")
	return ns, func(argv ...string) []string { return append([]string{ip, "netns", "exec", ns}, argv...) }
}

// writeRandomFile writes size random bytes to dir/name and returns their
// SHA-256.
func writeRandomFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// startTinyproxy starts tinyproxy on a free port, allowing CONNECT to
// connectPort, and returns its address and log file.
func startTinyproxy(t *testing.T, connectPort int) (addr, logFile string) {
	t.Helper()
	tp := need(t, "as the HTTP CONNECT proxy", "tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
	dir := t.TempDir()
	port := freePort(t)
	logFile = filepath.Join(dir, "tinyproxy.log")
	conf := filepath.Join(dir, "tinyproxy.conf")
	writeFile(t, conf, fmt.Sprintf("Port %d\nListen 127.0.0.1\nAllow 127.0.0.1\nConnectPort %d\nLogFile %q\nLogLevel Connect\nPidFile %q\nTimeout 600\nMaxClients 20\n",
		port, connectPort, logFile, filepath.Join(dir, "tinyproxy.pid")))
	p := start(t, dir, "tinyproxy", tp, "-d", "-c", conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- tinyproxy LogFile ---\n%s", readFileString(logFile))
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, p, addr)
	return addr, logFile
}

// waitListening waits until p accepts connections on addr.
func waitListening(t *testing.T, p *proc, addr string) {
	t.Helper()
	poll.Until(t, 15*time.Second, p.name+" to listen on "+addr, func() bool {
		if !p.alive() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.logText())
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
