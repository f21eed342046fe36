package store

import (
	"errors"
	"testing"
	"time"
)

func TestAllGrantsAndTokensSpanEveryHubAndUser(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		if gs := must[[]Grant](t)(s.AllGrants(ctx)); len(gs) != 0 {
			t.Fatalf("grants of an empty store: %+v", gs)
		}
		if ts := must[[]Token](t)(s.AllTokens(ctx)); len(ts) != 0 {
			t.Fatalf("tokens of an empty store: %+v", ts)
		}
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"b", testKey(2), "100.96.0.3"}))
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"a", testKey(1), "100.96.0.2"}))
		must[User](t)(s.AddUser(ctx, "tech", "correct horse battery"))
		must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		check(t, s.Grant(ctx, "tech", "b", PortWebUI, c.Now().Add(time.Hour)))
		check(t, s.Grant(ctx, "tech", "a", PortsAll, time.Time{}))
		check(t, s.Grant(ctx, "alice", "b", PortXMLRPC, time.Time{}))
		c.Add(2 * time.Hour) // tech's grant on b expires; it is still listed
		gs := must[[]Grant](t)(s.AllGrants(ctx))
		var got []string
		for _, g := range gs {
			got = append(got, g.Hub+"/"+g.User+"/"+g.Ports.String())
		}
		want := []string{"a/tech/webui,xmlrpc,script", "b/alice/xmlrpc", "b/tech/webui"}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("grants %q, want %q", got, want)
		}
		if gs[2].Active(c.Now()) || !gs[0].Active(c.Now()) {
			t.Fatalf("active: %+v", gs)
		}

		_, t1 := must2(t)(s.CreateToken(ctx, TokenSpec{Hub: "b", Label: "HA", Ports: PortXMLRPC}))
		_, t2 := must2(t)(s.CreateToken(ctx, TokenSpec{Hub: "a", User: "tech", Ports: PortWebUI}))
		ts := must[[]Token](t)(s.AllTokens(ctx))
		if len(ts) != 2 || ts[0].ID != t1.ID || ts[0].Hub != "b" || ts[0].User != "" || ts[1].ID != t2.ID || ts[1].User != "tech" {
			t.Fatalf("tokens %+v", ts)
		}
	})
}

func must2(t *testing.T) func(string, Token, error) (string, Token) {
	return func(s string, tok Token, err error) (string, Token) {
		t.Helper()
		check(t, err)
		return s, tok
	}
}

func TestActiveSessionsAndSessionByID(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		alice := must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		bob := must[User](t)(s.AddUser(ctx, "bob", "correct horse battery"))
		_, a1, err := s.CreateSession(ctx, alice.ID, time.Hour, "192.0.2.1")
		check(t, err)
		c.Add(time.Minute)
		_, b1, err := s.CreateSession(ctx, bob.ID, 3*time.Hour, "192.0.2.2")
		check(t, err)
		c.Add(time.Minute)
		_, a2, err := s.CreateSession(ctx, alice.ID, 2*time.Hour, "192.0.2.3")
		check(t, err)
		ids := func() []int64 {
			var out []int64
			for _, ss := range must[[]Session](t)(s.ActiveSessions(ctx)) {
				out = append(out, ss.ID)
			}
			return out
		}
		if got := ids(); len(got) != 3 || got[0] != a2.ID || got[1] != b1.ID || got[2] != a1.ID {
			t.Fatalf("active sessions %v, want newest first %d %d %d", got, a2.ID, b1.ID, a1.ID)
		}
		check(t, s.RevokeSession(ctx, a2.ID))
		c.Add(time.Hour) // a1 expires
		if got := ids(); len(got) != 1 || got[0] != b1.ID {
			t.Fatalf("active sessions after a revoke and an expiry: %v", got)
		}
		// SessionByID finds sessions in any state, for the caller to judge.
		got := must[Session](t)(s.SessionByID(ctx, a2.ID))
		if got.User != "alice" || got.Source != "192.0.2.3" || got.Revoked.IsZero() || got.Active(c.Now()) {
			t.Fatalf("revoked session by id: %+v", got)
		}
		if got := must[Session](t)(s.SessionByID(ctx, b1.ID)); !got.Active(c.Now()) || got.User != "bob" {
			t.Fatalf("active session by id: %+v", got)
		}
		if _, err := s.SessionByID(ctx, 9999); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing session: %v", err)
		}
	})
}
