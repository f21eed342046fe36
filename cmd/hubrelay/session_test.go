package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

func TestSessionCommands(t *testing.T) {
	r := newTestRelay(t, "")
	ctx := context.Background()
	db := r.store()
	login := func(user, source string) string {
		t.Helper()
		secret, _, err := db.CreateSession(ctx, mustUser(t, db, user).ID, 12*time.Hour, source)
		if err != nil {
			t.Fatal(err)
		}
		r.now = r.now.Add(time.Minute)
		return secret
	}
	a1 := login("alice", "192.0.2.1")
	b1 := login("bob", "198.51.100.7")
	a2 := login("alice", "2001:db8::1")
	a3 := login("alice", "")

	out := r.ok("session", "list")
	for _, want := range []string{
		"ID  USER   SOURCE        LOGGED IN         EXPIRES\n",
		"#4  alice  -             2026-06-01 13:03  2026-06-02 01:03\n",
		"#3  alice  2001:db8::1   2026-06-01 13:02  2026-06-02 01:02\n",
		"#2  bob    198.51.100.7  2026-06-01 13:01  2026-06-02 01:01\n",
		"#1  alice  192.0.2.1     2026-06-01 13:00  2026-06-02 01:00\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("session list lacks %q:\n%s", want, out)
		}
	}
	if out := r.ok("session", "list", "--user", "bob"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "#2  bob") {
		t.Fatalf("session list --user bob:\n%s", out)
	}

	rev := r.revision()
	out = r.ok("session", "revoke", "#1")
	if out != "ended session #1 of alice; a running relay cuts its open connections at once\n" {
		t.Fatalf("revoke: %q", out)
	}
	if r.revision() == rev {
		t.Fatal("ending a session did not count as a change")
	}
	if _, err := db.Session(ctx, a1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the ended session still works: %v", err)
	}
	r.lastRecord(store.KindRevoke, "", "session #1 of alice (from 192.0.2.1) ended")
	r.fails("session #1 of alice has already ended", "session", "revoke", "1")

	out = r.ok("session", "revoke", "--user", "alice", "--all")
	if out != "ended 2 session(s) of alice; a running relay cuts their open connections at once\n" {
		t.Fatalf("revoke --all: %q", out)
	}
	r.lastRecord(store.KindRevoke, "", "all 2 sessions of alice ended")
	for _, s := range []string{a2, a3} {
		if _, err := db.Session(ctx, s); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("alice's session still works: %v", err)
		}
	}
	if _, err := db.Session(ctx, b1); err != nil {
		t.Fatalf("bob's session ended with alice's: %v", err)
	}
	n := len(r.audit())
	if out := r.ok("session", "revoke", "--all", "--user", "alice"); out != "alice had no active sessions\n" || len(r.audit()) != n {
		t.Fatalf("nothing to end: %q", out)
	}
	if out := r.ok("session", "list", "--user", "alice"); out != "no active sessions\n" {
		t.Fatalf("alice's sessions: %q", out)
	}
	r.now = r.now.Add(13 * time.Hour)
	r.fails("session #2 of bob has already ended", "session", "revoke", "2")
	if out := r.ok("session", "list"); out != "no active sessions\n" {
		t.Fatalf("after expiry: %q", out)
	}

	for _, tc := range []struct {
		want string
		args []string
	}{
		{"there is no session #99 (hubrelay session list shows the active ones)", []string{"session", "revoke", "99"}},
		{`"abc" is not a session id`, []string{"session", "revoke", "abc"}},
		{"give a session id, or --user USER --all, not both", []string{"session", "revoke", "2", "--user", "bob"}},
		{"to end every session of bob, add --all", []string{"session", "revoke", "--user", "bob"}},
		{"--all needs --user USER", []string{"session", "revoke", "--all"}},
		{`there is no user "dave"`, []string{"session", "revoke", "--user", "dave", "--all"}},
		{`there is no user "dave"`, []string{"session", "list", "--user", "dave"}},
		{"usage:", []string{"session", "revoke"}},
		{"usage:", []string{"session", "list", "alice"}},
		{`unknown command "end"`, []string{"session", "end", "1"}},
	} {
		r.fails(tc.want, tc.args...)
	}
}
