package ccufirewall

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// DefaultFile is where the CCU keeps the settings: libfirewall.tcl's
// Firewall_CONFIG_FILE. /etc/config is a link to /usr/local/etc/config.
const DefaultFile = "/etc/config/firewall.conf"

// LibraryFile is the CCU firmware's firewall library, which applies
// DefaultFile at every network start. Its presence tells a hub that applies
// the settings (even before the owner first saves them) from one that does
// not.
const LibraryFile = "/lib/libfirewall.tcl"

// MaxSize bounds the file. The CCU's is about 600 bytes.
const MaxSize = 64 << 10

// Mode is the firewall policy the owner picked.
type Mode uint8

const (
	// Restrictive drops everything not opened explicitly ("Ports
	// restricted" in the dialog; the factory default).
	Restrictive Mode = iota
	// MostOpen accepts everything not closed explicitly ("Ports open", the
	// compatibility mode).
	MostOpen
)

func (m Mode) String() string {
	if m == MostOpen {
		return "MOST_OPEN"
	}
	return "RESTRICTIVE"
}

// Access is a service's access level.
type Access uint8

const (
	None       Access = iota // "no access"
	Restricted               // "restricted": only from the IPs
	Full                     // "full access"
)

func (a Access) String() string {
	switch a {
	case Full:
		return "full"
	case Restricted:
		return "restricted"
	}
	return "none"
}

func parseAccess(s string) (Access, bool) {
	switch s {
	case "full":
		return Full, true
	case "restricted":
		return Restricted, true
	case "none":
		return None, true
	}
	return None, false
}

// Service is one [SERVICE] of the file.
type Service struct {
	ID     string   // XMLRPC, REGA, NEOSERVER, SNMP
	Ports  []uint16 // sorted, the file's and the defaults'
	Access Access
}

// Settings are the parsed file. Build them with Parse, Defaults or
// Lockdown; they do not change afterwards.
type Settings struct {
	Mode      Mode
	IPs       []netip.Prefix // the restricted ranges that can match
	Ignored   []string       // IPs entries that match nothing here, as written
	UserPorts []uint16       // sorted
	Services  []Service      // sorted by ID
	lockdown  bool
}

// defaultServices are libfirewall.tcl's Firewall_SERVICES: each service's
// ports and the factory access level, none.
var defaultServices = []Service{
	{ID: "NEOSERVER", Ports: []uint16{1901, 1902, 5987, 8088, 9099, 10000, 48899, 49880}},
	{ID: "REGA", Ports: []uint16{1999, 8181, 41999, 48181}},
	{ID: "SNMP", Ports: []uint16{161}},
	{ID: "XMLRPC", Ports: []uint16{2000, 2001, 2002, 2010, 9292, 42000, 42001, 42010, 49292}},
}

// defaultIPs are libfirewall.tcl's Firewall_IPS, used only without a file.
var defaultIPs = []string{"192.168.0.1", "192.168.0.0/16", "fc00::/7", "fe80::/10"}

// udpOnly are the ports libfirewall.tcl's Firewall_isUdpPort opens or
// closes for UDP, not TCP.
var udpOnly = []uint16{161, 1901, 1902, 5987, 10000, 48899, 49880}

func cloneServices() []Service {
	s := make([]Service, len(defaultServices))
	for i, d := range defaultServices {
		s[i] = Service{ID: d.ID, Ports: slices.Clone(d.Ports), Access: d.Access}
	}
	return s
}

// Defaults are the settings of a CCU without the file: the factory
// defaults of libfirewall.tcl (RESTRICTIVE, every service "none").
func Defaults() *Settings {
	s := &Settings{Mode: Restrictive, Services: cloneServices()}
	s.setIPs(defaultIPs)
	return s
}

// Lockdown are the settings used when the file cannot be trusted:
// RESTRICTIVE, every service "none", no ranges, no user ports. Only the
// WebUI's ports stay open.
func Lockdown() *Settings {
	return &Settings{Mode: Restrictive, Services: cloneServices(), lockdown: true}
}

