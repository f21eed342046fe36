package portal

import (
	"fmt"
	"html"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

func TestGrantAndRevokeThroughTheForms(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	r := alice.get("/")
	wantIn(t, r.body, `id="grant-form"`, `name="user"`, `name="ports"`, `name="until"`, `id="grants"`, english.NoGrants)

	// Until tomorrow 14:30 in the browser's zone, two hours east of UTC.
	r = alice.act("/grant", "hub", "home", "user", "Bob", "ports", "webui", "ports", "xmlrpc", "until", "2026-06-02T14:30", "tz", "120")
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/?ok=grant" {
		t.Fatalf("went to %q", loc)
	}
	gs, err := e.st.GrantsOnHub(ctx, "home")
	check(t, err)
	if len(gs) != 1 || gs[0].User != "bob" || gs[0].Ports != store.PortWebUI|store.PortXMLRPC ||
		!gs[0].Until.Equal(time.Date(2026, 6, 2, 12, 30, 0, 0, time.UTC)) {
		t.Fatalf("grants %+v", gs)
	}
	ev := e.eventsOf(store.KindGrant)
	if len(ev) != 1 || ev[0].User != "alice" || ev[0].Hub != "home" || ev[0].Detail != "to bob: webui,xmlrpc, until 2026-06-02T12:30:00Z" {
		t.Fatalf("audit %+v", ev)
	}
	r = alice.get("/?ok=grant")
	wantIn(t, r.body, english.OkGrant, `id="grant-home-bob"`, "2026-06-02 12:30 UTC")

	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	r = bob.get("/")
	wantIn(t, r.body, `id="granted-home"`, `href="http://home.hubs.test/"`, english.NoHubs)

	r = alice.act("/grant/revoke", "hub", "home", "user", "bob")
	wantStatus(t, r, http.StatusSeeOther)
	bobID := mustUser(t, e, "bob").ID
	if p, _ := e.st.Access(ctx, bobID, "home"); p != 0 {
		t.Fatalf("bob still reaches %s", p)
	}
	if ev := e.eventsOf(store.KindRevoke); len(ev) != 1 || ev[0].Hub != "home" || ev[0].Detail != "grant to bob" {
		t.Fatalf("audit %+v", ev)
	}
	wantNotIn(t, bob.get("/").body, `id="granted-home"`)
}

func TestGrantFormRefusesWhatItCannotDo(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	for _, c := range []struct {
		name   string
		form   []string
		status int
		msg    string
	}{
		{"no ports", []string{"hub", "home", "user", "bob"}, 400, english.ErrNoPorts},
		{"unknown user", []string{"hub", "home", "user", "zoe", "ports", "webui"}, 400, english.ErrNoSuchUser},
		{"to oneself", []string{"hub", "home", "user", "alice", "ports", "webui"}, 400, english.ErrGrantSelf},
		{"past", []string{"hub", "home", "user", "bob", "ports", "webui", "until", "2026-06-01T11:00"}, 400, english.ErrPastTime},
		{"bad time", []string{"hub", "home", "user", "bob", "ports", "webui", "until", "tomorrow"}, 400, english.ErrBadTime},
		{"bad zone", []string{"hub", "home", "user", "bob", "ports", "webui", "until", "2026-06-02T11:00", "tz", "9999"}, 400, english.ErrBadTime},
		{"unknown hub", []string{"hub", "nowhere", "user", "bob", "ports", "webui"}, 403, english.ErrNotYourHub},
	} {
		r := alice.act("/grant", c.form...)
		if r.StatusCode != c.status || !strings.Contains(r.body, html.EscapeString(c.msg)) {
			t.Errorf("%s: %s, want %d with %q", c.name, r.Status, c.status, c.msg)
		}
	}
	if gs, _ := e.st.GrantsOnHub(ctx, "home"); len(gs) != 0 {
		t.Fatalf("grants %+v", gs)
	}
	if ev := e.eventsOf(store.KindGrant); len(ev) != 0 {
		t.Fatalf("audit %+v", ev)
	}
}

