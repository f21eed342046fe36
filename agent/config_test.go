package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/wire"
)

const dnsBase = `relay = "relay.example.com:7443"
relay_public_key = "koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I="
tunnel_ip = "100.96.0.2"
`

func TestDNSConfig(t *testing.T) {
	dir := t.TempDir()
	c := &Config{dir: dir}
	if err := config.Parse("hub.toml", []byte(dnsBase), c); err != nil {
		t.Fatal(err)
	}
	if c.DNS.Fallback != nil || c.DNS.CacheFile != filepath.Join(dir, "dns-cache.json") || c.DNS.timeout != 2*time.Second {
		t.Errorf("defaults: %+v", c.DNS)
	}

	c = &Config{dir: dir}
	conf := dnsBase + "\n[dns]\nfallback = [\"9.9.9.9\", \"[2620:fe::fe]:53\"]\nsystem = [\"127.0.0.2:5353\"]\ncache_file = \"/var/x.json\"\ntimeout = \"500ms\"\n"
	if err := config.Parse("hub.toml", []byte(conf), c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.DNS.Fallback, []string{"9.9.9.9", "[2620:fe::fe]:53"}) || c.DNS.CacheFile != "/var/x.json" || c.DNS.timeout != 500*time.Millisecond {
		t.Errorf("set: %+v", c.DNS)
	}
	if _, err := c.DNSResolver(nil); err != nil {
		t.Errorf("DNSResolver: %v", err)
	}

	for _, tt := range []struct{ table, want string }{
		{"fallback = [\"dns.google\"]", "hub.toml:5: dns.fallback: \"dns.google\": want an IP address"},
		{"system = [\"127.0.0.1:0\"]", "hub.toml:5: dns.system: \"127.0.0.1:0\": port 0"},
		{"timeout = \"forever\"", "hub.toml:5: dns.timeout: \"forever\""},
		{"timeout = \"1h\"", "hub.toml:5: dns.timeout"},
		{"fallback = \"8.8.8.8\"", "dns.fallback"},
		{"colour = 1", "unknown key \"dns.colour\""},
	} {
		err := config.Parse("hub.toml", []byte(dnsBase+"[dns]\n"+tt.table+"\n"), &Config{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("[dns] %s: got %v, want %q", tt.table, err, tt.want)
		}
	}
}

// TestRelayAddress: relay is split once, in Validate, into what its users
// read; a malformed one names the file, the line and the key.
func TestRelayAddress(t *testing.T) {
	const rest = "relay_public_key = \"koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I=\"\ntunnel_ip = \"100.96.0.2\"\n"
	for _, tt := range []struct {
		relay, host string
		port        uint16
		ip          string // "" for a name
	}{
		{"relay.example.com:7443", "relay.example.com", 7443, ""},
		{"fritz.box:443", "fritz.box", 443, ""},
		{"127.0.0.1:7443", "127.0.0.1", 7443, "127.0.0.1"},
		{"[::1]:1", "::1", 1, "::1"},
		{"[::ffff:192.0.2.1]:65535", "::ffff:192.0.2.1", 65535, "192.0.2.1"},
		{"[fe80::1%eth0]:7443", "fe80::1%eth0", 7443, "fe80::1%eth0"},
	} {
		c := &Config{}
		if err := config.Parse("hub.toml", []byte("relay = \""+tt.relay+"\"\n"+rest), c); err != nil {
			t.Errorf("relay %q: %v", tt.relay, err)
			continue
		}
		ip := ""
		if c.relayIP.IsValid() {
			ip = c.relayIP.String()
		}
		if c.relayHost != tt.host || c.relayPort != tt.port || ip != tt.ip || c.relayIsName() != (tt.ip == "") {
			t.Errorf("relay %q: host %q port %d ip %q, want %q %d %q", tt.relay, c.relayHost, c.relayPort, ip, tt.host, tt.port, tt.ip)
		}
	}

	for _, tt := range []struct{ relay, want string }{
		{"", `hub.toml:1: relay: missing`},
		{"relay.example.com", `hub.toml:1: relay: "relay.example.com": want host:port`},
		{":7443", `hub.toml:1: relay: ":7443": want host:port`},
		{"::1:7443", `hub.toml:1: relay: "::1:7443": want host:port`},
		{"relay.example.com:", `hub.toml:1: relay: "relay.example.com:": want a port from 1 to 65535`},
		{"relay.example.com:0", `hub.toml:1: relay: "relay.example.com:0": want a port from 1 to 65535`},
		{"relay.example.com:65536", `hub.toml:1: relay: "relay.example.com:65536": want a port from 1 to 65535`},
		{"relay.example.com:https", `hub.toml:1: relay: "relay.example.com:https": want a port from 1 to 65535`},
	} {
		err := config.Parse("hub.toml", []byte("relay = \""+tt.relay+"\"\n"+rest), &Config{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("relay %q: got %v, want %q", tt.relay, err, tt.want)
		}
	}
}

// TestTransportTLS: transports "tls" and "auto" take relay_tls, by default
// the relay's host at 443; the other transports refuse it, and a bad one
// names its key.
func TestTransportTLS(t *testing.T) {
	for _, tt := range []struct{ extra, want, relayTLS string }{
		{"transport = \"tls\"\n", "", "relay.example.com:443"},
		{"transport = \"auto\"\nrelay_tls = \"tls.example.com:8443\"\n", "", "tls.example.com:8443"},
		{"transport = \"tls\"\nrelay_tls = \"[2001:db8::1]:443\"\n", "", "[2001:db8::1]:443"},
		{"transport = \"tcp\"\nrelay_tls = \"relay.example.com:443\"\n", "hub.toml:5: relay_tls: only for transport \"tls\" or \"auto\"", ""},
		{"transport = \"tls\"\nrelay_tls = \"relay.example.com\"\n", "hub.toml:5: relay_tls: \"relay.example.com\": want host:port", ""},
		{"transport = \"tls\"\nrelay_tls = \"relay.example.com:0\"\n", "relay_tls: \"relay.example.com:0\": want a port from 1 to 65535", ""},
		{"transport = \"tls\"\npersistent_keepalive = 25\n", "persistent_keepalive: only for transport \"udp\"", ""},
		{"transport = \"https\"\n", "transport: \"https\": want \"tcp\", \"udp\", \"tls\" or \"auto\"", ""},
	} {
		c := &Config{}
		err := config.Parse("hub.toml", []byte(dnsBase+tt.extra), c)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.extra, err)
		case tt.want == "" && (c.RelayTLS != tt.relayTLS || c.MTU != wire.MaxTunnelMTU):
			t.Errorf("%q: relay_tls %q mtu %d, want %q and %d", tt.extra, c.RelayTLS, c.MTU, tt.relayTLS, wire.MaxTunnelMTU)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: got %v, want %q", tt.extra, err, tt.want)
		}
	}
}

