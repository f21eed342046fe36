package ccusim

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestRunScript(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"empty", "", ""},
		{"write", `Write("hello");`, "hello"},
		{"single quotes", `Write('it "is"');`, `it "is"`},
		{"writeline", `WriteLine("a"); WriteLine('b');`, "a\nb\n"},
		{"writeline empty", `WriteLine();`, "\n"},
		{"concatenation", `Write("a" # 'b' #"c");`, "abc"},
		{"spaces", "Write ( \"x\" ) ;", "x"},
		{"no semicolon", `Write("a") Write("b")`, "ab"},
		{"other statements", `var x = 1; if (x == 1) { Write("one"); } string s = "Write('no')";`, "one"},
		{"comment", "! Write(\"no\")\nWrite(\"yes\");", "yes"},
		{"method call ignored", `dom.GetObject("x").Write("no"); Write("yes");`, "yes"},
		{"variable arg ignored", `Write(x); Write("y");`, "y"},
		{"unterminated string", `Write("abc`, ""},
		{"unterminated call", `Write("abc"`, ""},
		{"case sensitive", `write("no"); WRITE("no");`, ""},
		{"utf-8", `Write("Grüße °C");`, "Grüße °C"},
		{"live session", `Write(system.GetSessionVarStr('AbCdE12345'));`, "1001;8;Admin;;;"},
		{"session in a concatenation", `Write("[" # system.GetSessionVarStr("AbCdE12345") # "]");`, "[1001;8;Admin;;;]"},
		{"unknown session", `Write(system.GetSessionVarStr('ZZZZZZZZZZ'));`, ""},
		{"session without argument", `Write(system.GetSessionVarStr()); Write("y");`, "y"},
		{"session with a variable", `Write(system.GetSessionVarStr(sid)); Write("y");`, "y"},
		{"session unterminated", `Write(system.GetSessionVarStr('AbCdE12345'`, ""},
		{"other method as argument", `Write(system.GetVar('x')); Write("y");`, "y"},
	}
	live := func(id string) string {
		if id == "AbCdE12345" {
			return "1001;8;Admin;;;"
		}
		return ""
	}
	for _, tt := range tests {
		if got := runScript(tt.src, live); got != tt.want {
			t.Errorf("%s: runScript(%q) = %q, want %q", tt.name, tt.src, got, tt.want)
		}
	}
}

func TestScriptEndpoint(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	for _, path := range []string{"/tclrega.exe", "/rega.exe"} {
		req, _ := http.NewRequest("POST", "http://"+s.Addr("script")+path, strings.NewReader(`WriteLine("Hallo"); Write('<&>');`))
		req.Header.Set("User-Agent", "test<agent>")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := "Hallo\n<&><xml><exec>" + path + "</exec><sessionId></sessionId><httpUserAgent>test&lt;agent&gt;</httpUserAgent></xml>"
		if resp.StatusCode != http.StatusOK || string(b) != want {
			t.Errorf("POST %s = %s %q, want %q", path, resp.Status, b, want)
		}
	}
	resp, err := hc.Get("http://" + s.Addr("script") + "/tclrega.exe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /tclrega.exe = %s", resp.Status)
	}
}

// TestSessions: a sid from the WebUI's login is live for the script
// engine, as a CCU's addon pages check it, until its logout.
func TestSessions(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	post := func(url, body string) (int, string) {
		t.Helper()
		resp, err := hc.Post(url, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	check := func(sid string) string {
		t.Helper()
		_, out := post("http://"+s.Addr("script")+"/tclrega.exe", "Write(system.GetSessionVarStr('"+trimSid(sid)+"'));")
		out, _, _ = strings.Cut(out, "<xml>")
		return out
	}
	code, sid := post("http://"+s.Addr("webui")+"/login.htm", "")
	if code != 200 || !sidPattern.MatchString(sid) {
		t.Fatalf("POST /login.htm = %d %q, want a sid like @XXXXXXXXXX@", code, sid)
	}
	if _, other := post("http://"+s.Addr("webui")+"/login.htm", ""); other == sid {
		t.Errorf("two logins got the same sid %s", sid)
	}
	if got := check(sid); got == "" {
		t.Errorf("GetSessionVarStr of a live session wrote nothing")
	}
	if got := check("@AAAAAAAAAA@"); got != "" {
		t.Errorf("GetSessionVarStr of an unknown session wrote %q", got)
	}
	if code, _ := post("http://"+s.Addr("webui")+"/logout.htm?sid="+sid, ""); code != http.StatusNoContent {
		t.Errorf("POST /logout.htm = %d", code)
	}
	if got := check(sid); got != "" {
		t.Errorf("GetSessionVarStr after the logout wrote %q", got)
	}
	if got := check(s.Login()); got == "" {
		t.Errorf("Sim.Login's session is not live")
	}
}

var sidPattern = regexp.MustCompile(`^@[A-Za-z0-9]{10}@$`)

// FuzzRunScript: no script panics the engine or hangs it.
func FuzzRunScript(f *testing.F) {
	for _, s := range []string{`Write("a" # system.GetSessionVarStr('AbCdE12345'));`, `WriteLine();`, `Write(system.GetSessionVarStr(`, "! x\nWrite('y')"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		out := runScript(src, func(string) string { return "v" })
		if len(out) > 2*len(src)+1 {
			t.Errorf("runScript(%q) wrote %d bytes", src, len(out))
		}
	})
}
