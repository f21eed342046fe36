package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

func TestLoginSetsAHostOnlySessionCookieAndOpensHome(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	r := b.get("/")
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/login" {
		t.Fatalf("home without login goes to %q", loc)
	}
	r = b.get("/login")
	wantStatus(t, r, http.StatusOK)
	wantIn(t, r.body, `id="login-form"`, `name="user"`, `name="password"`, `name="next"`)

	r = b.post("/login", "user", "Alice ", "password", alicePW) // as typed on a phone
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/" {
		t.Fatalf("login went to %q", loc)
	}
	cks := r.Cookies()
	if len(cks) != 1 || cks[0].Name != "hubtunnel" || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteLaxMode ||
		cks[0].Path != "/" || cks[0].Domain != "" || cks[0].Secure {
		t.Fatalf("cookie %+v", cks)
	}
	ss, err := e.st.Session(ctx, cks[0].Value)
	check(t, err)
	if ss.User != "alice" || ss.Source != "192.0.2.1" || !ss.Expires.Equal(e.clock.Now().Add(12*time.Hour)) {
		t.Fatalf("session %+v", ss)
	}
	if ev := e.eventsOf(store.KindLogin); len(ev) != 1 || ev[0].User != "alice" || ev[0].Outcome != "ok" || ev[0].Source != "192.0.2.1" {
		t.Fatalf("audit %+v", ev)
	}

	r = b.get("/")
	wantStatus(t, r, http.StatusOK)
	wantIn(t, r.body, `id="hubs"`, `id="hub-home"`, `id="hub-cabin"`, `href="http://home.hubs.test/"`,
		"RaspberryMatic", "3.79.6", "0.3.0", `class="state online"`, `class="state offline"`, `id="logout"`, `id="sessions"`)
}

func TestSecurePortalUsesAHostPrefixedSecureCookie(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Secure = true })
	b := e.browser("192.0.2.1")
	b.scheme = "https"
	r := b.post("/login", "user", "alice", "password", alicePW)
	wantStatus(t, r, http.StatusSeeOther)
	cks := r.Cookies()
	if len(cks) != 1 || cks[0].Name != "__Host-hubtunnel" || !cks[0].Secure || cks[0].Path != "/" || cks[0].Domain != "" {
		t.Fatalf("cookie %+v", cks)
	}
	wantStatus(t, b.get("/"), http.StatusOK)
	// A plain-HTTP origin is another origin.
	r = b.do(http.MethodPost, "/grant", formOf("csrf", b.csrf(), "hub", "home", "user", "bob", "ports", "webui"), "Origin", "http://"+publicHost)
	wantStatus(t, r, http.StatusForbidden)
	if CookieName(true) != "__Host-hubtunnel" || CookieName(false) != "hubtunnel" {
		t.Fatal("CookieName")
	}
}

func TestWrongPasswordAndUnknownUserLookTheSame(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	wrong := b.post("/login", "user", "alice", "password", "not alice's password")
	e.secret("not alice's password")
	unknown := b.post("/login", "user", "zoe", "password", "zoe's long password")
	e.secret("zoe's long password")
	for _, r := range []resp{wrong, unknown} {
		wantStatus(t, r, http.StatusUnauthorized)
		wantIn(t, r.body, english.ErrBadLogin, `id="login-form"`)
		if len(r.Cookies()) != 0 {
			t.Fatalf("a failed login set %v", r.Cookies())
		}
	}
	ev := e.eventsOf(store.KindLogin)
	if len(ev) != 2 || ev[0].User != "alice" || ev[0].Outcome != "failed" || ev[0].Detail != whyWrongPassword ||
		ev[1].User != "" || ev[1].Detail != whyUnknownUser {
		t.Fatalf("audit %+v", ev)
	}
	// A password typed into the name field goes into no record.
	b.post("/login", "user", "hunter2 secret", "password", "x")
	e.secret("hunter2 secret")
}

