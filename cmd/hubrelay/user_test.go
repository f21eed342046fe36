package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// relayConfig writes a minimal relay config in a temp folder.
func relayConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.toml")
	if err := os.WriteFile(path, []byte("domain = \"hubs.example\"\nprivate_key_file = \"relay.key\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs `hubrelay user ARGS` with stdin and returns stdout and the error.
func runUser(t *testing.T, stdin string, term []string, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	c := cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errw}
	if term != nil {
		c.terminal = func(string) (string, error) { s := term[0]; term = term[1:]; return s, nil }
	}
	err := c.user(args)
	return out.String(), err
}

func TestUserCommands(t *testing.T) {
	cfg := relayConfig(t)
	for _, tc := range []struct {
		args          []string
		stdin         string
		term          []string
		want, wantErr string
	}{
		{[]string{"list", "--config", cfg}, "", nil, "no users yet", ""},
		{[]string{"add", "alice", "--config", cfg}, "correct horse battery\n", nil, "added user alice", ""},
		{[]string{"add", "--config=" + cfg, "bob"}, "correct horse battery\r\n", nil, "added user bob", ""},
		{[]string{"add", "alice", "--config", cfg}, "another long password\n", nil, "", `there is already a user "alice"`},
		{[]string{"add", "carol", "--config", cfg}, "short\n", nil, "", "too short: use at least 10 characters"},
		{[]string{"add", "carol", "--config", cfg}, "", nil, "", "the password is empty"},
		{[]string{"add", "carol", "--config", cfg}, "\n", nil, "", "the password is empty"},
		{[]string{"add", "Carol", "--config", cfg}, "correct horse battery\n", nil, "", "cannot be a user name"},
		{[]string{"add", "carol", "--config", cfg}, "", []string{"correct horse battery", "correct horse batterx"}, "", "the two passwords differ"},
		{[]string{"add", "carol", "--config", cfg}, "", []string{"correct horse battery", "correct horse battery"}, "added user carol", ""},
		{[]string{"passwd", "dave", "--config", cfg}, "correct horse battery\n", nil, "", `there is no user "dave"`},
		{[]string{"passwd", "alice", "--config", cfg}, "a new long password\n", nil, "changed the password of alice", ""},
		{[]string{"remove", "dave", "--config", cfg}, "", nil, "", `there is no user "dave"`},
		{[]string{"remove", "bob", "--config", cfg}, "", nil, "removed user bob", ""},
		{[]string{"list", "--config", cfg}, "", nil, "alice", ""},
		{[]string{"add", "--config", cfg}, "", nil, "", "usage"},
		{[]string{"frobnicate", "--config", cfg}, "", nil, "", "unknown command"},
		{[]string{"list", "--config", filepath.Join(t.TempDir(), "none.toml")}, "", nil, "", "none.toml"},
	} {
		out, err := runUser(t, tc.stdin, tc.term, tc.args...)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("user %q: %v, want error %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("user %q: %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}
	out, _ := runUser(t, "", nil, "list", "--config", cfg)
	if !strings.Contains(out, "alice") || !strings.Contains(out, "carol") || strings.Contains(out, "bob") {
		t.Fatalf("list:\n%s", out)
	}
	fi, err := os.Stat(filepath.Join(filepath.Dir(cfg), "relay.db"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("relay.db beside the config: %v, %v", fi, err)
	}
}
