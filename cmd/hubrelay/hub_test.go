package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

// hub add serves a new hub with the next free tunnel address (or the one
// given) and an owner; hub remove forgets it. Both count as changes a
// running relay follows, and both are audited; bad input changes nothing.
func TestHubAddAndRemove(t *testing.T) {
	r := newTestRelay(t, "", "home")
	key := testPublicKey(t)
	out := r.ok("hub", "add", "cabin", "--key", key, "--owner", "alice")
	if !strings.Contains(out, "added hub cabin (tunnel address 100.96.0.3, owner alice)") || !strings.Contains(out, `tunnel_ip = "100.96.0.3"`) {
		t.Fatalf("hub add printed:\n%s", out)
	}
	r.lastRecord(store.KindGrant, "cabin", "hub added, tunnel address 100.96.0.3, owner alice")
	db := r.store()
	h, err := db.HubByName(context.Background(), "cabin")
	if err != nil || h.PublicKey != key || h.TunnelIP != "100.96.0.3" || h.Owner != "alice" {
		t.Fatalf("hub in the store: %+v %v", h, err)
	}
	r.ok("hub", "add", "barn", "--key", testPublicKey(t), "--tunnel-ip", "100.96.7.7")

	r.fails(`there is a hub "cabin" already`, "hub", "add", "cabin", "--key", testPublicKey(t))
	r.fails("belongs to another hub", "hub", "add", "shed", "--key", key)
	r.fails("belongs to another hub", "hub", "add", "shed", "--key", testPublicKey(t), "--tunnel-ip", "100.96.0.3")
	r.fails("--key", "hub", "add", "shed", "--key", "not a key")
	r.fails("give the hub's public key with --key", "hub", "add", "shed")
	r.fails("use lower-case letters", "hub", "add", "Shed!", "--key", testPublicKey(t))
	r.fails("other than the relay's own", "hub", "add", "shed", "--key", testPublicKey(t), "--tunnel-ip", "100.96.0.1")
	r.fails(`there is no user "nobody"`, "hub", "add", "shed", "--key", testPublicKey(t), "--owner", "nobody")

	before := r.revision()
	out = r.ok("hub", "remove", "cabin")
	if !strings.Contains(out, "removed hub cabin") || strings.Contains(out, "warning") || r.revision() <= before {
		t.Fatalf("hub remove: %q (revision %d → %d)", out, before, r.revision())
	}
	r.lastRecord(store.KindRevoke, "cabin", "hub removed with its grants and tokens")
	r.fails(`there is no hub "cabin"`, "hub", "remove", "cabin")
	if out := r.ok("hub", "remove", "home"); !strings.Contains(out, "the config's [[hub]] list still names home") {
		t.Fatalf("removing a hub the config names: %q", out)
	}
}

// hub list shows each hub's state as the relay recorded it — online since
// when and over which transport, offline, or disabled — with when it was
// last seen and what its agent said of itself.
func TestHubListShowsOnlineState(t *testing.T) {
	r := newTestRelay(t, "", "barn", "cabin", "home")
	ctx := context.Background()
	db := r.store()
	since := time.Date(2026, 6, 1, 10, 30, 0, 0, time.UTC)
	if err := db.HubOnline(ctx, "home", store.AgentInfo{Version: "0.4.0", Model: "RaspberryMatic", Firmware: "3.79.6"}, since, "tls"); err != nil {
		t.Fatal(err)
	}
	if err := db.HubOnline(ctx, "cabin", store.AgentInfo{Version: "0.3.1", Model: "CCU3", Firmware: "3.75.7"}, since, "tcp"); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(time.Hour)
	if err := db.HubOffline(ctx, "cabin"); err != nil {
		t.Fatal(err)
	}
	r.ok("hub", "disable", "barn")
	out := r.ok("hub", "list")
	want := "NAME   OWNER  STATE                          LAST SEEN         AGENT  MODEL           FIRMWARE  TRANSPORT\n" +
		"barn   -      disabled                       never             -      -               -         -\n" +
		"cabin  -      offline                        2026-06-01 14:00  0.3.1  CCU3            3.75.7    -\n" +
		"home   -      online since 2026-06-01 11:30  2026-06-01 13:00  0.4.0  RaspberryMatic  3.79.6    tls\n"
	if !strings.HasPrefix(out, want) {
		t.Fatalf("hub list:\n%s\nwant:\n%s", out, want)
	}
}
