package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// withConfigFile is a config change that gives the relay a config file,
// relay.toml beside its key, for Reload to read; writeConfig writes it.
func withConfigFile(change func(*Config)) func(*Config) {
	return func(c *Config) {
		c.path = filepath.Join(filepath.Dir(c.PrivateKeyFile), "relay.toml")
		if change != nil {
			change(c)
		}
	}
}

// writeConfig writes tr's config file: the keys tr started with that need
// a restart, then the TOML lines top, then hubs as its [[hub]] list.
func (tr *testRelay) writeConfig(t *testing.T, top string, hubs ...HubConfig) {
	t.Helper()
	c := &tr.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "domain = %q\nagent_listen = %q\nagent_listen_udp = %q\npublic_listen = %q\nport_offset = %d\nprivate_key_file = %q\n",
		c.Domain, c.AgentListen, c.AgentListenUDP, c.PublicListen, c.PortOffset, c.PrivateKeyFile)
	if c.MetricsListen != "" {
		fmt.Fprintf(&b, "metrics_listen = %q\n", c.MetricsListen)
	}
	b.WriteString(top)
	for _, h := range hubs {
		fmt.Fprintf(&b, "\n[[hub]]\nname = %q\npublic_key = %q\ntunnel_ip = %q\nowner = %q\n", h.Name, h.PublicKey, h.TunnelIP, h.Owner)
	}
	writeTestFile(t, c.path, []byte(b.String()))
}

// TestReloadAppliesLimits: after SIGHUP a raised limit lets in what it
// refused before and a lowered one refuses what it let in, for the
// connections and requests that come next; a connection open beyond a
// lowered limit stays open and served.
func TestReloadAppliesLimits(t *testing.T) {
	tr := startTestRelayWith(t, false, withConfigFile(func(c *Config) {
		c.LimitConnsPerAddress = 2
		c.LimitRequestsPerSecond = 1 // bursts of 10
		c.LimitAgentPreHelloPerAddress = 4
	}), "a")
	hubs := slices.Clone(tr.cfg.Hubs)
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(tr.hubs.name("a")) })
	dial := func() net.Conn { return tr.dialPublic(t, 443, sni("a.localhost"), "127.0.0.1") }
	ask := func(c net.Conn) answer {
		t.Helper()
		return exchange(t, c, "GET /who HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n", 1)[0]
	}
	reload := func(top string) {
		t.Helper()
		tr.writeConfig(t, top, hubs...)
		if err := tr.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}

	held := []net.Conn{dial(), dial()}
	refused := dial()
	if got := ask(refused); got.code != 503 {
		t.Fatalf("a 3rd connection at limit_conns_per_address 2: %d %v; want 503", got.code, got.err)
	}
	// A refused connection counts until the relay has closed it, which
	// may come just after its answer.
	refused.Close()
	poll.Until(t, 10*time.Second, "the refused connection counted out", func() bool { return tr.connsFrom(refused) == len(held) })
	reload("limit_conns_per_address = 3\nlimit_requests_per_second = 1\nlimit_agent_prehello_per_address = 4\n")
	held = append(held, dial())
	if got := ask(held[2]); got.code != 200 || got.body != who("a") {
		t.Fatalf("a 3rd connection after raising limit_conns_per_address to 3: %d %q %v; want 200", got.code, got.body, got.err)
	}
	if line := tr.log.find("reload: applied"); !strings.Contains(line, "limit_conns_per_address") || strings.Contains(line, "limit_requests_per_second") {
		t.Errorf("the reload's log line: %q; want the changed limit named, and only it", line)
	}

	reload("limit_conns_per_address = 1\nlimit_requests_per_second = 1\nlimit_agent_prehello_per_address = 4\n")
	for i, c := range held {
		if got := ask(c); got.code != 200 {
			t.Fatalf("connection %d, open before limit_conns_per_address was lowered to 1: %d %v; want it still served", i, got.code, got.err)
		}
	}
	if got := ask(dial()); got.code != 503 {
		t.Fatalf("a new connection after lowering limit_conns_per_address to 1: %d %v; want 503", got.code, got.err)
	}

	// 10 requests a burst: spend them, then raise the rate.
	codes := map[int]int{}
	for range 12 {
		codes[ask(held[0]).code]++
	}
	if codes[429] == 0 {
		t.Fatalf("12 requests with 6 tokens left: %v; want some 429s", codes)
	}
	reload("limit_conns_per_address = 1\nlimit_requests_per_second = 1000\nlimit_agent_prehello_per_address = 4\n")
	tr.clock.advance(time.Second) // 1000 tokens now, 1 at the old rate
	codes = map[int]int{}
	for range 20 {
		codes[ask(held[0]).code]++
	}
	if codes[200] != 20 {
		t.Errorf("20 requests a second after raising limit_requests_per_second to 1000: %v; want all 200", codes)
	}

	// Before Hello: 3 connections from one address are fine at 4, a 3rd
	// is refused at 2, and the two open stay counted.
	addr := tr.AgentAddr().String()
	for range 3 {
		dialFrom(t, "127.0.0.2", addr).Write([]byte{0x00})
	}
	poll.Until(t, 10*time.Second, "3 agent connections before Hello", func() bool { return tr.agentGate.inUse() == 1+3 })
	reload("limit_conns_per_address = 1\nlimit_requests_per_second = 1000\nlimit_agent_prehello_per_address = 2\n")
	if !refusedFrom(t, "127.0.0.2", addr) {
		t.Error("a connection before Hello beyond a lowered limit_agent_prehello_per_address was not refused")
	}
	if n := tr.agentGate.inUse(); n != 1+3 {
		t.Errorf("%d agent connections after lowering limit_agent_prehello_per_address; want the 3 open before Hello and hub a's still open", n)
	}
}

