package ccufirewall

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func load(t *testing.T, name string) *Settings {
	t.Helper()
	if name == "(none)" {
		return Defaults()
	}
	if name == "(lockdown)" {
		return Lockdown()
	}
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

const (
	relay = "100.96.0.1"    // the relay's tunnel address: how a remote user looks today
	lan   = "192.168.178.5" // inside the fixtures' range
	lan6  = "fd00::5"       // inside fc00::/7
)

// TestCheck: each fixture (testdata/README.md) and access level, for the
// tunnel's ports, as the CCU decides for a LAN client with that address.
func TestCheck(t *testing.T) {
	tests := []struct {
		file  string
		port  uint16
		src   string
		allow bool
	}{
		// HIGH: RESTRICTIVE, everything "none".
		{"high.conf", 2001, lan, false},
		{"high.conf", 2001, relay, false},
		{"high.conf", 8181, lan, false},
		{"high.conf", 48181, lan, false},
		{"high.conf", 2010, lan, false},
		{"high.conf", 80, relay, true},
		{"high.conf", 443, relay, true},
		{"high.conf", 2003, lan, false}, // not a CCU service: closed by the policy
		{"high.conf", 90, lan, false},
		// MEDIUM: RESTRICTIVE, everything "restricted" to 192.168.178.0/24.
		{"medium.conf", 2001, lan, true},
		{"medium.conf", 2001, relay, false},
		{"medium.conf", 8181, lan, true},
		{"medium.conf", 8181, relay, false},
		{"medium.conf", 8181, "192.168.179.5", false},
		{"medium.conf", 8181, lan6, true},
		{"medium.conf", 8181, "2001:db8::1", false},
		{"medium.conf", 8181, "::ffff:" + lan, true}, // a mapped address is its IPv4 self
		{"medium.conf", 80, relay, true},
		// LOW: MOST_OPEN, XML-RPC full, script restricted.
		{"low.conf", 2001, relay, true},
		{"low.conf", 2000, relay, true},
		{"low.conf", 8181, relay, false},
		{"low.conf", 8181, lan, true},
		{"low.conf", 2003, relay, true}, // open policy
		{"low.conf", 90, relay, true},
		{"low.conf", 32001, relay, false}, // rfd's internal port
		{"low.conf", 38181, relay, false},
		{"low.conf", 8183, relay, false},
		{"low.conf", 22, relay, false},
		// Full access in RESTRICTIVE mode.
		{"full-restrictive.conf", 2001, relay, true},
		{"full-restrictive.conf", 8181, relay, true},
		{"full-restrictive.conf", 2003, relay, false},
		// "none" wins even in MOST_OPEN.
		{"none-mostopen.conf", 2001, relay, false},
		{"none-mostopen.conf", 8181, lan, false},
		{"none-mostopen.conf", 80, relay, true},
		{"none-mostopen.conf", 2003, relay, true},
		// "restricted" in MOST_OPEN.
		{"restricted-mostopen.conf", 8181, relay, false},
		{"restricted-mostopen.conf", 8181, lan, true},
		// The owner lists the relay's address: restricted opens to it.
		{"restricted-relay-listed.conf", 8181, relay, true},
		{"restricted-relay-listed.conf", 2001, relay, true},
		{"restricted-relay-listed.conf", 2001, "100.96.0.2", false},
		// USERPORTS override the service's level (8181) and open a port (2003).
		{"userports.conf", 8181, relay, true},
		{"userports.conf", 2003, relay, true},
		{"userports.conf", 2001, relay, false},
		// Ignored entries match nothing; the good ones still do.
		{"ignored-entries.conf", 8181, "10.1.2.3", true},     // 10.1.0.0/255.255.0.0
		{"ignored-entries.conf", 8181, "10.2.0.1", false},    // "10.0.0.0/33" ignored
		{"ignored-entries.conf", 8181, "192.168.1.1", false}, // "myhost.fritz.box" ignored
		{"ignored-entries.conf", 8181, "172.16.0.1", true},   // host bits masked: 172.16.0.9/12
		// No file: the factory defaults, everything "none".
		{"(none)", 2001, "192.168.1.5", false},
		{"(none)", 8181, "192.168.1.5", false},
		{"(none)", 80, relay, true},
		// A file that cannot be trusted: only the WebUI.
		{"(lockdown)", 80, relay, true},
		{"(lockdown)", 443, relay, true},
		{"(lockdown)", 2001, lan, false},
		{"(lockdown)", 8181, lan, false},
		{"(lockdown)", 2003, lan, false},
	}
	for _, tt := range tests {
		s := load(t, tt.file)
		v := s.Check(tt.port, netip.MustParseAddr(tt.src))
		if v.Allow != tt.allow {
			t.Errorf("%s: port %d from %s: allow = %v (%s %s: %s), want %v", tt.file, tt.port, tt.src, v.Allow, v.Service, v.Access, v.Reason, tt.allow)
		}
	}
}

// TestParseRejects: what makes a file untrustworthy, one row each.
func TestParseRejects(t *testing.T) {
	good := "MODE = RESTRICTIVE\nIPs = 192.168.0.0/16\n[SERVICE REGA]\nId = REGA\nPorts = 8181\nAccess = none\n"
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("the good base does not parse: %v", err)
	}
	tests := []struct{ data, want string }{
		{"MODE = RESTRICTIVE", "newline"},
		{"MODE = OPEN\n", "MODE"},
		{"MODE = RESTRICTIVE\nMODE = MOST_OPEN\n", "twice"},
		{"SOMETHING = 1\n", "unknown key"},
		{"just words\n", "not key = value"},
		{"[SERVICE REGA\nId = REGA\nAccess = none\n", "[section]"},
		{"[SERVICE REGA]\nPorts = 8181\nAccess = none\n", "no Id"},
		{"[SERVICE REGA]\nId = REGA\nPorts = 8181\n", "no Access"},
		{"[SERVICE REGA]\nId = REGA\nAccess = open\n", "Access"},
		{"[SERVICE REGA]\nId = REGA\nAccess = Full\n", "Access"},
		{"[SERVICE REGA]\nId = REGA\nPorts = 8181 x\nAccess = none\n", "Ports"},
		{"[SERVICE REGA]\nId = REGA\nPorts = 70000\nAccess = none\n", "Ports"},
		{"[SERVICE REGA]\nId = REGA\nPorts = 0\nAccess = none\n", "Ports"},
		{"[SERVICE REGA]\nId = REGA\nAccess = none\n[SERVICE X]\nId = REGA\nAccess = full\n", "also at line"},
		{"[SERVICE REGA]\nId = rega\nAccess = none\n", "Id"},
		{"[SERVICE REGA]\nId = REGA\nAccess = none\nFoo = 1\n", "unknown key"},
		{"USERPORTS = 80 http\n", "USERPORTS"},
		{"IPs = {192.168.0.0/16}\n", "character"},
		{"IPs = 192.168.0.0/16\x00\n", "character"},
		{strings.Repeat("#\n", MaxSize), "more than"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%.60q) = %v, want an error with %q", tt.data, err, tt.want)
		}
	}
}

