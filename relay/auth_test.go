package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
)

// basic is an Authorization header line for user and password.
func basic(user, pass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
}

// login makes user with a session and, on hub, the grant ports (none: no
// grant); it returns the session's secret.
func (tr *testRelay) login(t *testing.T, user, hub string, ports store.Ports, until time.Time) string {
	t.Helper()
	ctx := context.Background()
	db := tr.Store()
	u, err := db.UserByName(ctx, user)
	if err != nil {
		if u, err = db.AddUser(ctx, user, "a long enough password"); err != nil {
			t.Fatal(err)
		}
	}
	if ports != 0 {
		if err := db.Grant(ctx, user, hub, ports, until); err != nil {
			t.Fatal(err)
		}
	}
	secret, _, err := db.CreateSession(ctx, u.ID, time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// ask sends one GET for path on hub's port with extra header lines and
// returns the answer; the connection is TLS for TLS ports of the map.
func (tr *testRelay) ask(t *testing.T, port int, host, path, extra string) answer {
	t.Helper()
	var s *string
	if port == 443 || port == 4431 || port == 44381 {
		s = sni(hostOnly(host))
	}
	c := tr.dialPublic(t, port, s, "")
	return exchange(t, c, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, host, extra), 1)[0]
}

// TestTokens: an app token opens its own hub's ports, as the password of
// Basic with any user name, on the hub's name or, without wildcard DNS, on
// the relay's own name or address; the hub sees no token, and the hub's
// own password after the token reaches the hub as its Basic credential.
func TestTokens(t *testing.T) {
	tr := twoHubs(t, func(c *Config) { c.PlaintextPorts = true })
	tokA := tr.tokens["a"]
	for _, tt := range []struct {
		name       string
		port       int
		host, auth string
		want       string // hub a's answer, or "" for a refusal
	}{
		{"on the hub's name, TLS", 4431, "a.localhost", basic("hubtunnel", tokA), who("a")},
		{"on the hub's name, plain", 2001, "a.localhost", basic("", tokA), who("a")},
		{"on the WebUI port", 443, "a.localhost", basic("x", tokA), who("a")},
		{"on the relay's name", 4431, "localhost", basic("hubtunnel", tokA), who("a")},
		{"on the relay's address", 2001, fmt.Sprintf("127.0.0.1:%d", 2001+tr.offset), basic("hubtunnel", tokA), who("a")},
		{"of another hub", 4431, "b.localhost", basic("hubtunnel", tokA), ""},
		{"cut short", 4431, "a.localhost", basic("hubtunnel", tokA[:len(tokA)-1]), ""},
		{"unknown", 4431, "a.localhost", basic("hubtunnel", store.TokenPrefix+strings.Repeat("A", 43)), ""},
		{"as the user name", 4431, "a.localhost", basic(tokA, ""), ""},
		{"none", 4431, "a.localhost", "", ""},
	} {
		got := tr.ask(t, tt.port, tt.host, "/who", tt.auth)
		if tt.want != "" && (got.code != 200 || got.body != tt.want) {
			t.Errorf("%s: %d %q %v; want hub a's answer", tt.name, got.code, got.body, got.err)
		}
		if tt.want == "" && (got.code == 200 || got.code == 0) {
			t.Errorf("%s: %d %q %v; want a refusal", tt.name, got.code, got.body, got.err)
		}
	}
	got := tr.ask(t, 4431, "a.localhost", "/headers", basic("Admin", tokA+":ccu:pass word"))
	if !strings.Contains(got.body, "\nAuthorization: Basic "+base64.StdEncoding.EncodeToString([]byte("Admin:ccu:pass word"))+"\n") || strings.Contains(got.body, tokA) {
		t.Errorf("the hub saw\n%s\nwant Basic Admin:ccu:pass word and no token", got.body)
	}
	got = tr.ask(t, 4431, "a.localhost", "/headers", basic("Admin", "hub password"))
	if got.code != 401 || got.header.Get("WWW-Authenticate") == "" {
		t.Errorf("the hub's own password alone: %d %q; want 401 with a challenge", got.code, got.header.Get("WWW-Authenticate"))
	}
}

// TestGrantsOpenTheirPartOfTheMap: a grant limited to the WebUI does not
// open XML-RPC or the script engine; the script engine needs its own
// grant; the owner reaches everything; a grant that has ended opens
// nothing; cookies count only on the WebUI ports.
func TestGrantsOpenTheirPartOfTheMap(t *testing.T) {
	tr := twoHubs(t, func(c *Config) { c.PlaintextPorts = true })
	web := tr.login(t, "web", "a", store.PortWebUI, time.Time{})
	rpc := tr.login(t, "rpc", "a", store.PortWebUI|store.PortXMLRPC, time.Time{})
	script := tr.login(t, "script", "a", store.PortsAll, tr.clock.now().Add(time.Hour))
	ctx := context.Background()
	db := tr.Store()
	mkToken := func(user string, p store.Ports) string {
		secret, _, err := db.CreateToken(ctx, store.TokenSpec{Hub: "a", User: user, Ports: p})
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	rpcToken := mkToken("rpc", store.PortXMLRPC)
	scriptToken := mkToken("script", store.PortScript)

	reaches := func(port int, extra string) bool {
		t.Helper()
		got := tr.ask(t, port, "a.localhost", "/who", extra)
		return got.code == 200 && got.body == who("a")
	}
	cookie := func(secret string, tls bool) string { return "Cookie: " + cookieName(tls) + "=" + secret + "\r\n" }
	for _, tt := range []struct {
		name  string
		port  int
		extra string
		want  bool
	}{
		{"webui grant, WebUI", 443, cookie(web, true), true},
		{"webui grant, WebUI plain", 80, cookie(web, false), true},
		{"webui grant's cookie on XML-RPC", 4431, cookie(web, true), false},
		{"rpc grant's cookie on XML-RPC (cookies count on the WebUI only)", 4431, cookie(rpc, true), false},
		{"rpc grant's token on XML-RPC", 4431, basic("u", rpcToken), true},
		{"rpc grant's token on plain XML-RPC", 2001, basic("u", rpcToken), true},
		{"rpc grant's token on the script engine", 44381, basic("u", rpcToken), false},
		{"rpc grant's token on the WebUI", 443, basic("u", rpcToken), false},
		{"script grant's token on the script engine", 44381, basic("u", scriptToken), true},
		{"script grant's token on plain script engine", 8181, basic("u", scriptToken), true},
		{"owner's session on the WebUI", 443, tr.cookie(true), true},
		{"operator's token on the script engine", 44381, tr.auth("a"), true},
		{"a TLS cookie on plain HTTP", 80, cookie(web, true), false},
	} {
		if got := reaches(tt.port, tt.extra); got != tt.want {
			t.Errorf("%s (port %d): reached the hub = %v, want %v", tt.name, tt.port, got, tt.want)
		}
	}
	// A token never reaches more than its maker may: when the script
	// grant ends, so does its token.
	tr.clock.advance(2 * time.Hour)
	if reaches(44381, basic("u", scriptToken)) || reaches(443, cookie(script, true)) {
		t.Error("the script grant's session or token still reaches the hub after the grant ended")
	}
}

// TestRevokeCutsOpenConnections: a revoke made by another process (here
// straight in the store, as hubrelay grant/revoke does) ends a download
// in flight and an open WebSocket within a second, and the next request
// on a kept-alive connection is refused.
func TestRevokeCutsOpenConnections(t *testing.T) {
	tr := twoHubs(t, nil)
	tech := tr.login(t, "tech", "a", store.PortWebUI, time.Time{})
	cookie := "Cookie: " + cookieName(true) + "=" + tech + "\r\n"

	download := tr.dialPublic(t, 443, sni("a.localhost"), "")
	io.WriteString(download, "GET /stream HTTP/1.1\r\nHost: a.localhost\r\n"+cookie+"\r\n")
	dl := bufio.NewReader(download)
	resp, err := http.ReadResponse(dl, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("download: %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	if line, err := body.ReadString('\n'); line != "first\n" {
		t.Fatalf("download's first line: %q %v", line, err)
	}

	ws := tr.dialPublic(t, 443, sni("a.localhost"), "")
	io.WriteString(ws, "GET /ws HTTP/1.1\r\nHost: a.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+cookie+"\r\n")
	wsr := bufio.NewReader(ws)
	if resp, err := http.ReadResponse(wsr, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}

	if err := tr.Store().Revoke(context.Background(), "tech", "a"); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	download.SetReadDeadline(revoked.Add(time.Second))
	rest, err := io.ReadAll(body)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the download still ran a second after the revoke (read %q)", rest)
	}
	if strings.Contains(string(rest), "last") {
		t.Fatalf("the download completed after the revoke: %q", rest)
	}
	t.Logf("download cut %v after the revoke", time.Since(revoked).Round(time.Millisecond))
	// The echoing hub sends nothing unasked: the read ends when the relay
	// closes the connection, or at the deadline if it does not.
	ws.SetReadDeadline(revoked.Add(time.Second))
	if _, err := io.Copy(io.Discard, wsr); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the WebSocket was still open a second after the revoke")
		}
	}

	got := tr.ask(t, 443, "a.localhost", "/who", cookie)
	if got.code != http.StatusNotFound {
		t.Errorf("a request after the revoke: %d %q; want the 404 of a hub not granted", got.code, got.body)
	}
	poll.Until(t, 10*time.Second, "the cut session's audit record", func() bool {
		es, err := tr.Store().Audit(context.Background(), store.AuditFilter{User: "tech", Kind: store.KindSession})
		if err != nil {
			t.Fatal(err)
		}
		cut := 0
		for _, e := range es {
			if e.Outcome == "cut" && e.Hub == "a" && e.Port == 443 && e.Requests == 1 && e.BytesDown > 0 && !e.Ended.IsZero() {
				cut++
			}
		}
		return cut == 2
	})
}

// TestExpiryCutsOpenConnections: a grant that ends while its user's
// download runs ends the download, on the relay's clock.
func TestExpiryCutsOpenConnections(t *testing.T) {
	tr := twoHubs(t, nil)
	tech := tr.login(t, "tech", "a", store.PortWebUI, tr.clock.now().Add(time.Hour))
	c := tr.dialPublic(t, 443, sni("a.localhost"), "")
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: a.localhost\r\nCookie: "+cookieName(true)+"="+tech+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("download: %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	if line, _ := body.ReadString('\n'); line != "first\n" {
		t.Fatalf("first line %q", line)
	}
	tr.clock.advance(time.Hour)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(body)
	if ne, ok := err.(net.Error); (ok && ne.Timeout()) || strings.Contains(string(rest), "last") {
		t.Fatalf("the download went on after the grant ended: %q %v", rest, err)
	}
}

// TestLoginHandOff: a page request without a session goes to the
// portal's login with the URL to come back to; the portal's one-time code
// sets the hub host's own cookie and leads to a path on that host only; a
// used, foreign or unknown code sets nothing.
func TestLoginHandOff(t *testing.T) {
	tr := twoHubs(t, nil)
	port := 443 + tr.offset
	got := tr.ask(t, 443, "a.localhost", "/some/page?x=1", "")
	wantLoc := fmt.Sprintf("https://localhost:%d/login?next=%s", port, url.QueryEscape(fmt.Sprintf("https://a.localhost:%d/some/page?x=1", port)))
	if got.code != http.StatusSeeOther || got.header.Get("Location") != wantLoc {
		// The test's Host has no port: the relay keeps the one the user typed.
		got = tr.ask(t, 443, fmt.Sprintf("a.localhost:%d", port), "/some/page?x=1", "")
		if got.code != http.StatusSeeOther || got.header.Get("Location") != wantLoc {
			t.Fatalf("no session: %d Location %q; want 303 to %s", got.code, got.header.Get("Location"), wantLoc)
		}
	}

	code := tr.handoffs.issue(tr.session, "a", tr.clock.now())
	got = tr.ask(t, 443, "a.localhost", "/.hubtunnel/auth?code="+code+"&next="+url.QueryEscape("/some/page?x=1"), "")
	ck := got.header.Get("Set-Cookie")
	if got.code != http.StatusSeeOther || got.header.Get("Location") != "/some/page?x=1" ||
		!strings.HasPrefix(ck, cookieName(true)+"="+tr.session+";") || !strings.Contains(ck, "Secure") || !strings.Contains(ck, "HttpOnly") ||
		!strings.Contains(ck, "SameSite=Lax") || strings.Contains(strings.ToLower(ck), "domain=") {
		t.Fatalf("hand-off: %d Location %q Set-Cookie %q", got.code, got.header.Get("Location"), ck)
	}
	for _, tt := range []struct{ name, path string }{
		{"used twice", "/.hubtunnel/auth?code=" + code},
		{"for another hub", "/.hubtunnel/auth?code=" + tr.handoffs.issue(tr.session, "b", tr.clock.now())},
		{"unknown", "/.hubtunnel/auth?code=nosuchcode"},
		{"none", "/.hubtunnel/auth"},
	} {
		got := tr.ask(t, 443, "a.localhost", tt.path, "")
		if got.code != http.StatusBadRequest || got.header.Get("Set-Cookie") != "" {
			t.Errorf("code %s: %d Set-Cookie %q; want 400 and no cookie", tt.name, got.code, got.header.Get("Set-Cookie"))
		}
	}
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", ""} {
		code := tr.handoffs.issue(tr.session, "a", tr.clock.now())
		got := tr.ask(t, 443, "a.localhost", "/.hubtunnel/auth?code="+code+"&next="+url.QueryEscape(next), "")
		if got.code != http.StatusSeeOther || got.header.Get("Location") != "/" {
			t.Errorf("next %q: %d Location %q; want / on the hub host", next, got.code, got.header.Get("Location"))
		}
	}
	expired := tr.handoffs.issue(tr.session, "a", tr.clock.now())
	tr.clock.advance(2 * handoffTTL)
	if got := tr.ask(t, 443, "a.localhost", "/.hubtunnel/auth?code="+expired, ""); got.code != http.StatusBadRequest {
		t.Errorf("an expired code: %d", got.code)
	}
	got = tr.ask(t, 443, "a.localhost", "/.hubtunnel/logout", tr.cookie(true))
	if got.code != http.StatusSeeOther || got.header.Get("Location") != fmt.Sprintf("https://localhost:%d/logout", port) && !strings.HasSuffix(got.header.Get("Location"), "/logout") ||
		!strings.Contains(got.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout on the hub host: %d Location %q Set-Cookie %q", got.code, got.header.Get("Location"), got.header.Get("Set-Cookie"))
	}
	if got := tr.ask(t, 443, "a.localhost", "/.hubtunnel/other", tr.cookie(true)); got.code != http.StatusNotFound {
		t.Errorf("another relay path: %d, want 404 (never forwarded)", got.code)
	}
}

