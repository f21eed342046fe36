// Package portmap is the agent's fixed map of tunnel ports to the hub's local
// services, and the splice that carries one tunnel connection to its local
// target.
//
// The tunnel-side ports are fixed (the same CloudMatic-compatible set on every
// hub); only the local target host and, per entry, the local address can be
// configured. The optional entries (90, 8001, 8002) are off unless enabled.
//
// This package must never forward to anything but the configured local
// targets, never open a listener of its own (listeners come from the caller,
// normally the tunnel's netstack), and never log payload bytes.
package portmap

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/hubtunnel/hubtunnel/config"
)

// Entry is one line of the fixed port map.
type Entry struct {
	Port     uint16 // tunnel-side port, also the public port at the relay (before the relay's port offset)
	Local    uint16 // the hub's local port it is forwarded to
	TLS      bool   // the relay terminates TLS on this public port
	Name     string // "WebUI", "XML-RPC wired", ...
	Optional bool   // off unless enabled in config (90, 8001, 8002)
}

// fixed is the map, sorted by Port. It never changes at run time.
var fixed = [...]Entry{
	{Port: 80, Local: 80, Name: "WebUI"},
	{Port: 90, Local: 90, Name: "addon PHP server", Optional: true},
	{Port: 443, Local: 80, TLS: true, Name: "WebUI"},
	{Port: 2000, Local: 2000, Name: "XML-RPC wired"},
	{Port: 2001, Local: 2001, Name: "XML-RPC RF"},
	{Port: 2002, Local: 2002, Name: "XML-RPC system"},
	{Port: 2010, Local: 2010, Name: "XML-RPC HmIP"},
	{Port: 4430, Local: 2000, TLS: true, Name: "XML-RPC wired"},
	{Port: 4431, Local: 2001, TLS: true, Name: "XML-RPC RF"},
	{Port: 4432, Local: 2002, TLS: true, Name: "XML-RPC system"},
	{Port: 4433, Local: 2003, TLS: true, Name: "Homegear"},
	{Port: 4434, Local: 2010, TLS: true, Name: "XML-RPC HmIP"},
	{Port: 8001, Local: 8001, Name: "reserved 8001", Optional: true},
	{Port: 8002, Local: 8002, Name: "reserved 8002", Optional: true},
	{Port: 8181, Local: 8181, Name: "script engine"},
	{Port: 44381, Local: 8181, TLS: true, Name: "script engine"},
}

// Fixed returns every entry of the map, optional ones included, sorted by
// Port. The slice is a copy the caller may modify.
func Fixed() []Entry {
	return slices.Clone(fixed[:])
}

// Lookup returns the entry for tunnel port port, whether optional or not.
func Lookup(port uint16) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(fixed[:], port, func(e Entry, p uint16) int {
		return int(e.Port) - int(p)
	})
	if !ok {
		return Entry{}, false
	}
	return fixed[i], true
}

// DefaultHost is the local host all targets are on unless Targets.Host says
// otherwise.
const DefaultHost = "127.0.0.1"

// Targets is the agent's [targets] config: where on the hub the tunnel ports
// go. The zero value forwards every non-optional port to the same port number
// on 127.0.0.1.
type Targets struct {
	// Host is the local host all targets are on, a name or an IP address.
	// Default "127.0.0.1".
	Host string `toml:"host"`

	// Ports overrides the target of single tunnel ports. The key is the
	// tunnel port ("2001"); the value is "host:port" ("127.0.0.1:32001",
	// "[::1]:32001") or a bare port ("32001", on Host). An override of an
	// optional port takes effect only when that port is enabled.
	// Default: none, every entry goes to Host:Entry.Local.
	Ports map[string]string `toml:"ports"`

	// Enable switches on optional entries, e.g. [90]. Naming a port that is
	// on anyway is allowed. Default: none.
	Enable []uint16 `toml:"enable"`

	// LocalSource is the address the agent dials local targets from, which
	// the hub's services see as the client's: "auto" (the hub's primary LAN
	// address, see FindLANAddr and SourceFunc; targets on the default host
	// are then dialed on that address), "127.0.0.1" (the kernel chooses: today's
	// loopback connections, for generic boxes that trust nobody by source)
	// or an IP address of this machine. Default "auto". A CCU trusts
	// 127.0.0.1 more than its LAN (no authentication, scripts through the
	// WebUI port), so "auto" never dials from loopback while the hub has
	// another address.
	LocalSource string `toml:"local_source"`
}

