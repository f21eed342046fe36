package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
	"github.com/hubtunnel/hubtunnel/wire"
)

// LightFleet is many UDP hubs in one process, as light as a hub can be
// and still be what the relay sees of an idle UDP agent: its own key, UDP
// socket and address, the WireGuard handshake (vpn/noise plays the initiator), a
// keepalive right after each handshake and every 25 s after the last
// packet (the agent's persistent_keepalive), a new handshake when a
// keepalive goes out on a session older than 2 minutes (REKEY_AFTER_TIME),
// again after 5 s without an answer (REKEY_TIMEOUT, with wireguard-go's
// jitter), at once on the relay's wire.SessionUnknown, and MAC2 once the
// relay under load sent a cookie. That is what wireguard-go does for a peer
// with a persistent keepalive and nothing to send. And as the agent does
// (agent's udpTransport): a ping (wire.UDPPing) every 25 s, and once the
// relay answered one, no keepalives and so no rekeys; after three pings in
// a row without a pong, keepalives and a handshake again. No data flows, so the
// hub has no netstack and no wireguard-go device: ~160 KB each in Fleet,
// which 100,000 hubs on one relay would not fit beside it.
type LightFleet struct {
	cfg  LightFleetConfig
	hubs []*lightHub
	stop chan struct{}
	wg   sync.WaitGroup

	handshakes, keepalives, retries, cookies, unknowns, fromRelay, pings, pongs atomic.Int64
	mark                                                                        atomic.Int64 // Mark's time, unix ns
}

// LightFleetConfig describes a LightFleet.
type LightFleetConfig struct {
	Relay    netip.AddrPort // the relay's UDP address
	RelayKey vpn.PublicKey
	// First is the address the first hub's socket binds to, the next
	// hub's the address after it, and so on (in 127/8 all are loopback):
	// as real hubs, each has an address of its own. WireGuard under load
	// lets each source address 20 handshakes a second, and with one
	// address for all, a fleet's start left the relay under load and
	// thousands of hubs retrying.
	First netip.Addr
	Keys  []vpn.PrivateKey
	// Rate is how many hubs start a second, default 500: the relay reads
	// each initiation (two X25519) and WireGuard answers it (three more),
	// and WireGuard asks for cookies once 512 wait.
	Rate int
	// Keepalive is the persistent keepalive, default 25 s.
	Keepalive time.Duration
	Logf      logger.Logf
}

// The initiator's timings of wireguard-go (device/constants.go).
const (
	rekeyAfterTime  = 120 * time.Second
	rejectAfterTime = 180 * time.Second
	rekeyTimeout    = 5 * time.Second
)

type lightHub struct {
	f    *LightFleet
	key  vpn.PrivateKey
	conn *net.UDPConn

	mu       sync.Mutex
	in       *noise.Initiator // made at the first handshake
	macs     device.CookieGenerator
	hs       *noise.Handshake // the handshake waiting for an answer
	hsSender uint32
	hsSent   time.Time
	retryIn  time.Duration // after hsSent, REKEY_TIMEOUT plus jitter
	keys     noise.Keys    // the session, once one completed
	since    time.Time     // when it completed; zero before
	counter  uint64        // the session's next nonce
	// lastSent is when the last keepalive went: WireGuard's persistent
	// keepalive waits for 25 s without an authenticated packet either
	// way, and the relay sends an idle hub none.
	lastSent time.Time
	buf      [256]byte   // the reader's
	out      []byte      // a keepalive in the making
	first    atomic.Bool // a session completed once
	// The agent's pings: the last one's and the last pong's time, whether
	// the relay answers (the keepalive is off), and the pings sent on
	// this session without (udpProbes in the agent).
	lastPing, lastPong time.Time
	pinging            bool
	probes             int
}

// As the agent's (udpPongsLost, udpProbes).
const (
	pongsLost = 3
	probes    = 3
)

