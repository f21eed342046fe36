package panel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
)

// fakeAgent answers as an agent would.
type fakeAgent struct {
	mu       sync.Mutex
	settings Settings
	saved    []Settings
	saveErr  error
	enrolled string
}

func (f *fakeAgent) Status() localapi.Status {
	return localapi.Status{State: localapi.StateUnenrolled, Version: "0.3.0", Update: &localapi.UpdateStatus{Auto: true, Window: "03:00-05:00"}}
}
func (f *fakeAgent) CheckUpdate(context.Context) (localapi.UpdateStatus, error) {
	return localapi.UpdateStatus{Latest: "0.3.1", Available: true}, nil
}
func (f *fakeAgent) InstallUpdate(context.Context, localapi.InstallOptions) (string, error) {
	return "0.3.1", nil
}
func (f *fakeAgent) Enroll(_ context.Context, code string) (localapi.EnrollResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if code != "good" {
		return localapi.EnrollResponse{}, errors.New("this code is mistyped: check it")
	}
	f.enrolled = code
	return localapi.EnrollResponse{Hub: "garage"}, nil
}
func (f *fakeAgent) Settings() Settings { f.mu.Lock(); defer f.mu.Unlock(); return f.settings }
func (f *fakeAgent) SaveSettings(s Settings) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.saveErr != nil {
		return false, f.saveErr
	}
	f.saved = append(f.saved, s)
	return true, nil
}
func (f *fakeAgent) Restart() error { return nil }
func (f *fakeAgent) PortMap() []Port {
	return []Port{{Port: 4430, Service: "XML-RPC wired", Local: "127.0.0.1:2000", TLS: true}}
}
func (f *fakeAgent) DNSTrace(context.Context) Finding {
	return Finding{OK: true, Trace: "relay.example: system 192.0.2.1\n", Said: localapi.Words{Kind: "resolved", Detail: "192.0.2.1", Text: "relay.example resolves to 192.0.2.1"}}
}
func (f *fakeAgent) TestConnection(context.Context) Finding {
	return Finding{Said: localapi.Words{Kind: "refused", Detail: "192.0.2.1:443", Text: "cannot reach the relay: connection refused"}}
}
func (f *fakeAgent) Logs() []string { return []string{"agent: hello"} }

var _ Agent = (*fakeAgent)(nil)

const liveID = "AbCdE12345"

// rega is a script engine that knows one live session and counts what it
// is asked; down makes it answer 500.
type rega struct {
	asked atomic.Int32
	down  atomic.Bool
	last  atomic.Value // the last script
}

func (g *rega) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.asked.Add(1)
	b, _ := io.ReadAll(r.Body)
	g.last.Store(string(b))
	if g.down.Load() || r.URL.Path != "/tclrega.exe" {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	out := ""
	if string(b) == "Write(system.GetSessionVarStr('"+liveID+"'));" {
		out = "1001;8;Admin;;;"
	}
	io.WriteString(w, out+"<xml><exec>/tclrega.exe</exec></xml>")
}

type bed struct {
	srv   *httptest.Server
	rega  *rega
	agent *fakeAgent
	now   time.Time
	mu    sync.Mutex
}

