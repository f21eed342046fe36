package relay

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestAgentOverTLS: an agent with transport "tls" reaches its hub through
// the relay's public port 443 (ALPN hubtunnel/1, shared with browsers) and
// through the agent port (TLS told from frames by its first byte); the
// hub's page loads through the relay and the relay logs the connection as
// TLS.
func TestAgentOverTLS(t *testing.T) {
	for _, via := range []string{"port 443", "agent port"} {
		t.Run(via, func(t *testing.T) {
			tr := startTestRelay(t, false, "a")
			addr := fmt.Sprintf("127.0.0.1:%d", 443+tr.offset)
			if via == "agent port" {
				addr = tr.AgentAddr().String()
			}
			d := &uplink.Dialer{Transport: "tls", RelayTLS: addr}
			a := startTestAgentVia(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{}, tr.PublicKey(), tr.AgentAddr().String(), d)
			poll.Until(t, 10*time.Second, "the hub to come online", func() bool { return tr.hubs.online(tr.hubs.name("a")) })
			if code, err := tr.get("a"); code != 200 {
				t.Fatalf("GET through the relay: %d, %v", code, err)
			}
			if st := a.bind.Status(); st.Route != uplink.RouteTLS {
				t.Errorf("the agent's route is %q, want %q", st.Route, uplink.RouteTLS)
			}
			if tr.logged(`msg="hub connected" hub=a `, "transport=tls") != 1 {
				t.Errorf("the relay did not log the hub as connected over tls")
			}
			// Directly, not through an upgrade: the relay chose ALPN hubtunnel/1.
			tc := dialTLS(t, addr, wire.ALPN, "http/1.1")
			if got := tc.ConnectionState().NegotiatedProtocol; got != wire.ALPN || !sayHello(tc, tc, tr.keys["a"].Public()) {
				t.Errorf("ALPN: negotiated %q, or no relay Hello", got)
			}
		})
	}
}

// dialTLS opens TLS to addr offering protos (none: no ALPN).
func dialTLS(t *testing.T, addr string, protos ...string) *tls.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "a.localhost", NextProtos: protos})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	return tc
}

// sayHello sends an agent's Hello for key on c and reports whether the
// relay answered with its own: then the connection reached serveAgent.
func sayHello(c net.Conn, r io.Reader, key vpn.PublicKey) bool {
	hello, _ := wire.AppendFrame(nil, wire.Hello{Version: wire.ProtocolVersion, Key: key, Software: "test"}.Marshal())
	if _, err := c.Write(hello); err != nil {
		return false
	}
	wc := wire.NewConn(readerConn{Conn: c, r: r}, wire.ConnConfig{})
	buf := make([]byte, wire.MaxFrame)
	n, err := wc.ReadFrame(buf)
	if err != nil {
		return false
	}
	h, err := wire.ParseHello(buf[:n])
	return err == nil && h.Software == "hubrelay/test"
}

type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

const upgradeRequest = "GET /.hubtunnel/agent HTTP/1.1\r\nHost: relay.example\r\nConnection: Upgrade\r\nUpgrade: hubtunnel/1\r\n\r\n"

// TestAgentUpgrade: behind a TLS-inspecting proxy, which offers the relay
// only HTTP, the agent's HTTP upgrade on port 443 (any Host, no login) and
// on the agent port gets 101 and then the agent protocol.
func TestAgentUpgrade(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", 443+tr.offset), tr.AgentAddr().String()} {
		for _, protos := range [][]string{nil, {"http/1.1"}} {
			tc := dialTLS(t, addr, protos...)
			io.WriteString(tc, upgradeRequest)
			br := bufio.NewReader(tc)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != wire.ALPN {
				t.Fatalf("%s ALPN %q: upgrade answered %v, %v", addr, protos, resp, err)
			}
			if !sayHello(tc, br, tr.keys["a"].Public()) {
				t.Errorf("%s ALPN %q: no relay Hello after the upgrade", addr, protos)
			}
		}
	}
}

