package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// counts asks ccusim, on loopback and not through the relay, what has
// reached it.
func (s *hubSetup) counts() ccusim.Counts {
	s.t.Helper()
	resp, err := http.Get("http://" + s.sim["webui"] + ccusim.CountsPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var c ccusim.Counts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// hubrelay runs the relay's CLI on the setup's config (the relay running)
// with stdin and returns what it printed.
func (s *hubSetup) hubrelay(stdin string, args ...string) string {
	s.t.Helper()
	cmd := exec.Command(bin.hubrelay, append(args, "--config", s.relayConf)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("hubrelay %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var tokenRE = regexp.MustCompile(`htk_[A-Za-z0-9_-]{43}`)

// token makes an app token with hubrelay token add and returns it and its
// number.
func (s *hubSetup) token(args ...string) (secret string, id int) {
	s.t.Helper()
	out := s.hubrelay("", append([]string{"token", "add", "demo"}, args...)...)
	secret = tokenRE.FindString(out)
	m := regexp.MustCompile(`token #(\d+)`).FindStringSubmatch(out)
	if secret == "" || m == nil {
		s.t.Fatalf("hubrelay token add printed no token:\n%s", testbed.Redacted(out))
	}
	id, _ = strconv.Atoi(m[1])
	return secret, id
}

// xmlrpcCall is an XML-RPC listDevices request.
const xmlrpcCall = `<?xml version="1.0"?><methodCall><methodName>listDevices</methodName><params/></methodCall>`

// curlStatus sends what curl sends to url (a hub's port at the relay, any
// host leading to 127.0.0.1) and returns the HTTP status.
func curlStatus(t *testing.T, curl, rawURL string, extra ...string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
		"--resolve", u.Hostname() + ":" + u.Port() + ":127.0.0.1"}, extra...)
	out, err := exec.Command(curl, append(args, rawURL)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 22 {
			t.Fatalf("curl %s: %v %s", testbed.Redacted(rawURL), err, out)
		}
	}
	code, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return code
}

// pythonCall calls listDevices with Python's xmlrpc.client at url and
// returns "ok N" (N devices) or the error's class and code.
func pythonCall(t *testing.T, python, rawURL string) string {
	t.Helper()
	// Python does not resolve *.localhost; the test's names all lead to
	// the relay on loopback, as a real name would lead to a real relay.
	const prog = `
import socket, ssl, sys, xmlrpc.client as x
resolve = socket.getaddrinfo
socket.getaddrinfo = lambda h, *a, **k: resolve("127.0.0.1" if h.endswith(".localhost") else h, *a, **k)
try:
    print("ok", len(x.ServerProxy(sys.argv[1], context=ssl._create_unverified_context()).listDevices()))
except x.ProtocolError as e:
    print("refused", e.errcode)
`
	out, err := exec.Command(python, "-c", prog, rawURL).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 %s: %v\n%s", testbed.Redacted(rawURL), err, testbed.Redacted(string(out)))
	}
	return strings.TrimSpace(string(out))
}

// TestNothingUnauthenticatedReachesTheHub: wrong, absent, expired and
// revoked credentials, and credentials for another part of the map, never
// reach the hub (ccusim counts what reaches it) — from curl and Python's
// xmlrpc.client, on every port of the map the hub serves; good ones do,
// and the hub never sees the relay's credentials.
func TestNothingUnauthenticatedReachesTheHub(t *testing.T) {
	curl := need(t, "as an app would call the relay", "curl")
	python := need(t, "as an XML-RPC app would call the relay", "python3")
	s := newHub(t, setupOpts{offlineHubs: 1})
	s.startAgent(agentOpts{})
	s.waitConnected(30 * time.Second)

	// Who is who: the bed's owner owns the hubs; "web" may use the WebUI,
	// "rpc" also XML-RPC, "root" everything, the script engine included.
	for _, u := range []string{"web", "rpc", "root"} {
		s.hubrelay("a long enough password\n", "user", "add", u)
	}
	s.hubrelay("", "grant", "web", "demo", "--ports", "webui")
	s.hubrelay("", "grant", "rpc", "demo", "--ports", "webui,xmlrpc")
	s.hubrelay("", "grant", "root", "demo", "--ports", "all")
	rpcToken, _ := s.token("--user", "rpc", "--ports", "xmlrpc")
	rootToken, _ := s.token("--user", "root", "--ports", "all")
	revoked, revokedID := s.token("--ports", "all")
	s.hubrelay("", "token", "revoke", strconv.Itoa(revokedID))
	expiring, _ := s.token("--ports", "all", "--expires", "3s")
	made := time.Now()
	offline := s.bed.Token("offline1")
	wrong := "htk_" + strings.Repeat("x", 43)

	// The map's ports the hub serves here, by part.
	type port struct {
		n      int
		scheme string
		part   string
		rpc    bool // Python calls it too (one plain and one TLS port: a Python start is slow)
	}
	ports := []port{
		{80, "http", "webui", false}, {443, "https", "webui", false},
		{2000, "http", "xmlrpc", false}, {2001, "http", "xmlrpc", true}, {2010, "http", "xmlrpc", false},
		{4430, "https", "xmlrpc", false}, {4431, "https", "xmlrpc", true}, {4434, "https", "xmlrpc", false},
		{8181, "http", "script", false}, {44381, "https", "script", false},
	}
	hubURL := func(p port, host, user, pass string) string {
		u := fmt.Sprintf("%s://%s:%d/", p.scheme, host, p.n+s.offset)
		if p.part == "script" {
			u += "tclrega.exe"
		}
		if pass != "" {
			u = strings.Replace(u, "://", "://"+url.UserPassword(user, pass).String()+"@", 1)
		}
		return u
	}
	poll.Until(t, 10*time.Second, "the expiring token to expire", func() bool { return time.Since(made) > 3500*time.Millisecond })

	before := s.counts()
	type attempt struct {
		name        string
		user, token string
		reaches     func(p port) bool
	}
	never := func(port) bool { return false }
	attempts := []attempt{
		{"no credential", "", "", never},
		{"a wrong token", "hubtunnel", wrong, never},
		{"a revoked token", "hubtunnel", revoked, never},
		{"an expired token", "hubtunnel", expiring, never},
		{"another hub's token", "hubtunnel", offline, never},
		{"the hub's own password alone", "Admin", "ccu-password", never},
		{"the token as the user name", rootToken, "x", never},
		{"rpc's XML-RPC token", "hubtunnel", rpcToken, func(p port) bool { return p.part == "xmlrpc" }},
		{"root's token", "hubtunnel", rootToken, func(port) bool { return true }},
	}
	for _, a := range attempts {
		for _, p := range ports {
			for _, host := range []string{"demo.localhost", "localhost"} {
				want := a.reaches(p)
				if host == "localhost" && p.part == "webui" {
					want = false // the relay's own name on the WebUI ports is its portal
				}
				c0 := s.counts()
				args := []string{}
				if p.part != "webui" {
					args = append(args, "-H", "Content-Type: text/xml", "--data", xmlrpcCall)
				}
				code := curlStatus(t, curl, hubURL(p, host, a.user, a.token), args...)
				c1 := s.counts()
				reached := total(c1) > total(c0)
				if reached != want || (want && code != 200) || (!want && code == 200) {
					t.Errorf("curl, %s, %s port %d: status %d, reached the hub %v; want reached %v", a.name, host, p.n, code, reached, want)
				}
				if p.rpc {
					got := pythonCall(t, python, hubURL(p, host, a.user, a.token))
					reached = total(s.counts()) > total(c1)
					if reached != want || (want != strings.HasPrefix(got, "ok ")) {
						t.Errorf("xmlrpc.client, %s, %s port %d: %q, reached the hub %v; want reached %v", a.name, host, p.n, got, reached, want)
					}
				}
			}
		}
	}
	after := s.counts()
	if after.RelayCredentials != before.RelayCredentials {
		t.Errorf("%d requests reached the hub with the relay's token or cookie", after.RelayCredentials-before.RelayCredentials)
	}

	// A browser's login (curl with a cookie jar, as the portal's form is
	// posted): "web" reaches the WebUI on the hub's name, and its cookie
	// opens no other port.
	jar, _ := cookiejar.New(nil)
	b := testbed.LoopbackClient(true, 30*time.Second)
	b.Jar = jar
	page := fmt.Sprintf("https://demo.localhost:%d/", 443+s.offset)
	var c0 ccusim.Counts
	resp, _ := portalLogin(t, b, page, "web", "a long enough password", func() { c0 = s.counts() })
	if resp.StatusCode != 200 || resp.Request.URL.String() != page || s.counts().Requests["webui"] != c0.Requests["webui"]+1 {
		t.Fatalf("after the login: %d at %s; want the hub's WebUI", resp.StatusCode, resp.Request.URL)
	}
	cookie := ""
	for _, ck := range jar.Cookies(&url.URL{Scheme: "https", Host: "demo.localhost"}) {
		cookie = ck.Name + "=" + ck.Value
	}
	for _, p := range ports {
		if p.part == "webui" {
			continue
		}
		c0 := s.counts()
		code := curlStatus(t, curl, hubURL(p, "demo.localhost", "", ""), "-H", "Cookie: "+cookie, "-H", "Content-Type: text/xml", "--data", xmlrpcCall)
		if code == 200 || total(s.counts()) != total(c0) {
			t.Errorf("the WebUI user's cookie on port %d: %d, reached the hub; want refused", p.n, code)
		}
	}
}

func total(c ccusim.Counts) int {
	n := 0
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// TestPrintedTokenLinesWork: the Python and curl lines hubrelay token add
// prints for an app work as printed against the running relay.
func TestPrintedTokenLinesWork(t *testing.T) {
	need(t, "to run the printed curl line", "curl")
	need(t, "to run the printed Python line", "python3")
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(30 * time.Second)
	out := s.hubrelay("", "token", "add", "demo", "--ports", "xmlrpc", "--label", "e2e")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "python3 -c ") || strings.HasPrefix(l, "curl ") && strings.Contains(l, "methodCall") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 2 {
		t.Fatalf("token add printed no Python and curl lines:\n%s", testbed.Redacted(out))
	}
	for _, l := range lines {
		c0 := total(s.counts())
		got, err := exec.Command("sh", "-c", l).CombinedOutput()
		if err != nil || !strings.Contains(string(got), "ADDRESS") && !strings.Contains(string(got), "listMethods") || total(s.counts()) == c0 {
			t.Errorf("the printed line %q: %v\n%.300s", strings.Fields(l)[0], err, got)
		}
	}
}

// portalLogin opens page (a hub's WebUI) with the browser-like client b,
// which must be sent to the relay's login, and posts the login form as
// the portal's page does, with user and password; before, if not nil, is
// called just before the post. It returns the response the post ended in
// (its body read and closed) and the body.
func portalLogin(t *testing.T, b *http.Client, page, user, password string, before func()) (*http.Response, []byte) {
	t.Helper()
	resp, err := b.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	login := resp.Request.URL
	if login.Path != "/login" {
		t.Fatalf("%s without a login led to %s", page, login)
	}
	form := url.Values{"user": {user}, "password": {password}, "next": {page}}
	req, _ := http.NewRequest("POST", login.Scheme+"://"+login.Host+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", login.Scheme+"://"+login.Host)
	if before != nil {
		before()
	}
	if resp, err = b.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}
