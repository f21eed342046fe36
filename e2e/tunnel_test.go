package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestWebUI loads the hub's WebUI through relay, tunnel and agent, over
// plain HTTP and TLS, and checks the relay's answers for a hub it does not
// know and for a known hub whose agent is not connected, to a request with
// a token and to one without.
func TestWebUI(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{offlineHubs: 1})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	for _, tc := range []struct {
		name, url, want string
		code            int
	}{
		{"http", s.url("http", "demo", 80, "/"), "HomeMatic WebUI", 200},
		{"tls", s.url("https", "demo", 443, "/"), "HomeMatic WebUI", 200},
		// demo's token at a name the relay does not know, and offline1's
		// own token while its agent is away, get the one 404 page:
		// authenticated, nothing reachable.
		{"unknown hub", s.urlAs("demo", "http", "nosuchhub", 80, "/"), "Nothing is reachable", 404},
		{"unknown hub tls", s.urlAs("demo", "https", "nosuchhub", 443, "/"), "Nothing is reachable", 404},
		{"offline hub", s.url("http", "offline1", 80, "/"), "Nothing is reachable", 404},
	} {
		began := time.Now()
		code, body, err := s.get(tc.url)
		took := time.Since(began)
		url := testbed.Redacted(tc.url)
		if err != nil {
			t.Errorf("%s: GET %s: %v", tc.name, url, err)
			continue
		}
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: GET %s = %d, body %.300q; want %d and %q", tc.name, url, code, body, tc.code, tc.want)
		}
		if took > 3*time.Second {
			t.Errorf("%s: GET %s took %v; a user waits for this answer", tc.name, url, took)
		}
	}

	// Without a credential, or with a token the relay never made, every
	// name looks the same: a page request on a WebUI port is sent to the
	// login, with the address to come back to; anything else gets a 401
	// that asks for a token, with one body that names nothing.
	noFollow := *s.client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	forged := testbed.BasicAuth(store.TokenPrefix + strings.Repeat("A", store.TokenLen-len(store.TokenPrefix)))
	var refusals []string
	for _, hub := range []string{"demo", "nosuchhub", "offline1"} {
		for _, auth := range []string{"", forged} {
			who := hub + " without a credential"
			if auth != "" {
				who = hub + " with a forged token"
			}
			for _, c := range []struct{ scheme, portal string }{
				{"http", fmt.Sprintf("http://localhost:%d", 80+s.offset)},
				{"https", fmt.Sprintf("https://localhost:%d", 443+s.offset)},
			} {
				port := map[string]int{"http": 80, "https": 443}[c.scheme]
				page := s.bed.URLScheme(c.scheme, hub, port, "/pages/index.htm?sid=1")
				req, _ := http.NewRequest("GET", page, nil)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := noFollow.Do(req)
				if err != nil {
					t.Errorf("%s: GET %s: %v", who, page, err)
					continue
				}
				resp.Body.Close()
				want := c.portal + "/login?next=" + url.QueryEscape(page)
				if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
					t.Errorf("%s: GET %s = %s, Location %q; want 303 to %s", who, page, resp.Status, resp.Header.Get("Location"), want)
				}
			}

			rpc := s.bed.URL(hub, 2001, "/")
			req, _ := http.NewRequest("POST", rpc, strings.NewReader(`<?xml version="1.0"?><methodCall><methodName>listDevices</methodName></methodCall>`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			code, body, hdr, err := do(s.client, req)
			if err != nil || code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), `Basic realm="hubtunnel"`) {
				t.Errorf("%s: XML-RPC at %s = %d, WWW-Authenticate %q, %v; want 401 asking for Basic credentials", who, rpc, code, hdr.Get("WWW-Authenticate"), err)
			}
			refusals = append(refusals, body)
		}
	}
	for i, b := range refusals {
		if b != refusals[0] || strings.Contains(b, "demo") || strings.Contains(b, "offline1") {
			t.Errorf("401 body %d differs or names a hub: %.300q; first: %.300q", i, b, refusals[0])
		}
	}

	// A browser that follows the redirect lands on the login form.
	code, body, err := s.get(s.bed.URL("demo", 80, "/"))
	if err != nil || code != 200 || !strings.Contains(body, `name="password"`) {
		t.Errorf("GET demo's WebUI without logging in, following redirects: %d, %v, body %.300q; want the login form", code, err, body)
	}
}