func newBed(t *testing.T, cfg Config) *bed {
	t.Helper()
	b := &bed{rega: &rega{}, agent: &fakeAgent{settings: Settings{Enabled: true, AllowedCIDRs: []string{"100.96.0.1/32"}}}, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	rs := httptest.NewServer(b.rega)
	t.Cleanup(rs.Close)
	if cfg.Rega == "" {
		cfg.Rega = rs.URL
	}
	if cfg.LanguageFile == "" {
		cfg.LanguageFile = filepath.Join(t.TempDir(), "none")
	}
	cfg.Now = func() time.Time { b.mu.Lock(); defer b.mu.Unlock(); return b.now }
	b.srv = httptest.NewServer(Handler(b.agent, cfg))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bed) advance(d time.Duration) { b.mu.Lock(); b.now = b.now.Add(d); b.mu.Unlock() }

// do sends a request; hdr are header pairs.
func (b *bed) do(t *testing.T, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

// origin is what the page's own fetch sends.
func (b *bed) origin() string { return b.srv.URL }

func TestSession(t *testing.T) {
	for _, c := range []struct {
		name, sid string
		code      int
		answer    string
		asks      int32 // requests the script engine gets
	}{
		{"live sid", "@" + liveID + "@", 200, `id="enroll-form"`, 1},
		{"live sid without @", liveID, 200, `id="enroll-form"`, 1},
		{"no sid", "", 403, "Open this page with the hubtunnel button", 0},
		{"ended session", "@ZZZZZZZZZZ@", 403, "Your WebUI session has ended", 1},
		{"script in the sid", "@abc');system.Exec('x@", 403, "Your WebUI session has ended", 0},
		{"quote", "@AbCdE1234'@", 403, "session has ended", 0},
		{"too long", "@AbCdE123456@", 403, "session has ended", 0},
		{"trailing junk", "@AbCdE12345@x", 403, "session has ended", 0},
		{"newline", "@AbCdE12345@\n", 403, "session has ended", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, Config{})
			code, body := b.do(t, "GET", Prefix+"?sid="+urlQuery(c.sid), "")
			if code != c.code || !strings.Contains(body, c.answer) {
				t.Errorf("GET the page with sid %q: %d %.300s, want %d with %q", c.sid, code, body, c.code, c.answer)
			}
			if n := b.rega.asked.Load(); n != c.asks {
				t.Errorf("the script engine was asked %d times, want %d (last script %v)", n, c.asks, b.rega.last.Load())
			}
		})
	}
}

func urlQuery(s string) string {
	r := strings.NewReplacer("@", "%40", "'", "%27", ";", "%3B", "(", "%28", ")", "%29", "\n", "%0A", " ", "%20")
	return r.Replace(s)
}

func TestSessionCache(t *testing.T) {
	b := newBed(t, Config{})
	get := func() int {
		code, _ := b.do(t, "GET", Prefix+"api/state", "", "X-CCU-Session", "@"+liveID+"@")
		return code
	}
	first, second := get(), get()
	if first != 200 || second != 200 || b.rega.asked.Load() != 1 {
		t.Fatalf("two reads within a minute: asked %d times, want once", b.rega.asked.Load())
	}
	b.advance(61 * time.Second)
	if get() != 200 || b.rega.asked.Load() != 2 {
		t.Errorf("a read after 61 s: asked %d times in all, want 2", b.rega.asked.Load())
	}
	// A refusal is not kept: the same unknown id is asked again.
	for range 2 {
		if code, _ := b.do(t, "GET", Prefix+"api/state", "", "X-CCU-Session", "@ZZZZZZZZZZ@"); code != 403 {
			t.Errorf("unknown session: %d, want 403", code)
		}
	}
	if n := b.rega.asked.Load(); n != 4 {
		t.Errorf("asked %d times in all, want 4 (refusals are not cached)", n)
	}
}

func TestRegaDown(t *testing.T) {
	b := newBed(t, Config{})
	b.rega.down.Store(true)
	code, body := b.do(t, "GET", Prefix+"?sid=%40"+liveID+"%40", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "script engine does not answer") {
		t.Errorf("page with the script engine down: %d %.300s", code, body)
	}
	// Nothing listens at all.
	b2 := newBed(t, Config{Rega: "http://127.0.0.1:1"})
	code, body = b2.do(t, "GET", Prefix+"api/state", "", "X-CCU-Session", liveID)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "script engine does not answer") || !strings.Contains(body, `"session":true`) {
		t.Errorf("API with no script engine: %d %s", code, body)
	}
}