// StartLightFleet opens every hub's socket and starts them at cfg.Rate a
// second; it returns once all are started. Ready tells when each has
// completed its first handshake.
func StartLightFleet(cfg LightFleetConfig) (*LightFleet, error) {
	if cfg.Rate <= 0 {
		cfg.Rate = 500
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = 25 * time.Second
	}
	cfg.Logf = logger.OrDiscard(cfg.Logf)
	f := &LightFleet{cfg: cfg, stop: make(chan struct{})}
	local := cfg.First
	for _, k := range cfg.Keys {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), net.UDPAddrFromAddrPort(cfg.Relay))
		local = local.Next()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("light fleet: hub %d's socket: %w", len(f.hubs)+1, err)
		}
		h := &lightHub{f: f, key: k, conn: c}
		h.macs.Init(device.NoisePublicKey(cfg.RelayKey))
		f.hubs = append(f.hubs, h)
	}
	f.wg.Add(1)
	go f.tick()
	every := time.Second / time.Duration(cfg.Rate)
	next := time.Now()
	for _, h := range f.hubs {
		f.wg.Add(1)
		go h.read()
		h.mu.Lock()
		h.initiate(time.Now())
		h.mu.Unlock()
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
	return f, nil
}

// Ready counts the hubs that have completed a handshake at least once.
func (f *LightFleet) Ready() int {
	n := 0
	for _, h := range f.hubs {
		if h.first.Load() {
			n++
		}
	}
	return n
}

// Mark notes now: SinceMark counts the hubs that completed a handshake
// after it (the bench marks the fleet while the relay is down for a
// restart).
func (f *LightFleet) Mark() { f.mark.Store(time.Now().UnixNano()) }

// SinceMark counts the hubs whose session completed after the last Mark;
// all of them before any Mark.
func (f *LightFleet) SinceMark() int {
	mark := time.Unix(0, f.mark.Load())
	n := 0
	for _, h := range f.hubs {
		h.mu.Lock()
		if h.since.After(mark) {
			n++
		}
		h.mu.Unlock()
	}
	return n
}

// LightCounts are what a LightFleet's hubs did since it started.
type LightCounts struct {
	Handshakes int64 // completed
	Keepalives int64 // sent
	Retries    int64 // initiations sent again after 5 s without an answer
	Cookies    int64 // cookie replies taken
	Unknowns   int64 // wire.SessionUnknown messages taken
	FromRelay  int64 // transport messages from the relay
	Pings      int64 // sent
	Pongs      int64 // taken
}

// Counts returns the fleet's counts now.
func (f *LightFleet) Counts() LightCounts {
	return LightCounts{f.handshakes.Load(), f.keepalives.Load(), f.retries.Load(), f.cookies.Load(), f.unknowns.Load(), f.fromRelay.Load(),
		f.pings.Load(), f.pongs.Load()}
}

// Len is the number of hubs.
func (f *LightFleet) Len() int { return len(f.hubs) }

// Close stops every hub.
func (f *LightFleet) Close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	for _, h := range f.hubs {
		h.conn.Close()
	}
	f.wg.Wait()
}

// tick is every hub's timers: one goroutine walks them all 4 times a
// second (wireguard-go keeps five timers per peer).
func (f *LightFleet) tick() {
	defer f.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			for _, h := range f.hubs {
				h.mu.Lock()
				h.timers(now)
				h.mu.Unlock()
			}
		}
	}
}

// timers does what is due for h at now. h.mu is held.
func (h *lightHub) timers(now time.Time) {
	if h.hs != nil && now.Sub(h.hsSent) >= h.retryIn {
		h.f.retries.Add(1)
		h.initiate(now)
	}
	if h.since.IsZero() {
		return
	}
	if now.Sub(h.lastPing) >= h.f.cfg.Keepalive {
		h.ping(now)
	}
	if h.pinging {
		if now.Sub(h.lastPong) <= pongsLost*h.f.cfg.Keepalive {
			return // WireGuard's keepalive is off
		}
		h.pinging = false
		if h.hs == nil {
			h.initiate(now)
		}
	}
	if now.Sub(h.lastSent) < h.f.cfg.Keepalive {
		return
	}
	if now.Sub(h.since) < rejectAfterTime {
		h.keepalive(now)
	}
	if h.hs == nil && now.Sub(h.since) >= rekeyAfterTime {
		h.initiate(now)
	}
}

