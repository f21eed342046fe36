// Package testbed sets up a relay, its hubs' agents and a stand-in hub
// (ccusim) on loopback, the one way the unit tests, the end-to-end tests
// and the benchmarks do it: keys and tunnel addresses per hub, free ports
// and the relay's port_offset (internal/loopback), the relay's config and
// each agent's, written as the TOML files the binaries read (so the Go
// value a test starts in this process is what LoadConfig makes of the same
// file), and the commands that run the binaries from a bin folder.
//
// It starts the relay and ccusim in this process (Start, Relay.StartServer,
// StartSim); an agent in this process is agent.LoadConfig(Agent.Conf) and
// agent.New. testbed does not import package agent, so that the agent's own
// tests, which look inside the agent, can use it. Binaries run under the
// caller's process runner (e2e's, which prints logs when a test fails;
// bench's, which measures memory), from Relay.Args, Agent.Args, SimArgs.
//
// It is for tests and benchmarks only; it never sends traffic anywhere but
// loopback.
package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// Bins are the paths of the product's binaries (make build's bin/).
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
			return Bins{}, fmt.Errorf("testbed: %w (run make build)", err)
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

// TunnelIP is the tunnel address of the i-th hub (from 0) of a bed:
// 100.96.0.2, .3, … (the relay is 100.96.0.1).
func TunnelIP(i int) string { return fmt.Sprintf("100.96.0.%d", i+2) }

// NewHub makes a hub with a fresh key; with keyFile set, the key is
// written there.
func NewHub(name, tunnelIP, keyFile string) (Hub, error) {
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		return Hub{}, err
	}
	h := Hub{Name: name, Key: k, TunnelIP: tunnelIP}
	if keyFile != "" {
		if err := vpn.SavePrivateKey(keyFile, k); err != nil {
			return Hub{}, err
		}
		h.KeyFile = keyFile
	}
	return h, nil
}

// RelayOptions change NewRelay's defaults.
type RelayOptions struct {
	UDP         bool   // also take agents over UDP, on the agent port
	ReleasesDir string // releases_dir; default none
}

// Relay is a relay's config on loopback: its ports, key and hubs, written
// to Dir/Name.toml (and the key to Dir/Name.key), and its store, Dir/Name.db,
// with the hubs, their owner and a token per hub (see Token).
type Relay struct {
	Name      string // the config's, key's and store's file name, and the process's name in logs
	Dir       string
	AgentPort int // TCP, for agents
	UDPPort   int // UDP, for agents with transport "udp" (the agent port); 0: off
	Offset    int // port_offset of the public ports
	Key       vpn.PrivateKey
	Conf      string // the TOML file
	Store     string // the relay's store, a SQLite file
	Hubs      []Hub
	// Owner owns every hub of the bed; OwnerPassword is their password
	// (for logging in at the portal).
	Owner, OwnerPassword string

	// DebugAddr is the relay's debug_listen: GET /debug/state.
	DebugAddr string

	tokens map[string]string // hub name → its token
}

// RelayReady is what the relay logs once it accepts agents.
const RelayReady = "agents connect to"

