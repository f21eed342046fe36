package e2e

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/bench"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/selfupdate"
)

// The self-update end to end: real agent binaries at two versions, a
// release folder signed by hubrelease and served by hubrelay through the
// tunnel, the addon installed by its own update_script and run by its own
// init script under busybox sh, as on a CCU.

// updateKit is what the update tests share, built once per run.
type updateKit struct {
	key, pub                      string            // a release signing key file and its public key
	otherKey                      string            // a key the agents do not trust
	agent                         map[string]string // version → real agent binary (this machine's arch)
	broken                        string            // "0.3.0": answers version, fails at run
	foreign                       string            // "0.4.0", built for arm64
	hubrelease, busyboxBin, tclsh string
	busyboxDir                    string // busybox applets, first in PATH
	arch                          string // this machine's artifact key
}

var (
	kitOnce sync.Once
	kit     *updateKit
	kitErr  error
)

func getKit(t *testing.T) *updateKit {
	t.Helper()
	bb := need(t, "to run the addon's scripts as a CCU does", "busybox")
	tclsh := need(t, "to run update-check.cgi", "tclsh")
	kitOnce.Do(func() { kit, kitErr = buildKit(bb, tclsh) })
	if kitErr != nil {
		t.Fatal(kitErr)
	}
	return kit
}

func buildKit(bb, tclsh string) (*updateKit, error) {
	dir, err := os.MkdirTemp("", "hubtunnel-e2e-update-")
	if err != nil {
		return nil, err
	}
	k := &updateKit{agent: map[string]string{}, busyboxBin: bb, tclsh: tclsh, busyboxDir: filepath.Join(dir, "busybox")}
	switch runtime.GOARCH {
	case "amd64", "386", "arm64":
		k.arch = runtime.GOARCH
	default:
		return nil, fmt.Errorf("no artifact key for %s", runtime.GOARCH)
	}
	build := func(out string, env []string, ldflags, pkg string) error {
		tags, err := bench.BuildTags("..", filepath.Base(pkg))
		if err != nil {
			return err
		}
		cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w "+ldflags, "-o", out, pkg)
		cmd.Dir = ".."
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	k.hubrelease = filepath.Join(dir, "hubrelease")
	if err := build(k.hubrelease, nil, "", "./cmd/hubrelease"); err != nil {
		return nil, err
	}
	for _, v := range []string{"0.1.0", "0.2.0"} {
		k.agent[v] = filepath.Join(dir, "hubtunnel-"+v)
		if err := build(k.agent[v], nil, "-X github.com/hubtunnel/hubtunnel/version.Version="+v, "./cmd/hubtunnel"); err != nil {
			return nil, err
		}
	}
	k.broken = filepath.Join(dir, "broken-0.3.0")
	if err := build(k.broken, nil, "-X main.version=0.3.0", "./e2e/testdata/brokenagent"); err != nil {
		return nil, err
	}
	k.foreign = filepath.Join(dir, "arm64-0.4.0")
	if err := build(k.foreign, []string{"GOARCH=arm64"}, "-X main.version=0.4.0", "./e2e/testdata/brokenagent"); err != nil {
		return nil, err
	}
	k.key, k.otherKey = filepath.Join(dir, "release.key"), filepath.Join(dir, "other.key")
	out, err := exec.Command(k.hubrelease, "keygen", k.key).Output()
	if err != nil {
		return nil, fmt.Errorf("hubrelease keygen: %v", err)
	}
	k.pub = strings.TrimSpace(string(out))
	if err := exec.Command(k.hubrelease, "keygen", k.otherKey).Run(); err != nil {
		return nil, err
	}
	os.Mkdir(k.busyboxDir, 0o755)
	if b, err := exec.Command(bb, "--install", "-s", k.busyboxDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("busybox --install: %v\n%s", err, b)
	}
	return k, nil
}

// updateHub is a relay serving releases, ccusim, and the addon installed
// into root by its update_script, agent running.
type updateHub struct {
	*hubSetup
	k        *updateKit
	root     string // HUBTUNNEL_ROOT
	releases string
	conf     string // the agent's config
	bin      string // the installed agent binary
}

func newUpdateHub(t *testing.T, healthTimeout string) *updateHub {
	t.Helper()
	k := getKit(t)
	releases := t.TempDir()
	h := &updateHub{hubSetup: newHub(t, setupOpts{releasesDir: releases}), k: k, releases: releases, root: t.TempDir()}
	confDir := filepath.Join(h.root, "usr/local/etc/config/addons/hubtunnel")
	h.conf = filepath.Join(confDir, "hubtunnel.toml")
	h.bin = filepath.Join(h.root, "usr/local/addons/hubtunnel/bin/hubtunnel")
	os.MkdirAll(confDir, 0o700)
	os.MkdirAll(filepath.Join(h.root, "usr/local/tmp"), 0o755)
	key, _ := os.ReadFile(filepath.Join(h.dir, "hub.key"))
	writeFile(t, filepath.Join(confDir, "hubtunnel.key"), string(key))
	h.uiAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	writeFile(t, h.conf, fmt.Sprintf(`name = "demo"
relay = "127.0.0.1:%d"
relay_public_key = %q
tunnel_ip = "100.96.0.2"
ui_listen = %q
proxy = "none"

%s
[update]
auto = false
public_key = %q
restart = [%q, "sh", %q, "restart"]
download_dir = %q
health_timeout = %q
`, h.agentPort, h.relayPub, h.uiAddr, targets(h.sim), k.pub, k.busyboxBin,
		filepath.Join(h.root, "usr/local/etc/config/rc.d/hubtunnel"), filepath.Join(h.root, "usr/local/tmp"), healthTimeout))

	// The addon package, built by scripts/addon.sh around the 0.1.0 agent,
	// installed as the CCU's install_addon does: unpacked, sums checked,
	// ./update_script run with the platform's name.
	bins := t.TempDir()
	copyFile(t, k.agent["0.1.0"], filepath.Join(bins, "hubtunnel-"+k.arch))
	pkgDir := t.TempDir()
	cmd := exec.Command("bash", "scripts/addon.sh", "0.1.0", pkgDir)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "ARCHS="+k.arch, "BINDIR="+bins)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/addon.sh: %v\n%s", err, out)
	}
	stage := t.TempDir()
	h.busybox(t, stage, "tar", "xzf", filepath.Join(pkgDir, "hubtunnel-0.1.0.tgz"))
	h.busybox(t, stage, "sha256sum", "-c", "hubtunnel.sha256")
	h.busybox(t, stage, "sh", "./update_script", "HM-RASPBERRYMATIC")
	t.Cleanup(func() {
		out, _ := h.busyboxErr(h.root, "sh", filepath.Join(h.root, "usr/local/etc/config/rc.d/hubtunnel"), "stop")
		if t.Failed() {
			t.Logf("init script stop: %s\n--- update.log ---\n%s", out, readFileString(filepath.Join(confDir, "update.log")))
		}
	})
	h.waitVersion(t, "0.1.0", 15*time.Second)
	return h
}