// TestReloadFollowsHubList: after SIGHUP a hub added to the [[hub]] list
// connects and is served (to the owner the list names), and a hub taken
// out of the list is cut off and removed from the store; a hub in both
// stays online.
func TestReloadFollowsHubList(t *testing.T) {
	tr := startTestRelayWith(t, false, withConfigFile(nil), "a", "b")
	hubs := slices.Clone(tr.cfg.Hubs)
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", [32]byte{})
	online := func(name string) bool { h := tr.hubs.name(name); return h != nil && tr.hubs.online(h) }
	poll.Until(t, 10*time.Second, "hubs a and b online", func() bool { return online("a") && online("b") })
	a, b := tr.hubs.name("a"), tr.hubs.name("b")

	kc, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	tr.writeConfig(t, "", hubs[0], HubConfig{Name: "c", PublicKey: kc.Public().String(), TunnelIP: "100.96.0.4", Owner: "owner"})
	if err := tr.Reload(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "hub b's agent connection closed", func() bool { return tr.hubs.name("b") == nil && tr.claims(b) == 0 })
	if got := tr.ask(t, 443, "b.localhost", "/who", tr.cookie(true)); got.code != http.StatusNotFound {
		t.Errorf("hub b after it left the config: %d %q, want the 404 page", got.code, got.body)
	}
	if _, err := tr.Store().HubByName(context.Background(), "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("hub b is still in the store: %v", err)
	}
	startTestAgent(t, tr, kc, "100.96.0.4", [32]byte{})
	poll.Until(t, 10*time.Second, "hub c online", func() bool { return online("c") })
	if got := tr.ask(t, 443, "c.localhost", "/who", tr.cookie(true)); got.code != 200 || got.body != "100.96.0.4" {
		t.Errorf("hub c, added to the config, to its owner: %d %q", got.code, got.body)
	}
	if got := tr.ask(t, 443, "a.localhost", "/who", tr.auth("a")); got.code != 200 || tr.hubs.name("a") != a || !online("a") {
		t.Errorf("hub a, in both lists: %d %q", got.code, got.body)
	}
	if tr.logged("removed the hub the config no longer lists", "hub=b") != 1 || tr.logged("reload: applied", "keys=hub") != 1 {
		t.Error("the reload did not log the hub it removed and the key it applied")
	}
}

// connsFrom is how many public connections the relay counts from the
// address of c, a user's connection to it.
func (tr *testRelay) connsFrom(c net.Conn) int {
	l := tr.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[addrKey(c.LocalAddr())]; st != nil {
		return int(st.conns.Load())
	}
	return 0
}
