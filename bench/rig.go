package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// Bins are the paths of the product's binaries under test.
type Bins struct{ Hubtunnel, Hubrelay, Ccusim string }

// BinsIn returns the binaries in dir, checking that they exist.
func BinsIn(dir string) (Bins, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Bins{}, err
	}
	b := Bins{filepath.Join(abs, "hubtunnel"), filepath.Join(abs, "hubrelay"), filepath.Join(abs, "ccusim")}
	for _, p := range []string{b.Hubtunnel, b.Hubrelay, b.Ccusim} {
		if _, err := os.Stat(p); err != nil {
			return Bins{}, fmt.Errorf("bench: %w (run make build)", err)
		}
	}
	return b, nil
}

// Hub is a hub as the relay's config names it.
type Hub struct {
	Name     string
	Key      vpn.PrivateKey
	KeyFile  string // the private key's file, mode 0600; "" if not written
	TunnelIP string
}

// NewHub makes a hub with a fresh key; with dir set, the key is written to
// dir/NAME.key.
func NewHub(dir, name, tunnelIP string) (Hub, error) {
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		return Hub{}, err
	}
	h := Hub{Name: name, Key: k, TunnelIP: tunnelIP}
	if dir != "" {
		h.KeyFile = filepath.Join(dir, name+".key")
		if err := vpn.SavePrivateKey(h.KeyFile, k); err != nil {
			return Hub{}, err
		}
	}
	return h, nil
}

// Relay is a hubrelay process on loopback with its config and ports.
type Relay struct {
	Name      string // the process's name in logs
	Dir       string
	AgentPort int // TCP, for agents
	UDPPort   int // UDP, for agents with transport "udp"; 0: off
	Offset    int // port_offset of the public ports
	Key       vpn.PrivateKey
	Conf      string
	Proc      *Proc // the running process, nil before Start
	bins      Bins
}

// NewRelay writes a relay's key and config for hubs into dir; Start runs it.
func NewRelay(bins Bins, ports *loopback.Ports, dir, name string, udp bool, hubs []Hub) (*Relay, error) {
	r := &Relay{Name: name, Dir: dir, bins: bins}
	var err error
	if r.AgentPort, err = ports.Free(); err != nil {
		return nil, err
	}
	if udp {
		if r.UDPPort, err = ports.FreeUDP(); err != nil {
			return nil, err
		}
	}
	if r.Offset, err = ports.Offset(); err != nil {
		return nil, err
	}
	if r.Key, err = vpn.GeneratePrivateKey(); err != nil {
		return nil, err
	}
	keyFile := name + ".key"
	if err := vpn.SavePrivateKey(filepath.Join(dir, keyFile), r.Key); err != nil {
		return nil, err
	}
	udpListen := `"off"`
	if udp {
		udpListen = fmt.Sprintf(`"127.0.0.1:%d"`, r.UDPPort)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "agent_listen = \"127.0.0.1:%d\"\nagent_listen_udp = %s\ndomain = \"localhost\"\n", r.AgentPort, udpListen)
	fmt.Fprintf(&b, "public_listen = \"127.0.0.1\"\nport_offset = %d\nprivate_key_file = %q\n", r.Offset, keyFile)
	for _, h := range hubs {
		fmt.Fprintf(&b, "\n[[hub]]\nname = %q\npublic_key = %q\ntunnel_ip = %q\n", h.Name, h.Key.Public(), h.TunnelIP)
	}
	r.Conf = filepath.Join(dir, name+".toml")
	if err := os.WriteFile(r.Conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return r, nil
}

// Start runs the relay and waits until it accepts agents.
func (r *Relay) Start() error {
	p, err := StartProc(r.Dir, r.Name, nil, r.bins.Hubrelay, "run", "--config", r.Conf)
	if err != nil {
		return err
	}
	r.Proc = p
	// A relay with thousands of hubs configures thousands of peers first.
	if err := p.WaitLog("agents connect to", 60*time.Second); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// Public is the relay's address for tunnel port port.
func (r *Relay) Public(port int) string { return fmt.Sprintf("127.0.0.1:%d", port+r.Offset) }

// URL is http://HUB.localhost:PORT+offset/PATH.
func (r *Relay) URL(hub string, port int, path string) string {
	return fmt.Sprintf("http://%s.localhost:%d%s", hub, port+r.Offset, path)
}

// Agent is a hubtunnel process.
type Agent struct {
	Name string
	Dir  string
	Conf string
	UI   string // the status API, host:port
	Proc *Proc
	bins Bins
}

// AgentSpec is what an agent's config says beyond its hub.
type AgentSpec struct {
	Transport string         // "tcp" (default) or "udp"
	Targets   map[int]string // tunnel port → host:port on loopback
}

// NewAgent writes the config of an agent for hub at relay; Start runs it.
func NewAgent(bins Bins, ports *loopback.Ports, dir string, relay *Relay, hub Hub, spec AgentSpec) (*Agent, error) {
	ui, err := ports.Free()
	if err != nil {
		return nil, err
	}
	a := &Agent{Name: "agent-" + hub.Name, Dir: dir, UI: fmt.Sprintf("127.0.0.1:%d", ui), bins: bins}
	transport, relayAddr := "tcp", fmt.Sprintf("127.0.0.1:%d", relay.AgentPort)
	if spec.Transport == "udp" {
		transport, relayAddr = "udp", fmt.Sprintf("127.0.0.1:%d", relay.UDPPort)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\nrelay = %q\nrelay_public_key = %q\nprivate_key_file = %q\n", hub.Name, relayAddr, relay.Key.Public(), hub.KeyFile)
	fmt.Fprintf(&b, "transport = %q\ntunnel_ip = %q\nui_listen = %q\nproxy = \"none\"\n\n[targets]\n[targets.ports]\n", transport, hub.TunnelIP, a.UI)
	tports := make([]int, 0, len(spec.Targets))
	for p := range spec.Targets {
		tports = append(tports, p)
	}
	sort.Ints(tports)
	for _, p := range tports {
		fmt.Fprintf(&b, "%d = %q\n", p, spec.Targets[p])
	}
	a.Conf = filepath.Join(dir, a.Name+".toml")
	if err := os.WriteFile(a.Conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return a, nil
}

// Start runs the agent; it does not wait for the tunnel (WaitConnected).
func (a *Agent) Start() error {
	p, err := StartProc(a.Dir, a.Name, nil, a.bins.Hubtunnel, "run", "--config", a.Conf)
	if err != nil {
		return err
	}
	a.Proc = p
	return nil
}

// AgentStatus is what GET /api/status answers: the product's own type.
type AgentStatus = localapi.Status

// Status reads the agent's status API.
func (a *Agent) Status() (AgentStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return localapi.NewClient(a.UI).Status(ctx)
}

// WaitConnected waits until the agent reports state "connected".
func (a *Agent) WaitConnected(timeout time.Duration) error {
	return WaitFor(timeout, a.Name+" to report \"connected\"", func() (bool, error) {
		if !a.Proc.Alive() {
			return false, fmt.Errorf("%s exited; its log:\n%s", a.Name, tail(a.Proc.Log(), 2000))
		}
		st, err := a.Status()
		return err == nil && st.State == "connected", nil
	})
}

// LoopbackClient is an HTTP client that connects to 127.0.0.1 at a URL's
// port whatever host the URL names, so "demo.localhost:10080" reaches the
// relay with that Host header. keepAlive keeps one idle connection per host.
func LoopbackClient(keepAlive bool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 1,
		Proxy:               nil,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}
