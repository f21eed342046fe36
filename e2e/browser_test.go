package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
)

// The browser tests look at the relay as a person does: Debian's headless
// Chromium, driven by playwright-core (scripts/deps.sh installs both), runs
// one script of e2e/browser/ per flow against the real binaries. Each
// script prints an "ok: …" line per check that passed, or a "FAIL: …" line
// and exits 1; the test checks the exit status and the lines it expects.
// Screenshots stay in the artifacts folder ($ARTIFACTS, else
// e2e/artifacts/) for a person to look at.

// browser is what the browser tests need: node, Chromium, the scripts'
// node_modules, and where screenshots go.
type browser struct {
	node, chromium, artifacts string
}

// chromiumPath is Debian's Chromium, which playwright-core starts (it never
// downloads a browser of its own here).
const chromiumPath = "/usr/bin/chromium"

// needBrowser skips the test (or fails it in CI) unless node, Chromium and
// playwright-core are installed.
func needBrowser(t *testing.T) *browser {
	t.Helper()
	b := &browser{node: need(t, "to run the browser tests' scripts", "node")}
	if _, err := os.Stat(chromiumPath); err != nil {
		missing(t, "%s is not installed (needed for the browser tests); scripts/deps.sh installs it", chromiumPath)
	}
	b.chromium = chromiumPath
	if _, err := os.Stat(filepath.Join("browser", "node_modules", "playwright-core", "package.json")); err != nil {
		missing(t, "playwright-core is not installed in e2e/browser/node_modules; scripts/deps.sh installs it")
	}
	b.artifacts = os.Getenv("ARTIFACTS")
	if b.artifacts == "" {
		b.artifacts = "artifacts"
	}
	abs, err := filepath.Abs(b.artifacts)
	if err != nil {
		t.Fatal(err)
	}
	b.artifacts = abs
	if err := os.MkdirAll(b.artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}

// run runs e2e/browser/<script>.mjs with env (HT_* names) and fails the
// test unless it exits 0 having printed "ok: <w>" (at the start of a line)
// for each w of want, in that order. It returns the script's output.
func (b *browser) run(t *testing.T, script string, env map[string]string, want ...string) string {
	t.Helper()
	// A bound against a hung browser, not a speed check: the panel's script
	// restarts the agent several times and took 46 s on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.node, filepath.Join("browser", script+".mjs"))
	cmd.Env = append(os.Environ(),
		"HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy=", "ALL_PROXY=", "all_proxy=",
		"HT_CHROMIUM="+b.chromium, "HT_ARTIFACTS="+b.artifacts)
	for k, v := range env {
		// The scripts print the addresses they are given.
		if strings.Contains(v, "htk_") && k != "HT_PASSWORD" {
			t.Fatalf("browser %s: %s carries an app token, which would end up in the log", script, k)
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	began := time.Now()
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	t.Logf("browser %s (%v):\n%s", script, time.Since(began).Round(10*time.Millisecond), out)
	if err != nil {
		t.Fatalf("browser %s: %v (its output is above)", script, err)
	}
	rest := out
	for _, w := range want {
		i := strings.Index(rest, "\nok: "+w)
		if strings.HasPrefix(rest, "ok: "+w) {
			i = 0
		}
		if i < 0 {
			t.Fatalf("browser %s: no line %q after the checks before it", script, "ok: "+w)
		}
		rest = rest[i+1:]
	}
	return out
}

// addUser adds an account to the relay's store with `hubrelay user add`,
// the password on stdin, and returns the password.
func addUser(t *testing.T, s *hubSetup, name string) string {
	t.Helper()
	password := rand.Text()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.hubrelay, "user", "add", name, "--config", s.relayConf)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hubrelay user add %s: %v\n%s", name, err, out)
	}
	return password
}

// TestBrowser is a person at the relay with Chromium: the login, the hub's
// WebUI behind it, the logout, TOTP, the pages in German and English, and
// adding a hub whose agent enrolls with the code the page shows.
// The screenshots stay in the artifacts folder.
func TestBrowser(t *testing.T) {
	t.Parallel()
	b := needBrowser(t)
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	const hubTitle = "HomeMatic WebUI" // ccusim's page
	// The address without a credential: a person types none.
	hubURL := s.bed.URLScheme("https", "demo", 443, "/")
	portal := fmt.Sprintf("https://localhost:%d", 443+s.offset)
	owner := map[string]string{ // the bed's owner of hub demo
		"HT_PORTAL": portal, "HT_USER": s.bed.Owner, "HT_PASSWORD": s.bed.OwnerPassword,
		"HT_HUB": "demo", "HT_HUB_URL": hubURL, "HT_HUB_TITLE": hubTitle,
	}

	t.Run("smoke", func(t *testing.T) {
		url := portal + "/login"
		b.run(t, "smoke", map[string]string{"HT_URL": url, "HT_TITLE": "hubtunnel"},
			fmt.Sprintf("loaded %s", url), `the page's title says "hubtunnel"`, "screenshot")
	})
	t.Run("login and logout", func(t *testing.T) {
		b.run(t, "login", owner,
			"the hub's address leads to the login",
			"a wrong password is refused",
			"the right password leads to the hub's WebUI",
			"screenshot",
			"the hub holds the relay's cookie",
			"a second page of the hub loads without a second login",
			"logged out",
			"after the logout the hub's address leads to the login again",
			"after the logout the portal shows nobody logged in")
	})
	t.Run("pages", func(t *testing.T) {
		b.run(t, "pages", owner,
			"the login page speaks de", "screenshot",
			"the login page speaks en", "screenshot",
			"the portal's home (de) lists hub demo", "screenshot",
			"the portal's home (en) lists hub demo", "screenshot",
			"the hub's link on the portal opens its WebUI without a second login")
	})
	t.Run("add hub", func(t *testing.T) {
		// A hub whose agent runs, not enrolled yet: the owner adds it on
		// the portal and types the code shown there on the hub.
		garage := s.newcomer("garage", "")
		garage.start(s)
		poll.Until(t, 10*time.Second, "garage's agent to say it is not enrolled", func() bool {
			if !garage.agent.alive() {
				t.Fatalf("garage's agent exited: %v", garage.agent.err)
			}
			st, err := localapi.NewClient(garage.ui).Status(context.Background())
			return err == nil && st.State == localapi.StateUnenrolled
		})
		demoServed := s.keepFetching()
		b.run(t, "addhub", map[string]string{
			"HT_PORTAL": portal, "HT_USER": s.bed.Owner, "HT_PASSWORD": s.bed.OwnerPassword,
			"HT_HUB": "garage", "HT_HUBTUNNEL": bin.hubtunnel, "HT_AGENT_CONFIG": garage.conf,
		},
			"a bad name is refused beside the field",
			"the code is shown large, as a QR code and as a command line", "screenshot",
			"garage waits for enrollment; the code is not shown again",
			"hubtunnel enroll with the code from the page",
			"garage turns online on the page by itself", "screenshot")
		if demoServed() == 0 {
			t.Error("no request reached hub demo while garage was added")
		}
		// The hub the page showed online is the real one: its agent is
		// connected as garage, and its WebUI answers through the relay.
		garage.waitConnected(t)
		if err := s.bed.AddToken("garage"); err != nil {
			t.Fatal(err)
		}
		s.mustGetWebUIOf("garage")
	})
	t.Run("totp", func(t *testing.T) {
		// An account of its own: TOTP, once on, stays on for the others' flows.
		name := "totp-user"
		b.run(t, "totp", map[string]string{"HT_PORTAL": portal, "HT_USER": name, "HT_PASSWORD": addUser(t, s, name)},
			"logged in with the password alone",
			"/totp shows a QR code and the secret as text", "screenshot",
			"the app's code turns TOTP on",
			"with TOTP on, the password alone leads to a second step",
			"a wrong code is refused",
			"the password and the app's code log in")
	})
}
