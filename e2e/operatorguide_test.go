package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestOperatorGuide walks README's "Running a relay" from a server with
// nothing on it to a relay with a certificate from an ACME CA and a first
// hub, with the package the guide builds and the commands it gives:
//
//   - the .deb, installed with dpkg into a throwaway root;
//   - relay.toml edited as the guide says: domain, and the package's own
//     [acme] sample filled in (Pebble as the CA, BIND as the RFC 2136
//     server), the TSIG secret readable by the service as its comment says;
//   - the relay started with the unit's ExecStart, as its User, in the
//     throwaway root (chroot), with the state folder systemd's
//     StateDirectory= would make; systemd itself cannot run here;
//   - `hubrelay user add` and `hubrelay hub add` as the service's user
//     while the relay runs; the code printed is enrolled by a hub
//     (`hubtunnel enroll CODE`), which connects;
//   - the account logs in over HTTPS trusting only the CA's root and
//     reaches the hub's WebUI.
//
// What differs from a server, for loopback and an unprivileged CI: the
// ports (port_offset and a free agent port: no CAP_NET_BIND_SERVICE
// outside systemd), no UDP, and names under "localhost".
func TestOperatorGuide(t *testing.T) {
	t.Parallel()
	needRoot(t, "to install the package into a throwaway root and run the relay in it as its user")
	need(t, "to build the package", "dpkg-deb")
	need(t, "to install it", "dpkg")
	need(t, "for the package's user", "systemd-sysusers")

	// The hub's services (ccusim), and the CA with its DNS server.
	s := newHub(t, setupOpts{})
	s.relay.stop(t) // only ccusim of the test bed is used
	d := startBind(t, s.dir)
	p := startPebble(t, s.dir, d, 90*24*time.Hour)

	// make deb-relay ARCHS=amd64; sudo dpkg -i hubrelay_*_amd64.deb
	lines := buildPackage(t, "deb-relay.sh", t.TempDir(), "amd64")
	root, dpkg := dpkgRoot(t, "etc")
	dpkg("-i", lines[len(lines)-1])
	uid, gid := systemUser(t, root, "hubrelay")

	// sudoedit /etc/hubrelay/relay.toml: domain, and [acme].
	etc := filepath.Join(root, "etc/hubrelay")
	caRoot := filepath.Join(etc, "pebble-ca.pem") // Pebble's HTTPS is not under a public root
	writeFile(t, caRoot, readFileString(p.minica))
	os.Chmod(caRoot, 0o644)
	tsig := filepath.Join(etc, "tsig.key")
	writeFile(t, tsig, readFileString(d.secretFile))
	// chgrp hubrelay /etc/hubrelay/tsig.key && chmod 0640 /etc/hubrelay/tsig.key
	if err := os.Chown(tsig, 0, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tsig, 0o640)
	conf := filepath.Join(etc, "relay.toml")
	agentPort, offset := freePort(t), s.offset
	edited := strings.NewReplacer(
		`#domain = "hubs.example.org"`, `domain = "localhost"`,
		`agent_listen = ":7443"`, fmt.Sprintf("agent_listen = \"127.0.0.1:%d\"\nagent_listen_udp = \"off\"\npublic_listen = \"127.0.0.1\"\nport_offset = %d", agentPort, offset),
		"#[acme]\n", "[acme]\n",
		"#email = ", "email = ",
		"#[acme.rfc2136]\n", fmt.Sprintf("ca = %q\nca_root = \"/etc/hubrelay/pebble-ca.pem\"\n[acme.rfc2136]\n", p.directory),
		`#server = "ns1.example.org:53"`, fmt.Sprintf("server = %q", d.addr),
		`#tsig_key = "hubrelay-acme"`, fmt.Sprintf("tsig_key = %q", d.keyName),
		`#tsig_secret_file = `, `tsig_secret_file = `,
	).Replace(readFileString(conf))
	if strings.Count(edited, "#") != strings.Count(readFileString(conf), "#")-7 {
		t.Fatalf("the package's relay.toml no longer has the lines the guide edits:\n%s", readFileString(conf))
	}
	writeFile(t, conf, edited)
	os.Chmod(conf, 0o644)

	// sudo systemctl enable --now hubrelay: what the unit runs, as its
	// user, with the state folder StateDirectory= makes.
	_, unit := unpackUnit(t, lines[len(lines)-1], "hubrelay.service")
	execStart := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindStringSubmatch(unit)
	if execStart == nil || !strings.Contains(unit, "\nUser=hubrelay\n") || !strings.Contains(unit, "\nStateDirectory=hubrelay\n") {
		t.Fatalf("the unit does not run hubrelay as its user with its state directory:\n%s", unit)
	}
	state := filepath.Join(root, "var/lib/hubrelay")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(state, uid, gid)
	asService := func(args ...string) []string {
		return append([]string{"chroot", fmt.Sprintf("--userspec=%d:%d", uid, gid), root}, args...)
	}
	relay := start(t, s.dir, "relay-packaged", asService(strings.Fields(execStart[1])...)...)
	poll.Until(t, 20*time.Second, "the packaged relay to listen", func() bool {
		if !relay.alive() {
			t.Fatalf("the packaged relay exited: %v\n%s", relay.err, relay.logText())
		}
		return strings.Contains(relay.logText(), testbed.RelayReady)
	})

	// sudo -u hubrelay hubrelay user add alice --config /etc/hubrelay/relay.toml
	const password = "correct horse battery staple"
	cli := func(stdin string, args ...string) string {
		t.Helper()
		argv := asService(append([]string{"/usr/bin/hubrelay"}, append(args, "--config", "/etc/hubrelay/relay.toml")...)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("hubrelay %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli(password+"\n", "user", "add", "alice")
	// sudo -u hubrelay hubrelay hub add garage --owner alice ...  # prints the code
	out := cli("", "hub", "add", "garage", "--owner", "alice")
	code := regexp.MustCompile(`(?m)^\s+(\S+-\S+)\s*$`).FindStringSubmatch(out)
	if code == nil {
		t.Fatalf("hubrelay hub add printed no code:\n%s", out)
	}

	// The hub owner: hubtunnel enroll CODE (the panel does the same).
	garage := s.newcomer("garage", "")
	if out, err := garage.enroll(code[1]); err != nil || !strings.Contains(out, "enrolled as hub garage") {
		t.Fatalf("hubtunnel enroll with the guide's code: %v\n%s", err, out)
	}
	garage.start(s)
	garage.waitConnected(t)

	// The relay's certificate comes from the CA; a browser that trusts
	// only the CA's root logs alice in and opens the hub's WebUI.
	rootCert := p.root(t)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", 443+offset)
	poll.Until(t, 90*time.Second, "the packaged relay to serve a certificate from the CA", func() bool {
		if !relay.alive() {
			t.Fatalf("the packaged relay exited: %v\n%s", relay.err, relay.logText())
		}
		return verifies(servedChain(t, tlsAddr, "garage.localhost"), rootCert, "garage.localhost") == nil
	})
	b := trustingClient(t, rootCert)
	page := fmt.Sprintf("https://garage.localhost:%d/", 443+offset)
	resp, body := portalLogin(t, b, page, "alice", password, nil)
	if resp.StatusCode != 200 || resp.Request.URL.String() != page || !strings.Contains(string(body), "HomeMatic WebUI") {
		t.Fatalf("after alice's login: %d at %s, %.200q; want the hub's WebUI", resp.StatusCode, resp.Request.URL, body)
	}

	// What the service made is its own and private.
	for _, f := range []string{"relay.key", "relay.db"} {
		fi, err := os.Stat(filepath.Join(state, f))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("/var/lib/hubrelay/%s: %v, %v; want it there, private", f, fi, err)
		}
	}
}

// systemUser is the uid and gid of user name in root's /etc/passwd.
func systemUser(t *testing.T, root, name string) (int, int) {
	t.Helper()
	for _, line := range strings.Split(readFileString(filepath.Join(root, "etc/passwd")), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				return uid, gid
			}
		}
	}
	t.Fatalf("no user %s in %s/etc/passwd", name, root)
	return 0, 0
}

// trustingClient is a loopback client (any host name reaches 127.0.0.1)
// with a cookie jar that trusts only root, as a browser with that CA.
func trustingClient(t *testing.T, root *x509.Certificate) *http.Client {
	t.Helper()
	c := testbed.LoopbackClient(true, 30*time.Second)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	c.Jar, _ = cookiejar.New(nil)
	return c
}