// TestPanelRegaFollowsTheCCU: without [panel] rega, the panel asks ReGaHss
// on the port /etc/rega_http.port names (RaspberryMatic's, where 8181 is
// lighttpd's and may want a login), else on 8181; a port file that is no
// port is ignored.
func TestPanelRegaFollowsTheCCU(t *testing.T) {
	for _, tt := range []struct{ file, want string }{
		{"", "http://127.0.0.1:8181"},
		{"8183\n", "http://127.0.0.1:8183"},
		{"eight\n", "http://127.0.0.1:8181"},
	} {
		root := t.TempDir()
		if tt.file != "" {
			os.MkdirAll(filepath.Join(root, "etc"), 0o755)
			writeTestFile(t, filepath.Join(root, "etc/rega_http.port"), tt.file)
		}
		c := &Config{dir: t.TempDir(), root: root}
		if err := config.Parse("hub.toml", []byte(dnsBase), c); err != nil {
			t.Fatal(err)
		}
		if c.Panel.Rega != tt.want {
			t.Errorf("port file %q: rega %q, want %q", tt.file, c.Panel.Rega, tt.want)
		}
	}
}

// TestMaxSessions: max_sessions defaults to DefaultMaxSessions and names
// itself when it is not a positive number.
func TestMaxSessions(t *testing.T) {
	for _, tt := range []struct {
		extra, want string
		max         int
	}{
		{"", "", DefaultMaxSessions},
		{"max_sessions = 300\n", "", 300},
		{"max_sessions = -1\n", "hub.toml:4: max_sessions: -1: want at least 1", 0},
	} {
		c := &Config{}
		err := config.Parse("hub.toml", []byte(dnsBase+tt.extra), c)
		switch {
		case tt.want == "" && (err != nil || c.MaxSessions != tt.max):
			t.Errorf("%q: max_sessions %d, %v; want %d", tt.extra, c.MaxSessions, err, tt.max)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: got %v, want %q", tt.extra, err, tt.want)
		}
	}
}
