package ccufirewall

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse: whatever the file holds, Parse returns settings or an error,
// never panics, and settings it returns keep the CCU's rule: a port of a
// service at "no access" that the owner did not open is refused to every
// LAN address.
func FuzzParse(f *testing.F) {
	fixtures, _ := filepath.Glob("testdata/*.conf")
	for _, p := range fixtures {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("MODE = MOST_OPEN\n[SERVICE REGA]\nId = REGA\nAccess = none\nPorts = 8181 1999\n"))
	addrs := []netip.Addr{netip.MustParseAddr("100.96.0.1"), netip.MustParseAddr("192.168.178.20"), netip.MustParseAddr("fe80::1")}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		_ = s.Summary()
		for _, svc := range s.Services {
			for _, port := range svc.Ports {
				for _, a := range addrs {
					v := s.Check(port, a)
					if svc.Access == None && v.Allow && v.Service == svc.ID && !slices.Contains(s.UserPorts, port) {
						t.Fatalf("port %d of %s at no access allowed for %v: %+v", port, svc.ID, a, v)
					}
				}
			}
		}
	})
}
