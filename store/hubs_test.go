package store

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// testKey is a distinct fake base64 key per n (the store does not parse
// keys; the relay's config does).
func testKey(n int) string { return fmt.Sprintf("%043d=", n) }

func TestImportHubs(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		r := must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"a", testKey(1), "100.96.0.2"}, {"b", testKey(2), "100.96.0.3"}}))
		if !reflect.DeepEqual(r.Added, []string{"a", "b"}) || r.Updated != nil || r.Unchanged != nil {
			t.Fatalf("first import: %+v", r)
		}
		// A hub the store has but the config no longer lists stays.
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"enrolled", testKey(9), "100.96.0.9"}))
		must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		check(t, s.SetHubOwner(ctx, "a", "alice"))
		c.Add(time.Hour)
		r = must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"a", testKey(11), "100.96.0.2"}, {"b", testKey(2), "100.96.0.3"}, {"c", testKey(3), "100.96.0.4"}}))
		if !reflect.DeepEqual(r, ImportResult{Added: []string{"c"}, Updated: []string{"a"}, Unchanged: []string{"b"}}) {
			t.Fatalf("second import: %+v", r)
		}
		hs := must[[]Hub](t)(s.Hubs(ctx))
		if len(hs) != 4 || hs[3].Name != "enrolled" {
			t.Fatalf("hubs: %+v", hs)
		}
		a := must[Hub](t)(s.HubByKey(ctx, testKey(11)))
		alice := must[User](t)(s.UserByName(ctx, "alice"))
		if a.Name != "a" || a.OwnerID != alice.ID || !a.Created.Equal(newClock().Now()) {
			t.Fatalf("updated hub lost its owner or creation time: %+v", a)
		}
		if _, err := s.HubByKey(ctx, testKey(1)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the old key still finds a hub: %v", err)
		}
		// A key or address that is another hub's fails the whole import.
		for _, list := range [][]HubSpec{
			{{"d", testKey(4), "100.96.0.5"}, {"e", testKey(9), "100.96.0.6"}},
			{{"d", testKey(4), "100.96.0.5"}, {"e", testKey(5), "100.96.0.9"}},
		} {
			if _, err := s.ImportHubs(ctx, list); !errors.Is(err, ErrExists) {
				t.Fatalf("import of another hub's key or address: %v", err)
			}
			if _, err := s.HubByName(ctx, "d"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a failed import left hub d: %v", err)
			}
		}
		check(t, s.HubSeen(ctx, "b", AgentInfo{Version: "0.2.0", Model: "RaspberryMatic", Firmware: "3.79.6"}))
		b := must[Hub](t)(s.HubByName(ctx, "b"))
		if b.AgentVersion != "0.2.0" || b.Model != "RaspberryMatic" || b.Firmware != "3.79.6" || !b.LastSeen.Equal(c.Now()) {
			t.Fatalf("seen: %+v", b)
		}
		if err := s.HubSeen(ctx, "zz", AgentInfo{Version: "1"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("seen of a missing hub: %v", err)
		}
		if err := s.SetHubOwner(ctx, "b", "nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("owner nobody: %v", err)
		}
		owned := must[[]Hub](t)(s.HubsOwnedBy(ctx, alice.ID))
		if len(owned) != 1 || owned[0].Name != "a" {
			t.Fatalf("owned: %+v", owned)
		}
		// Removing the owner leaves the hub without one.
		check(t, s.RemoveUser(ctx, "alice"))
		if a := must[Hub](t)(s.HubByName(ctx, "a")); a.OwnerID != 0 {
			t.Fatalf("owner after removal: %d", a.OwnerID)
		}
	})
}

