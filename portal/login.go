package portal

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

// Audit details of failed logins: why, never what was typed.
const (
	whyUnknownUser   = "unknown user"
	whyWrongPassword = "wrong password"
	whyDisabled      = "account disabled"
	whyLocked        = "account locked after too many failed logins"
	whyAddress       = "too many failed logins from this address"
	whyWrongCode     = "wrong TOTP code"
	whyCodeTries     = "wrong TOTP code, last try"
)

// loginForm is GET /login: the form, or for a user already logged in, on
// to next at once.
func (h *handler) loginForm(w http.ResponseWriter, r *http.Request) {
	cur, err := h.current(r)
	if err != nil {
		h.fail(w, r, "login", err)
		return
	}
	next := r.URL.Query().Get("next")
	t, hasNext := parseNext(next, h.c.Domain)
	if cur != nil {
		h.finish(w, cur.secret, t, hasNext)
		return
	}
	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleLogin
	if hasNext {
		p.Next = next
	}
	h.render(w, http.StatusOK, "login", p)
}

// login is POST /login: the password step, or with pending, the code step.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	if !SameOrigin(r, h.c.Secure) {
		h.forbidden(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.badForm(w, r)
		return
	}
	if r.PostForm.Has("pending") {
		h.loginCode(w, r)
		return
	}
	ctx := r.Context()
	now := h.now()
	name := strings.ToLower(strings.TrimSpace(r.PostFormValue("user")))
	next := r.PostFormValue("next")
	t, hasNext := parseNext(next, h.c.Domain)
	addr := sourceKey(r)

	p := h.newPage(r, nil, "")
	p.Title, p.Name = p.L.TitleLogin, name
	if hasNext {
		p.Next = next
	}
	failed := func(status int, msg, why string) {
		h.audit(store.Event{Kind: store.KindLogin, User: h.knownName(r, name), Source: source(r), Outcome: "failed", Detail: why})
		p.Error = msg
		h.render(w, status, "login", p)
	}

	if h.limits.addrRefused(addr, now) {
		failed(http.StatusTooManyRequests, p.L.ErrTooManyFromAddress, whyAddress)
		return
	}
	if h.limits.accountLocked(name, now) {
		failed(http.StatusTooManyRequests, p.L.ErrAccountLocked, whyLocked)
		return
	}
	u, err := h.st.CheckPassword(ctx, name, r.PostFormValue("password"))
	switch {
	case errors.Is(err, store.ErrBadLogin):
		why := whyWrongPassword
		if h.knownName(r, name) == "" {
			why = whyUnknownUser
		}
		h.failure(r, name, addr, now)
		failed(http.StatusUnauthorized, p.L.ErrBadLogin, why)
		return
	case errors.Is(err, store.ErrDisabled):
		failed(http.StatusForbidden, p.L.ErrDisabled, whyDisabled)
		return
	case err != nil:
		h.fail(w, r, "login", err)
		return
	}
	if u.HasTOTP {
		p.Pending = h.logins.add(&pendingLogin{userID: u.ID, name: u.Name, next: t, hasNext: hasNext, expires: now.Add(pendingLoginTTL)}, now)
		p.Title, p.Name, p.Next = p.L.TitleCode, "", ""
		h.render(w, http.StatusOK, "code", p)
		return
	}
	h.startSession(w, r, u, "password", t, hasNext)
}

// loginCode is the second step: pending and code.
func (h *handler) loginCode(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := h.now()
	addr := sourceKey(r)
	id := r.PostFormValue("pending")
	code := normCode(r.PostFormValue("code"))

	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleLogin
	if h.limits.addrRefused(addr, now) {
		h.audit(store.Event{Kind: store.KindLogin, Source: source(r), Outcome: "failed", Detail: whyAddress})
		p.Error = p.L.ErrTooManyFromAddress
		h.render(w, http.StatusTooManyRequests, "login", p)
		return
	}
	pl := h.logins.try(id, now)
	if pl == nil {
		p.Error = p.L.ErrLoginExpired
		h.render(w, http.StatusBadRequest, "login", p)
		return
	}
	p.Name = pl.name
	failed := func(status int, msg, why string) {
		h.audit(store.Event{Kind: store.KindLogin, User: pl.name, Source: source(r), Outcome: "failed", Detail: why})
		p.Error = msg
		h.render(w, status, "login", p)
	}
	if h.limits.accountLocked(pl.name, now) {
		h.logins.done(id)
		failed(http.StatusTooManyRequests, p.L.ErrAccountLocked, whyLocked)
		return
	}
	u, err := h.st.UserByID(ctx, pl.userID)
	if errors.Is(err, store.ErrNotFound) {
		h.logins.done(id)
		failed(http.StatusUnauthorized, p.L.ErrBadLogin, whyUnknownUser)
		return
	}
	if err != nil {
		h.fail(w, r, "login", err)
		return
	}
	if u.Disabled {
		h.logins.done(id)
		failed(http.StatusForbidden, p.L.ErrDisabled, whyDisabled)
		return
	}
	secret, err := h.st.TOTPSecret(ctx, u.ID)
	if err != nil {
		h.fail(w, r, "login", err)
		return
	}
	// No secret: TOTP was turned off since the password step, which
	// already passed.
	if secret != "" && !h.totp.check(u.ID, secret, code, now) {
		h.failure(r, pl.name, addr, now)
		if pl.tries >= pendingLoginTries {
			failed(http.StatusUnauthorized, p.L.ErrLoginExpired, whyCodeTries)
			return
		}
		h.audit(store.Event{Kind: store.KindLogin, User: pl.name, Source: source(r), Outcome: "failed", Detail: whyWrongCode})
		p.Title, p.Name, p.Pending, p.Error = p.L.TitleCode, "", id, p.L.ErrBadCode
		h.render(w, http.StatusUnauthorized, "code", p)
		return
	}
	h.logins.done(id)
	h.startSession(w, r, u, "password and TOTP code", pl.next, pl.hasNext)
}

