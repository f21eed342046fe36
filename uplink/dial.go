package uplink

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
)

// Dialer opens the agent's one connection to the relay: TCP to its agent
// port or TLS to its TLS port, each directly or through an HTTP proxy with
// CONNECT (the routes). It resolves the relay's name afresh on every call,
// so a relay that moved is found on the next reconnect.
type Dialer struct {
	// Proxy is an http:// proxy URL (user:password@ allowed). Nil means
	// none; use ProxyFromEnvironment to honour HTTPS_PROXY and NO_PROXY.
	Proxy *url.URL
	// Timeout bounds one whole attempt (resolve, connect, proxy, TLS).
	// Default 15s.
	Timeout time.Duration

	// Transport is how DialRelay reaches the relay: "tcp" (the default)
	// to Relay, "tls" to RelayTLS, each through Proxy when it is set; or
	// "auto": TCP to Relay directly, then TLS to RelayTLS directly, then
	// TLS to RelayTLS through Proxy (when set), starting with the route
	// that worked last, each within RouteTimeout.
	Transport string
	// Relay is the relay's agent port, "host:port" (TCPBind uses its Addr).
	Relay string
	// RelayTLS is the relay's TLS port, "host:port". Default: Relay's host
	// at port 443.
	RelayTLS string
	// RouteTimeout bounds each route's attempt with "auto", so that a
	// blocked port does not cost the whole Timeout. Default 5s.
	RouteTimeout time.Duration
	// LookupHost resolves the relay's name. Default: the system resolver.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// Report, if set, hears for every address LookupHost gave that was
	// tried whether a TCP connection to it opened, so that the resolver can
	// put addresses that keep failing behind those that work (dnsfix does).
	// It is not called for IP literals, nor when the attempt was cancelled.
	Report func(addr netip.Addr, ok bool)
	// KeepAlive is applied to the TCP connection (to the relay, or to the
	// proxy). Default: DefaultKeepAlive.
	KeepAlive net.KeepAliveConfig

	mu   sync.Mutex
	last Route // "auto": the route that opened the last connection
}

// Route is how a connection to the relay was opened; the agent's status
// shows it.
type Route string

// The routes to the relay.
const (
	RouteTCP      Route = "tcp"           // TCP to the agent port
	RouteTCPProxy Route = "tcp via proxy" // the same through the HTTP proxy
	RouteTLS      Route = "tls"           // TLS to the TLS port
	RouteTLSProxy Route = "tls via proxy" // the same through the HTTP proxy
)

// DefaultRouteTimeout is Dialer.RouteTimeout's default.
const DefaultRouteTimeout = 5 * time.Second

// DefaultKeepAlive notices a dead relay connection within 2 minutes
// (90 s idle + 3 probes 10 s apart) while an idle tunnel costs one probe and
// its answer every 90 s: about 127 KB a day with TCP/IP headers.
var DefaultKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 90 * time.Second, Interval: 10 * time.Second, Count: 3}

// userTimeout bounds how long sent data may stay unacknowledged before the
// kernel gives up on the connection (TCP_USER_TIMEOUT, Linux only).
const userTimeout = 2 * time.Minute

// ProxyFromEnvironment returns the proxy HTTPS_PROXY (or https_proxy)
// names for relayAddr, honouring NO_PROXY; nil when there is none.
func ProxyFromEnvironment(relayAddr string) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: relayAddr}})
	if err != nil {
		return nil, fmt.Errorf("uplink: HTTPS_PROXY: %w", err)
	}
	return u, nil
}

// ParseProxy checks a proxy setting such as "http://user:pw@proxy.lan:3128".
func ParseProxy(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.Port() == "" {
		return nil, errors.New("want http://host:port (user:password@ allowed)")
	}
	return u, nil
}

// DialRelay opens a connection to the relay, ready for frames, by the
// routes Transport names, and says which route it took. A failure of every
// route is a *RoutesError.
func (d *Dialer) DialRelay(ctx context.Context) (net.Conn, Route, error) {
	return d.dialRelay(ctx, d.Relay)
}

// dialRelay is DialRelay with relay as the agent port.
func (d *Dialer) dialRelay(ctx context.Context, relay string) (net.Conn, Route, error) {
	routes := d.routes()
	timeout := d.timeout()
	if len(routes) > 1 {
		timeout = d.RouteTimeout
		if timeout == 0 {
			timeout = DefaultRouteTimeout
		}
	}
	var failed RoutesError
	for _, r := range routes {
		c, err := d.dialRoute(ctx, r, relay, timeout)
		if err == nil {
			d.mu.Lock()
			d.last = r
			d.mu.Unlock()
			return c, r, nil
		}
		if len(routes) == 1 || ctx.Err() != nil {
			return nil, "", err
		}
		failed = append(failed, RouteError{Route: r, Err: err})
	}
	return nil, "", failed
}

