package relay

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const (
	// maxInboundPerHub is how many of a hub's data packets may wait inside
	// WireGuard on the way to the netstack. WireGuard holds each in a 64 KiB
	// buffer whatever its size, and a tunnel TCP window of 1 MiB from a fast
	// hub is ~760 packets, ~48 MiB. Beyond the bound that hub's connection
	// is not read, and the backlog waits in the socket buffers at its real
	// size. The count is per hub, so one hub's backlog never holds back
	// another's. 128 packets are 8 MiB; throughput did not change.
	maxInboundPerHub = 128
	// reconnectWindow and reconnectWait: a request for a hub whose agent
	// connection ended less than reconnectWindow ago (the agent updating
	// or restarting, its network blinking) waits up to reconnectWait for
	// the agent to connect again, rather than failing with "Hub offline"
	// in the second the agent needs. A relay that restarts knows of no
	// earlier connection.
	reconnectWindow = 30 * time.Second
	reconnectWait   = 5 * time.Second
	// udpSessionFresh is how recent a UDP hub's last handshake must be for
	// it to count as online: WireGuard rekeys every 2 minutes while the
	// agent's persistent keepalives flow.
	udpSessionFresh = 3 * time.Minute
)

// registry is the hub registry: every configured hub by name, key and
// tunnel address (fixed once the relay runs), and what the relay knows of
// each now: online, reconnecting, and its packets inside WireGuard.
type registry struct {
	byName map[string]*hub
	byKey  map[vpn.PublicKey]*hub
	byIP   map[netip.Addr]*hub

	now func() time.Time // Config.Now
	// udpHandshake, set when UDP agents are allowed, is when the hub's
	// peer last completed a handshake over UDP (zero: never, or its last
	// endpoint is an agent's TCP connection). UDP agents say no Hello.
	udpHandshake func(vpn.PublicKey) time.Time
}

// hub is a configured hub and what the relay knows about it now.
type hub struct {
	HubConfig
	online atomic.Int32 // live agent connections that named this hub and completed a handshake; changed under mu

	mu             sync.Mutex
	goneAt         time.Time     // when its last connection ended; zero if it never had one
	back           chan struct{} // closed when it connects again; nil while nobody waits
	wrongKeyLogged time.Time     // when a connection with a wrong relay key was last logged

	// inbound counts the hub's data packets that its agent connections
	// have handed to WireGuard and WireGuard has not yet written to the
	// netstack (see maxInboundPerHub): counted in by the connection's
	// reader (admitInbound), out by inboundTUN. roomMu: one reader waits
	// at a time.
	inbound *inflight.Window
	roomMu  sync.Mutex
}

func newRegistry(hubs []HubConfig, now func() time.Time) *registry {
	r := &registry{
		byName: map[string]*hub{},
		byKey:  map[vpn.PublicKey]*hub{},
		byIP:   map[netip.Addr]*hub{},
		now:    now,
	}
	for _, hc := range hubs {
		h := &hub{HubConfig: hc, inbound: inflight.New(maxInboundPerHub)}
		r.byName[h.Name] = h
		r.byKey[h.key] = h
		r.byIP[h.ip] = h
	}
	return r
}

// online reports whether a hub can be reached now: a verified TCP agent
// connection, or a recent WireGuard handshake over UDP. The latter walks
// WireGuard's whole peer dump, so it is asked only for hubs without a TCP
// connection, and only when UDP is enabled.
func (r *registry) online(h *hub) bool {
	if h.online.Load() > 0 {
		return true
	}
	if r.udpHandshake == nil {
		return false
	}
	last := r.udpHandshake(h.key)
	return !last.IsZero() && r.now().Sub(last) < udpSessionFresh
}

// connected counts a verified agent connection of h in and wakes
// waitOnline.
func (r *registry) connected(h *hub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.online.Add(1)
	if h.back != nil {
		close(h.back)
		h.back = nil
	}
}

// disconnected counts a verified agent connection of h out and reports
// whether it was the hub's last; that starts its reconnect window.
func (r *registry) disconnected(h *hub) (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.online.Add(-1) != 0 {
		return false
	}
	h.goneAt = r.now()
	return true
}

// reconnecting reports whether h has no connection now but had one less
// than reconnectWindow ago.
func (r *registry) reconnecting(h *hub) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online.Load() == 0 && !h.goneAt.IsZero() && r.now().Sub(h.goneAt) < reconnectWindow
}

// waitOnline waits up to max, or until done is closed, for h to have an
// agent connection, and reports whether it has one.
func (r *registry) waitOnline(h *hub, max time.Duration, done <-chan struct{}) bool {
	h.mu.Lock()
	if h.online.Load() > 0 {
		h.mu.Unlock()
		return true
	}
	if h.back == nil {
		h.back = make(chan struct{})
	}
	back := h.back
	h.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-back:
		return true
	case <-t.C:
	case <-done:
	}
	return false
}

// admitInbound waits until the hub has room for one more data packet
// inside WireGuard and counts it in. It reports false once stop is closed.
func (h *hub) admitInbound(stop <-chan struct{}) bool {
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	if h.inbound.Room(1, stop) == 0 {
		return false
	}
	h.inbound.Enter(1)
	return true
}

// lastUDPHandshake is the registry's udpHandshake for a relay with UDP
// agents: WireGuard's last handshake with the hub, if its endpoint is UDP.
func (s *Server) lastUDPHandshake(key vpn.PublicKey) time.Time {
	st, err := s.dev.Stats()
	if err != nil {
		return time.Time{}
	}
	ps, ok := st[key]
	if !ok || strings.HasPrefix(ps.Endpoint, tcpEndpointPrefix) {
		return time.Time{}
	}
	return ps.LastHandshake
}

// inboundTUN is the netstack's TUN device as WireGuard sees it: each
// packet WireGuard writes to it is counted out of the window of the hub it
// came from (hub.inbound), found by its IPv4 source address. WireGuard
// only writes packets whose source is the sending peer's tunnel address.
type inboundTUN struct {
	tun.Device
	byIP map[netip.Addr]*hub // read-only once the relay runs
}

func (d *inboundTUN) Write(bufs [][]byte, offset int) (int, error) {
	written, err := d.Device.Write(bufs, offset)
	// Counted out in runs: a batch comes from one peer.
	var last *hub
	n := 0
	for _, b := range bufs {
		h := d.byIP[sourceIPv4(b[offset:])]
		if h != last {
			if last != nil {
				last.inbound.Leave(n)
			}
			last, n = h, 0
		}
		n++
	}
	if last != nil {
		last.inbound.Leave(n)
	}
	return written, err
}

// sourceIPv4 is the source address of an IPv4 packet, or the zero Addr.
func sourceIPv4(p []byte) netip.Addr {
	if len(p) < 20 || p[0]>>4 != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(p[12:16]))
}