func TestAGranteeCannotSeeOrChangeGrantsOfAHubTheyDoNotOwn(t *testing.T) {
	e := newEnv(t)
	check(t, e.st.Grant(ctx, "bob", "home", store.PortWebUI, time.Time{}))
	check(t, e.st.Grant(ctx, "carol", "home", store.PortsAll, time.Time{}))
	_, carolToken, err := e.st.CreateToken(ctx, store.TokenSpec{Hub: "home", User: "carol", Label: "carol's app", Ports: store.PortXMLRPC})
	check(t, err)
	_, aliceToken, err := e.st.CreateToken(ctx, store.TokenSpec{Hub: "home", User: "alice", Label: "alice's app", Ports: store.PortXMLRPC})
	check(t, err)
	check(t, e.st.Append(ctx, store.Event{Kind: store.KindSession, User: "carol", Hub: "home", Port: 4431, Detail: "carol's secret visit"}))

	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	r := bob.get("/")
	wantIn(t, r.body, `id="granted-home"`, `id="token-form"`)
	wantNotIn(t, r.body, `id="grant-form"`, `id="grants"`, "carol", "alice&#39;s app", `id="audit"`, "secret visit")

	for _, c := range []struct {
		path string
		form []string
	}{
		{"/grant", []string{"hub", "home", "user", "dave", "ports", "webui"}},
		{"/grant", []string{"hub", "home", "user", "bob", "ports", "script"}}, // widening one's own grant
		{"/grant/revoke", []string{"hub", "home", "user", "carol"}},
		{"/token/revoke", []string{"id", fmt.Sprint(carolToken.ID)}},
		{"/token/revoke", []string{"id", fmt.Sprint(aliceToken.ID)}},
	} {
		r := bob.act(c.path, c.form...)
		if r.StatusCode != http.StatusForbidden && r.StatusCode != http.StatusNotFound {
			t.Errorf("%s %v: %s", c.path, c.form, r.Status)
		}
		wantNotIn(t, r.body, "carol")
	}
	gs, err := e.st.GrantsOnHub(ctx, "home")
	check(t, err)
	if len(gs) != 2 || gs[0].User != "bob" || gs[0].Ports != store.PortWebUI || gs[1].User != "carol" {
		t.Fatalf("grants changed: %+v", gs)
	}
	for _, id := range []int64{carolToken.ID, aliceToken.ID} {
		if _, err := e.st.TokenByID(ctx, id); err != nil {
			t.Fatalf("token #%d: %v", id, err)
		}
	}
	if ev := append(e.eventsOf(store.KindGrant), e.eventsOf(store.KindRevoke)...); len(ev) != 0 {
		t.Fatalf("audit %+v", ev)
	}
	// A token beyond bob's grant is refused; within it, made.
	r = bob.act("/token", "hub", "home", "label", "too much", "ports", "xmlrpc")
	wantStatus(t, r, http.StatusForbidden)
	wantIn(t, r.body, english.ErrTokenNotAllowed)
	wantNotIn(t, r.body, `id="token-secret"`)
	r = bob.act("/token", "hub", "cabin", "label", "not shared", "ports", "webui")
	wantStatus(t, r, http.StatusForbidden)
	r = bob.act("/token", "hub", "home", "label", "browser script", "ports", "webui")
	wantStatus(t, r, http.StatusOK)
	e.secret(field(t, r.body, "token-secret"))
	wantIn(t, r.body, `id="token-line-webui"`)
	wantNotIn(t, r.body, `id="token-line-python"`)
}