// routes are the routes to try, in order.
func (d *Dialer) routes() []Route {
	switch d.Transport {
	case "tls":
		if d.Proxy != nil {
			return []Route{RouteTLSProxy}
		}
		return []Route{RouteTLS}
	case "auto":
		rs := []Route{RouteTCP, RouteTLS}
		if d.Proxy != nil {
			rs = append(rs, RouteTLSProxy)
		}
		d.mu.Lock()
		last := d.last
		d.mu.Unlock()
		for i, r := range rs {
			if r == last && i > 0 {
				copy(rs[1:i+1], rs[:i])
				rs[0] = r
			}
		}
		return rs
	}
	if d.Proxy != nil {
		return []Route{RouteTCPProxy}
	}
	return []Route{RouteTCP}
}

// dialRoute opens one route within timeout.
func (d *Dialer) dialRoute(ctx context.Context, r Route, relay string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := relay
	if r == RouteTLS || r == RouteTLSProxy {
		addr = d.relayTLS(relay)
	}
	var c net.Conn
	var err error
	if r == RouteTCPProxy || r == RouteTLSProxy {
		c, err = d.viaProxy(ctx, addr)
	} else {
		c, err = d.dialHost(ctx, addr)
	}
	if err != nil || (r != RouteTLS && r != RouteTLSProxy) {
		return c, err
	}
	tc, err := clientTLS(ctx, c, addr)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// relayTLS is the relay's TLS port: RelayTLS, or relay's host at 443.
func (d *Dialer) relayTLS(relay string) string {
	if d.RelayTLS != "" {
		return d.RelayTLS
	}
	host, _, err := net.SplitHostPort(relay)
	if err != nil {
		host = relay
	}
	return net.JoinHostPort(host, "443")
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout == 0 {
		return 15 * time.Second
	}
	return d.Timeout
}

// RouteError is why one route to the relay failed.
type RouteError struct {
	Route Route
	Err   error
}

func (e RouteError) Error() string { return string(e.Route) + ": " + e.Err.Error() }
func (e RouteError) Unwrap() error { return e.Err }

// RoutesError is why every route "auto" tried failed, in the order tried.
type RoutesError []RouteError

func (e RoutesError) Error() string {
	parts := make([]string, len(e))
	for i, re := range e {
		parts[i] = re.Error()
	}
	return "no route to the relay worked: " + strings.Join(parts, "; ")
}

// Dial connects to addr ("host:port") over TCP, directly or through Proxy.
func (d *Dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	if d.Proxy != nil {
		return d.viaProxy(ctx, addr)
	}
	return d.dialHost(ctx, addr)
}

// viaProxy opens a tunnel to addr through Proxy.
func (d *Dialer) viaProxy(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.dialHost(ctx, d.Proxy.Host)
	if err != nil {
		err = fmt.Errorf("proxy %s: %w", d.Proxy.Host, err)
		return nil, localapi.Said("proxy", err.Error(), err)
	}
	pc, err := connect(ctx, c, d.Proxy, addr)
	if err != nil {
		c.Close()
		err = fmt.Errorf("proxy %s: %w", d.Proxy.Host, err)
		return nil, localapi.Said("proxy", err.Error(), err)
	}
	return pc, nil
}

// dialHost resolves host and tries its addresses in order.
func (d *Dialer) dialHost(ctx context.Context, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	report := func(netip.Addr, bool) {}
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		if d.Report != nil {
			report = d.Report
		}
		lookup := d.LookupHost
		if lookup == nil {
			lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			}
		}
		if addrs, err = lookup(ctx, host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	ka := d.KeepAlive
	if !ka.Enable {
		ka = DefaultKeepAlive
	}
	nd := net.Dialer{KeepAliveConfig: ka, Control: controlUserTimeout}
	var firstErr error
	for _, a := range addrs {
		c, err := nd.DialContext(ctx, "tcp", net.JoinHostPort(a.Unmap().String(), port))
		if !errors.Is(ctx.Err(), context.Canceled) {
			report(a, err == nil)
		}
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// connect asks the proxy on c for a tunnel to addr.
func connect(ctx context.Context, c net.Conn, proxy *url.URL, addr string) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hubtunnel\r\n", addr, addr)
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pw))
		fmt.Fprintf(&b, "Proxy-Authorization: Basic %s\r\n", cred)
	}
	b.WriteString("\r\n")
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("reading CONNECT answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("CONNECT %s refused: %s", addr, resp.Status)
	}
	if br.Buffered() == 0 {
		return c, nil
	}
	// The relay may already have spoken; keep what the reader holds.
	return &bufferedConn{Conn: c, r: br}, nil
}

// bufferedConn is a connection whose first bytes sit in a bufio.Reader.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