// initiate sends a new handshake initiation. h.mu is held.
func (h *lightHub) initiate(now time.Time) {
	var idx [4]byte
	rand.Read(idx[:])
	sender := binary.LittleEndian.Uint32(idx[:])
	if h.in == nil {
		in, err := noise.NewInitiator(h.key, h.f.cfg.RelayKey)
		if err != nil {
			return
		}
		h.in = in
	}
	hs, msg, err := h.in.Initiate(sender, noise.Stamp(now), &h.macs)
	if err != nil {
		return
	}
	h.hs, h.hsSender, h.hsSent = hs, sender, now
	var j [2]byte
	rand.Read(j[:])
	h.retryIn = rekeyTimeout + time.Duration(binary.LittleEndian.Uint16(j[:])%334)*time.Millisecond
	h.conn.Write(msg)
}

// keepalive sends an empty transport message on the session. h.mu is held.
func (h *lightHub) keepalive(now time.Time) {
	h.out = h.keys.AppendTransport(h.out[:0], h.counter, nil)
	h.counter++
	h.lastSent = now
	h.f.keepalives.Add(1)
	h.conn.Write(h.out)
}

// ping sends a ping for the session, while the relay answers them or
// for the first few on a session. h.mu is held.
func (h *lightHub) ping(now time.Time) {
	h.lastPing = now
	if !h.pinging && h.probes >= probes {
		return
	}
	h.probes++
	h.out = wire.AppendUDPPing(h.out[:0], h.keys.Receiver)
	h.f.pings.Add(1)
	h.conn.Write(h.out)
}

// read takes what the relay sends h until its socket closes.
func (h *lightHub) read() {
	defer h.f.wg.Done()
	for {
		n, err := h.conn.Read(h.buf[:])
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The relay is down (a restart): WireGuard reads on,
			// and so does a light hub.
			continue
		}
		if err != nil {
			return
		}
		h.take(h.buf[:n], time.Now())
	}
}

func (h *lightHub) take(p []byte, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if idx, ok := wire.ParseSessionUnknown(p); ok {
		if !h.since.IsZero() && idx == h.keys.Receiver && h.hs == nil {
			h.f.unknowns.Add(1)
			h.initiate(now)
		}
		return
	}
	if idx, _, ok := wire.ParseUDPPong(p); ok {
		if !h.since.IsZero() && idx == h.keys.Receiver {
			h.f.pongs.Add(1)
			h.lastPong, h.pinging = now, true
		}
		return
	}
	if len(p) < 4 {
		return
	}
	switch binary.LittleEndian.Uint32(p) {
	case device.MessageResponseType:
		if h.hs == nil {
			return
		}
		k, ok := h.hs.ReadResponse(p)
		if !ok {
			return
		}
		h.hs, h.keys, h.since, h.counter, h.probes = nil, k, now, 0, 0
		h.f.handshakes.Add(1)
		h.first.Store(true)
		// The initiator confirms the session with its first transport
		// message; until then the responder may not send on it.
		h.keepalive(now)
	case device.MessageCookieReplyType:
		var m device.MessageCookieReply
		if binary.Read(bytes.NewReader(p), binary.LittleEndian, &m) != nil || m.Receiver != h.hsSender {
			return
		}
		if h.macs.ConsumeReply(&m) {
			h.f.cookies.Add(1) // used by the next initiation, after REKEY_TIMEOUT
		}
	case device.MessageTransportType:
		// Counted, not opened: the relay has nothing to send an idle hub,
		// and an unauthenticated packet would not move WireGuard's timers.
		h.f.fromRelay.Add(1)
	}
}
