package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// testHub is what a test agent serves on each of its tunnel ports:
//
//	/         testAgentPage
//	/who      the hub's tunnel address: which hub a request reached
//	/conn     the address the request's connection came from (one per relay connection)
//	/headers  the request's Host, forwarding and credential headers, one a line
//	/ws       a WebSocket-style upgrade that echoes what it reads
//	/stream   "first\n", flushed, then "last\n" when the client hangs up or after 10 s
//	/setcookie  sets a cookie of its own, one for the whole domain, and the relay's
func testHub(ip string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, testAgentPage) })
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) { // n bytes of bulkStream
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		io.Copy(w, bulkStream(n))
	})
	mux.HandleFunc("/sum", func(w http.ResponseWriter, r *http.Request) { // the SHA-256 of the body
		h := sha256.New()
		io.Copy(h, r.Body)
		fmt.Fprintf(w, "%x", h.Sum(nil))
	})
	mux.HandleFunc("/closed", func(w http.ResponseWriter, r *http.Request) { // n bytes of bulkStream, ended by closing
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
		io.Copy(brw, bulkStream(n))
		brw.Flush()
	})
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, ip) })
	mux.HandleFunc("/conn", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Host: %s\n", r.Host)
		for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip", "Authorization", "Cookie"} {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(r.Header.Values(k), ", "))
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 512)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				c.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/setcookie", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "own=1; Path=/; HttpOnly")
		w.Header().Add("Set-Cookie", "wide=2; Domain=localhost; Path=/")
		w.Header().Add("Set-Cookie", cookieName(true)+"=planted; Path=/; Secure")
		w.Header().Add("Set-Cookie", cookieName(false)+"=planted; Domain=.localhost")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "last\n")
	})
	return mux
}

// dialPublic connects to the relay's public port (a tunnel port of the
// map) from the loopback address from ("" for the default), with TLS
// when sni is not nil; *sni "" sends no server name.
func (tr *testRelay) dialPublic(t *testing.T, port int, sni *string, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port+tr.offset))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if sni == nil {
		return c
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: *sni})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return tc
}

func sni(s string) *string { return &s }

type answer struct {
	code   int
	body   string
	header http.Header
	err    error
}

// readAnswers reads up to n responses from c, stopping at the first error.
func readAnswers(c net.Conn, n int) []answer {
	br := bufio.NewReader(c)
	var out []answer
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			out = append(out, answer{err: err})
			return out
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, answer{code: resp.StatusCode, body: string(body), header: resp.Header, err: err})
		if err != nil {
			return out
		}
	}
	return out
}

// exchange writes raw to c and reads n responses.
func exchange(t *testing.T, c net.Conn, raw string, n int) []answer {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return readAnswers(c, n)
}

// twoHubs starts a relay with hubs a (100.96.0.2) and b (100.96.0.3)
// and their agents, and waits until both are online.
func twoHubs(t *testing.T, change func(*Config)) *testRelay {
	tr := startTestRelayWith(t, false, change, "a", "b", "gone")
	startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	startTestAgent(t, tr, tr.keys["b"], "100.96.0.3", [32]byte{})
	poll.Until(t, 10*time.Second, "hubs a and b online", func() bool {
		return tr.hubs.online(tr.hubs.name("a")) && tr.hubs.online(tr.hubs.name("b"))
	})
	return tr
}

func who(name string) string {
	return map[string]string{"a": "100.96.0.2", "b": "100.96.0.3"}[name]
}

