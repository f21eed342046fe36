package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
)

// BenchmarkKeptAliveRequest is one small request and its answer on a
// kept-alive connection through the relay's plaintext port 2001 to a test
// hub; "tunnel only" is the same on a connection the relay's netstack
// dials straight to the hub: the floor the public side adds to.
func BenchmarkKeptAliveRequest(b *testing.B) {
	tr := startTestRelayWith(b, false, func(c *Config) {
		c.PlaintextPorts = true
		c.LimitRequestsPerSecond = 1e9
	}, "a")
	startTestAgent(b, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(b, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(tr.hubs.name("a")) })
	get := "GET /who HTTP/1.1\r\nHost: a.localhost\r\n" + tr.auth("a") + "\r\n"
	// post is the size of an app's XML-RPC call (hubbench's latency phase).
	body := strings.Repeat("x", 250)
	post := fmt.Sprintf("POST /sum HTTP/1.1\r\nHost: a.localhost\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n%s\r\n%s", len(body), tr.auth("a"), body)
	run := func(b *testing.B, c net.Conn, req string) {
		br := bufio.NewReader(c)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			io.WriteString(c, req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.StatusCode)
			}
		}
	}
	for _, m := range []struct{ name, req string }{{"GET", get}, {"POST", post}} {
		b.Run("relay/"+m.name, func(b *testing.B) {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", 2001+tr.offset))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			run(b, c, m.req)
		})
		b.Run("tunnel only/"+m.name, func(b *testing.B) {
			c, err := tr.stack.DialTCP(context.Background(), netip.MustParseAddrPort("100.96.0.2:2001"))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			run(b, c, m.req)
		})
	}
}

// BenchmarkAuthorize is the access check of a request: "kept alive" on a
// connection whose decision stands (every request after a connection's
// first), "first, token" and "first, session" asking the store (a
// connection's first request, or the first after a change of access).
// Compare with BenchmarkKeptAliveRequest/relay, the whole request.
func BenchmarkAuthorize(b *testing.B) {
	tr := startTestRelayWith(b, false, nil, "a")
	r, _ := http.NewRequest("GET", "https://a.localhost/", nil)
	token := credential{kind: credToken, secret: tr.tokens["a"]}
	session := credential{kind: credSession, secret: tr.session}
	b.Run("kept alive", func(b *testing.B) {
		pc := &publicConn{s: tr.Server}
		if _, err := tr.authorize(r, pc, token, "a", store.PortXMLRPC); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := tr.authorize(r, pc, token, "a", store.PortXMLRPC); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tt := range []struct {
		name string
		cred credential
	}{{"first, token", token}, {"first, session", session}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := tr.decide(context.Background(), tt.cred, "a", store.PortWebUI); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLogin is a browser's login on the portal, as the relay serves
// it: a new TLS connection, the form posted, the password checked
// (argon2id at the store's default cost) and the session made, up to the
// redirect that carries the session to the hub host. It is what the first
// request of a browser without a session costs on top of the request.
func BenchmarkLogin(b *testing.B) {
	tr := startTestRelayWith(b, false, nil, "a")
	port := 443 + tr.offset
	form := url.Values{"user": {"owner"}, "password": {"owner's long password"},
		"next": {fmt.Sprintf("https://a.localhost:%d/", port)}}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c := &http.Client{
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		req, _ := http.NewRequest("POST", fmt.Sprintf("https://127.0.0.1:%d/login", port), strings.NewReader(form))
		req.Host = fmt.Sprintf("localhost:%d", port)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://"+req.Host)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/.hubtunnel/auth?code=") {
			b.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}
