package portmap

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// peerServer accepts on addr, answers each connection with its peer's
// address and records it.
func peerServer(t *testing.T, addr string) (string, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		peers []string
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			peers = append(peers, c.RemoteAddr().String())
			mu.Unlock()
			c.Write([]byte(c.RemoteAddr().String() + "\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), peers...)
	}
}

// peerThrough connects through f to route r and returns what the server
// saw as the peer's host.
func peerThrough(t *testing.T, f *Forwarder, r Route) string {
	t.Helper()
	ln := listen(t)
	go f.Serve(ln, r)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("through the forwarder to %s: %v", r.Target, err)
	}
	host, _, _ := net.SplitHostPort(strings.TrimSpace(line))
	return host
}

// TestLocalSourceIsWhatTheHubSees: with a local source, every target is
// dialed from it, and a target on the default host is dialed on the
// source's address (the hub's services listen on all addresses), while a
// target whose host the config names keeps it. 127.0.0.2 stands in for
// the hub's LAN address.
func TestLocalSourceIsWhatTheHubSees(t *testing.T) {
	onLAN, _ := peerServer(t, "127.0.0.2:0")  // a service on the "LAN address"
	onLoop, _ := peerServer(t, "127.0.0.1:0") // a service only on 127.0.0.1
	_, lanPort, _ := net.SplitHostPort(onLAN)

	f := &Forwarder{LocalSource: func() netip.Addr { return netip.MustParseAddr("127.0.0.2") }}
	defer f.Close()
	if got := peerThrough(t, f, Route{Target: "127.0.0.1:" + lanPort, HostDefault: true}); got != "127.0.0.2" {
		t.Errorf("default-host target: the service saw %s, want 127.0.0.2", got)
	}
	if got := peerThrough(t, f, Route{Target: onLoop}); got != "127.0.0.2" {
		t.Errorf("explicit target %s: the service saw %s, want 127.0.0.2", onLoop, got)
	}

	// Without a source (local_source = "127.0.0.1"), today's behaviour.
	var plain Forwarder
	defer plain.Close()
	if got := peerThrough(t, &plain, Route{Target: onLoop, HostDefault: true}); got != "127.0.0.1" {
		t.Errorf("no source: the service saw %s, want 127.0.0.1", got)
	}
}

func TestRouteTarget(t *testing.T) {
	lan := netip.MustParseAddr("192.168.178.20")
	tests := []struct {
		r    Route
		src  netip.Addr
		want string
	}{
		{Route{Target: "127.0.0.1:8181", HostDefault: true}, lan, "192.168.178.20:8181"},
		{Route{Target: "127.0.0.1:8181", HostDefault: true}, netip.Addr{}, "127.0.0.1:8181"},
		{Route{Target: "127.0.0.1:32001"}, lan, "127.0.0.1:32001"},
		{Route{Target: "ccu.fritz.box:80"}, lan, "ccu.fritz.box:80"},
		{Route{Target: "127.0.0.1:80", HostDefault: true}, netip.MustParseAddr("fd00::20"), "[fd00::20]:80"},
	}
	for _, tt := range tests {
		if got := tt.r.target(tt.src); got != tt.want {
			t.Errorf("%+v from %v: %q, want %q", tt.r, tt.src, got, tt.want)
		}
	}
}

func TestRoutesHostDefault(t *testing.T) {
	tests := []struct {
		in   Targets
		port uint16
		want bool
	}{
		{Targets{}, 8181, true},
		{Targets{Ports: map[string]string{"8181": "18181"}}, 8181, true},
		{Targets{Ports: map[string]string{"8181": "127.0.0.1:18181"}}, 8181, false},
		{Targets{Host: "127.0.0.1"}, 8181, false},
		{Targets{Host: "10.0.0.5"}, 2001, false},
	}
	for _, tt := range tests {
		routes, err := tt.in.Routes()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Port == tt.port && r.HostDefault != tt.want {
				t.Errorf("%+v: port %d HostDefault = %v, want %v", tt.in, tt.port, r.HostDefault, tt.want)
			}
		}
	}
}

func TestSourceFunc(t *testing.T) {
	var lines []string
	logf := func(f string, args ...any) { lines = append(lines, f) }
	found := netip.MustParseAddr("192.168.178.20")
	find := func() netip.Addr { return found }

	if f := (Targets{LocalSource: "127.0.0.1"}).SourceFunc(find, logf); f != nil {
		t.Errorf(`"127.0.0.1" gave a source func; want nil (the kernel chooses)`)
	}
	if f := (Targets{LocalSource: "10.0.0.7"}).SourceFunc(find, logf); f == nil || f() != netip.MustParseAddr("10.0.0.7") {
		t.Errorf("a fixed address is not used")
	}
	for _, s := range []string{"", "auto"} {
		lines = nil
		now := time.Unix(1000, 0)
		calls := 0
		counted := func() netip.Addr { calls++; return find() }
		f := Targets{LocalSource: s}.sourceFunc(counted, logf, func() time.Time { return now })
		f()
		now = now.Add(time.Second)
		f()
		if f() != found || len(lines) != 1 || calls != 1 {
			t.Errorf("%q: %v, %d log lines, %d finds; want the found address, found and logged once", s, f(), len(lines), calls)
		}
		found = netip.Addr{}
		if !f().IsValid() {
			t.Errorf("%q: the address changed within 5 s of finding it", s)
		}
		now = now.Add(5 * time.Second)
		if f().IsValid() || len(lines) != 2 || calls != 2 {
			t.Errorf("%q: no LAN address after 5 s: %d log lines %q, %d finds", s, len(lines), lines, calls)
		}
		found = netip.MustParseAddr("192.168.178.20")
	}
	for _, bad := range []string{"lan", "0.0.0.0", "::", "fe80::1%eth0", "224.0.0.1"} {
		_, err := Targets{LocalSource: bad}.Routes()
		if err == nil || !strings.Contains(err.Error(), "targets.local_source") {
			t.Errorf("local_source %q: %v, want an error naming targets.local_source", bad, err)
		}
	}
}

// TestFindLANAddr: whatever it finds is an address of this machine that is
// not loopback. It sends nothing (a UDP connect only picks a route).
func TestFindLANAddr(t *testing.T) {
	a := FindLANAddr()
	if !a.IsValid() {
		t.Skip("this machine has no LAN address")
	}
	if a.IsLoopback() || a.IsLinkLocalUnicast() {
		t.Fatalf("FindLANAddr = %v", a)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), "0"))
	if err != nil {
		t.Fatalf("%v is not this machine's: %v", a, err)
	}
	ln.Close()
}
