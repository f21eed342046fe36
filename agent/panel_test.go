package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/dnsfix/dnsfixtest"
	"github.com/hubtunnel/hubtunnel/panel"
)

const panelTOML = `# the owner's notes
name = "garage"
ui_listen = "127.0.0.1:0"
transport = "tcp"

[targets]
host = "127.0.0.1"

[update]
window = "02:00-04:00"
`

func panelAgent(t *testing.T) (*Agent, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.toml")
	if err := os.WriteFile(path, []byte(panelTOML), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, "0.3.0", nil), path
}

// TestSaveSettingsRefused: a wrong value is refused naming its field, and
// the config file stays byte for byte as it was, with no restart.
func TestSaveSettingsRefused(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(*panel.Settings)
		field string
	}{
		{"bad source", func(s *panel.Settings) { s.AllowedCIDRs = []string{"100.96.0.1/32", "300.1.1.1"} }, "allowed_cidrs"},
		{"no source", func(s *panel.Settings) { s.AllowedCIDRs = nil }, "allowed_cidrs"},
		{"bad proxy", func(s *panel.Settings) { s.Proxy = "socks5://proxy:1080" }, "proxy"},
		{"bad window", func(s *panel.Settings) { s.UpdateWindow = "25:00-03:00" }, "update_window"},
		{"bad resolver", func(s *panel.Settings) { s.DNSFallback = []string{"dns.example"} }, "dns_fallback"},
		{"not an optional port", func(s *panel.Settings) { s.OptionalPorts = []uint16{90, 2000} }, "optional_ports"},
		{"injection attempt", func(s *panel.Settings) { s.Proxy = "http://p:3128\"\nrelay = \"evil:1" }, "proxy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, path := panelAgent(t)
			s := a.Settings()
			c.edit(&s)
			changed, err := a.SaveSettings(s)
			var fe *panel.FieldError
			if !errors.As(err, &fe) || fe.Field != c.field || changed {
				t.Fatalf("SaveSettings = %v, %v; want a FieldError for %s", changed, err, c.field)
			}
			t.Logf("refused: %v", fe)
			if b, _ := os.ReadFile(path); string(b) != panelTOML {
				t.Errorf("the config file changed:\n%s", b)
			}
			select {
			case r := <-a.RestartRequested():
				t.Errorf("a refused change asked for a restart: %s", r.Why)
			default:
			}
		})
	}
}

// TestSaveSettings: a valid change is written with the keys the panel does
// not manage kept, then applied by a restart; no change writes nothing.
func TestSaveSettings(t *testing.T) {
	a, path := panelAgent(t)
	if changed, err := a.SaveSettings(a.Settings()); changed || err != nil {
		t.Fatalf("saving what runs: %v, %v; want nothing to do", changed, err)
	}
	if b, _ := os.ReadFile(path); string(b) != panelTOML {
		t.Fatalf("saving nothing changed the file:\n%s", b)
	}
	s := a.Settings()
	s.Enabled = false
	s.AutoUpdate = false
	s.AllowedCIDRs = []string{"100.96.0.1/32", "100.96.0.0/24"}
	s.OptionalPorts = []uint16{8001}
	s.Proxy = "none"
	if changed, err := a.SaveSettings(s); !changed || err != nil {
		t.Fatalf("SaveSettings = %v, %v", changed, err)
	}
	select {
	case <-a.RestartRequested():
	default:
		t.Error("a saved change asked for no restart")
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{`name = "garage"`, `window = "02:00-04:00"`, `host = "127.0.0.1"`, `transport = "tcp"`, `enabled = false`, `auto = false`, `"100.96.0.0/24"`, `enable = [8001]`, `proxy = "none"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the new file lacks %s:\n%s", want, b)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode is %v, want 0640 as before", fi.Mode().Perm())
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("the saved file does not load: %v", err)
	}
	got := New(cfg, "0.3.0", nil).Settings()
	if got.Enabled || got.AutoUpdate || len(got.AllowedCIDRs) != 2 || len(got.OptionalPorts) != 1 || got.Proxy != "none" {
		t.Errorf("the saved settings read back as %+v", got)
	}
}

func TestLogRing(t *testing.T) {
	var r logRing
	logf := r.tee(nil)
	for i := range logLines + 5 {
		logf("line %d", i)
	}
	l := r.lines()
	if len(l) != logLines || !strings.HasSuffix(l[0], "line 5") || !strings.HasSuffix(l[len(l)-1], "line 204") {
		t.Errorf("kept %d lines, first %q, last %q", len(l), l[0], l[len(l)-1])
	}
}

// TestDNSTrace: the panel's DNS trace resolves the relay's name now with
// the hub's resolver (a real dnsmasq) and says what answered and from
// where; a name nobody knows is a failure that still shows the trace; a
// hub not enrolled has nothing to resolve.
func TestDNSTrace(t *testing.T) {
	hubDNS := dnsfixtest.StartDnsmasq(t, "127.0.0.1", "--address=/relay.example.net/93.184.216.34")
	trace := func(t *testing.T, relay string) panel.Finding {
		t.Helper()
		path := filepath.Join(t.TempDir(), "hub.toml")
		conf := fmt.Sprintf("relay = %q\nrelay_public_key = \"koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I=\"\ntunnel_ip = \"100.96.0.2\"\n\n[dns]\nsystem = [%q]\nfallback = []\ncache_file = %q\ntimeout = \"1s\"\n",
			relay, hubDNS.Addr, filepath.Join(filepath.Dir(path), "dns-cache.json"))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return New(cfg, "0.3.0", nil).DNSTrace(ctx)
	}
	t.Run("known name", func(t *testing.T) {
		f := trace(t, "relay.example.net:443")
		if !f.OK || !strings.Contains(f.Trace, "93.184.216.34") || !strings.Contains(f.Trace, hubDNS.Addr) ||
			f.Said.Kind != "resolved" || !strings.Contains(f.Said.Detail, "93.184.216.34") {
			t.Errorf("DNSTrace = %+v\nwant the answer 93.184.216.34 from %s, kind resolved", f, hubDNS.Addr)
		}
		if !hubDNS.Asked("relay.example.net") {
			t.Error("the hub's resolver was not asked")
		}
	})
	t.Run("unknown name", func(t *testing.T) {
		f := trace(t, "nobody.example.net:443")
		if f.OK || f.Said.Text != "no usable address for nobody.example.net" || f.Said.Kind != "no-address" || !strings.Contains(f.Trace, hubDNS.Addr) {
			t.Errorf("DNSTrace = %+v\nwant a failure (no-address) with the trace", f)
		}
	})
	t.Run("not enrolled", func(t *testing.T) {
		a, _ := panelAgent(t)
		if f := a.DNSTrace(context.Background()); f.OK || f.Said.Kind != "unenrolled" || !strings.Contains(f.Said.Text, "not connected to a relay yet") {
			t.Errorf("DNSTrace unenrolled = %+v", f)
		}
	})
}
