package relay

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
	"github.com/hubtunnel/hubtunnel/wire"
	"golang.zx2c4.com/wireguard/conn"
)

// FuzzAgentInput feeds what an agent controls — a handshake initiation's
// bytes and its Hello's software text — to the relay's readers of them:
// they never panic, and no bytes but a real initiation for the relay's key
// give a key.
func FuzzAgentInput(f *testing.F) {
	relay, err := vpn.GeneratePrivateKey()
	if err != nil {
		f.Fatal(err)
	}
	r, err := noise.NewResponder(relay, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(make([]byte, initiationLen), "hubtunnel/0.2.0 (raspberrymatic 3.79.6 (Raspberry Pi 3, arm64))")
	f.Add([]byte{1, 0, 0, 0}, "hubtunnel/ ((()")
	f.Add(append([]byte{1}, make([]byte, 200)...), "")
	f.Fuzz(func(t *testing.T, msg []byte, software string) {
		if _, ok := r.ReadInitiation(msg); ok {
			t.Fatalf("random bytes read as an initiation for the relay: %x", msg)
		}
		info := parseSoftware(software)
		if len(info.Version)+len(info.Model)+len(info.Firmware) > len(software) {
			t.Fatalf("parseSoftware(%q) = %+v: more than it was given", software, info)
		}
	})
}

// FuzzCookies feeds the Cookie a user sends and the Set-Cookie a hub sends
// through the relay's filters: the relay's session cookie never passes
// either way, and no Domain attribute reaches the user.
func FuzzCookies(f *testing.F) {
	f.Add("a=1; __Host-hubtunnel=secret; b=2", "own=1; Domain=.localhost; Path=/")
	f.Add("hubtunnel=x;;  ;=;", "__Host-hubtunnel=planted; Secure")
	f.Add(" __Host-hubtunnel =x", " hubtunnel=y; DOMAIN=evil ; domain")
	f.Fuzz(func(t *testing.T, cookie, setCookie string) {
		h := http.Header{"Cookie": {cookie}}
		dropRelayCookies(h)
		for _, c := range (&http.Request{Header: h}).Cookies() {
			if isRelayCookie(c.Name) {
				t.Fatalf("Cookie %q passed on %q", cookie, h["Cookie"])
			}
		}
		resp := &http.Response{Header: http.Header{"Set-Cookie": {setCookie}}}
		hubCookies(resp)
		for _, line := range resp.Header["Set-Cookie"] {
			for _, attr := range strings.Split(line, ";")[1:] {
				k, _, _ := strings.Cut(attr, "=")
				if strings.EqualFold(strings.TrimSpace(k), "domain") {
					t.Fatalf("Set-Cookie %q reached the user as %q", setCookie, line)
				}
			}
		}
		for _, c := range resp.Cookies() {
			if isRelayCookie(c.Name) {
				t.Fatalf("Set-Cookie %q set the relay's cookie", setCookie)
			}
		}
	})
}

// FuzzSavedSessions: udp-sessions.json, as a relay left it or damaged, is
// an error or answers to valid addresses, never a panic.
func FuzzSavedSessions(f *testing.F) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	f.Add([]byte(`{"written":"2026-12-02T00:00:00Z","sessions":[{"addr":"192.0.2.7:51820","index":7},{"addr":"[2001:db8::1]:4000","index":4294967295}]}`))
	f.Add([]byte(`{"written":"2026-12-01T00:00:00Z","sessions":[]}`))
	f.Add([]byte(`{"sessions":[{"addr":"0.0.0.0:0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		answers, _, err := parseSavedSessions(data, now, "")
		if err != nil {
			return
		}
		for _, a := range answers {
			ap := a.ep.(*conn.StdNetEndpoint).AddrPort
			if !ap.IsValid() || ap.Port() == 0 {
				t.Fatalf("an answer to %v", ap)
			}
			if _, ok := wire.ParseSessionUnknown(a.msg[:]); !ok {
				t.Fatalf("answer %x is no SessionUnknown", a.msg)
			}
		}
	})
}

// FuzzUDPInbound sends what anyone on the internet can send to the relay's
// UDP port — datagrams of any content, among them replays of a hub's own
// handshake initiation — from a few sockets of strangers, through the
// relay's real socket, WireGuard and all. Afterwards the hub the relay
// serves over UDP still answers through it, its address is still its own,
// and the strangers got no more bytes back than they sent: the relay is no
// amplifier for spoofed sources.
//
// Each input is a stranger (its first byte) and datagrams, each a 2-byte
// big-endian length and as many bytes.
func FuzzUDPInbound(f *testing.F) {
	tr := startTestRelayWith(f, true, func(c *Config) {
		c.LimitRequestsPerSecond = 1e6 // a request for each input, hundreds a second
	}, "a")
	a := startUDPAgent(f, tr, tr.keys["a"], "100.96.0.2")
	a.waitOnline(f, tr, "a")
	h := tr.hubs.name("a")
	u := tr.bind.udpIn
	hubAddr := func() netip.AddrPort {
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.addr[h]
	}
	home := hubAddr()
	if !home.IsValid() {
		f.Fatal("the relay has no address for the UDP hub it serves")
	}
	relayAddr := netip.MustParseAddrPort(tr.cfg.AgentListenUDP)

	var strangers [3]*net.UDPConn
	for i := range strangers {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { c.Close() })
		strangers[i] = c
	}
	var sent, got int // over every input this process ran: an answer may come late

	datagrams := func(ps ...[]byte) []byte {
		var b []byte
		for _, p := range ps {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	other, err := vpn.GeneratePrivateKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(byte(0), datagrams(transportMessage(7, 32), transportMessage(0xffffffff, 96), wire.AppendUDPPing(nil, 7)))
	f.Add(byte(1), datagrams(initiation(f, tr, other, noise.Stamp(time.Now()))))
	f.Add(byte(2), datagrams(initiation(f, tr, tr.keys["a"], noise.Stamp(time.Now().Add(-time.Hour)))))
	f.Add(byte(0), datagrams([]byte{1}, []byte{2, 0, 0, 0}, []byte{3}, make([]byte, 148), make([]byte, 1500)))
	f.Add(byte(1), datagrams(wire.AppendSessionUnknown(nil, 7), wire.AppendUDPPong(nil, 7, 0)))

	f.Fuzz(func(t *testing.T, who byte, data []byte) {
		c := strangers[int(who)%len(strangers)]
		for n := 0; len(data) >= 2 && n < 64; n++ {
			size := min(int(binary.BigEndian.Uint16(data)), len(data)-2, 2048)
			p := data[2 : 2+size]
			data = data[2+size:]
			if _, err := c.WriteToUDPAddrPort(p, relayAddr); err != nil {
				t.Fatal(err)
			}
			sent += len(p)
		}
		if code, err := tr.get("a"); code != 200 {
			t.Fatalf("the UDP hub after the strangers' datagrams: %d, %v", code, err)
		}
		if at := hubAddr(); at != home {
			t.Fatalf("the hub's address is %v after the strangers' datagrams, not its own %v", at, home)
		}
		// Answers come within milliseconds; one later than this counts
		// with the next input's.
		buf := make([]byte, 2048)
		deadline := time.Now().Add(20 * time.Millisecond)
		for _, s := range strangers {
			s.SetReadDeadline(deadline)
			for {
				n, err := s.Read(buf)
				if err != nil {
					break
				}
				got += n
			}
		}
		if got > sent {
			t.Fatalf("strangers sent %d bytes in all and got %d back", sent, got)
		}
	})
}

// FuzzAgentPort connects to the relay's agent port as a stranger and sends
// any bytes — a Hello naming the hub's key (which is no secret) followed by
// a replay of the hub's own initiation or by anything, unknown keys,
// frames cut short, an HTTP request — then hangs up. Afterwards the hub's
// own connection is still the one it had, the hub answers through the
// relay, and the relay has let the stranger's connection go.
func FuzzAgentPort(f *testing.F) {
	tr := startTestRelayWith(f, false, func(c *Config) {
		c.LimitRequestsPerSecond = 1e6 // a request for each input, hundreds a second
	}, "a")
	a := startTestAgent(f, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(f, 15*time.Second, "the hub's page through the relay", func() bool {
		code, _ := tr.get("a")
		return code == 200
	})
	connects := a.bind.Status().Connects
	agentConns := func() int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.agent)
	}

	frames := func(ps ...[]byte) []byte {
		var b []byte
		for _, p := range ps {
			b, _ = wire.AppendFrame(b, p)
		}
		return b
	}
	hello := func(k vpn.PublicKey) []byte {
		return wire.Hello{Version: wire.ProtocolVersion, Key: k, Software: "stranger"}.Marshal()
	}
	other, err := vpn.GeneratePrivateKey()
	if err != nil {
		f.Fatal(err)
	}
	hub := tr.keys["a"]
	f.Add(frames(hello(hub.Public()), initiation(f, tr, hub, noise.Stamp(time.Now().Add(-time.Hour)))))
	f.Add(frames(hello(hub.Public()), initiation(f, tr, other, noise.Stamp(time.Now()))))
	f.Add(frames(hello(other.Public()), initiation(f, tr, other, noise.Stamp(time.Now()))))
	f.Add(frames(hello(hub.Public()), make([]byte, 32), []byte{4, 0, 0, 0}))
	f.Add(append(frames(hello(hub.Public())), 0xff, 0xff, 1, 2, 3))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n"))
	f.Add([]byte{0})

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", tr.AgentAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(data) // the relay may have hung up already
		// What the relay answers (an error frame, say) is read; then
		// the stranger leaves.
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()

		if code, err := tr.get("a"); code != 200 {
			t.Fatalf("the hub after a stranger's connection: %d, %v", code, err)
		}
		if n := a.bind.Status().Connects; n != connects {
			t.Fatalf("the hub's agent connected %d times after a stranger's connection, %d before", n, connects)
		}
		poll.Until(t, 10*time.Second, "the stranger's connection let go", func() bool { return agentConns() == 1 })
	})
}

// FuzzPublicRequest sends any bytes over TLS to the relay's public port for
// hub "a" — requests without credentials or with wrong ones, smuggling
// attempts, a Host other than the TLS name — and hangs up. None of them
// reaches the hub or is answered 500, 502 or 504 (the relay went to the
// hub), the relay logs no panic, and a user with the hub's token still gets
// through, once.
func FuzzPublicRequest(f *testing.F) {
	tr := startTestRelayWith(f, true, func(c *Config) {
		c.LimitRequestsPerSecond = 1e6 // several requests for each input
		c.LimitConnsPerAddress = 1e6
	}, "a")
	var reached atomic.Int64
	page := testHub("100.96.0.2")
	a := startUDPAgentServing(f, tr, tr.keys["a"], "100.96.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		page.ServeHTTP(w, r)
	}))
	a.waitOnline(f, tr, "a")
	addr := fmt.Sprintf("127.0.0.1:%d", 443+tr.offset)
	host := fmt.Sprintf("a.localhost:%d", 443+tr.offset)

	req := func(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n") }
	f.Add(req("GET / HTTP/1.1", "Host: "+host))
	f.Add(req("GET /who HTTP/1.1", "Host: "+host, "Authorization: Basic aHVidHVubmVsOng=")) // hubtunnel:x
	f.Add(req("GET / HTTP/1.1", "Host: "+host, "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte("hubtunnel:"+store.TokenPrefix+strings.Repeat("A", store.TokenLen-len(store.TokenPrefix))))))
	f.Add(req("GET / HTTP/1.1", "Host: "+host, "Cookie: __Host-hubtunnel=x; hubtunnel=y"))
	f.Add(req("POST / HTTP/1.1", "Host: "+host, "Content-Length: 5", "Transfer-Encoding: chunked", "", "0", "", "GET /who HTTP/1.1", "Host: "+host))
	f.Add(req("GET https://a.localhost/who HTTP/1.1", "Host: b.localhost"))
	f.Add(req("GET /.hubtunnel/auth?code=x&next=/who HTTP/1.1", "Host: "+host))
	f.Add(req("GET /ws HTTP/1.1", "Host: "+host, "Connection: Upgrade", "Upgrade: websocket"))
	f.Add(req("CONNECT 100.96.0.2:80 HTTP/1.1", "Host: "+host))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nX: \x00\xff\r\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		before := reached.Load()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "a.localhost"})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(data)
		c.CloseWrite() // close_notify: the server answers what it read, then ends
		answer, _ := io.ReadAll(c)
		c.Close()
		if n := reached.Load() - before; n != 0 {
			t.Fatalf("%d requests without the hub's credentials reached it; the relay answered %.300q", n, answer)
		}
		// 500 is no clear error; 502 and 504 say the relay went to the hub.
		for _, line := range strings.Split(string(answer), "\r\n") {
			if strings.HasPrefix(line, "HTTP/1.1 50") && !strings.HasPrefix(line, "HTTP/1.1 503") {
				t.Fatalf("answered %q: %.300q", line, answer)
			}
		}
		if line := tr.log.find("panic"); line != "" {
			t.Fatalf("the relay logged %q", line)
		}
		if code, err := tr.get("a"); code != 200 || reached.Load()-before != 1 {
			t.Fatalf("the hub's own user after that: %d, %v (the hub saw %d requests)", code, err, reached.Load()-before)
		}
	})
}