// Parse reads the file's content. Every problem that makes the file
// untrustworthy is an error naming the line; on error the caller should use
// Lockdown.
func Parse(data []byte) (*Settings, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("ccufirewall.Parse: %d bytes, more than %d", len(data), MaxSize)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("ccufirewall.Parse: the file does not end in a newline (cut short, or being written)")
	}
	s := &Settings{Mode: Restrictive, Services: cloneServices()}
	type section struct {
		line         int
		id, ports    string
		access       string
		hasID, hasAc bool
	}
	var (
		sections []*section
		cur      *section
		ips      []string
		seen     = map[string]int{}
	)
	lines := bytes.Split(data, []byte("\n"))
	lines = lines[:len(lines)-1] // after the last newline
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimRight(strings.TrimLeft(string(raw), " \t"), " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		for _, c := range line {
			if c < 0x20 && c != '\t' || c == 0x7f || c == '{' || c == '}' || c == '"' || c == '\\' {
				return nil, fmt.Errorf("ccufirewall.Parse: line %d: unexpected character %q", n, c)
			}
		}
		if line[0] == '[' {
			if line[len(line)-1] != ']' || len(line) < 3 || strings.ContainsAny(line[1:len(line)-1], "[]") {
				return nil, fmt.Errorf("ccufirewall.Parse: line %d: %q is not a [section]", n, line)
			}
			cur = &section{line: n}
			sections = append(sections, cur)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("ccufirewall.Parse: line %d: %q is not key = value", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		key := k
		if cur != nil {
			key = "[SERVICE]." + k
		}
		if prev, dup := seen[fmt.Sprintf("%d/%s", len(sections), key)]; dup {
			return nil, fmt.Errorf("ccufirewall.Parse: line %d: %s given twice (also line %d)", n, k, prev)
		}
		seen[fmt.Sprintf("%d/%s", len(sections), key)] = n
		switch key {
		case "MODE":
			switch v {
			case "RESTRICTIVE", "":
				s.Mode = Restrictive
			case "MOST_OPEN":
				s.Mode = MostOpen
			default:
				return nil, fmt.Errorf("ccufirewall.Parse: line %d: MODE %q: want RESTRICTIVE or MOST_OPEN", n, v)
			}
		case "IPs":
			ips = strings.Fields(v)
		case "USERPORTS":
			ports, err := parsePorts(v)
			if err != nil {
				return nil, fmt.Errorf("ccufirewall.Parse: line %d: USERPORTS: %v", n, err)
			}
			s.UserPorts = ports
		case "[SERVICE].Id":
			if !validID(v) {
				return nil, fmt.Errorf("ccufirewall.Parse: line %d: Id %q: want capital letters, digits and _", n, v)
			}
			cur.id, cur.hasID = v, true
		case "[SERVICE].Ports":
			cur.ports = v
		case "[SERVICE].Access":
			cur.access, cur.hasAc = v, true
		default:
			where := "before the first [section]"
			if cur != nil {
				where = "in a [section]"
			}
			return nil, fmt.Errorf("ccufirewall.Parse: line %d: unknown key %q %s", n, k, where)
		}
	}
	s.setIPs(ips)

	ids := map[string]int{}
	for _, sec := range sections {
		if !sec.hasID {
			return nil, fmt.Errorf("ccufirewall.Parse: section at line %d has no Id", sec.line)
		}
		if prev, dup := ids[sec.id]; dup {
			return nil, fmt.Errorf("ccufirewall.Parse: section at line %d: service %s also at line %d", sec.line, sec.id, prev)
		}
		ids[sec.id] = sec.line
		if !sec.hasAc {
			return nil, fmt.Errorf("ccufirewall.Parse: service %s (line %d) has no Access", sec.id, sec.line)
		}
		access, ok := parseAccess(sec.access)
		if !ok {
			return nil, fmt.Errorf("ccufirewall.Parse: service %s (line %d): Access %q: want full, restricted or none", sec.id, sec.line, sec.access)
		}
		ports, err := parsePorts(sec.ports)
		if err != nil {
			return nil, fmt.Errorf("ccufirewall.Parse: service %s (line %d): Ports: %v", sec.id, sec.line, err)
		}
		i := slices.IndexFunc(s.Services, func(x Service) bool { return x.ID == sec.id })
		if i < 0 {
			// A service this package does not know (a newer firmware's):
			// its ports and level count like any other's.
			s.Services = append(s.Services, Service{ID: sec.id})
			i = len(s.Services) - 1
		}
		all := append(s.Services[i].Ports, ports...)
		slices.Sort(all)
		s.Services[i].Ports = slices.Compact(all)
		s.Services[i].Access = access
	}
	// sort.Slice, not slices.SortFunc: a generic sort instantiated for
	// Service cost the agent 8 KB.
	sort.Slice(s.Services, func(i, j int) bool { return s.Services[i].ID < s.Services[j].ID })
	return s, nil
}

// setIPs keeps the entries that can match and notes the others.
func (s *Settings) setIPs(entries []string) {
	s.IPs, s.Ignored = nil, nil
	for _, e := range entries {
		if p, ok := parseRange(e); ok {
			s.IPs = append(s.IPs, p)
		} else {
			s.Ignored = append(s.Ignored, e)
		}
	}
}

