package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/store"
)

// secretRE finds a token's secret in a command's output.
var secretRE = regexp.MustCompile(`htk_[A-Za-z0-9_-]{43}`)

func TestTokenAddListRevoke(t *testing.T) {
	r := newTestRelay(t, "public_host = \"relay.example\"\nport_offset = 10000\n", "home")
	ctx := context.Background()
	db := r.store()

	out, errOut, err := r.run("token", "add", "home", "--label", "Home Assistant", "--expires", "30d")
	if err != nil {
		t.Fatal(err)
	}
	secret := secretRE.FindString(out)
	if secret == "" {
		t.Fatalf("no token in:\n%s", out)
	}
	if !strings.HasPrefix(out, `made app token #1 for hub home: xmlrpc, label "Home Assistant", expires 2026-07-01 13:00.`+"\nThis is the only time it is shown") {
		t.Fatalf("token add:\n%s", out)
	}
	if strings.Contains(errOut, secret) {
		t.Fatal("the token went to stderr")
	}
	tok, err := db.VerifyToken(ctx, secret)
	if err != nil || tok.Hub != "home" || tok.Ports != store.PortXMLRPC || tok.Label != "Home Assistant" || tok.User != "" ||
		!tok.Expires.Equal(r.now.Add(30*24*time.Hour)) {
		t.Fatalf("the printed token: %+v, %v", tok, err)
	}
	r.lastRecord(store.KindToken, "home", `app token #1 "Home Assistant" made for xmlrpc, expires 2026-07-01T12:00:00Z`)
	// Every line for a client carries this token and no other; the hosts
	// and ports are the config's.
	for _, want := range []string{
		"\n  " + secret + "\n",
		`ServerProxy("https://hubtunnel:` + secret + `@relay.example:14431/", context=ssl._create_unverified_context())`,
		"curl -k -u hubtunnel:" + secret + " -H 'Content-Type: text/xml' --data",
		"https://relay.example:14431/\n",
		"        host: relay.example\n        port: 14431\n        path: /\n        username: hubtunnel\n        password: " + secret + "\n        ssl: true\n        verify_ssl: false\n",
		"port: 14434 (wired devices: 14430)",
		"  HomeMatic address: relay.example\n  HomeMatic port: 14431 (daemon rfd; HMIP: 14434, wired: 14430)\n",
		"  Password: " + secret + "\n",
		"home.hubs.example works as the host too",
		"self-signed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("token add lacks %q:\n%s", want, out)
		}
	}
	if got := secretRE.FindAllString(out, -1); len(got) != 5 || strings.Count(out, secret) != 5 {
		t.Errorf("the token appears %d times (%d of it), want once on its own and once in each of the 4 clients' lines", len(got), strings.Count(out, secret))
	}

	// A WebUI and script token gets their lines, and no XML-RPC ones.
	out = r.ok("token", "add", "home", "--ports", "webui,script")
	s2 := secretRE.FindString(out)
	for _, want := range []string{
		"curl -k -u hubtunnel:" + s2 + " https://home.hubs.example:10443/\n",
		"curl -k -u hubtunnel:" + s2 + ` --data 'Write("hello from the hub");' https://relay.example:54381/tclrega.exe` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("webui,script token lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Home Assistant") || strings.Contains(out, "python3") {
		t.Errorf("a token without xmlrpc got XML-RPC lines:\n%s", out)
	}

	r.now = r.now.Add(time.Hour)
	if _, err := db.VerifyToken(ctx, secret); err != nil { // marks it used
		t.Fatal(err)
	}
	out = r.ok("token", "list")
	for _, want := range []string{
		"ID  HUB   LABEL           PORTS         MADE BY   CREATED           LAST USED         EXPIRES           STATE\n",
		"#1  home  Home Assistant  xmlrpc        operator  2026-06-01 13:00  2026-06-01 14:00  2026-07-01 13:00  active\n",
		"#2  home  -               webui,script  operator  2026-06-01 13:00  never             never             active\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("token list lacks %q:\n%s", want, out)
		}
	}

	rev := r.revision()
	if out := r.ok("token", "revoke", "#1"); !strings.Contains(out, `revoked app token #1 "Home Assistant" of hub home; it stops working at once`) {
		t.Fatalf("revoke: %q", out)
	}
	if r.revision() == rev {
		t.Fatal("revoking a token did not count as a change")
	}
	if _, err := db.VerifyToken(ctx, secret); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a revoked token still works: %v", err)
	}
	r.lastRecord(store.KindRevoke, "home", `app token #1 "Home Assistant" (xmlrpc, made by the operator) revoked`)
	r.now = r.now.Add(31 * 24 * time.Hour)
	if out := r.ok("token", "list", "--hub", "home"); strings.Contains(out, "#1 ") || !strings.Contains(out, "#2 ") {
		t.Fatalf("token list after the revoke:\n%s", out)
	}

	for _, tc := range []struct {
		want string
		args []string
	}{
		{`there is no hub "attic"`, []string{"token", "add", "attic"}},
		{`--ports "rpc": give webui, xmlrpc, script or all`, []string{"token", "add", "home", "--ports", "rpc"}},
		{"--expires 2026-06-01 12:00 is in the past", []string{"token", "add", "home", "--expires", "2026-06-01 12:00"}},
		{`--expires "someday"`, []string{"token", "add", "home", "--expires", "someday"}},
		{"--label is 101 characters long: use at most 100", []string{"token", "add", "home", "--label", strings.Repeat("x", 101)}},
		{"--label must not hold control characters", []string{"token", "add", "home", "--label", "a\nb"}},
		{`there is no user "dave"`, []string{"token", "add", "home", "--user", "dave"}},
		{"there is no app token #1 (hubrelay token list shows them)", []string{"token", "revoke", "1"}},
		{`"one" is not a token id: give the number the list shows, e.g. 7 or #7`, []string{"token", "revoke", "one"}},
		{`"#-3" is not a token id`, []string{"token", "revoke", "#-3"}},
		{`there is no hub "attic"`, []string{"token", "list", "--hub", "attic"}},
		{`unknown command "show"`, []string{"token", "show", "2"}},
		{"usage:", []string{"token", "add"}},
	} {
		r.fails(tc.want, tc.args...)
	}
}

