package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hubtunnel/hubtunnel/store"
)

// homeView is the home page: what the user owns, what was shared with
// them, and what they may do about it.
type homeView struct {
	Hubs      []hubRow     // owned
	Granted   []grantedRow // shared with the user
	Grants    []grantRow   // on the user's hubs
	Tokens    []store.Token
	TokenHubs []string // hubs the user may make tokens for
	Sessions  []sessionRow
	Audit     []store.Event
	HasTOTP   bool
	NewToken  *newToken
	Add       *addView     // nil: no "Add a hub" (Config.EnrollCode unset)
	Waiting   []waitingRow // hubs not online yet: codes waiting, or enrolled and not connected
	NewCode   *newCode
	Domain    string
}

type hubRow struct {
	store.Hub
	URL    string
	Online bool
}

type grantedRow struct {
	store.Grant
	Owner  string
	URL    string
	Active bool
}

type grantRow struct {
	store.Grant
	Active bool
}

type sessionRow struct {
	store.Session
	This bool
}

// notices are the messages a redirect after a change may ask for (?ok=).
var notices = map[string]func(*text) string{
	"grant":           func(l *text) string { return l.OkGrant },
	"grant-revoked":   func(l *text) string { return l.OkGrantRevoked },
	"token-revoked":   func(l *text) string { return l.OkTokenRevoked },
	"session-revoked": func(l *text) string { return l.OkSessionRevoked },
	"totp-on":         func(l *text) string { return l.OkTOTPOn },
	"totp-off":        func(l *text) string { return l.OkTOTPOff },
	"code-withdrawn":  func(l *text) string { return l.OkCodeWithdrawn },
}

// home is GET /.
func (h *handler) home(w http.ResponseWriter, r *http.Request) {
	cur, err := h.current(r)
	if err != nil {
		h.fail(w, r, "home", err)
		return
	}
	if cur == nil {
		redirect(w, "/login")
		return
	}
	p := h.newPage(r, cur, "")
	if n := notices[r.URL.Query().Get("ok")]; n != nil {
		p.Notice = n(p.L)
	}
	h.renderHome(w, r, cur, p, http.StatusOK, nil)
}

// renderHome draws the home page for cur, with p's messages and what
// extra (nil: nothing) adds: a secret to show once, a form's problem. A
// plain GET of it reloads itself while a hub of the user's waits.
func (h *handler) renderHome(w http.ResponseWriter, r *http.Request, cur *session, p *page, status int, extra func(*homeView)) {
	v, err := h.homeView(r.Context(), cur)
	if err != nil {
		h.fail(w, r, "home", err)
		return
	}
	if extra != nil {
		extra(v)
	}
	p.Title, p.Home = p.L.TitleHome, v
	if r.Method == http.MethodGet && len(v.Waiting) > 0 {
		p.Reload = reloadEvery
	}
	h.render(w, status, "home", p)
}