// do sends req with c and returns the status, body and header.
func do(c *http.Client, req *http.Request) (int, string, http.Header, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// TestIdleUDPHubReachedAgain: an idle UDP hub does not hold a WireGuard
// peer at the relay for good: the relay removes it 2 minutes after its
// last data (the agent asks the relay's hub API as it connects), and 15 s
// after each later handshake (relay/peers.go). The idle agent pings the
// relay (wire.UDPPing) instead of sending WireGuard keepalives, and does
// not handshake when its session grows two minutes old, as a keepalive
// would make it. Past WireGuard's 180 s and the agent's 210 s for a
// handshake, the hub stays online to the relay and connected to its owner
// by its pings, and a request reaches it: the relay handshakes with it at
// the address its pings hold open, and keeps the peer that carried data
// for the next click.
//
// The agent's update checks go to a closed port on the hub's own network,
// not through the tunnel: its first check comes 2 to 30 minutes after it
// starts, and one in the last seconds before the peer would go is data
// that holds it 2 minutes more, past this test's wait.
func TestIdleUDPHubReachedAgain(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{udp: true})
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.restartRelayWith("relay-metrics", fmt.Sprintf("metrics_listen = %q\n", metrics), "")
	s.startAgent(agentOpts{transport: "udp", update: "[update]\nurl = \"http://127.0.0.1:1/releases/\"\n"})
	s.waitConnected(15 * time.Second)
	connected := time.Now()
	// Counted from the first pong on (a second after the agent's start),
	// and not before 10 s after connecting: on a loaded machine
	// wireguard-go may start one more handshake 5 s after the first, when
	// the relay's response came in before the goroutine that sent the
	// initiation armed its retry timer (send.go: SendHandshakeInitiation
	// arms it after the send), which nothing then stops. Not the idle
	// traffic this test is about.
	poll.Until(t, time.Minute, "the agent to say the relay answers its pings", func() bool {
		return strings.Contains(s.agent.logText(), "the relay answers pings")
	})
	time.Sleep(time.Until(connected.Add(10 * time.Second)))
	const inits = "hubrelay_handshake_initiations_total{transport=udp}"
	first := scrape(t, metrics)[inits]
	poll.Until(t, 3*time.Minute, "the relay to remove the idle UDP hub's WireGuard peer", func() bool {
		m := scrape(t, metrics)
		return m["hubrelay_hubs_online{transport=udp}"] == 1 && m["hubrelay_wireguard_peers"] == 0
	})
	t.Logf("the idle UDP hub's peer went %v after it connected", time.Since(connected).Round(time.Second))
	// Past 3.5 minutes: WireGuard's session is gone on both sides.
	time.Sleep(time.Until(connected.Add(215 * time.Second)))
	m := scrape(t, metrics)
	if got := m[inits] - first; got != 0 {
		t.Errorf("the idle agent sent %v handshake initiations from its first pong to %v after it connected; want none (it pings)", got, time.Since(connected).Round(time.Second))
	}
	if m["hubrelay_hubs_online{transport=udp}"] != 1 {
		t.Errorf("the idle pinging hub is not online at the relay")
	}
	if st, err := s.status(); err != nil || st.State != "connected" {
		t.Errorf("the agent's state with its peer removed at the relay and its session expired: %q, %v; want connected", st.State, err)
	}

	start := time.Now()
	s.mustGetWebUI()
	t.Logf("the first request after the peer went took %v", time.Since(start).Round(time.Millisecond))
	s.mustGetWebUI()
	if m := scrape(t, metrics); m["hubrelay_wireguard_peers"] != 1 || m["hubrelay_hubs_online{transport=udp}"] != 1 {
		t.Errorf("after requests for the idle UDP hub: %v WireGuard peers, %v UDP hubs online; want 1 and 1",
			m["hubrelay_wireguard_peers"], m["hubrelay_hubs_online{transport=udp}"])
	}
}

// TestPythonXMLRPC drives the hub's BidCos-RF port through the relay with
// Python's own xmlrpc.client, as HomeMatic apps and scripts do.
// TestWebUIOverUDP: an agent with transport = "udp" (plain WireGuard, no
// Hello) is reached through hubrelay like any other hub.
func TestWebUIOverUDP(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{udp: true})
	s.startAgent(agentOpts{transport: "udp"})
	s.waitConnected(15 * time.Second)
	// The agent is connected once it has the relay's handshake response;
	// the relay, the responder, counts the hub online only when the
	// agent's first packet on the new session (its confirming keepalive)
	// has arrived over UDP, an instant later. A request in between gets
	// the offline answer (404), so this one may need a second try, within a second.
	var (
		code int
		body string
		err  error
	)
	poll.Until(t, time.Second, "the relay to serve the UDP hub (not offline: 404)", func() bool {
		code, body, err = s.get(s.url("http", "demo", 80, "/"))
		return err == nil && code != 404
	})
	if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
		t.Fatalf("GET through a UDP tunnel: %d %v %.300q", code, err, body)
	}
}