func TestTokenOfAUserReachesNoMoreThanTheUser(t *testing.T) {
	r := newTestRelay(t, "", "home")
	r.fails("tech cannot reach hub home, so cannot have a token for it: hubrelay grant tech home --ports xmlrpc first", "token", "add", "home", "--user", "tech")
	r.ok("grant", "tech", "home", "--ports", "webui", "--until", "2d")
	r.fails("tech may reach only webui on hub home, and a token of theirs no more: give --ports webui, or hubrelay grant tech home --ports webui,xmlrpc first",
		"token", "add", "home", "--user", "tech", "--ports", "webui,xmlrpc")
	out := r.ok("token", "add", "home", "--user", "tech", "--ports", "webui", "--label", "tablet")
	if !strings.Contains(out, "tech's (it never reaches more than tech may)") || !strings.Contains(out, "note: it stops working when tech's grant ends, 2026-06-03 13:00") {
		t.Fatalf("token add --user: %q", out)
	}
	r.lastRecord(store.KindToken, "home", `app token #1 "tablet" made for webui, expires never, on behalf of tech (reaches no more than tech may)`)
	if out := r.ok("token", "list"); !strings.Contains(out, "#1  home  tablet  webui  tech ") || !strings.Contains(out, "active") {
		t.Fatalf("token list:\n%s", out)
	}
	r.ok("revoke", "tech", "home")
	if out := r.ok("token", "list"); !strings.Contains(out, "no access: tech lost the hub") {
		t.Fatalf("token list after the revoke:\n%s", out)
	}
	r.ok("hub", "disable", "home")
	if out := r.ok("token", "list"); !strings.Contains(out, "hub disabled") {
		t.Fatalf("token list of a disabled hub:\n%s", out)
	}
}