// NewRelay writes a relay's key and config for hubs into dir, and prepares
// its store.
func NewRelay(ports *loopback.Ports, dir, name string, o RelayOptions, hubs []Hub) (*Relay, error) {
	r := &Relay{Name: name, Dir: dir, Hubs: hubs}
	var err error
	if o.UDP {
		r.AgentPort, err = ports.FreeUDP()
		r.UDPPort = r.AgentPort
	} else {
		r.AgentPort, err = ports.Free()
	}
	if err != nil {
		return nil, err
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
	udpListen := "off"
	if o.UDP {
		udpListen = fmt.Sprintf("127.0.0.1:%d", r.UDPPort)
	}
	var b strings.Builder
	if o.ReleasesDir != "" {
		fmt.Fprintf(&b, "releases_dir = %q\n", o.ReleasesDir)
	}
	fmt.Fprintf(&b, "agent_listen = \"127.0.0.1:%d\"\nagent_listen_udp = %q\ndomain = \"localhost\"\n", r.AgentPort, udpListen)
	// Enrollment codes (MakeCode) name the agent port as the bed's agents
	// reach it.
	fmt.Fprintf(&b, "enroll_address = \"127.0.0.1:%d\"\n", r.AgentPort)
	fmt.Fprintf(&b, "public_listen = \"127.0.0.1\"\nport_offset = %d\nprivate_key_file = %q\nstore = %q\n", r.Offset, keyFile, name+".db")
	// A bed on loopback serves the plaintext ports (tests and bench's
	// latency phase use 80 and 2001 without TLS) and lifts the per-address
	// limits: every client of a bed comes from 127.0.0.1.
	b.WriteString("plaintext_ports = true\nlimit_conns_per_address = 100000\nlimit_requests_per_second = 1000000\nlimit_sessions_per_hub = 100000\nlimit_agent_prehello_per_address = 100000\n")
	// Tests count the relay's goroutines on its debug listener (DebugAddr).
	debugPort, err := ports.Free()
	if err != nil {
		return nil, err
	}
	r.DebugAddr = fmt.Sprintf("127.0.0.1:%d", debugPort)
	fmt.Fprintf(&b, "debug_listen = %q\n", r.DebugAddr)
	for _, h := range hubs {
		fmt.Fprintf(&b, "\n[[hub]]\nname = %q\npublic_key = %q\ntunnel_ip = %q\n", h.Name, h.Key.Public(), h.TunnelIP)
	}
	r.Conf, r.Store = filepath.Join(dir, name+".toml"), filepath.Join(dir, name+".db")
	if err := os.WriteFile(r.Conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	if err := r.prepareStore(); err != nil {
		return nil, err
	}
	return r, nil
}

// Config is the relay's config as hubrelay reads it from Conf.
func (r *Relay) Config() (*relay.Config, error) { return relay.LoadConfig(r.Conf) }

// Args is the command line that runs the relay binary (in Dir).
func (r *Relay) Args(bins Bins) []string {
	return []string{bins.Hubrelay, "run", "--config", r.Conf}
}

// AgentAddr is the relay's agent port, host:port.
func (r *Relay) AgentAddr() string { return fmt.Sprintf("127.0.0.1:%d", r.AgentPort) }

// Public is the relay's address for tunnel port port.
func (r *Relay) Public(port int) string { return fmt.Sprintf("127.0.0.1:%d", port+r.Offset) }

// URL is http://HUB.localhost:PORT+offset/PATH, without a credential
// (TokenURL has one).
func (r *Relay) URL(hub string, port int, path string) string {
	return r.URLScheme("http", hub, port, path)
}

// URLScheme is URL with another scheme, e.g. https for the TLS ports.
func (r *Relay) URLScheme(scheme, hub string, port int, path string) string {
	return fmt.Sprintf("%s://%s.localhost:%d%s", scheme, hub, port+r.Offset, path)
}

// PortalURL is SCHEME://localhost:PORT+offset/PATH: the relay's own host
// (public_host), where the portal is on the WebUI ports and an app token
// on any other port reaches its own hub.
func (r *Relay) PortalURL(scheme string, port int, path string) string {
	return fmt.Sprintf("%s://localhost:%d%s", scheme, port+r.Offset, path)
}

// AgentSpec is what an agent's config says beyond its hub and relay.
type AgentSpec struct {
	Relay     string         // the relay's address; default its agent port (UDP port for "udp")
	Transport string         // "tcp" (default) or "udp"
	Proxy     string         // default "none"
	UI        string         // the status API; default a free loopback port
	Targets   map[int]string // tunnel port → host:port on loopback
	Extra     string         // TOML tables written after [targets], e.g. [dns]
	// Unenrolled leaves out the hub's name, the relay, its key and the
	// tunnel address: the agent waits for an enrollment code, and makes
	// its key (hubtunnel.key beside Conf) when it enrolls.
	Unenrolled bool
}

// Agent is an agent's config for one hub, written to Conf. The agent's
// state (DNS cache, update files) lives in Conf's folder.
type Agent struct {
	Hub  Hub
	Dir  string // Conf's folder
	Conf string // the TOML file
	UI   string // the status API, host:port
}

// NewAgent writes the config of an agent for hub at relay to conf.
func NewAgent(ports *loopback.Ports, conf string, relay *Relay, hub Hub, spec AgentSpec) (*Agent, error) {
	a := &Agent{Hub: hub, Dir: filepath.Dir(conf), Conf: conf, UI: spec.UI}
	if a.UI == "" {
		ui, err := ports.Free()
		if err != nil {
			return nil, err
		}
		a.UI = fmt.Sprintf("127.0.0.1:%d", ui)
	}
	transport, relayAddr := "tcp", relay.AgentAddr()
	if spec.Transport == "udp" {
		transport, relayAddr = "udp", fmt.Sprintf("127.0.0.1:%d", relay.UDPPort)
	}
	if spec.Relay != "" {
		relayAddr = spec.Relay
	}
	proxy := spec.Proxy
	if proxy == "" {
		proxy = "none"
	}
	var b strings.Builder
	if !spec.Unenrolled {
		fmt.Fprintf(&b, "name = %q\nrelay = %q\nrelay_public_key = %q\nprivate_key_file = %q\n", hub.Name, relayAddr, relay.Key.Public(), hub.KeyFile)
		fmt.Fprintf(&b, "tunnel_ip = %q\n", hub.TunnelIP)
	}
	fmt.Fprintf(&b, "ui_listen = %q\nproxy = %q\ntransport = %q\n\n[targets]\n[targets.ports]\n", a.UI, proxy, transport)
	tports := make([]int, 0, len(spec.Targets))
	for p := range spec.Targets {
		tports = append(tports, p)
	}
	slices.Sort(tports)
	for _, p := range tports {
		fmt.Fprintf(&b, "%d = %q\n", p, spec.Targets[p])
	}
	if spec.Extra != "" {
		b.WriteString("\n" + spec.Extra)
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return a, nil
}

// Args is the command line that runs the agent binary.
func (a *Agent) Args(bins Bins) []string {
	return []string{bins.Hubtunnel, "run", "--config", a.Conf}
}

// SimArgs is the command line that runs ccusim binary as hub name, every
// service on a free port, serving filesDir under /files/ when set.
func SimArgs(bins Bins, name, filesDir string) []string {
	args := []string{bins.Ccusim, "-name", name, "-webui", "0", "-wired", "0", "-rf", "0", "-hmip", "0", "-script", "0"}
	if filesDir != "" {
		args = append(args, "-files", filesDir)
	}
	return args
}

var simLine = regexp.MustCompile(`(?m)^ccusim: (\w+) listening on (\S+)$`)

// SimAddrs reads the ccusim binary's "ccusim: <service> listening on
// <addr>" lines: the address of each service so far.
func SimAddrs(log string) map[string]string {
	addrs := map[string]string{}
	for _, m := range simLine.FindAllStringSubmatch(log, -1) {
		addrs[m[1]] = m[2]
	}
	return addrs
}

// simPorts are the agent's tunnel ports and the ccusim service behind each,
// as on a CCU (the TLS ports lead to the plain services here).
var simPorts = []struct {
	port    int
	service string
}{
	{80, "webui"}, {443, "webui"}, {2000, "wired"}, {4430, "wired"}, {2001, "rf"}, {4431, "rf"},
	{2010, "hmip"}, {4434, "hmip"}, {8181, "script"}, {44381, "script"},
}

// SimTargets maps the agent's tunnel ports to ccusim's services, given
// each service's address.
func SimTargets(addr func(service string) string) map[int]string {
	t := map[int]string{}
	for _, p := range simPorts {
		t[p.port] = addr(p.service)
	}
	return t
}
