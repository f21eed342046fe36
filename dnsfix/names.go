package dnsfix

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// localSuffixes are names that exist only inside a home or office network.
// A name equal to one of them or below it is never sent to a fallback
// resolver: some of these are registered publicly by third parties
// (fritz.box is), and the rest would tell a public resolver about the LAN.
// .test and .example are not here: RFC 6761 asks applications to treat them
// as ordinary names, and the tests use them as public names.
var localSuffixes = []struct{ suffix, why string }{
	{"fritz.box", "a FritzBox's own network (fritz.box is registered publicly by a third party)"},
	{"myfritz.box", "a FritzBox's own name"},
	{"fritz.nas", "a FritzBox's NAS"},
	{"speedport.ip", "a Speedport router's own name"},
	{"local", "multicast DNS (RFC 6762)"},
	{"lan", "a home network's private domain"},
	{"home", "a home network's private domain"},
	{"home.arpa", "a home network's domain (RFC 8375)"},
	{"internal", "a private network's domain (reserved by ICANN)"},
	{"intranet", "a private network's domain"},
	{"corp", "a private network's domain"},
	{"private", "a private network's domain"},
	{"localdomain", "a private network's domain"},
	{"localhost", "this machine (RFC 6761)"},
	{"invalid", "a name that never exists (RFC 6761)"},
	{"onion", "a Tor name (RFC 7686)"},
}

// LocalName reports why name (lower case, no trailing dot) is local: a
// single label, one of the well-known private suffixes, or below one of the
// hub's own search domains from resolv.conf. It returns "" for a public name.
func LocalName(name string, search []string) string {
	if !strings.Contains(name, ".") {
		return "a single-label name, which only the local network can know"
	}
	for _, s := range localSuffixes {
		if name == s.suffix || strings.HasSuffix(name, "."+s.suffix) {
			return "." + s.suffix + ": " + s.why
		}
	}
	for _, s := range search {
		if name == s || strings.HasSuffix(name, "."+s) {
			return "." + s + ": the hub's own search domain (resolv.conf)"
		}
	}
	return ""
}

// canonicalName lowers name, drops a trailing dot and checks its syntax.
func canonicalName(name string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if n == "" {
		return "", fmt.Errorf("empty name")
	}
	if _, ok := dns.IsDomainName(n); !ok || len(n) > 253 {
		return "", fmt.Errorf("%q is not a valid host name", name)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return "", fmt.Errorf("%q is not a valid host name", name)
		}
	}
	return n, nil
}

// Address classes, from best to worst.
type addrClass int

const (
	classPublic   addrClass = iota // a globally routable address
	classPrivate                   // usable, but suspicious for a public name
	classUnusable                  // never dialled: a resolver's warning or block page
)

var (
	collision = netip.MustParseAddr("127.0.53.53")
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	bench     = netip.MustParsePrefix("198.18.0.0/15") // also "fake-ip" DNS proxies
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	reserved  = netip.MustParsePrefix("240.0.0.0/4")
)

// classify says how far an address in an answer can be trusted, and why
// not when it cannot.
func classify(a netip.Addr) (addrClass, string) {
	a = a.Unmap()
	switch {
	case a == collision:
		return classUnusable, "127.0.53.53 is ICANN's name-collision warning, not an address"
	case a.IsUnspecified() || thisNet.Contains(a):
		return classUnusable, a.String() + " means the name is blocked by a filter"
	case a.IsMulticast() || reserved.Contains(a):
		return classUnusable, a.String() + " is not a host address"
	case a.IsLoopback():
		return classPrivate, a.String() + " is a loopback address"
	case a.IsPrivate():
		return classPrivate, a.String() + " is a private address"
	case a.IsLinkLocalUnicast():
		return classPrivate, a.String() + " is a link-local address"
	case cgnat.Contains(a):
		return classPrivate, a.String() + " is a carrier-grade NAT address"
	case bench.Contains(a):
		return classPrivate, a.String() + " is a benchmarking address, often a DNS proxy's stand-in"
	}
	return classPublic, ""
}
