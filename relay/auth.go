package relay

// Who a request comes from, and whether they may reach the hub.
//
// A request carries one of two credentials (see README "Logging in and app
// tokens"):
//   - the session cookie of a login on the portal, on the WebUI ports only.
//     Each hub host has its own copy (the hand-off below), so no hub's pages
//     can read or plant another's;
//   - an app token as the password of HTTP Basic, on every port. When the
//     hub's own authentication is on, the password is "token:hub-password"
//     and the hub gets Basic(user, hub-password); otherwise the relay drops
//     the header. The hub never sees a token or the relay's cookie.
//
// The decision (the store's Reach of the user, or the token's) is made on
// the first request of a connection and kept on the connection with the
// store's Revision it was made at; later requests on it cost a comparison.
// watchRevision polls the Revision and checks again every connection whose
// decision is older, cutting those that lost their hub: a revoke, wherever
// it was made, ends open downloads and WebSockets within a second. A grant,
// session or token that ends by itself is cut at its time the same way.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/portal"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/store"
)

const (
	// revisionPoll is how often the relay asks the store whether access
	// changed, and checks decisions that end by themselves.
	revisionPoll = 250 * time.Millisecond
	// handoffTTL bounds how long a hand-off code from the portal to a hub
	// host is good for; maxHandoffs how many may be pending.
	handoffTTL  = time.Minute
	maxHandoffs = 10000
	// basicRealm is the challenge of a request without a valid token.
	basicRealm = `Basic realm="hubtunnel", charset="UTF-8"`
	// relayPath is the path on hub hosts that belongs to the relay and is
	// never forwarded.
	relayPath = "/.hubtunnel/"
)

// cookieName is the session cookie's name on a connection over TLS or not
// (portal.CookieName: host-only everywhere; __Host- over TLS, which makes
// browsers refuse the cookie unless it is Secure, host-only and for Path=/).
func cookieName(secure bool) string { return portal.CookieName(secure) }

// classOf is the part of the port map a public port belongs to, which a
// grant or token must include. Ports the store has no part for (the
// optional 8001, 8002) need all three.
func classOf(e portmap.Entry) store.Ports {
	switch e.Port {
	case 80, 443, 90:
		return store.PortWebUI
	case 8181, 44381:
		return store.PortScript
	case 2000, 2001, 2002, 2010, 4430, 4431, 4432, 4433, 4434:
		return store.PortXMLRPC
	}
	return store.PortsAll
}

type credKind uint8

const (
	credNone credKind = iota
	credSession
	credToken
)

// credential is what a request presents.
type credential struct {
	kind   credKind
	secret string // the session's cookie value or the token
	// hubAuth: a token request whose password also carried the hub's own
	// password, passed on as Basic(hubUser, hubPass).
	hubAuth          bool
	hubUser, hubPass string
}

// credentialOf reads r's credential: a token in its Authorization header
// on any port, else, where cookies count, the session cookie. A Basic
// header that is not a token is the hub's own business and stays.
func credentialOf(r *http.Request, cookies bool) credential {
	if user, pass, ok := r.BasicAuth(); ok && strings.HasPrefix(pass, store.TokenPrefix) {
		c := credential{kind: credToken, secret: pass}
		if len(pass) > store.TokenLen && pass[store.TokenLen] == ':' {
			c.secret, c.hubAuth, c.hubUser, c.hubPass = pass[:store.TokenLen], true, user, pass[store.TokenLen+1:]
		}
		return c
	}
	if cookies {
		if ck, err := r.Cookie(cookieName(r.TLS != nil)); err == nil && ck.Value != "" {
			return credential{kind: credSession, secret: ck.Value}
		}
	}
	return credential{}
}

// principal is who a credential belongs to.
type principal struct {
	kind   credKind
	id     int64  // the session's or token's
	userID int64  // 0 for an operator's token
	user   string // "" for an operator's token
}

// access is a decision: who may reach which hub's part of the map, until
// when, as of which store revision.
type access struct {
	secret string // the credential it was made for
	who    principal
	hub    string
	class  store.Ports
	until  time.Time // zero: no end of its own
	rev    int64
}

// errBadCredential: the credential is unknown, expired or revoked (answered
// as a request without one); errNoAccess: it is good but does not reach
// that hub's part of the map (answered as an unknown hub).
var (
	errBadCredential = errors.New("relay: no valid credential")
	errNoAccess      = errors.New("relay: no access")
)

