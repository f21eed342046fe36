package agent

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	bed "github.com/hubtunnel/hubtunnel/testbed"
)

// copyFixture puts the ccufirewall fixture name at path ("" removes it).
func copyFixture(t *testing.T, name, path string) {
	t.Helper()
	if name == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(filepath.Join("..", "ccufirewall", "testdata", name))
	if err != nil {
		data = []byte(name) // inline content
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// attack sends what an attacker sends through the relay: a HomeMatic
// script to the script engine (44381 → 8181) or an XML-RPC call to
// BidCos-RF (4431 → 2001), or a WebUI page (443 → 80), with the hub's app
// token, so that the relay lets it through and the hub's firewall alone
// decides. It reports whether the hub's answer came back.
func attack(tb *testbed, hub, what string) (bool, string) {
	c := bed.LoopbackClient(false, 10*time.Second)
	var port int
	var req *http.Request
	switch what {
	case "script":
		port = 44381
		req, _ = http.NewRequest("POST", tb.bed.Relay.TokenURLScheme("https", hub, port, "/tclrega.exe"), strings.NewReader(`Write("owned");`))
	case "rf":
		port = 4431
		req, _ = http.NewRequest("POST", tb.bed.Relay.TokenURLScheme("https", hub, port, "/"), strings.NewReader(`<?xml version="1.0"?><methodCall><methodName>listDevices</methodName><params></params></methodCall>`))
	default:
		port = 443
		req, _ = http.NewRequest("GET", tb.bed.Relay.TokenURLScheme("https", hub, port, "/"), nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for b.Len() < 1<<20 {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	body := b.String()
	switch what {
	case "script":
		return resp.StatusCode == 200 && strings.HasPrefix(body, "owned"), resp.Status + " " + body
	case "rf":
		return resp.StatusCode == 200 && strings.Contains(body, "<methodResponse>"), resp.Status
	}
	return resp.StatusCode == 200 && strings.Contains(body, "HomeMatic WebUI"), resp.Status
}

// TestCCUFirewallRefusesWhatTheLANCannotDo: the owner's firewall levels
// apply to tunnel users as to a LAN client with the relay's tunnel address:
// "no access", and "restricted" without the relay's address in the ranges,
// never reach the hub (ccusim counts the connections that reach it), "full
// access" does, the WebUI always does. Each change of the file applies to
// the next connection, without a restart.
//
// Before the agent applied the settings, the first row's script ran on the
// hub: see the commit that added this test.
func TestCCUFirewallRefusesWhatTheLANCannotDo(t *testing.T) {
	fwFile := filepath.Join(t.TempDir(), "firewall.conf")
	tb := newTestbedWith(t, testbedOpts{config: func(c *Config) { c.CCU.FirewallFile = &fwFile }}, "alpha")
	a := tb.agents["alpha"]

	tests := []struct {
		file          string // a ccufirewall fixture, inline content, or "" for no file
		script, rf    bool   // reach the hub?
		webui         bool
		status, error string // the status API's source, and part of its error
	}{
		{"high.conf", false, false, true, "file", ""},
		{"medium.conf", false, false, true, "file", ""},
		{"restricted-mostopen.conf", false, false, true, "file", ""},
		{"none-mostopen.conf", false, false, true, "file", ""},
		{"low.conf", false, true, true, "file", ""},
		{"full-restrictive.conf", true, true, true, "file", ""},
		{"restricted-relay-listed.conf", true, true, true, "file", ""},
		{"userports.conf", true, false, true, "file", ""},
		{"", false, false, true, "defaults", ""},
		{"MODE = MOST_OPEN\n[SERVICE REGA]\nId = REGA\nAccess = al\n", false, false, true, "lockdown", "Access"},
		{"MODE = MOST_OPEN\n[SERVICE REGA]\nId = REGA\nAccess = full", false, false, true, "lockdown", "newline"},
	}
	for _, tt := range tests {
		copyFixture(t, tt.file, fwFile)
		for _, what := range []struct {
			service, name string
			want          bool
		}{{"script", "script", tt.script}, {"rf", "rf", tt.rf}, {"webui", "webui", tt.webui}} {
			before := len(tb.sim.Peers(what.service))
			refusedBefore := a.ccu.refused.Load()
			got, detail := attack(tb, "alpha", what.name)
			reached := len(tb.sim.Peers(what.service)) - before
			if got != what.want || (reached > 0) != what.want {
				t.Errorf("%.40q: %s through the tunnel: answered %v (%s), %d connections reached the hub; want %v",
					tt.file, what.name, got, detail, reached, what.want)
			}
			if !what.want && a.ccu.refused.Load() == refusedBefore {
				t.Errorf("%.40q: %s refused but not counted", tt.file, what.name)
			}
		}
		st := a.Status().CCUFirewall
		if st == nil || st.Source != tt.status || !strings.Contains(st.Error, tt.error) || (tt.error == "") != (st.Error == "") {
			t.Errorf("%.40q: status %+v, want source %q and an error with %q", tt.file, st, tt.status, tt.error)
		}
	}
}

// TestCCUFirewallOffByDefaultOffACCU: without the CCU's files the agent
// applies nothing ("off"), and with them it defaults to the CCU's path.
func TestCCUFirewallDefault(t *testing.T) {
	root := t.TempDir()
	c := CCUConfig{}
	if err := c.validate(root); err != nil || c.firewallFile != "" {
		t.Fatalf("no CCU: %q %v, want off", c.firewallFile, err)
	}
	os.MkdirAll(filepath.Join(root, "lib"), 0o755)
	os.WriteFile(filepath.Join(root, "lib", "libfirewall.tcl"), nil, 0o644)
	if err := c.validate(root); err != nil || c.firewallFile != filepath.Join(root, "etc/config/firewall.conf") {
		t.Fatalf("a CCU: %q %v, want its firewall.conf", c.firewallFile, err)
	}
	for _, off := range []string{"", "off"} {
		c := CCUConfig{FirewallFile: &off}
		if err := c.validate(root); err != nil || c.firewallFile != "" {
			t.Errorf("%q: %q %v, want off", off, c.firewallFile, err)
		}
	}
	rel := "firewall.conf"
	c = CCUConfig{FirewallFile: &rel}
	if err := c.validate(root); err == nil || !strings.Contains(err.Error(), "ccu.firewall_file") {
		t.Errorf("a relative path: %v, want an error naming ccu.firewall_file", err)
	}
}

// TestLocalTargetsSeeTheLANAddress: with local_source "auto" the hub's
// services see the agent's connections come from the hub's LAN address,
// never from 127.0.0.1. 127.0.0.2 stands in for the LAN address (the
// finder is injected; tests dial loopback only).
func TestLocalTargetsSeeTheLANAddress(t *testing.T) {
	lan := netip.MustParseAddr("127.0.0.2")
	// A second hub whose services listen on the "LAN address" only, behind
	// targets on the default host (bare ports): the agent must dial the
	// LAN address's port, since 127.0.0.1 has nothing there.
	onLAN := ccusim.New(ccusim.Config{Host: lan.String()})
	if err := onLAN.Start(); err != nil {
		t.Fatal(err)
	}
	defer onLAN.Close()
	port := func(svc string) string {
		ap := netip.MustParseAddrPort(onLAN.Addr(svc))
		return strconv.Itoa(int(ap.Port()))
	}
	tb := newTestbedWith(t, testbedOpts{
		lan: func() netip.Addr { return lan },
		config: func(c *Config) {
			if c.Name == "beta" {
				c.Targets.Ports = map[string]string{"80": port("webui"), "443": port("webui"), "8181": port("script")}
			}
		},
	}, "alpha", "beta")

	// alpha: the bed's explicit targets on 127.0.0.1 keep their host, but
	// not loopback's trust: the source is the LAN address.
	if ok, detail := attack(tb, "alpha", "webui"); !ok {
		t.Fatalf("alpha's WebUI: %s", detail)
	}
	peers := tb.sim.Peers("webui")
	if len(peers) == 0 || peers[len(peers)-1].Addr() != lan {
		t.Errorf("alpha's WebUI saw %v, want the last from %v", peers, lan)
	}
	// beta: default-host targets go to the LAN address itself.
	if ok, detail := attack(tb, "beta", "webui"); !ok {
		t.Fatalf("beta's WebUI (on %v only): %s", lan, detail)
	}
	for _, p := range onLAN.Peers("webui") {
		if p.Addr() != lan {
			t.Errorf("beta's WebUI saw a connection from %v, want %v", p, lan)
		}
	}
	if len(onLAN.Peers("webui")) != 1 {
		t.Errorf("beta's WebUI saw %d connections, want 1", len(onLAN.Peers("webui")))
	}
}

// TestLocalSourceLoopbackKeepsTheOldWay: local_source = "127.0.0.1" dials
// as before, for generic boxes.
func TestLocalSourceLoopbackKeepsTheOldWay(t *testing.T) {
	tb := newTestbedWith(t, testbedOpts{
		lan:    func() netip.Addr { t.Error("the finder ran with local_source 127.0.0.1"); return netip.Addr{} },
		config: func(c *Config) { c.Targets.LocalSource = "127.0.0.1" },
	}, "alpha")
	if ok, detail := attack(tb, "alpha", "webui"); !ok {
		t.Fatal(detail)
	}
	poll.Until(t, time.Second, "a peer", func() bool { return len(tb.sim.Peers("webui")) > 0 })
	if p := tb.sim.Peers("webui"); p[len(p)-1].Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("peer %v, want 127.0.0.1", p)
	}
}
