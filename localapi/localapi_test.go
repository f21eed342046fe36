package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/hubinfo"
)

// fakeAgent answers as an agent would; noUpdates is an agent without a
// config file.
type fakeAgent struct {
	noUpdates  bool
	checkErr   error
	installErr error
	installed  InstallOptions
	enrollErr  error
	code       string // the code Enroll got
	rotateErr  error
}

func (f *fakeAgent) Status() Status {
	st := Status{State: StateConnected, Name: "home", Version: "0.1.0"}
	if !f.noUpdates {
		st.Update = &UpdateStatus{Auto: true, Window: "03:00-05:00"}
	}
	return st
}

func (f *fakeAgent) CheckUpdate(context.Context) (UpdateStatus, error) {
	return UpdateStatus{Latest: "0.2.0", Available: true}, f.checkErr
}

func (f *fakeAgent) InstallUpdate(_ context.Context, opt InstallOptions) (string, error) {
	f.installed = opt
	if f.installErr != nil {
		return "", f.installErr
	}
	return "0.2.0", nil
}

func (f *fakeAgent) Enroll(_ context.Context, code string) (EnrollResponse, error) {
	f.code = code
	if f.enrollErr != nil {
		return EnrollResponse{}, f.enrollErr
	}
	return EnrollResponse{Hub: "garage", URL: "https://garage.relay.example/", Relay: "relay.example:7443"}, nil
}

func (f *fakeAgent) RotateKey(context.Context) (RotateKeyResponse, error) {
	if f.rotateErr != nil {
		return RotateKeyResponse{}, f.rotateErr
	}
	return RotateKeyResponse{PublicKey: "bmV3IGtleQ=="}, nil
}

// testToken is the fake agent's API token.
const testToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func (f *fakeAgent) APIToken() string { return testToken }

var _ Agent = (*fakeAgent)(nil)

func serve(t *testing.T, a Agent) (*httptest.Server, *Client) {
	t.Helper()
	srv := httptest.NewServer(Handler(a, "127.0.0.1:8099"))
	t.Cleanup(srv.Close)
	return srv, &Client{Addr: strings.TrimPrefix(srv.URL, "http://"), Token: testToken}
}

