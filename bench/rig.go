package bench

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// The rig is testbed's configs run as the bench's processes.

// Bins are the paths of the product's binaries under test.
type Bins = testbed.Bins

// BinsIn returns the binaries in dir, checking that they exist.
func BinsIn(dir string) (Bins, error) { return testbed.BinsIn(dir) }

// Hub is a hub as the relay's config names it.
type Hub = testbed.Hub

// NewHub makes a hub with a fresh key; with dir set, the key is written to
// dir/NAME.key.
func NewHub(dir, name, tunnelIP string) (Hub, error) {
	keyFile := ""
	if dir != "" {
		keyFile = filepath.Join(dir, name+".key")
	}
	return testbed.NewHub(name, tunnelIP, keyFile)
}

// Relay is a hubrelay process on loopback with its config and ports.
type Relay struct {
	*testbed.Relay
	Proc *Proc // the running process, nil before Start
	bins Bins
}

// NewRelay writes a relay's key and config for hubs into dir; Start runs
// it. With udp, it also takes agents over UDP on its agent port.
func NewRelay(bins Bins, ports *loopback.Ports, dir, name string, udp bool, hubs []Hub) (*Relay, error) {
	r, err := testbed.NewRelay(ports, dir, name, testbed.RelayOptions{UDP: udp}, hubs)
	if err != nil {
		return nil, err
	}
	return &Relay{Relay: r, bins: bins}, nil
}

// Start runs the relay and waits until it accepts agents.
func (r *Relay) Start() error {
	p, err := StartProc(r.Dir, r.Name, nil, r.Args(r.bins)...)
	if err != nil {
		return err
	}
	r.Proc = p
	// A relay with thousands of hubs configures thousands of peers first.
	if err := p.WaitLog(testbed.RelayReady, 60*time.Second); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// Agent is a hubtunnel process.
type Agent struct {
	*testbed.Agent
	Name string // the process's name in logs
	Proc *Proc
	bins Bins
}

// AgentSpec is what an agent's config says beyond its hub.
type AgentSpec = testbed.AgentSpec

// NewAgent writes the config of an agent for hub at relay (dir/agent-HUB.toml);
// Start runs it.
func NewAgent(bins Bins, ports *loopback.Ports, dir string, relay *Relay, hub Hub, spec AgentSpec) (*Agent, error) {
	name := "agent-" + hub.Name
	a, err := testbed.NewAgent(ports, filepath.Join(dir, name+".toml"), relay.Relay, hub, spec)
	if err != nil {
		return nil, err
	}
	return &Agent{Agent: a, Name: name, bins: bins}, nil
}

// Start runs the agent; it does not wait for the tunnel (WaitConnected).
func (a *Agent) Start() error {
	p, err := StartProc(a.Dir, a.Name, nil, a.Args(a.bins)...)
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
	return testbed.LoopbackClient(keepAlive, timeout)
}
