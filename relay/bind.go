package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/internal/udpbind"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// agentBind is the relay's conn.Bind: WireGuard messages from every agent's
// TCP connection (and, if enabled, from UDP) reach the one WireGuard device
// through it, and WireGuard's replies leave through it. Each TCP connection is its own conn.Endpoint, so WireGuard's
// roaming (the peer's endpoint follows its last authenticated packet) sends
// replies down the connection the hub last spoke on.
//
// The TCP listener and the connections are owned by the Server, not by
// Open/Close: WireGuard reopens its bind when the UDP port is set, and that
// must not drop every connected hub.
type agentBind struct {
	udp     conn.Bind // nil when UDP is off
	udpPort uint16
	// udpIn bounds UDP hubs' data packets inside WireGuard, as their
	// readers do for TCP hubs (udpInbound); nil: unbounded.
	udpIn *udpInbound

	in chan inbound // frames from all agent connections

	mu      sync.Mutex
	closing chan struct{} // nil while closed
}

var _ conn.Bind = (*agentBind)(nil)

// inbound is one WireGuard message read from an agent connection.
type inbound struct {
	buf *[]byte // from getFrame
	n   int
	ep  *agentConn
}

// Frame buffers come in two sizes, and a reader takes one only once a frame
// has arrived, of the size it needs (wire.Conn.Next): an idle hub holds
// none, and the handshakes, keepalives and ACKs of an interactive one do
// not each take the 64 KiB a packet at the largest tunnel MTU needs.
const smallFrame = 2048 // a packet at MTU 1420 and its 32 bytes of WireGuard

var (
	smallFrames = sync.Pool{New: func() any { b := make([]byte, smallFrame); return &b }}
	largeFrames = sync.Pool{New: func() any { b := make([]byte, wire.MaxFrame); return &b }}
)

// getFrame returns a pooled buffer of at least n bytes; putFrame gives it
// back.
func getFrame(n int) *[]byte {
	if n <= smallFrame {
		return smallFrames.Get().(*[]byte)
	}
	return largeFrames.Get().(*[]byte)
}

func putFrame(b *[]byte) {
	if len(*b) == smallFrame {
		smallFrames.Put(b)
	} else {
		largeFrames.Put(b)
	}
}

func newAgentBind(udpPort uint16) *agentBind {
	b := &agentBind{in: make(chan inbound, 256), udpPort: udpPort}
	if udpPort != 0 {
		b.udp = udpbind.New()
	}
	return b
}

func (b *agentBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns := []conn.ReceiveFunc{b.receiveTCP}
	port := b.udpPort
	if b.udp != nil {
		ufns, p, err := b.udp.Open(b.udpPort)
		if err != nil {
			return nil, 0, err
		}
		for _, fn := range ufns {
			fns = append(fns, b.receiveUDP(fn))
		}
		port = p
	}
	b.closing = make(chan struct{})
	return fns, port, nil
}

func (b *agentBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing == nil {
		return nil
	}
	close(b.closing)
	b.closing = nil
	if b.udp != nil {
		return b.udp.Close()
	}
	return nil
}

func (b *agentBind) receiveTCP(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	b.mu.Lock()
	closing := b.closing
	b.mu.Unlock()
	if closing == nil {
		return 0, net.ErrClosed
	}
	n := 0
	for n < len(packets) {
		var m inbound
		if n == 0 {
			select {
			case m = <-b.in:
			case <-closing:
				return 0, net.ErrClosed
			}
		} else {
			select {
			case m = <-b.in:
			default:
				return n, nil
			}
		}
		sizes[n] = copy(packets[n], (*m.buf)[:m.n])
		eps[n] = m.ep
		putFrame(m.buf)
		n++
	}
	return n, nil
}

func (b *agentBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if ac, ok := ep.(*agentConn); ok {
		return ac.write(bufs)
	}
	if b.udp == nil {
		return conn.ErrWrongEndpointType
	}
	b.udpIn.sent(bufs, ep)
	return vpn.SendUDP(b.udp, bufs, ep) // batches too large for the path MTU go one by one
}

func (b *agentBind) SetMark(mark uint32) error {
	if b.udp != nil {
		return b.udp.SetMark(mark)
	}
	return nil
}

// ParseEndpoint parses UDP endpoints; TCP endpoints are only ever learned.
func (b *agentBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if b.udp == nil {
		return nil, conn.ErrWrongEndpointType
	}
	return b.udp.ParseEndpoint(s)
}