func TestHandlerAnswers(t *testing.T) {
	for _, c := range []struct {
		name, method, path, host, ctype, body string
		agent                                 *fakeAgent
		code                                  int
		answer                                string // a part of the body
	}{
		{"status", "GET", "/api/status", "", "", "", &fakeAgent{}, 200, `"state": "connected"`},
		{"status by localhost", "GET", "/api/status", "localhost:8099", "", "", &fakeAgent{}, 200, `"name": "home"`},
		{"status by ui_listen's host", "GET", "/api/status", "127.0.0.1", "", "", &fakeAgent{}, 200, `"version": "0.1.0"`},
		{"status through a rebound name", "GET", "/api/status", "evil.example:8099", "", "", &fakeAgent{}, 403, "forbidden host"},
		{"check through a rebound name", "POST", "/api/update/check", "evil.example", "application/json", "{}", &fakeAgent{}, 403, "forbidden host"},
		{"check from a form", "POST", "/api/update/check", "", "application/x-www-form-urlencoded", "a=b", &fakeAgent{}, 415, "want Content-Type: application/json"},
		{"check", "POST", "/api/update/check", "", "application/json", "{}", &fakeAgent{}, 200, `"latest": "0.2.0"`},
		{"check failed", "POST", "/api/update/check", "", "application/json", "{}", &fakeAgent{checkErr: errors.New("fetch: not found")}, 502, `"error": "fetch: not found"`},
		{"check without updater", "POST", "/api/update/check", "", "application/json", "{}", &fakeAgent{noUpdates: true}, 503, "updates need the agent to run from a config file"},
		{"install", "POST", "/api/update/install", "", "application/json", `{"version": "0.2.0"}`, &fakeAgent{}, 202, `"installing": "0.2.0"`},
		{"install empty body", "POST", "/api/update/install", "", "application/json", "", &fakeAgent{}, 202, `"installing": "0.2.0"`},
		{"install bad body", "POST", "/api/update/install", "", "application/json", `{"version": 2}`, &fakeAgent{}, 400, `"error": "body: `},
		{"install busy", "POST", "/api/update/install", "", "application/json", "{}", &fakeAgent{installErr: fmt.Errorf("lock: %w", ErrBusy)}, 409, "another update is in progress"},
		{"install refused", "POST", "/api/update/install", "", "application/json", "{}", &fakeAgent{installErr: errors.New("0.2.0 is already running")}, 422, "0.2.0 is already running"},
		{"install without updater", "POST", "/api/update/install", "", "application/json", "{}", &fakeAgent{noUpdates: true}, 503, "updates need"},
		{"install by GET", "GET", "/api/update/install", "", "", "", &fakeAgent{}, 405, ""},
		{"enroll", "POST", "/api/enroll", "", "application/json", `{"code": "relay.example/7KQ4"}`, &fakeAgent{}, 200, `"hub": "garage"`},
		{"enroll without updater", "POST", "/api/enroll", "", "application/json", `{"code": "c"}`, &fakeAgent{noUpdates: true}, 200, `"url": "https://garage.relay.example/"`},
		{"enroll refused", "POST", "/api/enroll", "", "application/json", `{"code": "c"}`, &fakeAgent{enrollErr: errors.New("this code has expired")}, 422, `"error": "this code has expired"`},
		{"enroll busy", "POST", "/api/enroll", "", "application/json", `{"code": "c"}`, &fakeAgent{enrollErr: ErrEnrolling}, 409, "another enrollment is in progress"},
		{"enroll bad body", "POST", "/api/enroll", "", "application/json", `{"code": 7}`, &fakeAgent{}, 400, `"error": "body: `},
		{"enroll from a form", "POST", "/api/enroll", "", "application/x-www-form-urlencoded", "code=c", &fakeAgent{}, 415, "want Content-Type: application/json"},
		{"enroll through a rebound name", "POST", "/api/enroll", "evil.example", "application/json", `{"code": "c"}`, &fakeAgent{}, 403, "forbidden host"},
		{"enroll by GET", "GET", "/api/enroll", "", "", "", &fakeAgent{}, 405, ""},
		{"rotate key", "POST", "/api/rotate-key", "", "application/json", "{}", &fakeAgent{}, 200, `"public_key": "bmV3IGtleQ=="`},
		{"rotate key refused", "POST", "/api/rotate-key", "", "application/json", "{}", &fakeAgent{rotateErr: errors.New("the tunnel to the relay is not up")}, 422, "the tunnel to the relay is not up"},
		{"rotate key busy", "POST", "/api/rotate-key", "", "application/json", "{}", &fakeAgent{rotateErr: ErrBusy}, 409, "being replaced already"},
		{"rotate key from a form", "POST", "/api/rotate-key", "", "application/x-www-form-urlencoded", "", &fakeAgent{}, 415, ""},
		{"rotate key through a rebound name", "POST", "/api/rotate-key", "evil.example", "application/json", "{}", &fakeAgent{}, 403, "forbidden host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, _ := serve(t, c.agent)
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if c.host != "" {
				req.Host = c.host
			}
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.code || !strings.Contains(string(body), c.answer) {
				t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, resp.StatusCode, body, c.code, c.answer)
			}
			if c.code < 300 && (resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store") {
				t.Errorf("headers %v, want JSON, not cached", resp.Header)
			}
		})
	}
}

// TestActionsNeedToken: every POST without the token, or with a wrong
// one, is refused before the agent acts, with words for a hub owner; the
// right token is accepted; the status needs none and shows no secret.
func TestActionsNeedToken(t *testing.T) {
	for _, path := range []string{"/api/update/check", "/api/update/install", "/api/enroll", "/api/rotate-key"} {
		for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + testToken[:63], "Bearer " + testToken + "0", "Basic " + testToken, "bearer " + testToken} {
			a := &fakeAgent{}
			srv, _ := serve(t, a)
			req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(`{"code": "c", "allow_downgrade": true}`))
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || !strings.Contains(string(body), "run this as root on the hub") {
				t.Errorf("POST %s with Authorization %q: %d %s, want 401 saying to run as root", path, auth, resp.StatusCode, body)
			}
			if a.installed != (InstallOptions{}) || a.code != "" {
				t.Errorf("POST %s with Authorization %q reached the agent", path, auth)
			}
		}
	}
	a := &fakeAgent{}
	_, c := serve(t, a)
	ctx := context.Background()
	if _, err := c.RotateKey(ctx); err != nil {
		t.Errorf("RotateKey with the token: %v", err)
	}
	c.Token = ""
	if _, err := c.Install(ctx, InstallOptions{AllowDowngrade: true}); err == nil || !strings.Contains(err.Error(), "run this as root") || a.installed.AllowDowngrade {
		t.Errorf("Install with allow_downgrade and no token: %v (the agent got %+v)", err, a.installed)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Name != "home" {
		t.Errorf("Status without a token: %+v, %v", st, err)
	}
}

