package addon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

func TestInstallPutsFilesInPlace(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	// Another addon's button, which must survive.
	writeFile(t, h.path(hmAddonsCfg), "cuxd {ID cuxd CONFIG_URL /addons/cuxd/ CONFIG_NAME CUxD CONFIG_DESCRIPTION {de {<li>x</li>} en {<li>y</li>}}}", 0o644)

	r := h.install()
	if r.code != 0 {
		t.Fatalf("update_script exited %d, want 0 (no reboot)\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "wrote the default config") {
		t.Errorf("update_script should say it wrote the default config; stdout: %s", r.stdout)
	}

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{binPath, 0o755},
		{versionPath, 0o644},
		{rcPath, 0o755},
		{wwwPath + "/update-check.cgi", 0o644},
		{wwwPath + "/index.html", 0o644},
		{wwwPath + "/status.cgi", 0o644},
		{"/usr/local/addons/hubtunnel/etc/hubtunnel.toml", 0o644},
		{lighttpdConf, 0o644},
		{confPath, 0o600},
		{"/usr/local/addons/hubtunnel/lib/hm_addons.tcl", 0o644},
		{confDir, os.ModeDir | 0o700},
	} {
		fi, err := os.Stat(h.path(f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, fi.Mode(), f.mode)
		}
	}
	if got := readFile(t, h.path(binPath)); got != standIn("amd64") {
		t.Errorf("installed binary is not hubtunnel-amd64:\n%s", got)
	}
	if got := strings.TrimSpace(readFile(t, h.path(versionPath))); got != testVersion {
		t.Errorf("VERSION = %q, want %q", got, testVersion)
	}
	if got, want := readFile(t, h.path(confPath)), readFile(t, "hubtunnel/etc/hubtunnel.toml"); got != want {
		t.Errorf("the first start wrote\n%s\nwant the default config\n%s", got, want)
	}
	// A first install starts the agent, not enrolled, with its panel.
	h.waitOneAgent()

	buttons := hmAddons(t, h.path(hmAddonsCfg))
	want := map[string]string{
		"ID":                    "hubtunnel",
		"CONFIG_URL":            "/addons/hubtunnel/",
		"CONFIG_NAME":           "hubtunnel",
		"CONFIG_DESCRIPTION.de": "<li>Fernzugriff auf die Zentrale ohne Portfreigabe: Status, Datenverbrauch, Updates.</li>",
		"CONFIG_DESCRIPTION.en": "<li>Remote access to this hub without port forwarding: status, data usage, updates.</li>",
	}
	if fmt.Sprint(buttons["hubtunnel"]) != fmt.Sprint(want) {
		t.Errorf("hubtunnel button = %v\nwant %v", buttons["hubtunnel"], want)
	}
	if buttons["cuxd"]["CONFIG_URL"] != "/addons/cuxd/" {
		t.Errorf("the other addon's button was lost: %v", buttons)
	}
}

func TestInstallPicksBinaryByMachine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ machine, arch string }{
		{"armv6l", "armv6"},
		{"armv7l", "armv7"},
		{"armv8l", "armv7"},
		{"aarch64", "arm64"},
		{"i686", "386"},
		{"i386", "386"},
		{"x86_64", "amd64"},
	} {
		t.Run(tc.machine, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.machine = tc.machine
			h.mustInstall()
			if got := readFile(t, h.path(binPath)); got != standIn(tc.arch) {
				t.Errorf("uname -m %s: installed %q, want hubtunnel-%s", tc.machine, firstComment(got), tc.arch)
			}
		})
	}
}

func firstComment(script string) string {
	lines := strings.SplitN(script, "\n", 3)
	if len(lines) < 2 {
		return script
	}
	return lines[1]
}

