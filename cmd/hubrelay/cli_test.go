package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// testZone is the operator's time zone in the tests: times given as
// "2026-12-01 18:00" are read in it.
var testZone = time.FixedZone("CET", 3600)

// testRelay is a relay config and its store in a temp folder, with a clock
// the test moves, for running the commands as the operator does.
type testRelay struct {
	t      *testing.T
	dir    string
	config string
	now    time.Time
}

// newTestRelay writes a config with extra lines (domain is hubs.example
// unless they say otherwise) and a [[hub]] entry per name, and adds the users alice, bob and tech to its store.
func newTestRelay(t *testing.T, extra string, hubs ...string) *testRelay {
	t.Helper()
	r := &testRelay{t: t, dir: t.TempDir(), now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	r.config = filepath.Join(r.dir, "relay.toml")
	conf := "private_key_file = \"relay.key\"\n" + extra + "\n"
	if !strings.Contains(extra, "domain =") {
		conf = "domain = \"hubs.example\"\n" + conf
	}
	for i, h := range hubs {
		conf += fmt.Sprintf("[[hub]]\nname = %q\npublic_key = %q\ntunnel_ip = \"100.96.0.%d\"\n", h, testPublicKey(t), i+2)
	}
	if err := os.WriteFile(r.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	db := r.store()
	for _, u := range []string{"alice", "bob", "tech"} {
		if _, err := db.AddUser(context.Background(), u, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
	}
	// Every command imports the config's [[hub]] list first, as the relay
	// does at start; the first one here, so that a test's own commands
	// change the store only by what they do.
	r.ok("hub", "list")
	return r
}

func testPublicKey(t *testing.T) string {
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().String()
}

// store opens the relay's store as the running relay would, on the test's
// clock, with a cheap password hash.
func (r *testRelay) store() *store.Store {
	r.t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(r.dir, "relay.db"), store.Options{
		Now:      func() time.Time { return r.now },
		Password: store.PasswordParams{MemoryKiB: 1024, Passes: 1, Threads: 1},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { db.Close() })
	return db
}

// run runs `hubrelay ARGS --config FILE` and returns stdout, stderr and
// the error main would print.
func (r *testRelay) run(args ...string) (string, string, error) {
	r.t.Helper()
	var out, errw bytes.Buffer
	c := cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errw, now: func() time.Time { return r.now }, loc: testZone}
	cmd, ok := commands[args[0]]
	if !ok {
		r.t.Fatalf("no command %q", args[0])
	}
	err := cmd(c, append(args[1:], "--config", r.config))
	return out.String(), errw.String(), err
}

// ok runs a command that must succeed and returns its stdout.
func (r *testRelay) ok(args ...string) string {
	r.t.Helper()
	out, _, err := r.run(args...)
	if err != nil {
		r.t.Fatalf("%q: %v", args, err)
	}
	return out
}

// fails runs a command that must fail with an error containing want, and
// change nothing in the store.
func (r *testRelay) fails(want string, args ...string) {
	r.t.Helper()
	before := r.revision()
	out, _, err := r.run(args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		r.t.Errorf("%q: %v (out %q), want error %q", args, err, out, want)
	}
	if after := r.revision(); after != before {
		r.t.Errorf("%q failed but changed the store's revision %d → %d", args, before, after)
	}
}

func (r *testRelay) revision() int64 {
	r.t.Helper()
	db := r.store()
	defer db.Close()
	n, err := db.Revision(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// audit is the store's audit log, newest first.
func (r *testRelay) audit() []store.Event {
	r.t.Helper()
	db := r.store()
	defer db.Close()
	es, err := db.Audit(context.Background(), store.AuditFilter{})
	if err != nil {
		r.t.Fatal(err)
	}
	return es
}

// lastRecord checks the newest audit record: the operator's, of kind, on
// hub, saying what.
func (r *testRelay) lastRecord(kind, hub, what string) {
	r.t.Helper()
	es := r.audit()
	if len(es) == 0 {
		r.t.Fatalf("no audit record, want %s %q", kind, what)
	}
	e := es[0]
	if e.Kind != kind || e.Hub != hub || e.User != "" || e.Outcome != "ok" || e.Detail != byOperator+what {
		r.t.Fatalf("audit record %+v, want kind %s hub %q detail %q", e, kind, hub, byOperator+what)
	}
}

func TestParseArgs(t *testing.T) {
	withValue, switches := []string{"until", "ports"}, []string{"all"}
	for _, tc := range []struct {
		in      []string
		config  string
		opt     map[string]string
		on      map[string]bool
		rest    []string
		wantErr string
	}{
		{[]string{"alice", "home"}, "relay.toml", map[string]string{}, map[string]bool{}, []string{"alice", "home"}, ""},
		{[]string{"alice", "--until", "4h", "home", "--ports=all"}, "relay.toml", map[string]string{"until": "4h", "ports": "all"}, map[string]bool{}, []string{"alice", "home"}, ""},
		{[]string{"-config", "x.toml", "--all", "a"}, "x.toml", map[string]string{}, map[string]bool{"all": true}, []string{"a"}, ""},
		{[]string{"--config=y.toml", "-until", "2026-12-01 18:00"}, "y.toml", map[string]string{"until": "2026-12-01 18:00"}, map[string]bool{}, nil, ""},
		{[]string{"--until"}, "", nil, nil, nil, "--until needs a value"},
		{[]string{"--config"}, "", nil, nil, nil, "--config needs a value"},
		{[]string{"--frob"}, "", nil, nil, nil, "unknown option --frob"},
		{[]string{"--all=yes"}, "", nil, nil, nil, "--all takes no value"},
		{[]string{"--until", "1h", "--until", "2h"}, "", nil, nil, nil, "--until is given twice"},
	} {
		a, err := parseArgs(tc.in, withValue, switches)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%q): %v, want error %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || a.config != tc.config || !reflect.DeepEqual(a.opt, tc.opt) || !reflect.DeepEqual(a.on, tc.on) || !reflect.DeepEqual(a.rest, tc.rest) {
			t.Errorf("parseArgs(%q) = %+v, %v", tc.in, a, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := cli{now: func() time.Time { return now }, loc: testZone}
	for _, tc := range []struct {
		in      string
		ago     bool
		want    time.Time
		wantErr string
	}{
		{"4h", false, now.Add(4 * time.Hour), ""},
		{"90m", false, now.Add(90 * time.Minute), ""},
		{"2d", false, now.Add(48 * time.Hour), ""},
		{"1d12h", false, now.Add(36 * time.Hour), ""},
		{"24h", true, now.Add(-24 * time.Hour), ""},
		{"7d", true, now.Add(-7 * 24 * time.Hour), ""},
		{"2026-12-01 18:00", false, time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC), ""},
		{"2026-12-01T18:00", false, time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC), ""},
		{"2026-12-01 18:00:30", false, time.Date(2026, 12, 1, 17, 0, 30, 0, time.UTC), ""},
		{"2026-12-01", false, time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC), ""},
		{"2026-12-01T18:00:00+02:00", false, time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC), ""},
		{"2026-12-01T18:00:00Z", false, time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC), ""},
		{" 4h ", false, now.Add(4 * time.Hour), ""},
		{"tomorrow", false, time.Time{}, `--until "tomorrow": give a time like "2026-12-01 18:00" (local time)`},
		{"4 hours", false, time.Time{}, "or a duration like 4h, 90m or 2d (from now)"},
		{"1h", true, now.Add(-time.Hour), ""},
		{"yesterday", true, time.Time{}, "or 2d (ago)"},
		{"2026-13-01 18:00", false, time.Time{}, "give a time like"},
		{"-1h", false, time.Time{}, "give a duration greater than zero"},
		{"0s", false, time.Time{}, "give a duration greater than zero"},
		{"", false, time.Time{}, "give a time like"},
	} {
		got, err := c.parseTime("until", tc.in, tc.ago)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseTime(%q): %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseTime(%q, ago %t) = %v, %v; want %v", tc.in, tc.ago, got, err, tc.want)
		}
	}
	for _, past := range []string{"2026-06-01 12:59", "2020-01-01", "2026-06-01T11:59:59Z"} {
		if _, err := c.parseUntil("until", past); err == nil || !strings.Contains(err.Error(), "is in the past (it is 2026-06-01 13:00 now)") {
			t.Errorf("parseUntil(%q): %v, want an error saying it is in the past", past, err)
		}
	}
	if got, err := c.parseUntil("expires", "2026-06-01 13:01"); err != nil || !got.Equal(now.Add(time.Minute)) {
		t.Errorf("a minute ahead: %v, %v", got, err)
	}
}

