// Package portal is the relay's web pages for people: the login (password,
// then a TOTP code for accounts that have one), TOTP enrolment with a QR
// code, logout, and the home page of a logged-in user — their hubs, who
// may reach them, app tokens, sessions and the audit log of their hubs —
// where they also add a hub: a one-time enrollment code, shown once
// (addhub.go).
// It is a plain http.Handler that the relay mounts for its portal host
// (public_host) on the WebUI ports; the access-control contract it keeps
// is design-auth.md's.
//
// Request flow of a login:
//
//  1. GET /login?next=URL: the form. next is kept only when it is a URL on
//     a hub host of the relay's domain or a path on the portal (HubHostOf):
//     never an open redirect.
//  2. POST /login (user, password): refused with 429 while the source
//     address or the account is over its limit (limits.go), else the
//     password is checked (store.CheckPassword).
//  3. An account with TOTP gets a second form (code, pending): the
//     half-done login waits in memory for 5 minutes and 5 tries.
//  4. Success: a store session, its secret as the session cookie (host-only,
//     HttpOnly, SameSite=Lax; __Host- and Secure over TLS), then 303 to the
//     hand-off on the hub host (Config.Handoff, Config.HandoffURL) or home.
//
// What it must never do: put a password, a session secret, an app token, a
// TOTP secret or code, an enrollment code, or a cookie into a log line or
// an audit record;
// redirect anywhere but to this relay's hosts; change anything for a POST
// that lacks the session's CSRF token or comes from another origin; load
// anything from outside the relay (strict Content-Security-Policy).
package portal

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
)

// Config is what the relay hands the portal. Store and Domain are
// required; every other field works at its zero value.
type Config struct {
	Store *store.Store
	// Domain: hubs are NAME.<Domain>. Required.
	Domain string
	// PublicHost is the portal's host name, for the copy-paste lines of
	// app tokens that need no wildcard DNS. Default: Domain.
	PublicHost string
	// HubURL is the URL of a hub's WebUI, for links. Default
	// https://NAME.<Domain>/ (http:// when not Secure).
	HubURL func(hub string) string
	// PortOffset is the relay's port_offset: an app reaches tunnel port
	// 4431 on 4431+PortOffset. Default 0. (An extension of the brief's
	// API: the token lines need the real port.)
	PortOffset int
	// Secure says the portal is served over TLS: the session cookie is
	// then __Host-hubtunnel with Secure, and same-origin checks expect
	// https. Default false (plain HTTP, cookie "hubtunnel").
	Secure bool
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration
	// Online says whether a hub's agent is connected now. Default: never.
	Online func(hub string) bool
	// Handoff makes a one-time code that lets hubHost set its own copy of
	// the session cookie. Default nil: a login with a hub as next goes to
	// the portal's home instead.
	Handoff func(sessionSecret, hubHost string) (code string)
	// HandoffURL is hubHost's /.hubtunnel/auth URL for code, returning to
	// next (a path with its query). Default: https://hubHost/.hubtunnel/auth?…
	HandoffURL func(hubHost, code, next string) string
	// EnrollCode makes a one-time enrollment code for a new hub called
	// hub that owner will own, and returns it as a person types it
	// (enroll.Code's String) with when it expires. A name that a hub or
	// a waiting code has is an error wrapping store.ErrExists. Default
	// nil: the home page offers no "Add a hub".
	EnrollCode func(ctx context.Context, hub, owner string) (code string, expires time.Time, err error)
	// Audit records an event; it must not block. Default: appended to
	// Store synchronously.
	Audit func(store.Event)
	// Now is the clock of the login limits, TOTP and expiry checks; the
	// store has its own. Default time.Now.
	Now func() time.Time
	// Logf gets store failures and login lockouts, never a secret.
	Logf logger.Logf
}

// Limits of this package.
const (
	defaultSessionTTL = 12 * time.Hour
	// maxForm bounds a POST body: the largest form is a few hundred bytes.
	maxForm = 16 << 10
	// auditRows is how many audit records the home page shows.
	auditRows = 200
	// maxLabel bounds a token's label, in bytes.
	maxLabel = 64
	// maxWaitingCodes is how many enrollment codes a user may have
	// waiting (made, neither used nor expired) at once.
	maxWaitingCodes = 5
	// reloadEvery is how often the home page looks again while one of the
	// user's hubs waits to enroll or to connect, in seconds.
	reloadEvery = 5
	// connectWait is how long after its enrollment a hub that has not
	// connected yet is still listed as waiting (and the page reloads).
	connectWait = 10 * time.Minute
)

