package relay

import (
	"strings"
	"testing"

	"github.com/hubtunnel/hubtunnel/config"
)

const keyA = "LMk8RbqF4QZxPFrooHk6K8caKCHbxDhcRH6njeQDhQY="
const keyB = "r2dsDlU7K8xZuk+hFigsxloGMn8uD/G5mr9HxKMTPzw="

func TestConfig(t *testing.T) {
	head := "domain = \"hubs.example\"\nprivate_key_file = \"relay.key\"\n"
	hub := func(name, key, ip string) string {
		return "[[hub]]\nname = \"" + name + "\"\npublic_key = \"" + key + "\"\ntunnel_ip = \"" + ip + "\"\n"
	}
	tests := []struct {
		name, in, want string // want: substring of the error; "" = valid
	}{
		{"minimal", head, ""},
		{"two hubs", head + hub("a", keyA, "100.96.0.2") + hub("b", keyB, "100.96.0.3"), ""},
		{"no domain", "private_key_file = \"k\"\n", "domain: missing"},
		{"no key file", "domain = \"x\"\n", "private_key_file: missing"},
		{"bad offset", head + "port_offset = 30000\n", "x.toml:3: port_offset"},
		{"bad agent_listen", head + "agent_listen = \"7443\"\n", "agent_listen"},
		{"half tls", head + "tls_cert_file = \"c.pem\"\n", "tls_cert_file"},
		{"bad hub name", head + hub("Bad_Name", keyA, "100.96.0.2"), "x.toml:4: hub[0].name"},
		{"bad hub key", head + hub("a", "nope", "100.96.0.2"), "x.toml:5: hub[0].public_key"},
		{"duplicate name", head + hub("a", keyA, "100.96.0.2") + hub("a", keyB, "100.96.0.3"), "x.toml:8: hub[1].name: \"a\" is used twice"},
		{"duplicate key", head + hub("a", keyA, "100.96.0.2") + hub("b", keyA, "100.96.0.3"), "same key as hub \"a\""},
		{"hub on relay ip", head + hub("a", keyA, "100.96.0.1"), "already used by the relay"},
		{"unknown key", head + "agent_port = 1\n", "unknown key \"agent_port\""},
		{"limits and plaintext", head + "plaintext_ports = true\nlimit_conns_per_address = 8\nlimit_requests_per_second = 2.5\n", ""},
		{"bad conn limit", head + "limit_conns_per_address = -1\n", "x.toml:3: limit_conns_per_address"},
		{"bad rate limit", head + "limit_requests_per_second = 0.01\n", "x.toml:3: limit_requests_per_second"},
		{"connection limits", head + "limit_public_conns = 100\nlimit_agent_conns = 200\nlimit_agent_prehello_per_address = 4\nlimit_sessions_per_hub = 10\n", ""},
		{"bad public conns", head + "limit_public_conns = -5\n", "x.toml:3: limit_public_conns"},
		{"bad sessions per hub", head + "limit_sessions_per_hub = -1\n", "x.toml:3: limit_sessions_per_hub"},
	}
	for _, tt := range tests {
		var c Config
		err := config.Parse("x.toml", []byte(tt.in), &c)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestClassifyHost(t *testing.T) {
	s := &Server{cfg: Config{Domain: "hubs.example", PublicHost: "relay.example"}}
	hub := func(n string) hostName { return hostName{kind: hostHub, hub: n} }
	for _, tt := range []struct {
		host string
		want hostName
	}{
		{"home.hubs.example", hub("home")},
		{"Home.HUBS.example:8443", hub("home")},
		{"home.hubs.example.", hub("home")},
		{"relay.example", hostName{kind: hostPortal}},
		{"Relay.Example:443", hostName{kind: hostPortal}},
		{"hubs.example", hostName{}},
		{"a.b.hubs.example", hostName{}},
		{"home.other.example", hostName{}},
		{"homehubs.example", hostName{}},
		{"127.0.0.1:443", hostName{}},
		{"", hostName{}},
	} {
		if got := s.classify(tt.host); got != tt.want {
			t.Errorf("classify(%q) = %+v, want %+v", tt.host, got, tt.want)
		}
	}
}