func TestDisabledAccountIsToldSo(t *testing.T) {
	e := newEnv(t)
	r := e.browser("192.0.2.1").post("/login", "user", "dave", "password", davePW)
	wantStatus(t, r, http.StatusForbidden)
	wantIn(t, r.body, english.ErrDisabled)
	if ev := e.eventsOf(store.KindLogin); len(ev) != 1 || ev[0].Detail != whyDisabled || ev[0].User != "dave" {
		t.Fatalf("audit %+v", ev)
	}
	// With a wrong password it is just a wrong password.
	r = e.browser("192.0.2.1").post("/login", "user", "dave", "password", "a wrong password")
	wantIn(t, r.body, english.ErrBadLogin)
}

func TestFiveFailuresLockAnAccountForFifteenMinutes(t *testing.T) {
	e := newEnv(t)
	for i := range accountFailures {
		if i > 0 {
			e.clock.Add(time.Minute)
		}
		r := e.browser("192.0.2.1").post("/login", "user", "alice", "password", "wrong password")
		wantStatus(t, r, http.StatusUnauthorized)
	}
	lockedAt := e.clock.Now()
	// The right password, from anywhere, is not even looked at now.
	r := e.browser("198.51.100.7").post("/login", "user", "alice", "password", alicePW)
	wantStatus(t, r, http.StatusTooManyRequests)
	wantIn(t, r.body, english.ErrAccountLocked)
	if len(r.Cookies()) != 0 {
		t.Fatal("a locked account logged in")
	}
	// Other accounts are not locked.
	e.browser("198.51.100.7").login("bob", bobPW)
	// Names that are no account lock alike: a lock tells nothing.
	for range accountFailures {
		e.browser("203.0.113.9").post("/login", "user", "nobody", "password", "wrong password")
	}
	r = e.browser("203.0.113.9").post("/login", "user", "nobody", "password", "wrong password")
	wantStatus(t, r, http.StatusTooManyRequests)
	wantIn(t, r.body, english.ErrAccountLocked)

	e.clock.Add(lockedAt.Add(accountLock - time.Second).Sub(e.clock.Now()))
	wantStatus(t, e.browser("198.51.100.7").post("/login", "user", "alice", "password", alicePW), http.StatusTooManyRequests)
	e.clock.Add(time.Second)
	e.browser("198.51.100.7").login("alice", alicePW)
	if n := len(e.logs); n == 0 || !strings.Contains(strings.Join(e.logs, "\n"), `account "alice" locked`) {
		t.Fatalf("no log line of the lock: %q", e.logs)
	}
}

func TestTwentyFailuresFromAnAddressGet429(t *testing.T) {
	e := newEnv(t)
	attacker := e.browser("2001:db8:1:2::1")
	for i := range addrFailures {
		// Different names, so no account lock interferes.
		r := attacker.post("/login", "user", "guess"+string(rune('a'+i)), "password", "wrong password")
		wantStatus(t, r, http.StatusUnauthorized)
	}
	// The same /64 is the same address, the right password does not help.
	r := e.browser("2001:db8:1:2::99").post("/login", "user", "alice", "password", alicePW)
	wantStatus(t, r, http.StatusTooManyRequests)
	wantIn(t, r.body, english.ErrTooManyFromAddress)
	// Another network logs in meanwhile.
	e.browser("2001:db8:1:3::1").login("alice", alicePW)
	e.browser("192.0.2.1").login("alice", alicePW)

	e.clock.Add(window)
	e.browser("2001:db8:1:2::99").login("alice", alicePW)
	last := e.eventsOf(store.KindLogin)
	if ev := last[len(last)-4]; ev.Detail != whyAddress || ev.User != "alice" {
		t.Fatalf("audit of the refused login %+v", ev)
	}
}