func TestGrantsAndAccess(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		owner := must[User](t)(s.AddUser(ctx, "owner", "correct horse battery"))
		tech := must[User](t)(s.AddUser(ctx, "tech", "correct horse battery"))
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"home", testKey(1), "100.96.0.2"}))
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"other", testKey(2), "100.96.0.3"}))
		check(t, s.SetHubOwner(ctx, "home", "owner"))
		access := func(u User, hub string) Ports { t.Helper(); return must[Ports](t)(s.Access(ctx, u.ID, hub)) }

		if p := access(owner, "home"); p != PortsAll {
			t.Fatalf("owner: %v", p)
		}
		for _, hub := range []string{"home", "other", "nosuchhub"} {
			if p := access(tech, hub); p != 0 {
				t.Fatalf("tech on %s without a grant: %v", hub, p)
			}
		}
		until := c.Now().Add(4 * time.Hour)
		check(t, s.Grant(ctx, "tech", "home", PortWebUI, until))
		if p := access(tech, "home"); p != PortWebUI {
			t.Fatalf("tech with a webui grant: %v", p)
		}
		if p := access(tech, "other"); p != 0 {
			t.Fatalf("a grant on home opened other: %v", p)
		}
		// Granting again replaces.
		check(t, s.Grant(ctx, "tech", "home", PortWebUI|PortScript, until))
		gs := must[[]Grant](t)(s.GrantsOnHub(ctx, "home"))
		if len(gs) != 1 || gs[0].Ports != PortWebUI|PortScript || !gs[0].Until.Equal(until) || gs[0].User != "tech" {
			t.Fatalf("grants: %+v", gs)
		}
		c.Add(4*time.Hour - time.Millisecond)
		if p := access(tech, "home"); p != PortWebUI|PortScript {
			t.Fatalf("just before the end: %v", p)
		}
		c.Add(time.Millisecond)
		if p := access(tech, "home"); p != 0 {
			t.Fatalf("grant at its end still opens %v", p)
		}
		check(t, s.Grant(ctx, "tech", "home", PortXMLRPC, time.Time{}))
		if p := access(tech, "home"); p != PortXMLRPC {
			t.Fatalf("grant without end: %v", p)
		}
		check(t, s.SetHubDisabled(ctx, "home", true))
		if p := access(owner, "home") | access(tech, "home"); p != 0 {
			t.Fatalf("disabled hub: %v", p)
		}
		check(t, s.SetHubDisabled(ctx, "home", false))
		check(t, s.SetDisabled(ctx, "tech", true))
		if p := access(tech, "home"); p != 0 {
			t.Fatalf("disabled user: %v", p)
		}
		check(t, s.SetDisabled(ctx, "tech", false))

		check(t, s.Revoke(ctx, "tech", "home"))
		if p := access(tech, "home"); p != 0 {
			t.Fatalf("after revoke: %v", p)
		}
		if err := s.Revoke(ctx, "tech", "home"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		for _, tc := range []struct{ user, hub string }{{"nobody", "home"}, {"tech", "nohub"}} {
			if err := s.Grant(ctx, tc.user, tc.hub, PortWebUI, time.Time{}); !errors.Is(err, ErrNotFound) {
				t.Errorf("grant %v: %v", tc, err)
			}
		}
		if err := s.Grant(ctx, "tech", "home", 0, time.Time{}); err == nil {
			t.Error("empty grant accepted")
		}
		// Removing a user removes their grants.
		check(t, s.Grant(ctx, "tech", "home", PortWebUI, time.Time{}))
		check(t, s.RemoveUser(ctx, "tech"))
		if gs := must[[]Grant](t)(s.GrantsOnHub(ctx, "home")); len(gs) != 0 {
			t.Fatalf("grants of a removed user: %+v", gs)
		}
	})
}

