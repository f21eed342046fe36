package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/panel"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestCCUWebUI is the hub owner at the settings panel as a CCU serves it:
// the addon package (scripts/addon.sh, with the real agent) installed by
// its update_script under busybox into a folder that stands for the hub's
// / (HUBTUNNEL_ROOT), the CCU's web server (Debian's lighttpd with a
// CCU-like config and the addon's snippet, only its port changed), ccusim
// as the CCU's WebUI login and script engine, and the real relay. Chromium
// opens the control-panel button's address, /addons/hubtunnel/?sid=@…@,
// and follows index.html to the panel through lighttpd's proxy; the
// panel's same-origin check must take the page's own POSTs as lighttpd
// passes them on, and refuse a foreign Origin. The WebUI's Download button
// for an addon update (a stand-in of the WebUI's page, which opens
// update-check.cgi?cmd=download in a new tab) leads to the panel's update
// section with the session of the page it came from. The agent killed, its
// supervisor runs it again, and the panel shows the restart and how the
// agent ended. With the agent stopped
// after a failed start, the same address leads to status.cgi, which says
// why, and whose start button brings the panel back. The screenshots stay
// in the artifacts folder.
func TestCCUWebUI(t *testing.T) {
	t.Parallel()
	b := needBrowser(t)
	s := newHub(t, setupOpts{})
	c := newCCU(t, s)
	sid := c.sid

	// Through lighttpd, as a script would try it: no session or a made-up
	// one gets no page; a POST carrying the owner's session but another
	// page's Origin is refused before anything is done.
	panelURL := c.web + panel.Prefix
	for _, q := range []string{"", "?sid=@XyZ0000000@", "?sid=" + sid} {
		code, body := c.do(t, "GET", panelURL+q, nil, "")
		want := http.StatusForbidden
		if q == "?sid="+sid {
			want = http.StatusOK
		}
		if code != want {
			t.Errorf("GET panel/%s through lighttpd: %d, want %d\n%.300s", q, code, want, body)
		}
	}
	enroll := panelURL + "api/enroll"
	self := c.web // the Origin of the button's page: lighttpd's own address
	for _, h := range []map[string]string{
		{"Origin": "http://evil.example"},
		{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
		{"Origin": self, "Sec-Fetch-Site": "cross-site"},
		{"Origin": "null"},
		{},
	} {
		h["X-CCU-Session"] = sid
		if code, body := c.do(t, "POST", enroll, h, `{"code":"XXXX-YYYY-ZZZZ"}`); code != http.StatusForbidden {
			t.Errorf("POST api/enroll through lighttpd with %v: %d, want 403\n%s", h, code, body)
		}
	}
	// The page's own Origin passes the check, through lighttpd: the
	// mistyped code is refused for what it is.
	if code, body := c.do(t, "POST", enroll, map[string]string{"Origin": self, "X-CCU-Session": sid}, `{"code":"XXXX-YYYY-ZZZZ"}`); code != http.StatusUnprocessableEntity || !strings.Contains(body, `"field":"code"`) {
		t.Errorf("POST api/enroll with the page's own Origin through lighttpd: %d %s, want 422 for the code", code, body)
	}

	out := run(t, bin.hubrelay, "hub", "add", "garden", "--owner", s.bed.Owner, "--config", s.relayConf)
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[2], "    ") {
		t.Fatalf("hubrelay hub add printed:\n%s", out)
	}
	code := strings.TrimSpace(lines[2])

	button := c.web + "/addons/hubtunnel/"
	// A stand-in of the WebUI's page, at its address: the addon list's
	// Download button opens the addon's Update URL with cmd=download in a
	// new tab (cp_software.cgi; RaspberryMatic patch 0063).
	if err := os.MkdirAll(c.path("/www/pages"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c.path("/www/pages/index.htm"), `<!DOCTYPE html><html><head><meta charset="utf-8"><title>WebUI</title></head><body>
<button id="download" onclick="window.open('/addons/hubtunnel/update-check.cgi?cmd=download&amp;version=1.0.0-e2e')">Herunterladen</button>
</body></html>
`)
	b.run(t, "ccuweb", map[string]string{"HT_PHASE": "panel", "HT_BUTTON": button, "HT_SID": sid, "HT_CODE": code, "HT_HUB": "garden"},
		"without a session the button's page leads to the panel, which refuses",
		"a made-up session is refused",
		"with the WebUI session the button's page leads to the panel: the code field",
		"enrolled through lighttpd, the status turns connected as hub garden",
		"the WebUI's Download button leads to the panel's update section, logged in",
	)
	c.waitState(t, "connected", "garden")

	// A crash: the agent killed, its supervisor runs it again after its
	// backoff, and the panel says so.
	pidFile := c.path("/var/run/hubtunnel.pid")
	crashed := strings.TrimSpace(readFileString(pidFile))
	pid, err := strconv.Atoi(crashed)
	if err != nil {
		t.Fatalf("the agent's pid file says %q", crashed)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 20*time.Second, "the supervisor to run the agent again", func() bool {
		p := strings.TrimSpace(readFileString(pidFile))
		return p != "" && p != crashed
	})
	c.waitState(t, "connected", "garden")
	b.run(t, "ccuweb", map[string]string{"HT_PHASE": "crashed", "HT_BUTTON": button, "HT_SID": sid, "HT_HUB": "garden"},
		"after a crash the panel says the agent was restarted",
	)

	// Stopped, and a start that failed on a typo in the config: the agent
	// itself leaves why in start-error.
	c.rc(t, "stop")
	if code, _ := c.do(t, "GET", panelURL+"ping", nil, ""); code == http.StatusOK {
		t.Fatal("the panel still answers its ping through lighttpd after stop")
	}
	good := readFileString(c.conf)
	writeFile(t, c.conf, strings.Replace(good, "\n[ccu]", "mtu = 99\n\n[ccu]", 1))
	if out, err := c.sh("rc.d/hubtunnel start", c.path(rcPath), "start"); err == nil {
		t.Fatalf("rc.d/hubtunnel start with mtu = 99 succeeded:\n%s", out)
	}
	if why := readFileString(filepath.Join(filepath.Dir(c.conf), "start-error")); !strings.Contains(why, "mtu") {
		t.Fatalf("start-error after a failed start: %q", why)
	}
	writeFile(t, c.conf, good)

	b.run(t, "ccuweb", map[string]string{"HT_PHASE": "stopped", "HT_BUTTON": button, "HT_SID": sid, "HT_HUB": "garden", "HT_WHY": "mtu"},
		"with the agent stopped the button's page leads to status.cgi: not running",
		"status.cgi shows why the last start failed",
		"its start button starts the service",
		"its link leads back to the panel, connected as hub garden",
	)
	c.waitState(t, "connected", "garden")
}

// Where the addon puts things on a hub (addon/update_script), under the
// test's root.
const (
	ccuConfDir = "/usr/local/etc/config/addons/hubtunnel"
	rcPath     = "/usr/local/etc/config/rc.d/hubtunnel"
	snippet    = "/usr/local/etc/config/lighttpd/hubtunnel.conf"
)

// ccu is a pretend CCU: a root folder with the addon installed (the real
// agent, its supervisor running from the init script) and lighttpd serving
// the root's /www.
type ccu struct {
	root string   // HUBTUNNEL_ROOT
	env  []string // what the addon's scripts run with
	conf string   // the agent's config
	ui   string   // the agent's ui_listen
	web  string   // lighttpd, http://127.0.0.1:PORT
	sid  string   // a live WebUI session (ccusim's login)
	hc   *http.Client
}

func (c *ccu) path(p string) string { return filepath.Join(c.root, p) }

// newCCU builds the addon package around the e2e agent binary, writes the
// addon's default config (ui_listen on a free port, [panel] rega at
// ccusim's script engine, the CCU's paths moved into the root) where the
// init script finds it, installs the package, and starts lighttpd.
func newCCU(t *testing.T, s *hubSetup) *ccu {
	t.Helper()
	busybox := need(t, "to run the addon's scripts under the shell a CCU has", "busybox", "/bin/busybox")
	need(t, "to build the addon package", "bash")
	need(t, "to run the addon's Tcl scripts", "tclsh")
	lighttpd := need(t, "as the CCU's web server", "lighttpd", "/usr/sbin/lighttpd")
	tclsh := need(t, "to run the addon's CGIs", "tclsh")
	// The package's name for this machine's binary, and what uname -m says.
	am, ok := map[string][2]string{
		"amd64": {"amd64", "x86_64"}, "arm64": {"arm64", "aarch64"}, "386": {"386", "i686"}, "arm": {"armv7", "armv7l"},
	}[runtime.GOARCH]
	if !ok {
		t.Skipf("the addon has no binary for %s", runtime.GOARCH)
	}
	arch, machine := am[0], am[1]

	// The WebUI's login (ccusim's test hook) gives the sid.
	resp, err := http.Post("http://"+s.sim["webui"]+"/login.htm", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	dir := filepath.Join(s.dir, "ccu")
	c := &ccu{root: filepath.Join(dir, "root"), sid: string(sid), hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	for _, d := range []string{"etc", "var/run", "usr/local/etc/config", "usr/local/tmp", "www", "bin"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../usr/local/etc/config", c.path("etc/config")); err != nil {
		t.Fatal(err)
	}
	// The shell and applets a CCU has, first in PATH.
	bbdir := filepath.Join(dir, "busybox")
	if err := os.Mkdir(bbdir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, busybox, "--install", "-s", bbdir)
	path := bbdir + string(os.PathListSeparator) + os.Getenv("PATH")
	c.env = []string{"HUBTUNNEL_ROOT=" + c.root, "HUBTUNNEL_MACHINE=" + machine, "PATH=" + path}
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "PATH" && !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			c.env = append(c.env, e)
		}
	}

	// The addon's default config, as the init script would write it, with
	// what a test must change.
	uiPort := freePort(t)
	c.ui = fmt.Sprintf("127.0.0.1:%d", uiPort)
	def := readFileString(filepath.Join("..", "addon", "hubtunnel", "etc", "hubtunnel.toml"))
	conf := def
	for _, r := range [][2]string{
		{`ui_listen = "127.0.0.1:8099"`, fmt.Sprintf("ui_listen = %q", c.ui)},
		{`"/etc/config/firewall.conf"`, fmt.Sprintf("%q", c.path("/etc/config/firewall.conf"))},
		{`"/usr/local/etc/config/rc.d/hubtunnel"`, fmt.Sprintf("%q", c.path(rcPath))},
		{`"/usr/local/tmp"`, fmt.Sprintf("%q", c.path("/usr/local/tmp"))},
	} {
		if strings.Count(conf, r[0]) != 1 {
			t.Fatalf("the addon's default config has no %s (or more than one):\n%s", r[0], def)
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	conf += fmt.Sprintf("\n[panel]\nrega = %q\nlanguage_file = %q\n", "http://"+s.sim["script"], c.path("/etc/config/systemLanguage"))
	c.conf = c.path(ccuConfDir + "/hubtunnel.toml")
	if err := os.MkdirAll(filepath.Dir(c.conf), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c.conf, conf)
	// status.cgi asks ReGaHss on its own port (ccusim's script engine).
	writeFile(t, c.path("/etc/rega_http.port"), strings.TrimPrefix(s.sim["script"], "127.0.0.1:")+"\n")

	// The package, with the e2e binary as this machine's agent.
	bindir := filepath.Join(dir, "pkgbin")
	if err := os.Mkdir(bindir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin.hubtunnel, filepath.Join(bindir, "hubtunnel-"+arch)); err != nil {
		t.Fatal(err)
	}
	pkgOut := filepath.Join(dir, "pkg")
	build := exec.Command("bash", filepath.Join("..", "scripts", "addon.sh"), "1.0.0-e2e", pkgOut)
	build.Env = append(os.Environ(), "BINDIR="+bindir, "ARCHS="+arch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/addon.sh: %v\n%s", err, out)
	}
	unpacked := filepath.Join(dir, "unpacked")
	if err := os.Mkdir(unpacked, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, busybox, "tar", "-xzf", filepath.Join(pkgOut, "hubtunnel-1.0.0-e2e.tgz"), "-C", unpacked)

	// Whatever runs at the end, the agent and its supervisor go.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- the agent's last log lines (panel) ---\n%s", c.logs())
		}
		if out, err := c.sh("rc.d/hubtunnel stop", c.path(rcPath), "stop"); err != nil {
			t.Errorf("rc.d/hubtunnel stop at the end: %v\n%s", err, out)
		}
	})
	install := exec.Command(busybox, "sh", "./update_script", "HM-RASPBERRYMATIC")
	install.Dir = unpacked
	install.Env = c.env
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("update_script: %v\n%s", err, out)
	}

	// The addon's snippet, only the port changed: 8099 may be another's.
	sn := readFileString(c.path(snippet))
	if strings.Count(sn, `"port" => 8099`) != 1 {
		t.Fatalf("the installed lighttpd snippet does not name port 8099 once:\n%s", sn)
	}
	writeFile(t, c.path(snippet), strings.Replace(sn, `"port" => 8099`, fmt.Sprintf(`"port" => %d`, uiPort), 1))

	if err := os.Symlink(c.path("/usr/local/etc/config/addons/www"), c.path("/www/addons")); err != nil {
		t.Fatal(err)
	}
	l := testbed.Lighttpd{
		Port:     freePort(t),
		DocRoot:  c.path("/www"),
		Tclsh:    tclsh,
		Env:      map[string]string{"HUBTUNNEL_ROOT": c.root, "PATH": path},
		Include:  c.path("/etc/config/lighttpd/*.conf"),
		ErrorLog: filepath.Join(dir, "lighttpd-error.log"),
	}
	lconf := filepath.Join(dir, "lighttpd.conf")
	if err := l.Write(lconf); err != nil {
		t.Fatal(err)
	}
	run(t, l.CheckArgs(lighttpd, lconf)...)
	p := start(t, dir, "lighttpd", l.Args(lighttpd, lconf)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- lighttpd's error log ---\n%s", readFileString(l.ErrorLog))
		}
	})
	c.web = l.URL()
	waitListening(t, p, strings.TrimPrefix(c.web, "http://"))
	poll.Until(t, 15*time.Second, "the panel to answer its ping through lighttpd", func() bool {
		code, body := c.do(t, "GET", c.web+panel.Prefix+"ping", nil, "")
		return code == http.StatusOK && body == "ok"
	})
	return c
}