func TestTokenMadeThroughTheFormIsShownOnceWithLinesForEachClient(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PortOffset = 10000 })
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	r := alice.act("/token", "hub", "home", "label", "Home Assistant", "ports", "xmlrpc", "ports", "webui", "expires", "2026-12-31T23:59")
	wantStatus(t, r, http.StatusOK)
	secret := field(t, r.body, "token-secret")
	e.secret(secret)
	if !strings.HasPrefix(secret, store.TokenPrefix) || len(secret) != store.TokenLen {
		t.Fatalf("token %q", secret)
	}
	tok, err := e.st.VerifyToken(ctx, secret)
	check(t, err)
	if tok.Hub != "home" || tok.Label != "Home Assistant" || tok.Reach != store.PortWebUI|store.PortXMLRPC ||
		!tok.Expires.Equal(time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC)) {
		t.Fatalf("token %+v", tok)
	}
	lines := map[string]string{}
	for _, id := range []string{"python", "python-host", "curl", "homeassistant", "iobroker", "webui"} {
		lines[id] = html.UnescapeString(field(t, r.body, "token-line-"+id))
	}
	for id, want := range map[string]string{
		"python":        `xmlrpc.client.ServerProxy("https://hubtunnel:` + secret + `@home.hubs.test:14431/")`,
		"python-host":   `ServerProxy("https://hubtunnel:` + secret + `@relay.test:14431/")`,
		"curl":          `curl -u 'hubtunnel:` + secret + `' -H 'Content-Type: text/xml'`,
		"homeassistant": "host: home.hubs.test\n      port: 14431\n      ssl: true\n      username: hubtunnel\n      password: " + secret,
		"iobroker":      "HomeMatic address: home.hubs.test\nHomeMatic port: 14431",
		"webui":         "curl -u 'hubtunnel:" + secret + "' https://home.hubs.test:10443/",
	} {
		if !strings.Contains(lines[id], want) {
			t.Errorf("line %s:\n%s\nlacks\n%s", id, lines[id], want)
		}
	}
	if strings.Contains(r.body, `id="token-line-script"`) {
		t.Error("a script line for a token without the script engine")
	}
	ev := e.eventsOf(store.KindToken)
	if len(ev) != 1 || ev[0].TokenID != tok.ID || ev[0].Hub != "home" || ev[0].User != "alice" {
		t.Fatalf("audit %+v", ev)
	}
	// Shown once: the home page lists it without its secret.
	r = alice.get("/")
	wantIn(t, r.body, fmt.Sprintf(`id="token-%d"`, tok.ID), "Home Assistant")
	wantNotIn(t, r.body, secret, store.TokenPrefix)

	r = alice.act("/token/revoke", "id", fmt.Sprint(tok.ID))
	wantStatus(t, r, http.StatusSeeOther)
	if _, err := e.st.VerifyToken(ctx, secret); err == nil {
		t.Fatal("the revoked token still works")
	}
	if ev := e.eventsOf(store.KindRevoke); len(ev) != 1 || ev[0].TokenID != tok.ID {
		t.Fatalf("audit %+v", ev)
	}
	// Bad labels are refused.
	wantStatus(t, alice.act("/token", "hub", "home", "label", strings.Repeat("x", maxLabel+1), "ports", "xmlrpc"), http.StatusBadRequest)
	wantStatus(t, alice.act("/token", "hub", "home", "label", "a\x00b", "ports", "xmlrpc"), http.StatusBadRequest)
}

func TestEveryChangeNeedsTheSessionsCSRFTokenAndTheSameOrigin(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	csrf := alice.csrf()
	other := e.browser("192.0.2.9")
	other.login("alice", alicePW)
	otherCSRF := other.csrf()
	if otherCSRF == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	grant := []string{"hub", "home", "user", "bob", "ports", "webui"}
	// The session's token with its first character changed: "x" unless
	// it starts with one (1 in 64), where "x" left it the real token.
	wrong := "x" + csrf[1:]
	if csrf[0] == 'x' {
		wrong = "y" + csrf[1:]
	}
	for _, c := range []struct {
		name   string
		form   []string
		header []string
	}{
		{"no token", grant, nil},
		{"wrong token", append([]string{"csrf", wrong}, grant...), nil},
		{"another session's token", append([]string{"csrf", otherCSRF}, grant...), nil},
		{"another site", append([]string{"csrf", csrf}, grant...), []string{"Origin", "http://evil.test"}},
		{"another hub of the relay", append([]string{"csrf", csrf}, grant...), []string{"Origin", "http://home.hubs.test"}},
		{"another port", append([]string{"csrf", csrf}, grant...), []string{"Origin", "http://relay.test:8080"}},
		{"https origin on http", append([]string{"csrf", csrf}, grant...), []string{"Origin", "https://relay.test"}},
		{"cross-site fetch", append([]string{"csrf", csrf}, grant...), []string{"Sec-Fetch-Site", "cross-site", "Origin", ""}},
		{"same-site fetch", append([]string{"csrf", csrf}, grant...), []string{"Sec-Fetch-Site", "same-site", "Origin", ""}},
		{"an opaque origin", append([]string{"csrf", csrf}, grant...), []string{"Origin", "null", "Sec-Fetch-Site", ""}},
		{"an opaque origin from another site", append([]string{"csrf", csrf}, grant...), []string{"Origin", "null", "Sec-Fetch-Site", "cross-site"}},
	} {
		r := alice.do(http.MethodPost, "/grant", formOf(c.form...), c.header...)
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s", c.name, r.Status)
		}
	}
	for _, path := range []string{"/grant/revoke", "/token", "/token/revoke", "/session/revoke", "/totp", "/totp/off", "/logout", "/hub/add", "/hub/withdraw"} {
		if r := alice.post(path, "hub", "home", "id", "1", "name", "garage"); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s without a token: %s", path, r.Status)
		}
	}
	if gs, _ := e.st.GrantsOnHub(ctx, "home"); len(gs) != 0 {
		t.Fatalf("a refused form granted: %+v", gs)
	}
	if cs, _ := e.st.EnrollCodes(ctx, 0); len(cs) != 0 {
		t.Fatalf("a refused form made an enrollment code: %+v", cs)
	}
	// The right token from the same origin, with an explicit port, works.
	r := alice.do(http.MethodPost, "/grant", formOf(append([]string{"csrf", csrf}, grant...)...), "Origin", "http://RELAY.test:80")
	wantStatus(t, r, http.StatusSeeOther)
	// So does a page with Referrer-Policy no-referrer: Origin "null", but
	// the browser's Sec-Fetch-Site says same-origin.
	r = alice.do(http.MethodPost, "/grant", formOf(append([]string{"csrf", csrf}, grant...)...), "Origin", "null", "Sec-Fetch-Site", "same-origin")
	wantStatus(t, r, http.StatusSeeOther)
	// A POST without a login goes to the login page.
	r = e.browser("192.0.2.3").post("/grant", grant...)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Fatalf("without login: %s %q", r.Status, r.Header.Get("Location"))
	}
}

