package e2e

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
)

// debmaticAddons is a debmatic hub's /etc/config/hm_addons.cfg with other
// addons' buttons, as their installers write it: array get's order, a
// multi-word name in braces, an entry appended by a shell script with a
// newline and an HTML entity.
const debmaticAddons = "cuxd {CONFIG_URL /addons/cuxd/index.ccc CONFIG_DESCRIPTION {de {<li>CUxD - CCU User eXtension Daemon</li>} en {<li>CUxD - CCU User eXtension Daemon</li>}} ID cuxd CONFIG_NAME CUxD} " +
	"hmm {CONFIG_URL /addons/hmm/settings.cgi CONFIG_DESCRIPTION {de {<li>x</li>} en {<li>x</li>}} ID hmm CONFIG_NAME {Homematic Manager}}\n" +
	"hvl {CONFIG_URL /addons/hvl/ CONFIG_DESCRIPTION {de {Virtueller Homematic Ger&aumltelayer} en {virtual homematic device layer}} ID hvl CONFIG_NAME HVL}\n"

// TestAgentDebianPackage builds the agent's .deb and installs it as apt
// would on a debmatic hub, into a throwaway root (systemd cannot run here)
// that has debmatic's markers, its hm_addons.cfg with other addons'
// buttons and Debian's lighttpd folders. The unit passes systemd-analyze
// verify; install adds the control-panel button (the others kept), enables
// the panel's lighttpd rule and the service; the installed agent runs with
// the installed config, unenrolled, and Debian's lighttpd with that rule
// passes the panel's path to it; remove takes button, rule and binary
// away and keeps the config and key, purge deletes them.
func TestAgentDebianPackage(t *testing.T) {
	t.Parallel()
	needRoot(t, "to install a package into a throwaway root")
	need(t, "to build the package", "dpkg-deb")
	need(t, "to install it", "dpkg")
	analyze := need(t, "to check the unit", "systemd-analyze")
	tclsh := need(t, "for the control-panel button (debmatic has /bin/tclsh)", "tclsh")

	out := t.TempDir()
	lines := buildPackage(t, "deb-agent.sh", out, "amd64")
	deb := lines[len(lines)-1]
	if want := "hubtunnel_0.9.1~dev.gtest_amd64.deb"; filepath.Base(deb) != want {
		t.Fatalf("built %s, want %s", deb, want)
	}

	// The unit as systemd reads it, its programs where this test unpacked them.
	x, unit := unpackUnit(t, deb, "hubtunnel.service")
	for _, want := range []string{"Restart=on-failure", "RestartSec=", "StartLimitBurst=5", "StartLimitIntervalSec=10min",
		"ProtectSystem=strict", "ReadWritePaths=-/etc/config/addons/hubtunnel", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes",
		"--config /etc/config/addons/hubtunnel/hubtunnel.toml"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	verifyUnit(t, analyze, "hubtunnel.service", strings.NewReplacer("/usr/bin/hubtunnel", filepath.Join(x, "usr/bin/hubtunnel"),
		"/usr/lib/hubtunnel/", filepath.Join(x, "usr/lib/hubtunnel")+"/").Replace(unit))

	// A debmatic hub: its package's folder, the CCU's settings folder with
	// other addons' buttons, Debian's lighttpd with debmatic's module.
	root, dpkg := dpkgRoot(t, "usr/share/debmatic", "etc/config/addons/www", "etc/lighttpd/conf-available", "etc/lighttpd/conf-enabled")
	at := func(p string) string { return filepath.Join(root, p) }
	writeFile(t, at("etc/config/hm_addons.cfg"), debmaticAddons)
	inst := dpkg("-i", deb)
	if !strings.Contains(inst, "Settings > Control panel > hubtunnel") {
		t.Errorf("install did not tell what to do next:\n%s", inst)
	}

	buttons := hmAddons(t, tclsh, at("etc/config/hm_addons.cfg"))
	want := map[string]string{
		"hubtunnel.CONFIG_URL": "/addons/hubtunnel/panel/", "hubtunnel.CONFIG_NAME": "hubtunnel", "hubtunnel.ID": "hubtunnel",
		"cuxd.CONFIG_URL": "/addons/cuxd/index.ccc", "hmm.CONFIG_NAME": "Homematic Manager",
		"hvl.CONFIG_DESCRIPTION": "de {Virtueller Homematic Ger&aumltelayer} en {virtual homematic device layer}",
	}
	for k, v := range want {
		if buttons[k] != v {
			t.Errorf("hm_addons.cfg after install: %s = %q, want %q\n%s", k, buttons[k], v, readFileString(at("etc/config/hm_addons.cfg")))
		}
	}
	if d := buttons["hubtunnel.CONFIG_DESCRIPTION"]; !strings.Contains(d, "Fernzugriff") || strings.Contains(d, "'") {
		t.Errorf("the button's description %q: want German and English, no apostrophe", d)
	}
	link := at("etc/lighttpd/conf-enabled/90-hubtunnel.conf")
	if dest, err := os.Readlink(link); err != nil || dest != "../conf-available/90-hubtunnel.conf" {
		t.Errorf("the panel's lighttpd rule is not enabled: %q, %v", dest, err)
	}
	// A link to /lib/systemd/system/hubtunnel.service: of the hub's root, not this machine's.
	if _, err := os.Lstat(at("etc/systemd/system/multi-user.target.wants/hubtunnel.service")); err != nil {
		t.Errorf("the service is not enabled: %v", err)
	}
	bin := at("usr/bin/hubtunnel")
	if v := strings.TrimSpace(run(t, bin, "version")); v != packageVersion {
		t.Errorf("installed hubtunnel says version %q, want %q", v, packageVersion)
	}
	confDir := at("etc/config/addons/hubtunnel")
	conf := filepath.Join(confDir, "hubtunnel.toml")
	for p, mode := range map[string]os.FileMode{confDir: 0o700 | os.ModeDir, conf: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v, want mode %v", p, err, mode)
		}
	}

	// The installed agent with the installed config, its port moved to a
	// free one (the lighttpd rule with it, as the config's comment says).
	ui := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	writeFile(t, conf, strings.Replace(readFileString(conf), `ui_listen = "127.0.0.1:8099"`, fmt.Sprintf("ui_listen = %q", ui), 1))
	rule := at("etc/lighttpd/conf-available/90-hubtunnel.conf")
	writeFile(t, rule, strings.Replace(readFileString(rule), `"port" => 8099`, fmt.Sprintf(`"port" => %d`, mustPort(t, ui)), 1))
	agent := start(t, t.TempDir(), "agent", bin, "run", "--config", conf)
	var st localapi.Status
	var err error
	poll.Until(t, 20*time.Second, "the installed agent's status API", func() bool {
		if !agent.alive() {
			t.Fatalf("the installed agent exited: %v\n%s", agent.err, agent.logText())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err = localapi.NewClient(ui).Status(ctx)
		return err == nil
	})
	if st.State != "unenrolled" || st.Version != packageVersion {
		t.Errorf("the installed agent says state %q, version %q; want unenrolled, %s", st.State, st.Version, packageVersion)
	}
	if st.CCUFirewall != nil {
		t.Errorf("the agent applies CCU firewall settings debmatic does not have: %+v", st.CCUFirewall)
	}
	// The panel through Debian's lighttpd as debmatic sets it up: the same
	// answers as from the agent itself, for the ping and for a script
	// (which debmatic's own rules would serve from /www).
	web := debmaticLighttpd(t, root)
	for _, path := range []string{"/addons/hubtunnel/panel/ping", "/addons/hubtunnel/panel/app.js"} {
		dc, db := httpGet(t, "http://"+ui+path)
		lc, lb := httpGet(t, web+path)
		if dc != lc || db != lb {
			t.Errorf("GET %s: through lighttpd %d %.100q, from the agent %d %.100q", path, lc, lb, dc, db)
		}
		if path == "/addons/hubtunnel/panel/ping" {
			switch {
			case dc == http.StatusNotFound:
				t.Logf("no settings panel in this build (ping: 404); the rule passes its path on, its ping is not checked")
			case dc != 200 || strings.TrimSpace(db) != "ok":
				t.Errorf("the panel's ping: %d %q, want 200 ok", dc, db)
			}
		}
	}
	if c, _ := httpGet(t, web+"/addons/cuxd/index.ccc"); c != http.StatusServiceUnavailable {
		t.Errorf("another addon's page went elsewhere than debmatic's own rule says: %d", c)
	}
	agent.stop(t)

	// A factory reset of the CCU's settings empties /etc/config: the
	// service puts the default config back before it starts.
	if err := os.RemoveAll(confDir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(at("usr/lib/hubtunnel/ensure-config"))
	cmd.Env = append(os.Environ(), "HUBTUNNEL_ROOT="+root)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ensure-config: %v\n%s", err, b)
	}
	if got, want := readFileString(conf), readFileString(at("usr/share/hubtunnel/hubtunnel.toml")); got != want || want == "" {
		t.Errorf("after a factory reset the config is %q, want the package's default", got)
	}
	if fi, err := os.Stat(confDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("after a factory reset the config folder is %v (%v), want 0700", fi.Mode(), err)
	}

	// What an enrolled agent leaves: its key.
	writeFile(t, filepath.Join(confDir, "hubtunnel.key"), "a key\n")
	dpkg("-r", "hubtunnel")
	for _, gone := range []string{"usr/bin/hubtunnel", "lib/systemd/system/hubtunnel.service", "etc/lighttpd/conf-enabled/90-hubtunnel.conf",
		"etc/systemd/system/multi-user.target.wants/hubtunnel.service"} {
		if _, err := os.Lstat(at(gone)); !os.IsNotExist(err) {
			t.Errorf("remove left %s: %v", gone, err)
		}
	}
	for _, keep := range []string{"etc/config/addons/hubtunnel/hubtunnel.toml", "etc/config/addons/hubtunnel/hubtunnel.key"} {
		if _, err := os.Stat(at(keep)); err != nil {
			t.Errorf("remove took %s: %v", keep, err)
		}
	}
	buttons = hmAddons(t, tclsh, at("etc/config/hm_addons.cfg"))
	if _, ok := buttons["hubtunnel.ID"]; ok {
		t.Errorf("remove left the button:\n%s", readFileString(at("etc/config/hm_addons.cfg")))
	}
	for k, v := range want {
		if !strings.HasPrefix(k, "hubtunnel.") && buttons[k] != v {
			t.Errorf("hm_addons.cfg after remove: %s = %q, want %q", k, buttons[k], v)
		}
	}
	dpkg("-P", "hubtunnel")
	for _, gone := range []string{"etc/config/addons/hubtunnel", "etc/lighttpd/conf-available/90-hubtunnel.conf"} {
		if _, err := os.Stat(at(gone)); !os.IsNotExist(err) {
			t.Errorf("purge left %s: %v", gone, err)
		}
	}
	if _, err := os.Stat(at("etc/config/hm_addons.cfg")); err != nil {
		t.Errorf("purge took the WebUI's hm_addons.cfg: %v", err)
	}
}

// TestAgentDebianPackageOnPiVCCUHost: on a piVCCU host the CCU runs in its
// container, so the package says to install the addon there and neither
// enables the service nor touches anything of the CCU.
func TestAgentDebianPackageOnPiVCCUHost(t *testing.T) {
	t.Parallel()
	needRoot(t, "to install a package into a throwaway root")
	need(t, "to build the package", "dpkg-deb")
	need(t, "to install it", "dpkg")
	lines := buildPackage(t, "deb-agent.sh", t.TempDir(), "amd64")
	root, dpkg := dpkgRoot(t, "etc/piVCCU3", "etc/lighttpd/conf-enabled")
	b := dpkg("-i", lines[len(lines)-1])
	if !strings.Contains(b, "piVCCU host") || !strings.Contains(b, "Additional software") {
		t.Errorf("install on a piVCCU host did not say where the agent belongs:\n%s", b)
	}
	for _, no := range []string{"etc/systemd/system/multi-user.target.wants/hubtunnel.service", "etc/lighttpd/conf-enabled/90-hubtunnel.conf", "etc/config/hm_addons.cfg"} {
		if _, err := os.Lstat(filepath.Join(root, no)); !os.IsNotExist(err) {
			t.Errorf("install on a piVCCU host made %s: %v", no, err)
		}
	}
}

// hmAddons reads hm_addons.cfg as the WebUI does (Tcl's array set) and
// returns ID.KEY → value for every button.
func hmAddons(t *testing.T, tclsh, file string) map[string]string {
	t.Helper()
	script := `set fd [open [lindex $argv 0]]; array set a [read $fd]; close $fd
foreach id [array names a] { foreach {k v} $a($id) { puts "$id.$k\t$v" } }`
	outp := run(t, tclsh, writeTempScript(t, script), file)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(outp), "\n") {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			m[k] = v
		}
	}
	return m
}