func TestLogoutEndsTheSessionEverywhere(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	b.login("alice", alicePW)
	secret := b.cookies["hubtunnel"]

	r := b.get("/logout") // where a hub host's /.hubtunnel/logout lands
	wantStatus(t, r, http.StatusOK)
	wantIn(t, r.body, `id="logout-form"`, `id="logout-confirm"`, `name="csrf"`)
	if _, err := e.st.Session(ctx, secret); err != nil {
		t.Fatal("GET /logout ended the session")
	}
	// Without its CSRF token, a logout is refused.
	wantStatus(t, b.post("/logout"), http.StatusForbidden)

	r = b.act("/logout")
	wantStatus(t, r, http.StatusOK)
	wantIn(t, r.body, `id="logged-out"`, english.LoggedOutText)
	if _, ok := b.cookies["hubtunnel"]; ok {
		t.Fatal("the cookie was not cleared")
	}
	if _, err := e.st.Session(ctx, secret); err == nil {
		t.Fatal("the session is still active in the store")
	}
	if ev := e.eventsOf(store.KindLogout); len(ev) != 1 || ev[0].User != "alice" {
		t.Fatalf("audit %+v", ev)
	}
	// The old cookie (kept by, say, a hub host) no longer opens anything.
	b.cookies["hubtunnel"] = secret
	wantStatus(t, b.get("/"), http.StatusSeeOther)
	wantIn(t, b.get("/logout").body, `id="logged-out"`)
}

func TestLoginHandsOffToTheHubHost(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	next := "http://home.hubs.test:8080/pages/index.htm?sid=1&x=%2F"
	r := b.get("/login?next=" + url.QueryEscape(next))
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `name="next" value="http://home.hubs.test:8080/pages/index.htm?sid=1&amp;x=%2F"`) {
		t.Fatalf("next not kept in the form:\n%s", r.body)
	}
	r = b.post("/login", "user", "alice", "password", alicePW, "next", next)
	wantStatus(t, r, http.StatusSeeOther)
	ho := e.lastHandoff()
	if ho.host != "home.hubs.test" || ho.secret != b.cookies["hubtunnel"] {
		t.Fatalf("hand-off for %q (secret of the cookie: %v)", ho.host, ho.secret == b.cookies["hubtunnel"])
	}
	want := "http://home.hubs.test/.hubtunnel/auth?code=code1&next=" + url.QueryEscape("/pages/index.htm?sid=1&x=%2F")
	if loc := r.Header.Get("Location"); loc != want {
		t.Fatalf("went to %q, want %q", loc, want)
	}
	// Logged in already: the login page hands off at once.
	r = b.get("/login?next=" + url.QueryEscape("http://cabin.hubs.test/"))
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "http://cabin.hubs.test/.hubtunnel/auth?code=code2&next=%2F") {
		t.Fatalf("went to %q", loc)
	}
	// A portal path as next.
	r = b.get("/login?next=%2Ftotp")
	if loc := r.Header.Get("Location"); loc != "/totp" {
		t.Fatalf("went to %q", loc)
	}
}

