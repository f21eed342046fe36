package relay

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

const (
	// hubDialTimeout bounds connecting through the tunnel to an online hub.
	hubDialTimeout = 10 * time.Second
	// hubIdleTimeout closes a kept-alive connection to a hub unused for
	// this long: reuse pays within a page load or a client's polling, and
	// the hub's own servers drop idle connections soon anyway (lighttpd
	// after 5 s by default), so the agent's sessions end soon after the
	// users leave.
	hubIdleTimeout = 10 * time.Second
	// maxHubsPerUserConn bounds the hubs one user connection keeps a
	// connection to; a browser's connection serves one hub, a reverse
	// proxy's a few.
	maxHubsPerUserConn = 8
	// hubAnswerTimeout bounds the wait for a hub's response head. A
	// HomeMatic script or an XML-RPC call may well run for minutes.
	hubAnswerTimeout = 10 * time.Minute
	// flushInterval is the longest a part of a hub's answer waits in the
	// relay before it goes on to the user. Answers without a length
	// (chunked, event streams) are flushed at once anyway (ReverseProxy
	// does that). Not -1 for all: that flushes the head from a goroutine
	// of its own, apart from the body, costing every small XML-RPC answer
	// a goroutine and a second write.
	flushInterval = 10 * time.Millisecond
	// expectContinueTimeout is how long a request's body waits for the
	// hub's 100 Continue when the user sent Expect: 100-continue (as
	// Transport's ExpectContinueTimeout did): then it goes anyway.
	expectContinueTimeout = time.Second
)

// hubProxy forwards a request the public side has authorised to its hub:
// httputil.ReverseProxy over the relay's own round tripper (hubconn.go),
// which dials the hub's tunnel address through the relay's netstack and
// keeps the connection alive, so a kept-alive user connection costs no
// dial per request.
//
// Each user connection has its own connections to hubs (userPools): one
// hub's connections only ever carry that hub's requests, and only one
// user connection's. The agent decides on each connection it accepts (the
// CCU's firewall settings; later, who the user is), so a connection to a
// hub must never carry another user's requests.
type hubProxy struct {
	s  *Server
	rp *httputil.ReverseProxy
	// idleTimeout, answerTimeout and continueTimeout are hubIdleTimeout,
	// hubAnswerTimeout and expectContinueTimeout, but for tests.
	idleTimeout, answerTimeout, continueTimeout time.Duration
}

// routeKey is the context key of a request's route.
type routeKey struct{}

// route is where a request goes: set by the public side, read by the
// proxy's Rewrite and RoundTrip.
type route struct {
	hub    *hub
	port   uint16 // the tunnel port
	tls    bool   // the user came over TLS
	client netip.Addr
	pools  *userPools // the user connection's
	cred   credential // what the user authenticated with (auth.go)
}

func newHubProxy(s *Server) *hubProxy {
	p := &hubProxy{s: s, idleTimeout: hubIdleTimeout, answerTimeout: hubAnswerTimeout, continueTimeout: expectContinueTimeout}
	errLog := logger.Limited(s.log, 30*time.Second)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		ModifyResponse: modifyResponse,
		Transport:      p,
		FlushInterval:  flushInterval,
		BufferPool:     bufferPool{},
		// What ReverseProxy logs itself (a hub's answer that broke off
		// mid-body) goes to the relay's log, not to the standard logger.
		ErrorLog: log.New(proxyErrorLog{errLog}, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rt := r.Context().Value(routeKey{}).(*route)
			rt.pools.drop(rt.hub)
			if errors.Is(err, errUserBody) {
				writeError(w, http.StatusBadRequest, "Request broken", "The request's body broke off before its end.")
				return
			}
			switch {
			case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
				// The user left before the hub answered (net/http takes
				// a half-close for leaving too). The 502 still goes out:
				// without an answer net/http would send an empty 200.
				// But the log line says 499, not the hub's failure.
				if sw, ok := w.(*statusWriter); ok {
					sw.status = statusUserLeft
				}
			case !errors.Is(err, context.Canceled):
				errLog.Warn("a request to the hub failed", logger.Hub, rt.hub.Name, logger.Port, rt.port, logger.Remote, r.RemoteAddr, logger.Err, err)
			}
			writeError(w, http.StatusBadGateway, "Hub not answering", "The hub did not answer on this port.")
		},
	}
	return p
}

// rewrite makes the request the hub gets: the hub's tunnel address and
// port, the Host the user asked for, and the user's real address in
// Forwarded and X-Forwarded-For, replacing whatever the user sent there.
// (ReverseProxy has already dropped hop-by-hop headers and the user's
// X-Forwarded-For, -Host and -Proto.)
func (p *hubProxy) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routeKey{}).(*route)
	u := pr.Out.URL
	u.Scheme = "http"
	u.Host = netip.AddrPortFrom(rt.hub.ip, rt.port).String()
	pr.Out.Host = pr.In.Host
	h := pr.Out.Header
	h.Del("Forwarded")
	h.Del("X-Real-Ip")
	proto := "http"
	if rt.tls {
		proto = "https"
	}
	ip := rt.client.String()
	if rt.client.Is6() {
		h["Forwarded"] = []string{`for="[` + ip + `]";proto=` + proto}
	} else {
		h["Forwarded"] = []string{"for=" + ip + ";proto=" + proto}
	}
	h["X-Forwarded-For"] = []string{ip}
	h["X-Forwarded-Proto"] = []string{proto}
	// The hub never sees the relay's credentials: its session cookie goes,
	// and a token's Authorization becomes the hub's own, if it carried one.
	dropRelayCookies(h)
	if rt.cred.kind == credToken {
		h.Del("Authorization")
		if rt.cred.hubAuth {
			pr.Out.SetBasicAuth(rt.cred.hubUser, rt.cred.hubPass)
		}
	}
}

