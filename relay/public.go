package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/portal"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/store"
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
	pp := &publicPort{s: s, e: e, port: int(e.Port) + s.cfg.PortOffset, class: classOf(e)}
	pp.redirect = !e.TLS && !s.cfg.PlaintextPorts
	pp.hsts = e.TLS && !s.cfg.PlaintextPorts
	srv := &http.Server{
		Handler:           pp,
		ReadHeaderTimeout: headTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHead,
		ErrorLog:          log.New(logWriter(logger.RateLimited(logger.FromSlog(s.log.With(logger.Port, e.Port)), 30*time.Second)), "", 0),
		TLSNextProto:      s.agentNextProto(e.Port), // HTTP/1.1 only, and agents on 443
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			return context.WithValue(ctx, connKey{}, c.(*publicConn))
		},
		// Between requests a connection holds nothing: at the limit of
		// open connections it may be closed for a new one (limits.go).
		// ServeHTTP marks it busy again.
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateIdle {
				return
			}
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			if pc, ok := c.(*publicConn); ok {
				s.publicGate.markSpare(pc.slot)
			}
		},
	}
	var l net.Listener = &publicListener{Listener: ln, s: s, backoff: acceptBackoff{what: fmt.Sprintf("public port %d", e.Port), log: s.log}}
	if e.Port == 443 {
		l = tls.NewListener(l, s.agentTLS)
	} else if e.TLS {
		l = tls.NewListener(l, s.tls)
	}
	if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("public port failed", logger.Port, e.Port, logger.Err, err)
	}
}

// connKey is the context key of a request's *publicConn.
type connKey struct{}

// publicPort is the HTTP handler of one public port.
type publicPort struct {
	s        *Server
	e        portmap.Entry
	port     int         // the port users connect to: the map's plus the offset
	class    store.Ports // the part of the map it is (auth.go classOf)
	redirect bool        // plain HTTP that only redirects to HTTPS
	hsts     bool        // answers carry HSTS
}

