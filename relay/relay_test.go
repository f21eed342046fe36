package relay

import (
	"net"
	"strings"
	"testing"
	"time"

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

func TestHubName(t *testing.T) {
	s := &Server{cfg: Config{Domain: "hubs.example"}}
	for _, tt := range []struct {
		host, name string
		ok         bool
	}{
		{"home.hubs.example", "home", true},
		{"Home.HUBS.example:8443", "home", true},
		{"home.hubs.example.", "home", true},
		{"hubs.example", "", false},
		{"a.b.hubs.example", "", false},
		{"home.other.example", "", false},
		{"homehubs.example", "", false},
		{"", "", false},
	} {
		name, ok := s.hubName(tt.host)
		if name != tt.name || ok != tt.ok {
			t.Errorf("hubName(%q) = %q, %v", tt.host, name, ok)
		}
	}
}

// TestReadHead feeds hostile request heads through a real connection.
func TestReadHead(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
		host     string
	}{
		{"plain", "GET / HTTP/1.1\r\nHost: a.hubs.example\r\n\r\n", true, "a.hubs.example"},
		{"xml-rpc post", "POST / HTTP/1.0\r\nhost:  a.hubs.example:2001 \r\nContent-Length: 3\r\n\r\nabc", true, "a.hubs.example:2001"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", true, ""},
		{"not http", "\x16\x03\x01 tls on a plain port\r\n\r\n", false, ""},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, ""},
		{"oversized", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n", false, ""},
		{"cut off", "GET / HTTP/1.1\r\nHost: a", false, ""},
	}
	for _, tt := range tests {
		a, b := net.Pipe()
		go func() {
			a.Write([]byte(tt.in))
			a.Close()
		}()
		b.SetDeadline(time.Now().Add(5 * time.Second))
		head, err := readHead(b)
		b.Close()
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if err == nil && hostHeader(head) != tt.host {
			t.Errorf("%s: host = %q, want %q", tt.name, hostHeader(head), tt.host)
		}
	}
}

func TestErrorPageEscapes(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		writeError(a, 404, "Unknown hub", `No hub is called "<script>x</script>".`)
		a.Close()
	}()
	buf := make([]byte, 4096)
	var out []byte
	for {
		n, err := b.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	s := string(out)
	if !strings.HasPrefix(s, "HTTP/1.1 404 Unknown hub\r\n") || strings.Contains(s, "<script>") {
		t.Fatalf("error page: %q", s)
	}
}
