package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"html"
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
	h := s.hubs.byName[name]
	if !ok || h == nil {
		writeError(c, 404, "Unknown hub", fmt.Sprintf("No hub is called %q at this relay.", hostOnly(host)))
		return
	}
	if !s.hubs.online(h) && !s.awaitReconnect(h, c) {
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

// awaitReconnect lets a request for a hub whose agent has just gone (see
// reconnectWindow) wait for it, and reports whether it came back.
func (s *Server) awaitReconnect(h *hub, c net.Conn) bool {
	if !s.hubs.reconnecting(h) {
		return false
	}
	s.logf("relay: hub %s is reconnecting; a request from %s waits up to %v", h.Name, c.RemoteAddr(), reconnectWait)
	return s.hubs.waitOnline(h, reconnectWait, s.closing)
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