func TestNextNeverLeadsOffTheRelay(t *testing.T) {
	bad := []string{
		"https://evil.test/",
		"//evil.test/",
		"///evil.test/",
		"/\\evil.test/",
		"\\\\evil.test",
		"javascript:alert(1)",
		"JavaScript:alert(1)",
		"data:text/html,hi",
		"https://home.hubs.test@evil.test/",
		"https://user:pw@home.hubs.test/",
		"https://evil.test#@home.hubs.test/",
		"https://evil.test\\@home.hubs.test/",
		"https://home.hubs.test.evil.test/",
		"https://a.b.hubs.test/",
		"https://hubs.test.evil/",
		"https://evilhubs.test/",
		"https:home.hubs.test/",
		"https:/home.hubs.test/",
		"https:///home.hubs.test/",
		"ftp://home.hubs.test/",
		"https://home.hubs.test//evil.test/",
		"https://home.hubs.test:99999/",
		"https://home.hubs.test/\tx",
		" https://home.hubs.test/",
		"https://-bad.hubs.test/",
	}
	e := newEnv(t)
	for _, next := range bad {
		if host, ok := HubHostOf(next, domain); ok {
			t.Errorf("HubHostOf(%q) = %q", next, host)
		}
		if _, ok := parseNext(next, domain); ok {
			t.Errorf("parseNext(%q) accepted", next)
		}
		b := e.browser("192.0.2.1")
		r := b.get("/login?next=" + url.QueryEscape(next))
		if strings.Contains(r.body, "evil") {
			t.Errorf("the login form keeps %q", next)
		}
		r = b.post("/login", "user", "bob", "password", bobPW, "next", next)
		if loc := r.Header.Get("Location"); loc != "/" {
			t.Errorf("next %q: went to %q", next, loc)
		}
		r = b.get("/login?next=" + url.QueryEscape(next))
		if loc := r.Header.Get("Location"); loc != "/" {
			t.Errorf("next %q, logged in: went to %q", next, loc)
		}
	}
	good := []struct{ next, host string }{
		{"https://home.hubs.test/", "home.hubs.test"},
		{"https://HOME.hubs.test:4443/x?y", "home.hubs.test"},
		{"http://home.hubs.test", "home.hubs.test"},
		{"https://a-1.hubs.test./", ""}, // a trailing dot is not our form
	}
	for _, g := range good {
		host, ok := HubHostOf(g.next, domain)
		if host != g.host || ok != (g.host != "") {
			t.Errorf("HubHostOf(%q) = %q, %v; want %q", g.next, host, ok, g.host)
		}
	}
	if len(e.handoffs) != 0 {
		t.Fatalf("hand-offs for bad next values: %v", e.handoffs)
	}
}

func TestCrossOriginLoginIsRefused(t *testing.T) {
	e := newEnv(t)
	for _, h := range [][]string{
		{"Origin", "http://evil.test"},
		{"Origin", "http://home.hubs.test"},                // another hub is same-site, not same-origin
		{"Origin", "null", "Sec-Fetch-Site", ""},           // an opaque origin, and no word of where from
		{"Origin", "null", "Sec-Fetch-Site", "cross-site"}, // a sandboxed frame of another site
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
	} {
		r := e.browser("192.0.2.1").do(http.MethodPost, "/login", formOf("user", "alice", "password", alicePW), h...)
		wantStatus(t, r, http.StatusForbidden)
		if len(r.Cookies()) != 0 {
			t.Fatalf("%v: logged in", h)
		}
	}
	// curl sends neither header: it passes the origin check.
	r := e.browser("192.0.2.1").do(http.MethodPost, "/login", formOf("user", "alice", "password", alicePW), "Origin", "", "Sec-Fetch-Site", "")
	wantStatus(t, r, http.StatusSeeOther)
}

func TestPagesFollowTheBrowsersLanguage(t *testing.T) {
	e := newEnv(t)
	for i, c := range []struct {
		accept string
		want   *text
	}{
		{"", &english},
		{"de", &german},
		{"de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", &german},
		{"en-US,en;q=0.9,de;q=0.8", &english},
		{"fr-FR, de;q=0.5, en;q=0.4", &german},
		{"fr-FR", &english},
		{"de;q=0, en", &english},
		{"de, en", &german},
	} {
		b := e.browser("192.0.2.1")
		b.lang = c.accept
		r := b.get("/login")
		wantIn(t, r.body, `<html lang="`+c.want.Lang+`">`, c.want.UserName, c.want.Password)
		if r.Header.Get("Content-Language") != c.want.Lang {
			t.Errorf("%q: Content-Language %q", c.accept, r.Header.Get("Content-Language"))
		}
		r = b.post("/login", "user", fmt.Sprintf("nobody%d", i), "password", "wrong password")
		wantIn(t, r.body, c.want.ErrBadLogin)
	}
	b := e.browser("192.0.2.2")
	b.lang = "de"
	b.login("alice", alicePW)
	wantIn(t, b.get("/").body, german.MyHubs, german.Logout, german.Online)
}
