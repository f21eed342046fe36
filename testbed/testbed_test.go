package testbed_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestBedCarriesRequestsToEachHub starts the bed with two hubs and their
// agents in this process, from the config files the bed wrote, and gets
// each hub's WebUI page through the relay.
func TestBedCarriesRequestsToEachHub(t *testing.T) {
	bed := testbed.Start(t, testbed.Options{Hubs: []string{"alpha", "beta"}})
	for name, ac := range bed.Agents {
		cfg, err := agent.LoadConfig(ac.Conf)
		if err != nil {
			t.Fatal(err)
		}
		a := agent.New(cfg, "test", func(f string, args ...any) { t.Logf(name+": "+f, args...) })
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		poll.Until(t, 10*time.Second, name+" connected", func() bool { return a.Status().State == "connected" })
	}
	for _, name := range []string{"alpha", "beta"} {
		code, body, err := bed.Get(name)
		if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
			t.Errorf("GET %s through the relay: %d %v %.200q", name, code, err, body)
		}
	}
}

// TestConfigsAreWhatTheBinariesRead: the files the bed writes load as the
// relay's and the agent's configs, with the hubs, ports and keys the bed
// handed out.
func TestConfigsAreWhatTheBinariesRead(t *testing.T) {
	dir := t.TempDir()
	var ports loopback.Ports
	hub, err := testbed.NewHub("demo", testbed.TunnelIP(0), filepath.Join(dir, "hub.key"))
	if err != nil {
		t.Fatal(err)
	}
	offline, err := testbed.NewHub("offline1", testbed.TunnelIP(1), "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := testbed.NewRelay(&ports, dir, "relay", testbed.RelayOptions{UDP: true, ReleasesDir: dir}, []testbed.Hub{hub, offline})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := r.Config()
	if err != nil {
		t.Fatal(err)
	}
	if rc.AgentListen != r.AgentAddr() || rc.AgentListenUDP != r.AgentAddr() || rc.PortOffset != r.Offset || rc.ReleasesDir != dir ||
		len(rc.Hubs) != 2 || rc.Hubs[0].PublicKey != hub.Key.Public().String() || rc.Hubs[1].TunnelIP != "100.96.0.3" {
		t.Errorf("relay config %+v", rc)
	}
	a, err := testbed.NewAgent(&ports, filepath.Join(dir, "hub.toml"), r, hub, testbed.AgentSpec{
		Transport: "udp",
		Targets:   map[int]string{80: "127.0.0.1:1"},
		Extra:     "[dns]\nfallback = []\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := agent.LoadConfig(a.Conf)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Name != "demo" || ac.Relay != r.AgentAddr() || ac.RelayPublicKey != r.Key.Public().String() || ac.PrivateKeyFile != hub.KeyFile ||
		ac.Transport != "udp" || ac.UIListen != a.UI || ac.Proxy != "none" || ac.Targets.Ports["80"] != "127.0.0.1:1" || ac.DNS.Fallback == nil {
		t.Errorf("agent config %+v", ac)
	}
	if got := strings.Join(a.Args(testbed.Bins{Hubtunnel: "/bin/hubtunnel"}), " "); got != "/bin/hubtunnel run --config "+a.Conf {
		t.Errorf("agent args %q", got)
	}
}