// TestActionsSameOrigin: a state-changing request must come from the page
// itself; a foreign one is refused before the session is even checked.
func TestActionsSameOrigin(t *testing.T) {
	for _, c := range []struct {
		name string
		hdr  []string
		code int
	}{
		{"no origin at all", nil, 403},
		{"foreign origin", []string{"Origin", "http://evil.example"}, 403},
		{"origin null", []string{"Origin", "null"}, 403},
		{"own host, other scheme", []string{"Origin", "https://HOST"}, 403},
		{"cross-site fetch with a forged-looking origin", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://HOST"}, 403},
		{"same-site but other origin", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"own origin", []string{"Origin", "http://HOST"}, 200},
		{"same-origin fetch", []string{"Sec-Fetch-Site", "same-origin"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, Config{})
			host := strings.TrimPrefix(b.srv.URL, "http://")
			hdr := []string{"Content-Type", "application/json", "X-CCU-Session", "@" + liveID + "@"}
			for i, h := range c.hdr {
				if i%2 == 1 {
					h = strings.ReplaceAll(h, "HOST", host)
				}
				hdr = append(hdr, h)
			}
			code, body := b.do(t, "POST", Prefix+"api/settings", `{"enabled": false}`, hdr...)
			if code != c.code {
				t.Errorf("POST settings: %d %s, want %d", code, body, c.code)
			}
			saved := len(b.agent.saved)
			if c.code == 403 {
				if saved != 0 || b.rega.asked.Load() != 0 {
					t.Errorf("a refused request saved %d times and asked the script engine %d times", saved, b.rega.asked.Load())
				}
				if !strings.Contains(body, "did not come from the hubtunnel page") {
					t.Errorf("refusal %q does not say why", body)
				}
			} else if saved != 1 || b.agent.saved[0].Enabled {
				t.Errorf("saved %+v, want one save with enabled off", b.agent.saved)
			}
		})
	}
}

func TestActionNeedsSession(t *testing.T) {
	b := newBed(t, Config{})
	code, body := b.do(t, "POST", Prefix+"api/enroll", `{"code": "good"}`, "Content-Type", "application/json", "Origin", b.origin(), "X-CCU-Session", "@ZZZZZZZZZZ@")
	if code != 403 || b.agent.enrolled != "" || !strings.Contains(body, `"session":true`) {
		t.Errorf("enroll with an ended session: %d %s; enrolled %q", code, body, b.agent.enrolled)
	}
	code, _ = b.do(t, "POST", Prefix+"api/enroll", `{"code": "good"}`, "Content-Type", "application/json", "Origin", b.origin())
	if code != 403 || b.agent.enrolled != "" {
		t.Errorf("enroll without a session: %d", code)
	}
}

// TestHostile: bad bodies and paths get a clear refusal and reach nothing.
func TestHostile(t *testing.T) {
	b := newBed(t, Config{})
	own := []string{"Origin", b.origin(), "X-CCU-Session", "@" + liveID + "@"}
	js := append([]string{"Content-Type", "application/json"}, own...)
	for _, c := range []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
	}{
		{"huge body", "POST", "api/settings", `{"proxy": "` + strings.Repeat("x", 100<<10) + `"}`, js, 413},
		{"form body", "POST", "api/settings", `enabled=false`, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, own...), 415},
		{"text body", "POST", "api/restart", `{}`, append([]string{"Content-Type", "text/plain"}, own...), 415},
		{"no content type", "POST", "api/restart", `{}`, own, 415},
		{"unknown field", "POST", "api/settings", `{"enabled": true, "relay": "evil:1"}`, js, 400},
		{"two objects", "POST", "api/settings", `{} {}`, js, 400},
		{"wrong type", "POST", "api/settings", `{"allowed_cidrs": "all"}`, js, 400},
		{"not JSON", "POST", "api/enroll", `code=x`, js, 400},
		{"GET of an action", "GET", "api/settings", "", own, 405},
		{"asset outside the list", "GET", "assets/panel.html", "", nil, 404},
		{"asset path up", "GET", "assets/..%2fpanel.go", "", nil, 404},
		{"path up", "GET", "../../api/status", "", nil, 404},
		{"API without session", "GET", "api/state", "", nil, 403},
		{"stats without session", "GET", "stats", "", nil, 403},
		{"api stats without session", "GET", "api/stats", "", nil, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := b.do(t, c.method, Prefix+c.path, c.body, c.hdr...)
			if code != c.code {
				t.Errorf("%s %s: %d %.200s, want %d", c.method, c.path, code, body, c.code)
			}
		})
	}
	if len(b.agent.saved) != 0 {
		t.Errorf("hostile requests saved settings: %+v", b.agent.saved)
	}
}