func TestTokens(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"home", testKey(1), "100.96.0.2"}))
		secret, tok, err := s.CreateToken(ctx, TokenSpec{Hub: "home", Label: "Home Assistant", Ports: PortXMLRPC, Expires: c.Now().Add(24 * time.Hour)})
		check(t, err)
		if len(secret) != TokenLen || secret[:4] != TokenPrefix {
			t.Fatalf("secret of %d characters", len(secret))
		}
		got := must[Token](t)(s.VerifyToken(ctx, secret))
		if got.ID != tok.ID || got.Hub != "home" || got.Ports != PortXMLRPC || got.Label != "Home Assistant" || got.Reach != PortXMLRPC || !got.LastUsed.Equal(c.Now()) {
			t.Fatalf("verified %+v", got)
		}
		for _, bad := range []string{"", secret[:TokenLen-1], secret + "x", secret[len(TokenPrefix):], hashSecret(secret)} {
			if _, err := s.VerifyToken(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("VerifyToken(%q): %v", bad, err)
			}
		}
		// last_used moves at most once a minute.
		first := c.Now()
		c.Add(30 * time.Second)
		if got := must[Token](t)(s.VerifyToken(ctx, secret)); !got.LastUsed.Equal(first) {
			t.Fatalf("last used %v after 30 s", got.LastUsed)
		}
		c.Add(31 * time.Second)
		if got := must[Token](t)(s.VerifyToken(ctx, secret)); !got.LastUsed.Equal(c.Now()) {
			t.Fatalf("last used %v after 61 s", got.LastUsed)
		}
		c.Add(24 * time.Hour)
		if _, err := s.VerifyToken(ctx, secret); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired token: %v", err)
		}
		forever, tok2, err := s.CreateToken(ctx, TokenSpec{Hub: "home", Ports: PortsAll})
		check(t, err)
		check(t, s.SetHubDisabled(ctx, "home", true))
		if _, err := s.VerifyToken(ctx, forever); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of a disabled hub: %v", err)
		}
		check(t, s.SetHubDisabled(ctx, "home", false))
		must[Token](t)(s.VerifyToken(ctx, forever))
		if ts := must[[]Token](t)(s.TokensOnHub(ctx, "home")); len(ts) != 2 {
			t.Fatalf("tokens: %+v", ts)
		}
		check(t, s.RevokeToken(ctx, tok2.ID))
		if _, err := s.VerifyToken(ctx, forever); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoked token: %v", err)
		}
		if err := s.RevokeToken(ctx, tok2.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		if _, _, err := s.CreateToken(ctx, TokenSpec{Hub: "nohub", Ports: PortWebUI}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token for a missing hub: %v", err)
		}
	})
}

func TestSessions(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		alice := must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		bob := must[User](t)(s.AddUser(ctx, "bob", "correct horse battery"))
		sid, sess, err := s.CreateSession(ctx, alice.ID, time.Hour, "192.0.2.1")
		check(t, err)
		got := must[Session](t)(s.Session(ctx, sid))
		if got.ID != sess.ID || got.User != "alice" || got.Source != "192.0.2.1" || !got.Expires.Equal(c.Now().Add(time.Hour)) {
			t.Fatalf("session %+v", got)
		}
		if _, err := s.Session(ctx, sid+"x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("wrong id: %v", err)
		}
		c.Add(time.Minute)
		sid2, _, err := s.CreateSession(ctx, alice.ID, time.Hour, "198.51.100.7")
		check(t, err)
		must3 := func(n int) {
			t.Helper()
			if l := must[[]Session](t)(s.Sessions(ctx, alice.ID)); len(l) != n {
				t.Fatalf("%d sessions listed, want %d: %+v", len(l), n, l)
			}
		}
		must3(2)
		if l := must[[]Session](t)(s.Sessions(ctx, alice.ID)); l[0].Source != "198.51.100.7" {
			t.Fatalf("not newest first: %+v", l)
		}
		check(t, s.RevokeSession(ctx, sess.ID))
		if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoked session: %v", err)
		}
		if err := s.RevokeSession(ctx, sess.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		must3(1)
		c.Add(time.Hour)
		if _, err := s.Session(ctx, sid2); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired session: %v", err)
		}
		must3(0)

		// Logout, a password change and disabling end sessions.
		s3, _, _ := s.CreateSession(ctx, alice.ID, time.Hour, "")
		check(t, s.RevokeSessionBySecret(ctx, s3))
		if _, err := s.Session(ctx, s3); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after logout: %v", err)
		}
		s4, _, _ := s.CreateSession(ctx, alice.ID, time.Hour, "")
		sb, _, _ := s.CreateSession(ctx, bob.ID, time.Hour, "")
		check(t, s.SetPassword(ctx, "alice", "a new long password"))
		if _, err := s.Session(ctx, s4); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after passwd: %v", err)
		}
		must[Session](t)(s.Session(ctx, sb)) // bob's stays
		s5, _, _ := s.CreateSession(ctx, alice.ID, time.Hour, "")
		check(t, s.SetDisabled(ctx, "alice", true))
		check(t, s.SetDisabled(ctx, "alice", false))
		if _, err := s.Session(ctx, s5); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after disabling: %v", err)
		}
		s6, _, _ := s.CreateSession(ctx, alice.ID, time.Hour, "")
		s7, _, _ := s.CreateSession(ctx, alice.ID, time.Hour, "")
		if n := must[int](t)(s.RevokeUserSessions(ctx, alice.ID)); n != 2 {
			t.Fatalf("revoked %d", n)
		}
		for _, id := range []string{s6, s7} {
			if _, err := s.Session(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after revoking all: %v", err)
			}
		}
		c.Add(2 * time.Hour)
		if n := must[int](t)(s.PurgeSessions(ctx, c.Now())); n != 8 {
			t.Fatalf("purged %d sessions, want 8", n)
		}
		if _, _, err := s.CreateSession(ctx, 9999, time.Hour, ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session of a missing user: %v", err)
		}
	})
}

