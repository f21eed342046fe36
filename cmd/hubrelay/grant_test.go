package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

func TestGrantRevokeAndGrants(t *testing.T) {
	r := newTestRelay(t, "", "home", "cabin")
	ctx := context.Background()
	rev := r.revision()

	out := r.ok("grant", "tech", "home", "--until", "4h")
	if want := "tech may reach webui on hub home until 2026-06-01 17:00\n"; out != want {
		t.Fatalf("grant: %q, want %q", out, want)
	}
	if r.revision() == rev {
		t.Fatal("a grant did not count as a change: a running relay would not see it")
	}
	r.lastRecord(store.KindGrant, "home", "tech may reach webui until 2026-06-01T16:00:00Z")
	db := r.store()
	reach, err := db.Access(ctx, mustUser(t, db, "tech").ID, "home")
	if err != nil || reach != store.PortWebUI {
		t.Fatalf("tech reaches %v on home, %v; want webui", reach, err)
	}

	// A second grant replaces the first, and says what it replaced.
	out = r.ok("grant", "tech", "home", "--ports", "xmlrpc,script", "--until", "2026-12-01 18:00")
	if !strings.Contains(out, "tech may reach xmlrpc,script on hub home until 2026-12-01 18:00 (before: webui until 2026-06-01 17:00)") {
		t.Fatalf("second grant: %q", out)
	}
	r.lastRecord(store.KindGrant, "home", "tech may reach xmlrpc,script until 2026-12-01T17:00:00Z (was webui until 2026-06-01T16:00:00Z)")
	r.ok("grant", "bob", "home", "--ports", "all")
	r.lastRecord(store.KindGrant, "home", "bob may reach webui,xmlrpc,script for good")
	r.ok("grant", "tech", "cabin", "--until", "1h")

	out = r.ok("grants")
	for _, want := range []string{
		"USER  HUB    PORTS                UNTIL             STATE",
		"tech  cabin  webui                2026-06-01 14:00  active",
		"bob   home   webui,xmlrpc,script  no end            active",
		"tech  home   xmlrpc,script        2026-12-01 18:00  active",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("grants lacks %q:\n%s", want, out)
		}
	}
	// An hour and a half on, the grant on cabin has expired; it stays listed.
	r.now = r.now.Add(90 * time.Minute)
	out = r.ok("grants", "--user", "tech")
	if !strings.Contains(out, "tech  cabin  webui          2026-06-01 14:00  expired\n") || strings.Contains(out, "bob") {
		t.Fatalf("grants --user tech:\n%s", out)
	}
	out = r.ok("grants", "--hub", "home", "--user", "bob")
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "bob   home") {
		t.Fatalf("grants --hub home --user bob:\n%s", out)
	}
	if out := r.ok("grants", "--hub", "cabin", "--user", "bob"); !strings.Contains(out, "no grants") {
		t.Fatalf("no matching grants: %q", out)
	}

	rev = r.revision()
	out = r.ok("revoke", "tech", "home")
	if !strings.Contains(out, "tech no longer reaches hub home") {
		t.Fatalf("revoke: %q", out)
	}
	if r.revision() == rev {
		t.Fatal("a revoke did not count as a change")
	}
	r.lastRecord(store.KindRevoke, "home", "tech's grant (xmlrpc,script until 2026-12-01T17:00:00Z) revoked")
	if reach, _ := db.Access(ctx, mustUser(t, db, "tech").ID, "home"); reach != 0 {
		t.Fatalf("tech still reaches %v on home", reach)
	}

	r.ok("hub", "owner", "home", "alice")
	for _, tc := range []struct {
		want string
		args []string
	}{
		{`there is no user "dave" (hubrelay user list shows them)`, []string{"grant", "dave", "home"}},
		{`there is no hub "attic" (hubrelay hub list shows them)`, []string{"grant", "tech", "attic"}},
		{`--ports "webui,ssh": give webui, xmlrpc, script or all`, []string{"grant", "tech", "home", "--ports", "webui,ssh"}},
		{`--ports "": give webui, xmlrpc, script or all`, []string{"grant", "tech", "home", "--ports", ""}},
		{`--until "next friday": give a time like`, []string{"grant", "tech", "home", "--until", "next friday"}},
		{"--until 2026-06-01 12:00 is in the past (it is 2026-06-01 14:30 now)", []string{"grant", "tech", "home", "--until", "2026-06-01 12:00"}},
		{"--until -2h: give a duration greater than zero", []string{"grant", "tech", "home", "--until", "-2h"}},
		{"alice owns hub home and reaches all of it already", []string{"grant", "alice", "home"}},
		{"usage:", []string{"grant", "tech"}},
		{"unknown option --for", []string{"grant", "tech", "home", "--for", "4h"}},
		{"tech has no grant on hub home (hubrelay grants --hub home lists its grants)", []string{"revoke", "tech", "home"}},
		{`there is no user "dave"`, []string{"revoke", "dave", "home"}},
		{`there is no hub "attic"`, []string{"revoke", "tech", "attic"}},
		{`there is no hub "attic"`, []string{"grants", "--hub", "attic"}},
		{`there is no user "dave"`, []string{"grants", "--user", "dave"}},
		{"usage:", []string{"grants", "home"}},
	} {
		r.fails(tc.want, tc.args...)
	}
}

func TestRevokeNamesTheTokensThatGoWithTheGrant(t *testing.T) {
	r := newTestRelay(t, "", "home")
	r.ok("grant", "tech", "home", "--ports", "xmlrpc")
	r.ok("token", "add", "home", "--user", "tech")
	if out := r.ok("revoke", "tech", "home"); !strings.Contains(out, "the 1 app token(s) tech made for it stop working with the grant") {
		t.Fatalf("revoke: %q", out)
	}
}

