package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// hubAPI is an HTTP client that reaches the relay's hub API through a's
// tunnel, as the agent's does.
func (a *testAgent) hubAPI(tr *testRelay) (*http.Client, string) {
	relay := netip.AddrPortFrom(tr.cfg.tunnelIP, hubAPIPort)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return a.stack.DialTCP(ctx, relay)
		},
	}}
	return c, "http://" + relay.String()
}

func postKey(t *testing.T, c *http.Client, url string, k vpn.PublicKey) (int, string) {
	t.Helper()
	body, _ := json.Marshal(KeyRequest{PublicKey: k.String()})
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHubReplacesItsKey: a hub announces a new key and commits it through
// its tunnel; its old connection is closed, the old key no longer
// connects, the new one does, and the other hub never notices.
func TestHubReplacesItsKey(t *testing.T) {
	tr := startTestRelay(t, false, "a", "b")
	online := func(name string) bool { h := tr.hubs.name(name); return h != nil && tr.hubs.online(h) }
	agentA := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	agentB := startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", [32]byte{})
	poll.Until(t, 10*time.Second, "both hubs online", func() bool { return online("a") && online("b") })
	c, base := agentA.hubAPI(tr)

	resp, err := c.Get(base + "/hub/v1/relay-keys")
	if err != nil {
		t.Fatal(err)
	}
	var keys RelayKeys
	json.NewDecoder(resp.Body).Decode(&keys)
	resp.Body.Close()
	if keys.Current != tr.PublicKey().String() || keys.Next != "" || keys.Hub != "a" || !strings.HasPrefix(keys.URL, "https://a.localhost:") {
		t.Fatalf("relay keys: %+v", keys)
	}

	newKey, _ := vpn.GeneratePrivateKey()
	// Nothing is committed that was not announced, and no hub takes
	// another's key.
	if code, _ := postKey(t, c, base+"/hub/v1/key/commit", newKey.Public()); code != http.StatusConflict {
		t.Fatalf("commit without announce: %d", code)
	}
	if code, _ := postKey(t, c, base+"/hub/v1/key", tr.keys["b"].Public()); code != http.StatusConflict {
		t.Fatalf("announcing hub b's key: %d", code)
	}
	if code, body := postKey(t, c, base+"/hub/v1/key", newKey.Public()); code != 200 {
		t.Fatalf("announce: %d %s", code, body)
	}
	if got, _ := tr.get("a"); got != 200 || tr.hubs.name("a").key != tr.keys["a"].Public() {
		t.Fatalf("an announced key changed something: %d", got)
	}
	// The answer to the commit may or may not arrive: the relay replaces
	// the hub's peer right after.
	postKey(t, c, base+"/hub/v1/key/commit", newKey.Public())
	poll.Until(t, 2*time.Second, "hub a served with its new key", func() bool {
		h := tr.hubs.name("a")
		return h != nil && h.key == newKey.Public()
	})
	h := tr.hubs.name("a")
	poll.Until(t, time.Second, "the old key's connection closed", func() bool { return tr.claims(h) == 0 && !online("a") })
	if !tr.hubs.reconnecting(h) {
		t.Error("a hub that replaced its key must be waited for, as a restarting agent is")
	}
	agentA.Close()

	// The old key is refused; the new one connects and serves the hub.
	r := newFrames(tr.dialAgent(t, tr.keys["a"].Public()))
	r.Next() // the relay's Hello
	if p, err := r.Next(); err != nil || p[0] != wire.TypeError {
		t.Fatalf("the old key's Hello got %x, %v; want an Error frame", p, err)
	}
	agentNew := startTestAgent(t, tr, newKey, "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online with its new key", func() bool { return online("a") })
	if got, err := tr.get("a"); got != 200 {
		t.Fatalf("hub a after its new key: %d %v", got, err)
	}
	if got, err := tr.get("b"); got != 200 || !agentB.handshaken() {
		t.Fatalf("hub b meanwhile: %d %v", got, err)
	}
	stored, err := tr.Store().HubByName(context.Background(), "a")
	if err != nil || stored.PublicKey != newKey.Public().String() {
		t.Fatalf("store: %+v %v", stored, err)
	}
	if tr.logged(`msg="hub replaced its key" hub=a `) != 1 {
		t.Error("the relay did not log the key change")
	}

	// Another replacement within the minute is refused: each one makes
	// the relay re-check every open connection.
	c2, base2 := agentNew.hubAPI(tr)
	third, _ := vpn.GeneratePrivateKey()
	poll.Until(t, 10*time.Second, "the announce of a third key", func() bool {
		code, _ := postKey(t, c2, base2+"/hub/v1/key", third.Public())
		return code == 200
	})
	if code, _ := postKey(t, c2, base2+"/hub/v1/key/commit", third.Public()); code != http.StatusTooManyRequests {
		t.Errorf("a second key replacement within a minute: %d, want 429", code)
	}
	tr.clock.advance(time.Minute)
	postKey(t, c2, base2+"/hub/v1/key", third.Public())
	if code, body := postKey(t, c2, base2+"/hub/v1/key/commit", third.Public()); code != 200 {
		t.Errorf("a key replacement a minute later: %d %s", code, body)
	}
}

// TestUDPHubKeyChangeLeavesNoStaleAddress: once the store replaces a UDP
// hub's key, no address is tied to the hub the relay served before it,
// not even by a look at that hub's clock that comes late, so every packet
// of the hub's new sessions is counted into and out of one window (the
// crawl forget tells of). The hub then switches to its new key, as the
// agent does, and is served.
func TestUDPHubKeyChangeLeavesNoStaleAddress(t *testing.T) {
	tr, a := startUDPHub(t)
	u := tr.bind.udpIn
	tied := func(h *hub) (netip.AddrPort, bool) {
		u.mu.Lock()
		defer u.mu.Unlock()
		addr, ok := u.addr[h]
		if pe := u.peers[addr]; ok && (pe == nil || pe.hub != h) {
			t.Fatalf("the address %v of hub %q is another's in peers", addr, h.Name)
		}
		return addr, ok
	}
	old := tr.hubs.name("a")
	addr, ok := tied(old)
	if !ok {
		t.Fatal("the UDP hub's address is not known after its handshake")
	}

	newKey, _ := vpn.GeneratePrivateKey()
	if err := tr.Store().ReplaceHubKey(context.Background(), "a", newKey.Public().String()); err != nil {
		t.Fatal(err)
	}
	// syncHubs forgets right after it replaced the registry's hubs.
	poll.Until(t, 5*time.Second, "hub a served with its new key, its old one's address forgotten", func() bool {
		h := tr.hubs.name("a")
		_, stale := tied(old)
		return h != nil && h.key == newKey.Public() && !stale
	})
	u.mu.Lock()
	for at, pe := range u.peers {
		if pe.hub == old {
			t.Errorf("the address %v still counts into the window of the hub the relay no longer serves", at)
		}
	}
	u.mu.Unlock()
	u.tie(old, addr) // what udpClock.look does for a candidate read before the change
	if _, ok := tied(old); ok {
		t.Error("tie gave an address to a hub the relay no longer serves")
	}

	// The hub switches keys as the agent does (udpTransport.useKey).
	if err := a.dev.SetPrivateKey(newKey); err != nil {
		t.Fatal(err)
	}
	a.dev.Handshake(a.relayKey)
	h := tr.hubs.name("a")
	poll.Until(t, 10*time.Second, "hub a online with its new key", func() bool {
		_, ok := tied(h)
		return ok && tr.hubs.online(h)
	})
	if got, err := tr.get("a"); got != 200 {
		t.Fatalf("hub a after its key change: %d %v", got, err)
	}
	if at, _ := tied(h); at != addr {
		t.Errorf("hub a's address %v after its key change; it sent from %v", at, addr)
	}
}

// TestRelayAnnouncesItsNextKey: a next key beside the relay's key is
// announced to hubs, which pin it before it is used.
func TestRelayAnnouncesItsNextKey(t *testing.T) {
	next, _ := vpn.GeneratePrivateKey()
	tr := startTestRelayWith(t, false, func(c *Config) {
		if err := vpn.SavePrivateKey(NextKeyFile(c.PrivateKeyFile), next); err != nil {
			t.Fatal(err)
		}
	}, "a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online", a.handshaken)
	c, base := a.hubAPI(tr)
	resp, err := c.Get(base + "/hub/v1/relay-keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keys RelayKeys
	json.NewDecoder(resp.Body).Decode(&keys)
	if keys.Current != tr.PublicKey().String() || keys.Next != next.Public().String() {
		t.Fatalf("relay keys: %+v, want next %s", keys, next.Public())
	}
	if code, _ := postKey(t, c, base+"/hub/v1/nothing", next.Public()); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
}

// TestHubAPIRefusesHostileRequests: the key API takes only what it
// documents, and a hub sending anything else changes nothing.
func TestHubAPIRefusesHostileRequests(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online", a.handshaken)
	c, base := a.hubAPI(tr)
	for _, r := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/hub/v1/key", "not json", http.StatusBadRequest},
		{"POST", "/hub/v1/key", `{"public_key": "short"}`, http.StatusBadRequest},
		{"POST", "/hub/v1/key", `{"public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`, http.StatusBadRequest},
		{"POST", "/hub/v1/key", `{"public_key": "` + strings.Repeat("A", 4096) + `"}`, http.StatusBadRequest},
		{"GET", "/hub/v1/key", "", http.StatusNotFound},
		{"POST", "/hub/v1/relay-keys", "{}", http.StatusNotFound},
		{"GET", "/hub/v1/../../etc/passwd", "", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Errorf("%s %s %.40q: %d, want %d", r.method, r.path, r.body, resp.StatusCode, r.want)
		}
	}
	if h := tr.hubs.name("a"); h == nil || h.key != tr.keys["a"].Public() {
		t.Fatal("a refused request changed the hub's key")
	}
}