func TestAudit(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		t0 := c.Now()
		for i, e := range []Event{
			{Kind: "login", User: "alice", Source: "192.0.2.1", Outcome: "ok"},
			{Kind: "login", User: "mallory", Source: "203.0.113.9", Outcome: "failed", Detail: "wrong password"},
			{Kind: "session", User: "alice", Hub: "home", Port: 443, BytesUp: 1200, BytesDown: 1 << 40, Outcome: "ok"},
			{Kind: "session", TokenID: 7, Hub: "home", Port: 4430, Outcome: "ok"},
			{Kind: "hub-connect", Hub: "other", Outcome: "ok"},
		} {
			c.Add(time.Second)
			if i == 4 {
				e.At = t0.Add(time.Hour) // given explicitly
			}
			check(t, s.Append(ctx, e))
		}
		kinds := func(es []Event) string {
			var out string
			for _, e := range es {
				out += fmt.Sprintf("%s/%s/%s ", e.Kind, e.User, e.Hub)
			}
			return out
		}
		for _, tc := range []struct {
			f    AuditFilter
			want string
		}{
			{AuditFilter{}, "hub-connect//other session//home session/alice/home login/mallory/ login/alice/ "},
			{AuditFilter{Hubs: []string{"home"}}, "session//home session/alice/home "},
			{AuditFilter{Hubs: []string{"home", "other"}, Limit: 2}, "hub-connect//other session//home "},
			{AuditFilter{User: "alice"}, "session/alice/home login/alice/ "},
			{AuditFilter{Kind: "login"}, "login/mallory/ login/alice/ "},
			{AuditFilter{Since: t0.Add(2 * time.Second), Until: t0.Add(4 * time.Second)}, "session/alice/home login/mallory/ "},
			{AuditFilter{User: "alice", Kind: "session", Hubs: []string{"home"}}, "session/alice/home "},
			{AuditFilter{User: "nobody"}, ""},
		} {
			if got := kinds(must[[]Event](t)(s.Audit(ctx, tc.f))); got != tc.want {
				t.Errorf("Audit(%+v) = %q, want %q", tc.f, got, tc.want)
			}
		}
		es := must[[]Event](t)(s.Audit(ctx, AuditFilter{Kind: "session", User: "alice"}))
		if e := es[0]; e.BytesDown != 1<<40 || e.BytesUp != 1200 || e.Port != 443 || !e.At.Equal(t0.Add(3*time.Second)) {
			t.Fatalf("event %+v", e)
		}
	})
}

func TestPorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ports
		ok   bool
	}{
		{"webui", PortWebUI, true},
		{"xmlrpc,script", PortXMLRPC | PortScript, true},
		{"all", PortsAll, true},
		{"webui, xmlrpc", PortWebUI | PortXMLRPC, true},
		{"", 0, false},
		{"ssh", 0, false},
		{"webui,", 0, false},
	} {
		got, err := ParsePorts(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePorts(%q) = %v, %v", tc.in, got, err)
		}
	}
	if s := (PortWebUI | PortScript).String(); s != "webui,script" {
		t.Errorf("String %q", s)
	}
	if !PortsAll.Has(PortScript) || PortWebUI.Has(PortScript) || PortWebUI.Has(0) {
		t.Error("Has")
	}
}

