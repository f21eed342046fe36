package portmap

import (
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestFixed(t *testing.T) {
	got := Fixed()
	if len(got) != 16 {
		t.Fatalf("Fixed() has %d entries, want 16", len(got))
	}
	if !slices.IsSortedFunc(got, func(a, b Entry) int { return int(a.Port) - int(b.Port) }) {
		t.Errorf("Fixed() not sorted by Port: %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Port == got[i-1].Port {
			t.Errorf("port %d listed twice", got[i].Port)
		}
	}
	got[0].Local = 1 // must be a copy
	if e, _ := Lookup(80); e.Local != 80 {
		t.Errorf("Fixed() returned the package's own slice")
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		port uint16
		want Entry
		ok   bool
	}{
		{80, Entry{80, 80, false, "WebUI", false}, true},
		{90, Entry{90, 90, false, "addon PHP server", true}, true},
		{443, Entry{443, 80, true, "WebUI", false}, true},
		{2000, Entry{2000, 2000, false, "XML-RPC wired", false}, true},
		{2001, Entry{2001, 2001, false, "XML-RPC RF", false}, true},
		{2002, Entry{2002, 2002, false, "XML-RPC system", false}, true},
		{2010, Entry{2010, 2010, false, "XML-RPC HmIP", false}, true},
		{4430, Entry{4430, 2000, true, "XML-RPC wired", false}, true},
		{4431, Entry{4431, 2001, true, "XML-RPC RF", false}, true},
		{4432, Entry{4432, 2002, true, "XML-RPC system", false}, true},
		{4433, Entry{4433, 2003, true, "Homegear", false}, true},
		{4434, Entry{4434, 2010, true, "XML-RPC HmIP", false}, true},
		{8001, Entry{8001, 8001, false, "reserved 8001", true}, true},
		{8002, Entry{8002, 8002, false, "reserved 8002", true}, true},
		{8181, Entry{8181, 8181, false, "script engine", false}, true},
		{44381, Entry{44381, 8181, true, "script engine", false}, true},
		{0, Entry{}, false},
		{2003, Entry{}, false},
		{2005, Entry{}, false},
		{65535, Entry{}, false},
	}
	for _, tt := range tests {
		got, ok := Lookup(tt.port)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%d) = %+v, %v; want %+v, %v", tt.port, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRoutes(t *testing.T) {
	type m = map[string]string
	type en = []uint16
	tests := []struct {
		name    string
		in      Targets
		port    uint16 // route to check
		want    string // its target; "" = port not active
		wantErr string // substring of the error; "" = no error
	}{
		{"default WebUI", Targets{}, 80, "127.0.0.1:80", ""},
		{"default TLS WebUI shares :80", Targets{}, 443, "127.0.0.1:80", ""},
		{"default XML-RPC TLS", Targets{}, 4434, "127.0.0.1:2010", ""},
		{"default Homegear", Targets{}, 4433, "127.0.0.1:2003", ""},
		{"default script engine TLS", Targets{}, 44381, "127.0.0.1:8181", ""},
		{"optional 90 off by default", Targets{}, 90, "", ""},
		{"optional 8001 off by default", Targets{}, 8001, "", ""},
		{"optional 8002 off by default", Targets{}, 8002, "", ""},
		{"host override", Targets{Host: "10.0.0.5"}, 2001, "10.0.0.5:2001", ""},
		{"host override IPv6", Targets{Host: "::1"}, 443, "[::1]:80", ""},
		{"host override name", Targets{Host: "ccu.fritz.box"}, 80, "ccu.fritz.box:80", ""},
		{"port host:port", Targets{Ports: m{"2001": "127.0.0.2:32001"}}, 2001, "127.0.0.2:32001", ""},
		{"port [v6]:port", Targets{Ports: m{"2001": "[::1]:32001"}}, 2001, "[::1]:32001", ""},
		{"port override leaves others", Targets{Ports: m{"2001": "127.0.0.2:32001"}}, 2000, "127.0.0.1:2000", ""},
		{"bare port on default host", Targets{Ports: m{"2001": "32001"}}, 2001, "127.0.0.1:32001", ""},
		{"bare port on Host", Targets{Host: "10.0.0.5", Ports: m{"2001": "32001"}}, 2001, "10.0.0.5:32001", ""},
		{"override 443 leaves 80", Targets{Ports: m{"443": "8080"}}, 80, "127.0.0.1:80", ""},
		{"override 443", Targets{Ports: m{"443": "8080"}}, 443, "127.0.0.1:8080", ""},
		{"enable 90", Targets{Enable: en{90}}, 90, "127.0.0.1:90", ""},
		{"enable 90 leaves 8001 off", Targets{Enable: en{90}}, 8001, "", ""},
		{"enable 90 on Host", Targets{Host: "10.0.0.5", Enable: en{90}}, 90, "10.0.0.5:90", ""},
		{"enable non-optional is harmless", Targets{Enable: en{80}}, 80, "127.0.0.1:80", ""},
		{"override of disabled optional stays off", Targets{Ports: m{"90": "9090"}}, 90, "", ""},
		{"override of enabled optional", Targets{Ports: m{"90": "9090"}, Enable: en{90}}, 90, "127.0.0.1:9090", ""},
		{"unknown port", Targets{Ports: m{"2005": "2005"}}, 0, "", `targets.ports.2005: not a port of the fixed map`},
		{"key not a number", Targets{Ports: m{"web": "80"}}, 0, "", `targets.ports.web: not a port of the fixed map`},
		{"key out of range", Targets{Ports: m{"70000": "80"}}, 0, "", `targets.ports.70000: not a port of the fixed map`},
		{"bad value", Targets{Ports: m{"2001": "abc"}}, 0, "", `targets.ports.2001: "abc": not host:port or a port`},
		{"value port 0", Targets{Ports: m{"2001": "0"}}, 0, "", `targets.ports.2001: "0": not host:port or a port`},
		{"value port too big", Targets{Ports: m{"2001": "70000"}}, 0, "", `targets.ports.2001: "70000": not host:port or a port`},
		{"value empty host", Targets{Ports: m{"2001": ":32001"}}, 0, "", `targets.ports.2001: ":32001": not host:port or a port`},
		{"value bad host", Targets{Ports: m{"2001": "a b:32001"}}, 0, "", `targets.ports.2001: "a b:32001": not host:port or a port`},
		{"value bad port", Targets{Ports: m{"2001": "localhost:http"}}, 0, "", `targets.ports.2001: "localhost:http": not host:port or a port`},
		{"value empty", Targets{Ports: m{"2001": ""}}, 0, "", `targets.ports.2001: "": not host:port or a port`},
		{"bad host", Targets{Host: "a b"}, 0, "", `targets.host: "a b": not a host name or IP address`},
		{"host with port", Targets{Host: "127.0.0.1:80"}, 0, "", `targets.host: "127.0.0.1:80": not a host name or IP address`},
		{"enable unknown", Targets{Enable: en{2005}}, 0, "", `targets.enable: 2005: not a port of the fixed map`},
		{"all errors reported", Targets{Ports: m{"2005": "1", "2001": "x"}}, 0, "", "2001: \"x\": not host:port or a port\ntargets.ports.2005"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, err := tt.in.Routes()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Routes() error = %v; want it to contain %q", err, tt.wantErr)
				}
				if routes != nil {
					t.Errorf("Routes() returned routes along with an error: %v", routes)
				}
				return
			}
			if err != nil {
				t.Fatalf("Routes() error = %v", err)
			}
			got := ""
			for _, r := range routes {
				if r.Port == tt.port {
					got = r.Target
					if e, _ := Lookup(tt.port); r.Entry != e {
						t.Errorf("route %d has entry %+v, want %+v", tt.port, r.Entry, e)
					}
				}
			}
			if got != tt.want {
				t.Errorf("route for %d = %q, want %q", tt.port, got, tt.want)
			}
		})
	}
}