func TestPingAndAssets(t *testing.T) {
	b := newBed(t, Config{})
	if code, body := b.do(t, "GET", Prefix+"ping", ""); code != 200 || body != "ok" {
		t.Errorf("ping: %d %q", code, body)
	}
	for _, name := range []string{"panel.css", "panel.js"} {
		if code, body := b.do(t, "GET", Prefix+"assets/"+name, ""); code != 200 || len(body) < 100 {
			t.Errorf("asset %s: %d, %d bytes", name, code, len(body))
		}
	}
	if b.rega.asked.Load() != 0 {
		t.Errorf("ping and assets asked the script engine")
	}
}

// TestPageSize: every page the panel serves stays under 150 KB.
func TestPageSize(t *testing.T) {
	b := newBed(t, Config{})
	total := 0
	for _, p := range []string{"?sid=" + liveID, "assets/panel.css", "assets/panel.js"} {
		_, body := b.do(t, "GET", Prefix+p, "")
		total += len(body)
	}
	if total > 150<<10 {
		t.Errorf("the page with its assets is %d bytes, over 150 KB", total)
	}
}

func TestLanguage(t *testing.T) {
	dir := t.TempDir()
	de := filepath.Join(dir, "systemLanguage")
	if err := os.WriteFile(de, []byte("de\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, file, accept, want string
	}{
		{"the CCU's language", de, "en-US,en", `lang="de"`},
		{"no CCU language, German browser", "", "de-DE,de;q=0.9", `lang="de"`},
		{"no CCU language, English browser", "", "en-US,en;q=0.9", `lang="en"`},
		{"no CCU language, French browser", "", "fr-FR,de;q=0.5", `lang="de"`},
		{"nothing at all", "", "", `lang="en"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, Config{LanguageFile: c.file})
			_, body := b.do(t, "GET", Prefix+"?sid="+liveID, "", "Accept-Language", c.accept)
			if !strings.Contains(body, c.want) {
				t.Errorf("page is not %s: %.200s", c.want, body)
			}
		})
	}
}

// TestTextComplete: neither language leaves a string empty.
func TestTextComplete(t *testing.T) {
	for _, tx := range []text{english, german} {
		v := reflect.ValueOf(tx)
		for i := range v.NumField() {
			if v.Field(i).String() == "" {
				t.Errorf("%s: %s is empty", tx.Lang, v.Type().Field(i).Name)
			}
		}
	}
}

// TestKindsComplete: every kind of the agent's words (localapi.Kinds:
// last error, update errors and results, diagnostics) has its sentence in
// both languages, and no sentence is for a kind the agent does not say.
func TestKindsComplete(t *testing.T) {
	for _, tx := range []text{english, german} {
		for _, k := range localapi.Kinds {
			if tx.Kinds[k] == "" {
				t.Errorf("%s: no sentence for kind %q", tx.Lang, k)
			}
		}
		for k := range tx.Kinds {
			if !slices.Contains(localapi.Kinds, k) {
				t.Errorf("%s: kind %q is not one of localapi.Kinds", tx.Lang, k)
			}
		}
	}
	if english.Kinds["refused"] == german.Kinds["refused"] {
		t.Error("the German sentences are the English ones")
	}
}

// TestSettingsRefusal: a value the agent refuses comes back with its
// field, for the page to show next to it, in the panel's language: in
// German what the field wants, with the agent's words naming the value.
func TestSettingsRefusal(t *testing.T) {
	dir := t.TempDir()
	de := filepath.Join(dir, "systemLanguage")
	if err := os.WriteFile(de, []byte("de\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const problem = `"300.1.1.1" is not an address or CIDR`
	for _, c := range []struct{ name, langFile, accept, want string }{
		{"English", "", "en-US", `"error":"\"300.1.1.1\" is not an address or CIDR"`},
		{"German CCU", de, "en-US", `"error":"Erlaubte Quellen: eine Adresse oder ein Bereich pro Zeile`},
		{"German browser", "", "de-DE", `"error":"Erlaubte Quellen: eine Adresse oder ein Bereich pro Zeile`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, Config{LanguageFile: c.langFile})
			b.agent.saveErr = &FieldError{Field: "allowed_cidrs", Problem: problem}
			code, body := b.do(t, "POST", Prefix+"api/settings", `{"allowed_cidrs": ["300.1.1.1"]}`, "Content-Type", "application/json", "Origin", b.origin(), "X-CCU-Session", liveID, "Accept-Language", c.accept)
			if code != 422 || !strings.Contains(body, `"field":"allowed_cidrs"`) || !strings.Contains(body, c.want) || !strings.Contains(body, "300.1.1.1") {
				t.Errorf("refused settings: %d %s, want %s", code, body, c.want)
			}
		})
	}
}

