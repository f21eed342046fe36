package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// udpHandshakeFresh is how long a UDP tunnel counts as connected after its
// last handshake, while the agent keeps WireGuard's keepalives: WireGuard
// rekeys a session the agent started after 2 minutes while keepalives
// flow, and one the relay started (it does for a request once the hub's
// peer went idle there) at the first keepalive after it expired (180 s),
// within 25 s. Beyond it, the relay's name is resolved again.
const udpHandshakeFresh = 210 * time.Second

// udpReresolveEvery is how often the relay's name is resolved again while
// the tunnel is not connected.
const udpReresolveEvery = time.Minute

// udpPongsLost is how many pings in a row may go unanswered before the
// agent takes the relay for gone (see pinger).
const udpPongsLost = 3

// udpFirstPing is how soon after its start the agent pings the relay
// first (see pinger).
const udpFirstPing = time.Second

// udpProbes is how many pings the agent sends on a session to learn
// whether its relay answers them (a plain WireGuard server does not).
const udpProbes = 3

// udpTransport is transport "udp": plain WireGuard (uplink.UDPBind), so that
// any WireGuard server can be the other end. WireGuard's endpoint is one
// address of the relay's; while the tunnel is not connected, the name is
// resolved again every minute, for a relay whose address changed. The bind
// reads only the relay's address family, and at most maxInFlightUDP received
// data packets wait inside WireGuard (uplink.InboundTUN counts them out).
//
// Idle, the agent pings (wire.UDPPing) instead of sending WireGuard's
// keepalives, once the relay has answered a ping: a keepalive on a session
// older than two minutes starts a handshake, 30 an hour for an idle hub,
// while a ping keeps the NAT mapping open with a 12-byte datagram and its
// pong says the relay is there (and whether it has a next key to learn,
// keysLoop). Without keepalives the session ages
// unused; the relay handshakes for a request (it knows the hub's address
// and session from its pings), the agent for its own data, as WireGuard
// does. When udpPongsLost pings in a row go unanswered (the relay went, or
// is one that never answers), the agent turns the keepalive on again and
// handshakes.
type udpTransport struct {
	cfg   *Config          // relayHost, relayPort, relayIP, relayKey, MTU
	dns   *dnsfix.Resolver // non-nil when the relay is a name
	logf  logger.Logf
	now   func() time.Time
	every time.Duration // how often reresolve looks: udpReresolveEvery

	b    *uplink.UDPBind
	cb   *countingBind // b, counted for the traffic record; WireGuard's bind
	ep   string        // the relay's ip:port when the transport was made; "" if unresolved
	ipv6 atomic.Bool   // the relay's address is IPv6

	stop context.CancelFunc // set by start
	done chan struct{}      // closed when start's loop has ended

	switchDelay time.Duration // useKey's wait for the relay: udpKeySwitchDelay

	mu         sync.Mutex
	dev        *vpn.Device     // set by start
	relayKey   vpn.PublicKey   // the relay's, as pinned now
	handshakes uint64          // handshakes started by useRelayKey, useKey and sessionUnknown
	pendingKey *vpn.PrivateKey // useKey's key, until WireGuard has it
	unknownAt  time.Time       // sessionUnknown's last handshake
	unknownFor uint32          // and the session it replaced
	unknownLog time.Time       // and its last log line

	pingEvery time.Duration // the config's persistent_keepalive
	kaMu      sync.Mutex    // orders applyKeepalive's changes
	lastPong  atomic.Int64  // unix nanoseconds of the last pong; 0: none
	nextTag   atomic.Uint32 // the last pong's next key tag (nextKeyTag)
	// pinging: the relay answers pings, so WireGuard's keepalive and the
	// agent's TCP checksums are off. Changed under mu; read without it
	// too (needsChecksum, for every packet the netstack sends).
	pinging atomic.Bool
	// Under mu:
	probeFor uint32 // the session of the pings sent while not pinging,
	probes   int    // and how many
}

var _ transport = (*udpTransport)(nil)

