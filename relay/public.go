package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/portmap"
)

const (
	// maxHead bounds a request head (Go's server allows 4 KiB more).
	maxHead = 16 << 10
	// headTimeout is how long a user may take to send TLS and a request
	// head; idleTimeout how long a kept-alive connection may wait for the
	// next request.
	headTimeout = 30 * time.Second
	idleTimeout = 2 * time.Minute
	// hstsHeader tells browsers to use HTTPS only for the hub's name.
	hstsHeader = "max-age=31536000"
)

// servesPort reports whether the relay listens on public port e: the TLS
// ports always, 80 always (it redirects to HTTPS unless plaintext_ports),
// the other plaintext ports only with plaintext_ports.
func (s *Server) servesPort(e portmap.Entry) bool {
	return e.TLS || e.Port == 80 || s.cfg.PlaintextPorts
}

// acceptPublic serves one public port until its listener is closed: Go's
// HTTP server reads each request on its own, and publicPort routes it.
func (s *Server) acceptPublic(ln net.Listener, e portmap.Entry) {
	defer s.wg.Done()
	pp := &publicPort{s: s, e: e, port: int(e.Port) + s.cfg.PortOffset}
	pp.redirect = !e.TLS && !s.cfg.PlaintextPorts
	pp.hsts = e.TLS && !s.cfg.PlaintextPorts
	srv := &http.Server{
		Handler:           pp,
		ReadHeaderTimeout: headTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHead,
		ErrorLog:          log.New(logWriter(logger.RateLimited(s.logf, 30*time.Second)), fmt.Sprintf("relay: public port %d: ", e.Port), 0),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			return context.WithValue(ctx, connKey{}, c.(*publicConn))
		},
	}
	var l net.Listener = &publicListener{Listener: ln, s: s}
	if e.TLS {
		l = tls.NewListener(l, s.tls)
	}
	if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
		s.logf("relay: public port %d: %v", e.Port, err)
	}
}

// connKey is the context key of a request's *publicConn.
type connKey struct{}

// publicPort is the HTTP handler of one public port.
type publicPort struct {
	s        *Server
	e        portmap.Entry
	port     int  // the port users connect to: the map's plus the offset
	redirect bool // plain HTTP that only redirects to HTTPS
	hsts     bool // answers carry HSTS
}