func TestRevisionCountsEveryChangeOfAccess(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"home", testKey(1), "100.96.0.2"}))
		alice := must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		must[User](t)(s.AddUser(ctx, "bob", "correct horse battery"))
		rev := func() int64 { return must[int64](t)(s.Revision(ctx)) }
		last := rev()
		moved := func(what string, err error) {
			t.Helper()
			check(t, err)
			if n := rev(); n <= last {
				t.Fatalf("%s: revision stayed at %d", what, n)
			} else {
				last = n
			}
		}
		stayed := func(what string, err error) {
			t.Helper()
			if n := rev(); n != last {
				t.Fatalf("%s (%v): revision moved from %d to %d", what, err, last, n)
			}
		}
		moved("owner", s.SetHubOwner(ctx, "home", "alice"))
		moved("grant", s.Grant(ctx, "bob", "home", PortWebUI, time.Time{}))
		moved("revoke", s.Revoke(ctx, "bob", "home"))
		stayed("revoke of nothing", s.Revoke(ctx, "bob", "home"))
		secret, sess, err := s.CreateSession(ctx, alice.ID, time.Hour, "192.0.2.1")
		check(t, err)
		stayed("new session", nil)
		moved("session revoked", s.RevokeSession(ctx, sess.ID))
		_, _, err = s.CreateSession(ctx, alice.ID, time.Hour, "192.0.2.1")
		check(t, err)
		_, err = s.RevokeUserSessions(ctx, alice.ID)
		moved("all sessions revoked", err)
		stayed("logout of a revoked session", s.RevokeSessionBySecret(ctx, secret))
		_, tok, err := s.CreateToken(ctx, TokenSpec{Hub: "home", User: "alice", Ports: PortXMLRPC})
		check(t, err)
		moved("token revoked", s.RevokeToken(ctx, tok.ID))
		moved("hub disabled", s.SetHubDisabled(ctx, "home", true))
		moved("user disabled", s.SetDisabled(ctx, "bob", true))
		moved("password", s.SetPassword(ctx, "alice", "another long password"))
		moved("user removed", s.RemoveUser(ctx, "bob"))
	})
}

func TestUserTokensReachNoMoreThanTheirMaker(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"home", testKey(1), "100.96.0.2"}))
		must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		must[User](t)(s.AddUser(ctx, "tech", "correct horse battery"))
		check(t, s.SetHubOwner(ctx, "home", "alice"))
		check(t, s.Grant(ctx, "tech", "home", PortWebUI|PortXMLRPC, c.Now().Add(time.Hour)))

		if _, _, err := s.CreateToken(ctx, TokenSpec{Hub: "home", User: "tech", Ports: PortScript}); !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("a token for more than the grant: %v", err)
		}
		secret, tok, err := s.CreateToken(ctx, TokenSpec{Hub: "home", User: "tech", Label: "laptop", Ports: PortXMLRPC})
		check(t, err)
		if got := must[Token](t)(s.VerifyToken(ctx, secret)); got.Reach != PortXMLRPC || got.User != "tech" || !got.ReachUntil.Equal(c.Now().Add(time.Hour)) {
			t.Fatalf("verified %+v", got)
		}
		if ts := must[[]Token](t)(s.TokensOfUser(ctx, "tech")); len(ts) != 1 || ts[0].ID != tok.ID {
			t.Fatalf("tech's tokens: %+v", ts)
		}
		c.Add(2 * time.Hour) // the grant ended: the token opens nothing
		if got := must[Token](t)(s.VerifyToken(ctx, secret)); got.Reach != 0 {
			t.Fatalf("token after its maker's grant ended reaches %v", got.Reach)
		}
		owners, _, err := s.CreateToken(ctx, TokenSpec{Hub: "home", User: "alice", Ports: PortsAll})
		check(t, err)
		if got := must[Token](t)(s.VerifyToken(ctx, owners)); got.Reach != PortsAll {
			t.Fatalf("owner's token reaches %v", got.Reach)
		}
		check(t, s.RemoveUser(ctx, "tech"))
		if _, err := s.VerifyToken(ctx, secret); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of a removed user: %v", err)
		}
	})
}