func newUDPTransport(cfg *Config, env transportEnv) *udpTransport {
	t := &udpTransport{cfg: cfg, dns: env.dns, logf: logger.OrDiscard(env.logf), now: time.Now, every: udpReresolveEvery, relayKey: cfg.relayKey, switchDelay: udpKeySwitchDelay,
		pingEvery: time.Duration(cfg.PersistentKeepalive) * time.Second}
	ep, err := t.resolve(context.Background())
	if err != nil {
		// Not fatal: the hub may boot before its network. start retries.
		t.logf("agent: %v; will retry", err)
		ep = ""
	}
	t.ep = ep
	t.ipv6.Store(isIPv6Endpoint(ep))
	t.b = uplink.NewUDPBind(cfg.MTU, t.ipv6.Load, env.sent, maxInFlightUDP)
	t.b.SessionUnknown = t.sessionUnknown
	t.b.Pong = t.pong
	t.cb = &countingBind{Bind: t.b}
	return t
}

func (t *udpTransport) bind() conn.Bind { return t.cb }

// needsChecksum: not while the relay answers pings. Over UDP there is no
// Features frame, but a relay that answers pings is from 12-04 or later,
// and relays verify no checksums inside the tunnel since 12-02 (their
// netstack's RX offload: WireGuard has authenticated every packet). A
// plain WireGuard server, whose kernel does verify them, never answers
// one. A relay replaced at the same address by one from before 12-02
// would drop the packets without them until three pings went unanswered
// (TCP sends those again, with checksums).
func (t *udpTransport) needsChecksum(netip.Addr) bool { return !t.pinging.Load() }

func (t *udpTransport) netBytes() (rx, tx uint64) { return t.cb.netBytes(t.ipv6.Load()) }

func (t *udpTransport) dropReason() string { return "" }

// wrapTUN counts the packets WireGuard writes out of the bind's inbound
// window.
func (t *udpTransport) wrapTUN(dev tun.Device) tun.Device { return uplink.InboundTUN(dev, t.b.Inbound) }

func (t *udpTransport) endpoint() string { return t.ep }

// start follows the relay's address (see reresolve) and pings it (see
// pinger). It does not handshake: adding the peer with a persistent
// keepalive has started one already, and a second initiation in the same
// instant would be dropped as a replay.
func (t *udpTransport) start(dev *vpn.Device) {
	ctx, cancel := context.WithCancel(context.Background())
	t.stop, t.done = cancel, make(chan struct{})
	t.mu.Lock()
	t.dev = dev
	t.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); t.reresolve(ctx, dev) }()
	go func() { defer wg.Done(); t.pinger(ctx, dev) }()
	go func() { wg.Wait(); close(t.done) }()
}