func mustUser(t *testing.T, db *store.Store, name string) store.User {
	t.Helper()
	u, err := db.UserByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestHubCommands(t *testing.T) {
	r := newTestRelay(t, "", "home", "cabin")
	ctx := context.Background()
	db := r.store()
	// The config's hubs are in the store before the relay ever ran.
	out := r.ok("hub", "list")
	for _, want := range []string{
		"NAME   OWNER  STATE    LAST SEEN  AGENT  MODEL  FIRMWARE  TRANSPORT\n",
		"cabin  -      offline  never      -      -      -         -\n",
		"home   -      offline  never      -      -      -         -\n",
		"as the relay recorded them",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("hub list lacks %q:\n%s", want, out)
		}
	}
	if err := db.HubSeen(ctx, "home", store.AgentInfo{Version: "0.4.0", Model: "RaspberryMatic", Firmware: "3.79.6.20250118"}); err != nil {
		t.Fatal(err)
	}

	out = r.ok("hub", "owner", "home", "alice")
	if out != "alice owns hub home now (before: nobody)\n" {
		t.Fatalf("owner: %q", out)
	}
	r.lastRecord(store.KindGrant, "home", "owner is now alice (was nobody)")
	rev := r.revision()
	out = r.ok("hub", "owner", "home", "bob")
	if !strings.Contains(out, "bob owns hub home now (before: alice); alice no longer reaches it unless granted") {
		t.Fatalf("new owner: %q", out)
	}
	if r.revision() == rev {
		t.Fatal("an owner change did not count as a change")
	}
	r.lastRecord(store.KindGrant, "home", "owner is now bob (was alice)")
	if reach, _ := db.Access(ctx, mustUser(t, db, "alice").ID, "home"); reach != 0 {
		t.Fatalf("the old owner still reaches %v", reach)
	}
	if out := r.ok("hub", "owner", "home", "bob"); out != "hub home's owner is bob already\n" {
		t.Fatalf("same owner: %q", out)
	}
	r.ok("hub", "owner", "cabin", "alice")
	out = r.ok("hub", "owner", "cabin", "--none")
	if !strings.Contains(out, "hub cabin has no owner now (it was alice's)") {
		t.Fatalf("--none: %q", out)
	}
	r.lastRecord(store.KindRevoke, "cabin", "owner is now nobody (was alice)")

	rev = r.revision()
	out = r.ok("hub", "disable", "home")
	if !strings.Contains(out, "disabled hub home: nobody reaches it") {
		t.Fatalf("disable: %q", out)
	}
	if r.revision() == rev {
		t.Fatal("disabling a hub did not count as a change")
	}
	r.lastRecord(store.KindRevoke, "home", "hub disabled: nobody reaches it")
	if reach, _ := db.Access(ctx, mustUser(t, db, "bob").ID, "home"); reach != 0 {
		t.Fatalf("the owner reaches a disabled hub: %v", reach)
	}
	n := len(r.audit())
	if out := r.ok("hub", "disable", "home"); out != "hub home is disabled already\n" || len(r.audit()) != n {
		t.Fatalf("disable twice: %q, %d records after %d", out, len(r.audit()), n)
	}
	out = r.ok("hub", "list")
	if !strings.Contains(out, "home   bob    disabled  2026-06-01 13:00  0.4.0  RaspberryMatic  3.79.6.20250118  -\n") {
		t.Fatalf("hub list:\n%s", out)
	}
	r.ok("hub", "enable", "home")
	r.lastRecord(store.KindGrant, "home", "hub enabled")
	if reach, _ := db.Access(ctx, mustUser(t, db, "bob").ID, "home"); reach != store.PortsAll {
		t.Fatalf("the owner reaches %v of an enabled hub", reach)
	}

	for _, tc := range []struct {
		want string
		args []string
	}{
		{`there is no hub "attic"`, []string{"hub", "owner", "attic", "alice"}},
		{`there is no user "dave"`, []string{"hub", "owner", "home", "dave"}},
		{"give a new owner or --none, not both", []string{"hub", "owner", "home", "alice", "--none"}},
		{"usage:", []string{"hub", "owner", "home"}},
		{`there is no hub "attic"`, []string{"hub", "disable", "attic"}},
		{`unknown command "delete"`, []string{"hub", "delete", "home"}},
		{"usage:", []string{"hub", "list", "home"}},
	} {
		r.fails(tc.want, tc.args...)
	}
}

func TestHubListSaysWhenTheConfigDisagreesWithTheStore(t *testing.T) {
	r := newTestRelay(t, "", "home")
	// A hub enrolled in the store holds the key the config gives home: the
	// relay would not start, and the CLI says so but still works.
	conf, err := readFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	key := between(conf, `public_key = "`, `"`)
	db := r.store()
	if err := db.RemoveHub(context.Background(), "home"); err != nil { // as newTestRelay's first command imported it
		t.Fatal(err)
	}
	if _, err := db.UpsertHub(context.Background(), store.HubSpec{Name: "enrolled", PublicKey: key, TunnelIP: "100.96.0.50"}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := r.run("hub", "list")
	if err != nil || !strings.Contains(errOut, "warning: the config's [[hub]] list does not agree with the store, and the relay will not start with it") ||
		!strings.Contains(errOut, `hub "home"`) || !strings.Contains(out, "enrolled") || strings.Contains(out, "home") {
		t.Fatalf("hub list with a conflicting config: %q, %q, %v", out, errOut, err)
	}
}