// decide asks the store whether cred reaches hub (for a token, "" means
// the token's own hub) on class.
func (s *Server) decide(ctx context.Context, cred credential, hub string, class store.Ports) (access, error) {
	a := access{secret: cred.secret, class: class, rev: s.revision.Load()}
	var reach store.Ports
	switch cred.kind {
	case credSession:
		sess, err := s.db.Session(ctx, cred.secret)
		if errors.Is(err, store.ErrNotFound) {
			return access{}, errBadCredential
		} else if err != nil {
			return access{}, err
		}
		until := time.Time{}
		if reach, until, err = s.db.Reach(ctx, sess.UserID, hub); err != nil {
			return access{}, err
		}
		a.who = principal{kind: credSession, id: sess.ID, userID: sess.UserID, user: sess.User}
		a.hub, a.until = hub, earliest(sess.Expires, until)
	case credToken:
		t, err := s.db.VerifyToken(ctx, cred.secret)
		if errors.Is(err, store.ErrNotFound) {
			return access{}, errBadCredential
		} else if err != nil {
			return access{}, err
		}
		if hub != "" && hub != t.Hub {
			return access{}, errNoAccess
		}
		a.who = principal{kind: credToken, id: t.ID, userID: t.UserID, user: t.User}
		a.hub, a.until, reach = t.Hub, t.ReachUntil, t.Reach
	default:
		return access{}, errBadCredential
	}
	if !reach.Has(class) {
		return access{}, errNoAccess
	}
	return a, nil
}

// earliest is the earlier of two ends, zero meaning none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// authorize decides r on connection pc for hub (a hub host's name, or ""
// on the portal host and bare addresses, where only a token's own hub can
// be reached) and records the decision on pc. Only the first request of a
// connection, a new credential, another hub, or a store change since asks
// the store.
func (s *Server) authorize(r *http.Request, pc *publicConn, cred credential, hub string, class store.Ports) (access, error) {
	now := s.now()
	rev := s.revision.Load()
	pc.mu.Lock()
	a := pc.access
	pc.mu.Unlock()
	if a != nil && a.secret == cred.secret && a.class == class && (hub == "" || a.hub == hub) &&
		a.rev == rev && (a.until.IsZero() || now.Before(a.until)) {
		return *a, nil
	}
	d, ok := s.decisions.get(cred.secret, hub, class, rev, now)
	if !ok {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var err error
		if d, err = s.decide(ctx, cred, hub, class); err != nil {
			return access{}, err
		}
		s.decisions.put(hub, d)
	}
	s.live.set(pc, &d)
	return d, nil
}

// maxDecisions bounds the decisions the relay keeps for new connections;
// beyond it those of older revisions go, and then half of the rest.
const maxDecisions = 10000

// decisionCache keeps the store's recent decisions for the connections a
// credential opens next: a browser opens six, and an app without
// keep-alive one per request. A decision counts only at the Revision it
// was made at and before its end.
type decisionCache struct {
	mu sync.Mutex
	m  map[decisionKey]access
}

type decisionKey struct {
	secret string
	hub    string // as asked: "" for a token's own hub
	class  store.Ports
}

func (c *decisionCache) get(secret, hub string, class store.Ports, rev int64, now time.Time) (access, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[decisionKey{secret, hub, class}]
	if !ok || a.rev != rev || (!a.until.IsZero() && !now.Before(a.until)) {
		return access{}, false
	}
	return a, true
}

func (c *decisionCache) put(hub string, a access) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[decisionKey]access{}
	}
	if len(c.m) >= maxDecisions {
		c.pruneLocked(a.rev)
	}
	c.m[decisionKey{a.secret, hub, a.class}] = a
}

// prune forgets decisions made before rev.
func (c *decisionCache) prune(rev int64) {
	c.mu.Lock()
	c.pruneLocked(rev)
	c.mu.Unlock()
}

func (c *decisionCache) pruneLocked(rev int64) {
	n := 0
	for k, a := range c.m {
		if a.rev != rev || n%2 == 0 && len(c.m) >= maxDecisions {
			delete(c.m, k)
		}
		n++
	}
}

// live are the public connections with a decision, which watchRevision
// checks again when the store changes or a decision ends.
type liveConns struct {
	mu    sync.Mutex
	conns map[*publicConn]struct{}
}

// set makes a the decision of pc, closing the session record of the
// previous one when it was for someone or somewhere else.
func (l *liveConns) set(pc *publicConn, a *access) {
	pc.mu.Lock()
	prev, closed := pc.access, pc.closed
	pc.access = a
	pc.mu.Unlock()
	if closed { // cut meanwhile: nothing left to watch
		return
	}
	if prev == nil || prev.who != a.who || prev.hub != a.hub {
		pc.endRecord("ok")
	}
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[*publicConn]struct{}{}
	}
	l.conns[pc] = struct{}{}
	l.mu.Unlock()
}

