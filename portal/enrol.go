package portal

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/hubtunnel/hubtunnel/store"
)

// enrolView is the TOTP page: on (with the form to turn it off), or off
// with a fresh secret to scan.
type enrolView struct {
	On     bool
	QR     template.HTML
	Secret string // grouped by four for typing
}

// otpauthURL is the key URI authenticator apps scan (Google's "Key Uri
// Format", which they all follow): SHA-1, 6 digits and 30 s are its
// defaults.
func otpauthURL(user, secret string) string {
	return "otpauth://totp/hubtunnel:" + url.PathEscape(user) + "?secret=" + secret + "&issuer=hubtunnel"
}

// totpForm is GET /totp.
func (h *handler) totpForm(w http.ResponseWriter, r *http.Request) {
	cur, err := h.current(r)
	if err != nil {
		h.fail(w, r, "totp", err)
		return
	}
	if cur == nil {
		redirect(w, "/login?next=%2Ftotp")
		return
	}
	h.renderTOTP(w, r, cur, http.StatusOK, "", "")
}

// renderTOTP draws the TOTP page; secret is the one being enrolled ("":
// make a new one, when TOTP is off).
func (h *handler) renderTOTP(w http.ResponseWriter, r *http.Request, cur *session, status int, secret, msg string) {
	p := h.newPage(r, cur, "")
	p.Title, p.Error = p.L.TitleTOTP, msg
	v := &enrolView{On: cur.user.HasTOTP}
	if !v.On {
		if secret == "" {
			secret = newTOTPSecret()
			h.enrols.set(cur.ID, secret, h.now())
		}
		qr, err := qrSVG("totp-qr", otpauthURL(cur.user.Name, secret))
		if err != nil {
			h.fail(w, r, "totp", err)
			return
		}
		v.QR, v.Secret = qr, groupBy4(secret)
	}
	p.Enrol = v
	h.render(w, status, "totp", p)
}

// totpOn is POST /totp: code, for the secret this session was shown.
func (h *handler) totpOn(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	l := language(r)
	if cur.user.HasTOTP {
		redirect(w, "/totp")
		return
	}
	now := h.now()
	secret := h.enrols.get(cur.ID, now)
	if secret == "" {
		h.renderTOTP(w, r, cur, http.StatusBadRequest, "", l.ErrEnrolExpired)
		return
	}
	if !h.totp.check(cur.user.ID, secret, normCode(r.PostFormValue("code")), now) {
		h.renderTOTP(w, r, cur, http.StatusBadRequest, secret, l.ErrBadCode)
		return
	}
	if err := h.st.SetTOTP(r.Context(), cur.user.Name, secret); err != nil {
		h.fail(w, r, "totp", err)
		return
	}
	h.enrols.done(cur.ID)
	h.audit(store.Event{Kind: KindTOTP, User: cur.user.Name, Source: source(r), Outcome: "on"})
	redirect(w, "/?ok=totp-on")
}

// totpOff is POST /totp/off: a current code. Wrong codes count as failed
// logins: a stolen session must not guess its way past the second step.
func (h *handler) totpOff(w http.ResponseWriter, r *http.Request) {
	cur := h.postSession(w, r)
	if cur == nil {
		return
	}
	l := language(r)
	ctx := r.Context()
	now := h.now()
	addr := sourceKey(r)
	secret, err := h.st.TOTPSecret(ctx, cur.user.ID)
	if err != nil {
		h.fail(w, r, "totp", err)
		return
	}
	if secret == "" {
		redirect(w, "/totp")
		return
	}
	if h.limits.addrRefused(addr, now) || h.limits.accountLocked(cur.user.Name, now) {
		h.renderTOTP(w, r, cur, http.StatusTooManyRequests, "", l.ErrAccountLocked)
		return
	}
	if !h.totp.check(cur.user.ID, secret, normCode(r.PostFormValue("code")), now) {
		h.failure(r, cur.user.Name, addr, now)
		h.renderTOTP(w, r, cur, http.StatusBadRequest, "", l.ErrBadCode)
		return
	}
	if err := h.st.SetTOTP(ctx, cur.user.Name, ""); err != nil {
		h.fail(w, r, "totp", err)
		return
	}
	h.audit(store.Event{Kind: KindTOTP, User: cur.user.Name, Source: source(r), Outcome: "off"})
	redirect(w, "/?ok=totp-off")
}

// groupBy4 spaces a secret out for typing: ABCD EFGH …
func groupBy4(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}
