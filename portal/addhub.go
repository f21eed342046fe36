package portal

import (
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

// Adding a hub, as its owner sees it:
//
//  1. POST /hub/add (name): the name is checked (store.CheckHubName, the
//     message beside the field), the user may have at most
//     maxWaitingCodes codes waiting, and Config.EnrollCode makes the code.
//  2. The answer shows the code — large, in groups, as a QR code and as
//     the line `hubtunnel enroll CODE` — once: it is in no URL, no log
//     line and no audit record, and the store keeps only what the relay
//     derives it from.
//  3. The home page lists the user's codes waiting for enrollment (with
//     "withdraw": POST /hub/withdraw), and hubs enrolled in the last
//     connectWait that have not connected yet; while it lists any, it
//     reloads itself every reloadEvery seconds, so the hub turns online
//     on the page.

// newCode is an enrollment code just made, as its one answer shows it.
type newCode struct {
	Hub     string
	Code    string
	Command string // the agent's command line
	QR      template.HTML
	Expires time.Time
}

// waitingRow is a hub of the user's that is not online yet: its code
// waits to be used (Enrolled false), or it enrolled and has not connected.
type waitingRow struct {
	Hub      string
	Expires  time.Time // the code's
	Enrolled bool
}

// addView is the "Add a hub" form: offered when Config.EnrollCode is set,
// with the name typed and its problem after a refused POST.
type addView struct {
	Name, Error string
	Example     string // a hub's address, for the hint
}

// waiting lists the user's hubs that are not online yet (see waitingRow),
// of the codes made for them (in the portal or by the operator) and the
// hubs they own (owned, by name).
func (h *handler) waiting(codes []store.EnrollCode, owned map[string]bool, now time.Time) []waitingRow {
	var rows []waitingRow
	for _, c := range codes {
		switch {
		case c.Pending(now):
			rows = append(rows, waitingRow{Hub: c.Hub, Expires: c.Expires})
		case !c.Used.IsZero() && now.Sub(c.Used) < connectWait && owned[c.Hub] && !h.c.Online(c.Hub):
			rows = append(rows, waitingRow{Hub: c.Hub, Expires: c.Expires, Enrolled: true})
		}
	}
	return rows
}

// addHub is POST /hub/add: name.
func (h *handler) addHub(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	if h.c.EnrollCode == nil {
		h.notFound(w, r)
		return
	}
	ctx := r.Context()
	name := strings.ToLower(strings.TrimSpace(r.PostFormValue("name")))
	refuse := func(status int, msg func(*text) string) {
		p := h.newPage(r, cur, "")
		h.renderHome(w, r, cur, p, status, func(v *homeView) {
			v.Add.Name, v.Add.Error = name, msg(p.L)
		})
	}
	if cur.user.Disabled {
		refuse(http.StatusForbidden, func(l *text) string { return l.ErrDisabled })
		return
	}
	if len(name) > 63 || store.CheckHubName(name) != nil {
		refuse(http.StatusBadRequest, func(l *text) string { return l.ErrHubName })
		return
	}

	h.adding.Lock()
	defer h.adding.Unlock()
	codes, err := h.st.EnrollCodes(ctx, cur.user.ID)
	if err != nil {
		h.fail(w, r, "add hub", err)
		return
	}
	now := h.now()
	n := 0
	for _, c := range codes {
		if c.Pending(now) {
			n++
		}
	}
	if n >= maxWaitingCodes {
		refuse(http.StatusTooManyRequests, func(l *text) string { return l.ErrTooManyCodes })
		return
	}
	code, expires, err := h.c.EnrollCode(ctx, name, cur.user.Name)
	if errors.Is(err, store.ErrExists) {
		refuse(http.StatusConflict, func(l *text) string { return l.ErrHubNameTaken })
		return
	}
	if err != nil {
		h.fail(w, r, "add hub", err)
		return
	}
	qr, err := qrSVG("enroll-qr", code)
	if err != nil {
		h.fail(w, r, "add hub", err)
		return
	}
	h.audit(store.Event{Kind: store.KindEnroll, User: cur.user.Name, Hub: name, Source: source(r), Outcome: "ok",
		Detail: "enrollment code made, valid until " + expires.UTC().Format(time.RFC3339)})
	nc := &newCode{Hub: name, Code: code, Command: "hubtunnel enroll " + code, QR: qr, Expires: expires}
	p := h.newPage(r, cur, "")
	h.renderHome(w, r, cur, p, http.StatusOK, func(v *homeView) { v.NewCode = nc })
}

// withdrawCode is POST /hub/withdraw: hub, the name a waiting code of the
// user's is for. The code no longer works; the name is free again.
func (h *handler) withdrawCode(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	ctx := r.Context()
	hub := r.PostFormValue("hub")
	codes, err := h.st.EnrollCodes(ctx, cur.user.ID)
	if err != nil {
		h.fail(w, r, "withdraw code", err)
		return
	}
	noSuch := func() {
		h.homeError(w, r, cur, http.StatusNotFound, func(l *text) string { return l.ErrNoSuchCode })
	}
	now := h.now()
	i := slices.IndexFunc(codes, func(c store.EnrollCode) bool { return c.Hub == hub && c.Pending(now) })
	if i < 0 {
		noSuch()
		return
	}
	err = h.st.WithdrawEnrollCode(ctx, codes[i].ID)
	if errors.Is(err, store.ErrNotFound) { // used meanwhile
		noSuch()
		return
	}
	if err != nil {
		h.fail(w, r, "withdraw code", err)
		return
	}
	h.audit(store.Event{Kind: store.KindEnroll, User: cur.user.Name, Hub: hub, Source: source(r), Outcome: "ok", Detail: "enrollment code withdrawn"})
	redirect(w, "/?ok=code-withdrawn")
}
