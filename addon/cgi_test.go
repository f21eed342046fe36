package addon_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cgi runs update-check.cgi from the source tree under the real tclsh, as
// lighttpd does (QUERY_STRING in the environment), and splits its answer.
// root is HUBTUNNEL_ROOT; "-" leaves the variable unset, as on a hub.
// extra are more variables, as lighttpd sets them (HTTP_HOST=…).
func cgi(t *testing.T, root, query string, extra ...string) (headers map[string]string, body string) {
	t.Helper()
	tclsh := need(t, "to run update-check.cgi as lighttpd does", "tclsh")
	cmd := exec.Command(tclsh, filepath.Join("hubtunnel", "www", "update-check.cgi"))
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "HUBTUNNEL_ROOT=") && !strings.HasPrefix(e, "QUERY_STRING=") && !strings.HasPrefix(e, "HTTP_") {
			env = append(env, e)
		}
	}
	if root != "-" {
		env = append(env, "HUBTUNNEL_ROOT="+root)
	}
	cmd.Env = append(append(env, "QUERY_STRING="+query, "REQUEST_METHOD=GET", "GATEWAY_INTERFACE=CGI/1.1"), extra...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("update-check.cgi ?%s: %v (stderr %v)", query, err, stderrOf(err))
	}
	head, body, ok := strings.Cut(string(out), "\r\n\r\n")
	if !ok {
		t.Fatalf("update-check.cgi ?%s: no end of headers in %q", query, out)
	}
	headers = map[string]string{}
	for _, line := range strings.Split(head, "\r\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("update-check.cgi ?%s: bad header line %q", query, line)
		}
		headers[k] = v
	}
	return headers, body
}

func stderrOf(err error) string {
	if e, ok := err.(*exec.ExitError); ok {
		return string(e.Stderr)
	}
	return ""
}

func TestUpdateCheckVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		latest  string // update-latest; "" = absent
		version string // VERSION; "" = absent
		want    string
	}{
		{"newest the agent learned", "1.3.0\n", "1.2.3\n", "1.3.0"},
		{"no update-latest", "", "1.2.3\n", "1.2.3"},
		{"pre-release word", "2.0.0-rc.1+g1a2b", "1.2.3", "2.0.0-rc.1+g1a2b"},
		// Only newer versions are offered: the CCU calls any other answer
		// an update (issue 15: 0.2.0 installed, 0.1.9 offered).
		{"older than installed", "0.1.9", "0.2.0", "0.2.0"},
		{"the same", "0.2.0", "0.2.0", "0.2.0"},
		{"minor beats patch", "0.10.0", "0.9.9", "0.10.0"},
		{"numbers, not text", "0.9.0", "0.10.0", "0.10.0"},
		{"release beats its pre-release", "0.2.0", "0.2.0-dev.g1a2b3c4", "0.2.0"},
		{"pre-release of the installed", "0.2.0-rc.1", "0.2.0", "0.2.0"},
		{"later pre-release", "0.2.0-rc.10", "0.2.0-rc.9", "0.2.0-rc.10"},
		{"numeric before text", "0.2.0-rc.1", "0.2.0-1", "0.2.0-rc.1"},
		{"more identifiers", "0.2.0-rc.1.1", "0.2.0-rc.1", "0.2.0-rc.1.1"},
		{"build ignored", "0.2.0+b2", "0.2.0+b1", "0.2.0+b1"},
		{"latest no version", "abc", "0.2.0", "0.2.0"},
		{"installed no version", "0.3.0", "dev", "dev"},
		{"only latest", "0.3.0", "", "0.3.0"},
		{"upper case", "1.3.0-RC1", "1.2.3", "1.2.3"},
		{"two words", "1.3.0 please", "1.2.3", "1.2.3"},
		{"two lines", "1.3.0\n1.4.0\n", "1.2.3", "1.2.3"},
		{"markup", "<script>alert(1)</script>", "1.2.3", "1.2.3"},
		{"shell", "$(reboot)", "1.2.3", "1.2.3"},
		{"too long", "1.2.4-" + strings.Repeat("a", 35), "1.2.3", "1.2.3"},
		{"40 characters", "1.2.4-" + strings.Repeat("a", 34), "1.2.3", "1.2.4-" + strings.Repeat("a", 34)},
		{"empty", "\n", "1.2.3", "1.2.3"},
		{"binary", "\x00\xff\x01", "1.2.3", "1.2.3"},
		{"nothing known", "", "", "n/a"},
		{"garbage everywhere", "x y", "A B", "n/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if tc.latest != "" {
				writeFile(t, filepath.Join(root, confDir, "update-latest"), tc.latest, 0o644)
			}
			if tc.version != "" {
				writeFile(t, filepath.Join(root, versionPath), tc.version, 0o644)
			}
			for _, q := range []string{"cmd=check_version&version=1.2.3", ""} {
				h, body := cgi(t, root, q)
				if h["Content-Type"] != "text/plain" {
					t.Errorf("?%s: Content-Type %q", q, h["Content-Type"])
				}
				if body != tc.want {
					t.Errorf("?%s: answered %q, want %q", q, body, tc.want)
				}
			}
		})
	}
}