// BatchSize is how many messages WireGuard reads per receive call, from
// agent connections and UDP alike. WireGuard keeps BatchSize × 64 KiB of
// buffers per receive routine, and as many for reading the netstack: at
// the UDP bind's 128, with its IPv4 and IPv6 functions beside the agents',
// that was 32 MiB, resident once a UDP hub's download had touched it.
func (b *agentBind) BatchSize() int { return batchSize }

const batchSize = 16

// receiveUDP reads one of the UDP bind's receive functions through a
// vpn.Staging (the bind reads its own 128 messages at a time into slots
// of one message each) and applies udpIn.
func (b *agentBind) receiveUDP(fn conn.ReceiveFunc) conn.ReceiveFunc {
	st := vpn.NewStaging(fn, b.udp.BatchSize(), vpn.UDPSlot)
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			if err := st.Fill(); err != nil {
				return 0, err
			}
			n := st.Take(packets, sizes, eps)
			if n > 0 && b.udpIn != nil {
				n = b.udpIn.admit(packets, sizes, eps, n)
				b.udpIn.s.udpClock.settle() // clock_udp.go
				b.udpIn.s.wakePeers()       // peers.go
			}
			if n > 0 {
				return n, nil
			}
		}
	}
}

// udpInbound applies the per-hub window of data packets inside WireGuard
// (maxInboundPerHub, hub.inbound) to UDP hubs. Their packets share one
// socket, so a hub's packets beyond its window cannot wait there as a TCP
// hub's do: they are dropped, as a full link drops them, and the tunnel's
// TCP slows down. Unbounded, one UDP hub's download held the relay at
// 129–190 MB.
//
// Which hub a packet is for is learned as WireGuard does, by address and
// index: a handshake initiation from an address that decrypts to a hub's
// key (Server.initiations) ties the address to the hub, and the relay's answers
// to it name the session indices its data packets carry. A data packet from
// another address or with another index (roaming, until the next
// handshake, or forged) is left to WireGuard, uncounted.
type udpInbound struct {
	s *Server

	mu    sync.Mutex
	peers map[netip.AddrPort]*udpPeer
	addr  map[*hub]netip.AddrPort // each hub's one entry in peers

	unknown unknownAnswers // to transport messages for sessions not known here (unknown.go)
	pongs   []pong         // to pings, to send once the lock is released (pingLocked)
	closing bool           // the relay is shutting down: every message is dropped (goodbye)

	saveWarned atomic.Bool // saveUDPSessions has logged that it cannot write its file
	// changed has a value when a UDP hub's sessions changed since
	// keepUDPSessions last looked (unknown.go).
	changed chan struct{}
}

// udpPeer is a UDP hub's address as the relay knows it.
type udpPeer struct {
	hub *hub
	idx indices
	// stale are the sessions of a peer sweepUDPPeers removed while idle
	// (peers.go): WireGuard no longer knows them, the hub may.
	stale     indices
	fullSince time.Time // when its window was first found full, zero if not
	lastPong  time.Time // when pingLocked last answered
}

// indices are the relay's receiver indices of a UDP hub's latest sessions,
// from the handshake responses the relay sent it. Four: wireguard-go keeps
// the previous, current and next session and may have a handshake under
// way.
type indices struct {
	next int
	ids  [4]uint64 // 1<<32 | index, | sessionUsed once the hub sent on it; 0: empty
}

const sessionUsed = 1 << 33

func (x *indices) learn(i uint32) {
	x.next = (x.next + 1) % len(x.ids)
	x.ids[x.next] = 1<<32 | uint64(i)
}

func (x *indices) has(i uint32) bool {
	known, _ := x.use(i, false)
	return known
}

// use reports whether session i is known and, if mark is set, marks it
// used, reporting whether it was not before: the hub's first message on a
// session completes its handshake.
func (x *indices) use(i uint32, mark bool) (known, first bool) {
	id := 1<<32 | uint64(i)
	for k, v := range x.ids {
		if v&^sessionUsed == id {
			if mark && v&sessionUsed == 0 {
				x.ids[k] |= sessionUsed
				return true, true
			}
			return true, false
		}
	}
	return false, false
}

func newUDPInbound(s *Server) *udpInbound {
	return &udpInbound{s: s, peers: map[netip.AddrPort]*udpPeer{}, addr: map[*hub]netip.AddrPort{}, changed: make(chan struct{}, 1)}
}