// reresolve resolves the relay's name at once and then every minute, while
// the tunnel is not connected, and points the peer at a changed address.
func (t *udpTransport) reresolve(ctx context.Context, dev *vpn.Device) {
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	last := ""
	for {
		st, _ := dev.Stats()
		relayKey := t.relay()
		if !t.connected(st[relayKey]) {
			if ep, err := t.resolve(ctx); err == nil && ep != last {
				if err := dev.SetEndpoint(relayKey, ep); err == nil {
					last = ep
				}
				// The bind reads only the relay's address family.
				if is6 := isIPv6Endpoint(ep); is6 != t.ipv6.Load() {
					t.ipv6.Store(is6)
					if err := dev.Rebind(); err != nil {
						t.logf("agent: %v", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pinger pings the relay every pingEvery (wire.UDPPing), the first time
// after udpFirstPing: while it answers, WireGuard's keepalive is off and
// the agent's TCP checksums too (pong); before, a few times on each new
// session, to learn whether it answers; once udpPongsLost pings in a row
// went unanswered, the keepalive is on again, and the agent handshakes.
func (t *udpTransport) pinger(ctx context.Context, dev *vpn.Device) {
	if t.pingEvery <= 0 {
		return
	}
	// The first one soon after the start, when the tunnel is usually up:
	// a relay that answers it saves the agent its TCP checksums from then
	// on (needsChecksum), not only after persistent_keepalive.
	next := time.NewTimer(min(udpFirstPing, t.pingEvery))
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		t.ping(dev)
		next.Reset(t.pingEvery)
	}
}

// ping is one round of pinger.
func (t *udpTransport) ping(dev *vpn.Device) {
	now := t.now()
	t.mu.Lock()
	key := t.relayKey
	if t.pinging.Load() && now.Sub(time.Unix(0, t.lastPong.Load())) > udpPongsLost*t.pingEvery {
		t.pinging.Store(false)
		t.handshakes++
		t.mu.Unlock()
		t.logf("agent: the relay answered none of the last %d pings: WireGuard keepalives again, and a handshake", udpPongsLost)
		t.applyKeepalive()
		dev.Handshake(key)
		return
	}
	m := t.b.Ping()
	if m == nil {
		t.mu.Unlock()
		return
	}
	if !t.pinging.Load() {
		if i := binary.LittleEndian.Uint32(m[4:]); i != t.probeFor {
			t.probeFor, t.probes = i, 0
		}
		if t.probes >= udpProbes {
			t.mu.Unlock()
			return
		}
		t.probes++
	}
	t.mu.Unlock()
	st, _ := dev.Stats()
	ep, err := t.b.ParseEndpoint(st[key].Endpoint)
	if err != nil {
		return // no endpoint yet
	}
	t.cb.Send([][]byte{m}, ep) // a lost one is the next's to make up for
}

// pong is the bind's Pong: the relay answered a ping. The first turns
// WireGuard's keepalive and the agent's TCP checksums off. On the bind's
// receive goroutine: it must not block.
func (t *udpTransport) pong(_, next uint32) {
	t.cb.rxPackets.Add(1) // taken by the bind: count it here
	t.cb.rxBytes.Add(wire.UDPPingSize)
	t.lastPong.Store(t.now().UnixNano())
	t.nextTag.Store(next)
	t.mu.Lock()
	first := !t.pinging.Load() && t.dev != nil
	if first {
		t.pinging.Store(true)
	}
	t.mu.Unlock()
	if first {
		t.logf("agent: the relay answers pings: pinging it when idle, instead of WireGuard keepalives and a handshake every 2 minutes")
		go t.applyKeepalive()
	}
}

// applyKeepalive gives WireGuard the persistent keepalive that fits now:
// off while pinging, the config's otherwise.
func (t *udpTransport) applyKeepalive() {
	t.kaMu.Lock()
	defer t.kaMu.Unlock()
	t.mu.Lock()
	dev, key, ka := t.dev, t.relayKey, t.cfg.PersistentKeepalive
	if t.pinging.Load() {
		ka = 0
	}
	t.mu.Unlock()
	if err := dev.SetPersistentKeepalive(key, ka); err != nil {
		t.logf("agent: %v", err)
	}
}

// connected reports whether the tunnel to the relay is up: a handshake
// is fresh, or, while pinging, a pong.
func (t *udpTransport) connected(relay vpn.PeerStats) bool {
	now := t.now()
	if !relay.LastHandshake.IsZero() && now.Sub(relay.LastHandshake) < udpHandshakeFresh {
		return true
	}
	return t.pinging.Load() && now.Sub(time.Unix(0, t.lastPong.Load())) <= udpPongsLost*t.pingEvery
}

// resolve turns the relay's host:port into ip:port for WireGuard.
func (t *udpTransport) resolve(ctx context.Context) (string, error) {
	c := t.cfg
	if !c.relayIsName() {
		return netip.AddrPortFrom(c.relayIP, c.relayPort).String(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addrs, err := t.dns.LookupHost(ctx, c.relayHost)
	if err != nil {
		return "", fmt.Errorf("resolve relay %s: %w", c.Relay, err)
	}
	return netip.AddrPortFrom(addrs[0], c.relayPort).String(), nil
}

// isIPv6Endpoint reports whether ip:port (resolve's) is an IPv6 address.
func isIPv6Endpoint(ep string) bool {
	ap, err := netip.ParseAddrPort(ep)
	return err == nil && ap.Addr().Unmap().Is6()
}

// status gives WireGuard's own byte counts, headers included. The tunnel
// is connected while a handshake or a pong is fresh; since when, UDP
// cannot tell.
func (t *udpTransport) status(relay vpn.PeerStats) linkStatus {
	ls := linkStatus{rx: relay.RxBytes, tx: relay.TxBytes, connected: t.connected(relay)}
	if !relay.LastHandshake.IsZero() && t.now().Sub(relay.LastHandshake) < udpHandshakeFresh {
		// WireGuard's endpoint is where the last authenticated packet
		// came from: the relay, proven by its key (dnsfix's cache).
		if ap, err := netip.ParseAddrPort(relay.Endpoint); err == nil && t.dns != nil {
			t.dns.Confirm(t.cfg.relayHost, ap.Addr())
		}
	}
	return ls
}

// close stops start's loop, a resolution under way included, and waits.
func (t *udpTransport) close() {
	if t.stop != nil {
		t.stop()
		<-t.done
	}
}

func (t *udpTransport) relay() vpn.PublicKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.relayKey
}

func (t *udpTransport) useRelayKey(k vpn.PublicKey) {
	t.mu.Lock()
	t.relayKey, t.handshakes = k, t.handshakes+1
	dev := t.dev
	t.mu.Unlock()
	if dev != nil {
		dev.Handshake(k)
	}
}

// useKey switches to k once the relay has it. Plain WireGuard has no
// connection whose end would say so, but the relay, once it has taken the
// key (at its next look at its store, within 250 ms of the commit), no
// longer knows the old key's sessions and answers a message on them with
// SessionUnknown: that answer switches at once (sessionUnknown), and
// switchDelay after the commit, if no answer came (an idle hub sends only
// a keepalive every 25 s).
func (t *udpTransport) useKey(k vpn.PrivateKey) {
	key := &k
	t.mu.Lock()
	t.pendingKey = key
	t.mu.Unlock()
	time.AfterFunc(t.switchDelay, func() { t.switchKey(key) })
}

// switchKey gives WireGuard key, if it is still the one useKey waits to
// switch to, and handshakes with it.
func (t *udpTransport) switchKey(key *vpn.PrivateKey) {
	t.mu.Lock()
	if t.pendingKey != key {
		t.mu.Unlock()
		return // switched already, or a later useKey replaced it
	}
	t.pendingKey = nil
	dev, relayKey := t.dev, t.relayKey
	t.handshakes++
	t.mu.Unlock()
	if dev == nil {
		return
	}
	if err := dev.SetPrivateKey(*key); err != nil {
		t.logf("agent: switching to the new key: %v", err)
	}
	dev.Handshake(relayKey)
}

// udpKeySwitchDelay is how long useKey waits for the relay to take the
// hub's new key when nothing the relay says tells it sooner.
const udpKeySwitchDelay = time.Second

// sessionUnknown starts a new handshake: the relay said it has no session
// for the one the agent sends on (it restarted; relay/unknown.go). For one
// session at most once per udpUnknownEvery, so that answers to the other
// messages sent on it in the same round trip do not start another; a new
// session lost too (the relay restarted again) at once. On a goroutine of
// its own, as the bind's receive routine calls it.
func (t *udpTransport) sessionUnknown(session uint32) {
	now := t.now()
	t.mu.Lock()
	if key := t.pendingKey; key != nil {
		// The relay has taken the new key: it no longer knows the
		// old one's session (useKey).
		t.mu.Unlock()
		go t.switchKey(key)
		return
	}
	dev, key := t.dev, t.relayKey
	if dev == nil || (session == t.unknownFor && now.Sub(t.unknownAt) < udpUnknownEvery) {
		t.mu.Unlock()
		return
	}
	t.unknownAt, t.unknownFor = now, session
	t.handshakes++
	logIt := now.Sub(t.unknownLog) >= time.Minute
	if logIt {
		t.unknownLog = now
	}
	t.mu.Unlock()
	if logIt {
		t.logf("agent: the relay has no session for this hub (it restarted, or no longer serves this key): handshaking again")
	}
	go dev.Handshake(key)
}

// udpUnknownEvery is how often sessionUnknown may start a handshake for
// the same session: more than a round trip.
const udpUnknownEvery = time.Second

func (t *udpTransport) nextKeyTag() uint32 { return t.nextTag.Load() }

func (t *udpTransport) connects() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handshakes
}