func (l *liveConns) drop(pc *publicConn) {
	l.mu.Lock()
	delete(l.conns, pc)
	l.mu.Unlock()
}

func (l *liveConns) snapshot() []*publicConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*publicConn, 0, len(l.conns))
	for pc := range l.conns {
		out = append(out, pc)
	}
	return out
}

// watchRevision polls the store's Revision until the relay closes, and
// checks again the decisions made before a change, and those that end by
// themselves, cutting the connections that lost their hub.
func (s *Server) watchRevision() { s.every(revisionPoll, s.refresh) }

// refresh is one poll of watchRevision: after a change, the hubs served
// (syncHubs) and then every open connection's access. The portal calls it
// too after a logout or revoke of its own, so that the change holds on
// this relay before the portal answers.
func (s *Server) refresh() {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := s.db.Revision(ctx)
	if err != nil {
		s.storeErrLog.Warn("store: no answer; open connections are checked again once it answers", logger.Err, err)
		return
	}
	if s.revision.Swap(rev) != rev {
		s.decisions.prune(rev)
		if err := s.syncHubs(); err != nil {
			s.storeErrLog.Warn("store: reading the hubs failed; the relay keeps serving the hubs it had", logger.Err, err)
		}
	}
	s.recheck(ctx, rev)
}

// recheck decides again, once per credential, hub and part of the map,
// every live decision older than rev or past its end, and cuts the
// connections whose decision does not stand.
func (s *Server) recheck(ctx context.Context, rev int64) {
	now := s.now()
	type key struct {
		secret string
		hub    string
		class  store.Ports
	}
	type verdict struct {
		a   access
		err error
	}
	verdicts := map[key]verdict{}
	for _, pc := range s.live.snapshot() {
		pc.mu.Lock()
		a := pc.access
		pc.mu.Unlock()
		if a == nil || (a.rev == rev && (a.until.IsZero() || now.Before(a.until))) {
			continue
		}
		k := key{a.secret, a.hub, a.class}
		v, seen := verdicts[k]
		if !seen {
			cred := credential{kind: a.who.kind, secret: a.secret}
			v.a, v.err = s.decide(ctx, cred, a.hub, a.class)
			verdicts[k] = v
		}
		switch {
		case v.err == nil && v.a.who == a.who:
			d := v.a
			pc.mu.Lock()
			if pc.access == a {
				pc.access = &d
			}
			pc.mu.Unlock()
		case v.err == nil || errors.Is(v.err, errBadCredential) || errors.Is(v.err, errNoAccess):
			s.log.Info("access ended: closing the connection", logger.User, a.who.String(), logger.Hub, a.hub, logger.Remote, pc.RemoteAddr().String())
			pc.cut()
		default: // the store did not answer: keep the decision, ask again next time
		}
	}
}

// String names a principal in logs: a user's name or a token's number,
// never a secret.
func (p principal) String() string {
	switch {
	case p.kind == credToken && p.user != "":
		return "token #" + itoa(p.id) + " of user " + p.user
	case p.kind == credToken:
		return "token #" + itoa(p.id)
	default:
		return "user " + p.user
	}
}

// handoffs are the one-time codes the portal gives a logged-in browser to
// carry its session to a hub host, which sets its own cookie from it.
type handoffs struct {
	mu sync.Mutex
	m  map[string]handoff
}

type handoff struct {
	secret  string // the session's
	host    string // the hub host it is for
	expires time.Time
}

// issue makes a code for session secret on host; "" when too many are
// pending.
func (h *handoffs) issue(secret, host string, now time.Time) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]handoff{}
	}
	if len(h.m) >= maxHandoffs {
		for c, v := range h.m {
			if !now.Before(v.expires) {
				delete(h.m, c)
			}
		}
		if len(h.m) >= maxHandoffs {
			return ""
		}
	}
	b := make([]byte, 24)
	rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	h.m[code] = handoff{secret: secret, host: host, expires: now.Add(handoffTTL)}
	return code
}

// take consumes code for host: the session secret, or false for an
// unknown, used, expired or foreign code.
func (h *handoffs) take(code, host string, now time.Time) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[code]
	if !ok {
		return "", false
	}
	delete(h.m, code)
	if v.host != host || !now.Before(v.expires) {
		return "", false
	}
	return v.secret, true
}