func TestRoutesDefaultSet(t *testing.T) {
	routes, err := Targets{}.Routes()
	if err != nil {
		t.Fatal(err)
	}
	var got []uint16
	for _, r := range routes {
		got = append(got, r.Port)
	}
	want := []uint16{80, 443, 2000, 2001, 2002, 2010, 4430, 4431, 4432, 4433, 4434, 8181, 44381}
	if !slices.Equal(got, want) {
		t.Errorf("default routes = %v, want %v", got, want)
	}
}

func TestTargetsTOML(t *testing.T) {
	const doc = `
host = "192.168.1.10"
enable = [90, 8001]
[ports]
"2001" = "127.0.0.1:32001"
"2010" = "32010"
`
	var tg Targets
	if _, err := toml.Decode(doc, &tg); err != nil {
		t.Fatal(err)
	}
	routes, err := tg.Routes()
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16]string{}
	for _, r := range routes {
		got[r.Port] = r.Target
	}
	want := map[uint16]string{
		80: "192.168.1.10:80", 90: "192.168.1.10:90", 2001: "127.0.0.1:32001",
		2010: "192.168.1.10:32010", 4434: "192.168.1.10:2010", 8001: "192.168.1.10:8001",
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("port %d -> %q, want %q", p, got[p], w)
		}
	}
	if _, ok := got[8002]; ok {
		t.Errorf("8002 active without enable")
	}
}
