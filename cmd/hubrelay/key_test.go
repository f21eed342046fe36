package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/vpn"
)

// key rotate makes a next key beside the relay's; promote refuses while a
// hub has not learned it, and then swaps the files, keeping the old key.
func TestKeyRotateAndPromote(t *testing.T) {
	r := newTestRelay(t, "", "home")
	keyFile := filepath.Join(r.dir, "relay.key")
	cur, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := vpn.SavePrivateKey(keyFile, cur); err != nil {
		t.Fatal(err)
	}
	r.fails("there is no next key", "key", "promote")
	out := r.ok("key", "rotate")
	next, err := vpn.LoadPrivateKey(keyFile + ".next")
	if err != nil || !strings.Contains(out, next.Public().String()) {
		t.Fatalf("rotate printed %q; next key file: %v", out, err)
	}
	r.fails("there is a next key already", "key", "rotate")
	if out := r.ok("key", "show"); !strings.Contains(out, cur.Public().String()) || !strings.Contains(out, next.Public().String()) {
		t.Fatalf("show: %q", out)
	}
	// Hub home has not been seen since: promoting would strand it.
	r.fails("home", "key", "promote")
	if k, _ := vpn.LoadPrivateKey(keyFile); k != cur {
		t.Fatal("a refused promote changed the key")
	}
	// The next key file is older than the hub's last visit.
	past := time.Now().Add(-time.Hour)
	os.Chtimes(keyFile+".next", past, past)
	r.now = time.Now()
	// Seen since (its agent went away), but it did not ask for the keys.
	if err := r.store().HubOffline(context.Background(), "home"); err != nil {
		t.Fatal(err)
	}
	r.fails("home", "key", "promote")
	if err := r.store().HubLearnedKeys(context.Background(), "home"); err != nil {
		t.Fatal(err)
	}
	out = r.ok("key", "promote")
	if k, _ := vpn.LoadPrivateKey(keyFile); k != next || !strings.Contains(out, "Restart the relay") {
		t.Fatalf("after promote the key file holds another key; printed %q", out)
	}
	if k, _ := vpn.LoadPrivateKey(keyFile + ".old"); k != cur {
		t.Fatal("the old key was not kept")
	}
	if _, err := os.Stat(keyFile + ".next"); !os.IsNotExist(err) {
		t.Fatal("the next key file is still there")
	}
}