// TestUpdateCheckDownloadRedirects: the WebUI's Download button leads to
// the panel's update section, through the button's page (index.html), with
// the WebUI session of the page that opened it (its address is the
// Referer); a session from another site's page, or a malformed one, is
// not passed on.
func TestUpdateCheckDownloadRedirects(t *testing.T) {
	t.Parallel()
	const host = "ccu.fritz.box"
	for _, c := range []struct{ name, referer, want string }{
		{"no Referer", "", "/addons/hubtunnel/#updates"},
		{"the WebUI's page", "http://ccu.fritz.box/pages/index.htm?sid=@Ab3De6Gh9K@", "/addons/hubtunnel/?sid=@Ab3De6Gh9K@#updates"},
		{"the WebUI's page over https, sid escaped", "https://CCU.fritz.box/pages/index.htm?x=1&sid=%40Ab3De6Gh9K%40", "/addons/hubtunnel/?sid=@Ab3De6Gh9K@#updates"},
		{"another site's page", "http://evil.example/pages/index.htm?sid=@Ab3De6Gh9K@", "/addons/hubtunnel/#updates"},
		{"a host that only starts alike", "http://ccu.fritz.box.evil.example/?sid=@Ab3De6Gh9K@", "/addons/hubtunnel/#updates"},
		{"a sid too long", "http://ccu.fritz.box/pages/index.htm?sid=@Ab3De6Gh9KL@", "/addons/hubtunnel/#updates"},
		{"a sid with a quote", "http://ccu.fritz.box/pages/index.htm?sid=@Ab3De'Gh9K@", "/addons/hubtunnel/#updates"},
		{"a sid with markup", "http://ccu.fritz.box/?sid=@Ab3De6Gh9K@\"><script>", "/addons/hubtunnel/#updates"},
		{"the sid in the fragment only", "http://ccu.fritz.box/pages/index.htm#sid=@Ab3De6Gh9K@", "/addons/hubtunnel/#updates"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, q := range []string{"cmd=download&version=1.2.3", "version=1.2.3&cmd=download"} {
				extra := []string{"HTTP_HOST=" + host}
				if c.referer != "" {
					extra = append(extra, "HTTP_REFERER="+c.referer)
				}
				h, body := cgi(t, t.TempDir(), q, extra...)
				if h["Status"] != "302 Found" || h["Location"] != c.want {
					t.Errorf("?%s: headers %v, want a 302 to %s", q, h, c.want)
				}
				if !strings.Contains(body, `url=`+c.want+`"`) {
					t.Errorf("?%s: body has no meta refresh to %s: %q", q, c.want, body)
				}
			}
		})
	}
}

func TestUpdateCheckHostileQueries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, versionPath), "1.2.3\n", 0o644)
	for _, q := range []string{
		"cmd",
		"=",
		"&&&",
		"cmd=",
		"cmd=DOWNLOAD",
		"cmd=download%00",
		"cmd=[exec reboot]",
		"cmd=$env(PATH)",
		"env=1&cmd=check_version",
		"argv=x&q=y&answer=evil&cmd=check_version",
		"a=b=c&cmd==download",
		"cmd={&version=}",
		"cmd=\"&version=\\",
		"%%%%%",
		strings.Repeat("cmd=x&", 5000),
	} {
		h, body := cgi(t, root, q)
		if h["Content-Type"] != "text/plain" || body != "1.2.3" {
			t.Errorf("?%.60s: headers %v, body %q; want the plain version", q, h, body)
		}
	}
}

func TestUpdateCheckWithoutRoot(t *testing.T) {
	t.Parallel()
	// On a hub HUBTUNNEL_ROOT is unset: the script reads the real paths,
	// which on this machine do not exist.
	if exists(versionPath) {
		t.Skip("this machine has a hubtunnel addon installed")
	}
	h, body := cgi(t, "-", "cmd=check_version&version=1")
	if h["Content-Type"] != "text/plain" || body != "n/a" {
		t.Errorf("headers %v, body %q; want n/a", h, body)
	}
}
