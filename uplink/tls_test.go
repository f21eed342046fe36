package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/wire"
)

// testCert is a self-signed certificate no client would trust.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the relay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsRelay is a TLS port that, like the relay's, hands agents an echo of
// their bytes: by ALPN (alpn true) or by the HTTP upgrade (a server that
// negotiates only http/1.1, as a TLS-inspecting proxy does). It records the
// SNI name of its last connection.
type tlsRelay struct {
	addr    string
	sni     atomic.Value
	accepts atomic.Int32
}

func startTLSRelay(t *testing.T, alpn bool, upgradeStatus int) *tlsRelay {
	t.Helper()
	r := &tlsRelay{}
	cfg := &tls.Config{Certificates: []tls.Certificate{testCert(t)}, NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			r.sni.Store(h.ServerName)
			return nil, nil
		}}
	if alpn {
		cfg.NextProtos = []string{wire.ALPN, "http/1.1"}
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	echo := func(c net.Conn, r io.Reader) { io.Copy(c, r) }
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path != wire.UpgradePath || req.Header.Get("Upgrade") != wire.ALPN {
				http.NotFound(w, req)
				return
			}
			if upgradeStatus != http.StatusSwitchingProtocols {
				w.WriteHeader(upgradeStatus)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+wire.ALPN+"\r\n\r\n")
			echo(c, brw)
		}),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
			wire.ALPN: func(_ *http.Server, c *tls.Conn, _ http.Handler) { echo(c, c) },
		},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				r.accepts.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// echoes reports whether c sends back what is written to it.
func echoes(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "\x00\x05hello"); err != nil {
		return false
	}
	buf := make([]byte, 7)
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == "\x00\x05hello"
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDialRelayTLS: transport "tls" reaches a TLS port whose certificate
// nobody signed, by ALPN or else by the HTTP upgrade, and the connection
// then carries bytes both ways; SNI names the relay unless it is an IP.
func TestDialRelayTLS(t *testing.T) {
	for _, alpn := range []bool{true, false} {
		r := startTLSRelay(t, alpn, http.StatusSwitchingProtocols)
		_, port, _ := net.SplitHostPort(r.addr)
		for _, host := range []string{"127.0.0.1", "localhost"} {
			d := &Dialer{Transport: "tls", Relay: closedPort(t), RelayTLS: net.JoinHostPort(host, port)}
			c, route, err := d.DialRelay(context.Background())
			if err != nil {
				t.Fatalf("ALPN %v, %s: %v", alpn, host, err)
			}
			if route != RouteTLS || !echoes(t, c) {
				t.Errorf("ALPN %v, %s: route %q; the connection does not carry bytes", alpn, host, route)
			}
			c.Close()
			wantSNI := host
			if host == "127.0.0.1" {
				wantSNI = ""
			}
			if got := r.sni.Load(); got != wantSNI {
				t.Errorf("ALPN %v, %s: SNI %q, want %q", alpn, host, got, wantSNI)
			}
		}
	}
}

// TestDialRelayTLSRefusedUpgrade: a TLS port that is not the relay's (it
// refuses the upgrade) is an error that says what to check.
func TestDialRelayTLSRefusedUpgrade(t *testing.T) {
	r := startTLSRelay(t, false, http.StatusNotFound)
	d := &Dialer{Transport: "tls", RelayTLS: r.addr}
	_, _, err := d.DialRelay(context.Background())
	if err == nil || !strings.Contains(Describe(err), "relay_tls") || !strings.Contains(Describe(err), "404") {
		t.Fatalf("err = %v (%q), want one that names the 404 and relay_tls", err, Describe(err))
	}
}

// TestDialRelayAuto: "auto" falls back from a closed agent port to TLS,
// tries the route that worked first next time (the agent port is not
// dialled), and falls back to TCP when TLS stops working.
func TestDialRelayAuto(t *testing.T) {
	r := startTLSRelay(t, true, http.StatusSwitchingProtocols)
	relay := closedPort(t)
	d := &Dialer{Transport: "auto", Relay: relay, RelayTLS: r.addr}
	c, route, err := d.DialRelay(context.Background())
	if err != nil || route != RouteTLS || !echoes(t, c) {
		t.Fatalf("closed agent port: route %q, %v; want tls", route, err)
	}
	c.Close()

	// The agent port opens; TLS worked last and goes first.
	ln, err := net.Listen("tcp", relay)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var tcpAccepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tcpAccepts.Add(1)
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	c, route, err = d.DialRelay(context.Background())
	if err != nil || route != RouteTLS {
		t.Fatalf("second dial: route %q, %v; want tls again", route, err)
	}
	c.Close()
	if n := tcpAccepts.Load(); n != 0 {
		t.Errorf("the agent port was dialled %d times although TLS worked last", n)
	}

	// TLS goes away: back to TCP, which is then first.
	d.RelayTLS = closedPort(t)
	for i := range 2 {
		c, route, err = d.DialRelay(context.Background())
		if err != nil || route != RouteTCP || !echoes(t, c) {
			t.Fatalf("dial %d without TLS: route %q, %v; want tcp", i, route, err)
		}
		c.Close()
	}
}

// TestDialRelayAutoAllFail: when no route works, the error names each
// route and why, in a hub owner's words.
func TestDialRelayAutoAllFail(t *testing.T) {
	d := &Dialer{Transport: "auto", Relay: closedPort(t), RelayTLS: closedPort(t)}
	_, _, err := d.DialRelay(context.Background())
	var re RoutesError
	if !errors.As(err, &re) || len(re) != 2 {
		t.Fatalf("err = %v, want a RoutesError of 2 routes", err)
	}
	want := "no way to the relay worked (tcp: the relay is not accepting connections (is it running?); tls: the relay is not accepting connections (is it running?))"
	if got := Describe(err); got != want {
		t.Errorf("Describe = %q\nwant       %q", got, want)
	}
}

// TestDialRelayRoutes: the routes each transport tries, in order.
func TestDialRelayRoutes(t *testing.T) {
	proxy, _ := ParseProxy("http://127.0.0.1:3128")
	for _, c := range []struct {
		transport string
		proxy     bool
		last      Route
		want      string
	}{
		{"", false, "", "tcp"},
		{"tcp", true, "", "tcp via proxy"},
		{"tls", false, "", "tls"},
		{"tls", true, "", "tls via proxy"},
		{"auto", false, "", "tcp,tls"},
		{"auto", true, "", "tcp,tls,tls via proxy"},
		{"auto", true, RouteTLSProxy, "tls via proxy,tcp,tls"},
		{"auto", true, RouteTLS, "tls,tcp,tls via proxy"},
	} {
		d := &Dialer{Transport: c.transport, last: c.last}
		if c.proxy {
			d.Proxy = proxy
		}
		var got []string
		for _, r := range d.routes() {
			got = append(got, string(r))
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%q proxy %v last %q: %q, want %q", c.transport, c.proxy, c.last, got, c.want)
		}
	}
}
