package ccusim

import (
	"io"
	"net/http"
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
	}
	for _, tt := range tests {
		if got := runScript(tt.src); got != tt.want {
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
