package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// The relay opens its store at Start, beside the config by default, and
// the hubs it serves are the store's.
func TestStartImportsTheConfigsHubsIntoTheStore(t *testing.T) {
	tr := startTestRelay(t, false, "a", "b")
	db := tr.Store()
	if db == nil || db.Where() != filepath.Join(filepath.Dir(tr.cfg.PrivateKeyFile), "relay.db") {
		t.Fatalf("store at %v", db)
	}
	for name, h := range tr.hubs.all() {
		sh, err := db.HubByKey(context.Background(), h.key.String())
		if err != nil || sh.Name != name || sh.TunnelIP != h.ip.String() {
			t.Fatalf("hub %s in the store: %+v, %v", name, sh, err)
		}
	}
	tr.Close()
	if _, err := db.Hubs(context.Background()); err == nil {
		t.Fatal("the store is still open after Close")
	}
}

// importConfig validates a relay config for hubs (name → key number) in
// dir and runs the relay's store import on it.
func importConfig(t *testing.T, dir string, keys map[int]vpn.PrivateKey, hubs ...HubConfig) (*Server, []string, error) {
	t.Helper()
	for i := range hubs {
		n := 0
		fmt.Sscanf(hubs[i].PublicKey, "key%d", &n)
		if keys[n] == (vpn.PrivateKey{}) {
			k, err := vpn.GeneratePrivateKey()
			if err != nil {
				t.Fatal(err)
			}
			keys[n] = k
		}
		hubs[i].PublicKey = keys[n].Public().String()
	}
	cfg := Config{Domain: "localhost", PrivateKeyFile: filepath.Join(dir, "relay.key"), Hubs: hubs}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	s, err := New(cfg, "test", func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	err = s.openStore()
	t.Cleanup(func() { s.Close() })
	return s, lines, err
}

func TestStoreImportAddsAndUpdatesButNeverDeletes(t *testing.T) {
	dir := t.TempDir()
	keys := map[int]vpn.PrivateKey{}
	ctx := context.Background()
	s, lines, err := importConfig(t, dir, keys, HubConfig{Name: "a", PublicKey: "key1", TunnelIP: "100.96.0.2"}, HubConfig{Name: "b", PublicKey: "key2", TunnelIP: "100.96.0.3"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), `added="a, b" updated=none unchanged=0`) {
		t.Fatalf("log: %q", lines)
	}
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, "relay.db"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("relay.db: %v %v", fi, err)
	}

	// b left the config, a has a new key, c is new.
	s, lines, err = importConfig(t, dir, keys, HubConfig{Name: "a", PublicKey: "key4", TunnelIP: "100.96.0.2"}, HubConfig{Name: "c", PublicKey: "key3", TunnelIP: "100.96.0.4"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "added=c updated=a unchanged=0") {
		t.Fatalf("log: %q", lines)
	}
	hubs, err := s.Store().Hubs(ctx)
	if err != nil || len(hubs) != 3 {
		t.Fatalf("hubs after the second import: %+v %v", hubs, err)
	}
	if hubs[0].Name != "a" || hubs[0].PublicKey != keys[4].Public().String() {
		t.Fatalf("a: %+v", hubs[0])
	}
	s.Close()

	// A config hub with the key of a hub that is only in the store (b)
	// stops the relay: the registry and the store would disagree on who
	// that key is.
	_, _, err = importConfig(t, dir, keys, HubConfig{Name: "d", PublicKey: "key2", TunnelIP: "100.96.0.9"})
	if !errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("a key that is b's in the store: %v", err)
	}
}

func TestConfigStoreDefaultsAndPaths(t *testing.T) {
	for _, tc := range []struct{ dir, key, in, want string }{
		{"/etc/hubrelay", "/var/lib/relay.key", "", "/etc/hubrelay/relay.db"},
		{"", "/var/lib/hubrelay/relay.key", "", "/var/lib/hubrelay/relay.db"},
		{"/etc/hubrelay", "k", "data/relay.db", "/etc/hubrelay/data/relay.db"},
		{"/etc/hubrelay", "k", "/srv/relay.db", "/srv/relay.db"},
		{"/etc/hubrelay", "k", "postgres://relay@db/hubs", "postgres://relay@db/hubs"},
	} {
		c := Config{Domain: "x", PrivateKeyFile: tc.key, Store: tc.in, dir: tc.dir}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.Store != tc.want {
			t.Errorf("store %q in %q: %q, want %q", tc.in, tc.dir, c.Store, tc.want)
		}
	}
}

// TestLostKeyIsNotReplaced: a relay whose key file is gone while its store
// knows hubs that connected with that key refuses to start, says why, and
// leaves no new key behind; before any hub has connected, a missing key is
// simply made.
func TestLostKeyIsNotReplaced(t *testing.T) {
	tr := startTestRelay(t, false, "a", "b")
	cfg := tr.cfg
	if err := tr.Store().HubSeen(context.Background(), "a", store.AgentInfo{Version: "1"}); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	if err := os.Remove(cfg.PrivateKeyFile); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start()
	if err == nil || !strings.Contains(err.Error(), "1 hub(s) in the store have connected") || !strings.Contains(err.Error(), "Restore the key file") {
		s.Close()
		t.Fatalf("start without the key: %v", err)
	}
	if _, err := os.Stat(cfg.PrivateKeyFile); !os.IsNotExist(err) {
		t.Fatalf("a refused start left a key file behind: %v", err)
	}

	fresh := startTestRelay(t, false, "a") // never connected: the key is made
	if _, err := os.Stat(fresh.cfg.PrivateKeyFile); err != nil {
		t.Fatal(err)
	}
}