func (h *handler) homeView(ctx context.Context, cur *session) (*homeView, error) {
	now := h.now()
	v := &homeView{HasTOTP: cur.user.HasTOTP, Domain: h.c.Domain}
	if h.c.EnrollCode != nil {
		v.Add = &addView{Example: h.c.HubURL("garage")}
	}
	owned, err := h.st.HubsOwnedBy(ctx, cur.user.ID)
	if err != nil {
		return nil, err
	}
	var names []string
	isOwned := map[string]bool{}
	for _, hub := range owned {
		isOwned[hub.Name] = true
		v.Hubs = append(v.Hubs, hubRow{Hub: hub, URL: h.c.HubURL(hub.Name), Online: h.c.Online(hub.Name)})
		names = append(names, hub.Name)
		if !hub.Disabled {
			v.TokenHubs = append(v.TokenHubs, hub.Name)
		}
		gs, err := h.st.GrantsOnHub(ctx, hub.Name)
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			v.Grants = append(v.Grants, grantRow{Grant: g, Active: g.Active(now)})
		}
		ts, err := h.st.TokensOnHub(ctx, hub.Name)
		if err != nil {
			return nil, err
		}
		v.Tokens = append(v.Tokens, ts...)
	}
	codes, err := h.st.EnrollCodes(ctx, cur.user.ID)
	if err != nil {
		return nil, err
	}
	v.Waiting = h.waiting(codes, isOwned, now)
	granted, err := h.st.GrantsOfUser(ctx, cur.user.Name)
	if err != nil {
		return nil, err
	}
	for _, g := range granted {
		hub, err := h.st.HubByName(ctx, g.Hub)
		if err != nil {
			return nil, err
		}
		if hub.OwnerID == cur.user.ID {
			continue // a grant on a hub that became the user's own
		}
		row := grantedRow{Grant: g, Owner: hub.Owner, URL: h.c.HubURL(g.Hub), Active: g.Active(now) && !hub.Disabled}
		v.Granted = append(v.Granted, row)
		if row.Active {
			v.TokenHubs = append(v.TokenHubs, g.Hub)
		}
	}
	// The tokens the user made on hubs that are not theirs.
	mine, err := h.st.TokensOfUser(ctx, cur.user.Name)
	if err != nil {
		return nil, err
	}
	for _, t := range mine {
		if !slices.Contains(names, t.Hub) {
			v.Tokens = append(v.Tokens, t)
		}
	}
	ss, err := h.st.Sessions(ctx, cur.user.ID)
	if err != nil {
		return nil, err
	}
	for _, s := range ss {
		v.Sessions = append(v.Sessions, sessionRow{Session: s, This: s.ID == cur.ID})
	}
	// Only with hubs: an empty filter would select every hub's records.
	if len(names) > 0 {
		if v.Audit, err = h.st.Audit(ctx, store.AuditFilter{Hubs: names, Limit: auditRows}); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// homeError draws the home page again with msg, for a change that was not
// made.
func (h *handler) homeError(w http.ResponseWriter, r *http.Request, cur *session, status int, msg func(*text) string) {
	p := h.newPage(r, cur, "")
	p.Error = msg(p.L)
	h.renderHome(w, r, cur, p, status, nil)
}

// owns reports whether the user owns hub; an unknown hub is not theirs.
func (h *handler) owns(ctx context.Context, cur *session, hub string) (bool, error) {
	hb, err := h.st.HubByName(ctx, hub)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return hb.OwnerID == cur.user.ID, nil
}

// ownerOnly reports whether cur owns hub, and answers the request when not
// (or when the store fails, naming what for the log).
func (h *handler) ownerOnly(w http.ResponseWriter, r *http.Request, cur *session, hub, what string) bool {
	own, err := h.owns(r.Context(), cur, hub)
	if err != nil {
		h.fail(w, r, what, err)
		return false
	}
	if !own {
		h.homeError(w, r, cur, http.StatusForbidden, func(l *text) string { return l.ErrNotYourHub })
	}
	return own
}

// formReach reads what a grant or token form asks for: the ports (at
// least one) and the time in field (optional). A bad form is answered on
// the home page, and ok is false.
func (h *handler) formReach(w http.ResponseWriter, r *http.Request, cur *session, field string) (ports store.Ports, end time.Time, ok bool) {
	if ports = formPorts(r); ports == 0 {
		h.homeError(w, r, cur, http.StatusBadRequest, func(l *text) string { return l.ErrNoPorts })
		return 0, time.Time{}, false
	}
	end, msg := h.formTime(r, field)
	if msg != nil {
		h.homeError(w, r, cur, http.StatusBadRequest, msg)
		return 0, time.Time{}, false
	}
	return ports, end, true
}

// grant is POST /grant: hub, user, ports, until (and tz).
func (h *handler) grant(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	ctx := r.Context()
	hub := r.PostFormValue("hub")
	user := strings.ToLower(strings.TrimSpace(r.PostFormValue("user")))
	if !h.ownerOnly(w, r, cur, hub, "grant") {
		return
	}
	ports, until, ok := h.formReach(w, r, cur, "until")
	if !ok {
		return
	}
	if user == cur.user.Name {
		h.homeError(w, r, cur, http.StatusBadRequest, func(l *text) string { return l.ErrGrantSelf })
		return
	}
	err := h.st.Grant(ctx, user, hub, ports, until)
	if errors.Is(err, store.ErrNotFound) {
		h.homeError(w, r, cur, http.StatusBadRequest, func(l *text) string { return l.ErrNoSuchUser })
		return
	}
	if err != nil {
		h.fail(w, r, "grant", err)
		return
	}
	detail := fmt.Sprintf("to %s: %s", user, ports)
	if !until.IsZero() {
		detail += ", until " + until.UTC().Format(time.RFC3339)
	}
	h.audit(store.Event{Kind: store.KindGrant, User: cur.user.Name, Hub: hub, Source: source(r), Outcome: "ok", Detail: detail})
	redirect(w, "/?ok=grant")
}

// revokeGrant is POST /grant/revoke: hub, user.
func (h *handler) revokeGrant(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	ctx := r.Context()
	hub, user := r.PostFormValue("hub"), r.PostFormValue("user")
	if !h.ownerOnly(w, r, cur, hub, "revoke") {
		return
	}
	err := h.st.Revoke(ctx, user, hub)
	if errors.Is(err, store.ErrNotFound) {
		h.homeError(w, r, cur, http.StatusNotFound, func(l *text) string { return l.ErrNoSuchGrant })
		return
	}
	if err != nil {
		h.fail(w, r, "revoke", err)
		return
	}
	h.audit(store.Event{Kind: store.KindRevoke, User: cur.user.Name, Hub: hub, Source: source(r), Outcome: "ok", Detail: "grant to " + user})
	redirect(w, "/?ok=grant-revoked")
}

// makeToken is POST /token: hub, label, ports, expires (and tz). The
// answer shows the secret, once; it is never in a URL.
func (h *handler) makeToken(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	hub := r.PostFormValue("hub")
	label := strings.TrimSpace(r.PostFormValue("label"))
	if !labelOK(label) {
		h.homeError(w, r, cur, http.StatusBadRequest, func(l *text) string { return l.ErrBadLabel })
		return
	}
	ports, expires, ok := h.formReach(w, r, cur, "expires")
	if !ok {
		return
	}
	secret, t, err := h.st.CreateToken(r.Context(), store.TokenSpec{Hub: hub, User: cur.user.Name, Label: label, Ports: ports, Expires: expires})
	if errors.Is(err, store.ErrNotAllowed) || errors.Is(err, store.ErrNotFound) {
		h.homeError(w, r, cur, http.StatusForbidden, func(l *text) string { return l.ErrTokenNotAllowed })
		return
	}
	if err != nil {
		h.fail(w, r, "token", err)
		return
	}
	detail := fmt.Sprintf("label %q: %s", label, ports)
	if !expires.IsZero() {
		detail += ", until " + expires.UTC().Format(time.RFC3339)
	}
	h.audit(store.Event{Kind: store.KindToken, User: cur.user.Name, TokenID: t.ID, Hub: hub, Source: source(r), Outcome: "ok", Detail: detail})
	p := h.newPage(r, cur, "")
	nt := h.newTokenView(p.L, secret, t)
	h.renderHome(w, r, cur, p, http.StatusOK, func(v *homeView) { v.NewToken = nt })
}

// revokeToken is POST /token/revoke: id. A token may be revoked by the
// user who made it and by its hub's owner.
func (h *handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	ctx := r.Context()
	noSuch := func() {
		h.homeError(w, r, cur, http.StatusNotFound, func(l *text) string { return l.ErrNoSuchToken })
	}
	id, err := strconv.ParseInt(r.PostFormValue("id"), 10, 64)
	if err != nil {
		noSuch()
		return
	}
	t, err := h.st.TokenByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		noSuch()
		return
	}
	if err != nil {
		h.fail(w, r, "revoke token", err)
		return
	}
	allowed := t.UserID == cur.user.ID
	if !allowed {
		if allowed, err = h.owns(ctx, cur, t.Hub); err != nil {
			h.fail(w, r, "revoke token", err)
			return
		}
	}
	if !allowed {
		noSuch()
		return
	}
	err = h.st.RevokeToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		noSuch()
		return
	}
	if err != nil {
		h.fail(w, r, "revoke token", err)
		return
	}
	h.audit(store.Event{Kind: store.KindRevoke, User: cur.user.Name, TokenID: id, Hub: t.Hub, Source: source(r), Outcome: "ok",
		Detail: fmt.Sprintf("token #%d %q", id, t.Label)})
	redirect(w, "/?ok=token-revoked")
}

