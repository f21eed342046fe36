package relay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"html"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/portmap"
)

const (
	// maxHead bounds the request head read to find the Host header.
	maxHead = 16 << 10
	// headTimeout is how long a user may take to send TLS and request head.
	headTimeout = 30 * time.Second
	// hubDialTimeout bounds connecting through the tunnel to an online hub.
	hubDialTimeout = 10 * time.Second
)

func (s *Server) acceptPublic(ln net.Listener, e portmap.Entry) {
	s.acceptLoop(ln, fmt.Sprintf("public port %d", e.Port), func(c net.Conn) { s.servePublic(c, e) })
}

// servePublic routes one user connection: TLS (on TLS ports), the request
// head, the hub its Host names, a connection through the tunnel to the same
// port on the hub, then a splice.
func (s *Server) servePublic(c net.Conn, e portmap.Entry) {
	start := time.Now()
	c.SetDeadline(start.Add(headTimeout))
	var sni string
	if e.TLS {
		tc := tls.Server(c, s.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		sni = tc.ConnectionState().ServerName
		c = tc
	}
	head, err := readHead(c)
	if err != nil {
		writeError(c, 400, "Bad request", "This address only speaks HTTP.")
		return
	}
	host := sni
	if host == "" {
		host = hostHeader(head)
	}
	name, ok := s.hubName(host)
	h := s.hubs[name]
	if !ok || h == nil {
		writeError(c, 404, "Unknown hub", fmt.Sprintf("No hub is called %q at this relay.", hostOnly(host)))
		return
	}
	if !s.online(h) && !s.awaitReconnect(h, c) {
		writeError(c, 502, "Hub offline", fmt.Sprintf("The hub %q is not connected to the relay right now. Check that it is powered and online.", h.Name))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hubDialTimeout)
	tc, err := s.stack.DialTCP(ctx, netip.AddrPortFrom(h.ip, e.Port))
	cancel()
	if err != nil {
		writeError(c, 502, "Hub not answering", fmt.Sprintf("The hub %q is connected but did not answer on port %d.", h.Name, e.Port))
		s.logf("relay: hub %s port %d from %s: %v", h.Name, e.Port, c.RemoteAddr(), err)
		return
	}
	if !s.track(tc) {
		return
	}
	defer s.untrack(tc)
	c.SetDeadline(time.Time{})
	up, down, _ := portmap.Splice(&prefixConn{Conn: c, prefix: head}, tc)
	// The audit line: who, which hub and port, when, how long, how much.
	s.logf("relay: session hub=%s port=%d from=%s start=%s dur=%s up=%d down=%d",
		h.Name, e.Port, c.RemoteAddr(), start.UTC().Format(time.RFC3339), time.Since(start).Round(time.Millisecond), up, down)
}

// udpSessionFresh is how recent a UDP hub's last handshake must be for it
// to count as connected: WireGuard rekeys every 2 minutes while the agent's
// persistent keepalives flow.
const udpSessionFresh = 3 * time.Minute

// online reports whether a hub can be reached now: a verified TCP agent
// connection, or (UDP agents say no Hello) a recent WireGuard handshake
// over UDP. The latter walks WireGuard's whole peer dump, so it is asked
// only for hubs without a TCP connection, and only when UDP is enabled.
func (s *Server) online(h *hub) bool {
	if h.online.Load() > 0 {
		return true
	}
	if s.bind.udp == nil {
		return false
	}
	st, err := s.dev.Stats()
	if err != nil {
		return false
	}
	ps, ok := st[h.key]
	return ok && !strings.HasPrefix(ps.Endpoint, tcpEndpointPrefix) &&
		!ps.LastHandshake.IsZero() && time.Since(ps.LastHandshake) < udpSessionFresh
}

// awaitReconnect lets a request for a hub whose agent has just gone (see
// reconnectWindow) wait for it, and reports whether it came back.
func (s *Server) awaitReconnect(h *hub, c net.Conn) bool {
	if !h.reconnecting() {
		return false
	}
	s.logf("relay: hub %s is reconnecting; a request from %s waits up to %v", h.Name, c.RemoteAddr(), reconnectWait)
	return h.waitOnline(reconnectWait, s.closing)
}

// hubName maps "NAME.<domain>[:port]" to NAME.
func (s *Server) hubName(host string) (string, bool) {
	host = strings.TrimSuffix(strings.ToLower(hostOnly(strings.TrimSpace(host))), ".")
	name, ok := strings.CutSuffix(host, "."+strings.ToLower(s.cfg.Domain))
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	return name, true
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// readHead reads until the end of the HTTP request head and returns every
// byte read, which is forwarded to the hub unchanged.
func readHead(c net.Conn) ([]byte, error) {
	buf := make([]byte, 0, 2048)
	var tmp [2048]byte
	for !bytes.Contains(buf, []byte("\r\n\r\n")) {
		if len(buf) >= maxHead {
			return nil, fmt.Errorf("request head over %d bytes", maxHead)
		}
		n, err := c.Read(tmp[:min(len(tmp), maxHead-len(buf))])
		buf = append(buf, tmp[:n]...)
		if err != nil {
			return nil, err
		}
	}
	line, _, _ := bytes.Cut(buf, []byte("\r\n"))
	if f := bytes.Fields(line); len(f) != 3 || !bytes.HasPrefix(f[2], []byte("HTTP/1.")) {
		return nil, fmt.Errorf("not an HTTP/1.x request")
	}
	return buf, nil
}

// hostHeader returns the Host header of a request head, or "".
func hostHeader(head []byte) string {
	lines := bytes.Split(head, []byte("\r\n"))
	for _, l := range lines[1:] {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(k)), "host") {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// writeError answers with a small page a hub owner can understand.
func writeError(c net.Conn, code int, title, msg string) {
	body := fmt.Sprintf("<!doctype html><html><head><meta charset=\"utf-8\"><title>%d %s</title></head>"+
		"<body><h1>%s</h1><p>%s</p><p><small>hubtunnel relay</small></p></body></html>\n",
		code, html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
		code, title, len(body), body)
}

// prefixConn replays bytes already read before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tlsConfig loads the configured certificate or makes a self-signed one.
func (s *Server) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if s.cfg.TLSCertFile != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("relay: tls_cert_file: %w", err)
		}
	} else {
		if cert, err = selfSigned(s.cfg.Domain); err != nil {
			return nil, fmt.Errorf("relay: self-signed certificate: %w", err)
		}
		s.logf("relay: no tls_cert_file: using a self-signed certificate for *.%s", s.cfg.Domain)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}

func selfSigned(domain string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "*." + domain},
		DNSNames:     []string{"*." + domain, domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
