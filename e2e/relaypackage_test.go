package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// packageVersion is what the packaging tests stamp their builds with.
const packageVersion = "0.9.1-dev.gtest"

// buildPackage runs scripts/NAME VERSION OUT for amd64 from the module's
// root and returns its output lines.
func buildPackage(t *testing.T, script, out string, archs string) []string {
	t.Helper()
	cmd := exec.Command("scripts/"+script, packageVersion, out)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "ARCHS="+archs)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	return strings.Fields(string(b))
}

// TestRelayDebianPackage builds the relay's .deb and installs it as dpkg
// would on a server, into a throwaway root (systemd cannot run here): the
// unit passes systemd-analyze verify with no unknown setting, the service's
// user is made, the binary runs, remove keeps the config and the relay's
// state (its key: hubs pin it), purge deletes them.
func TestRelayDebianPackage(t *testing.T) {
	t.Parallel()
	needRoot(t, "to install a package into a throwaway root")
	need(t, "to build the package", "dpkg-deb")
	need(t, "to install it", "dpkg")
	analyze := need(t, "to check the unit", "systemd-analyze")
	need(t, "for the package's user", "systemd-sysusers")

	out := t.TempDir()
	lines := buildPackage(t, "deb-relay.sh", out, "amd64")
	deb := lines[len(lines)-1]
	if want := "hubrelay_0.9.1~dev.gtest_amd64.deb"; filepath.Base(deb) != want {
		t.Fatalf("built %s, want %s", deb, want)
	}

	// The unit as systemd reads it, with ExecStart pointing at the
	// package's binary where this test unpacked it.
	x, unit := unpackUnit(t, deb, "hubrelay.service")
	for _, want := range []string{"User=hubrelay", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ProtectSystem=strict", "StateDirectory=hubrelay", "ExecReload="} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	verifyUnit(t, analyze, "hubrelay.service", strings.NewReplacer("/usr/bin/hubrelay", filepath.Join(x, "usr/bin/hubrelay")).Replace(unit))

	root, dpkg := dpkgRoot(t, "etc")
	inst := dpkg("-i", deb)
	if !strings.Contains(inst, "set domain in /etc/hubrelay/relay.toml") {
		t.Errorf("install did not tell what to do next:\n%s", inst)
	}
	if pw := readFileString(filepath.Join(root, "etc/passwd")); !strings.Contains(pw, "hubrelay:x:") || !strings.Contains(pw, "nologin") {
		t.Errorf("no system user hubrelay in the root's /etc/passwd:\n%s", pw)
	}
	bin := filepath.Join(root, "usr/bin/hubrelay")
	if v := strings.TrimSpace(run(t, bin, "version")); v != packageVersion {
		t.Errorf("installed hubrelay says version %q, want %q", v, packageVersion)
	}
	// A relay of this config refuses to start until the operator sets
	// its domain, and says so.
	if o, err := runErr(bin, "run", "--config", filepath.Join(root, "etc/hubrelay/relay.toml")); err == nil || !strings.Contains(o, "domain") {
		t.Errorf("the packaged config started without a domain: %v: %s", err, o)
	}

	// What a running relay leaves: its key and store.
	state := filepath.Join(root, "var/lib/hubrelay")
	os.MkdirAll(state, 0o700)
	writeFile(t, filepath.Join(state, "relay.key"), "a key\n")
	dpkg("-r", "hubrelay")
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Errorf("remove left the binary: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "lib/systemd/system/hubrelay.service")); !os.IsNotExist(err) {
		t.Errorf("remove left the unit: %v", err)
	}
	for _, keep := range []string{"etc/hubrelay/relay.toml", "var/lib/hubrelay/relay.key"} {
		if _, err := os.Stat(filepath.Join(root, keep)); err != nil {
			t.Errorf("remove took %s: %v", keep, err)
		}
	}
	dpkg("-P", "hubrelay")
	for _, gone := range []string{"etc/hubrelay/relay.toml", "var/lib/hubrelay"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("purge left %s: %v", gone, err)
		}
	}
}

// unpackUnit unpacks the package deb into a folder of its own and returns
// the folder and the text of its systemd unit name.
func unpackUnit(t *testing.T, deb, name string) (string, string) {
	t.Helper()
	x := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, x)
	return x, readFileString(filepath.Join(x, "lib/systemd/system", name))
}