// isRelayCookie reports whether a cookie name is one of the relay's.
func isRelayCookie(name string) bool {
	return name == cookieName(true) || name == cookieName(false)
}

// dropRelayCookies removes the relay's session cookies from a request's
// Cookie headers and keeps the hub's own as they were.
func dropRelayCookies(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var keep []string
	for _, line := range lines {
		for _, pair := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(pair, "=")
			if pair = strings.TrimSpace(pair); pair != "" && !isRelayCookie(strings.TrimSpace(name)) {
				keep = append(keep, pair)
			}
		}
	}
	if len(keep) == 0 {
		h.Del("Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(keep, "; ")}
}

// modifyResponse is ReverseProxy's ModifyResponse.
func modifyResponse(resp *http.Response) error {
	unchunked(resp)
	return hubCookies(resp)
}

// unchunked passes an answer the hub ends by closing its connection (no
// length, not chunked: a download from a simple server, the bench's bulk
// server) on to an HTTP/1.1 user in the same way, ended by closing the
// user's connection, instead of chunked. net/http writes each chunk in
// three writes, 4 KiB, the rest and the closing CRLF (the chunk's header
// waits in its 4 KiB buffer), where unchunked it writes each read of the
// hub's answer in one. The relay's CPU per GB of such a download fell by
// a fifth (relaycore -closed, four alternated pairs: median -19 %), to
// what one with a length costs. The user's next request opens a new
// connection. (The public ports speak HTTP/1.1 only: tls.go.)
func unchunked(resp *http.Response) {
	if resp.ContentLength != -1 || len(resp.TransferEncoding) > 0 || resp.Request == nil || resp.Request.Method == http.MethodHead ||
		resp.StatusCode < 200 || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return
	}
	resp.Header.Set("Transfer-Encoding", "identity")
}

// hubCookies keeps a hub's answer from touching the relay's cookies or any
// other host's: a Set-Cookie naming the relay's cookie is dropped, and a
// Domain attribute is removed, so the cookie stays on the hub's own host
// (a hub's page shares its site with every other hub).
func hubCookies(resp *http.Response) error {
	lines := resp.Header["Set-Cookie"]
	if len(lines) == 0 {
		return nil
	}
	keep := lines[:0]
	for _, line := range lines {
		parts := strings.Split(line, ";")
		name, _, _ := strings.Cut(parts[0], "=")
		if isRelayCookie(strings.TrimSpace(name)) {
			continue
		}
		out := parts[:1]
		for _, attr := range parts[1:] {
			k, _, _ := strings.Cut(attr, "=")
			if !strings.EqualFold(strings.TrimSpace(k), "domain") {
				out = append(out, attr)
			}
		}
		keep = append(keep, strings.Join(out, ";"))
	}
	if len(keep) == 0 {
		resp.Header.Del("Set-Cookie")
	} else {
		resp.Header["Set-Cookie"] = keep
	}
	return nil
}

// RoundTrip sends a request over its user connection's connection to its
// hub (hubconn.go), on the caller's goroutine. It dials nothing but the
// hub's own tunnel address.
func (p *hubProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	rt := r.Context().Value(routeKey{}).(*route)
	addr := netip.AddrPortFrom(rt.hub.ip, rt.port)
	if ap, err := netip.ParseAddrPort(r.URL.Host); err != nil || ap != addr {
		return nil, fmt.Errorf("relay: hub %s: refusing to dial %s", rt.hub.Name, r.URL.Host)
	}
	r, whole, err := sentBody(r)
	if err != nil {
		return nil, err
	}
	for fresh := false; ; fresh = true {
		c, reused, err := p.hubConnTo(r.Context(), rt, addr, fresh)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(r, reused, whole)
		if err == errRetry && !fresh {
			continue
		}
		return resp, err
	}
}

var _ http.RoundTripper = (*hubProxy)(nil)

// trackedConn is a connection to a hub that the relay's Close closes.
type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.untrack(c.Conn) })
	return nil
}

// bufferPool lends ReverseProxy its copy buffers, 64 KiB: half the reads
// and writes of 32 KiB for a download. Measured against 32 KiB (hubbench
// peers phase, 4 alternated pairs), the relay's CPU per GB fell from
// 1.72 to 1.50 s (medians); its RSS under load rose by about 10 MB (main
// phase: 200 sessions' buffers, and what sync.Pool keeps until the next
// collections). A buffer is held only while an answer's body is copied.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// clientIP is the address part of a remote address.
func clientIP(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// proxyErrorLog writes ReverseProxy's own log lines as one rate-limited
// warning of the relay's.
type proxyErrorLog struct{ log *slog.Logger }

func (l proxyErrorLog) Write(p []byte) (int, error) {
	l.log.Warn("the relay's proxy to a hub failed", logger.Err, strings.TrimSpace(strings.TrimPrefix(string(p), "httputil: ")))
	return len(p), nil
}