// TestTokenSecretIsShownOnlyByTokenAdd: the secret is in token add's
// output and nowhere else — not on stderr, not in any later command's
// output, not in an audit record, not in the database files.
func TestTokenSecretIsShownOnlyByTokenAdd(t *testing.T) {
	r := newTestRelay(t, "", "home")
	r.ok("grant", "tech", "home", "--ports", "all")
	out, errOut, err := r.run("token", "add", "home", "--ports", "all", "--user", "tech", "--label", "probe")
	if err != nil {
		t.Fatal(err)
	}
	secret := secretRE.FindString(out)
	if secret == "" || strings.Contains(errOut, secret) {
		t.Fatalf("token add: %q, stderr %q", out, errOut)
	}
	raw := strings.TrimPrefix(secret, store.TokenPrefix)
	var later bytes.Buffer
	for _, args := range [][]string{
		{"token", "list"}, {"token", "list", "--hub", "home"}, {"audit"}, {"audit", "--json"}, {"audit", "--kind", "token", "--json"},
		{"grants"}, {"hub", "list"}, {"session", "list"}, {"token", "revoke", "1"}, {"audit", "--json", "--limit", "1000"},
	} {
		o, e, err := r.run(args...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		later.WriteString(o + e)
	}
	if strings.Contains(later.String(), raw) {
		t.Fatal("a later command printed the token")
	}
	for _, e := range r.audit() {
		if strings.Contains(fmt.Sprintf("%+v", e), raw) {
			t.Fatalf("audit record holds the token: %+v", e)
		}
	}
	files, _ := filepath.Glob(filepath.Join(r.dir, "relay.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(raw)) {
			t.Fatalf("%s holds the token in clear", filepath.Base(f))
		}
	}
}

// TestTokenLinesWorkAsPrinted runs the Python and curl lines token add
// prints, exactly as printed, with the real python3 and curl, against a
// stand-in for the relay's token check (HTTP Basic, user name anything,
// password the token, as /work/design-auth.md has it) in front of ccusim's
// XML-RPC, WebUI and script services. It shows that the lines carry the
// token the way the relay reads it, to the config's host and ports; the
// relay's own check has its tests in package relay and e2e.
func TestTokenLinesWorkAsPrinted(t *testing.T) {
	for _, tool := range []string{"python3", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: skipping the test of the printed lines", tool)
		}
	}
	sim := ccusim.New(ccusim.Config{WiredPort: -1, HmIPPort: -1})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })

	var secret atomic.Value
	secret.Store("")
	var reached, refused atomic.Int64
	front := func(service string) http.Handler {
		target, _ := url.Parse("http://" + sim.Addr(service))
		proxy := httputil.NewSingleHostReverseProxy(target)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, pw, ok := r.BasicAuth()
			if !ok || pw != secret.Load().(string) {
				refused.Add(1)
				w.Header().Set("WWW-Authenticate", `Basic realm="hubtunnel"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			reached.Add(1)
			r.Header.Del("Authorization")
			proxy.ServeHTTP(w, r)
		})
	}
	// The relay's public ports for the token's lines, at an offset whose
	// three ports are free on loopback.
	offset, lns := freeOffset(t, portWebUI, portRF, portScript)
	for port, service := range map[int]string{portWebUI: "webui", portRF: "rf", portScript: "script"} {
		srv := httptest.NewUnstartedServer(front(service))
		srv.Listener.Close()
		srv.Listener = lns[port]
		srv.StartTLS() // self-signed, as a relay without tls_cert_file
		t.Cleanup(srv.Close)
	}

	r := newTestRelay(t, fmt.Sprintf("domain = \"localhost\"\nport_offset = %d\n", offset), "home")
	out := r.ok("token", "add", "home", "--ports", "all")
	secret.Store(secretRE.FindString(out))

	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "python3 "):
			lines["python"] = l
		case strings.HasPrefix(l, "curl ") && strings.Contains(l, "methodCall"):
			lines["curl xml-rpc"] = l
		case strings.HasPrefix(l, "curl ") && strings.Contains(l, "tclrega.exe"):
			lines["curl script"] = l
		case strings.HasPrefix(l, "curl "):
			lines["curl webui"] = l
		}
	}
	for name, want := range map[string]string{
		"python":       "'system.listMethods'",
		"curl xml-rpc": "<string>system.listMethods</string>",
		"curl script":  "hello from the hub",
		"curl webui":   "This is ccusim",
	} {
		line := lines[name]
		if line == "" {
			t.Errorf("no %s line in:\n%s", name, out)
			continue
		}
		got := shell(t, line)
		if !strings.Contains(got, want) {
			t.Errorf("%s line\n  %s\nprinted %q, want %q", name, line, got, want)
		}
		// The same line with another token is refused before ccusim.
		before := reached.Load()
		wrong := strings.ReplaceAll(line, secret.Load().(string), store.TokenPrefix+strings.Repeat("A", 43))
		shell(t, wrong+" || true")
		if reached.Load() != before {
			t.Errorf("%s line with a wrong token reached the hub", name)
		}
	}
	if reached.Load() != 4 || refused.Load() < 4 {
		t.Errorf("%d requests reached the hub (want 4), %d refused (want at least 4)", reached.Load(), refused.Load())
	}
}

// shell runs line with sh -c, as an operator pasting it does, and returns
// what it printed; it fails the test if the line fails or takes 20 s.
func shell(t *testing.T, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = append(os.Environ(), "NO_PROXY=*", "no_proxy=*", "HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: %v\n%s", line, err, out.String())
	}
	return out.String()
}

// freeOffset finds a port_offset at which each of ports is free on
// 127.0.0.1, and returns the listeners it holds there.
func freeOffset(t *testing.T, ports ...int) (int, map[int]net.Listener) {
	t.Helper()
	const maxOffset = 65535 - portScript
	for attempt := 0; attempt < 50; attempt++ {
		// Walk the range in strides from a start the clock picks.
		offset := (int(time.Now().UnixNano()/1000)%maxOffset + attempt*397) % maxOffset
		lns := map[int]net.Listener{}
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+offset))
			if err != nil {
				break
			}
			lns[p] = ln
		}
		if len(lns) == len(ports) {
			return offset, lns
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatal("found no port_offset with the ports free on 127.0.0.1 in 50 tries")
	return 0, nil
}