// ServeHTTP decides about one request: the limits of its source address,
// a strict reading of where it goes, the hub, authorize, and then the
// proxy. Before authorize, every refusal looks the same whether or not
// the hub exists or is online.
func (p *publicPort) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.s
	pc := r.Context().Value(connKey{}).(*publicConn)
	if p.hsts {
		w.Header()["Strict-Transport-Security"] = []string{hstsHeader}
	}
	if !pc.withinLimit {
		s.logLimit(pc, "more than %d connections", s.limits.maxConns)
		refuse(w, http.StatusServiceUnavailable, "Too many connections from your address. Close some and try again.")
		return
	}
	if !s.limits.allow(pc.addr) {
		s.logLimit(pc, "more than %g requests a second", s.limits.rate)
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "keep-alive") // a well-paced client goes on on this connection
		refuse(w, http.StatusTooManyRequests, "Too many requests from your address. Slow down and try again.")
		return
	}
	// Only origin-form requests: an absolute URI could name another host
	// than the Host header that a proxy in front checked, and the relay
	// is no proxy. (Go's server has refused duplicate Host headers, folded
	// lines and malformed heads.)
	if !strings.HasPrefix(r.RequestURI, "/") && !(r.RequestURI == "*" && r.Method == http.MethodOptions) {
		refuse(w, http.StatusBadRequest, "Bad request.")
		return
	}
	name, ok := s.hubName(r.Host)
	if r.TLS != nil && r.TLS.ServerName != "" {
		if sniName, sniOK := s.hubName(r.TLS.ServerName); !ok || !sniOK || sniName != name {
			refuse(w, http.StatusMisdirectedRequest, "This connection is for another name.")
			return
		}
	}
	if p.redirect {
		if !ok {
			notFound(w)
			return
		}
		p.redirectToHTTPS(w, r)
		return
	}
	h := s.hubs.byName[name]
	if !ok || h == nil || s.authorize(r, h) != nil {
		notFound(w)
		return
	}
	if !s.hubs.online(h) && !s.awaitReconnect(h, r.RemoteAddr) {
		notFound(w)
		return
	}

	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	// The audit line: who, which hub and port, what came of it, how long,
	// how much: the bytes on the user's connection since the last line
	// (TLS and request heads included). Never a path, a cookie or a
	// credential. Deferred too: a response cut off midway ends in a panic
	// (http.ErrAbortHandler) that net/http recovers.
	logged := false
	audit := func() {
		logged = true
		status := sw.status
		if status == 0 && r.Header.Get("Upgrade") != "" {
			status = http.StatusSwitchingProtocols
		}
		in, out := pc.in.Load(), pc.out.Load()
		up, down := in-pc.auditIn, out-pc.auditOut
		pc.auditIn, pc.auditOut = in, out
		s.logf("relay: request hub=%s port=%d from=%s method=%s status=%d dur=%s up=%d down=%d",
			h.Name, p.e.Port, r.RemoteAddr, r.Method, status, time.Since(start).Round(time.Millisecond), up, down)
	}
	defer func() {
		if !logged {
			audit()
		}
	}()
	rt := &route{hub: h, port: p.e.Port, tls: r.TLS != nil, client: clientIP(r.RemoteAddr), pools: &pc.pools}
	s.proxy.rp.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
	if sw.status != 0 { // not hijacked: the answer goes out before the log line is written
		http.NewResponseController(w).Flush()
	}
	audit()
}

// authorize decides whether r may reach hub h. Today every request for a
// configured hub may; logins and grants decide here. An error is
// answered as an unknown hub's would be.
func (s *Server) authorize(r *http.Request, h *hub) error {
	return nil
}

// redirectToHTTPS sends a plain-HTTP request to the same URL on HTTPS.
func (p *publicPort) redirectToHTTPS(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(hostOnly(r.Host))
	if port := 443 + p.s.cfg.PortOffset; port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusPermanentRedirect)
}

// logLimit logs that pc's address is over a limit, at most once per
// limitLogEvery per address.
func (s *Server) logLimit(pc *publicConn, format string, args ...any) {
	if s.limits.shouldLog(pc.addr) {
		s.logf("relay: limits: address %s: "+format+"; refusing (logged at most every %v)", append(append([]any{pc.addr.key}, args...), limitLogEvery)...)
	}
}

// awaitReconnect lets a request for a hub whose agent has just gone (see
// reconnectWindow) wait for it, and reports whether it came back.
func (s *Server) awaitReconnect(h *hub, from string) bool {
	if !s.hubs.reconnecting(h) {
		return false
	}
	s.logf("relay: hub %s is reconnecting; a request from %s waits up to %v", h.Name, from, reconnectWait)
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

// notFound is the one answer for every hub a request may not reach: not
// configured, offline, or not authorised. It names nothing.
func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "Not found", "Nothing is reachable at this address. Check the name in the address; the hub may also be offline.")
}

// refuse answers a request the relay will not serve with a short text and
// closes the connection, unless the caller has set Connection.
func refuse(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if h.Get("Connection") == "" {
		h.Set("Connection", "close")
	} else {
		h.Del("Connection")
	}
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// writeError answers with a small page a hub owner can understand.
func writeError(w http.ResponseWriter, code int, title, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html><html><head><meta charset=\"utf-8\"><title>%d %s</title></head>"+
		"<body><h1>%s</h1><p>%s</p><p><small>hubtunnel relay</small></p></body></html>\n",
		code, html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
}

// statusWriter remembers the status of a response; http.ResponseController
// reaches the writer underneath (flushing, hijacking) through Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logWriter makes a Logf the writer of Go's server's error log.
type logWriter logger.Logf

func (f logWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