// admit counts the first n packets into their hubs' windows and drops
// those of a hub whose window is full; it returns how many are left, moved
// to the front. Called by one receive goroutine per UDP socket.
func (u *udpInbound) admit(packets [][]byte, sizes []int, eps []conn.Endpoint, n int) int {
	kept := 0
	u.mu.Lock()
	defer func() {
		answers, pongs := u.takeUnknownLocked(), u.pongs
		u.pongs = nil
		u.mu.Unlock()
		if len(answers) > 0 {
			u.s.bind.sendUnknown(answers)
		}
		for i := range pongs {
			u.s.bind.udp.Send([][]byte{pongs[i].msg[:]}, pongs[i].ep)
		}
	}()
	if u.closing {
		return 0
	}
	for i := range n {
		if u.admitLocked(packets[i][:sizes[i]], eps[i]) {
			if kept != i {
				// The buffers stay where WireGuard put them (it
				// reuses each with its own array): copy.
				sizes[kept] = copy(packets[kept], packets[i][:sizes[i]])
				eps[kept] = eps[i]
			}
			kept++
		}
	}
	return kept
}

func (u *udpInbound) admitLocked(p []byte, ep conn.Endpoint) bool {
	addr, ok := udpbind.AddrPort(ep)
	if !ok {
		return true
	}
	if i, ok := wire.ParseUDPPing(p); ok { // not WireGuard's
		u.pingLocked(ep, addr, i)
		return false
	}
	switch wire.Classify(p) {
	case wire.Initiation:
		u.learnLocked(p, addr)
		return true
	case wire.Data, wire.Keepalive:
	default:
		return true
	}
	pe := u.peers[addr]
	i := wire.Index(p)
	keepalive := wire.Classify(p) == wire.Keepalive
	if pe == nil {
		u.unknownLocked(ep, addr, i, time.Now())
		return true
	}
	// What the hub's sessions say, for when it has no peer (peers.go):
	// the first message on one completes a handshake, and a keepalive
	// says the hub is there.
	if known, first := pe.idx.use(i, true); !known {
		if !pe.stale.has(i) {
			u.unknownLocked(ep, addr, i, time.Now())
			return true
		}
		// A session of the hub's idle peer, removed: WireGuard no
		// longer knows it. A keepalive goes no further; data is
		// answered, and the agent handshakes at once.
		if keepalive {
			pe.hub.udpSeen.Store(u.s.now().UnixNano())
		} else {
			u.unknownLocked(ep, addr, i, time.Now())
		}
		return false
	} else if first {
		pe.hub.udpHandshake.Store(u.s.now().UnixNano())
	}
	if keepalive {
		pe.hub.udpSeen.Store(u.s.now().UnixNano())
		return true
	}
	if pe.hub.peerOn.Load() { // data moves: the peer stays (sweepUDPPeers)
		pe.hub.markUsed()
		pe.hub.markData()
	}
	w := pe.hub.inbound
	if w.Len() < maxInboundPerUDPHub {
		pe.fullSince = time.Time{}
		w.Enter(1)
		return true
	}
	// Full. Packets WireGuard dropped (a failed decryption) are never
	// counted out: a window full for a whole StallTimeout forgets them,
	// as inflight.Window.Room does.
	u.s.metrics.udpWindowDrops.Add(1)
	now := time.Now()
	if pe.fullSince.IsZero() {
		pe.fullSince = now
	} else if now.Sub(pe.fullSince) >= inflight.StallTimeout {
		w.Leave(w.Len())
		pe.fullSince = time.Time{}
	}
	return false
}

// pingLocked counts the hub at addr as heard and answers its ping
// (wire.UDPPing), if i is one of the sessions the relay knows for it, its
// peer's or its removed peer's: an idle hub that pings keeps the session
// of its last handshake for as long as it stays idle. A ping on a session
// the relay does not know is answered as data would be, with
// SessionUnknown, and the agent handshakes. One pong a second per hub at
// most; a lost one is the agent's to miss. The pong says whether the
// relay has a next key (nextKeyTag): a hub that pings may not handshake
// or connect for weeks, and must learn it before the relay switches.
func (u *udpInbound) pingLocked(ep conn.Endpoint, addr netip.AddrPort, i uint32) {
	pe := u.peers[addr]
	now := time.Now()
	if pe == nil || !(pe.idx.has(i) || pe.stale.has(i)) {
		u.unknownLocked(ep, addr, i, now)
		return
	}
	pe.hub.udpSeen.Store(u.s.now().UnixNano())
	if now.Sub(pe.lastPong) < time.Second {
		return
	}
	pe.lastPong = now
	a := pong{ep: ep}
	wire.AppendUDPPong(a.msg[:0], i, u.s.nextKeyTag())
	u.pongs = append(u.pongs, a)
}

type pong struct {
	ep  conn.Endpoint
	msg [wire.UDPPingSize]byte
}