// TestEachRequestRoutedOnItsOwn: on one kept-alive connection, and with
// requests pipelined, requests alternating between hubs a and b each reach
// the hub their Host names. Before the relay understood HTTP, every
// request after the first reached the first one's hub.
func TestEachRequestRoutedOnItsOwn(t *testing.T) {
	tr := twoHubs(t, func(c *Config) { c.PlaintextPorts = true })
	order := []string{"a", "b", "a", "b", "b", "a"}
	req := func(name string, port int) string {
		return fmt.Sprintf("GET /who HTTP/1.1\r\nHost: %s.localhost:%d\r\n%s\r\n", name, port+tr.offset, tr.auth(name))
	}
	for _, tt := range []struct {
		name string
		port int
		sni  *string
	}{
		{"plain 80", 80, nil},
		{"plain 2001", 2001, nil},
		{"tls 443 without SNI", 443, sni("")},
		{"tls 4431 without SNI", 4431, sni("")},
	} {
		t.Run(tt.name+" kept alive", func(t *testing.T) {
			c := tr.dialPublic(t, tt.port, tt.sni, "")
			for i, name := range order {
				got := exchange(t, c, req(name, tt.port), 1)[0]
				if got.err != nil || got.code != 200 || got.body != who(name) {
					t.Fatalf("request %d for hub %s: %d %q %v; want hub %s's answer", i, name, got.code, got.body, got.err, who(name))
				}
			}
		})
		t.Run(tt.name+" pipelined", func(t *testing.T) {
			c := tr.dialPublic(t, tt.port, tt.sni, "")
			var raw strings.Builder
			for _, name := range order {
				raw.WriteString(req(name, tt.port))
			}
			got := exchange(t, c, raw.String(), len(order))
			for i, name := range order {
				if i >= len(got) || got[i].err != nil || got[i].code != 200 || got[i].body != who(name) {
					t.Fatalf("pipelined request %d for hub %s: %+v", i, name, got)
				}
			}
		})
	}
}

// TestHubConnectionsAreNeverShared: a connection from the relay to a hub
// carries the requests of one user connection only, kept alive for its
// next request. The agent decides on each connection it accepts (the CCU's
// firewall levels, and later who the user is): a pool shared between users
// would let one user's requests ride on a connection the agent accepted
// for another, and keep a user on a connection the owner has since closed
// to new ones.
func TestHubConnectionsAreNeverShared(t *testing.T) {
	tr := twoHubs(t, func(c *Config) { c.PlaintextPorts = true })
	req := fmt.Sprintf("GET /conn HTTP/1.1\r\nHost: a.localhost:%d\r\n%s\r\n", 80+tr.offset, tr.cookie(false))
	var users [2][]string
	conns := [2]net.Conn{tr.dialPublic(t, 80, nil, ""), tr.dialPublic(t, 80, nil, "")}
	for round := 0; round < 3; round++ {
		for u, c := range conns {
			got := exchange(t, c, req, 1)[0]
			if got.err != nil || got.code != 200 {
				t.Fatalf("user %d, request %d: %d %v", u, round, got.code, got.err)
			}
			users[u] = append(users[u], got.body)
		}
	}
	for u, seen := range users {
		for _, from := range seen[1:] {
			if from != seen[0] {
				t.Errorf("user %d's requests came to the hub on %q: want one kept-alive connection", u, seen)
			}
		}
	}
	if users[0][0] == users[1][0] {
		t.Errorf("two users' requests reached the hub on the same connection %s", users[0][0])
	}
}

// TestStrictRequestHead: what an attacker puts in a request head to reach
// hub b while the relay believes it serves a (or the other way round) is
// refused, and never reaches b — even for a user who may reach both, so
// that it is the head that is refused, not the user.
func TestStrictRequestHead(t *testing.T) {
	tr := twoHubs(t, nil)
	for _, tt := range []struct {
		name, raw string
		sni       *string
	}{
		{"host after the head", "GET /who HTTP/1.0\r\n{C}\r\n\r\nHost: b.localhost\r\n\r\n", sni("")},
		{"host after the head of a 1.1 request", "GET /who HTTP/1.1\r\nHost: nosuch.localhost\r\n{C}\r\n\r\nHost: b.localhost\r\n\r\n", sni("")},
		{"duplicate host", "GET /who HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n{C}\r\n\r\n", sni("")},
		{"folded host", "GET /who HTTP/1.1\r\nHost: a.localhost\r\n b.localhost\r\n{C}\r\n\r\n", sni("")},
		{"host not matching SNI", "GET /who HTTP/1.1\r\nHost: b.localhost\r\n{C}\r\n\r\n", sni("a.localhost")},
		{"absolute URI naming another host", "GET http://b.localhost/who HTTP/1.1\r\nHost: a.localhost\r\n{C}\r\n\r\n", sni("")},
		{"absolute URI with SNI of another hub", "GET https://b.localhost/who HTTP/1.1\r\nHost: b.localhost\r\n{C}\r\n\r\n", sni("a.localhost")},
		{"connect", "CONNECT 100.96.0.3:80 HTTP/1.1\r\nHost: b.localhost\r\n{C}\r\n\r\n", sni("")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tr.dialPublic(t, 443, tt.sni, "")
			for i, got := range exchange(t, c, strings.ReplaceAll(tt.raw, "{C}", strings.TrimSuffix(tr.cookie(true), "\r\n")), 2) {
				if got.err != nil {
					break // the relay hung up
				}
				if got.body == who("b") || got.code < 400 {
					t.Fatalf("answer %d: %d %q; want a refusal that does not reach hub b", i, got.code, got.body)
				}
			}
		})
	}
}

