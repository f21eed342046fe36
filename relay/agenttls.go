package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/wire"
)

// Agents over TLS, for networks that allow only HTTPS. An agent reaches the
// relay in one of three ways, and each ends in serveAgent with a connection
// that carries frames:
//
//  1. TCP to the agent port: frames at once.
//  2. TLS to the agent port, told apart from 1 by its first byte (a TLS
//     handshake record, 0x16; an agent's first frame is a Hello, under 256
//     bytes, so its first length byte is 0x00): ALPN wire.ALPN, or the
//     HTTP upgrade of 3.
//  3. TLS to public port 443, shared with browsers: ALPN wire.ALPN (the HTTP
//     server's TLSNextProto hands the connection over), or, when a
//     TLS-inspecting proxy in between made its own connection offering only
//     HTTP, "GET /.hubtunnel/agent" with "Upgrade: hubtunnel/1" on any Host,
//     answered 101 (publicPort.ServeHTTP). No user authentication: the agent
//     protocol authenticates itself with WireGuard. Port 443's per-address
//     connection limit applies.
//
// The certificate is the relay's TLS one; agents do not check it (their
// pinned WireGuard key authenticates the relay).

// tlsHandshakeRecord is the first byte of every TLS ClientHello.
const tlsHandshakeRecord = 0x16

// maxUpgradeHead bounds the HTTP head of an agent upgrade on the agent port.
const maxUpgradeHead = 4 << 10

// upgradeAnswer is the relay's answer to an agent's upgrade.
const upgradeAnswer = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + wire.ALPN + "\r\n\r\n"

// withAgentALPN is cfg offering agents wire.ALPN. It comes first: Go's TLS
// server picks the first of its own protocols that the client offers, and
// agents offer http/1.1 too (for a proxy that knows only HTTP), browsers
// never wire.ALPN.
func withAgentALPN(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.NextProtos = []string{wire.ALPN, "http/1.1"}
	return c
}

// agentNextProto is the HTTP server's TLSNextProto for public port e: on
// 443, connections that negotiated wire.ALPN go to serveAgent; on the other
// ports nothing (HTTP/1.1 only).
func (s *Server) agentNextProto(e uint16) map[string]func(*http.Server, *tls.Conn, http.Handler) {
	m := map[string]func(*http.Server, *tls.Conn, http.Handler){}
	if e == 443 {
		m[wire.ALPN] = func(_ *http.Server, tc *tls.Conn, _ http.Handler) {
			pc := tc.NetConn().(*publicConn)
			if !pc.withinLimit {
				s.logLimit(pc, "more than %d connections", s.limits.rates.Load().maxConns)
				return
			}
			s.serveAgentPublic(tc, pc)
		}
	}
	return m
}

// isAgentUpgrade reports whether r asks for the agent protocol as
// wire.UpgradePath describes.
func isAgentUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && r.RequestURI == wire.UpgradePath &&
		hasToken(r.Header.Values("Connection"), "upgrade") && hasToken(r.Header.Values("Upgrade"), wire.ALPN)
}

// hasToken reports whether the comma-separated header values name token
// (case-insensitively).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveAgentUpgrade takes over a request on port 443 that isAgentUpgrade:
// it answers 101 and serves the agent on the connection.
func (s *Server) serveAgentUpgrade(w http.ResponseWriter, pc *publicConn) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	tc, ok := c.(*tls.Conn)
	if !ok || brw.Reader.Buffered() > 0 {
		return // an agent waits for the 101 before it says Hello
	}
	c.SetDeadline(time.Time{}) // the HTTP server's; serveAgent sets its own
	if _, err := io.WriteString(c, upgradeAnswer); err != nil {
		return
	}
	s.serveAgentPublic(tc, pc)
}

// serveAgentPublic serves an agent that came in on port 443. Its TCP
// keepalive becomes an agent connection's: the public port's default (15 s)
// would cost an idle hub 40 times the bytes.
func (s *Server) serveAgentPublic(tc *tls.Conn, pc *publicConn) {
	if c, ok := pc.Conn.(*net.TCPConn); ok {
		c.SetKeepAliveConfig(agentKeepAlive)
	}
	// The HTTP server's goroutine is not the relay's: count it in, so that
	// Close waits for it before closing the WireGuard device.
	s.mu.Lock()
	select {
	case <-s.closing:
		s.mu.Unlock()
		return
	default:
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.serveAgent(tc, s.publicGate, pc.slot, nil)
}

// serveAgentPort serves a connection to the agent port: frames, or TLS
// (first byte 0x16) with frames inside it.
func (s *Server) serveAgentPort(c net.Conn, slot *gateSlot, done func()) {
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		done()
		return
	}
	pc := &peekedConn{Conn: c, first: first[0], peeked: true}
	if first[0] != tlsHandshakeRecord {
		s.serveAgent(pc, s.agentGate, slot, done) // calls done
		return
	}
	defer done()
	tc := tls.Server(pc, s.agentTLS)
	ctx, cancel := context.WithTimeout(context.Background(), helloTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != wire.ALPN && !s.agentPortUpgrade(tc) {
		return
	}
	s.serveAgent(tc, s.agentGate, slot, nil)
}

// agentPortUpgrade reads an HTTP request on a TLS connection to the agent
// port that negotiated no ALPN, and reports whether it was the agent's
// upgrade (then answered 101).
func (s *Server) agentPortUpgrade(tc *tls.Conn) bool {
	br := bufio.NewReaderSize(io.LimitReader(tc, maxUpgradeHead), 1024)
	r, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	r.Body.Close()
	if !isAgentUpgrade(r) || br.Buffered() > 0 {
		io.WriteString(tc, "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return false
	}
	_, err = io.WriteString(tc, upgradeAnswer)
	return err == nil
}

// transportOf is how an agent connection came: "tls" or "tcp".
func transportOf(c net.Conn) string {
	if _, ok := c.(*tls.Conn); ok {
		return "tls"
	}
	return "tcp"
}

// peekedConn is a connection whose first byte was read to tell TLS from
// frames: Read returns it first. It keeps the TCP connection's half-close
// (the relay's GoingAway) and socket (wire.DelayACKs).
type peekedConn struct {
	net.Conn
	first  byte
	peeked bool // first is still to be read
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.peeked && len(p) > 0 {
		p[0], c.peeked = c.first, false
		return 1, nil
	}
	return c.Conn.Read(p)
}

func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// TCPConn is the socket under c once its first byte has been read again,
// for sockio (wire.NewConn): from then on c's bytes are the socket's.
func (c *peekedConn) TCPConn() *net.TCPConn {
	if c.peeked {
		return nil
	}
	tc, _ := c.Conn.(*net.TCPConn)
	return tc
}

func (c *peekedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}