// KindTOTP is the audit kind of TOTP turned on or off (Outcome "on" or
// "off"); store's Kind constants have none for it.
const KindTOTP = "totp"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// handler is the portal. Its methods are safe for concurrent use.
type handler struct {
	c      Config
	st     *store.Store
	logf   logger.Logf
	now    func() time.Time
	mux    *http.ServeMux
	pages  map[string]*template.Template
	limits *limits
	totp   *totpGuard
	logins *pendingLogins
	enrols *pendingEnrols
	csp    string
	// adding serialises counting a user's waiting codes and making one,
	// so that two forms sent at once cannot pass the limit together.
	adding sync.Mutex
}

// New makes the portal's handler.
func New(c Config) (http.Handler, error) {
	if c.Store == nil {
		return nil, errors.New("portal: no store")
	}
	c.Domain = strings.ToLower(strings.TrimSuffix(c.Domain, "."))
	if c.Domain == "" {
		return nil, errors.New("portal: no domain: hubs are reached as NAME.<domain>")
	}
	if c.PublicHost == "" {
		c.PublicHost = c.Domain
	}
	scheme := "http"
	if c.Secure {
		scheme = "https"
	}
	if c.HubURL == nil {
		c.HubURL = func(hub string) string { return scheme + "://" + hub + "." + c.Domain + "/" }
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = defaultSessionTTL
	}
	if c.Online == nil {
		c.Online = func(string) bool { return false }
	}
	if c.HandoffURL == nil {
		c.HandoffURL = func(hubHost, code, next string) string {
			return scheme + "://" + hubHost + "/.hubtunnel/auth?code=" + url.QueryEscape(code) + "&next=" + url.QueryEscape(next)
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Audit == nil {
		st := c.Store
		c.Audit = func(e store.Event) { st.Append(context.Background(), e) }
	}
	h := &handler{
		c:      c,
		st:     c.Store,
		logf:   logger.WithPrefix(c.Logf, "portal: "),
		now:    c.Now,
		limits: newLimits(),
		totp:   newTOTPGuard(),
		logins: newPendingLogins(),
		enrols: newPendingEnrols(),
	}
	// A login's answer may redirect the form's POST to a hub host (the
	// hand-off): form-action must allow them, or browsers stop there.
	formAction := "'self' https://*." + c.Domain + ":*"
	if !c.Secure {
		formAction += " http://*." + c.Domain + ":*"
	}
	h.csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"form-action " + formAction + "; frame-ancestors 'none'; base-uri 'none'"
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	assets, _ := fs.Sub(assetFS, "assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(assets))

	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.home)
	m.HandleFunc("GET /login", h.loginForm)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("GET /logout", h.logoutForm)
	m.HandleFunc("POST /logout", h.logout)
	m.HandleFunc("GET /totp", h.totpForm)
	m.HandleFunc("POST /totp", h.totpOn)
	m.HandleFunc("POST /totp/off", h.totpOff)
	m.HandleFunc("POST /grant", h.grant)
	m.HandleFunc("POST /grant/revoke", h.revokeGrant)
	m.HandleFunc("POST /token", h.makeToken)
	m.HandleFunc("POST /token/revoke", h.revokeToken)
	m.HandleFunc("POST /session/revoke", h.revokeSession)
	m.HandleFunc("POST /hub/add", h.addHub)
	m.HandleFunc("POST /hub/withdraw", h.withdrawCode)
	m.Handle("GET /assets/{file}", files) // files only: no listing of the folder
	m.HandleFunc("/", h.notFound)
	h.mux = m
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	// The hand-off's code is in a URL: never send it, or the portal's
	// addresses, to anyone as a Referer.
	hd.Set("Referrer-Policy", "no-referrer")
	if strings.HasPrefix(r.URL.Path, "/assets/") {
		hd.Set("Cache-Control", "public, max-age=3600")
	} else {
		hd.Set("Cache-Control", "no-store")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	h.mux.ServeHTTP(w, r)
}

// CookieName is the relay's session cookie: "__Host-hubtunnel" over TLS
// (which browsers only accept with Secure, Path=/ and no Domain, so no
// other host can plant it), "hubtunnel" on plain HTTP.
func CookieName(secure bool) string {
	if secure {
		return "__Host-hubtunnel"
	}
	return "hubtunnel"
}

// SessionFromRequest finds the store session of r's session cookie and
// returns it with its secret (the cookie's value). ok is false, with a nil
// error, when r has no cookie or none that is an active session; err is
// only a store failure. Of several cookies of the name (a plain-HTTP
// cookie planted for the whole domain), the first active one counts.
func SessionFromRequest(ctx context.Context, st *store.Store, r *http.Request, secure bool) (sess store.Session, secret string, ok bool, err error) {
	name := CookieName(secure)
	for _, ck := range r.CookiesNamed(name) {
		if !plausibleSecret(ck.Value) {
			continue
		}
		sess, err := st.Session(ctx, ck.Value)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return store.Session{}, "", false, err
		}
		return sess, ck.Value, true, nil
	}
	return store.Session{}, "", false, nil
}

// plausibleSecret: a session secret is 43 base64url characters; anything
// else is not looked up.
func plausibleSecret(v string) bool {
	if len(v) != 43 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// SameOrigin reports whether a request that changes state may be served
// as coming from a page of its own origin: an Origin header, when present,
// must be the request's own origin (scheme by secure, host and port from
// Host) — or "null" with Sec-Fetch-Site same-origin —, and Sec-Fetch-Site,
// when present, must be same-origin or none.
// Clients that send neither (curl, scripts) pass: the CSRF token is what
// stops a forged form.
func SameOrigin(r *http.Request, secure bool) bool {
	sfs := r.Header.Values("Sec-Fetch-Site")
	if len(sfs) > 0 && (len(sfs) != 1 || (sfs[0] != "same-origin" && sfs[0] != "none")) {
		return false
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return true
	}
	if len(origins) != 1 {
		return false
	}
	if origins[0] == "null" && len(sfs) == 1 && sfs[0] == "same-origin" {
		// A page with Referrer-Policy no-referrer (a hub's own pages may
		// send one) posts with Origin "null"; the browser's own
		// Sec-Fetch-Site still says where the request came from.
		return true
	}
	scheme, port := "http", "80"
	if secure {
		scheme, port = "https", "443"
	}
	rest, found := strings.CutPrefix(origins[0], scheme+"://")
	if !found {
		return false // "null", another scheme
	}
	return sameHostPort(rest, r.Host, port)
}

// sameHostPort compares two host[:port]s, case-insensitively, with port
// standing in where one has none.
func sameHostPort(a, b, port string) bool {
	norm := func(hp string) (string, bool) {
		if hp == "" || strings.ContainsAny(hp, "/?#@\\ ") {
			return "", false
		}
		host, p, err := net.SplitHostPort(hp)
		if err != nil {
			host, p = hp, port
		}
		return strings.ToLower(strings.Trim(host, "[]")) + " " + p, true
	}
	na, ok1 := norm(a)
	nb, ok2 := norm(b)
	return ok1 && ok2 && na == nb
}

// source is the address a request came from, without its port, as the
// audit log and the sessions list show it.
func source(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	return ap.Addr().Unmap().String()
}

// sourceKey is the share of the per-address login limit a request counts
// in: an IPv4 address, or an IPv6 /64 (the smallest network one user
// usually has), as the relay's own limits count.
func sourceKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// audit hands an event to Config.Audit, stamped with the portal's clock.
func (h *handler) audit(e store.Event) {
	if e.At.IsZero() {
		e.At = h.now()
	}
	h.c.Audit(e)
}

// fail answers a request the portal could not serve because the store
// failed, and logs why (store errors name users and hubs, never secrets).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.logf("%s: %v", what, err)
	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleError
	p.Message = p.L.ErrInternal
	h.render(w, http.StatusInternalServerError, "error", p)
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleNotFound
	p.Message = p.L.ErrNotFound
	h.render(w, http.StatusNotFound, "error", p)
}

// forbidden answers a POST without a valid CSRF token or from another
// origin.
func (h *handler) forbidden(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleForbidden
	p.Message = p.L.ErrForbidden
	h.render(w, http.StatusForbidden, "error", p)
}

var _ http.Handler = (*handler)(nil)
