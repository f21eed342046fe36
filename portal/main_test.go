package portal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/store"
)

// testPassword is cheap, so the tests do not spend 64 MiB and 0.1 s on
// every hash.
var testPassword = store.PasswordParams{MemoryKiB: 1024, Passes: 1, Threads: 1}

var ctx = context.Background()

// clock is a settable test clock, shared by the store and the portal.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Accounts of every test: alice owns the hubs home and cabin, bob and
// carol own nothing, dave is disabled. Every user may add hubs
// (env.enrollCode).
const (
	domain     = "hubs.test"
	publicHost = "relay.test"
	alicePW    = "alice's long password"
	bobPW      = "bob's long password"
	carolPW    = "carol's long password"
	davePW     = "dave's long password"
)

// env is a portal on a real SQLite store, with everything it hands out
// to the relay captured.
type env struct {
	t     *testing.T
	st    *store.Store
	clock *clock
	h     http.Handler

	mu       sync.Mutex
	events   []store.Event
	logs     []string
	handoffs []handoff
	secrets  []string // what must never be logged or audited
}

type handoff struct{ secret, host string }

func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}}
	var err error
	e.st, err = store.Open(ctx, filepath.Join(t.TempDir(), "relay.db"), store.Options{Now: e.clock.Now, Password: testPassword, Logf: e.logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	for _, u := range []struct{ name, pw string }{{"alice", alicePW}, {"bob", bobPW}, {"carol", carolPW}, {"dave", davePW}} {
		if _, err := e.st.AddUser(ctx, u.name, u.pw); err != nil {
			t.Fatal(err)
		}
		e.secret(u.pw)
	}
	check(t, e.st.SetDisabled(ctx, "dave", true))
	for i, hub := range []string{"home", "cabin"} {
		_, err := e.st.UpsertHub(ctx, store.HubSpec{Name: hub, PublicKey: fmt.Sprintf("key%d", i), TunnelIP: fmt.Sprintf("100.96.0.%d", i+2)})
		check(t, err)
		check(t, e.st.SetHubOwner(ctx, hub, "alice"))
	}
	check(t, e.st.HubSeen(ctx, "home", store.AgentInfo{Version: "0.3.0", Model: "RaspberryMatic", Firmware: "3.79.6"}))

	c := Config{
		Store:      e.st,
		Domain:     domain,
		PublicHost: publicHost,
		Online:     func(hub string) bool { return hub == "home" },
		Handoff: func(secret, host string) string {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.handoffs = append(e.handoffs, handoff{secret, host})
			return fmt.Sprintf("code%d", len(e.handoffs))
		},
		Audit: func(ev store.Event) {
			e.mu.Lock()
			e.events = append(e.events, ev)
			e.mu.Unlock()
			check(t, e.st.Append(ctx, ev))
		},
		EnrollCode: e.enrollCode,
		Now:        e.clock.Now,
		Logf:       e.logf,
	}
	for _, o := range opts {
		o(&c)
	}
	e.h, err = New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.checkNoSecrets)
	return e
}

// relayAgentAddr is the agent address the test relay writes into its
// enrollment codes.
const relayAgentAddr = "relay.test:8443"

// enrollCode makes a code as the relay's MakeEnrollCode does (package
// relay imports this one): a real code, kept in the store by its ID and a
// seed, valid for 24 hours.
func (e *env) enrollCode(ctx context.Context, hub, owner string) (string, time.Time, error) {
	var secret [enroll.SecretLen]byte
	var seed [16]byte
	rand.Read(secret[:])
	rand.Read(seed[:])
	code, err := enroll.New(relayAgentAddr, secret)
	if err != nil {
		return "", time.Time{}, err
	}
	id := code.ID()
	rec, err := e.st.CreateEnrollCode(ctx, store.EnrollSpec{
		ID: hex.EncodeToString(id[:]), Seed: hex.EncodeToString(seed[:]), RelayKey: "relay-key",
		Hub: hub, Owner: owner, CreatedBy: owner, Expires: e.clock.Now().Add(24 * time.Hour),
	})
	if err != nil {
		return "", time.Time{}, err
	}
	s := code.String()
	e.secret(s)
	e.secret(s[strings.LastIndexByte(s, '/')+1:])
	e.secret(rec.ID)
	return s, rec.Expires, nil
}

func (e *env) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	e.mu.Lock()
	e.logs = append(e.logs, line)
	e.mu.Unlock()
	e.t.Log(line)
}

// secret registers a value that must appear in no log line and no audit
// record.
func (e *env) secret(s string) {
	e.mu.Lock()
	e.secrets = append(e.secrets, s)
	e.mu.Unlock()
}

