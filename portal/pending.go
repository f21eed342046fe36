package portal

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Half-done things the portal keeps in memory: logins waiting for their
// TOTP code, and TOTP enrolments waiting for their first code. A relay
// restart forgets them; the user starts again.
const (
	pendingLoginTTL   = 5 * time.Minute
	pendingLoginTries = 5
	pendingEnrolTTL   = 10 * time.Minute
	// maxPending bounds each map: an entry needs a right password (a login)
	// or a session (an enrolment), and past this many the oldest go first.
	maxPending = 10_000
)

// randomID is 32 random bytes, base64url: a pending login's id.
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pendingLogin is a login whose password was right, waiting for its code.
type pendingLogin struct {
	userID  int64
	name    string
	next    target
	hasNext bool
	expires time.Time
	tries   int
}

type pendingLogins struct {
	mu sync.Mutex
	m  map[string]*pendingLogin
}

func newPendingLogins() *pendingLogins { return &pendingLogins{m: map[string]*pendingLogin{}} }

// add keeps p and returns its id.
func (ps *pendingLogins) add(p *pendingLogin, now time.Time) string {
	id := randomID()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, q := range ps.m {
		if !now.Before(q.expires) {
			delete(ps.m, k)
		}
	}
	dropOldest(ps.m, func(q *pendingLogin) time.Time { return q.expires })
	ps.m[id] = p
	return id
}

// try counts a code attempt for id and returns the login; nil when it is
// unknown, expired or out of tries. A login whose last try this is is
// forgotten: the caller that fails it has nothing to come back to.
func (ps *pendingLogins) try(id string, now time.Time) *pendingLogin {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.m[id]
	if p == nil || !now.Before(p.expires) || p.tries >= pendingLoginTries {
		delete(ps.m, id)
		return nil
	}
	p.tries++
	if p.tries >= pendingLoginTries {
		delete(ps.m, id)
	}
	cp := *p
	return &cp
}

// done forgets a login that succeeded.
func (ps *pendingLogins) done(id string) {
	ps.mu.Lock()
	delete(ps.m, id)
	ps.mu.Unlock()
}

// pendingEnrol is a TOTP secret shown to a session, not yet confirmed.
type pendingEnrol struct {
	secret  string
	expires time.Time
}

type pendingEnrols struct {
	mu sync.Mutex
	m  map[int64]pendingEnrol // by store session ID
}

func newPendingEnrols() *pendingEnrols { return &pendingEnrols{m: map[int64]pendingEnrol{}} }

func (pe *pendingEnrols) set(session int64, secret string, now time.Time) {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	for k, e := range pe.m {
		if !now.Before(e.expires) {
			delete(pe.m, k)
		}
	}
	if _, ok := pe.m[session]; !ok {
		dropOldest(pe.m, func(e pendingEnrol) time.Time { return e.expires })
	}
	pe.m[session] = pendingEnrol{secret: secret, expires: now.Add(pendingEnrolTTL)}
}

// get returns the session's secret in enrolment, "" for none.
func (pe *pendingEnrols) get(session int64, now time.Time) string {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	e, ok := pe.m[session]
	if !ok || !now.Before(e.expires) {
		delete(pe.m, session)
		return ""
	}
	return e.secret
}

func (pe *pendingEnrols) done(session int64) {
	pe.mu.Lock()
	delete(pe.m, session)
	pe.mu.Unlock()
}

// dropOldest makes room for one more entry in a map at maxPending.
func dropOldest[K comparable, V any](m map[K]V, expires func(V) time.Time) {
	if len(m) < maxPending {
		return
	}
	var oldest K
	var at time.Time
	first := true
	for k, v := range m {
		if e := expires(v); first || e.Before(at) {
			oldest, at, first = k, e, false
		}
	}
	delete(m, oldest)
}
