package main

import (
	"context"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
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
	r.fails("--ttl is for enrollment codes", "hub", "add", "shed", "--key", testPublicKey(t), "--ttl", "1h")
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

// codeRE finds the code hub add prints on a line of its own.
var codeRE = regexp.MustCompile(`(?m)^    (\S+)$`)

// hub add without --key makes a one-time enrollment code with the relay's
// key, printed with how to use it; the code parses and is the one the
// running relay will accept (its secret derives from the stored seed and
// the relay's key). hub codes lists the codes with their state; hub
// withdraw takes a pending one back. No key file: a clear error, and no
// key is made.
func TestHubEnrollmentCodes(t *testing.T) {
	r := newTestRelay(t, "", "home")
	keyFile := filepath.Join(r.dir, "relay.key")
	r.fails("the relay's key file "+keyFile+" does not exist yet: start the relay once", "hub", "add", "cabin", "--owner", "alice")
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("hub add made a relay key: %v", err)
	}
	key, _, err := vpn.LoadOrCreatePrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	out := r.ok("hub", "add", "cabin", "--owner", "alice")
	m := codeRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("hub add printed no code:\n%s", out)
	}
	code, err := enroll.Parse(m[1])
	if err != nil || code.Relay != "hubs.example" {
		t.Fatalf("the printed code %q: %+v %v", m[1], code, err)
	}
	for _, want := range []string{"valid until 2026-06-02 13:00, works once", "hubtunnel enroll " + m[1], "addon's settings page", "https://cabin.hubs.example/"} {
		if !strings.Contains(out, want) {
			t.Errorf("hub add's output lacks %q:\n%s", want, out)
		}
	}
	id := code.ID()
	db := r.store()
	rec, err := db.EnrollCodeByID(context.Background(), hex.EncodeToString(id[:]))
	if err != nil || rec.Hub != "cabin" || rec.Owner != "alice" || rec.RelayKey != key.Public().String() {
		t.Fatalf("the code in the store: %+v %v", rec, err)
	}
	var seed [16]byte
	b, _ := hex.DecodeString(rec.Seed)
	copy(seed[:], b)
	if enroll.DeriveSecret(key, seed) != code.Secret {
		t.Fatal("the relay cannot derive the printed code's secret")
	}
	if strings.Contains(r.audit()[0].Detail, m[1][strings.IndexByte(m[1], '/')+1:]) {
		t.Fatal("the audit record holds the code")
	}
	r.lastRecord(store.KindEnroll, "cabin", "enrollment code made, owner alice, valid until 2026-06-02T12:00:00Z")

	r.fails("waiting to be used: withdraw it first", "hub", "add", "cabin")
	r.fails(`there is a hub "home" already`, "hub", "add", "home")
	r.fails(`there is no user "nobody"`, "hub", "add", "shed", "--owner", "nobody")
	r.fails("--tunnel-ip goes with --key", "hub", "add", "shed", "--tunnel-ip", "100.96.0.9")
	for _, bad := range []string{"0", "30s", "31d", "soon"} {
		r.fails("--ttl", "hub", "add", "shed", "--ttl", bad)
	}
	if out := r.ok("hub", "add", "barn", "--ttl", "90m"); !strings.Contains(out, "valid until 2026-06-01 14:30") {
		t.Fatalf("--ttl 90m: %s", out)
	}
	r.ok("hub", "add", "shed")
	// One is used, by a hub from 192.0.2.7; another was made under an
	// earlier relay key.
	shed := ""
	for _, c := range mustCodes(t, db) {
		if c.Hub == "shed" {
			shed = c.ID
		}
	}
	if _, err := db.UseEnrollCode(context.Background(), shed, testPublicKey(t), "192.0.2.7:40000", netip.MustParseAddr("100.96.0.1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := relay.MakeEnrollCode(context.Background(), db, mustKey(t), "hubs.example", relay.CodeSpec{Hub: "old", CreatedBy: "operator"}, r.now); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(2 * time.Hour)
	out = r.ok("hub", "codes")
	for _, row := range []string{
		`(?m)^cabin +alice +pending +2026-06-02 13:00 +- +- +operator$`,
		`(?m)^barn +- +expired +2026-06-01 14:30 +- +- +operator$`,
		`(?m)^shed +- +used +2026-06-02 13:00 +2026-06-01 13:00 +192\.0\.2\.7:40000 +operator$`,
		`(?m)^old +- +void \(made with another relay key\) `,
	} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Errorf("hub codes lacks a row %s:\n%s", row, out)
		}
	}

	if out := r.ok("hub", "withdraw", "cabin"); !strings.Contains(out, "withdrew the enrollment code for hub cabin") {
		t.Fatalf("hub withdraw: %s", out)
	}
	r.lastRecord(store.KindEnroll, "cabin", "enrollment code withdrawn")
	if _, err := db.EnrollCodeByID(context.Background(), hex.EncodeToString(id[:])); err == nil {
		t.Fatal("the withdrawn code is still in the store")
	}
	for _, name := range []string{"cabin", "barn", "shed", "nothing"} {
		r.fails(`no enrollment code is waiting for hub "`+name+`"`, "hub", "withdraw", name)
	}
	r.ok("hub", "add", "cabin") // the name is free again
}

// A relay whose agent port is picked at start cannot name it in a code
// made beside it: hub add says to set enroll_address.
func TestHubAddNeedsAnAgentPort(t *testing.T) {
	r := newTestRelay(t, `agent_listen = "127.0.0.1:0"`)
	if _, _, err := vpn.LoadOrCreatePrivateKey(filepath.Join(r.dir, "relay.key")); err != nil {
		t.Fatal(err)
	}
	r.fails("set enroll_address in the config", "hub", "add", "cabin")
	r.ok("hub", "list") // the config itself is fine
}

func mustCodes(t *testing.T, db *store.Store) []store.EnrollCode {
	t.Helper()
	cs, err := db.EnrollCodes(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func mustKey(t *testing.T) vpn.PrivateKey {
	t.Helper()
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
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

// hub rename gives a hub another name with its key, owner and grants; a
// taken name, a bad one and a hub the config lists are refused.
func TestHubRename(t *testing.T) {
	r := newTestRelay(t, "", "home")
	r.ok("hub", "add", "cabin", "--key", testPublicKey(t), "--owner", "alice")
	r.ok("grant", "bob", "cabin", "--ports", "webui")
	before := r.revision()
	out := r.ok("hub", "rename", "cabin", "lodge")
	if !strings.Contains(out, "hub cabin is called lodge now") || r.revision() <= before {
		t.Fatalf("rename: %q", out)
	}
	db := r.store()
	h, err := db.HubByName(context.Background(), "lodge")
	if err != nil || h.Owner != "alice" {
		t.Fatalf("renamed hub: %+v %v", h, err)
	}
	if gs, _ := db.GrantsOnHub(context.Background(), "lodge"); len(gs) != 1 {
		t.Fatalf("the grant did not follow the hub: %+v", gs)
	}
	r.lastRecord(store.KindGrant, "lodge", "hub renamed from cabin")
	r.fails(`there is no hub "cabin"`, "hub", "rename", "cabin", "shed")
	r.fails("the name home is taken", "hub", "rename", "lodge", "home")
	r.fails("use lower-case letters", "hub", "rename", "lodge", "Shed!")
	r.fails("in the config's [[hub]] list", "hub", "rename", "home", "house")
}
