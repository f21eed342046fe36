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
	"time"
)

// Dialer opens the agent's one TCP connection to the relay: directly, or
// through an HTTP proxy with CONNECT. It resolves the relay's name afresh on
// every call, so a relay that moved is found on the next reconnect.
type Dialer struct {
	// Proxy is an http:// proxy URL (user:password@ allowed). Nil means
	// none; use ProxyFromEnvironment to honour HTTPS_PROXY and NO_PROXY.
	Proxy *url.URL
	// Timeout bounds one whole attempt (resolve, connect, proxy). Default 15s.
	Timeout time.Duration
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
}

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

// Dial connects to addr ("host:port").
func (d *Dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if d.Proxy != nil {
		c, err := d.dialHost(ctx, d.Proxy.Host)
		if err != nil {
			return nil, fmt.Errorf("proxy %s: %w", d.Proxy.Host, err)
		}
		pc, err := connect(ctx, c, d.Proxy, addr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("proxy %s: %w", d.Proxy.Host, err)
		}
		return pc, nil
	}
	return d.dialHost(ctx, addr)
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
