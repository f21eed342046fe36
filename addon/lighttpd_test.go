package addon_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// ccuLighttpd runs the real lighttpd on the hub's root with a config laid
// out like RaspberryMatic's /etc/lighttpd/lighttpd.conf: the same modules
// (mod_proxy among them), document root /www with /www/addons the addons'
// web folder, .cgi run by tclsh, and /etc/config/lighttpd/*.conf included
// at the end. mod_setenv hands the CGIs the test's root and busybox PATH,
// which a hub does not need. It returns the server's base URL.
func ccuLighttpd(t *testing.T, h *hub) string {
	t.Helper()
	bin := need(t, "to test the addon's lighttpd snippet with the CCU's web server", "lighttpd", "/usr/sbin/lighttpd")
	tclsh := need(t, "to run the addon's CGIs", "tclsh")
	mkdirAll(t, h.path("/www"))
	if err := os.Symlink(h.path("/usr/local/etc/config/addons/www"), h.path("/www/addons")); err != nil {
		t.Fatal(err)
	}
	l := testbed.Lighttpd{
		Port:     freePort(t),
		DocRoot:  h.path("/www"),
		Tclsh:    tclsh,
		Env:      map[string]string{"HUBTUNNEL_ROOT": h.root, "PATH": envOf(h.env, "PATH"), "HUBTUNNEL_START_SETTLE": "1"},
		Include:  h.path("/etc/config/lighttpd/*.conf"),
		ErrorLog: h.path("/lighttpd-error.log"),
	}
	confPath := filepath.Join(t.TempDir(), "lighttpd.conf")
	if err := l.Write(confPath); err != nil {
		t.Fatal(err)
	}
	check := l.CheckArgs(bin, confPath)
	if out, err := exec.Command(check[0], check[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("lighttpd refuses the config: %v: %s", err, out)
	}
	args := l.Args(bin, confPath)
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := strings.TrimPrefix(l.URL(), "http://")
	poll.Until(t, 10*time.Second, "lighttpd listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return l.URL()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func envOf(env []string, key string) string {
	v := ""
	for _, e := range env {
		if k, val, ok := strings.Cut(e, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// get fetches url with optional headers and returns status and body.
func get(t *testing.T, method, u string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("action=start")
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestLighttpdProxiesPanel: the installed snippet makes the CCU's lighttpd
// pass /addons/hubtunnel/panel/ to the agent's ui_listen, path and Host
// unchanged; everything else under /addons/hubtunnel/ stays lighttpd's; an
// uninstall takes the snippet away.
func TestLighttpdProxiesPanel(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()

	// The snippet names the port the default config's ui_listen opens.
	snippet := readFile(t, h.path(lighttpdConf))
	if !strings.Contains(snippet, `"port" => 8099`) || !strings.Contains(readFile(t, h.path(confDir+"/../../../../addons/hubtunnel/etc/hubtunnel.toml")), `ui_listen = "127.0.0.1:8099"`) {
		t.Fatalf("the snippet's port and the default ui_listen disagree:\n%s", snippet)
	}
	// The panel's stand-in (the agent serves the real one) listens where
	// this machine has room: 8099 may be another test's. Only the port
	// number of the installed snippet is changed.
	var seen atomic.Value
	panel := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Host + " " + r.URL.RequestURI())
		if r.URL.Path == "/addons/hubtunnel/panel/ping" {
			io.WriteString(w, "ok")
			return
		}
		fmt.Fprintf(w, "panel %s", r.URL.RequestURI())
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go panel.Serve(l)
	t.Cleanup(func() { panel.Close() })
	writeFile(t, h.path(lighttpdConf), strings.Replace(snippet, "8099", strconv.Itoa(l.Addr().(*net.TCPAddr).Port), 1), 0o644)

	base := ccuLighttpd(t, h)
	if code, body, _ := get(t, "GET", base+"/addons/hubtunnel/panel/ping", nil); code != 200 || body != "ok" {
		t.Errorf("panel/ping through lighttpd: %d %q, want 200 ok", code, body)
	}
	if code, body, _ := get(t, "GET", base+"/addons/hubtunnel/panel/?sid=@AbCdE12345@", map[string]string{"Host": "ccu3-webui.fritz.box:8080"}); code != 200 || body != "panel /addons/hubtunnel/panel/?sid=@AbCdE12345@" {
		t.Errorf("panel/ through lighttpd: %d %q", code, body)
	}
	if got := seen.Load(); got != "ccu3-webui.fritz.box:8080 /addons/hubtunnel/panel/?sid=@AbCdE12345@" {
		t.Errorf("the agent saw %q; want Host and path unchanged", got)
	}
	// The page the button opens is lighttpd's own file.
	if code, body, _ := get(t, "GET", base+"/addons/hubtunnel/", nil); code != 200 || !strings.Contains(body, `"panel/ping"`) {
		t.Errorf("/addons/hubtunnel/: %d %q", code, body)
	}

	h.mustRC("uninstall")
	if exists(h.path(lighttpdConf)) {
		t.Fatal("uninstall left the lighttpd snippet")
	}
}

// rega is a stand-in for ReGaHss's HTTP port: it runs nothing but the one
// script the fallback page sends, and knows one session.
type rega struct {
	asked atomic.Int32
}

var sessionScript = regexp.MustCompile(`^Write\(system\.GetSessionVarStr\('([^']*)'\)\);$`)

func (g *rega) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.asked.Add(1)
	b, _ := io.ReadAll(r.Body)
	out := ""
	if m := sessionScript.FindStringSubmatch(string(b)); r.Method == "POST" && r.URL.Path == "/tclrega.exe" && m != nil && m[1] == "AbCdE12345" {
		out = "1234;0;0"
	}
	io.WriteString(w, out+"<xml><exec>/tclrega.exe</exec><sessionId></sessionId></xml>")
}

// TestFallbackPage: status.cgi, through the real lighttpd, refuses without
// a session ReGaHss knows (and never puts a malformed one into a script),
// shows the start error and the supervisor's state with one, and starts
// the service from a same-origin POST only.
func TestFallbackPage(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	g := &rega{}
	rs := &http.Server{Handler: g}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go rs.Serve(l)
	t.Cleanup(func() { rs.Close() })
	writeFile(t, h.path("/etc/rega_http.port"), strconv.Itoa(l.Addr().(*net.TCPAddr).Port)+"\n", 0o644)
	const why = "config: hubtunnel.toml:3: mtu: 99: want 1280 to 8000 <b>"
	writeFile(t, h.path(confDir+"/start-error"), why+"\n", 0o644)
	writeFile(t, h.path(statePath), "restarts=4\nlast_exit=SIGKILL\nlast_crash=1700000000\ngiven_up=1\n", 0o644)

	base := ccuLighttpd(t, h)
	page := base + "/addons/hubtunnel/status.cgi"
	for _, q := range []string{"", "?sid=", "?sid=@XyZ0000000@", "?sid=" + url.QueryEscape("@AbCdE1234');x@"), "?sid=@AbCdE12345@@"} {
		code, body, _ := get(t, "GET", page+q, nil)
		if code != 403 || strings.Contains(body, "mtu") {
			t.Errorf("GET %s: %d, want 403 and nothing shown\n%s", q, code, body)
		}
	}
	if n := g.asked.Load(); n != 1 {
		t.Errorf("ReGaHss was asked %d times, want once (only the well-formed unknown session)", n)
	}

	const sid = "?sid=@AbCdE12345@"
	// With its @s encoded, as the panel takes it too.
	if code, body, _ := get(t, "GET", page+"?sid=%40AbCdE12345%40", nil); code != 200 || !strings.Contains(body, `action="status.cgi?sid=@AbCdE12345@"`) {
		t.Errorf("GET with the session's @s as %%40: %d\n%s", code, body)
	}
	code, body, _ := get(t, "GET", page+sid, nil)
	if code != 200 || !strings.Contains(body, "mtu: 99: want 1280 to 8000 &lt;b&gt;") || !strings.Contains(body, `id="given-up"`) || !strings.Contains(body, "SIGKILL") {
		t.Fatalf("GET with a session: %d\n%s", code, body)
	}
	if !strings.Contains(body, `<form method="post" action="status.cgi`+sid+`"`) {
		t.Errorf("no start button:\n%s", body)
	}

	// POSTs: a foreign or missing Origin is refused and starts nothing.
	host := strings.TrimPrefix(base, "http://")
	for _, hdr := range []map[string]string{nil, {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/addons/hubtunnel/"}} {
		if code, _, _ := get(t, "POST", page+sid, hdr); code != 403 {
			t.Errorf("POST with %v: %d, want 403", hdr, code)
		}
	}
	if code, _, _ := get(t, "POST", page, map[string]string{"Origin": "http://" + host}); code != 403 {
		t.Errorf("POST without a session: %d, want 403", code)
	}
	if a := h.agents(); len(a) != 0 {
		t.Fatalf("a refused POST started the agent: %v", a)
	}
	code, body, _ = get(t, "POST", page+sid, map[string]string{"Origin": "http://" + host})
	if code != 200 || !strings.Contains(body, "Gestartet / started") {
		t.Fatalf("POST start: %d\n%s", code, body)
	}
	h.waitOneAgent()
	if _, err := os.Stat(filepath.Join(h.root, statePath)); err == nil {
		t.Error("supervisor.state survived a start")
	}
}