// sh runs a script of the addon under busybox sh, as the hub would.
func (c *ccu) sh(what string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "busybox", append([]string{"sh"}, argv...)...)
	cmd.Dir = c.root
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s did not finish within 60 s", what)
	}
	return string(out), err
}

// rc runs the init script with op and fails the test unless it succeeds.
func (c *ccu) rc(t *testing.T, op string) {
	t.Helper()
	if out, err := c.sh("rc.d/hubtunnel "+op, c.path(rcPath), op); err != nil {
		t.Fatalf("rc.d/hubtunnel %s: %v\n%s", op, err, out)
	}
}

// do sends a request (a JSON body when body is set) and returns the status
// and body; a request that fails outright is status 0.
func (c *ccu) do(t *testing.T, method, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitState waits until the agent's status API says state, as hub name.
func (c *ccu) waitState(t *testing.T, state, name string) {
	t.Helper()
	var last localapi.Status
	var lastErr error
	reached := false
	defer func() {
		if !reached {
			t.Logf("the agent's status last said state %q, name %q, last error %q (%v)", last.State, last.Name, last.LastError, lastErr)
		}
	}()
	poll.Until(t, 20*time.Second, fmt.Sprintf("the agent to report %q as hub %s", state, name), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		last, lastErr = localapi.NewClient(c.ui).Status(ctx)
		return lastErr == nil && last.State == state && last.Name == name
	})
	reached = true
}

// logs is the agent's last log lines, as the panel shows them (the agent
// logs to the system log, which this machine may not have).
func (c *ccu) logs() string {
	req, err := http.NewRequest("GET", "http://"+c.ui+panel.Prefix+"api/logs", nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("X-CCU-Session", c.sid)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	return logLines(resp.Body)
}

// logLines returns the log lines of the panel's api/logs answer, one a
// line, or the answer as it is.
func logLines(r io.Reader) string {
	b, _ := io.ReadAll(r)
	var v struct {
		Lines []string `json:"lines"`
	}
	if json.Unmarshal(b, &v) != nil || v.Lines == nil {
		return string(b)
	}
	return strings.Join(v.Lines, "\n")
}
