package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/dnsfix/dnsfixtest"
	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestRelayByNameFritzBoxNXDOMAIN: the agent knows its relay by name; the
// hub's resolver (a dnsmasq playing the FritzBox) says NXDOMAIN for it, the
// public resolver (another dnsmasq) knows it. The agent reaches the relay
// end to end, says where the address came from, and keeps it on disk: after
// a restart with both resolvers down it reaches the relay from the cache.
//
// The relay is on 127.0.0.1, so the public resolver's answer is a loopback
// address for a public name: suspicious, yet what the name's owner
// published, and dnsfix uses it when no resolver gives a public address
// (the relay is pinned by its key). No test-only switch is involved.
func TestRelayByNameFritzBoxNXDOMAIN(t *testing.T) {
	t.Parallel()
	const name = "relay.hubtunnel.test"
	fritz := dnsfixtest.StartDnsmasq(t, "127.0.0.2", "--address=/"+name+"/")
	public := dnsfixtest.StartDnsmasq(t, "127.0.0.3", "--address=/"+name+"/127.0.0.1")

	s := newHub(t, setupOpts{})
	opts := agentOpts{
		relay: fmt.Sprintf("%s:%d", name, s.agentPort),
		dns:   fmt.Sprintf("[dns]\nsystem = [%q]\nfallback = [%q]\ntimeout = \"500ms\"\n", fritz.Addr, public.Addr),
	}
	s.startAgent(opts)
	s.waitConnected(30 * time.Second)
	s.mustGetWebUI()
	if st, err := s.status(); err != nil || st.DNSSource != "fallback" || strings.Join(st.DNSAnswer, ",") != "127.0.0.1" {
		t.Errorf("status: dns_source %q, dns_answer %v (%v); want fallback, [127.0.0.1]", st.DNSSource, st.DNSAnswer, err)
	}
	fritz.WaitAsked(t, name)
	public.WaitAsked(t, name)

	// What a hub owner runs to see why.
	out := run(t, bin.hubtunnel, "dns", "--config", filepath.Join(s.dir, "hub.toml"))
	for _, want := range []string{"NXDOMAIN", "chosen: 127.0.0.1 from fallback (" + public.Addr + ")", "why: "} {
		if !strings.Contains(out, want) {
			t.Errorf("hubtunnel dns: no %q in\n%s", want, out)
		}
	}

	cache := readFileString(filepath.Join(s.dir, "dns-cache.json"))
	if !strings.Contains(cache, `"127.0.0.1"`) {
		t.Fatalf("dns-cache.json: %q", cache)
	}

	// A reboot during a DNS outage.
	s.agent.stop(t)
	fritz.Stop()
	public.Stop()
	s.startAgent(opts)
	s.waitConnected(30 * time.Second)
	s.mustGetWebUI()
	if st, err := s.status(); err != nil || st.DNSSource != "cache" || strings.Join(st.DNSAnswer, ",") != "127.0.0.1" {
		t.Errorf("after the restart: dns_source %q, dns_answer %v (%v); want cache, [127.0.0.1]", st.DNSSource, st.DNSAnswer, err)
	}
	if !strings.Contains(s.agent.logText(), "from cache") {
		t.Errorf("the agent's log does not say it used the cache")
	}
}

// TestCorruptDNSCacheSurvived: the agent starts with a damaged cache file,
// warns, and still reaches its relay through the resolvers.
func TestCorruptDNSCacheSurvived(t *testing.T) {
	t.Parallel()
	const name = "relay.hubtunnel.test"
	public := dnsfixtest.StartDnsmasq(t, "127.0.0.3", "--address=/"+name+"/127.0.0.1")
	s := newHub(t, setupOpts{})
	writeFile(t, filepath.Join(s.dir, "dns-cache.json"), "{\"version\":1,\"names\":{\x00")
	s.startAgent(agentOpts{
		relay: fmt.Sprintf("%s:%d", name, s.agentPort),
		dns:   fmt.Sprintf("[dns]\nsystem = [%q]\nfallback = [%q]\ntimeout = \"500ms\"\n", dnsfixtest.Closed(t, "127.0.0.2"), public.Addr),
	})
	s.waitConnected(30 * time.Second)
	if !strings.Contains(s.agent.logText(), "warning: ignored the unusable cache file") {
		t.Errorf("no warning about the corrupt cache file in the agent's log")
	}
	data, err := os.ReadFile(filepath.Join(s.dir, "dns-cache.json"))
	var cf map[string]any
	if err != nil || json.Unmarshal(data, &cf) != nil {
		t.Errorf("the cache file was not rewritten with the good answer: %v %q", err, data)
	}
}

// TestForgedDNSAnswerNeverCached: a resolver pointing the relay's name at a
// listener that is not the relay (a DNS hijack) costs the connection but
// never lands in the cache file: only an address whose connection completed
// a WireGuard handshake with the pinned relay key is kept. With the true
// answer, the relay's address is kept once the tunnel is up.
func TestForgedDNSAnswerNeverCached(t *testing.T) {
	t.Parallel()
	const name = "relay.hubtunnel.test"
	s := newHub(t, setupOpts{})
	cache := filepath.Join(s.dir, "dns-cache.json")

	// The impostor: takes the connection, reads what the agent says,
	// answers nothing a WireGuard peer would accept.
	impostor, err := net.Listen("tcp", fmt.Sprintf("127.0.0.5:%d", s.agentPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { impostor.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := impostor.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte("\x00\x06\x02forged")) // a "handshake response" that is not one
				c.Read(buf)
			}()
		}
	}()
	forger := dnsfixtest.StartDnsmasq(t, "127.0.0.6", "--address=/"+name+"/127.0.0.5")
	opts := agentOpts{
		relay: fmt.Sprintf("%s:%d", name, s.agentPort),
		dns:   fmt.Sprintf("[dns]\nsystem = [%q]\nfallback = [%q]\ntimeout = \"500ms\"\n", dnsfixtest.Closed(t, "127.0.0.2"), forger.Addr),
	}
	s.startAgent(opts)
	poll.Until(t, 60*time.Second, "the agent to dial the impostor twice", func() bool { return accepted.Load() >= 2 })
	if st, err := s.status(); err != nil || st.State == "connected" {
		t.Fatalf("status with only the impostor: %q, %v", st.State, err)
	}
	if data, err := os.ReadFile(cache); !os.IsNotExist(err) {
		t.Fatalf("the forged answer reached dns-cache.json: %v %q", err, data)
	}
	s.agent.stop(t)
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Fatalf("dns-cache.json after the agent stopped: %v", err)
	}

	// The true answer: the relay's address is kept once its key answered.
	public := dnsfixtest.StartDnsmasq(t, "127.0.0.7", "--address=/"+name+"/127.0.0.1")
	opts.dns = fmt.Sprintf("[dns]\nsystem = [%q]\nfallback = [%q]\ntimeout = \"500ms\"\n", dnsfixtest.Closed(t, "127.0.0.2"), public.Addr)
	s.startAgent(opts)
	s.waitConnected(30 * time.Second)
	poll.Until(t, 15*time.Second, "the relay's address in dns-cache.json", func() bool {
		return strings.Contains(readFileString(cache), `"127.0.0.1"`)
	})
	if c := readFileString(cache); strings.Contains(c, "127.0.0.5") {
		t.Errorf("dns-cache.json holds the impostor's address: %s", c)
	}
}