// TestStatusShowsNoSecret: the open status carries no token or key.
func TestStatusShowsNoSecret(t *testing.T) {
	srv, _ := serve(t, &fakeAgent{})
	resp, err := http.Get(srv.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{testToken, "private", "token"} {
		if strings.Contains(strings.ToLower(string(body)), secret) {
			t.Errorf("status shows %q:\n%s", secret, body)
		}
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadToken(dir); err == nil || !strings.Contains(err.Error(), "the agent makes it when it starts") {
		t.Errorf("ReadToken before the agent made one: %v", err)
	}
	tok, replaced, err := LoadOrCreateToken(dir)
	if err != nil || len(tok) != 64 || replaced {
		t.Fatalf("LoadOrCreateToken = %q, %v, %v", tok, replaced, err)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if again, _, _ := LoadOrCreateToken(dir); again != tok {
		t.Errorf("a second start made a new token")
	}
	if got, err := ReadToken(dir); got != tok || err != nil {
		t.Errorf("ReadToken = %q, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, TokenFile), []byte("garb"), 0o600)
	if _, err := ReadToken(dir); err == nil || !strings.Contains(err.Error(), "restart the agent") {
		t.Errorf("ReadToken of garbage: %v", err)
	}
	tok2, replaced, err := LoadOrCreateToken(dir)
	if err != nil || !replaced || tok2 == tok || len(tok2) != 64 {
		t.Errorf("LoadOrCreateToken over garbage = %q, %v, %v", tok2, replaced, err)
	}
	if os.Getuid() != 0 {
		os.Chmod(filepath.Join(dir, TokenFile), 0)
		if _, err := ReadToken(dir); err == nil || !strings.Contains(err.Error(), "run this as root") {
			t.Errorf("ReadToken without permission: %v", err)
		}
	}
}

// TestStatusJSON: the field names scripts and the panel read.
func TestStatusJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 3, 4, 5, 0, time.UTC)
	st := Status{
		State: StateConnected, Name: "home", Relay: "relay.example:7443", URL: "https://home.relay.example/", Enrolled: at,
		Transport: "tcp", TunnelIP: "100.96.0.2",
		PublicKey: "pk", LastHandshake: at, ConnectedSince: at, LastError: "e", RelaySoftware: "hubrelay/1",
		BytesRx: 1, BytesTx: 2, OverheadBytes: 3, SessionsActive: 4, SessionsTotal: 5, DroppedPackets: 6,
		DNSSource: "system", DNSAnswer: []string{"192.0.2.1"}, Version: "0.1.0",
		Hub: hubinfo.Hub{Kind: "ccu3", Machine: "armv7l", Arch: "armv7"},
		Update: &UpdateStatus{Auto: true, Window: "03:00-05:00", Latest: "0.2.0", Available: true, CheckedAt: at,
			CheckError: "c", NextCheck: at, PlannedInstall: at, Installing: "0.2.0",
			LastResult: &UpdateResult{OK: false, From: "0.1.0", To: "0.2.0", Reason: "r", Time: at}},
	}
	b, _ := json.Marshal(st)
	want := `{"state":"connected","name":"home","relay":"relay.example:7443","url":"https://home.relay.example/",` +
		`"enrolled":"2026-11-23T03:04:05Z","transport":"tcp","tunnel_ip":"100.96.0.2",` +
		`"public_key":"pk","last_handshake":"2026-11-23T03:04:05Z","connected_since":"2026-11-23T03:04:05Z","last_error":"e",` +
		`"relay_software":"hubrelay/1","bytes_rx":1,"bytes_tx":2,"overhead_bytes":3,"sessions_active":4,"sessions_total":5,` +
		`"dropped_packets":6,"dns_source":"system","dns_answer":["192.0.2.1"],"version":"0.1.0",` +
		`"hub":{"kind":"ccu3","machine":"armv7l","arch":"armv7"},` +
		`"update":{"auto":true,"window":"03:00-05:00","latest":"0.2.0","available":true,"checked_at":"2026-11-23T03:04:05Z",` +
		`"check_error":"c","next_check":"2026-11-23T03:04:05Z","planned_install":"2026-11-23T03:04:05Z","installing":"0.2.0",` +
		`"last_result":{"ok":false,"from":"0.1.0","to":"0.2.0","reason":"r","time":"2026-11-23T03:04:05Z"}}}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	b, _ = json.Marshal(Status{State: StateDisabled})
	if want := `{"state":"disabled","name":"","relay":"","transport":"","tunnel_ip":"","bytes_rx":0,"bytes_tx":0,"overhead_bytes":0,"sessions_active":0,"sessions_total":0,"dropped_packets":0,"version":"","hub":{"kind":"","machine":""}}`; string(b) != want {
		t.Errorf("empty status JSON\n%s\nwant\n%s", b, want)
	}
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	a := &fakeAgent{}
	_, c := serve(t, a)
	if st, err := c.Status(ctx); err != nil || st.Name != "home" || st.Update == nil {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if u, err := c.Check(ctx); err != nil || u.Latest != "0.2.0" {
		t.Errorf("Check = %+v, %v", u, err)
	}
	if v, err := c.Install(ctx, InstallOptions{Version: "0.2.0", AllowDowngrade: true}); err != nil || v != "0.2.0" || a.installed != (InstallOptions{"0.2.0", true}) {
		t.Errorf("Install = %q, %v; the agent got %+v", v, err, a.installed)
	}

	a.checkErr, a.installErr = errors.New("fetch: not found"), ErrBusy
	if u, err := c.Check(ctx); err == nil || err.Error() != "fetch: not found" || u.Latest != "0.2.0" {
		t.Errorf("failed Check = %+v, %v; want the agent's reason and its status", u, err)
	}
	if _, err := c.Install(ctx, InstallOptions{}); err == nil || err.Error() != "another update is in progress" {
		t.Errorf("busy Install: %v", err)
	}
	if ans, err := c.Enroll(ctx, "relay.example/7KQ4-M2XD"); err != nil || ans.Hub != "garage" || ans.Relay != "relay.example:7443" || a.code != "relay.example/7KQ4-M2XD" {
		t.Errorf("Enroll = %+v, %v; the agent got %q", ans, err, a.code)
	}
	a.enrollErr = errors.New("this code has been used already")
	if ans, err := c.Enroll(ctx, "x"); err == nil || err.Error() != "this code has been used already" || ans.Hub != "" {
		t.Errorf("refused Enroll = %+v, %v", ans, err)
	}
	a.noUpdates = true
	if _, err := c.Check(ctx); err == nil || !strings.Contains(err.Error(), "updates need the agent to run from a config file") {
		t.Errorf("Check without updater: %v", err)
	}
}

func TestClientNotRunning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewClient(addr)
	_, err = c.Status(context.Background())
	if !errors.Is(err, ErrNotRunning) || err.Error() != "hubtunnel is not running (no answer on "+addr+")" {
		t.Errorf("Status of no agent: %v", err)
	}
	if _, err := c.Install(context.Background(), InstallOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Install of no agent: %v", err)
	}
}

func TestNewClient(t *testing.T) {
	for _, c := range []struct{ listen, addr string }{
		{"127.0.0.1:8099", "127.0.0.1:8099"},
		{":8099", "127.0.0.1:8099"},
		{"0.0.0.0:8099", "127.0.0.1:8099"},
		{"[::]:8099", "127.0.0.1:8099"},
		{"[::1]:8099", "[::1]:8099"},
		{"192.168.1.5:8099", "192.168.1.5:8099"},
	} {
		if got := NewClient(c.listen).Addr; got != c.addr {
			t.Errorf("NewClient(%q).Addr = %q, want %q", c.listen, got, c.addr)
		}
	}
}

// TestTokenOnAFullDisk: with no room to write the token, LoadOrCreateToken
// fails (the agent then refuses every action) and leaves no cut-off token
// or temporary file behind.
func TestTokenOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	filler, _ := os.Create(filepath.Join(dir, "filler"))
	for range 16 {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	filler.Close()
	if tok, _, err := LoadOrCreateToken(dir); err == nil || tok != "" {
		t.Errorf("LoadOrCreateToken on a full disk = %q, %v", tok, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "filler" {
			t.Errorf("left on the full disk: %s", e.Name())
		}
	}
}
