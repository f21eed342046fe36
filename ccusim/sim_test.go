package ccusim

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// startSim starts a Sim on free loopback ports and closes it when the test
// ends.
func startSim(t *testing.T, cfg Config) *Sim {
	t.Helper()
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	s := New(cfg)
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client returns an HTTP client whose idle connections are closed when the
// test ends.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestStartAddrClose(t *testing.T) {
	s := startSim(t, Config{})
	for _, name := range Services() {
		addr := s.Addr(name)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("Addr(%q) = %q, want 127.0.0.1:<port>", name, addr)
		}
	}
	if got := s.Addr("nope"); got != "" {
		t.Errorf(`Addr("nope") = %q, want ""`, got)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr("webui")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts after Close", addr)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestServiceOff(t *testing.T) {
	s := startSim(t, Config{WiredPort: -1, ScriptPort: -1, Name: "Wohnung"})
	if s.Addr("wired") != "" || s.Addr("script") != "" {
		t.Errorf("services that are off have addresses: wired %q, script %q", s.Addr("wired"), s.Addr("script"))
	}
	if s.Addr("rf") == "" {
		t.Error("rf has no address")
	}
}

func TestCloseBeforeStart(t *testing.T) {
	s := New(Config{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{RFPort: 65536}, "Config.RFPort"},
		{Config{ScriptPort: -2}, "Config.ScriptPort"},
		{Config{FilesDir: "/nonexistent/ccusim"}, "Config.FilesDir"},
		{Config{FilesDir: "sim.go"}, "not a directory"},
	}
	for _, tt := range tests {
		err := New(tt.cfg).Start()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(%+v) = %v, want an error naming %s", tt.cfg, err, tt.want)
		}
	}
}

// TestStartAllOrNothing takes one service's port away: Start must fail and
// leave no other port open.
func TestStartAllOrNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	// Reserve a port for webui, which is opened before hmip, and free it for
	// the Sim.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	webPort := probe.Addr().(*net.TCPAddr).Port
	probe.Close()

	s := New(Config{WebUIPort: webPort, HmIPPort: busyPort, Logf: t.Logf})
	err = s.Start()
	if err == nil || !strings.Contains(err.Error(), "hmip") {
		t.Fatalf("Start = %v, want an error for hmip", err)
	}
	if s.Addr("webui") != "" {
		t.Errorf("Addr(webui) = %q after a failed Start", s.Addr("webui"))
	}
	// The webui port must be free again.
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(webPort))
	if err != nil {
		t.Fatalf("webui port still taken after a failed Start: %v", err)
	}
	ln.Close()
	s.Close()
}

// TestNoGoroutineLeak checks that Close ends every goroutine a Sim
// started, with connections still open.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	s := New(Config{Logf: t.Logf})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	if _, err := Call(context.Background(), hc, "http://"+s.Addr("rf")+"/", "ping", "t"); err != nil {
		t.Fatal(err)
	}
	// An idle raw connection the server must close.
	c, err := net.Dial("tcp", s.Addr("webui"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.Close()
	tr.CloseIdleConnections()

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestPortInUseError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = New(Config{RFPort: busy.Addr().(*net.TCPAddr).Port}).Start()
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("Start = %v, want a wrapped *net.OpError", err)
	}
}

// TestPeersRecordsWhoConnected: each accepted connection's peer address
// is kept per service, as the hub saw it.
func TestPeersRecordsWhoConnected(t *testing.T) {
	sim := New(Config{})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", sim.Addr("script"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	poll.Until(t, 5*time.Second, "the connection recorded", func() bool { return len(sim.Peers("script")) == 1 })
	if p := sim.Peers("script")[0]; p.Addr().String() != "127.0.0.2" {
		t.Errorf("peer %v, want 127.0.0.2", p)
	}
	if n := len(sim.Peers("rf")); n != 0 {
		t.Errorf("rf has %d peers, want 0", n)
	}
}

// TestCountsWhatReachesIt: every request is counted by service, and one
// carrying the relay's credentials (which the relay must never pass on)
// is counted as such, however it is encoded.
func TestCountsWhatReachesIt(t *testing.T) {
	s := New(Config{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(service, path string, hdr map[string]string) {
		req, _ := http.NewRequest("GET", "http://"+s.Addr(service)+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("webui", "/", nil)
	get("webui", "/", map[string]string{"Cookie": "a=1; __Host-hubtunnel=x"})
	get("rf", "/", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("u:htk_abc"))})
	get("script", "/", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("Admin:ccu"))})
	get("webui", CountsPath, nil)
	got := s.Counts()
	if got.Requests["webui"] != 2 || got.Requests["rf"] != 1 || got.Requests["script"] != 1 || got.RelayCredentials != 2 {
		t.Errorf("counts %+v", got)
	}
}