// Hubs added, changed and removed count as changes (a running relay serves
// them at once); importing an unchanged list does not. New hubs get the
// lowest free tunnel address after the relay's.
func TestHubChangesAndTunnelAddresses(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		relay := netip.MustParseAddr("100.96.0.1")
		rev := func() int64 { return must[int64](t)(s.Revision(ctx)) }
		if ip := must[netip.Addr](t)(s.NextTunnelIP(ctx, relay)); ip.String() != "100.96.0.2" {
			t.Fatalf("first address %s", ip)
		}
		r0 := rev()
		list := []HubSpec{{"a", testKey(1), "100.96.0.2"}, {"b", testKey(2), "100.96.0.3"}}
		must[ImportResult](t)(s.ImportHubs(ctx, list))
		r1 := rev()
		must[ImportResult](t)(s.ImportHubs(ctx, list))
		if r1 <= r0 || rev() != r1 {
			t.Fatalf("revision %d → %d (import adding) → %d (import unchanged)", r0, r1, rev())
		}
		if ip := must[netip.Addr](t)(s.NextTunnelIP(ctx, relay)); ip.String() != "100.96.0.4" {
			t.Fatalf("next address %s", ip)
		}
		check(t, s.RemoveHub(ctx, "a"))
		if rev() <= r1 {
			t.Fatal("removing a hub did not count as a change")
		}
		if ip := must[netip.Addr](t)(s.NextTunnelIP(ctx, relay)); ip.String() != "100.96.0.2" {
			t.Fatalf("the removed hub's address is not free again: next %s", ip)
		}
		if err := s.RemoveHub(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("removing it twice: %v", err)
		}
		// Past .255 of a /24 it goes on, never handing out .0 or .255.
		if ip := must[netip.Addr](t)(s.NextTunnelIP(ctx, netip.MustParseAddr("100.96.0.254"))); ip.String() != "100.96.1.1" {
			t.Fatalf("after .254: %s", ip)
		}
	})
}

// The relay records which hubs are online, since when and over what, for
// hubrelay hub list in another process: set on a hub's first connection,
// cleared at its last one's end, and cleared for all at the relay's start.
func TestHubOnlineState(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"a", testKey(1), "100.96.0.2"}, {"b", testKey(2), "100.96.0.3"}}))
		if a := must[Hub](t)(s.HubByName(ctx, "a")); !a.OnlineSince.IsZero() || a.Transport != "" {
			t.Fatalf("a new hub is online: %+v", a)
		}
		since := c.Now()
		c.Add(time.Second)
		check(t, s.HubOnline(ctx, "a", AgentInfo{Version: "0.3.0", Model: "RaspberryMatic", Firmware: "3.79.6"}, since, "tcp"))
		check(t, s.HubOnline(ctx, "b", AgentInfo{Version: "0.3.0"}, since, "tls"))
		a := must[Hub](t)(s.HubByName(ctx, "a"))
		if !a.OnlineSince.Equal(since) || a.Transport != "tcp" || a.AgentVersion != "0.3.0" || a.Model != "RaspberryMatic" || !a.LastSeen.Equal(c.Now()) {
			t.Fatalf("online: %+v", a)
		}
		c.Add(time.Hour)
		check(t, s.HubOffline(ctx, "a"))
		a = must[Hub](t)(s.HubByName(ctx, "a"))
		if !a.OnlineSince.IsZero() || a.Transport != "" || !a.LastSeen.Equal(c.Now()) || a.Model != "RaspberryMatic" {
			t.Fatalf("offline: %+v, want no online state, last seen now and the agent's info kept", a)
		}
		if err := s.HubOnline(ctx, "zz", AgentInfo{}, since, "tcp"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("online of a missing hub: %v", err)
		}
		if err := s.HubOffline(ctx, "zz"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("offline of a missing hub: %v", err)
		}
		// A relay starting clears what a crashed one left.
		if n := must[int64](t)(s.ClearOnline(ctx)); n != 1 {
			t.Fatalf("ClearOnline cleared %d hubs, want 1 (b)", n)
		}
		for _, h := range must[[]Hub](t)(s.Hubs(ctx)) {
			if !h.OnlineSince.IsZero() || h.Transport != "" {
				t.Fatalf("after ClearOnline: %+v", h)
			}
		}
	})
}

// RecordHubStates records many hubs' states at once, as HubOnline and
// HubOffline would one by one, and skips a hub the store no longer has.
func TestRecordHubStates(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"a", testKey(1), "100.96.0.2"}, {"b", testKey(2), "100.96.0.3"}}))
		since := c.Now()
		c.Add(time.Second)
		check(t, s.RecordHubStates(ctx, []HubState{
			{Name: "a", Since: since, Transport: "udp", Info: AgentInfo{Version: "0.4.0"}},
			{Name: "zz", Since: since, Transport: "udp"},
			{Name: "b", Since: since, Transport: "tls"},
		}))
		a, b := must[Hub](t)(s.HubByName(ctx, "a")), must[Hub](t)(s.HubByName(ctx, "b"))
		if !a.OnlineSince.Equal(since) || a.Transport != "udp" || a.AgentVersion != "0.4.0" || !a.LastSeen.Equal(c.Now()) || b.Transport != "tls" {
			t.Fatalf("online: %+v, %+v", a, b)
		}
		c.Add(time.Hour)
		check(t, s.RecordHubStates(ctx, []HubState{{Name: "a"}}))
		a, b = must[Hub](t)(s.HubByName(ctx, "a")), must[Hub](t)(s.HubByName(ctx, "b"))
		if !a.OnlineSince.IsZero() || a.Transport != "" || !a.LastSeen.Equal(c.Now()) || a.AgentVersion != "0.4.0" || b.Transport != "tls" {
			t.Fatalf("a offline: %+v, want no online state, last seen now, the agent's info kept; b untouched: %+v", a, b)
		}
	})
}

