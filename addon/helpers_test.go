package addon_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// testVersion is the version the script tests' package carries.
const testVersion = "1.2.3"

// arches are the binaries scripts/addon.sh puts in a package by default.
var arches = []string{"armv6", "armv7", "arm64", "386", "amd64"}

// need returns the path of a tool (the first of names in PATH or given as an
// absolute path). A missing tool skips the test locally and fails it when CI
// is set: CI must not pass by skipping.
func need(t testing.TB, why string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (needed %s); scripts/deps.sh installs it", names[0], why)
	if os.Getenv("CI") != "" {
		t.Fatal("CI: " + msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the module's top folder (this package lives in addon/).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// shell is a folder of busybox applet links, put first in PATH so the
// scripts get the applets a CCU has (sh, start-stop-daemon, sha256sum, ...)
// and not the host's tools. tclsh is the host's, as on a CCU.
var shell struct {
	once    sync.Once
	dir     string
	busybox string
	err     error
}

func busyboxPath(t testing.TB) (busybox, dir string) {
	t.Helper()
	bb := need(t, "to run the addon scripts under the shell a CCU has", "busybox", "/bin/busybox")
	need(t, "to run the addon's Tcl scripts", "tclsh")
	shell.once.Do(func() {
		shell.busybox = bb
		shell.dir, shell.err = os.MkdirTemp("", "hubtunnel-busybox-")
		if shell.err != nil {
			return
		}
		out, err := exec.Command(bb, "--install", "-s", shell.dir).CombinedOutput()
		if err != nil {
			shell.err = fmt.Errorf("busybox --install: %v: %s", err, out)
		}
	})
	if shell.err != nil {
		t.Fatal(shell.err)
	}
	return shell.busybox, shell.dir
}

// standIn is what the script tests install as the agent binary: a tiny shell
// script, not the real hubtunnel (an end-to-end test runs the real one). It
// notes its pid and arguments, then waits for TERM, or ignores TERM when
// HUBTUNNEL_STANDIN_IGNORE_TERM is set so that stop has to KILL it.
func standIn(tag string) string {
	return `#!/bin/sh
# hubtunnel stand-in (` + tag + `)
if [ "$*" = version ]; then
	echo ` + testVersion + `
	exit 0
fi
echo "$$ $*" >>"$HUBTUNNEL_ROOT/standin.log"
if [ -n "${HUBTUNNEL_STANDIN_FAIL:-}" ]; then
	# As the agent does when it cannot start: why, beside its config.
	echo "$HUBTUNNEL_STANDIN_FAIL" >"$(dirname "$3")/start-error"
	exit 1
fi
if [ -n "${HUBTUNNEL_STANDIN_IGNORE_TERM:-}" ]; then
	trap '' TERM
else
	trap 'exit 0' TERM
fi
while :; do
	sleep 1 &
	wait $!
done
`
}

// scriptPackage is the addon package the script tests install: built by the
// real scripts/addon.sh from stand-in binaries (one per arch, each telling
// its arch) so that the package layout under test is the shipped one.
var scriptPackage struct {
	once sync.Once
	tgz  string
	err  error
}

func standInPackage(t testing.TB) string {
	t.Helper()
	need(t, "to run scripts/addon.sh", "bash")
	scriptPackage.once.Do(func() {
		dir, err := os.MkdirTemp("", "hubtunnel-addon-pkg-")
		if err != nil {
			scriptPackage.err = err
			return
		}
		bindir := filepath.Join(dir, "bin")
		if err := os.Mkdir(bindir, 0o755); err != nil {
			scriptPackage.err = err
			return
		}
		for _, a := range arches {
			if err := os.WriteFile(filepath.Join(bindir, "hubtunnel-"+a), []byte(standIn(a)), 0o755); err != nil {
				scriptPackage.err = err
				return
			}
		}
		out := filepath.Join(dir, "out")
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "addon.sh"), testVersion, out)
		cmd.Env = append(os.Environ(), "BINDIR="+bindir, "ARCHS="+strings.Join(arches, " "), "SOURCE_DATE_EPOCH=1700000000")
		if b, err := cmd.CombinedOutput(); err != nil {
			scriptPackage.err = fmt.Errorf("scripts/addon.sh: %v: %s", err, b)
			return
		}
		scriptPackage.tgz = filepath.Join(out, "hubtunnel-"+testVersion+".tgz")
	})
	if scriptPackage.err != nil {
		t.Fatal(scriptPackage.err)
	}
	return scriptPackage.tgz
}

// hub is one pretend CCU: a folder that stands for / (HUBTUNNEL_ROOT), with
// /etc/config a link to /usr/local/etc/config as on RaspberryMatic, and an
// unpacked addon package to install from.
type hub struct {
	t       *testing.T
	root    string // HUBTUNNEL_ROOT
	pkg     string // the unpacked package, where update_script runs
	machine string // HUBTUNNEL_MACHINE
	env     []string
}

func newHub(t *testing.T) *hub {
	t.Helper()
	_, bbdir := busyboxPath(t)
	tgz := standInPackage(t)
	dir := t.TempDir()
	h := &hub{t: t, root: filepath.Join(dir, "root"), pkg: filepath.Join(dir, "pkg"), machine: "x86_64"}
	for _, d := range []string{"etc", "var/run", "usr/local/etc/config"} {
		mkdirAll(t, filepath.Join(h.root, d))
	}
	if err := os.Symlink("../usr/local/etc/config", filepath.Join(h.root, "etc", "config")); err != nil {
		t.Fatal(err)
	}
	unpack(t, tgz, h.pkg)
	// A start waits a second, not two, to see that the agent stayed up:
	// the stand-in does or dies at once.
	h.env = append(os.Environ(), "PATH="+bbdir+string(os.PathListSeparator)+os.Getenv("PATH"), "HUBTUNNEL_ROOT="+h.root, "HUBTUNNEL_START_SETTLE=1")
	t.Cleanup(h.killAll)
	return h
}

// path turns a path on the hub into one under the test's root.
func (h *hub) path(p string) string { return filepath.Join(h.root, p) }

const (
	binPath      = "/usr/local/addons/hubtunnel/bin/hubtunnel"
	versionPath  = "/usr/local/addons/hubtunnel/VERSION"
	rcPath       = "/usr/local/etc/config/rc.d/hubtunnel"
	wwwPath      = "/usr/local/etc/config/addons/www/hubtunnel"
	confDir      = "/usr/local/etc/config/addons/hubtunnel"
	confPath     = confDir + "/hubtunnel.toml"
	keyPath      = confDir + "/hubtunnel.key"
	journalPath  = confDir + "/update.journal"
	resultPath   = confDir + "/update-result.json"
	pidPath      = "/var/run/hubtunnel.pid"
	hmAddonsCfg  = "/usr/local/etc/config/hm_addons.cfg"
	supPidPath   = "/var/run/hubtunnel-supervisor.pid"
	statePath    = confDir + "/supervisor.state"
	lighttpdConf = "/usr/local/etc/config/lighttpd/hubtunnel.conf"
)

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// sh runs a script with busybox sh in dir, as the hub would.
func (h *hub) sh(dir, script string, args []string, extraEnv ...string) result {
	h.t.Helper()
	busybox, _ := busyboxPath(h.t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, busybox, append([]string{"sh", script}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(h.env[:len(h.env):len(h.env)], "HUBTUNNEL_MACHINE="+h.machine), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		h.t.Fatalf("sh %s %v: %v", script, args, err)
	}
	if ctx.Err() != nil {
		h.t.Fatalf("sh %s %v did not finish within 60 s (stdout %q, stderr %q)", script, args, r.stdout, r.stderr)
	}
	return r
}

// install runs the package's update_script the way install_addon does.
func (h *hub) install(extraEnv ...string) result {
	h.t.Helper()
	return h.sh(h.pkg, "./update_script", []string{"HM-RASPBERRYMATIC"}, extraEnv...)
}

// mustInstall installs and fails the test unless update_script exits 0.
func (h *hub) mustInstall() {
	h.t.Helper()
	if r := h.install(); r.code != 0 {
		h.t.Fatalf("update_script exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// rc runs the installed init script with one operation.
func (h *hub) rc(op string, extraEnv ...string) result {
	h.t.Helper()
	return h.sh(h.root, h.path(rcPath), []string{op}, extraEnv...)
}

func (h *hub) mustRC(op string, extraEnv ...string) result {
	h.t.Helper()
	r := h.rc(op, extraEnv...)
	if r.code != 0 || r.stderr != "" {
		h.t.Fatalf("rc.d/hubtunnel %s: exit %d\nstdout: %s\nstderr: %s", op, r.code, r.stdout, r.stderr)
	}
	return r
}

// setUp stops the agent the install started (on its default config) and
// writes the files an enrolled hub has.
func (h *hub) setUp() {
	h.t.Helper()
	h.mustRC("stop")
	if err := os.Remove(h.path("standin.log")); err != nil && !os.IsNotExist(err) {
		h.t.Fatal(err)
	}
	writeFile(h.t, h.path(confPath), "relay = \"relay.example\"\n", 0o600)
	writeFile(h.t, h.path(keyPath), "private key\n", 0o600)
}

// agents lists the pids of the live stand-in agents of this hub, found by
// their command line (the stand-in runs as "/bin/sh <root>/.../hubtunnel").
func (h *hub) agents() []int {
	want := []byte(h.path(binPath) + "\x00")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, want) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitOneAgent waits until exactly one agent runs and the pid file names it.
func (h *hub) waitOneAgent() int {
	h.t.Helper()
	var pid int
	var seen string
	h.t.Cleanup(func() {
		if h.t.Failed() && seen != "" {
			h.t.Logf("waitOneAgent last saw %s", seen)
		}
	})
	poll.Until(h.t, 10*time.Second, "one agent running and named by the pid file", func() bool {
		a := h.agents()
		b, err := os.ReadFile(h.path(pidPath))
		seen = fmt.Sprintf("agents %v, supervisors %v, pid file %q (%v)", a, h.supervisors(), b, err)
		if len(a) != 1 {
			return false
		}
		pid = a[0]
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid)
	})
	seen = ""
	return pid
}

// running reports whether pid is alive and not a zombie (a process this
// test started and did not reap yet still answers signal 0).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// supervisors lists the pids of this hub's live supervisors ("sh
// <root>/.../rc.d/hubtunnel supervise").
func (h *hub) supervisors() []int {
	want := []byte(h.path(rcPath) + "\x00supervise\x00")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, want) || !running(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// killAll ends whatever supervisors and stand-in agents a test left
// behind, supervisors first (they would start the agents again).
func (h *hub) killAll() {
	for _, pid := range h.supervisors() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range h.agents() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func unpack(t testing.TB, tgz, dir string) {
	t.Helper()
	for _, e := range readTgz(t, tgz) {
		p := filepath.Join(dir, e.hdr.Name)
		switch e.hdr.Typeflag {
		case tar.TypeDir:
			mkdirAll(t, p)
		case tar.TypeReg:
			mkdirAll(t, filepath.Dir(p))
			writeFile(t, p, string(e.data), os.FileMode(e.hdr.Mode)&0o777)
		default:
			t.Fatalf("%s: unexpected entry type %c", e.hdr.Name, e.hdr.Typeflag)
		}
	}
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTgz(t testing.TB, tgz string) []tarEntry {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var entries []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, tarEntry{hdr, data})
	}
}

func mkdirAll(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	mkdirAll(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hmAddons reads a hm_addons.cfg the way the WebUI does (Tcl array set) and
// returns each button's fields, CONFIG_DESCRIPTION's languages flattened to
// CONFIG_DESCRIPTION.de and .en.
func hmAddons(t testing.TB, path string) map[string]map[string]string {
	t.Helper()
	const script = `
set fd [open [lindex $argv 0] r]
array set addons [read $fd]
close $fd
foreach id [lsort [array names addons]] {
    array unset a
    array set a $addons($id)
    foreach k [lsort [array names a]] {
        if {$k == "CONFIG_DESCRIPTION"} {
            array unset d
            array set d $a($k)
            foreach l [lsort [array names d]] { puts "$id\t$k.$l\t$d($l)" }
        } else {
            puts "$id\t$k\t$a($k)"
        }
    }
}
`
	tclsh := need(t, "to read hm_addons.cfg", "tclsh")
	out, err := exec.Command(tclsh, writeTemp(t, "read.tcl", script), path).CombinedOutput()
	if err != nil {
		t.Fatalf("reading %s with tclsh: %v: %s", path, err, out)
	}
	m := map[string]map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			continue
		}
		if m[f[0]] == nil {
			m[f[0]] = map[string]string{}
		}
		m[f[0]][f[1]] = f[2]
	}
	return m
}

func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, content, 0o644)
	return p
}

// goarchOf maps Go's GOARCH of this machine to the package's arch names,
// for the test that builds the real agent.
func goarchOf() string {
	switch runtime.GOARCH {
	case "arm":
		return "armv7"
	default:
		return runtime.GOARCH
	}
}