// verifyUnit runs systemd-analyze verify on unit (written as name, its
// paths already moved to where the test unpacked the package) and fails
// the test on an error or a setting systemd does not know.
func verifyUnit(t *testing.T, analyze, name, unit string) {
	t.Helper()
	check := filepath.Join(t.TempDir(), name)
	writeFile(t, check, unit)
	out, err := exec.Command(analyze, "verify", "--man=no", check).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Unknown") || strings.Contains(string(out), "nvalid") {
		t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
	}
}

// dpkgRoot makes a throwaway root for dpkg, with the folders dirs in it,
// and returns it with a function that runs dpkg on it: maintainer scripts
// run outside it with DPKG_ROOT set, and systemd does not run there.
func dpkgRoot(t *testing.T, dirs ...string) (string, func(args ...string) string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range append([]string{"var/lib/dpkg/updates", "var/lib/dpkg/info"}, dirs...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), "")
	return root, func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
}

// TestRelayContainerImage builds the relay's OCI image, unpacks it with
// umoci (which checks every digest) and runs it as a container runtime
// would: the image's user in its root filesystem (chroot; no container
// engine runs here). The relay starts with a mounted config, keeps its key
// and store in the state volume, and the image has the CA certificates
// ACME needs.
func TestRelayContainerImage(t *testing.T) {
	t.Parallel()
	needRoot(t, "to unpack the image with its owners and chroot into it")
	umoci := need(t, "to unpack the image", "umoci")
	out := t.TempDir()
	lines := buildPackage(t, "oci-relay.sh", out, "amd64")
	layout := lines[0]
	if want := filepath.Join(out, "hubrelay-"+packageVersion+".oci.tar"); lines[1] != want {
		t.Errorf("archive %s, want %s", lines[1], want)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	run(t, umoci, "unpack", "--image", layout+":"+packageVersion, bundle)

	// What a runtime reads: the image's config, as umoci turned it into a
	// runtime spec.
	var spec struct {
		Process struct {
			User struct{ UID, GID int }
			Args []string
			Cwd  string
		}
	}
	if err := json.Unmarshal([]byte(readFileString(filepath.Join(bundle, "config.json"))), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Process.User.UID != 65532 || spec.Process.User.GID != 65532 {
		t.Errorf("the image runs as %d:%d, want 65532:65532", spec.Process.User.UID, spec.Process.User.GID)
	}
	wantArgs := "/usr/bin/hubrelay run --config /etc/hubrelay/relay.toml"
	if got := strings.Join(spec.Process.Args, " "); got != wantArgs {
		t.Errorf("the image runs %q, want %q", got, wantArgs)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	if fi, err := os.Stat(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt")); err != nil || fi.Size() < 10000 {
		t.Errorf("no CA certificates in the image: %v", err)
	}

	agentPort := freePort(t)
	offset, err := ports.Offset()
	if err != nil {
		t.Fatal(err)
	}
	// Mounted read-only for everyone, as an operator's config is.
	conf := fmt.Sprintf(
		"domain = \"localhost\"\nagent_listen = \"127.0.0.1:%d\"\nagent_listen_udp = \"off\"\npublic_listen = \"127.0.0.1\"\nport_offset = %d\nprivate_key_file = \"/var/lib/hubrelay/relay.key\"\nstore = \"/var/lib/hubrelay/relay.db\"\n",
		agentPort, offset)
	if err := os.WriteFile(filepath.Join(rootfs, "etc/hubrelay/relay.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, t.TempDir(), "relay-container", append([]string{"chroot", "--userspec=65532:65532", rootfs}, spec.Process.Args...)...)
	poll.Until(t, 20*time.Second, "the image's relay to listen", func() bool {
		if !p.alive() {
			t.Fatalf("the image's relay exited: %v\n%s", p.err, p.logText())
		}
		return strings.Contains(p.logText(), testbed.RelayReady)
	})
	for _, f := range []string{"relay.key", "relay.db"} {
		fi, err := os.Stat(filepath.Join(rootfs, "var/lib/hubrelay", f))
		if err != nil {
			t.Errorf("%s not in the state volume: %v", f, err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: owner %d, mode %v; want the image's user's, private", f, st.Uid, fi.Mode().Perm())
		}
	}
}

// TestRelayContainerUnderRunc runs the relay's OCI image with a real OCI
// runtime (runc, with the runtime spec umoci makes of the image's config:
// its own PID, mount, IPC and UTS namespaces, the image's user), as
// `docker run -v ./relay.toml:/etc/hubrelay/relay.toml:ro -v
// state:/var/lib/hubrelay` would: in a network namespace of its own where,
// as Docker sets it, unprivileged ports start at 0, so the image's user
// binds 80, 443 and 7443 with no port_offset. Reached from inside that
// namespace, it serves its portal over TLS on 443 and redirects 80; its
// key and store are in the state volume; SIGTERM (docker stop) ends it.
func TestRelayContainerUnderRunc(t *testing.T) {
	t.Parallel()
	needRoot(t, "to run a container")
	umoci := need(t, "to unpack the image", "umoci")
	runc := need(t, "to run the image as a container runtime does", "runc")
	ip := need(t, "for the container's network namespace", "ip")
	curl := need(t, "to reach the container's ports", "curl")
	out := t.TempDir()
	layout := buildPackage(t, "oci-relay.sh", out, "amd64")[0]
	bundle := filepath.Join(t.TempDir(), "bundle")
	run(t, umoci, "unpack", "--image", layout+":"+packageVersion, bundle)

	ns, inNs := newNetns(t, ip, "hubrelay-oci")
	dir := t.TempDir()
	state := filepath.Join(dir, "state") // the named volume
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(state, 65532, 65532)
	conf := filepath.Join(dir, "relay.toml")
	writeFile(t, conf, "domain = \"localhost\"\nprivate_key_file = \"/var/lib/hubrelay/relay.key\"\nstore = \"/var/lib/hubrelay/relay.db\"\n")
	os.Chmod(conf, 0o644)

	// What `docker run` adds to the image's spec: the volumes, the
	// network namespace, the sysctl, no terminal.
	specFile := filepath.Join(bundle, "config.json")
	var spec map[string]any
	if err := json.Unmarshal([]byte(readFileString(specFile)), &spec); err != nil {
		t.Fatal(err)
	}
	spec["process"].(map[string]any)["terminal"] = false
	linux := spec["linux"].(map[string]any)
	for _, n := range linux["namespaces"].([]any) {
		if n := n.(map[string]any); n["type"] == "network" {
			n["path"] = "/run/netns/" + ns
		}
	}
	linux["sysctl"] = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	var mounts []any
	for _, m := range spec["mounts"].([]any) {
		if m.(map[string]any)["destination"] != "/var/lib/hubrelay" {
			mounts = append(mounts, m)
		}
	}
	spec["mounts"] = append(mounts,
		map[string]any{"destination": "/var/lib/hubrelay", "type": "bind", "source": state, "options": []string{"rbind", "rw"}},
		map[string]any{"destination": "/etc/hubrelay/relay.toml", "type": "bind", "source": conf, "options": []string{"rbind", "ro"}})
	b, _ := json.Marshal(spec)
	writeFile(t, specFile, string(b))

	id := fmt.Sprintf("hubrelay-e2e-%d", os.Getpid())
	t.Cleanup(func() { runErr(runc, "delete", "--force", id) })
	p := start(t, dir, "relay-runc", runc, "run", "--bundle", bundle, id)
	poll.Until(t, 20*time.Second, "the container's relay to listen", func() bool {
		if !p.alive() {
			t.Fatalf("the container exited: %v\n%s", p.err, p.logText())
		}
		return strings.Contains(p.logText(), testbed.RelayReady)
	})
	for url, want := range map[string]string{"https://localhost/login": "200", "http://localhost/": "308"} {
		if got := run(t, inNs(curl, "-sk", "-o", "/dev/null", "-w", "%{http_code}", url)...); got != want {
			t.Errorf("%s in the container's network: %s, want %s", url, got, want)
		}
	}
	for _, f := range []string{"relay.key", "relay.db"} {
		fi, err := os.Stat(filepath.Join(state, f))
		if err != nil {
			t.Errorf("%s not in the state volume: %v", f, err)
		} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: owner %d, mode %v; want the image's user's, private", f, st.Uid, fi.Mode().Perm())
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	poll.Until(t, 20*time.Second, "the container to end on SIGTERM (docker stop)", func() bool { return !p.alive() })
	if p.err != nil {
		t.Errorf("the container ended with %v after SIGTERM\n%s", p.err, p.logText())
	}
}