func TestPythonXMLRPC(t *testing.T) {
	t.Parallel()
	py := need(t, "to run Python's xmlrpc.client", "python3")
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	script, err := filepath.Abs("testdata/xmlrpc_client.py")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// At the hub's name, and at the relay's own name, where the token
	// alone says which hub: an app needs no wildcard DNS.
	for _, url := range []string{
		s.url("http", "demo", 2001, "/"),
		testbed.WithToken(s.bed.PortalURL("http", 2001, "/"), s.bed.Token("demo")),
	} {
		out, err := exec.CommandContext(ctx, py, script, url).CombinedOutput()
		if err != nil {
			t.Fatalf("python3 xmlrpc_client.py %s: %v\n%s", testbed.Redacted(url), err, out)
		}
		for _, want := range []string{
			", NEQ0000002:1 present",
			"getValue NEQ0000002:1 STATE: True",
			"fault: -2",
			"OK",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: python output lacks %q:\n%s", testbed.Redacted(url), want, out)
			}
		}
	}

	// The switch really changed on the hub, not somewhere on the way.
	v, err := ccusim.Call(ctx, nil, "http://"+s.sim["rf"]+"/", "getValue", "NEQ0000002:1", "STATE")
	if err != nil || v != true {
		t.Errorf("getValue directly at ccusim = %v, %v; want true", v, err)
	}
}

// TestConcurrentSessions runs 200 sessions at once through one hub, each on
// its own TCP connection, and checks that all succeed and that the agent
// has no session left afterwards.
func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	const n = 200
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	before := s.waitConnected(15 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rpcURL := s.url("http", "demo", 2001, "/")
	webURL := s.url("http", "demo", 80, "/")
	go1 := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go1
			if i%2 == 0 {
				v, err := ccusim.Call(ctx, s.client, rpcURL, "getValue", "NEQ0000002:1", "STATE")
				if err != nil || v != false {
					errs <- fmt.Errorf("session %d: getValue = %v, %v; want false", i, v, err)
				}
				return
			}
			code, body, err := s.get(webURL)
			if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
				errs <- fmt.Errorf("session %d: GET / = %d, %v, body %.100q", i, code, err, body)
			}
		}()
	}
	began := time.Now()
	close(go1)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 10 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent sessions failed", failed, n)
	}
	t.Logf("%d concurrent sessions in %v", n, time.Since(began).Round(time.Millisecond))

	var st status
	poll.Until(t, 30*time.Second, "sessions_active to return to 0", func() bool {
		var err error
		st, err = s.status()
		return err == nil && st.SessionsActive == 0
	})
	// The relay reuses its kept-alive connections to the hub, so the n
	// user sessions take between 1 and n of the agent's.
	if got := st.SessionsTotal - before.SessionsTotal; got < 1 || got > n {
		t.Errorf("sessions_total grew by %d; want 1 to %d", got, n)
	}
}

// TestLargeDownload fetches a 50 MB file from the hub through the tunnel and
// checks that every byte arrives.
func TestLargeDownload(t *testing.T) {
	t.Parallel()
	const size = 50 << 20
	files := t.TempDir()
	want := writeRandomFile(t, files, "backup.bin", size)

	s := newHub(t, setupOpts{filesDir: files})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	began := time.Now()
	resp, err := s.client.Get(s.url("http", "demo", 80, "/files/backup.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /files/backup.bin: %s", resp.Status)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	if err != nil {
		t.Fatalf("download broke after %d bytes: %v", n, err)
	}
	took := time.Since(began)
	if n != size {
		t.Fatalf("downloaded %d bytes; want %d", n, size)
	}
	if g, w := hex.EncodeToString(got.Sum(nil)), want; g != w {
		t.Fatalf("SHA-256 of the download %s; the file's is %s", g, w)
	}
	t.Logf("50 MB in %v (%.0f Mbit/s)", took.Round(time.Millisecond), float64(size*8)/took.Seconds()/1e6)
}