// TestCrossOriginRequestsRefused: a request that changes something and
// carries the session cookie must come from the hub's own pages: another
// hub's page (same site, other origin) cannot post to this one.
func TestCrossOriginRequestsRefused(t *testing.T) {
	tr := twoHubs(t, nil)
	port := 443 + tr.offset
	post := func(extra string) int {
		c := tr.dialPublic(t, 443, sni("a.localhost"), "")
		raw := fmt.Sprintf("POST /who HTTP/1.1\r\nHost: a.localhost:%d\r\nContent-Length: 0\r\n%s%s\r\n", port, tr.cookie(true), extra)
		return exchange(t, c, raw, 1)[0].code
	}
	for _, tt := range []struct {
		name, extra string
		want        int
	}{
		{"same origin", fmt.Sprintf("Origin: https://a.localhost:%d\r\nSec-Fetch-Site: same-origin\r\n", port), 200},
		{"no browser headers (an app)", "", 200},
		{"another hub", fmt.Sprintf("Origin: https://b.localhost:%d\r\nSec-Fetch-Site: same-site\r\n", port), 403},
		{"another hub, no Origin", "Sec-Fetch-Site: same-site\r\n", 403},
		{"another site", "Origin: https://evil.example\r\n", 403},
		{"same host, plain HTTP origin", fmt.Sprintf("Origin: http://a.localhost:%d\r\n", port), 403},
	} {
		if got := post(tt.extra); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestHubCannotTouchRelayCookies: a hub's answer cannot set the relay's
// session cookie, nor a cookie for the whole domain (every other hub).
func TestHubCannotTouchRelayCookies(t *testing.T) {
	tr := twoHubs(t, nil)
	got := tr.ask(t, 443, "a.localhost", "/setcookie", tr.cookie(true))
	cks := got.header.Values("Set-Cookie")
	if len(cks) != 2 || cks[0] != "own=1; Path=/; HttpOnly" || cks[1] != "wide=2; Path=/" {
		t.Errorf("Set-Cookie the user got: %q; want the hub's own two, host-only, and none of the relay's", cks)
	}
}

// TestAuditRecords: a connection's requests become one session record
// with who, where, how many and how much; the hub's connect is recorded
// with what its agent said of itself; no record holds a secret.
func TestAuditRecords(t *testing.T) {
	tr := twoHubs(t, nil)
	c := tr.dialPublic(t, 4431, sni("b.localhost"), "")
	for range 3 {
		if got := exchange(t, c, "GET /who HTTP/1.1\r\nHost: b.localhost\r\n"+tr.auth("b")+"\r\n", 1)[0]; got.code != 200 {
			t.Fatalf("%d %v", got.code, got.err)
		}
	}
	c.Close()
	var rec store.Event
	poll.Until(t, 10*time.Second, "the session record", func() bool {
		es, _ := tr.Store().Audit(context.Background(), store.AuditFilter{Hubs: []string{"b"}, Kind: store.KindSession})
		if len(es) == 1 {
			rec = es[0]
		}
		return len(es) == 1
	})
	if rec.TokenID == 0 || rec.User != "" || rec.Port != 4431 || rec.Requests != 3 || rec.BytesUp < 100 || rec.BytesDown < 100 ||
		!strings.HasPrefix(rec.Source, "127.0.0.1:") || rec.Outcome != "ok" || rec.Ended.Before(rec.At) {
		t.Errorf("session record %+v", rec)
	}
	es, err := tr.Store().Audit(context.Background(), store.AuditFilter{Hubs: []string{"a"}, Kind: store.KindHubConnect})
	if err != nil || len(es) != 1 || es[0].Detail != "relay-test-agent" {
		t.Errorf("hub a's connect records: %+v %v", es, err)
	}
	all, _ := tr.Store().Audit(context.Background(), store.AuditFilter{})
	for _, e := range all {
		s := fmt.Sprintf("%+v", e)
		for _, secret := range []string{tr.tokens["a"], tr.tokens["b"], tr.session} {
			if strings.Contains(s, secret) {
				t.Errorf("an audit record holds a secret: %s", s)
			}
		}
	}
}

func TestParseSoftware(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want store.AgentInfo
	}{
		{"hubtunnel/0.2.0 (raspberrymatic 3.79.6.20241122 (Raspberry Pi 3 Model B Rev 1.2, arm64))",
			store.AgentInfo{Version: "0.2.0", Model: "raspberrymatic (Raspberry Pi 3 Model B Rev 1.2, arm64)", Firmware: "3.79.6.20241122"}},
		{"hubtunnel/0.1.0 (generic (amd64))", store.AgentInfo{Version: "0.1.0", Model: "generic (amd64)"}},
		{"hubtunnel/0.1.0 (unknown)", store.AgentInfo{Version: "0.1.0", Model: "unknown"}},
		{"relay-test-agent", store.AgentInfo{}},
		{"", store.AgentInfo{}},
	} {
		if got := parseSoftware(tt.in); got != tt.want {
			t.Errorf("parseSoftware(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// browser is an HTTP client as a browser is one: cookies, redirects
// followed, every name leading to the relay on loopback, Origin and
// Sec-Fetch-Site on posts.
func (tr *testRelay) browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return d.DialContext(ctx, network, "127.0.0.1:"+port)
		},
	}}
}

// TestLoginReachesTheHub: the way a browser goes: the hub's address leads
// to the portal's login, the login back to the page asked for on the hub,
// through the hand-off; logging out on the portal ends the hub host's
// session too.
func TestLoginReachesTheHub(t *testing.T) {
	tr := twoHubs(t, withMetrics(nil))
	tr.login(t, "tech", "a", store.PortWebUI, time.Time{})
	b := tr.browser(t)
	port := 443 + tr.offset
	hubURL := fmt.Sprintf("https://a.localhost:%d/who", port)
	resp, err := b.Get(hubURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Host != fmt.Sprintf("localhost:%d", port) || resp.Request.URL.Path != "/login" || !strings.Contains(string(page), `id="login-form"`) {
		t.Fatalf("the hub's address led to %s: %d %.200q", resp.Request.URL, resp.StatusCode, page)
	}
	post := func(u string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", fmt.Sprintf("https://localhost:%d", port))
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	loginURL := resp.Request.URL.String()
	wrong := post(loginURL, url.Values{"user": {"tech"}, "password": {"not it"}, "next": {hubURL}})
	wrong.Body.Close()
	if wrong.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d", wrong.StatusCode)
	}
	poll.Until(t, 10*time.Second, "the failed login to be counted", func() bool { return scrape(t, tr.Server)["hubrelay_login_failures_total"] == 1 })
	resp = post(loginURL, url.Values{"user": {"tech"}, "password": {"a long enough password"}, "next": {hubURL}})
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(page) != who("a") || resp.Request.URL.String() != hubURL {
		t.Fatalf("after the login: %s %d %q; want hub a's answer at %s", resp.Request.URL, resp.StatusCode, page, hubURL)
	}
	// The portal's logout ends the session on every host.
	resp, err = b.Get(fmt.Sprintf("https://localhost:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(home)
	if m == nil {
		t.Fatalf("no CSRF token on the portal's home: %.300q", home)
	}
	resp = post(fmt.Sprintf("https://localhost:%d/logout", port), url.Values{"csrf": {string(m[1])}})
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	resp, err = b.Get(hubURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/login" {
		t.Fatalf("after logout the hub's address led to %s (%d); want the login", resp.Request.URL, resp.StatusCode)
	}
}