func TestInstallRefusesUnsupportedMachine(t *testing.T) {
	t.Parallel()
	// armv5 (a CCU2) is a known family, but the default package has no
	// binary for it.
	for _, machine := range []string{"armv5tejl", "mips", "riscv64", "ppc64le"} {
		t.Run(machine, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.machine = machine
			r := h.install()
			if r.code == 0 || r.code == 10 {
				t.Fatalf("update_script exited %d on %s, want an error code", r.code, machine)
			}
			if !strings.Contains(r.stderr, "("+machine+") is not supported") || !strings.Contains(r.stderr, "nothing was installed") {
				t.Errorf("stderr does not explain: %q", r.stderr)
			}
			for _, p := range []string{"/usr/local/addons", rcPath, "/usr/local/etc/config/addons", hmAddonsCfg} {
				if exists(h.path(p)) {
					t.Errorf("%s exists after a refused install", p)
				}
			}
		})
	}
}

func TestReinstallKeepsConfigAndReplacesProgram(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	writeFile(t, h.path(confDir+"/update-latest"), "1.3.0\n", 0o644)
	h.mustRC("start")
	oldPid := h.waitOneAgent()

	// Damage what an upgrade must replace.
	writeFile(t, h.path(binPath), standIn("old version"), 0o755)
	writeFile(t, h.path(rcPath), readFile(t, h.path(rcPath))+"\n# old\n", 0o755)
	writeFile(t, h.path(wwwPath+"/stale.html"), "old", 0o644)
	writeFile(t, h.path(binPath+".prev"), "previous", 0o755)

	h.mustInstall()

	if got := readFile(t, h.path(binPath)); got != standIn("amd64") {
		t.Errorf("binary not replaced: %q", firstComment(got))
	}
	if strings.Contains(readFile(t, h.path(rcPath)), "# old") {
		t.Error("init script not replaced")
	}
	if exists(h.path(wwwPath + "/stale.html")) {
		t.Error("web folder not replaced: stale.html survived")
	}
	if exists(h.path(binPath + ".prev")) {
		t.Error("hubtunnel.prev survived a manual install")
	}
	for p, want := range map[string]string{
		confPath:                   "relay = \"relay.example\"\n",
		keyPath:                    "private key\n",
		confDir + "/update-latest": "1.3.0\n",
	} {
		if got := readFile(t, h.path(p)); got != want {
			t.Errorf("%s changed: %q", p, got)
		}
	}
	if fi, err := os.Stat(h.path(keyPath)); err != nil || fi.Mode() != 0o600 {
		t.Errorf("key mode changed: %v %v", fi.Mode(), err)
	}
	if n := len(hmAddons(t, h.path(hmAddonsCfg))); n != 1 {
		t.Errorf("%d buttons after two installs, want 1", n)
	}
	// The upgrade restarted the agent: one process, not the old one.
	newPid := h.waitOneAgent()
	if newPid == oldPid {
		t.Errorf("agent still runs as pid %d after the upgrade", oldPid)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	r := h.mustRC("info")
	want := "Name: hubtunnel\n" +
		"Version: " + testVersion + "\n" +
		"Info: <b>hubtunnel</b><br>Fernzugriff auf die Zentrale ohne Portfreigabe.<br>Remote access to this hub without port forwarding.\n" +
		"Operations: uninstall restart\n" +
		"Config-Url: /addons/hubtunnel/\n" +
		"Update: /addons/hubtunnel/update-check.cgi\n"
	if r.stdout != want {
		t.Errorf("info:\n%s\nwant:\n%s", r.stdout, want)
	}
	// The WebUI asks info.<lang> first and appends it to info's answer.
	for _, op := range []string{"info.de", "info.en"} {
		if r := h.rc(op); r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want nothing", op, r.code, r.stdout, r.stderr)
		}
	}
	if r := h.rc("bogus"); r.code == 0 || !strings.Contains(r.stderr, "usage") {
		t.Errorf("unknown operation: exit %d, stderr %q", r.code, r.stderr)
	}

	// After a self-update the binary is newer than the package's VERSION
	// file: the CCU must see what runs, or it offers the update forever.
	os.WriteFile(h.path(binPath), []byte("#!/bin/sh\necho 1.3.0\n"), 0o755)
	if r := h.mustRC("info"); !strings.Contains(r.stdout, "Version: 1.3.0\n") {
		t.Errorf("info after a self-update:\n%s", r.stdout)
	}
	// A binary that does not answer sanely: the package's VERSION.
	os.WriteFile(h.path(binPath), []byte("#!/bin/sh\necho '<b>x</b>'\n"), 0o755)
	if r := h.mustRC("info"); !strings.Contains(r.stdout, "Version: "+testVersion+"\n") {
		t.Errorf("info with a binary that answers garbage:\n%s", r.stdout)
	}
}