// learnLocked ties addr to the hub whose initiation p is, if it is one
// made for this relay by a hub it serves.
func (u *udpInbound) learnLocked(p []byte, addr netip.AddrPort) {
	s := u.s
	if !s.mac1.CheckMAC1(p) {
		return
	}
	key, newer, ok := s.udpClock.read(p, addr) // the initiator's key, within a budget; notes a clock behind (clock_udp.go)
	if !ok {
		return
	}
	h := s.hubs.key(key)
	if h == nil {
		return
	}
	if old, ok := u.addr[h]; ok && old != addr && !newer {
		// A replayed initiation (or one of a clock behind, which
		// WireGuard drops unless udpClock resets the hub: then it ties
		// the address) must not take the hub's address from the hub:
		// its packets would go uncounted, and be answered with
		// SessionUnknown (unknown.go).
		return
	}
	s.metrics.handshakesUDP.Add(1)
	u.tieLocked(h, addr)
	if newer {
		s.wantPeer(h) // peers.go; an initiation behind waits for udpClock
	}
}

// tie makes addr the UDP address of hub h, if the relay still serves h
// (udpClock.look may come to a hub after the store replaced it).
func (u *udpInbound) tie(h *hub, addr netip.AddrPort) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.s.hubs.key(h.key) == h {
		u.tieLocked(h, addr)
	}
}

// forget drops the addresses of hubs the relay no longer serves
// (syncHubs, after the registry replaced them). An address left tied to
// such a hub counts its packets into that hub's window, while WireGuard's
// writes count them out of the window of the hub the relay serves now
// (inboundTUN): once a session of the new hub was learned into the old
// entry, the old window filled within 512 packets and then dropped all
// but one burst per StallTimeout. A download across a hub's key change
// crawled at about 1 MB/s that way, twice in CI (e2e
// TestRotateKeyDuringDownloadUDP); how the entry outlived the new key's
// initiation there is not known, but an entry left on purpose gives that
// very crawl. Forgotten, the hub's packets on its old sessions are
// answered with SessionUnknown, and its next initiation ties the address
// to the hub the relay serves now.
func (u *udpInbound) forget(gone []*hub) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, h := range gone {
		addr, ok := u.addr[h]
		if !ok {
			continue
		}
		delete(u.addr, h)
		if pe := u.peers[addr]; pe != nil && pe.hub == h {
			delete(u.peers, addr)
		}
	}
}

// stale notes that hub h's peer is being removed while idle: the
// sessions learned for it are stale from now on (admitLocked).
func (u *udpInbound) stale(h *hub) {
	u.mu.Lock()
	defer u.mu.Unlock()
	addr, ok := u.addr[h]
	if !ok {
		return
	}
	pe := u.peers[addr]
	if pe == nil || pe.hub != h {
		return
	}
	for _, id := range pe.idx.ids {
		if id != 0 {
			pe.stale.learn(uint32(id))
		}
	}
	pe.idx = indices{}
}

// resume ties addr to hub h with session i, which the relay before made
// with it (resumeUDP), and counts h as heard at seen, unless it was heard
// since; false if the relay no longer serves h.
func (u *udpInbound) resume(h *hub, addr netip.AddrPort, i uint32, seen time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.s.hubs.key(h.key) != h {
		return false
	}
	u.tieLocked(h, addr)
	u.peers[addr].stale.learn(i)
	if t := seen.UnixNano(); h.udpSeen.Load() < t {
		h.udpSeen.Store(t)
	}
	return true
}

func (u *udpInbound) tieLocked(h *hub, addr netip.AddrPort) {
	if old, ok := u.addr[h]; ok && old != addr {
		delete(u.peers, old)
	}
	if pe := u.peers[addr]; pe == nil || pe.hub != h {
		if pe != nil {
			delete(u.addr, pe.hub)
		}
		u.peers[addr] = &udpPeer{hub: h}
	}
	u.addr[h] = addr
}

// sent learns the session indices of the relay's handshake messages to UDP
// hubs: its responses, and its initiations (WireGuard starts one when a
// hub has not answered for 15 s), whose index the hub's data then carries.
func (u *udpInbound) sent(bufs [][]byte, ep conn.Endpoint) {
	if u == nil {
		return
	}
	addr, ok := udpbind.AddrPort(ep)
	if !ok {
		return
	}
	for _, p := range bufs {
		if k := wire.Classify(p); k != wire.Response && k != wire.Initiation {
			continue
		}
		u.mu.Lock()
		pe := u.peers[addr]
		if pe != nil {
			pe.idx.learn(wire.Index(p))
		}
		u.mu.Unlock()
		if pe != nil {
			select {
			case u.changed <- struct{}{}:
			default:
			}
		}
	}
}
