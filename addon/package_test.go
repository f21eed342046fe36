package addon_test

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPackage builds the real addon with scripts/addon.sh (the agent
// cross-built for this machine's arch only; HUBTUNNEL_ADDON_ARCHS names
// others, e.g. "armv6 armv7 arm64 386 amd64"), checks what the CCU's
// install_addon checks, and installs it on a pretend hub.
func TestPackage(t *testing.T) {
	t.Parallel()
	need(t, "to run scripts/addon.sh", "bash")
	archs := os.Getenv("HUBTUNNEL_ADDON_ARCHS")
	if archs == "" {
		archs = goarchOf()
	}
	const version = "0.9.1-test"
	const epoch = 1700000000

	build := func(out string) []byte {
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "addon.sh"), version, out)
		cmd.Env = append(os.Environ(), "ARCHS="+archs, "SOURCE_DATE_EPOCH=1700000000", "EXTRA_LDFLAGS=")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/addon.sh: %v\n%s", err, b)
		}
		if !strings.Contains(string(b), "bytes)") {
			t.Errorf("scripts/addon.sh does not print the size:\n%s", b)
		}
		tgz, err := os.ReadFile(filepath.Join(out, "hubtunnel-"+version+".tgz"))
		if err != nil {
			t.Fatal(err)
		}
		return tgz
	}
	dir := t.TempDir()
	tgz := build(filepath.Join(dir, "a"))
	if again := build(filepath.Join(dir, "b")); !bytes.Equal(tgz, again) {
		t.Error("two builds of the same version differ")
	}
	tgzPath := filepath.Join(dir, "a", "hubtunnel-"+version+".tgz")

	entries := readTgz(t, tgzPath)
	if len(entries) == 0 || entries[0].hdr.Name != "update_script" {
		t.Fatalf("first entry is not update_script: %v", names(entries))
	}
	files := map[string]tarEntry{}
	var inner []string
	for _, e := range entries {
		h := e.hdr
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != epoch {
			t.Errorf("%s: uid %d gid %d mtime %v; want 0 0 %v", h.Name, h.Uid, h.Gid, h.ModTime, time.Unix(epoch, 0))
		}
		if strings.Contains(h.Name, "..") || strings.HasPrefix(h.Name, "/") {
			t.Errorf("unsafe name %q", h.Name)
		}
		if h.Typeflag == tar.TypeReg {
			files[h.Name] = e
		}
		if strings.HasPrefix(h.Name, "hubtunnel/") {
			inner = append(inner, h.Name)
		}
	}
	if !sort.StringsAreSorted(inner) {
		t.Errorf("names not sorted: %v", inner)
	}
	for name, mode := range map[string]int64{
		"update_script":                         0o755,
		"hubtunnel.sha256":                      0o644,
		"hubtunnel/VERSION":                     0o644,
		"hubtunnel/rc.d/hubtunnel":              0o755,
		"hubtunnel/lib/hm_addons.tcl":           0o644,
		"hubtunnel/www/update-check.cgi":        0o644,
		"hubtunnel/www/index.html":              0o644,
		"hubtunnel/bin/hubtunnel-" + goarchOf(): 0o755,
	} {
		e, ok := files[name]
		if !ok {
			t.Errorf("%s missing from the package", name)
			continue
		}
		if e.hdr.Mode&0o7777 != mode {
			t.Errorf("%s: mode %o, want %o", name, e.hdr.Mode&0o7777, mode)
		}
	}
	if got := string(files["hubtunnel/VERSION"].data); got != version+"\n" {
		t.Errorf("VERSION = %q", got)
	}

	// hubtunnel.sha256 covers every other file (install_addon runs
	// "sha256sum -sc" on it before update_script).
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(files["hubtunnel.sha256"].data)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("bad line in hubtunnel.sha256: %q", line)
		}
		sums[name] = sum
	}
	for name, e := range files {
		if name == "hubtunnel.sha256" {
			continue
		}
		if sums[name] != sha256Hex(string(e.data)) {
			t.Errorf("hubtunnel.sha256: %s has %q, want %s", name, sums[name], sha256Hex(string(e.data)))
		}
		delete(sums, name)
	}
	if len(sums) != 0 {
		t.Errorf("hubtunnel.sha256 names files not in the package: %v", sums)
	}

	// The CCU's own check, with busybox's sha256sum.
	busybox, _ := busyboxPath(t)
	h := newHub(t)
	pkg := filepath.Join(dir, "unpacked")
	unpack(t, tgzPath, pkg)
	check := exec.Command(busybox, "sha256sum", "-sc", "hubtunnel.sha256")
	check.Dir = pkg
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("busybox sha256sum -sc hubtunnel.sha256: %v %s", err, out)
	}

	// Install the real package and ask the real binary its version.
	h.pkg = pkg
	h.machine = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "armv7": "armv7l"}[goarchOf()]
	h.mustInstall()
	if r := h.mustRC("info"); !strings.Contains(r.stdout, "Version: "+version+"\n") {
		t.Errorf("info after installing the package:\n%s", r.stdout)
	}
	out, err := exec.Command(h.path(binPath), "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != version {
		t.Errorf("installed hubtunnel version: %q %v, want %s", out, err, version)
	}
}

func names(entries []tarEntry) []string {
	var n []string
	for _, e := range entries {
		n = append(n, e.hdr.Name)
	}
	return n
}