// parseRange reads one IPs entry as iptables' -s would: an address, an
// address/length or an IPv4 address/dotted mask; host bits are masked off.
// Names, zoned and IPv4-mapped addresses and anything else do not parse.
func parseRange(e string) (netip.Prefix, bool) {
	addr, mask, hasMask := strings.Cut(e, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Prefix{}, false
	}
	bits := a.BitLen()
	if hasMask {
		if n, err := strconv.ParseUint(mask, 10, 8); err == nil && mask[0] != '+' && len(mask) <= 3 {
			bits = int(n)
		} else if m, err := netip.ParseAddr(mask); err == nil && a.Is4() && m.Is4() {
			bits = maskBits(m.As4())
		} else {
			return netip.Prefix{}, false
		}
	}
	p, err := a.Prefix(bits)
	if err != nil || bits < 0 {
		return netip.Prefix{}, false
	}
	return p, true
}

// maskBits is the length of a contiguous dotted mask, or -1.
func maskBits(m [4]byte) int {
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	n := 0
	for v&(1<<31) != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return -1
	}
	return n
}

// parsePorts reads a space-separated list of ports 1..65535, sorted.
func parsePorts(v string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Fields(v) {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 || f[0] == '0' {
			return nil, fmt.Errorf("%q is not a port", f)
		}
		ports = append(ports, uint16(n))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Verdict is the answer for one port and address.
type Verdict struct {
	Allow   bool
	Service string // the service whose level decided, "" for none
	Access  Access // that service's level
	Reason  string // a constant phrase for the log: why
}

// Check answers whether the CCU lets a LAN client with address src open a
// TCP connection to its port. It does not allocate.
func (s *Settings) Check(port uint16, src netip.Addr) Verdict {
	src = src.Unmap()
	if _, ok := slices.BinarySearch(s.UserPorts, port); ok {
		return Verdict{Allow: true, Reason: "a port the owner opened"}
	}
	v := Verdict{Allow: true}
	found := false
	if _, udp := slices.BinarySearch(udpOnly, port); !udp {
		for i := range s.Services {
			svc := &s.Services[i]
			if _, ok := slices.BinarySearch(svc.Ports, port); !ok {
				continue
			}
			found = true
			switch svc.Access {
			case Full:
				if v.Allow && v.Service == "" {
					v = Verdict{Allow: true, Service: svc.ID, Access: Full, Reason: "full access"}
				}
			case Restricted:
				if !s.inRanges(src) {
					return Verdict{Service: svc.ID, Access: Restricted, Reason: "restricted, and the address is not in the allowed ranges"}
				}
				if v.Allow {
					v = Verdict{Allow: true, Service: svc.ID, Access: Restricted, Reason: "restricted, and the address is in the allowed ranges"}
				}
			default:
				return Verdict{Service: svc.ID, Access: None, Reason: "no access"}
			}
		}
	}
	if found {
		return v
	}
	if s.Mode == Restrictive {
		switch port {
		case 80, 443, 9293, 9294:
			return Verdict{Allow: true, Reason: "a port the CCU always opens"}
		}
		if s.lockdown {
			return Verdict{Reason: "the firewall settings could not be read"}
		}
		return Verdict{Reason: "a port the restrictive policy keeps closed"}
	}
	if port == 22 || port == 8182 || port == 8183 || s.internalPort(port) {
		return Verdict{Reason: "a port the CCU keeps closed"}
	}
	return Verdict{Allow: true, Reason: "open policy"}
}

// internalPort reports whether port is the internal port of an XMLRPC or
// REGA port below 30000: the port with a "3" in front of its digits (2001
// → 32001), which MOST_OPEN closes.
func (s *Settings) internalPort(port uint16) bool {
	for i := range s.Services {
		svc := &s.Services[i]
		if svc.ID != "XMLRPC" && svc.ID != "REGA" {
			continue
		}
		for _, p := range svc.Ports {
			if p >= 30000 {
				continue
			}
			scale := 10
			for scale <= int(p) {
				scale *= 10
			}
			if 3*scale+int(p) == int(port) {
				return true
			}
		}
	}
	return false
}

func (s *Settings) inRanges(src netip.Addr) bool {
	for _, p := range s.IPs {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// Service returns the service with id, if the settings have it.
func (s *Settings) Service(id string) (Service, bool) {
	i := slices.IndexFunc(s.Services, func(x Service) bool { return x.ID == id })
	if i < 0 {
		return Service{}, false
	}
	return s.Services[i], true
}