func TestSessionsAreListedAndRevokedByTheirUser(t *testing.T) {
	e := newEnv(t)
	laptop := e.browser("192.0.2.1")
	laptop.login("alice", alicePW)
	e.clock.Add(time.Minute)
	phone := e.browser("198.51.100.2")
	phone.login("alice", alicePW)
	bob := e.browser("203.0.113.5")
	bob.login("bob", bobPW)

	r := laptop.get("/")
	ss, err := e.st.Sessions(ctx, mustUser(t, e, "alice").ID)
	check(t, err)
	if len(ss) != 2 {
		t.Fatalf("sessions %+v", ss)
	}
	phoneID, laptopID := ss[0].ID, ss[1].ID // newest first
	wantIn(t, r.body, fmt.Sprintf(`id="session-%d" data-session="%d" class="this"`, laptopID, laptopID), fmt.Sprintf(`id="session-%d"`, phoneID), "198.51.100.2")
	wantNotIn(t, r.body, "203.0.113.5")

	// Bob cannot end alice's sessions.
	bobSS, _ := e.st.Sessions(ctx, mustUser(t, e, "bob").ID)
	wantStatus(t, laptop.act("/session/revoke", "id", fmt.Sprint(bobSS[0].ID)), http.StatusNotFound)
	wantStatus(t, bob.act("/session/revoke", "id", fmt.Sprint(phoneID)), http.StatusNotFound)
	wantStatus(t, phone.get("/"), http.StatusOK)

	wantStatus(t, laptop.act("/session/revoke", "id", fmt.Sprint(phoneID)), http.StatusSeeOther)
	r = phone.get("/")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Fatalf("the revoked phone session: %s", r.Status)
	}
	if ev := e.eventsOf(store.KindRevoke); len(ev) != 1 || ev[0].Detail != fmt.Sprintf("session #%d", phoneID) {
		t.Fatalf("audit %+v", ev)
	}
	// Ending this browser's own session is a logout.
	r = laptop.act("/session/revoke", "id", fmt.Sprint(laptopID))
	wantIn(t, r.body, `id="logged-out"`)
	wantStatus(t, laptop.get("/"), http.StatusSeeOther)
}