func writeTempScript(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dump.tcl")
	writeFile(t, p, content)
	return p
}

// debmaticLighttpd runs Debian's lighttpd as debmatic sets it up: the
// WebUI socket with debmatic's module's rules (pages to ReGaHss, /addons/
// and /config/ to debmatic's own lighttpd, scripts and images from /www;
// neither backend runs here, so they answer 503), then conf-enabled/*.conf
// of root. It returns the base URL.
func debmaticLighttpd(t *testing.T, root string) string {
	t.Helper()
	bin := need(t, "to test the panel's lighttpd rule with debmatic's web server", "lighttpd", "/usr/sbin/lighttpd")
	dead := freePort(t) // nothing listens here: ReGaHss and debmatic's lighttpd
	port := freePort(t)
	www := t.TempDir()
	debmatic := fmt.Sprintf(`server.modules += ( "mod_proxy" )
$SERVER["socket"] == "127.0.0.1:%[1]d" {
  $HTTP["url"] !~ "^/(config/)|(upnp/)|(webui/)|(ise/)|(api/)|(tools/)|(pda)|(pages/jpages)|(addons).*" {
    proxy.server = ( "" => ("localhost" => ("host" => "127.0.0.1", "port" => %[2]d)))
  }
  proxy.server = ( "" => ("localhost" => ("host" => "127.0.0.1", "port" => %[2]d)))
  $HTTP["url"] =~ "^/.*\.(js|css|png|jpg|gif).*" {
    proxy.server = ()
  }
}
`, port, dead)
	if err := os.WriteFile(filepath.Join(root, "etc/lighttpd/conf-available/20-debmatic.conf"), []byte(debmatic), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../conf-available/20-debmatic.conf", filepath.Join(root, "etc/lighttpd/conf-enabled/20-debmatic.conf")); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
include %q
`, www, port, filepath.Join(www, "error.log"), filepath.Join(root, "etc/lighttpd/conf-enabled/*.conf"))
	confPath := filepath.Join(t.TempDir(), "lighttpd.conf")
	writeFile(t, confPath, conf)
	if out, err := exec.Command(bin, "-tt", "-f", confPath).CombinedOutput(); err != nil {
		t.Fatalf("lighttpd refuses the config: %v: %s", err, out)
	}
	p := start(t, t.TempDir(), "lighttpd", bin, "-D", "-f", confPath)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	poll.Until(t, 10*time.Second, "lighttpd listening", func() bool {
		if !p.alive() {
			t.Fatalf("lighttpd exited: %v\n%s", p.err, p.logText())
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestAgentDebianPackageARM: the armhf and arm64 packages `make deb`
// builds install with dpkg -i on a debmatic root of their architecture (a
// Raspberry Pi's: the architecture added to that root's dpkg, the others
// refused), and the agent they installed runs under qemu's user emulation:
// the right machine, the package's version, and its panel answering.
func TestAgentDebianPackageARM(t *testing.T) {
	t.Parallel()
	needRoot(t, "to install a package into a throwaway root")
	need(t, "to build the package", "dpkg-deb")
	need(t, "to install it", "dpkg")
	qemu := map[string]string{
		"armhf": need(t, "to run the armhf agent", "qemu-arm-static", "qemu-arm"),
		"arm64": need(t, "to run the arm64 agent", "qemu-aarch64-static", "qemu-aarch64"),
	}
	machine := map[string]elf.Machine{"armhf": elf.EM_ARM, "arm64": elf.EM_AARCH64}
	debs := map[string]string{}
	for _, l := range buildPackage(t, "deb-agent.sh", t.TempDir(), "armhf arm64") {
		for arch := range qemu {
			if filepath.Base(l) == "hubtunnel_0.9.1~dev.gtest_"+arch+".deb" {
				debs[arch] = l
			}
		}
	}
	for _, arch := range []string{"armhf", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			t.Parallel()
			deb := debs[arch]
			if deb == "" {
				t.Fatalf("deb-agent.sh built no %s package", arch)
			}
			root, dpkg := dpkgRoot(t, "usr/share/debmatic", "etc/config/addons/www", "etc/lighttpd/conf-available", "etc/lighttpd/conf-enabled")
			at := func(p string) string { return filepath.Join(root, p) }
			writeFile(t, at("etc/config/hm_addons.cfg"), debmaticAddons)
			// This machine's dpkg takes only its own architecture until told.
			cmd := exec.Command("dpkg", "--root="+root, "--force-script-chrootless", "-i", deb)
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "architecture") {
				t.Errorf("dpkg -i of the %s package on a root without %s: %v, want a refusal naming the architecture\n%s", arch, arch, err, out)
			}
			dpkg("--add-architecture", arch)
			if inst := dpkg("-i", deb); !strings.Contains(inst, "Settings > Control panel > hubtunnel") {
				t.Errorf("install did not tell what to do next:\n%s", inst)
			}
			if st := dpkg("-s", "hubtunnel:"+arch); !strings.Contains(st, "Status: install ok installed") || !strings.Contains(st, "Architecture: "+arch) {
				t.Errorf("dpkg -s hubtunnel:%s:\n%s", arch, st)
			}

			bin := at("usr/bin/hubtunnel")
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != machine[arch] {
				t.Errorf("the %s package's agent is built for %v", arch, f.Machine)
			}
			f.Close()
			if v := strings.TrimSpace(run(t, qemu[arch], bin, "version")); v != packageVersion {
				t.Errorf("the %s package's agent under qemu says version %q, want %q", arch, v, packageVersion)
			}
			// Its installed config, its port moved to a free one: the panel
			// answers its ping, and the status API the package's version.
			conf := at("etc/config/addons/hubtunnel/hubtunnel.toml")
			ui := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			writeFile(t, conf, strings.Replace(readFileString(conf), `ui_listen = "127.0.0.1:8099"`, fmt.Sprintf("ui_listen = %q", ui), 1))
			agent := start(t, t.TempDir(), "agent-"+arch, qemu[arch], bin, "run", "--config", conf)
			var st localapi.Status
			poll.Until(t, 60*time.Second, "the emulated agent's status API", func() bool {
				if !agent.alive() {
					t.Fatalf("the %s agent exited: %v\n%s", arch, agent.err, agent.logText())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				st, err = localapi.NewClient(ui).Status(ctx)
				return err == nil
			})
			if st.State != "unenrolled" || st.Version != packageVersion {
				t.Errorf("the %s agent says state %q, version %q; want unenrolled, %s", arch, st.State, st.Version, packageVersion)
			}
			resp, err := http.Get("http://" + ui + "/addons/hubtunnel/panel/ping")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Errorf("the %s agent's panel ping: %d %q", arch, resp.StatusCode, body)
			}
		})
	}
}