// ServeHTTP decides about one request: the limits of its source address,
// a strict reading of where it goes, who it comes from and whether they
// may reach the hub (auth.go), and then the proxy. Until a credential has
// shown that its holder may reach the hub, every refusal looks the same
// whether or not the hub exists or is online.
func (p *publicPort) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.s
	pc := r.Context().Value(connKey{}).(*publicConn)
	s.publicGate.markBusy(pc.slot) // its head is in: not closed for room (limits.go)
	if p.hsts {
		w.Header()["Strict-Transport-Security"] = []string{hstsHeader}
	}
	if !pc.withinLimit {
		s.metrics.limitConnsPerAddr.Add(1)
		s.logLimit(pc, "more than %d connections", s.limits.rates.Load().maxConns)
		refuse(w, http.StatusServiceUnavailable, "Too many connections from your address. Close some and try again.")
		return
	}
	if !s.limits.allow(pc.addr) {
		s.metrics.limitRequests.Add(1)
		s.logLimit(pc, "more than %g requests a second", s.limits.rates.Load().rate)
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "keep-alive") // a well-paced client goes on on this connection
		refuse(w, http.StatusTooManyRequests, "Too many requests from your address. Slow down and try again.")
		return
	}
	// An agent behind a TLS-inspecting proxy (agenttls.go), on any Host:
	// WireGuard authenticates it, not a login.
	if p.e.Port == 443 && isAgentUpgrade(r) {
		s.serveAgentUpgrade(w, pc)
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
	host := s.classify(r.Host)
	if r.TLS != nil && r.TLS.ServerName != "" && s.classify(r.TLS.ServerName) != host {
		refuse(w, http.StatusMisdirectedRequest, "This connection is for another name.")
		return
	}
	if p.redirect {
		if host.kind == hostOther {
			notFound(w)
			return
		}
		p.redirectToHTTPS(w, r)
		return
	}
	switch {
	case host.kind == hostPortal && p.class == store.PortWebUI:
		s.portal.handler(r.TLS != nil).ServeHTTP(w, r)
		return
	case host.kind == hostHub && p.class == store.PortWebUI && strings.HasPrefix(r.URL.Path, relayPath):
		p.serveRelayPath(w, r, host.hub)
		return
	}

	// Cookies count on a hub host's WebUI ports; tokens everywhere. On the
	// portal host and bare addresses a token reaches its own hub.
	cred := credentialOf(r, host.kind == hostHub && p.class == store.PortWebUI)
	if cred.kind == credNone {
		p.unauthenticated(w, r, host)
		return
	}
	a, err := s.authorize(r, pc, cred, host.hub, p.class)
	switch {
	case errors.Is(err, errBadCredential):
		p.unauthenticated(w, r, host)
		return
	case errors.Is(err, errNoAccess):
		notFound(w)
		return
	case err != nil:
		s.storeErrLog.Warn("store: deciding a request failed", logger.Remote, r.RemoteAddr, logger.Err, err)
		writeError(w, http.StatusServiceUnavailable, "Try again", "The relay cannot check your access right now. Try again in a minute.")
		return
	}
	if cred.kind == credSession && !changesNothing(r) && !portal.SameOrigin(r, r.TLS != nil) {
		refuse(w, http.StatusForbidden, "Refused: this request came from another site.")
		return
	}
	h := s.hubs.name(a.hub)
	if h == nil || (!s.hubs.online(h) && !s.awaitReconnect(h, r.RemoteAddr)) {
		notFound(w)
		return
	}
	if !s.sessions.enter(h, s.now()) {
		s.metrics.limitSessionsPerHub.Add(1)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "Hub busy", "This hub has too many open connections through the relay right now. Try again in a moment.")
		return
	}
	defer s.sessions.leave(h)
	session := pc.countRequest(a, p.e.Port)

	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	// The log line: who, which hub and port, what came of it, how long,
	// how much: the bytes on the user's connection since the last line
	// (TLS and request heads included). Never a path, a cookie or a
	// credential. Deferred too: a response cut off midway ends in a panic
	// (http.ErrAbortHandler) that net/http recovers.
	logged := false
	logLine := func() {
		logged = true
		status := sw.status
		if status == 0 && r.Header.Get("Upgrade") != "" {
			status = http.StatusSwitchingProtocols
		}
		in, out := pc.in.Load(), pc.out.Load()
		up, down := in-pc.auditIn, out-pc.auditOut
		pc.auditIn, pc.auditOut = in, out
		// The record is built here, not by Logger.Info: no runtime.Callers
		// (pc 0: the handler shows no source), no parsing of key-value
		// pairs into boxed values. Later: the relay's log may hold the
		// line for a moment and write it with others (logger.Batch).
		ctx := logger.Later(context.Background())
		if !s.log.Enabled(ctx, slog.LevelInfo) {
			return
		}
		now := time.Now()
		rec := slog.NewRecord(now, slog.LevelInfo, "request", 0)
		rec.AddAttrs(slog.String(logger.Hub, h.Name), slog.Uint64(logger.Port, uint64(p.e.Port)), slog.String(logger.Remote, r.RemoteAddr),
			slog.String(logger.User, a.who.String()), slog.Int64(logger.Session, session),
			slog.String("method", r.Method), slog.Int("status", status), slog.String("dur", now.Sub(start).Round(time.Millisecond).String()),
			slog.Int64("up", up), slog.Int64("down", down))
		_ = s.log.Handler().Handle(ctx, rec)
	}
	defer func() {
		if !logged {
			logLine()
		}
	}()
	rt := &route{hub: h, port: p.e.Port, tls: r.TLS != nil, client: clientIP(r.RemoteAddr), pools: &pc.pools, cred: cred}
	s.proxy.rp.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
	if sw.status != 0 { // not hijacked: the answer goes out before the log line is written
		http.NewResponseController(w).Flush()
	}
	logLine()
}

// unauthenticated answers a request without a valid credential, the same
// for every name: a browser's page request on a hub's WebUI ports goes to
// the login; anything else gets a 401 that asks for a token.
func (p *publicPort) unauthenticated(w http.ResponseWriter, r *http.Request, host hostName) {
	if p.class == store.PortWebUI && host.kind == hostHub && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Location", p.portalURL(r, "/login?next="+url.QueryEscape(requestURL(r))))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", basicRealm)
	writeError(w, http.StatusUnauthorized, "Log in first", "Log in on the relay's page, or give an app token as the password.")
}