func TestBytesAndDurationText(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {999, "999 B"}, {1000, "1.0 kB"}, {1500, "1.5 kB"}, {12_345_678, "12 MB"}, {3_200_000_000, "3.2 GB"}} {
		if got := bytesText(tc.n); got != tc.want {
			t.Errorf("bytesText(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {400 * time.Millisecond, "0s"}, {1500 * time.Millisecond, "2s"}, {125 * time.Second, "2m5s"}, {2*time.Hour + 5*time.Minute, "2h5m0s"}} {
		if got := durationText(tc.d); got != tc.want {
			t.Errorf("durationText(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// between is the text in s after the first start, up to end.
func between(s, start, end string) string {
	_, s, _ = strings.Cut(s, start)
	s, _, _ = strings.Cut(s, end)
	return s
}

func TestEveryCommandHasItsUsage(t *testing.T) {
	for name := range commands {
		u, ok := usages[name]
		if !ok || !strings.Contains(u, "hubrelay "+name+" ") {
			t.Errorf("hubrelay %s --help: %q", name, u)
		}
		if !strings.Contains(usage, "hubrelay "+name+" ") {
			t.Errorf("the usage does not name hubrelay %s", name)
		}
	}
	for _, args := range [][]string{{"--help"}, {"add", "-h"}, {"alice", "home", "-help"}} {
		if !wantsHelp(args) {
			t.Errorf("wantsHelp(%q) = false", args)
		}
	}
	if wantsHelp([]string{"help", "home"}) {
		t.Error("a user named help cannot be granted")
	}
}
