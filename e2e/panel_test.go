package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/panel"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestPanel is a hub owner at the settings panel in Chromium: the real
// agent (unenrolled) serves it, ccusim plays the CCU (its WebUI login
// gives the sid, its script engine checks it), and the real relay gives
// the enrollment code (`hubrelay hub add`). The agent is reached directly,
// not through the CCU's lighttpd (not installed here). The screenshots stay
// in the artifacts folder.
func TestPanel(t *testing.T) {
	t.Parallel()
	b := needBrowser(t)
	s := newHub(t, setupOpts{})

	dir := filepath.Join(s.dir, "garden")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a, err := testbed.NewAgent(&ports, filepath.Join(dir, "hub.toml"), s.bed, testbed.Hub{Name: "garden"}, testbed.AgentSpec{
		Targets:    testbed.SimTargets(func(svc string) string { return s.sim[svc] }),
		Unenrolled: true,
		Extra:      "[panel]\nrega = \"http://" + s.sim["script"] + "\"\nlanguage_file = \"" + filepath.Join(dir, "no-language") + "\"\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &newcomer{name: "garden", dir: dir, conf: a.Conf, ui: a.UI}
	n.start(s)
	base := "http://" + a.UI + panel.Prefix
	poll.Until(t, 10*time.Second, "the panel to answer its ping", func() bool {
		resp, err := http.Get(base + "ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// The WebUI's login (ccusim's test hook) gives the sid.
	resp, err := http.Post("http://"+s.sim["webui"]+"/login.htm", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	sidb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sid := string(sidb)

	// A foreign page's POST is refused, whatever session it carries.
	req, _ := http.NewRequest("POST", base+"api/restart", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("X-CCU-Session", sid)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a foreign-origin POST: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}

	out := run(t, bin.hubrelay, "hub", "add", "garden", "--owner", s.bed.Owner, "--config", s.relayConf)
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[2], "    ") {
		t.Fatalf("hubrelay hub add printed:\n%s", out)
	}
	code := strings.TrimSpace(lines[2])

	before := readFileString(a.Conf)
	b.run(t, "panel", map[string]string{"HT_PANEL": base, "HT_SID": sid, "HT_CODE": code, "HT_HUB": "garden"},
		"without a session the page refuses",
		"with the WebUI session the first-run state shows the code field",
		"a mistyped code is refused next to its field",
		"enrolled with the relay's code, the status turns connected as hub garden",
		"the panel: ",
		"the status reads: relay ",
		"the port map shows",
		"the service switched off and on again, connected",
		"restarted from the panel, connected since",
		"automatic updates switched off, and still off after the restart",
		`"check now" answers`,
		"a wrong allowed source is refused next to its field",
		"a changed allowed source is saved and applied",
		"the connection test reaches the relay",
		"the DNS trace answers",
		"the log shows the agent's last lines",
		"the statistics page: ",
		"in German a wrong allowed source is refused next to its field",
		`in German "check now" says: Das Relay bietet keine Updates an`,
		"in German the last problem reads: Der Proxy hat die Verbindung nicht durchgelassen",
	)
	after := readFileString(a.Conf)
	for _, want := range []string{"100.96.0.0/24", "auto = false", "rega = "} {
		if !strings.Contains(after, want) {
			t.Errorf("the config file lacks %q after the panel's changes:\n%s\n(before:\n%s)", want, after, before)
		}
	}
	n.waitConnected(t)
}

// TestPanelUpdate is the hub owner installing an update from the panel's
// update section in Chromium, on the addon as a CCU runs it (update_script,
// init script, supervisor; agent 0.1.0): the relay offers 0.3.0, whose
// agent never brings the tunnel up. "Check now" offers it, "install" shows
// its progress, and the page, left open through the agent's restarts, says
// it was rolled back and why; 0.1.0 runs again.
func TestPanelUpdate(t *testing.T) {
	t.Parallel()
	b := needBrowser(t)
	h := newUpdateHub(t, "10s")
	// The panel checks sessions with ccusim's script engine.
	conf := readFileString(h.conf) + "\n[panel]\nrega = \"http://" + h.sim["script"] + "\"\nlanguage_file = \"" + filepath.Join(h.root, "no-language") + "\"\n"
	writeFile(t, h.conf, conf)
	h.busybox(t, h.root, "sh", filepath.Join(h.root, "usr/local/etc/config/rc.d/hubtunnel"), "restart")
	h.waitVersion(t, "0.1.0", 15*time.Second)
	h.publish(t, "0.3.0", h.k.broken, "")

	resp, err := http.Post("http://"+h.sim["webui"]+"/login.htm", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	b.run(t, "panelupdate", map[string]string{"HT_PANEL": "http://" + h.uiAddr + panel.Prefix, "HT_SID": string(sid), "HT_VERSION": "0.3.0"},
		`"check now" offers 0.3.0`,
		`"install" shows its progress`,
		"the page says the update was rolled back and why",
	)
	if st := h.waitVersion(t, "0.1.0", 5*time.Second); st.Update.LastResult == nil || st.Update.LastResult.OK {
		t.Errorf("last_result after the panel's install: %+v", st.Update.LastResult)
	}
}
