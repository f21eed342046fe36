package portmap

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// sourceKind is what local_source says.
type sourceKind uint8

const (
	sourceAuto   sourceKind = iota // the hub's LAN address, found per session
	sourceKernel                   // "127.0.0.1": bind nothing
	sourceFixed                    // one address
)

func parseLocalSource(s string) (source, error) {
	switch s {
	case "", "auto":
		return source{kind: sourceAuto}, nil
	case "127.0.0.1":
		return source{kind: sourceKernel}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return source{}, config.Errorf("targets.local_source", "%q: want \"auto\", \"127.0.0.1\" or an IP address of this hub", s)
	}
	return source{kind: sourceFixed, addr: a.Unmap()}, nil
}

type source struct {
	kind sourceKind
	addr netip.Addr
}

// sourceTTL is how long "auto" keeps the address it found: FindLANAddr
// costs about 25 µs (a UDP socket and its route lookup, no packet), too
// much for every session, and a hub's address changes rarely (DHCP).
const sourceTTL = 5 * time.Second

// SourceFunc returns the Forwarder.LocalSource that t.LocalSource asks for
// (t must have passed Routes). For "auto" it calls find again when its last
// answer is older than 5 s — the hub's address may change with DHCP — and
// logs through logf when the answer changes, in particular when the hub has
// no LAN address and the kernel's choice (a loopback connection) is all
// that is left. find nil means FindLANAddr.
func (t Targets) SourceFunc(find func() netip.Addr, logf logger.Logf) func() netip.Addr {
	return t.sourceFunc(find, logf, time.Now)
}

func (t Targets) sourceFunc(find func() netip.Addr, logf logger.Logf, now func() time.Time) func() netip.Addr {
	src, _ := parseLocalSource(t.LocalSource)
	switch src.kind {
	case sourceKernel:
		return nil
	case sourceFixed:
		a := src.addr
		return func() netip.Addr { return a }
	}
	if find == nil {
		find = FindLANAddr
	}
	logf = logger.OrDiscard(logf)
	var (
		mu   sync.Mutex
		last netip.Addr
		at   time.Time // when last was found
		told bool
	)
	return func() netip.Addr {
		mu.Lock()
		defer mu.Unlock()
		if n := now(); told && n.Sub(at) < sourceTTL && n.Sub(at) >= 0 {
			return last
		}
		a := find()
		changed := !told || a != last
		last, at, told = a, now(), true
		if changed {
			if a.IsValid() {
				logf("portmap: local targets are dialed from %v, this hub's LAN address", a)
			} else {
				logf("portmap: this hub has no LAN address; local targets are dialed from loopback")
			}
		}
		return a
	}
}

// probeV4 and probeV6 are public addresses whose route names the hub's
// primary address. Connecting a UDP socket only looks the route up: no
// packet is sent.
var (
	probeV4 = netip.MustParseAddrPort("9.9.9.9:53")
	probeV6 = netip.MustParseAddrPort("[2620:fe::fe]:53")
)

// FindLANAddr returns the hub's primary LAN address: the source address of
// its route to the internet (IPv4 first, then IPv6), found without sending
// anything; without such a route, the first IPv4 then IPv6 address of an
// interface that is up, not loopback and not link-local. It returns the
// zero Addr when the hub has no such address.
func FindLANAddr() netip.Addr {
	for _, probe := range []netip.AddrPort{probeV4, probeV6} {
		if a := routeSource(probe); usable(a) {
			return a
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}
	}
	var v6 netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			pfx, err := netip.ParsePrefix(ad.String())
			if err != nil || !usable(pfx.Addr()) {
				continue
			}
			if a := pfx.Addr().Unmap(); a.Is4() {
				return a
			} else if !v6.IsValid() {
				v6 = a
			}
		}
	}
	return v6
}

// routeSource is the source address the kernel picks for dst.
func routeSource(dst netip.AddrPort) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() && !a.IsMulticast()
}
