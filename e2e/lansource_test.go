package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestHubSeesTheLANAddressInANamespace runs relay, agent and a stand-in
// for the CCU's services in a network namespace of its own whose "LAN"
// (a veth interface, 10.77.0.2/24, default route through it) is real to
// the kernel. With the default config the agent must find that address
// (through the route, without sending anything), dial the services on it
// and from it, never from 127.0.0.1, and apply the CCU's firewall file:
// the script engine at "full access" answers, XML-RPC at "no access"
// never reaches the hub, and a change of the file applies at once.
func TestHubSeesTheLANAddressInANamespace(t *testing.T) {
	t.Parallel()
	needRoot(t, "for a network namespace")
	ip := need(t, "to make the network namespace", "ip")
	py := need(t, "to stand in for the hub's services and the user", "python3")
	echo, _ := filepath.Abs("testdata/peerecho.py")
	fetch, _ := filepath.Abs("testdata/fetchvia.py")

	ns, in := newNetns(t, ip, "ht-lan")
	dir := t.TempDir()
	// A veth pair with both ends inside: lan0 is the hub's LAN port.
	if out, err := runErr(ip, "-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"); err != nil {
		missing(t, "no veth interfaces in this kernel (%v: %s)", err, out)
	}
	run(t, ip, "-n", ns, "addr", "add", "10.77.0.2/24", "dev", "lan0")
	run(t, ip, "-n", ns, "link", "set", "lan1", "up")
	run(t, ip, "-n", ns, "link", "set", "lan0", "up")
	run(t, ip, "-n", ns, "route", "add", "default", "via", "10.77.0.1", "dev", "lan0")

	// The CCU's services on their own ports, on every address of the
	// namespace (nothing else listens there).
	hub := start(t, dir, "services", in(py, echo, "80", "2001", "8181")...)
	poll.Until(t, 10*time.Second, "the services to listen", func() bool { return strings.Contains(hub.logText(), "listening") })

	fw := filepath.Join(dir, "firewall.conf")
	writeFW := func(rega string) {
		writeFile(t, fw, "MODE = RESTRICTIVE\nIPs = 192.168.0.0/16\n\n[SERVICE REGA]\nId = REGA\nPorts = 1999 8181 41999 48181\nAccess = "+rega+
			"\n\n[SERVICE XMLRPC]\nId = XMLRPC\nPorts = 2000 2001 2002 2010 9292 42000 42001 42010 49292\nAccess = none\n\n")
	}
	writeFW("full")

	h, err := testbed.NewHub("nshub", testbed.TunnelIP(0), filepath.Join(dir, "hub.key"))
	if err != nil {
		t.Fatal(err)
	}
	relay, err := testbed.NewRelay(&ports, dir, "relay", testbed.RelayOptions{}, []testbed.Hub{h})
	if err != nil {
		t.Fatal(err)
	}
	rp := start(t, dir, "relay", in(relay.Args(bins)...)...)
	poll.Until(t, 10*time.Second, "the relay to listen", func() bool {
		if !rp.alive() {
			t.Fatalf("relay exited: %v", rp.err)
		}
		return strings.Contains(rp.logText(), testbed.RelayReady)
	})
	conf := filepath.Join(dir, "hub.toml")
	// No [targets]: the default targets on 127.0.0.1 and local_source "auto".
	writeFile(t, conf, fmt.Sprintf(`name = "nshub"
relay = %q
relay_public_key = %q
private_key_file = %q
tunnel_ip = %q
ui_listen = "127.0.0.1:8099"
proxy = "none"

[ccu]
firewall_file = %q
`, relay.AgentAddr(), relay.Key.Public(), h.KeyFile, h.TunnelIP, fw))
	agent := start(t, dir, "agent", in(bin.hubtunnel, "run", "--config", conf)...)

	get := func(port int, path string) (int, string, bool) {
		scheme, host, auth := "https", "nshub.localhost", relay.AuthHeader("nshub")
		if port == 8099 {
			scheme, host, auth = "http", "127.0.0.1", ""
		} else {
			port += relay.Offset
		}
		args := in(py, fetch, "10", scheme, host, strconv.Itoa(port), path, auth)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		if err != nil {
			return 0, "", false
		}
		first, rest, _ := strings.Cut(string(out), "\n")
		code, _ := strconv.Atoi(first)
		return code, rest, true
	}
	poll.Until(t, 20*time.Second, "the agent to report state \"connected\"", func() bool {
		if !agent.alive() {
			t.Fatalf("agent exited: %v", agent.err)
		}
		code, body, ok := get(8099, "/api/status")
		return ok && code == 200 && strings.Contains(body, `"state": "connected"`)
	})

	for _, port := range []int{443, 44381} {
		code, body, ok := get(port, "/")
		if !ok || code != 200 || body != "10.77.0.2" {
			t.Errorf("tunnel port %d: the hub saw the connection come from %q (status %d, ok %v), want 10.77.0.2", port, body, code, ok)
		}
	}
	if code, body, ok := get(4431, "/"); ok && code == 200 {
		t.Errorf("XML-RPC at \"no access\" answered: %d %q", code, body)
	}
	writeFW("none")
	if code, body, ok := get(44381, "/"); ok && code == 200 {
		t.Errorf("the script engine answered after the owner set it to \"no access\": %d %q", code, body)
	}
	log := hub.logText()
	if strings.Contains(log, "2001 from") || strings.Contains(log, "from 127.") || strings.Count(log, "8181 from") != 1 {
		t.Errorf("what reached the hub:\n%s\nwant one connection to 8181 and one to 80, both from 10.77.0.2", log)
	}
	_, status, _ := get(8099, "/api/status")
	if !strings.Contains(status, `"refused": 2`) {
		t.Errorf("status does not count the 2 refusals: %s", status)
	}
}