// TestFirstStartWritesDefaultConfig: without hubtunnel.toml, start writes
// the addon's default and starts the agent on it (not enrolled: the owner
// enrolls from the panel); a config that exists is never overwritten.
func TestFirstStartWritesDefaultConfig(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.mustRC("stop")
	if err := os.Remove(h.path(confPath)); err != nil {
		t.Fatal(err)
	}
	r := h.mustRC("start")
	if !strings.Contains(r.stdout, "wrote the default config") {
		t.Errorf("start: stdout %q, want it to say it wrote the default config", r.stdout)
	}
	h.waitOneAgent()
	fi, err := os.Stat(h.path(confPath))
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("hubtunnel.toml after a first start: %v %v", fi, err)
	}
	if got := readFile(t, h.path(confPath)); !strings.Contains(got, `ui_listen = "127.0.0.1:8099"`) || !strings.Contains(got, "[ccu]") {
		t.Errorf("default config:\n%s", got)
	}
	poll.Until(t, 10*time.Second, "the stand-in's log line", func() bool {
		b, _ := os.ReadFile(h.path("standin.log"))
		return strings.Contains(string(b), "run --config "+h.path(confPath)+" --syslog\n")
	})

	h.mustRC("stop")
	writeFile(t, h.path(confPath), "name = \"mine\"\n", 0o600)
	h.mustRC("start")
	h.waitOneAgent()
	if got := readFile(t, h.path(confPath)); got != "name = \"mine\"\n" {
		t.Errorf("start overwrote an existing config: %q", got)
	}
}

