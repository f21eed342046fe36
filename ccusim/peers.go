package ccusim

import (
	"net"
	"net/netip"
	"sync"
)

// maxPeers bounds the peers kept per service; the oldest go first.
const maxPeers = 1024

// peers records the remote address of every connection a service
// accepted: what reached the hub, and from which address the hub saw it.
type peers struct {
	mu sync.Mutex
	by map[string][]netip.AddrPort // service → peers, oldest first
}

// recordingListener notes each accepted connection's peer under service.
type recordingListener struct {
	net.Listener
	service string
	p       *peers
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.p.add(l.service, c.RemoteAddr())
	}
	return c, err
}

func (p *peers) add(service string, a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.by == nil {
		p.by = map[string][]netip.AddrPort{}
	}
	l := append(p.by[service], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	if len(l) > maxPeers {
		l = l[len(l)-maxPeers:]
	}
	p.by[service] = l
}

// Peers returns the remote address of each connection a service ("webui",
// "wired", "rf", "hmip", "script") has accepted, oldest first (the last
// 1024): how many connections reached the simulated hub, and from which
// address it saw them.
func (s *Sim) Peers(service string) []netip.AddrPort {
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	return append([]netip.AddrPort(nil), s.peers.by[service]...)
}
