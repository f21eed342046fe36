package dnsfix

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// maxSystemFile bounds what is read of resolv.conf and the hosts file.
const maxSystemFile = 1 << 20

// ParseServer checks a resolver address, "ip" or "ip:port" ("[ip6]:port"),
// and returns it as "ip:port" (port 53 when none is given). Names are not
// allowed: a resolver's own name would need a resolver.
func ParseServer(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("%q: port 0", s)
		}
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fmt.Errorf("%q: want an IP address, optionally with :port", s)
}

// resolvConf is what matters of resolv.conf.
type resolvConf struct {
	servers []string // ip:port
	search  []string // lower case, no trailing dot
}

// readResolvConf reads the nameserver, search and domain lines. A file
// without nameservers means the local machine, as in the C library.
func readResolvConf(path string) (resolvConf, error) {
	var rc resolvConf
	data, err := readSmall(path)
	if err != nil {
		return rc, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			// A link-local server may carry a zone: fe80::1%eth0.
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.servers = append(rc.servers, net.JoinHostPort(a.String(), "53"))
			}
		case "search", "domain":
			rc.search = rc.search[:0]
			for _, d := range f[1:] {
				if strings.HasPrefix(d, "#") || strings.HasPrefix(d, ";") {
					break
				}
				if d = strings.TrimSuffix(strings.ToLower(d), "."); d != "" {
					rc.search = append(rc.search, d)
				}
			}
		}
	}
	if len(rc.servers) == 0 {
		rc.servers = []string{"127.0.0.1:53", "[::1]:53"}
	}
	return rc, nil
}

// lookupHostsFile returns the addresses the hosts file gives name, IPv4
// first.
func lookupHostsFile(path, name string) ([]netip.Addr, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, h := range f[1:] {
			if strings.EqualFold(strings.TrimSuffix(h, "."), name) {
				if a = a.Unmap(); a.Is4() {
					v4 = append(v4, a)
				} else {
					v6 = append(v6, a)
				}
				break
			}
		}
	}
	return append(v4, v6...), nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSystemFile))
}