// TestStartSaysWhyTheAgentDidNotStart: an agent that ends at once (a typo
// in its config, say) makes start and restart fail with its own words,
// which the WebUI shows, instead of reporting success.
func TestStartSaysWhyTheAgentDidNotStart(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	const why = "config: hubtunnel.toml:3: mtu: 99: want 1280 to 8000"
	for _, op := range []string{"start", "restart"} {
		r := h.rc(op, "HUBTUNNEL_STANDIN_FAIL="+why, "HUBTUNNEL_START_SETTLE=3")
		if r.code == 0 || !strings.Contains(r.stderr, "did not start: "+why) {
			t.Errorf("%s: exit %d, stderr %q; want a failure saying %q", op, r.code, r.stderr, why)
		}
		if exists(h.path(pidPath)) || len(h.agents()) != 0 {
			t.Errorf("%s: a pid file or an agent is left", op)
		}
	}
	// Fixed: the next start works and leaves no old reason behind.
	h.mustRC("start")
	h.waitOneAgent()
	if exists(h.path(confDir + "/start-error")) {
		t.Error("the old start-error is still there after a good start")
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()

	h.mustRC("init")
	pid := h.waitOneAgent()
	// The stand-in notes its arguments after it started, not before the
	// pid file names it.
	var args string
	poll.Until(t, 10*time.Second, "the stand-in's log line", func() bool {
		b, _ := os.ReadFile(h.path("standin.log"))
		args = strings.TrimSpace(string(b))
		return strings.HasSuffix(string(b), "\n")
	})
	if want := fmt.Sprintf("%d run --config %s --syslog", pid, h.path(confPath)); args != want {
		t.Errorf("agent started as %q, want %q", args, want)
	}

	// Boot calls init and then start: still one agent.
	r := h.mustRC("start")
	if !strings.Contains(r.stdout, "already running") {
		t.Errorf("second start: %q", r.stdout)
	}
	if got := h.waitOneAgent(); got != pid {
		t.Errorf("second start replaced pid %d by %d", pid, got)
	}
	if n := strings.Count(readFile(t, h.path("standin.log")), "\n"); n != 1 {
		t.Errorf("the agent was started %d times", n)
	}

	r = h.mustRC("stop")
	if r.took > 5*time.Second {
		t.Errorf("stop took %v for an agent that ends on TERM", r.took)
	}
	if got := h.agents(); len(got) != 0 {
		t.Errorf("agents left after stop: %v", got)
	}
	if exists(h.path(pidPath)) {
		t.Error("pid file left after stop")
	}
	// Stopping a stopped agent is fine.
	h.mustRC("stop")
}

func TestStopKillsAgentIgnoringTerm(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	h.mustRC("start", "HUBTUNNEL_STANDIN_IGNORE_TERM=1")
	h.waitOneAgent()

	r := h.mustRC("stop")
	if r.took < 9*time.Second || r.took > 20*time.Second {
		t.Errorf("stop took %v; want TERM, 10 s of patience, then KILL", r.took)
	}
	if got := h.agents(); len(got) != 0 {
		t.Errorf("agents left after stop: %v", got)
	}
	if exists(h.path(pidPath)) {
		t.Error("pid file left after stop")
	}
}

// TestStopUsesPidFileOnly: the pid file alone says which process to stop.
// A process that is not hubtunnel (a stale pid reused by the kernel) is left
// alone, and a second agent-looking process not in the pid file is too.
func TestStopUsesPidFileOnly(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()

	busybox, _ := busyboxPath(t)
	other := exec.Command(busybox, "sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	writeFile(t, h.path(pidPath), strconv.Itoa(other.Process.Pid)+"\n", 0o644)

	h.mustRC("stop")
	if !running(other.Process.Pid) {
		t.Fatal("stop ended a process that is not hubtunnel")
	}
	if exists(h.path(pidPath)) {
		t.Error("stale pid file left behind")
	}

	// start does not mistake the unrelated pid for a running agent.
	writeFile(t, h.path(pidPath), strconv.Itoa(other.Process.Pid)+"\n", 0o644)
	h.mustRC("start")
	h.waitOneAgent()
}

func TestRestartFromUnrelatedProcess(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	h.mustRC("start")
	oldPid := h.waitOneAgent()

	// The caller (here: this test, not the agent's parent) closes its end
	// of the script's output right away, as an updater that exits early
	// would: restart must carry on regardless.
	busybox, _ := busyboxPath(t)
	cmd := exec.Command(busybox, "sh", h.path(rcPath), "restart")
	cmd.Env = h.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	_ = cmd.Wait()

	var newPid int
	poll.Until(t, 20*time.Second, "a new agent after restart", func() bool {
		a := h.agents()
		b, err := os.ReadFile(h.path(pidPath))
		if len(a) != 1 || a[0] == oldPid || err != nil {
			return false
		}
		newPid = a[0]
		return strings.TrimSpace(string(b)) == strconv.Itoa(newPid)
	})

	// And the plain case, with its output read.
	h.mustRC("restart")
	if got := h.waitOneAgent(); got == newPid {
		t.Errorf("restart kept pid %d", got)
	}
}

func TestUninstall(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	writeFile(t, h.path(hmAddonsCfg), "cuxd {ID cuxd CONFIG_URL /addons/cuxd/ CONFIG_NAME CUxD CONFIG_DESCRIPTION {de {<li>x</li>} en {<li>y</li>}}}", 0o644)
	h.mustInstall()
	h.setUp()
	h.mustRC("start")
	h.waitOneAgent()

	// The WebUI runs it with Tcl's exec: any stderr output is a failure.
	h.mustRC("uninstall")

	if got := h.agents(); len(got) != 0 {
		t.Errorf("agents left after uninstall: %v", got)
	}
	for _, p := range []string{"/usr/local/addons/hubtunnel", rcPath, wwwPath, confDir, pidPath} {
		if exists(h.path(p)) {
			t.Errorf("%s left after uninstall", p)
		}
	}
	buttons := hmAddons(t, h.path(hmAddonsCfg))
	if _, ok := buttons["hubtunnel"]; ok {
		t.Error("hubtunnel button left after uninstall")
	}
	if buttons["cuxd"]["CONFIG_NAME"] != "CUxD" {
		t.Errorf("uninstall lost the other addon's button: %v", buttons)
	}
}

// deadPid is above the kernel's largest possible pid (2^22).
const deadPid = "4194305"

func TestInterruptedUpdateGuard(t *testing.T) {
	t.Parallel()
	busybox, _ := busyboxPath(t)
	const (
		oldBin = "#!/bin/sh\n# the version before the update\nexit 0\n"
		newBin = "#!/bin/sh\n# the version the update put in place\nexit 0\n"
	)
	// live starts a process for the journal's pid: with "hubtunnel" in its
	// command line it passes for the updater, without it is a stranger.
	live := func(t *testing.T, name string) string {
		cmd := exec.Command(busybox, "sh", "-c", "sleep 60; exit 0", name)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return strconv.Itoa(cmd.Process.Pid)
	}
	for _, tc := range []struct {
		name       string
		updater    func(t *testing.T) string // the journal's pid
		bin        string                    // what $BIN holds when start runs
		prev       string                    // what $BIN.prev holds
		rolledBack bool
		keepJrnl   bool
	}{
		{"dead updater, new binary: roll back", func(*testing.T) string { return deadPid }, newBin, oldBin, true, false},
		{"pid now someone else's: roll back", func(t *testing.T) string { return live(t, "not-the-updater") }, newBin, oldBin, true, false},
		{"updater alive: hands off", func(t *testing.T) string { return live(t, "hubtunnel-update") }, newBin, oldBin, false, true},
		{"stale journal: binary is neither side", func(*testing.T) string { return deadPid }, "#!/bin/sh\n# installed by hand\n", oldBin, false, false},
		{"update already undone: old binary in place", func(*testing.T) string { return deadPid }, oldBin, oldBin, false, false},
		{"prev is not the journal's: no roll back to it", func(*testing.T) string { return deadPid }, newBin, "#!/bin/sh\n# some other build\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.mustInstall()
			writeFile(t, h.path(binPath), tc.bin, 0o755)
			writeFile(t, h.path(binPath+".prev"), tc.prev, 0o755)
			journal := fmt.Sprintf("from=1.0.0\nto=1.1.0\nnew_sha256=%s\nprev_sha256=%s\npid=%s\n",
				sha256Hex(newBin), sha256Hex(oldBin), tc.updater(t))
			writeFile(t, h.path(journalPath), journal, 0o600)

			// No hubtunnel.toml: the guard runs, no agent starts.
			h.mustRC("start")

			bin := readFile(t, h.path(binPath))
			switch {
			case tc.rolledBack:
				if bin != oldBin {
					t.Errorf("binary not rolled back: %q", firstComment(bin))
				}
				if exists(h.path(binPath + ".prev")) {
					t.Error("hubtunnel.prev still there after the roll-back")
				}
				checkResult(t, readFile(t, h.path(resultPath)))
			default:
				if bin != tc.bin {
					t.Errorf("binary changed: %q", firstComment(bin))
				}
				if readFile(t, h.path(binPath+".prev")) != tc.prev {
					t.Error("hubtunnel.prev changed")
				}
				if exists(h.path(resultPath)) {
					t.Errorf("update-result.json written: %s", readFile(t, h.path(resultPath)))
				}
			}
			if got := exists(h.path(journalPath)); got != tc.keepJrnl {
				t.Errorf("journal exists = %v, want %v", got, tc.keepJrnl)
			}
			if tc.keepJrnl && readFile(t, h.path(journalPath)) != journal {
				t.Error("journal changed while the updater was alive")
			}
		})
	}
}

func checkResult(t *testing.T, got string) {
	t.Helper()
	if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Errorf("update-result.json is not one line: %q", got)
	}
	var res struct {
		OK     *bool  `json:"ok"`
		From   string `json:"from"`
		To     string `json:"to"`
		Reason string `json:"reason"`
		Time   string `json:"time"`
	}
	if err := json.Unmarshal([]byte(got), &res); err != nil {
		t.Fatalf("update-result.json: %v: %q", err, got)
	}
	if res.OK == nil || *res.OK || res.From != "1.0.0" || res.To != "1.1.0" ||
		res.Reason != "the update to 1.1.0 was interrupted; rolled back to 1.0.0" {
		t.Errorf("update-result.json = %s", got)
	}
	when, err := time.Parse(time.RFC3339, res.Time)
	if err != nil || !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(res.Time) {
		t.Errorf("time %q is not UTC RFC 3339: %v", res.Time, err)
	} else if d := time.Since(when); d < -time.Minute || d > 5*time.Minute {
		t.Errorf("time %q is not now", res.Time)
	}
}