// Route is an active tunnel port and the local address it is forwarded to.
type Route struct {
	Entry
	Target string // "host:port"
	// HostDefault: Target's host is DefaultHost because the config named
	// none (no Host, no host in the override). Forwarder.LocalSource may
	// then dial the same port on the source address instead.
	HostDefault bool
}

// Routes returns the active tunnel ports with their local targets, sorted by
// Port. Two routes may share a target (80 and 443 both go to the WebUI). All
// problems in t are reported together, each naming its config key, sorted by
// key; on error no routes are returned.
func (t Targets) Routes() ([]Route, error) {
	var errs []error

	host := t.Host
	if host == "" {
		host = DefaultHost
	} else if !validHost(host) {
		errs = append(errs, config.Errorf("targets.host", "%q: not a host name or IP address", host))
	}

	if _, err := parseLocalSource(t.LocalSource); err != nil {
		errs = append(errs, err)
	}

	enabled := make(map[uint16]bool, len(t.Enable))
	for _, p := range t.Enable {
		if _, ok := Lookup(p); !ok {
			errs = append(errs, config.Errorf("targets.enable", "%d: not a port of the fixed map", p))
			continue
		}
		enabled[p] = true
	}

	overrides := make(map[uint16]string, len(t.Ports))
	overrideHost := make(map[uint16]bool, len(t.Ports)) // the override names its host
	keys := make([]string, 0, len(t.Ports))
	for k := range t.Ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := t.Ports[k]
		p, err := strconv.ParseUint(k, 10, 16)
		if err != nil {
			errs = append(errs, config.Errorf("targets.ports."+k, "not a port of the fixed map"))
			continue
		}
		if _, ok := Lookup(uint16(p)); !ok {
			errs = append(errs, config.Errorf("targets.ports."+k, "not a port of the fixed map"))
			continue
		}
		target, ok := parseTarget(v, host)
		if !ok {
			errs = append(errs, config.Errorf("targets.ports."+k, "%q: not host:port or a port", v))
			continue
		}
		overrides[uint16(p)] = target
		_, bare := parsePort(v)
		overrideHost[uint16(p)] = !bare
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	routes := make([]Route, 0, len(fixed))
	for _, e := range fixed {
		if e.Optional && !enabled[e.Port] {
			continue
		}
		target, ok := overrides[e.Port]
		if !ok {
			target = net.JoinHostPort(host, strconv.Itoa(int(e.Local)))
		}
		routes = append(routes, Route{Entry: e, Target: target, HostDefault: t.Host == "" && !overrideHost[e.Port]})
	}
	return routes, nil
}

// parseTarget turns an override value into "host:port": either a bare port
// on defaultHost or a host:port whose host is valid.
func parseTarget(v, defaultHost string) (string, bool) {
	if _, ok := parsePort(v); ok {
		return net.JoinHostPort(defaultHost, v), true
	}
	h, p, err := net.SplitHostPort(v)
	if err != nil || !validHost(h) {
		return "", false
	}
	if _, ok := parsePort(p); !ok {
		return "", false
	}
	return net.JoinHostPort(h, p), true
}

// parsePort parses a decimal port in 1..65535 (no sign, no spaces).
func parsePort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// validHost reports whether h is an IP address (IPv6 zones allowed) or a
// syntactically valid DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 || h[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
		case c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return h[len(h)-1] != '-'
}