func TestTheAuditLogShowsOnlyTheUsersOwnHubs(t *testing.T) {
	e := newEnv(t)
	_, err := e.st.UpsertHub(ctx, store.HubSpec{Name: "barn", PublicKey: "key9", TunnelIP: "100.96.0.9"})
	check(t, err)
	check(t, e.st.SetHubOwner(ctx, "barn", "carol"))
	for i := range 250 {
		check(t, e.st.Append(ctx, store.Event{Kind: store.KindSession, Hub: "home", User: "alice", Port: 443, Outcome: "ok", BytesUp: 1200, BytesDown: 3400000, Detail: fmt.Sprintf("visit %d", i)}))
	}
	check(t, e.st.Append(ctx, store.Event{Kind: store.KindSession, Hub: "barn", User: "carol", Detail: "in the barn"}))
	check(t, e.st.Append(ctx, store.Event{Kind: store.KindLogin, User: "carol", Detail: "carol's login"}))

	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	r := alice.get("/")
	wantIn(t, r.body, `id="audit"`, "visit 249", "3.4 MB")
	wantNotIn(t, r.body, "in the barn", "carol&#39;s login", "visit 49<")
	if n := strings.Count(r.body[strings.Index(r.body, `id="audit"`):], "<tr>") - 1; n != auditRows {
		t.Errorf("%d audit rows, want %d", n, auditRows)
	}
	if len(r.body) > 150<<10 {
		t.Errorf("the home page with %d audit rows is %d bytes", auditRows, len(r.body))
	}
	// A user without hubs sees no audit log at all, not everybody's.
	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	wantNotIn(t, bob.get("/").body, `id="audit"`, "visit", "barn")
}

// A connection with the key of the owner's hub, refused while the hub was
// connected (a copy of the hub?), is in the owner's audit log in words.
func TestTheAuditLogNamesARefusedCopy(t *testing.T) {
	e := newEnv(t)
	check(t, e.st.Append(ctx, store.Event{Kind: store.KindClone, Hub: "home", Source: "203.0.113.7:40000", Outcome: "refused",
		Detail: "a second connection with this hub's key"}))
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	wantIn(t, alice.get("/").body, "<td>copy of the hub refused</td>", "203.0.113.7:40000")
	wantIn(t, alice.get("/", "Accept-Language", "de").body, "<td>Kopie der Zentrale abgewiesen</td>")
}

var externalRE = regexp.MustCompile(`(?i)(src|href|action)="(https?:)?//`)

func TestPagesAreSmallStrictAndSelfContained(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	pages := map[string]string{"login": b.get("/login").body}
	b.login("alice", alicePW)
	pages["home"] = b.get("/").body
	pages["totp"] = b.get("/totp").body
	pages["logout"] = b.get("/logout").body
	r := b.get("/nothing-here")
	wantStatus(t, r, http.StatusNotFound)
	pages["404"] = r.body
	for name, body := range pages {
		if len(body) > 20<<10 {
			t.Errorf("%s: %d bytes", name, len(body))
		}
		for _, m := range externalRE.FindAllString(body, -1) {
			if !strings.Contains(m, "href=") { // links to the hubs are fine; nothing is loaded from elsewhere
				t.Errorf("%s loads from elsewhere: %s", name, m)
			}
		}
		if strings.Contains(body, "style=") || strings.Contains(body, "<script>") || strings.Contains(body, " on") && regexp.MustCompile(` on[a-z]+=`).MatchString(body) {
			t.Errorf("%s has inline style or script, which the CSP refuses", name)
		}
	}
	r = b.get("/")
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self' https://*.hubs.test:* http://*.hubs.test:*"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	wantStatus(t, b.get("/assets/"), http.StatusNotFound)
	for _, a := range []string{"/assets/portal.css", "/assets/portal.js"} {
		r := b.get(a)
		wantStatus(t, r, http.StatusOK)
		if len(r.body) == 0 || len(r.body) > 8<<10 {
			t.Errorf("%s: %d bytes", a, len(r.body))
		}
	}
}

// Every string exists in both languages.
func TestBothLanguagesHaveEveryString(t *testing.T) {
	for _, l := range []*text{&english, &german} {
		v := reflect.ValueOf(*l)
		for i := range v.NumField() {
			if v.Field(i).String() == "" {
				t.Errorf("%s: %s is empty", l.Lang, v.Type().Field(i).Name)
			}
		}
	}
}

func mustUser(t *testing.T, e *env, name string) store.User {
	t.Helper()
	u, err := e.st.UserByName(ctx, name)
	check(t, err)
	return u
}
