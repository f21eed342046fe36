package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/selfupdate"
	bed "github.com/hubtunnel/hubtunnel/testbed"
)

// ports hands out loopback ports to this package's tests.
var ports loopback.Ports

// freePort returns "127.0.0.1:PORT" for a free port.
func freePort(t *testing.T) string {
	t.Helper()
	p, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// testbed is a relay and agents in this process, talking over loopback
// (testbed, with the agents started here).
type testbed struct {
	bed    *bed.Bed
	relay  *relay.Server
	agents map[string]*Agent
	offset int
	sim    *ccusim.Sim
}

// newTestbed starts ccusim, a relay with the named hubs and an agent for
// each, and waits until every agent is connected.
func newTestbed(t *testing.T, hubs ...string) *testbed {
	t.Helper()
	return newTestbedWith(t, testbedOpts{}, hubs...)
}

type testbedOpts struct {
	releasesDir string                   // the relay's releases_dir
	relayUDP    bool                     // the relay also takes agents over UDP (config sets transport "udp")
	update      func(*selfupdate.Config) // sets up the agents' [update]
	version     string                   // the agents' version; default "test"
	relayLog    func(line string)        // sees each line the relay logs
	config      func(*Config)            // changes each agent's config before it starts
	lan         func() netip.Addr        // the agents' LAN address finder; default: 127.0.0.1 (tests dial loopback only)
}

func newTestbedWith(t *testing.T, o testbedOpts, hubs ...string) *testbed {
	t.Helper()
	relayLogf := t.Logf
	if o.relayLog != nil {
		relayLogf = func(f string, args ...any) {
			t.Logf(f, args...)
			o.relayLog(fmt.Sprintf(f, args...))
		}
	}
	b := bed.Start(t, bed.Options{Hubs: hubs, ReleasesDir: o.releasesDir, RelayLog: relayLogf, RelayUDP: o.relayUDP})
	tb := &testbed{bed: b, relay: b.Server, agents: map[string]*Agent{}, offset: b.Relay.Offset, sim: b.Sim}
	for _, name := range hubs {
		// The config file the bed wrote, as the binary would read it.
		cfg, err := LoadConfig(b.Agents[name].Conf)
		if err != nil {
			t.Fatal(err)
		}
		if o.update != nil {
			o.update(&cfg.Update)
		}
		if o.config != nil {
			o.config(cfg)
		}
		if o.update != nil || o.config != nil {
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		}
		v := o.version
		if v == "" {
			v = "test"
		}
		a := New(cfg, v, func(f string, args ...any) { t.Logf(name+": "+f, args...) })
		a.lan = o.lan
		if a.lan == nil {
			a.lan = func() netip.Addr { return netip.MustParseAddr("127.0.0.1") }
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		tb.agents[name] = a
		t.Cleanup(func() { a.Close() })
	}
	for name, a := range tb.agents {
		poll.Until(t, 10*time.Second, name+" connected", func() bool { return a.Status().State == "connected" })
	}
	return tb
}

// get fetches / of a hub through the relay's public WebUI port.
func (tb *testbed) get(hub string) (int, string, error) { return tb.bed.Get(hub) }

func TestTunnelEndToEnd(t *testing.T) {
	tb := newTestbed(t, "alpha")
	code, body, err := tb.get("alpha")
	if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
		t.Fatalf("GET through the tunnel: %d %v %.200q", code, err, body)
	}
	st := tb.agents["alpha"].Status()
	if st.BytesRx == 0 || st.BytesTx == 0 || st.OverheadBytes == 0 || st.SessionsTotal != 1 || st.LastHandshake.IsZero() {
		t.Errorf("status after one request does not add up: %+v", st)
	}
}

// TestHubIsolation: a hub's tunnel reaches the relay and nothing else; in
// particular not another hub, even though the relay holds both sessions.
func TestHubIsolation(t *testing.T) {
	tb := newTestbed(t, "alpha", "beta")
	a, b := tb.agents["alpha"], tb.agents["beta"]
	before := b.fw.Stats()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := a.stack.DialTCP(ctx, netip.MustParseAddrPort("100.96.0.3:80"))
	if err == nil {
		c.Close()
		t.Fatal("hub alpha opened a connection to hub beta's tunnel address")
	}
	if after := b.fw.Stats(); after != before {
		t.Errorf("packets from alpha reached beta's tunnel: before %+v, after %+v", before, after)
	}
	// beta itself still works.
	if code, _, err := tb.get("beta"); err != nil || code != 200 {
		t.Fatalf("beta after alpha's attempt: %d %v", code, err)
	}
}

// TestFirewallDropsRelayOutsideAllowedCIDRs: when the relay's tunnel
// address is not in allowed_cidrs, its connections are dropped and counted
// and the user gets an error page instead of the hub.
func TestFirewallDropsRelayOutsideAllowedCIDRs(t *testing.T) {
	tb := newTestbed(t, "alpha")
	a := tb.agents["alpha"]
	p := a.fw.Policy()
	p.Allowed = []netip.Prefix{netip.MustParsePrefix("100.96.0.99/32")}
	a.fw.SetPolicy(p)

	code, _, err := tb.get("alpha")
	if err != nil || code != 502 {
		t.Fatalf("GET with the relay outside allowed_cidrs: %d %v, want 502", code, err)
	}
	if st := a.Status(); st.DroppedPackets == 0 || st.SessionsTotal != 0 {
		t.Errorf("dropped_packets = %d, sessions_total = %d; want drops and no session", st.DroppedPackets, st.SessionsTotal)
	}
	if s := a.fw.Stats(); s.DropSource == 0 {
		t.Errorf("drops not counted as source drops: %+v", s)
	}
}

// TestNoGoroutinesLeftBehind tears a whole tunnel down after traffic.
func TestNoGoroutinesLeftBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		tb := newTestbed(t, "alpha")
		if code, _, err := tb.get("alpha"); err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
		tb.agents["alpha"].Close()
		tb.relay.Close()
		tb.sim.Close()
	}()
	poll.Until(t, 10*time.Second, "goroutines to end", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestStartFailureReleasesEverything: an agent whose tunnel cannot start
// (its key cannot be written) returns the error, frees the status port and
// leaves no goroutine behind, so a supervisor can simply try again.
func TestStartFailureReleasesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	ui := freePort(t)
	cfg := &Config{
		Relay:          "127.0.0.1:1",
		RelayPublicKey: "r2dsDlU7K8xZuk+hFigsxloGMn8uD/G5mr9HxKMTPzw=",
		PrivateKeyFile: filepath.Join(t.TempDir(), "no-such-dir", "hub.key"),
		TunnelIP:       "100.96.0.2",
		UIListen:       ui,
		Proxy:          "none",
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := New(cfg, "test", t.Logf)
	if err := a.Start(); err == nil {
		a.Close()
		t.Fatal("Start succeeded without a writable key file")
	}
	ln, err := net.Listen("tcp", ui)
	if err != nil {
		t.Fatalf("status port still taken after a failed start: %v", err)
	}
	ln.Close()
	poll.Until(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
