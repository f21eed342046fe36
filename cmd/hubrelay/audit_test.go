package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

func TestAuditCommand(t *testing.T) {
	r := newTestRelay(t, "", "home", "cabin")
	t0 := r.now
	err := r.store().AppendAll(context.Background(), []store.Event{
		{At: t0.Add(-time.Hour), Kind: store.KindHubConnect, Hub: "home", Source: "203.0.113.9", Outcome: "ok"},
		{At: t0, Kind: store.KindLogin, User: "alice", Source: "192.0.2.1", Outcome: "ok"},
		{At: t0.Add(time.Minute), Ended: t0.Add(3*time.Minute + 5*time.Second), Kind: store.KindSession, User: "alice", Hub: "home", Port: 443,
			Source: "192.0.2.1", BytesUp: 1500, BytesDown: 12_345_678, Requests: 42, Outcome: "ok"},
		{At: t0.Add(2 * time.Minute), Ended: t0.Add(2*time.Minute + 300*time.Millisecond), Kind: store.KindSession, TokenID: 7, Hub: "cabin", Port: 4431,
			Source: "198.51.100.7", BytesUp: 800, BytesDown: 2000, Requests: 1, Outcome: "cut", Detail: "grant revoked"},
		{At: t0.Add(4 * time.Minute), Kind: store.KindLogin, User: "bob", Source: "198.51.100.8", Outcome: "failed", Detail: "wrong password\tand\na line break"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.now = t0.Add(5 * time.Minute)
	r.ok("grant", "tech", "home", "--until", "1h")

	out := r.ok("audit")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("audit printed %d lines, want a head and 6 records:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"TIME", "KIND", "WHO", "HUB", "PORT", "SOURCE", "UP", "DOWN", "REQUESTS", "DURATION", "OUTCOME", "DETAIL"},
		{"2026-06-01", "13:05:00", "grant", "-", "home", "-", "-", "-", "-", "-", "-", "ok", "by", "operator", "(hubrelay", "CLI):", "tech", "may", "reach", "webui", "until", "2026-06-01T13:05:00Z"},
		{"2026-06-01", "13:04:00", "login", "bob", "-", "-", "198.51.100.8", "-", "-", "-", "-", "failed", "wrong", "password", "and", "a", "line", "break"},
		{"2026-06-01", "13:02:00", "session", "token", "#7", "cabin", "4431", "198.51.100.7", "800", "B", "2.0", "kB", "1", "0s", "cut", "grant", "revoked"},
		{"2026-06-01", "13:01:00", "session", "alice", "home", "443", "192.0.2.1", "1.5", "kB", "12", "MB", "42", "2m5s", "ok"},
		{"2026-06-01", "13:00:00", "login", "alice", "-", "-", "192.0.2.1", "-", "-", "-", "-", "ok"},
		{"2026-06-01", "12:00:00", "hub-connect", "-", "home", "-", "203.0.113.9", "-", "-", "-", "-", "ok"},
	} {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("audit line %d:\n got %q\nwant %q", i, got, want)
		}
	}

	for _, tc := range []struct {
		args  []string
		kinds string // the records' kinds, newest first
	}{
		{[]string{"--hub", "cabin"}, "session"},
		{[]string{"--user", "alice"}, "session login"},
		{[]string{"--kind", "login"}, "login login"},
		{[]string{"--since", "2026-06-01 13:02"}, "grant login session"},
		{[]string{"--since", "3m"}, "grant login session"},
		{[]string{"--hub", "home", "--kind", "session", "--user", "alice"}, "session"},
		{[]string{"--limit", "2"}, "grant login"},
	} {
		out := r.ok(append([]string{"audit", "--json"}, tc.args...)...)
		var recs []auditRecord
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			t.Fatalf("audit --json %q is no JSON: %v\n%s", tc.args, err, out)
		}
		var kinds []string
		for _, rec := range recs {
			kinds = append(kinds, rec.Kind)
		}
		if strings.Join(kinds, " ") != tc.kinds {
			t.Errorf("audit %q: %q, want %q", tc.args, kinds, tc.kinds)
		}
	}
	if _, errOut, _ := r.run("audit", "--limit", "2"); !strings.Contains(errOut, "showing the newest 2 records") {
		t.Errorf("a cut-off list does not say so: %q", errOut)
	}

	// --json has every field, by the names scripts read.
	var recs []map[string]any
	if err := json.Unmarshal([]byte(r.ok("audit", "--json", "--hub", "home", "--kind", "session")), &recs); err != nil || len(recs) != 1 {
		t.Fatalf("audit --json: %v, %d records", err, len(recs))
	}
	want := map[string]any{"kind": "session", "user": "alice", "token_id": 0.0, "hub": "home", "port": 443.0, "source": "192.0.2.1",
		"bytes_up": 1500.0, "bytes_down": 12345678.0, "requests": 42.0, "at": "2026-06-01T12:01:00Z", "ended": "2026-06-01T12:03:05Z",
		"duration_ms": 125000.0, "outcome": "ok", "detail": ""}
	for k, v := range want {
		if recs[0][k] != v {
			t.Errorf("audit --json %s = %#v, want %#v", k, recs[0][k], v)
		}
	}
	if out := r.ok("audit", "--json", "--hub", "attic"); out != "[]\n" {
		t.Errorf("no records in --json: %q, want []", out)
	}
	if out := r.ok("audit", "--kind", "logins"); !strings.Contains(out, "no audit records match") || !strings.Contains(out, "the kinds are login, logout, session") {
		t.Errorf("an unknown kind: %q", out)
	}

	for _, tc := range []struct {
		want string
		args []string
	}{
		{`--limit "0": give a number from 1 to 100000`, []string{"audit", "--limit", "0"}},
		{`--limit "ten"`, []string{"audit", "--limit", "ten"}},
		{`--limit "100001"`, []string{"audit", "--limit", "100001"}},
		{`--since "last week"`, []string{"audit", "--since", "last week"}},
		{"or 2d (ago)", []string{"audit", "--since", "yesterday"}},
		{"usage:", []string{"audit", "home"}},
		{"unknown option --until", []string{"audit", "--until", "1h"}},
	} {
		r.fails(tc.want, tc.args...)
	}
}