// TestUnknownAndOfflineLookAlike: before login, an unknown hub, a known
// but offline one and an online one get the same answer (the way to the
// login on the WebUI ports, a 401 on the others), whose body names none of
// them; after login, a hub the user may not reach looks like an unknown or
// offline one. A name cannot be tested for existence.
func TestUnknownAndOfflineLookAlike(t *testing.T) {
	tr := twoHubs(t, func(c *Config) { c.PlaintextPorts = true })
	ctx := context.Background()
	db := tr.Store()
	u, err := db.AddUser(ctx, "stranger", "a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, err := db.CreateSession(ctx, u.ID, time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ask := func(port int, name, creds string) answer {
		t.Helper()
		var s *string
		if port == 443 || port == 4431 {
			s = sni(name + ".localhost")
		}
		c := tr.dialPublic(t, port, s, "")
		got := exchange(t, c, fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s.localhost\r\n%s\r\n", name, creds), 1)[0]
		if got.err != nil || got.code == 200 || strings.Contains(got.body, name+".localhost") || (len(name) > 1 && strings.Contains(got.body, name)) {
			t.Fatalf("port %d, hub %s: %d %q %v; want a refusal that does not name it", port, name, got.code, got.body, got.err)
		}
		return got
	}
	same := func(what string, port int, x, y answer) {
		t.Helper()
		if x.code != y.code || x.body != y.body {
			t.Errorf("port %d, %s: %d %q and %d %q; want the same", port, what, x.code, x.body, y.code, y.body)
		}
	}
	for _, port := range []int{80, 443, 2001, 4431} {
		before := ask(port, "nosuch", "")
		same("before login, unknown and offline hubs", port, before, ask(port, "gone", ""))
		same("before login, unknown and online hubs", port, before, ask(port, "a", ""))
		want := http.StatusUnauthorized
		if port == 80 || port == 443 {
			want = http.StatusSeeOther
		}
		if before.code != want {
			t.Errorf("port %d before login: %d, want %d", port, before.code, want)
		}
		if port == 80 || port == 443 {
			creds := "Cookie: " + cookieName(port == 443) + "=" + stranger + "\r\n"
			after := ask(port, "nosuch", creds)
			same("after login, unknown and offline hubs", port, after, ask(port, "gone", creds))
			same("after login, unknown and not-granted hubs", port, after, ask(port, "a", creds))
			if after.code != http.StatusNotFound {
				t.Errorf("port %d after login: %d, want 404", port, after.code)
			}
		}
	}
}

// TestForwardedHeadersReplaced: the hub learns the user's real address
// from the relay; what the user claims in Forwarded and X-Forwarded-* is
// dropped, and so are the relay's credentials: the token and the relay's
// session cookie never reach the hub, its own cookies do.
func TestForwardedHeadersReplaced(t *testing.T) {
	tr := twoHubs(t, func(c *Config) { c.PlaintextPorts = true })
	forged := "Forwarded: for=203.0.113.9;proto=https\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: b.localhost\r\nX-Real-IP: 203.0.113.9\r\n"
	for _, tt := range []struct {
		port  int
		sni   *string
		proto string
	}{{2001, nil, "http"}, {443, sni("a.localhost"), "https"}} {
		c := tr.dialPublic(t, tt.port, tt.sni, "")
		creds := tr.auth("a") + "Cookie: hub=own; " + cookieName(tt.sni != nil) + "=" + tr.session + "; other=2\r\n"
		got := exchange(t, c, "GET /headers HTTP/1.1\r\nHost: a.localhost\r\n"+forged+creds+"\r\n", 1)[0]
		want := fmt.Sprintf("Host: a.localhost\nForwarded: for=127.0.0.1;proto=%s\nX-Forwarded-For: 127.0.0.1\nX-Forwarded-Proto: %s\nX-Forwarded-Host: \nX-Real-Ip: \n"+
			"Authorization: \nCookie: hub=own; other=2\n", tt.proto, tt.proto)
		if got.err != nil || got.code != 200 || got.body != want {
			t.Errorf("port %d: the hub saw\n%s(%d %v)\nwant\n%s", tt.port, got.body, got.code, got.err, want)
		}
	}
}

// TestPlainHTTPRedirects: without plaintext_ports, port 80 sends every
// request to HTTPS, the HTTPS answers carry HSTS, and the plaintext
// XML-RPC and script ports are not served.
func TestPlainHTTPRedirects(t *testing.T) {
	tr := twoHubs(t, nil)
	c := tr.dialPublic(t, 80, nil, "")
	got := exchange(t, c, "POST /x/y?z=1 HTTP/1.1\r\nHost: a.localhost:80\r\nContent-Length: 2\r\n\r\nhi", 1)[0]
	want := fmt.Sprintf("https://a.localhost:%d/x/y?z=1", 443+tr.offset)
	if got.err != nil || got.code != http.StatusPermanentRedirect || got.header.Get("Location") != want {
		t.Errorf("port 80: %d Location %q %v; want 308 to %s", got.code, got.header.Get("Location"), got.err, want)
	}
	c = tr.dialPublic(t, 443, sni("a.localhost"), "")
	got = exchange(t, c, "GET / HTTP/1.1\r\nHost: a.localhost\r\n"+tr.cookie(true)+"\r\n", 1)[0]
	if got.code != 200 || !strings.HasPrefix(got.header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("port 443: %d, HSTS %q", got.code, got.header.Get("Strict-Transport-Security"))
	}
	for _, port := range []int{2000, 2001, 2002, 2010, 8181} {
		if tr.PublicAddr(uint16(port)) != nil {
			t.Errorf("plaintext port %d is served without plaintext_ports", port)
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port+tr.offset)); err == nil {
			c.Close()
			t.Errorf("plaintext port %d accepts connections without plaintext_ports", port)
		}
	}
}