// failure counts a failed login against the account and the address, and
// logs a lock of an account that exists.
func (h *handler) failure(r *http.Request, name, addr string, now time.Time) {
	if h.limits.fail(name, addr, now) {
		if known := h.knownName(r, name); known != "" {
			h.logf("account %q locked for %v after %d failed logins", known, accountLock, accountFailures)
		}
	}
}

// knownName is name when it is an account, else "": what a login typed
// as its name may be a password typed into the wrong field, and goes into
// no record unless it names an account.
func (h *handler) knownName(r *http.Request, name string) string {
	if store.CheckUserName(name) != nil {
		return ""
	}
	u, err := h.st.UserByName(r.Context(), name)
	if err != nil {
		return ""
	}
	return u.Name
}

// startSession ends a login that passed: a session, its cookie, the audit
// record, and on to where the user was going.
func (h *handler) startSession(w http.ResponseWriter, r *http.Request, u store.User, how string, t target, hasNext bool) {
	secret, ss, err := h.st.CreateSession(r.Context(), u.ID, h.c.SessionTTL, source(r))
	if err != nil {
		h.fail(w, r, "login", err)
		return
	}
	h.limits.succeeded(u.Name)
	h.setCookie(w, secret, ss.Expires)
	h.audit(store.Event{Kind: store.KindLogin, User: u.Name, Source: source(r), Outcome: "ok", Detail: how})
	h.finish(w, secret, t, hasNext)
}

// finish sends a logged-in user on: through the hand-off to a hub host,
// to a path of the portal, or home.
func (h *handler) finish(w http.ResponseWriter, secret string, t target, hasNext bool) {
	switch {
	case hasNext && t.hubHost != "" && h.c.Handoff != nil:
		if code := h.c.Handoff(secret, t.hubHost); code != "" {
			redirect(w, h.c.HandoffURL(t.hubHost, code, t.path))
			return
		}
	case hasNext && t.hubHost == "":
		redirect(w, t.path)
		return
	}
	redirect(w, "/")
}

// logoutForm is GET /logout, where a hub host's /.hubtunnel/logout lands:
// a button, since a GET must change nothing.
func (h *handler) logoutForm(w http.ResponseWriter, r *http.Request) {
	cur, err := h.current(r)
	if err != nil {
		h.fail(w, r, "logout", err)
		return
	}
	if cur == nil {
		h.loggedOut(w, r)
		return
	}
	p := h.newPage(r, cur, "")
	p.Title = p.L.TitleLogout
	h.render(w, http.StatusOK, "logout", p)
}

// logout is POST /logout: the session ends in the store (and so on every
// hub host), the cookie goes.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if !SameOrigin(r, h.c.Secure) {
		h.forbidden(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.badForm(w, r)
		return
	}
	cur, err := h.current(r)
	if err != nil {
		h.fail(w, r, "logout", err)
		return
	}
	if cur == nil { // ended already: nothing to forge
		h.clearCookie(w)
		h.loggedOut(w, r)
		return
	}
	if !csrfOK(r, cur) {
		h.forbidden(w, r)
		return
	}
	if err := h.endSession(r, cur.ID); err != nil {
		h.fail(w, r, "logout", err)
		return
	}
	h.audit(store.Event{Kind: store.KindLogout, User: cur.user.Name, Source: source(r), Outcome: "ok"})
	h.clearCookie(w)
	h.loggedOut(w, r)
}

// endSession revokes one of the user's sessions; one that ended already is
// no error.
func (h *handler) endSession(r *http.Request, id int64) error {
	h.enrols.done(id)
	err := h.st.RevokeSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (h *handler) loggedOut(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleLoggedOut
	h.render(w, http.StatusOK, "loggedout", p)
}
