package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/wire"
)

// clientTLS wraps c, a connection to the relay's TLS port (directly or
// through a proxy's tunnel), in TLS and makes it carry frames: ALPN
// wire.ALPN when the relay itself answered, else an HTTP/1.1 upgrade on
// the same connection (a TLS-inspecting proxy in between offers the relay
// only HTTP). hostport is what was dialled; its host is the SNI name unless
// it is an IP address.
func clientTLS(ctx context.Context, c net.Conn, hostport string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(hostport)
	sni := host
	if _, err := netip.ParseAddr(host); err == nil {
		sni = "" // SNI carries names only
	}
	tc := tls.Client(c, &tls.Config{
		// The certificate is not checked, on purpose. The relay is
		// authenticated by its WireGuard key, pinned in the agent's
		// config: every packet of the tunnel proves it, and a relay that
		// is not the pinned one never completes a handshake. TLS here is
		// only a wrapper that gets through networks that allow nothing
		// else, and a company proxy that inspects TLS re-signs every
		// certificate with its own CA, which must not break the tunnel.
		// The hub may not even have a correct clock to check one with.
		InsecureSkipVerify: true, //nolint:gosec // see above
		ServerName:         sni,
		NextProtos:         []string{wire.ALPN, "http/1.1"},
		MinVersion:         tls.VersionTLS12,
	})
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS with %s: %w", hostport, err)
	}
	if tc.ConnectionState().NegotiatedProtocol == wire.ALPN {
		return &tlsConn{tc}, nil
	}
	br, err := upgrade(tc, hostport)
	if err != nil {
		return nil, fmt.Errorf("TLS with %s: %w", hostport, err)
	}
	if br.Buffered() > 0 {
		// The relay speaks only after the agent's Hello; keep what came
		// anyway.
		return &bufferedConn{Conn: &tlsConn{tc}, r: br}, nil
	}
	return &tlsConn{tc}, nil
}

// upgrade asks for the agent protocol with an HTTP/1.1 upgrade on tc and
// reads the answer.
func upgrade(tc *tls.Conn, hostport string) (*bufio.Reader, error) {
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil && port == "443" {
		host = h
	}
	req := "GET " + wire.UpgradePath + " HTTP/1.1\r\nHost: " + host +
		"\r\nConnection: Upgrade\r\nUpgrade: " + wire.ALPN + "\r\nUser-Agent: hubtunnel\r\n\r\n"
	if _, err := tc.Write([]byte(req)); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(tc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("reading the answer to the agent upgrade: %w", err)
	}
	resp.Body.Close() // a 101 has no body; any other answer ends here
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), wire.ALPN) {
		return nil, fmt.Errorf("the TLS port answered %q instead of taking the agent (is relay_tls the relay's HTTPS port?)", resp.Status)
	}
	return br, nil
}

// tlsConn is a TLS connection that lets wire.DelayACKs reach its socket.
type tlsConn struct {
	*tls.Conn
}

// SyscallConn is the socket's under the TLS, when there is one.
func (c *tlsConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.NetConn().(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("uplink: no socket under this TLS connection")
}