// busybox runs a busybox applet in dir as the hub's shell would: busybox's
// applets first in PATH, HUBTUNNEL_ROOT set.
func (h *updateHub) busybox(t *testing.T, dir string, applet string, args ...string) string {
	t.Helper()
	out, err := h.busyboxErr(dir, applet, args...)
	if err != nil {
		t.Fatalf("busybox %s %s: %v\n%s", applet, strings.Join(args, " "), err, out)
	}
	return out
}

func (h *updateHub) busyboxErr(dir string, applet string, args ...string) (string, error) {
	cmd := exec.Command(h.k.busyboxBin, append([]string{applet}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HUBTUNNEL_ROOT="+h.root, "PATH="+h.k.busyboxDir+":"+os.Getenv("PATH"), "HTTPS_PROXY=", "https_proxy=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// hubtunnel runs the installed agent binary's CLI, as a user on the hub would.
func (h *updateHub) hubtunnel(args ...string) (string, error) {
	cmd := exec.Command(h.bin, append(args, "--config", h.conf)...)
	cmd.Env = append(os.Environ(), "HUBTUNNEL_ROOT="+h.root, "PATH="+h.k.busyboxDir+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitVersion waits until the agent answers with version v and the tunnel up.
func (h *updateHub) waitVersion(t *testing.T, v string, timeout time.Duration) status {
	t.Helper()
	var st status
	poll.Until(t, timeout, "agent "+v+" with the tunnel up", func() bool {
		var err error
		st, err = h.status()
		return err == nil && st.Version == v && st.State == "connected"
	})
	return st
}

// publish puts a release of version v with binary bin into the release
// folder, signed with key (default the trusted one).
func (h *updateHub) publish(t *testing.T, v, bin, key string) {
	t.Helper()
	src, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	gz, err := os.Create(filepath.Join(h.releases, "hubtunnel-"+v+"-linux-"+h.k.arch+".gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(gz)
	io.Copy(zw, src)
	zw.Close()
	gz.Close()
	if key == "" {
		key = h.k.key
	}
	run(t, h.k.hubrelease, "sign", "--key", key, "--version", v, "--dir", h.releases)
}

func (h *updateHub) artifact(v string) string {
	return filepath.Join(h.releases, "hubtunnel-"+v+"-linux-"+h.k.arch+".gz")
}

func sha256Of(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// checkVersionCGI asks the addon's update-check.cgi what the CCU's daily
// addon check would learn.
func (h *updateHub) checkVersionCGI(t *testing.T) string {
	t.Helper()
	cgi := filepath.Join(h.root, "usr/local/etc/config/addons/www/hubtunnel/update-check.cgi")
	cmd := exec.Command(h.k.tclsh, cgi)
	cmd.Env = append(os.Environ(), "HUBTUNNEL_ROOT="+h.root, "QUERY_STRING=cmd=check_version&version=0.1.0", "REQUEST_METHOD=GET")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("update-check.cgi: %v", err)
	}
	_, body, _ := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	return body
}

// TestUpdateInstallsANewRelease: check, install, and the new version
// carries the tunnel; then a downgrade, refused until asked for.
func TestUpdateInstallsANewRelease(t *testing.T) {
	t.Parallel()
	h := newUpdateHub(t, "30s")
	h.publish(t, "0.1.0", h.k.agent["0.1.0"], "")
	h.publish(t, "0.2.0", h.k.agent["0.2.0"], "")
	old := sha256Of(t, h.bin)

	out, err := h.hubtunnel("update", "check")
	if err != nil || !strings.Contains(out, "running 0.1.0; 0.2.0 is available") {
		t.Fatalf("update check: %v\n%s", err, out)
	}
	// What hub this is, as the CLI, the status API and the relay see it.
	st, _ := h.status()
	if out := run(t, h.bin, "hub"); !strings.HasPrefix(out, st.Hub.String()+"\n") || st.Hub.Arch != h.k.arch {
		t.Errorf("hubtunnel hub says %q; the status API %+v", out, st.Hub)
	}
	if !strings.Contains(h.relay.logText(), `software="hubtunnel/0.1.0 (`+st.Hub.String()+`)"`) {
		t.Errorf("the relay did not hear what hub connected:\n%s", h.relay.logText())
	}
	if got := h.checkVersionCGI(t); got != "0.2.0" {
		t.Errorf("update-check.cgi answers %q, want 0.2.0", got)
	}

	out, err = h.hubtunnel("update", "install")
	if err != nil || !strings.Contains(out, "0.2.0 is installed and the tunnel is up") {
		t.Fatalf("update install: %v\n%s", err, out)
	}
	st = h.waitVersion(t, "0.2.0", 5*time.Second)
	if r := st.Update.LastResult; r == nil || !r.OK || r.From != "0.1.0" || r.To != "0.2.0" {
		t.Errorf("last_result = %+v", r)
	}
	h.mustGetWebUI()
	if info := h.busybox(t, h.root, "sh", filepath.Join(h.root, "usr/local/etc/config/rc.d/hubtunnel"), "info"); !strings.Contains(info, "Version: 0.2.0\n") {
		t.Errorf("the CCU's addon list would show:\n%s", info)
	}
	if got := sha256Of(t, h.bin); got != sha256Of(t, h.k.agent["0.2.0"]) {
		t.Errorf("installed binary is not 0.2.0")
	}
	if got := sha256Of(t, h.bin+".prev"); got != old {
		t.Errorf("hubtunnel.prev is not the previous binary")
	}
	if log := h.relay.logText(); !strings.Contains(log, `msg="hub fetches a release" hub=demo file=hubtunnel-0.2.0-linux-`+h.k.arch+".gz") ||
		!strings.Contains(log, `software="hubtunnel/0.2.0 (`) {
		t.Errorf("relay log lacks the download or the new agent's hello:\n%s", log)
	}
	if left := downloadsLeft(t, h.root); len(left) != 0 {
		t.Errorf("left in the download folder: %v", left)
	}

	out, err = h.hubtunnel("update", "install", "--version", "0.1.0")
	if err == nil || !strings.Contains(out, "0.1.0 is older than the running 0.2.0; a downgrade must be asked for explicitly") {
		t.Errorf("downgrade without asking: %v\n%s", err, out)
	}
	h.waitVersion(t, "0.2.0", 5*time.Second)
	out, err = h.hubtunnel("update", "install", "--version", "0.1.0", "--allow-downgrade")
	if err != nil || !strings.Contains(out, "0.1.0 is installed and the tunnel is up") {
		t.Fatalf("downgrade asked for: %v\n%s", err, out)
	}
	h.waitVersion(t, "0.1.0", 5*time.Second)
}

// TestUpdateRefusesBadReleases: whatever is wrong with a release, the
// running version keeps working, nothing on the hub changes, and the user
// is told why.
func TestUpdateRefusesBadReleases(t *testing.T) {
	t.Parallel()
	h := newUpdateHub(t, "30s")
	before := sha256Of(t, h.bin)

	// One update at a time: while another holds the update lock (the
	// panel's install, say), a second is refused.
	h.publish(t, "0.2.0", h.k.agent["0.2.0"], "")
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(h.conf), "update.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	out, err := h.hubtunnel("update", "install")
	if err == nil || !strings.Contains(out, "another update is in progress") {
		t.Errorf("install during another update: %v\n%s", err, out)
	}
	lock.Close()

	for _, c := range []struct {
		name    string
		publish func()
		want    string
	}{
		{"tampered artifact", func() {
			h.publish(t, "0.2.0", h.k.agent["0.2.0"], "")
			b, _ := os.ReadFile(h.artifact("0.2.0"))
			b[len(b)/2] ^= 0x40
			os.WriteFile(h.artifact("0.2.0"), b, 0o644)
		}, "SHA-256 does not match the manifest"},
		{"truncated download", func() {
			h.publish(t, "0.2.0", h.k.agent["0.2.0"], "")
			b, _ := os.ReadFile(h.artifact("0.2.0"))
			os.WriteFile(h.artifact("0.2.0"), b[:len(b)/3], 0o644)
		}, "the manifest says"},
		{"wrong signature", func() {
			h.publish(t, "0.2.0", h.k.agent["0.2.0"], h.k.otherKey)
		}, "signature does not match the release key"},
		{"wrong architecture", func() {
			h.publish(t, "0.4.0", h.k.foreign, "")
		}, "built for ARM64, not for this hub (" + h.k.arch + ")"},
	} {
		os.Remove(filepath.Join(h.releases, "manifest.json"))
		c.publish()
		out, err := h.hubtunnel("update", "install")
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: update install: %v\n%s", c.name, err, out)
		}
		h.waitVersion(t, "0.1.0", 5*time.Second)
		h.mustGetWebUI()
		if sha256Of(t, h.bin) != before {
			t.Errorf("%s: the installed binary changed", c.name)
		}
		if _, err := os.Stat(h.bin + ".prev"); err == nil {
			t.Errorf("%s: a previous binary was kept, so something was swapped", c.name)
		}
		if left := downloadsLeft(t, h.root); len(left) != 0 {
			t.Errorf("%s: left in the download folder: %v", c.name, left)
		}
	}
}

// TestUpdateRollsBackABrokenRelease: a release that passes every check but
// cannot bring the tunnel up is replaced by the previous version again.
func TestUpdateRollsBackABrokenRelease(t *testing.T) {
	t.Parallel()
	h := newUpdateHub(t, "10s")
	before := sha256Of(t, h.bin)
	h.publish(t, "0.3.0", h.k.broken, "")
	out, err := h.hubtunnel("update", "install")
	for _, want := range []string{"update failed: 0.3.0 failed: the tunnel was not up within 10s", "rolled back to 0.1.0"} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("update install: %v, output lacks %q:\n%s", err, want, out)
		}
	}
	st := h.waitVersion(t, "0.1.0", 5*time.Second)
	if r := st.Update.LastResult; r == nil || r.OK || r.To != "0.3.0" || !strings.Contains(r.Reason, "rolled back to 0.1.0") {
		t.Errorf("last_result = %+v", r)
	}
	h.mustGetWebUI()
	if sha256Of(t, h.bin) != before {
		t.Errorf("the installed binary is not the previous one")
	}
}

// startInstall runs "hubtunnel update install" in the background; it is
// stopped when the test ends.
func (h *updateHub) startInstall(t *testing.T) {
	start(t, h.dir, "update-install", h.bin, "update", "install", "--config", h.conf)
}

// journalPID waits for the update journal and returns the installer's pid.
func (h *updateHub) journalPID(t *testing.T) int {
	t.Helper()
	journal := filepath.Join(filepath.Dir(h.conf), "update.journal")
	re := regexp.MustCompile(`(?m)^pid=(\d+)$`)
	pid := 0
	poll.Until(t, 30*time.Second, "the update journal", func() bool {
		if m := re.FindStringSubmatch(readFileString(journal)); m != nil {
			pid, _ = strconv.Atoi(m[1])
		}
		return pid > 0
	})
	return pid
}

// TestUpdateInstallerKilledWhileSwapping: kill -9 of the installer as soon
// as it starts swapping a good release. The running agent notices within
// its 30 s recovery check (or at the restart, if that came first), puts
// the previous binary back and runs it.
func TestUpdateInstallerKilledWhileSwapping(t *testing.T) {
	t.Parallel()
	h := newUpdateHub(t, "30s")
	before := sha256Of(t, h.bin)
	h.publish(t, "0.2.0", h.k.agent["0.2.0"], "")
	h.startInstall(t)
	syscall.Kill(h.journalPID(t), syscall.SIGKILL)

	var st status
	poll.Until(t, 60*time.Second, "the interrupted update to be rolled back", func() bool {
		var err error
		st, err = h.status()
		return err == nil && st.Version == "0.1.0" && st.State == "connected" &&
			st.Update.LastResult != nil && strings.Contains(st.Update.LastResult.Reason, "interrupted")
	})
	if r := st.Update.LastResult; r.OK || r.To != "0.2.0" {
		t.Errorf("last_result = %+v", r)
	}
	if sha256Of(t, h.bin) != before {
		t.Errorf("the installed binary is not the previous one")
	}
	// Recovery writes the result first, then removes the journal.
	journal := filepath.Join(filepath.Dir(h.conf), "update.journal")
	poll.Until(t, 5*time.Second, "the journal to be removed", func() bool {
		_, err := os.Stat(journal)
		return os.IsNotExist(err)
	})
	h.mustGetWebUI()
}

// TestUpdateInstallerKilledWithABrokenRelease: kill -9 of the installer
// while it waits for a release that cannot even start. Nothing runs now;
// the next start (a reboot, or the WebUI's restart button) goes through the
// init script, whose busybox guard puts the previous binary back.
func TestUpdateInstallerKilledWithABrokenRelease(t *testing.T) {
	t.Parallel()
	h := newUpdateHub(t, "60s")
	before := sha256Of(t, h.bin)
	h.publish(t, "0.3.0", h.k.broken, "")
	h.startInstall(t)
	pid := h.journalPID(t)
	// The installer logs the restart's output once the restart is done:
	// from then on it only waits for a tunnel that never comes.
	poll.Until(t, 30*time.Second, "the installer to have restarted the agent", func() bool {
		return strings.Contains(readFileString(filepath.Join(filepath.Dir(h.conf), "update.log")), "hubtunnel: started")
	})
	if _, err := h.status(); err == nil {
		t.Fatalf("the broken release answers the status API")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	// The broken release dies by itself a few seconds after its start: the
	// hub is then as after a reboot, with nothing running.
	poll.Until(t, 15*time.Second, "the broken release to end", func() bool {
		b, err := os.ReadFile(filepath.Join(h.root, "var/run/hubtunnel.pid"))
		if err != nil {
			return true
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return err != nil || syscall.Kill(n, 0) != nil
	})

	out := h.busybox(t, h.root, "sh", filepath.Join(h.root, "usr/local/etc/config/rc.d/hubtunnel"), "start")
	if !strings.Contains(out, "interrupted; rolled back to 0.1.0") {
		t.Errorf("init script start said:\n%s", out)
	}
	st := h.waitVersion(t, "0.1.0", 15*time.Second)
	if r := st.Update.LastResult; r == nil || r.OK || r.To != "0.3.0" || !strings.Contains(r.Reason, "interrupted") {
		t.Errorf("last_result = %+v", r)
	}
	if sha256Of(t, h.bin) != before {
		t.Errorf("the installed binary is not the previous one")
	}
	h.mustGetWebUI()
}

// downloadsLeft lists the files left in the updater's folders under the
// download folder; the folders themselves stay (0700, the updater's own).
func downloadsLeft(t *testing.T, root string) []string {
	t.Helper()
	var left []string
	dir := filepath.Join(root, "usr/local/tmp")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && (e.Name() == selfupdate.DownloadFolder || e.Name() == selfupdate.InstallFolder) {
			if fi, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v, %v; want mode 0700", e.Name(), fi.Mode(), err)
			}
			inner, _ := os.ReadDir(filepath.Join(dir, e.Name()))
			for _, f := range inner {
				left = append(left, e.Name()+"/"+f.Name())
			}
			continue
		}
		left = append(left, e.Name())
	}
	return left
}