// TestGuardJournalCannotInjectJSON: versions in the journal end up in JSON;
// anything but a version word becomes "unknown".
func TestGuardJournalCannotInjectJSON(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	const oldBin, newBin = "#!/bin/sh\n# old\n", "#!/bin/sh\n# new\n"
	writeFile(t, h.path(binPath), newBin, 0o755)
	writeFile(t, h.path(binPath+".prev"), oldBin, 0o755)
	writeFile(t, h.path(journalPath), fmt.Sprintf("from=1.0\",\"ok\":true,\"x\":\"\nto=$(reboot)\nnew_sha256=%s\nprev_sha256=%s\npid=%s",
		sha256Hex(newBin), sha256Hex(oldBin), deadPid), 0o600)
	h.mustRC("start")
	var res map[string]any
	got := readFile(t, h.path(resultPath))
	if err := json.Unmarshal([]byte(got), &res); err != nil {
		t.Fatalf("update-result.json: %v: %q", err, got)
	}
	if res["ok"] != false || res["from"] != "unknown" || res["to"] != "unknown" {
		t.Errorf("update-result.json = %s", got)
	}
}

// TestScriptsParse: every shell script passes busybox sh -n, the Tcl ones
// parse in tclsh.
func TestScriptsParse(t *testing.T) {
	t.Parallel()
	busybox, _ := busyboxPath(t)
	for _, s := range []string{"update_script", "hubtunnel/rc.d/hubtunnel", "../scripts/addon.sh"} {
		if s == "../scripts/addon.sh" {
			// a bash script (it runs on the build machine, not the hub)
			if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
				t.Errorf("bash -n %s: %v: %s", s, err, out)
			}
			continue
		}
		if out, err := exec.Command(busybox, "sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("busybox sh -n %s: %v: %s", s, err, out)
		}
	}
	tclsh := need(t, "to parse the Tcl scripts", "tclsh")
	for _, s := range []string{"hubtunnel/lib/hm_addons.tcl", "hubtunnel/www/update-check.cgi", "hubtunnel/www/status.cgi"} {
		check := `set fd [open [lindex $argv 0]]; set src [read $fd]; close $fd
if {![info complete $src]} { puts stderr incomplete; exit 1 }`
		if out, err := exec.Command(tclsh, writeTemp(t, "check.tcl", check), s).CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v: %s", s, err, out)
		}
	}
}
