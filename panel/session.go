package panel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The CCU's WebUI opens an addon's page with ?sid=@XXXXXXXXXX@. The CCU's
// own addon pages (and RedMatic's, CUxD's) check it by running
// Write(system.GetSessionVarStr('XXXXXXXXXX')); on the script engine,
// which writes the session's user record, or nothing for no live session.
// The panel does the same over HTTP (POST /tclrega.exe: the output, then
// an <xml> trailer). The id goes into a script that runs as root, so only
// ten letters and digits ever get there.

// sessionID is the session's ten letters and digits in sid as the WebUI
// passes it on, with or without its @s.
func sessionID(sid string) (string, bool) {
	id := strings.TrimSuffix(strings.TrimPrefix(sid, "@"), "@")
	if len(id) != 10 {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", false
		}
	}
	return id, true
}

// sessionTTL is how long a live session stays known without asking again.
// A refusal is never kept: a login a moment later must work at once.
const sessionTTL = 60 * time.Second

// maxCachedSessions bounds the cache; when full it is emptied.
const maxCachedSessions = 64

// The session check's refusals.
var (
	errNoSession      = errors.New("no session")
	errBadSession     = errors.New("malformed session id")
	errInvalidSession = errors.New("session not valid")
	errRega           = errors.New("the script engine does not answer")
)

type sessionChecker struct {
	rega string
	hc   *http.Client
	now  func() time.Time

	mu    sync.Mutex
	valid map[string]time.Time // bare id → when it was found live
}

func newSessionChecker(rega string, hc *http.Client, now func() time.Time) *sessionChecker {
	return &sessionChecker{rega: strings.TrimSuffix(rega, "/"), hc: hc, now: now, valid: map[string]time.Time{}}
}

// check reports whether sid is a live WebUI session: nil, or one of the
// errors above (errRega wraps why).
func (c *sessionChecker) check(ctx context.Context, sid string) error {
	if sid == "" {
		return errNoSession
	}
	id, ok := sessionID(sid)
	if !ok {
		return errBadSession
	}
	now := c.now()
	c.mu.Lock()
	at, ok := c.valid[id]
	c.mu.Unlock()
	if ok && now.Sub(at) < sessionTTL && !now.Before(at) {
		return nil
	}
	out, err := c.run(ctx, "Write(system.GetSessionVarStr('"+id+"'));")
	if err != nil {
		return fmt.Errorf("%w: %v", errRega, err)
	}
	if strings.TrimSpace(out) == "" {
		c.mu.Lock()
		delete(c.valid, id)
		c.mu.Unlock()
		return errInvalidSession
	}
	c.mu.Lock()
	if len(c.valid) >= maxCachedSessions {
		clear(c.valid)
	}
	c.valid[id] = now
	c.mu.Unlock()
	return nil
}

// maxRegaAnswer bounds what is read of the script engine's answer.
const maxRegaAnswer = 64 << 10

// run runs script on the script engine and returns its output, without
// the <xml> trailer.
func (c *sessionChecker) run(ctx context.Context, script string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", c.rega+"/tclrega.exe", strings.NewReader(script))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("it answered %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRegaAnswer))
	if err != nil {
		return "", err
	}
	out, _, found := strings.Cut(string(b), "<xml>")
	if !found {
		return "", errors.New("its answer has no <xml> trailer")
	}
	return out, nil
}

// refusal is how a failed session check reads for the owner.
func (s *server) refusal(t *text, err error) (int, string) {
	switch {
	case errors.Is(err, errRega):
		s.logf("cannot check a WebUI session: %v", err)
		return http.StatusServiceUnavailable, t.ErrRega
	case errors.Is(err, errNoSession):
		return http.StatusForbidden, t.ErrNoSession
	default:
		return http.StatusForbidden, t.ErrInvalidSession
	}
}

// pageSession serves h only for a live session in ?sid=; else a page that
// says why.
func (s *server) pageSession(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.sessions.check(r.Context(), r.URL.Query().Get("sid")); err != nil {
			code, msg := s.refusal(s.text(r), err)
			s.refusedPage(w, r, code, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// api guards an API read: a live session in the X-CCU-Session header.
func (s *server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.sessions.check(r.Context(), r.Header.Get("X-CCU-Session")); err != nil {
			code, msg := s.refusal(s.text(r), err)
			writeJSON(w, code, errorAnswer{Error: msg, Session: true})
			return
		}
		h(w, r)
	}
}

// maxBody bounds an action's JSON body.
const maxBody = 64 << 10

// action guards a state-changing request: a request of the page itself
// (sameOrigin), a JSON body of at most maxBody, and a live session. The
// cheap checks come first, so a foreign page never makes the panel ask the
// script engine anything.
func (s *server) action(h http.HandlerFunc) http.HandlerFunc {
	guarded := s.api(h)
	return func(w http.ResponseWriter, r *http.Request) {
		t := s.text(r)
		if !sameOrigin(r) {
			writeJSON(w, http.StatusForbidden, errorAnswer{Error: t.ErrOrigin})
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			writeJSON(w, http.StatusUnsupportedMediaType, errorAnswer{Error: "want Content-Type: application/json"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		guarded(w, r)
	}
}

// sameOrigin reports whether a request comes from a page of the panel's
// own origin. Browsers send Sec-Fetch-Site with every fetch, which pages
// cannot set; without it the Origin must be the request's own scheme and
// Host (as lighttpd passes the Host on unchanged).
func sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" {
		return sfs == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && u.Host == r.Host && u.Path == "" && u.User == nil
}
