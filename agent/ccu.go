package agent

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/ccufirewall"
	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/portmap"
)

// CCUConfig is the [ccu] table: what the agent takes over from the CCU's
// own settings.
type CCUConfig struct {
	// FirewallFile is the CCU's firewall settings (package ccufirewall),
	// applied to every tunnel connection as if it came from the LAN.
	// Default: ccufirewall.DefaultFile (/etc/config/firewall.conf) on a hub
	// whose firmware applies it (that file or /lib/libfirewall.tcl exists),
	// else off. "" or "off" switches it off, for hubs that are not CCUs.
	FirewallFile *string `toml:"firewall_file"`

	firewallFile string // resolved; "" = off
}

func (c *CCUConfig) validate(root string) error {
	if c.FirewallFile == nil {
		c.firewallFile = ""
		for _, marker := range []string{ccufirewall.DefaultFile, ccufirewall.LibraryFile} {
			if _, err := os.Stat(filepath.Join(root, marker)); err == nil {
				c.firewallFile = filepath.Join(root, ccufirewall.DefaultFile)
				break
			}
		}
		return nil
	}
	switch f := *c.FirewallFile; f {
	case "", "off":
		c.firewallFile = ""
	default:
		if !filepath.IsAbs(f) {
			return config.Errorf("ccu.firewall_file", "%q: want an absolute path, or \"off\"", f)
		}
		c.firewallFile = filepath.Clean(f)
	}
	return nil
}

// ccuGuard refuses tunnel connections the CCU's firewall settings would
// refuse from the LAN. The address that stands for the remote user is the
// connection's tunnel source: today always the relay's tunnel address,
// which counts as a LAN client outside every restricted range unless the
// owner lists it. Connections are refused with a reset before the local
// target is dialed: nothing reaches the hub.
type ccuGuard struct {
	file    *ccufirewall.File
	refused atomic.Uint64
	logf    logger.Logf // rate-limited: once per 30 s
}

func newCCUGuard(path string, logf logger.Logf) *ccuGuard {
	return &ccuGuard{
		file: &ccufirewall.File{Path: path, Logf: logf},
		logf: logger.RateLimited(logf, 30*time.Second),
	}
}

// listener wraps ln, a tunnel listener for route r.
func (g *ccuGuard) listener(ln net.Listener, r portmap.Route) net.Listener {
	return &guardedListener{Listener: ln, g: g, r: r}
}

type guardedListener struct {
	net.Listener
	g *ccuGuard
	r portmap.Route
}

// Accept returns the next connection the settings allow, refusing the
// others on the way.
func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := remoteAddr(c)
		st := l.g.file.Current()
		v := st.Settings.Check(l.r.Local, src)
		if v.Allow {
			return c, nil
		}
		l.g.refused.Add(1)
		portmap.Abort(c)
		svc := v.Service
		if svc == "" {
			svc = "port"
		}
		l.g.logf("agent: refused %v on tunnel port %d (%s, the hub's port %d): the CCU's firewall settings: %s %s",
			src, l.r.Port, l.r.Name, l.r.Local, svc, v.Reason)
	}
}

// status is the [ccu] part of the status API.
func (g *ccuGuard) status() *localapi.CCUFirewallStatus {
	st := g.file.Current()
	s := &localapi.CCUFirewallStatus{File: g.file.Path, Source: st.Source, Settings: st.Settings.Summary(), Refused: g.refused.Load()}
	if st.Err != nil {
		s.Error = st.Err.Error()
	}
	return s
}

func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}