// A database at the schema before the online state (with enrollment codes,
// 0003) keeps its hubs through migration 0004, which starts them offline.
func TestMigrateToOnlineState(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			c := newClock()
			dsn := dsnFor(t, d)
			old, err := open(ctx, dsn, Options{Now: c.Now, Password: testPassword})
			if err != nil {
				t.Fatal(err)
			}
			check(t, old.migrate(ctx, migrations[:3]))
			_, err = old.db.ExecContext(ctx, `INSERT INTO hubs (name, public_key, tunnel_ip, created, last_seen, agent_version, model, firmware)
				VALUES ('home', $1, '100.96.0.2', $2, $2, '0.2.0', 'CCU3', '3.79.6')`, testKey(1), c.Now().UnixMilli())
			check(t, err)
			check(t, old.Close())

			s := openTest(t, dsn, c)
			if v := must[int](t)(s.Version(ctx)); v != len(migrations) || len(migrations) < 4 {
				t.Fatalf("version %d after the migration, want %d", v, len(migrations))
			}
			h := must[Hub](t)(s.HubByName(ctx, "home"))
			if h.PublicKey != testKey(1) || h.Model != "CCU3" || !h.LastSeen.Equal(c.Now()) || !h.OnlineSince.IsZero() || h.Transport != "" {
				t.Fatalf("hub after migration 0004: %+v", h)
			}
			check(t, s.HubOnline(ctx, "home", AgentInfo{Version: "0.3.0"}, c.Now(), "tcp"))
		})
	}
}

// TestImportKeepsReplacedKey: a hub of the config's list that replaced its
// key through the tunnel keeps it when the config's list, which still names
// the old key, is imported again (at every relay start and hubrelay
// command); a config that names yet another key still wins.
func TestImportKeepsReplacedKey(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		list := []HubSpec{{"a", testKey(1), "100.96.0.2"}}
		must[ImportResult](t)(s.ImportHubs(ctx, list))
		check(t, s.ReplaceHubKey(ctx, "a", testKey(2)))
		check(t, s.ReplaceHubKey(ctx, "a", testKey(3)))
		r := must[ImportResult](t)(s.ImportHubs(ctx, list))
		if !reflect.DeepEqual(r, ImportResult{Unchanged: []string{"a"}}) {
			t.Fatalf("import after the hub replaced its key: %+v", r)
		}
		if h := must[Hub](t)(s.HubByName(ctx, "a")); h.PublicKey != testKey(3) {
			t.Fatalf("the config's key came back: %s, want %s", h.PublicKey, testKey(3))
		}
		if err := s.ReplaceHubKey(ctx, "a", testKey(3)); err != nil {
			t.Fatalf("replacing a key with itself: %v", err)
		}
		must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"b", testKey(4), "100.96.0.3"}}))
		if err := s.ReplaceHubKey(ctx, "a", testKey(4)); !errors.Is(err, ErrExists) {
			t.Fatalf("taking hub b's key: %v", err)
		}
		r = must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"a", testKey(5), "100.96.0.2"}}))
		if !reflect.DeepEqual(r.Updated, []string{"a"}) || must[Hub](t)(s.HubByName(ctx, "a")).PublicKey != testKey(5) {
			t.Fatalf("a new key in the config did not win: %+v", r)
		}
		check(t, s.ReplaceHubKey(ctx, "a", testKey(6)))
		r = must[ImportResult](t)(s.ImportHubs(ctx, []HubSpec{{"a", testKey(5), "100.96.0.2"}}))
		if !reflect.DeepEqual(r.Unchanged, []string{"a"}) || must[Hub](t)(s.HubByName(ctx, "a")).PublicKey != testKey(6) {
			t.Fatalf("after the config's new key was replaced: %+v", r)
		}
	})
}
