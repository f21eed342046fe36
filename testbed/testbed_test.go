package testbed_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
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

// TestStoreHoldsHubsOwnerAndTokens: NewRelay leaves the relay's store with
// the config's hubs (so the relay's import at start finds them unchanged),
// all owned by the bed's owner, whose password logs in, and a token per
// hub that opens all of that hub's ports and no other hub.
func TestStoreHoldsHubsOwnerAndTokens(t *testing.T) {
	dir := t.TempDir()
	var ports loopback.Ports
	var hubs []testbed.Hub
	for i, name := range []string{"alpha", "beta"} {
		h, err := testbed.NewHub(name, testbed.TunnelIP(i), "")
		if err != nil {
			t.Fatal(err)
		}
		hubs = append(hubs, h)
	}
	r, err := testbed.NewRelay(&ports, dir, "relay", testbed.RelayOptions{}, hubs)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := r.Config(); err != nil || rc.Store != r.Store {
		t.Fatalf("the relay's config names store %q (%v); the bed prepared %q", rc.Store, err, r.Store)
	}

	ctx := context.Background()
	db, err := store.Open(ctx, r.Store, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.CheckPassword(ctx, r.Owner, r.OwnerPassword); err != nil || r.Owner != testbed.OwnerName {
		t.Errorf("owner %q cannot log in with the bed's password: %v", r.Owner, err)
	}
	for _, h := range hubs {
		sh, err := db.HubByName(ctx, h.Name)
		if err != nil || sh.PublicKey != h.Key.Public().String() || sh.TunnelIP != h.TunnelIP || sh.Owner != r.Owner {
			t.Errorf("hub %s in the store: %+v, %v; want key %s, tunnel IP %s, owner %s", h.Name, sh, err, h.Key.Public(), h.TunnelIP, r.Owner)
		}
		tok := r.Token(h.Name)
		if len(tok) != store.TokenLen || !strings.HasPrefix(tok, store.TokenPrefix) {
			t.Errorf("hub %s: token of %d characters; want %d starting %q", h.Name, len(tok), store.TokenLen, store.TokenPrefix)
		}
		st, err := db.VerifyToken(ctx, tok)
		if err != nil || st.Hub != h.Name || st.Reach != store.PortsAll {
			t.Errorf("hub %s: its token verifies as %+v, %v; want hub %s, all ports", h.Name, st, err, h.Name)
		}
		user, pass, ok := (&http.Request{Header: http.Header{"Authorization": {r.AuthHeader(h.Name)}}}).BasicAuth()
		if !ok || user != testbed.TokenUser || pass != tok {
			t.Errorf("hub %s: AuthHeader is not Basic %s:<its token>", h.Name, testbed.TokenUser)
		}
		u, err := url.Parse(r.TokenURLScheme("https", h.Name, 443, "/x"))
		if p, _ := u.User.Password(); err != nil || u.User.Username() != testbed.TokenUser || p != tok || u.Host != fmt.Sprintf("%s.localhost:%d", h.Name, 443+r.Offset) {
			t.Errorf("hub %s: TokenURLScheme %s does not carry its token", h.Name, testbed.Redacted(u.String()))
		}
	}
	if r.Token("nosuchhub") != "" {
		t.Errorf("a token for a hub the bed does not have")
	}
	if got := testbed.Redacted(r.TokenURL("alpha", 80, "/")); strings.Contains(got, r.Token("alpha")) {
		t.Errorf("Redacted shows the token: %s", got)
	}
	db.Close()

	var log strings.Builder
	var mu sync.Mutex
	s, err := r.StartServer("test", func(f string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&log, f+"\n", args...)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), "added=none updated=none unchanged=2") {
		t.Errorf("the relay's import at start changed the bed's hubs:\n%s", log.String())
	}
}