// changesNothing reports whether r's method only reads. Others, with a
// session cookie, must come from a page of the hub's own origin
// (portal.SameOrigin): every hub shares the site with every other, so
// SameSite cookies alone would let one hub's page post to another.
func changesNothing(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https://"
	}
	return "http://"
}

// requestURL is the URL the user asked for.
func requestURL(r *http.Request) string {
	return scheme(r) + strings.ToLower(r.Host) + r.URL.RequestURI()
}

// portalURL is path on the portal host, over the scheme and port r came in
// on (the portal is on the same WebUI ports as the hubs).
func (p *publicPort) portalURL(r *http.Request, path string) string {
	host := strings.ToLower(p.s.cfg.PublicHost)
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		host = net.JoinHostPort(host, port)
	}
	return scheme(r) + host + path
}

// serveRelayPath answers the relay's own paths on a hub host: the end of
// the login's hand-off, which sets the hub host's own session cookie, and
// logout, which leads to the portal's.
func (p *publicPort) serveRelayPath(w http.ResponseWriter, r *http.Request, hub string) {
	s := p.s
	secure := r.TLS != nil
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case relayPath + "auth":
		q := r.URL.Query()
		secret, ok := s.handoffs.take(q.Get("code"), hub, s.now())
		var sess store.Session
		var err error
		if ok {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			sess, err = s.db.Session(ctx, secret)
			cancel()
		}
		if !ok || err != nil {
			writeError(w, http.StatusBadRequest, "Link expired", "This sign-in link was used or is too old. Open the hub's address again to sign in.")
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: cookieName(secure), Value: secret, Path: "/", Expires: sess.Expires,
			Secure: secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
		http.Redirect(w, r, localPath(q.Get("next")), http.StatusSeeOther)
	case relayPath + "logout":
		http.SetCookie(w, &http.Cookie{Name: cookieName(secure), Value: "", Path: "/", MaxAge: -1, Secure: secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, p.portalURL(r, "/logout"), http.StatusSeeOther)
	default:
		notFound(w)
	}
}

// localPath is next when it is a path on this host, else "/": the hand-off
// never sends a browser to another host.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
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
		s.log.Warn("limits: an address is over its limit; refusing", "address", pc.addr.key.String(), "limit", fmt.Sprintf(format, args...))
	}
}

// awaitReconnect lets a request for a hub whose agent has just gone (see
// reconnectWindow) wait for it, and reports whether it came back.
func (s *Server) awaitReconnect(h *hub, from string) bool {
	if !s.hubs.reconnecting(h) {
		return false
	}
	s.repeatLog.Info("hub is reconnecting; a request waits", logger.Hub, h.Name, logger.Remote, from, "wait", reconnectWait.String())
	return s.hubs.waitOnline(h, reconnectWait, s.closing)
}

// hostKind is what a Host header or SNI name names.
type hostKind uint8

const (
	hostOther  hostKind = iota // a bare address, or a name of no hub
	hostHub                    // NAME.<domain>
	hostPortal                 // public_host: the portal and the login
)

type hostName struct {
	kind hostKind
	hub  string // hostHub only
}

// classify reads a Host header or SNI name: "NAME.<domain>[:port]" is hub
// NAME, public_host is the portal.
func (s *Server) classify(host string) hostName {
	host = strings.TrimSuffix(strings.ToLower(hostOnly(strings.TrimSpace(host))), ".")
	if host == strings.ToLower(s.cfg.PublicHost) {
		return hostName{kind: hostPortal}
	}
	name, ok := strings.CutSuffix(host, "."+strings.ToLower(s.cfg.Domain))
	if !ok || name == "" || strings.Contains(name, ".") {
		return hostName{}
	}
	return hostName{kind: hostHub, hub: name}
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

// statusUserLeft is the status the log line gives a request whose user
// left before the hub answered (nginx logs such a request as 499 too);
// statusWriter keeps it over the 502 that then goes to no one.
const statusUserLeft = 499

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