// TestParseLikeTheCCU: what the CCU's reader does with files it wrote.
func TestParseLikeTheCCU(t *testing.T) {
	// An empty file (Tcl has just truncated it) and a file without a
	// service section: every service keeps its default, "none"; IPs
	// absent means no ranges (not the defaults).
	for _, data := range []string{"", "# only a comment\n", "MODE = MOST_OPEN\n"} {
		s, err := Parse([]byte(data))
		if err != nil {
			t.Fatalf("Parse(%q): %v", data, err)
		}
		for _, svc := range s.Services {
			if svc.Access != None {
				t.Errorf("Parse(%q): %s is %s, want none", data, svc.ID, svc.Access)
			}
		}
		if len(s.IPs) != 0 {
			t.Errorf("Parse(%q): IPs %v, want none", data, s.IPs)
		}
	}
	// The file's ports add to the defaults; a service the package does
	// not know counts like any other.
	s, err := Parse([]byte("[SERVICE REGA]\nId = REGA\nPorts = 8181 18181\nAccess = restricted\n[SERVICE NEW]\nId = NEW\nPorts = 7000\nAccess = none\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rega, _ := s.Service("REGA"); len(rega.Ports) != 5 || rega.Access != Restricted {
		t.Errorf("REGA = %+v, want the 4 default ports and 18181, restricted", rega)
	}
	if v := s.Check(7000, netip.MustParseAddr(lan)); v.Allow || v.Service != "NEW" {
		t.Errorf("port of an unknown service: %+v, want refused by NEW", v)
	}
	// UDP-only ports of a service do not count for TCP.
	if v := Defaults().Check(10000, netip.MustParseAddr(lan)); v.Service != "" {
		t.Errorf("TCP 10000 decided by %s; 10000 is UDP only", v.Service)
	}
	// Entries iptables could not use match nothing and are reported.
	ign := load(t, "ignored-entries.conf").Ignored
	if want := []string{"myhost.fritz.box", "10.0.0.0/33", "::ffff:10.2.0.1", "fe80::1%eth0", "10.3.0.0/255.0.255.0"}; !slices.Equal(ign, want) {
		t.Errorf("Ignored = %q, want %q", ign, want)
	}
	// Windows line ends and leading blanks are read as the CCU reads them.
	if s, err := Parse([]byte("  MODE = MOST_OPEN\r\n")); err != nil || s.Mode != MostOpen {
		t.Errorf("CRLF: %v %v", s, err)
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	s := load(t, "medium.conf")
	src := netip.MustParseAddr(relay)
	if n := testing.AllocsPerRun(100, func() { s.Check(8181, src) }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
}

// TestFileFollowsChanges: the owner's change applies to the next
// connection, without a restart, and a broken file locks down until fixed,
// with one log line per change.
func TestFileFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "firewall.conf")
	now := time.Now() // every mtime is "recent": each Current reads the file again
	var mu sync.Mutex
	var logs []string
	f := &File{Path: path, Now: func() time.Time { return now }, Logf: func(format string, args ...any) {
		mu.Lock()
		logs = append(logs, format)
		mu.Unlock()
	}}
	src := netip.MustParseAddr(relay)
	check := func(step string, want bool, source string) {
		t.Helper()
		st := f.Current()
		if got := st.Settings.Check(8181, src).Allow; got != want || st.Source != source {
			t.Fatalf("%s: allow %v from %q (%v), want %v from %q", step, got, st.Source, st.Err, want, source)
		}
	}
	check("no file", false, "defaults")
	check("still no file", false, "defaults")

	write := func(name string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("full-restrictive.conf")
	check("full access", true, "file")
	write("high.conf") // the same size as the last, within the same second: the racy window reads it
	check("no access", false, "file")
	os.WriteFile(path, []byte("MODE = RESTRICTIVE\n[SERVICE REGA]\nId = REGA\nAccess = fuul\n"), 0o644)
	check("malformed", false, "lockdown")
	check("malformed, again", false, "lockdown")
	write("full-restrictive.conf")
	check("fixed", true, "file")
	os.Remove(path)
	check("removed", false, "defaults")

	// Outside the racy window a stat decides: an unchanged file is not
	// read again (here: its content changes under an unchanged size and
	// time, which only a reader would notice).
	write("full-restrictive.conf")
	fi, _ := os.Stat(path)
	now = time.Now().Add(time.Hour)
	check("settled", true, "file")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), "Access = full", "Access = none", -1)), 0o644)
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	check("settled, not read again", true, "file")

	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 7 {
		t.Errorf("%d log lines, want one per change (7): %q", len(logs), logs)
	}
}

func TestFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	f := &File{Path: dir} // a directory
	st := f.Current()
	if st.Source != "lockdown" || st.Err == nil || st.Settings.Check(2001, netip.MustParseAddr(lan)).Allow {
		t.Fatalf("a directory as the file: %+v", st)
	}
}
