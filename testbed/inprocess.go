package testbed

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/relay"
)

// StartServer runs the relay in this process from its config file.
func (r *Relay) StartServer(version string, logf logger.Logf) (*relay.Server, error) {
	cfg, err := r.Config()
	if err != nil {
		return nil, err
	}
	s, err := relay.New(*cfg, version, logf)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// StartSim runs ccusim in this process as hub name, every service on a
// free loopback port.
func StartSim(name string, logf logger.Logf) (*ccusim.Sim, error) {
	s := ccusim.New(ccusim.Config{Name: name, Logf: logf})
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Options change Start's defaults.
type Options struct {
	Hubs        []string    // the hubs' names; their tunnel addresses are TunnelIP(0), (1), …
	RelayUDP    bool        // the relay also takes agents over UDP
	ReleasesDir string      // the relay's releases_dir
	RelayLog    logger.Logf // the relay's log; default t.Logf
	// Ports hands out the ports; default one for every bed of this
	// process, so that beds of parallel tests never share a port.
	Ports *loopback.Ports
}

var ports loopback.Ports

// Bed is a relay running in this process with its hubs, ccusim as every
// hub's services, and an agent config per hub, each in its own folder.
// The caller starts the agents (in this process: agent.LoadConfig of
// Agents[name].Conf, then agent.New).
type Bed struct {
	Dir    string
	Ports  *loopback.Ports
	Sim    *ccusim.Sim
	Relay  *Relay            // the relay's config
	Server *relay.Server     // the running relay
	Agents map[string]*Agent // each hub's agent config, by hub name
}

// Start starts ccusim and the relay for o.Hubs and writes each hub's
// agent config (in Dir/NAME/hub.toml, key in Dir/NAME/hub.key, the
// agent's port 80 and the other CCU ports leading to ccusim). Everything
// stops when the test ends; Close stops it sooner.
func Start(t testing.TB, o Options) *Bed {
	t.Helper()
	b := &Bed{Dir: t.TempDir(), Ports: o.Ports, Agents: map[string]*Agent{}}
	if b.Ports == nil {
		b.Ports = &ports
	}
	fail := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal("testbed: ", err)
		}
	}
	var err error
	b.Sim, err = StartSim("testbed", nil)
	fail(err)
	t.Cleanup(func() { b.Sim.Close() })

	hubs := make([]Hub, len(o.Hubs))
	for i, name := range o.Hubs {
		fail(mkdir(filepath.Join(b.Dir, name)))
		hubs[i], err = NewHub(name, TunnelIP(i), filepath.Join(b.Dir, name, "hub.key"))
		fail(err)
	}
	b.Relay, err = NewRelay(b.Ports, b.Dir, "relay", RelayOptions{UDP: o.RelayUDP, ReleasesDir: o.ReleasesDir}, hubs)
	fail(err)
	logf := o.RelayLog
	if logf == nil {
		logf = t.Logf
	}
	b.Server, err = b.Relay.StartServer("test", logf)
	fail(err)
	t.Cleanup(func() { b.Server.Close() })

	targets := SimTargets(b.Sim.Addr)
	for _, h := range hubs {
		b.Agents[h.Name], err = NewAgent(b.Ports, filepath.Join(b.Dir, h.Name, "hub.toml"), b.Relay, h, AgentSpec{Targets: targets})
		fail(err)
	}
	return b
}

// Close stops the relay and ccusim (the test's end does too).
func (b *Bed) Close() {
	b.Server.Close()
	b.Sim.Close()
}

// Get fetches / of hub through the relay's public port 80 with its token.
func (b *Bed) Get(hub string) (int, string, error) {
	return Get(LoopbackClient(false, 15*time.Second), b.Relay.TokenURL(hub, 80, "/"))
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o700) }