// TestGermanFieldsComplete: every setting the panel sends, and the
// enrollment code, has its German explanation for a refusal.
func TestGermanFieldsComplete(t *testing.T) {
	fields := []string{"code"}
	st := reflect.TypeOf(Settings{})
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
	}
	for _, f := range fields {
		if germanFields[f] == "" {
			t.Errorf("germanFields has nothing for %q", f)
		}
	}
}

func TestEnrollAndDiag(t *testing.T) {
	b := newBed(t, Config{})
	hdr := []string{"Content-Type", "application/json", "Sec-Fetch-Site", "same-origin", "X-CCU-Session", liveID}
	code, body := b.do(t, "POST", Prefix+"api/enroll", `{"code": "bad"}`, hdr...)
	if code != 422 || !strings.Contains(body, `"field":"code"`) || !strings.Contains(body, "mistyped") {
		t.Errorf("bad code: %d %s", code, body)
	}
	code, body = b.do(t, "POST", Prefix+"api/enroll", `{"code": "bad"}`, append(hdr, "Accept-Language", "de")...)
	if code != 422 || !strings.Contains(body, "Dieser Code wurde nicht angenommen") || !strings.Contains(body, "mistyped") {
		t.Errorf("bad code, in German: %d %s", code, body)
	}
	code, body = b.do(t, "POST", Prefix+"api/enroll", `{"code": "good"}`, hdr...)
	if code != 200 || !strings.Contains(body, `"hub":"garage"`) {
		t.Errorf("good code: %d %s", code, body)
	}
	code, body = b.do(t, "POST", Prefix+"api/diag/connect", `{}`, hdr...)
	if code != 200 || !strings.Contains(body, `"ok":false`) || !strings.Contains(body, "connection refused") ||
		!strings.Contains(body, `"said":{"kind":"refused","detail":"192.0.2.1:443"`) {
		t.Errorf("connection test: %d %s", code, body)
	}
	code, body = b.do(t, "GET", Prefix+"api/logs", "", hdr...)
	if code != 200 || !strings.Contains(body, "agent: hello") {
		t.Errorf("logs: %d %s", code, body)
	}
	code, body = b.do(t, "GET", Prefix+"api/stats", "", hdr...)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "statistics") {
		t.Errorf("stats stub: %d %s", code, body)
	}
}
