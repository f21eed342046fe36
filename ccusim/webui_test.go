package ccusim

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func get(t *testing.T, hc *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestWebUIPage(t *testing.T) {
	s := startSim(t, Config{Name: `Haus <Süd>`})
	hc := client(t)
	resp, body := get(t, hc, "http://"+s.Addr("webui")+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, want := range []string{"<title>HomeMatic WebUI</title>", "ccusim", "Haus &lt;Süd&gt;", "NEQ0000001:4", "SET_TEMPERATURE=21"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	if resp, _ := get(t, hc, "http://"+s.Addr("webui")+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %s", resp.Status)
	}
	// Without FilesDir there is no /files/.
	if resp, _ := get(t, hc, "http://"+s.Addr("webui")+"/files/x"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /files/x without FilesDir = %s", resp.Status)
	}
}

func TestWebUIFiles(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A secret beside the served directory, and a symlink pointing at it.
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	s := startSim(t, Config{FilesDir: dir})
	hc := client(t)
	base := "http://" + s.Addr("webui")

	resp, body := get(t, hc, base+"/files/big.bin")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /files/big.bin = %s", resp.Status)
	}
	if sha256.Sum256(body) != sha256.Sum256(data) {
		t.Fatalf("download differs: got %d bytes, want %d", len(body), len(data))
	}

	req, _ := http.NewRequest("GET", base+"/files/big.bin", nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[10:20]) {
		t.Errorf("range request = %s, %d bytes", resp.Status, len(part))
	}

	if resp, body := get(t, hc, base+"/files/link"); resp.StatusCode == http.StatusOK || strings.Contains(string(body), "secret") {
		t.Errorf("symlink out of FilesDir served: %s %q", resp.Status, body)
	}

	// A raw request with .. must not leave the directory either.
	c, err := net.Dial("tcp", s.Addr("webui"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /files/../"+filepath.Base(outside)+"/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(c)
	if strings.Contains(string(raw), "\r\n\r\nsecret") {
		t.Errorf("dot-dot request served the secret:\n%s", raw)
	}
}

func TestWebUIEcho(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	data := make([]byte, 3<<20)
	rand.Read(data)
	resp, err := hc.Post("http://"+s.Addr("webui")+"/echo", "text/html", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("echo = %s, %d bytes, want %d bytes back", resp.Status, len(got), len(data))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("echo Content-Type = %q", ct)
	}
}

func TestWebUIDevicesJSON(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	mustRPC(t, hc, s, "rf", "setValue", "NEQ0000002:1", "STATE", true)
	resp, body := get(t, hc, "http://"+s.Addr("webui")+"/api/devices")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/devices = %s", resp.Status)
	}
	var got map[string]map[string]map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, body)
	}
	if got["BidCos-RF"]["NEQ0000002:1"]["STATE"] != true {
		t.Errorf("BidCos-RF NEQ0000002:1 STATE = %v", got["BidCos-RF"]["NEQ0000002:1"]["STATE"])
	}
	if got["BidCos-RF"]["NEQ0000001:4"]["SET_TEMPERATURE"] != 21.0 {
		t.Errorf("SET_TEMPERATURE = %v", got["BidCos-RF"]["NEQ0000001:4"]["SET_TEMPERATURE"])
	}
	if _, ok := got["HmIP-RF"]["000A1B2C3D4E5F:3"]["STATE"]; !ok {
		t.Errorf("HmIP-RF lacks 000A1B2C3D4E5F:3 STATE: %s", body)
	}
	if _, ok := got["BidCos-Wired"]["LEQ0000001:13"]["STATE"]; !ok {
		t.Errorf("BidCos-Wired lacks LEQ0000001:13 STATE: %s", body)
	}
}
