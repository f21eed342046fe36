package portal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

// page is what every template gets; a page uses the fields it needs.
type page struct {
	L       *text
	Lang    string
	Title   string
	User    string // the logged-in user, "" for none: the header's logout button
	CSRF    string
	Error   string
	Notice  string
	Message string // the error page's text
	Reload  int    // seconds after which the page loads itself again; 0: never

	Name    string // login: the user name typed
	Next    string // login: where to go afterwards
	Pending string // login: the half-done login waiting for its code

	Home  *homeView
	Enrol *enrolView
}

// pageNames are the templates under templates/, each drawn into layout.html.
var pageNames = []string{"login", "code", "logout", "loggedout", "error", "home", "totp"}

var funcs = template.FuncMap{
	"when":  when,
	"ports": portsText,
	"kind":  kindName,
	"bytes": byteCount,
}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("portal: templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: templates: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

// session is the logged-in user of a request.
type session struct {
	store.Session
	secret string
	user   store.User
	csrf   string
}

// current reads r's session. nil and no error: not logged in.
func (h *handler) current(r *http.Request) (*session, error) {
	ss, secret, ok, err := SessionFromRequest(r.Context(), h.st, r, h.c.Secure)
	if err != nil || !ok {
		return nil, err
	}
	u, err := h.st.UserByID(r.Context(), ss.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &session{Session: ss, secret: secret, user: u, csrf: csrfToken(secret)}, nil
}

// csrfToken is the CSRF token of a session: a MAC of a fixed text under the
// session's secret. Only the session's holder can make it, every relay of a
// fleet computes the same one, and it tells nothing of the secret.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("hubtunnel portal csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// postSession is the gate of every POST that needs a login: same origin, a
// readable form, a session and its CSRF token. It answers the request
// itself and returns nil when one of them fails.
func (h *handler) postSession(w http.ResponseWriter, r *http.Request) *session {
	if !SameOrigin(r, h.c.Secure) {
		h.forbidden(w, r)
		return nil
	}
	if err := r.ParseForm(); err != nil {
		h.badForm(w, r)
		return nil
	}
	cur, err := h.current(r)
	if err != nil {
		h.fail(w, r, "session", err)
		return nil
	}
	if cur == nil {
		redirect(w, "/login")
		return nil
	}
	if !csrfOK(r, cur) {
		h.forbidden(w, r)
		return nil
	}
	return cur
}

// csrfOK: the form carries the session's CSRF token.
func csrfOK(r *http.Request, cur *session) bool {
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(cur.csrf)) == 1
}

func (h *handler) badForm(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r, nil, "")
	p.Title = p.L.TitleError
	p.Message = p.L.ErrBadForm
	h.render(w, http.StatusBadRequest, "error", p)
}

// newPage starts a page in the request's language, for cur (nil: nobody
// logged in), with title taken from L by the caller when "".
func (h *handler) newPage(r *http.Request, cur *session, title string) *page {
	l := language(r)
	p := &page{L: l, Lang: l.Lang, Title: title}
	if cur != nil {
		p.User, p.CSRF = cur.user.Name, cur.csrf
	}
	return p
}

// render writes a page; a template that fails is a bug, logged, and a
// plain 500.
func (h *handler) render(w http.ResponseWriter, status int, name string, p *page) {
	var b bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		h.logf("page %s: %v", name, err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Language", p.Lang)
	hd.Set("Vary", "Accept-Language, Cookie")
	hd.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// redirect answers 303 See Other to loc, which the caller built from
// checked parts only.
func redirect(w http.ResponseWriter, loc string) {
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusSeeOther)
}

// setCookie gives the browser the session's secret.
func (h *handler) setCookie(w http.ResponseWriter, secret string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName(h.c.Secure),
		Value:    secret,
		Path:     "/",
		Expires:  expires,
		Secure:   h.c.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// clearCookie tells the browser to forget the session cookie.
func (h *handler) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName(h.c.Secure),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		Secure:   h.c.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// when shows a time: UTC in the page, which the page's script turns into
// the browser's local time.
func when(t time.Time) template.HTML {
	if t.IsZero() {
		return "–"
	}
	t = t.UTC()
	return template.HTML(`<time datetime="` + t.Format(time.RFC3339) + `">` + t.Format("2006-01-02 15:04") + ` UTC</time>`)
}

// portsText is a port set in the page's words.
func portsText(l *text, p store.Ports) string {
	var parts []string
	if p&store.PortWebUI != 0 {
		parts = append(parts, l.PortWebUI)
	}
	if p&store.PortXMLRPC != 0 {
		parts = append(parts, l.PortXMLRPC)
	}
	if p&store.PortScript != 0 {
		parts = append(parts, l.PortScript)
	}
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, ", ")
}

// byteCount is a byte count for people: 1.2 MB.
func byteCount(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTP"[exp])
}