// TestWebSocketAndStreaming: an upgraded connection carries bytes both
// ways through the relay, and a response the hub streams reaches the user
// before the hub has finished it.
func TestWebSocketAndStreaming(t *testing.T) {
	tr := twoHubs(t, nil)
	c := tr.dialPublic(t, 443, sni("b.localhost"), "")
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: b.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+tr.cookie(true)+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"hello", "again"} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q: %q %v", msg, buf, err)
		}
	}

	c = tr.dialPublic(t, 443, sni("a.localhost"), "")
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // the hub holds the rest for 10 s
	br = bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("the streamed response's first line: %q %v", line, err)
	}
}

// TestAnswersKeepTheirEnd: a hub's answer that ends by closing its
// connection reaches the user whole, unchunked, and ends the same way; a
// chunked one stays chunked and the user's connection serves the next
// request. A HEAD for the first is answered without a body.
func TestAnswersKeepTheirEnd(t *testing.T) {
	tr := twoHubs(t, nil)
	const n = 300_000
	want, _ := io.ReadAll(bulkStream(n))
	get := func(br *bufio.Reader, c net.Conn, method, path string) (*http.Response, []byte) {
		t.Helper()
		io.WriteString(c, method+" "+path+" HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n")
		req, _ := http.NewRequest(method, path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: the body broke off: %v", method, path, err)
		}
		return resp, body
	}
	c := tr.dialPublic(t, 443, sni("a.localhost"), "")
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, body := get(br, c, "GET", fmt.Sprintf("/bulk?n=%d", n))
	if !bytes.Equal(body, want) || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.Close {
		t.Errorf("a chunked answer: %d bytes (want %d, same: %v), transfer encoding %q, close %v; want it chunked and the connection kept",
			len(body), n, bytes.Equal(body, want), resp.TransferEncoding, resp.Close)
	}
	if resp, _ := get(br, c, "HEAD", fmt.Sprintf("/closed?n=%d", n)); resp.StatusCode != 200 {
		t.Errorf("HEAD of an answer that ends by closing: %d", resp.StatusCode)
	}
	resp, body = get(br, c, "GET", fmt.Sprintf("/closed?n=%d", n))
	if !bytes.Equal(body, want) || len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 || !resp.Close {
		t.Errorf("an answer that ends by closing: %d bytes (want %d, same: %v), transfer encoding %q, length %d, close %v; want it passed on as it came",
			len(body), n, bytes.Equal(body, want), resp.TransferEncoding, resp.ContentLength, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after an answer that ended by closing, the user's connection read %v; want it closed", err)
	}
}

// TestPerAddressLimits: an address over its connection limit gets 503, one
// over its request rate 429, each with a short body and one log line per
// 30 s; another address is served meanwhile.
func TestPerAddressLimits(t *testing.T) {
	tr := twoHubs(t, withMetrics(func(c *Config) {
		c.LimitConnsPerAddress = 3
		c.LimitRequestsPerSecond = 1 // burst: 10
	}))
	good := func() {
		t.Helper()
		c := tr.dialPublic(t, 443, sni("b.localhost"), "127.0.0.2")
		if got := exchange(t, c, "GET /who HTTP/1.1\r\nHost: b.localhost\r\n"+tr.auth("b")+"\r\n", 1)[0]; got.code != 200 || got.body != who("b") {
			t.Fatalf("a well-behaved user at another address: %d %q %v", got.code, got.body, got.err)
		}
	}

	var held []net.Conn
	for range 3 {
		held = append(held, tr.dialPublic(t, 443, sni("a.localhost"), "127.0.0.1"))
	}
	for range 2 {
		c := tr.dialPublic(t, 443, sni("a.localhost"), "127.0.0.1")
		got := exchange(t, c, "GET /who HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n", 1)[0]
		if got.code != 503 || got.body == who("a") || len(got.body) > 200 {
			t.Fatalf("a connection over the limit: %d %q %v; want a short 503", got.code, got.body, got.err)
		}
	}
	good()
	for _, c := range held[1:] {
		c.Close()
	}

	c := held[0]
	codes := map[int]int{}
	for range 15 {
		got := exchange(t, c, "GET /who HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n", 1)[0]
		if got.err != nil {
			t.Fatal(got.err)
		}
		codes[got.code]++
		if got.code == 429 && (got.body == who("a") || len(got.body) > 200) {
			t.Fatalf("a request over the rate: %q", got.body)
		}
	}
	if codes[200] != 10 || codes[429] != 5 {
		t.Errorf("15 requests at once with a burst of 10: %v; want 10 200s and 5 429s", codes)
	}
	wantMetrics(t, tr.Server, map[string]float64{
		"hubrelay_limit_refusals_total{limit=limit_conns_per_address}":   2,
		"hubrelay_limit_refusals_total{limit=limit_requests_per_second}": 5,
	})
	good()
	if n := tr.logged("address=127.0.0.1/32 "); n != 1 {
		t.Errorf("%d log lines about 127.0.0.1's limits within 30 s, want 1", n)
	}
	tr.clock.advance(2 * time.Second)
	if got := exchange(t, c, "GET /who HTTP/1.1\r\nHost: a.localhost\r\n"+tr.auth("a")+"\r\n", 1)[0]; got.code != 200 {
		t.Errorf("after 2 s at 1 request a second: %d, want 200", got.code)
	}
}

// TestAuditLine: every forwarded request is logged with its hub, port,
// source address, who sent it and its status, and never with its path,
// cookies or credentials.
func TestAuditLine(t *testing.T) {
	tr := twoHubs(t, nil)
	c := tr.dialPublic(t, 443, sni("a.localhost"), "")
	req := "GET /who?sid=secret-sid HTTP/1.1\r\nHost: a.localhost\r\nCookie: s=secret-cookie; " + cookieName(true) + "=" + tr.session + "\r\nAuthorization: Basic c2VjcmV0LWF1dGg=\r\n\r\n"
	for _, got := range exchange(t, c, req+req, 2) { // two requests of one session
		if got.code != 200 {
			t.Fatalf("%d %v", got.code, got.err)
		}
	}
	c = tr.dialPublic(t, 4431, sni("a.localhost"), "")
	if got := exchange(t, c, "POST /who HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 0\r\n"+tr.auth("a")+"\r\n", 1)[0]; got.code != 200 {
		t.Fatalf("%d %v", got.code, got.err)
	}
	poll.Until(t, 10*time.Second, "the requests' log lines", func() bool {
		return tr.logged("msg=request hub=a port=443 remote=127.0.0.1:", `user="user owner"`, "method=GET status=200") == 2 &&
			tr.logged("msg=request hub=a port=4431 remote=127.0.0.1:", `user="token #`, "method=POST status=200") == 1
	})
	// The session field: the same on the requests of one session, another
	// on another's.
	sessions := map[string]string{}
	sessionField := regexp.MustCompile(` session=(\d+) `)
	for _, l := range tr.log.all() {
		if m := sessionField.FindStringSubmatch(l); m != nil && strings.Contains(l, "msg=request") {
			port := regexp.MustCompile(` port=(\d+) `).FindStringSubmatch(l)[1]
			if prev, ok := sessions[port]; ok && prev != m[1] {
				t.Errorf("the requests of one session on port %s have sessions %s and %s", port, prev, m[1])
			}
			sessions[port] = m[1]
		}
	}
	if sessions["443"] == "" || sessions["4431"] == "" || sessions["443"] == sessions["4431"] {
		t.Errorf("the request lines' sessions: %v; want one for each connection's session, not the same", sessions)
	}
	for _, secret := range []string{"secret", "c2VjcmV0", "/who", tr.session, tr.tokens["a"], tr.tokens["a"][4:20]} {
		if n := tr.logged(secret); n != 0 {
			t.Errorf("%d log lines contain %q", n, secret)
		}
	}
}

// TestUserConnectionKeepsFewHubConnections: one user connection that walks
// through many hub names keeps at most maxHubsPerUserConn of them.
func TestUserConnectionKeepsFewHubConnections(t *testing.T) {
	names := make([]string, maxHubsPerUserConn+4)
	for i := range names {
		names[i] = fmt.Sprintf("h%d", i)
	}
	tr := startTestRelayWith(t, false, func(c *Config) { c.PlaintextPorts = true }, names...)
	for i, name := range names {
		startTestAgent(t, tr, tr.keys[name], fmt.Sprintf("100.96.0.%d", i+2), [32]byte{})
	}
	poll.Until(t, 10*time.Second, "every hub online", func() bool {
		for _, name := range names {
			if !tr.hubs.online(tr.hubs.name(name)) {
				return false
			}
		}
		return true
	})
	c := tr.dialPublic(t, 80, nil, "")
	for i, name := range names {
		got := exchange(t, c, fmt.Sprintf("GET /who HTTP/1.1\r\nHost: %s.localhost:%d\r\n%s\r\n", name, 80+tr.offset, tr.cookie(false)), 1)[0]
		if got.err != nil || got.code != 200 || got.body != fmt.Sprintf("100.96.0.%d", i+2) {
			t.Fatalf("request for %s: %d %q %v", name, got.code, got.body, got.err)
		}
	}
	// The relay tracks every connection it must close at Close: agents'
	// and users' (kernel TCP) and its own through the tunnel (netstack).
	tunnel := 0
	tr.mu.Lock()
	for c := range tr.conns {
		if _, kernel := c.(*net.TCPConn); !kernel {
			tunnel++
		}
	}
	tr.mu.Unlock()
	if tunnel == 0 || tunnel > maxHubsPerUserConn {
		t.Errorf("one user connection holds %d tunnel connections after %d hubs; want 1 to %d", tunnel, len(names), maxHubsPerUserConn)
	}
}