// checkNoSecrets runs after every test: no password, session secret,
// token, TOTP secret or code that the test handled is in a log line or in
// an audit record, whether handed to Audit or read back from the store.
func (e *env) checkNoSecrets() {
	stored, err := e.st.Audit(ctx, store.AuditFilter{})
	if err != nil {
		e.t.Error(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var texts []string
	texts = append(texts, e.logs...)
	for _, ev := range append(append([]store.Event(nil), e.events...), stored...) {
		texts = append(texts, fmt.Sprintf("%+v", ev))
	}
	for _, s := range e.secrets {
		if s == "" {
			continue
		}
		for _, txt := range texts {
			if strings.Contains(txt, s) {
				e.t.Errorf("a secret (%.3s…) is in a log line or audit record: %s", s, txt)
			}
		}
	}
}

// eventsOf returns the audit events of kind handed to Audit so far.
func (e *env) eventsOf(kind string) []store.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []store.Event
	for _, ev := range e.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func (e *env) lastHandoff() handoff {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.handoffs) == 0 {
		e.t.Fatal("no hand-off")
	}
	return e.handoffs[len(e.handoffs)-1]
}

// browser is one user agent: its address, language and cookies. Its
// requests carry what a browser sends with a form of the portal's own
// (Origin, Sec-Fetch-Site) unless a test says otherwise.
type browser struct {
	e       *env
	addr    string
	lang    string
	scheme  string // "http" unless Secure
	cookies map[string]string
}

func (e *env) browser(addr string) *browser {
	return &browser{e: e, addr: addr, scheme: "http", cookies: map[string]string{}}
}

// resp is an answer with its body read.
type resp struct {
	*http.Response
	body string
}

func (b *browser) do(method, path string, form url.Values, header ...string) resp {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, b.scheme+"://"+publicHost+path, body)
	req.RemoteAddr = b.addr + ":40000"
	if strings.Contains(b.addr, ":") {
		req.RemoteAddr = "[" + b.addr + "]:40000"
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", b.scheme+"://"+publicHost)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	for name, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: v})
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	w := httptest.NewRecorder()
	b.e.h.ServeHTTP(w, req)
	res := w.Result()
	for _, ck := range res.Cookies() {
		if ck.MaxAge < 0 {
			delete(b.cookies, ck.Name)
		} else {
			b.cookies[ck.Name] = ck.Value
			b.e.secret(ck.Value)
		}
	}
	data, _ := io.ReadAll(res.Body)
	return resp{res, string(data)}
}

func (b *browser) get(path string, header ...string) resp {
	b.e.t.Helper()
	return b.do(http.MethodGet, path, nil, header...)
}

// post sends a form of name, value pairs.
func (b *browser) post(path string, kv ...string) resp {
	b.e.t.Helper()
	return b.do(http.MethodPost, path, formOf(kv...))
}

// act sends a form from the home page: with the session's CSRF token.
func (b *browser) act(path string, kv ...string) resp {
	b.e.t.Helper()
	return b.post(path, append([]string{"csrf", b.csrf()}, kv...)...)
}

func formOf(kv ...string) url.Values {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// login logs in with a password and expects to be in.
func (b *browser) login(user, pw string) {
	b.e.t.Helper()
	r := b.post("/login", "user", user, "password", pw)
	if r.StatusCode != http.StatusSeeOther {
		b.e.t.Fatalf("login of %s: %s\n%s", user, r.Status, r.body)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from the home page, as a browser has it.
func (b *browser) csrf() string {
	b.e.t.Helper()
	r := b.get("/")
	m := csrfRE.FindStringSubmatch(r.body)
	if m == nil {
		b.e.t.Fatalf("no CSRF token on the home page (%s)", r.Status)
	}
	return m[1]
}

// field is the value of the element with id in body: an input's value or
// an element's text.
func field(t *testing.T, body, id string) string {
	t.Helper()
	if m := regexp.MustCompile(`id="` + id + `"[^>]*value="([^"]*)"`).FindStringSubmatch(body); m != nil {
		return m[1]
	}
	if m := regexp.MustCompile(`(?s)id="` + id + `"[^>]*>(.*?)</`).FindStringSubmatch(body); m != nil {
		return m[1]
	}
	t.Fatalf("no element #%s in\n%s", id, body)
	return ""
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantStatus(t *testing.T, r resp, code int) {
	t.Helper()
	if r.StatusCode != code {
		t.Fatalf("status %s, want %d\n%s", r.Status, code, r.body)
	}
}

func wantIn(t *testing.T, body string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(body, p) && !strings.Contains(body, html.EscapeString(p)) {
			t.Errorf("page lacks %q", p)
		}
	}
}

func wantNotIn(t *testing.T, body string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if strings.Contains(body, p) || strings.Contains(body, html.EscapeString(p)) {
			t.Errorf("page has %q", p)
		}
	}
}