// revokeSession is POST /session/revoke: id, one of the user's sessions.
func (h *handler) revokeSession(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	id, err := strconv.ParseInt(r.PostFormValue("id"), 10, 64)
	if err != nil {
		id = 0 // no session has it
	}
	ss, err := h.st.Sessions(r.Context(), cur.user.ID)
	if err != nil {
		h.fail(w, r, "revoke session", err)
		return
	}
	if !slices.ContainsFunc(ss, func(s store.Session) bool { return s.ID == id }) {
		h.homeError(w, r, cur, http.StatusNotFound, func(l *text) string { return l.ErrNoSuchSession })
		return
	}
	if err := h.endSession(r, id); err != nil {
		h.fail(w, r, "revoke session", err)
		return
	}
	if id == cur.ID {
		h.audit(store.Event{Kind: store.KindLogout, User: cur.user.Name, Source: source(r), Outcome: "ok"})
		h.clearCookie(w)
		h.loggedOut(w, r)
		return
	}
	h.audit(store.Event{Kind: store.KindRevoke, User: cur.user.Name, Source: source(r), Outcome: "ok", Detail: fmt.Sprintf("session #%d", id)})
	redirect(w, "/?ok=session-revoked")
}

// formPorts reads the ports checkboxes; unknown values count for nothing.
func formPorts(r *http.Request) store.Ports {
	var p store.Ports
	for _, v := range r.PostForm["ports"] {
		if q, err := store.ParsePorts(v); err == nil && v != "all" {
			p |= q
		}
	}
	return p
}

// formTime reads a datetime-local field ("2006-01-02T15:04", seconds
// optional) in the browser's time zone, which the page's script puts in tz
// (minutes east of UTC; without it, UTC). Empty is the zero time; a time
// that passed is refused.
func (h *handler) formTime(r *http.Request, field string) (time.Time, func(*text) string) {
	v := strings.TrimSpace(r.PostFormValue(field))
	if v == "" {
		return time.Time{}, nil
	}
	loc := time.UTC
	if tz := r.PostFormValue("tz"); tz != "" {
		mins, err := strconv.Atoi(tz)
		if err != nil || mins < -14*60 || mins > 14*60 {
			return time.Time{}, func(l *text) string { return l.ErrBadTime }
		}
		loc = time.FixedZone("", mins*60)
	}
	var t time.Time
	var err error
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err = time.ParseInLocation(layout, v, loc); err == nil {
			break
		}
	}
	if err != nil {
		return time.Time{}, func(l *text) string { return l.ErrBadTime }
	}
	if !t.After(h.now()) {
		return time.Time{}, func(l *text) string { return l.ErrPastTime }
	}
	return t, nil
}

// labelOK: a token's label is short, printable text.
func labelOK(s string) bool {
	if len(s) > maxLabel || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}