// TestPort443StillServesBrowsers: with agents on port 443, a browser's
// HTTP/1.1 request (ALPN h2 and http/1.1, or none) gets the hub's page.
func TestPort443StillServesBrowsers(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "the hub to come online", a.handshaken)
	addr := fmt.Sprintf("127.0.0.1:%d", 443+tr.offset)
	for _, protos := range [][]string{{"h2", "http/1.1"}, nil} {
		tc := dialTLS(t, addr, protos...)
		if got := tc.ConnectionState().NegotiatedProtocol; got != "" && got != "http/1.1" {
			t.Errorf("ALPN %q: negotiated %q", protos, got)
		}
		req, _ := http.NewRequest("GET", "https://a.localhost/", nil)
		req.SetBasicAuth("hubtunnel", tr.tokens["a"])
		req.Write(tc)
		resp, err := http.ReadResponse(bufio.NewReader(tc), req)
		if err != nil {
			t.Fatalf("ALPN %q: %v", protos, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != testAgentPage {
			t.Errorf("ALPN %q: %d %.100q, want the hub's page", protos, resp.StatusCode, body)
		}
	}
}

// TestAgentUpgradeRefusesJunk: what is not an agent's upgrade, or not on
// port 443 or the agent port, never reaches the agent protocol: it gets
// an HTTP answer other than 101 (or is closed), and no relay Hello.
func TestAgentUpgradeRefusesJunk(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	key := tr.keys["a"].Public()
	p443 := fmt.Sprintf("127.0.0.1:%d", 443+tr.offset)
	p4431 := fmt.Sprintf("127.0.0.1:%d", 4431+tr.offset)
	for _, c := range []struct {
		name, addr, req string
	}{
		{"no upgrade headers", p443, "GET /.hubtunnel/agent HTTP/1.1\r\nHost: a.localhost\r\n\r\n"},
		{"another protocol", p443, "GET /.hubtunnel/agent HTTP/1.1\r\nHost: a.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"no Connection: Upgrade", p443, "GET /.hubtunnel/agent HTTP/1.1\r\nHost: a.localhost\r\nUpgrade: hubtunnel/1\r\n\r\n"},
		{"POST", p443, "POST /.hubtunnel/agent HTTP/1.1\r\nHost: a.localhost\r\nConnection: Upgrade\r\nUpgrade: hubtunnel/1\r\nContent-Length: 0\r\n\r\n"},
		{"another path", p443, "GET /.hubtunnel/agent/x HTTP/1.1\r\nHost: a.localhost\r\nConnection: Upgrade\r\nUpgrade: hubtunnel/1\r\n\r\n"},
		{"a query", p443, "GET /.hubtunnel/agent?x HTTP/1.1\r\nHost: a.localhost\r\nConnection: Upgrade\r\nUpgrade: hubtunnel/1\r\n\r\n"},
		{"another TLS port", p4431, upgradeRequest},
		{"junk on the agent port", tr.AgentAddr().String(), "GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n"},
		{"Hello in the upgrade's packet", tr.AgentAddr().String(), upgradeRequest + "\x00\x05hello"},
	} {
		tc := dialTLS(t, c.addr)
		io.WriteString(tc, c.req)
		br := bufio.NewReader(tc)
		resp, err := http.ReadResponse(br, nil)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			t.Errorf("%s: 101", c.name)
			continue
		}
		if sayHello(tc, br, key) {
			t.Errorf("%s: the relay said Hello", c.name)
		}
	}
	// ALPN hubtunnel/1 is port 443's alone.
	if got := dialTLS(t, p4431, wire.ALPN, "http/1.1").ConnectionState().NegotiatedProtocol; got == wire.ALPN {
		t.Errorf("port 4431 negotiated %q", got)
	}
	// After a good upgrade, bytes that are not a Hello end the connection.
	tc := dialTLS(t, p443)
	io.WriteString(tc, upgradeRequest)
	br := bufio.NewReader(tc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(tc, "\x00\x04junk")
	if n, err := br.Read(make([]byte, 1)); err == nil {
		t.Errorf("junk after the upgrade: the relay answered %d bytes", n)
	}
	if tr.logged(`msg="hub connected"`) != 0 {
		t.Error("a hub connected")
	}
}

// TestAgentOn443KeepsConnLimit: an agent on port 443 counts against the
// address's connection limit there, as a browser does.
func TestAgentOn443KeepsConnLimit(t *testing.T) {
	tr := startTestRelayWith(t, false, func(c *Config) { c.LimitConnsPerAddress = 1 }, "a")
	addr := fmt.Sprintf("127.0.0.1:%d", 443+tr.offset)
	first := dialTLS(t, addr, wire.ALPN)
	if !sayHello(first, first, tr.keys["a"].Public()) {
		t.Fatal("the first agent connection got no Hello")
	}
	for _, up := range []bool{false, true} {
		var tc *tls.Conn
		if up {
			tc = dialTLS(t, addr)
			io.WriteString(tc, upgradeRequest)
			br := bufio.NewReader(tc)
			if resp, err := http.ReadResponse(br, nil); err == nil && resp.StatusCode == 101 {
				t.Error("upgrade over the limit: 101")
			}
			continue
		}
		tc = dialTLS(t, addr, wire.ALPN)
		if sayHello(tc, tc, tr.keys["a"].Public()) {
			t.Error("ALPN over the limit: the relay said Hello")
		}
	}
	if tr.log.find("more than 1 connections") == "" {
		t.Error("the limit was not logged")
	}
}
