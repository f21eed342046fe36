package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
)

// No clock needed over UDP too (clock.go tells the TCP case).
//
// Inbound flow of a UDP hub's handshake initiation:
//  1. agentBind.receiveUDP reads a batch from the socket; udpInbound.admit
//     goes through it under its lock, and for an initiation whose MAC1 is
//     this relay's, learnLocked asks udpClock.read for its initiator.
//  2. read takes a token of the relay-wide budget of initiations read
//     (udpReadsPerSecond: each costs an X25519, two for a key whose
//     static secret is not kept yet, and WireGuard's own defence against
//     floods, cookies under load, only starts after it),
//     decrypts the static key and the timestamp (package noise) and keeps
//     the hub's newest timestamp (hub.newestStamp, shared with the TCP
//     case). A timestamp not newer than it is what WireGuard is about to
//     drop as a replay: the hub is noted as a candidate, nothing more
//     (the socket's lock is held; resetting a peer waits for WireGuard's
//     senders, which take that lock).
//  3. settle, called by receiveUDP before it hands the batch to WireGuard,
//     looks at each candidate: at most one look per hub every
//     udpClockLookEvery and udpResetsPerSecond resets relay-wide. A hub
//     that is live is left alone; one that is not has its replay state
//     reset (resetReplay), and WireGuard then reads this very initiation
//     with nothing to compare it with: the hub connects at once.
//
// Live means: a verified TCP connection, or a WireGuard session that can
// still carry packets (its handshake younger than REJECT_AFTER_TIME, 180
// s) over which the hub sent something in the last udpSilentFor (its
// agent's keepalives come every 25 s). Both are authenticated: only the
// hub's key makes a handshake or a packet WireGuard counts. That is what
// stops a replay: someone who recorded one of a live hub's initiations and
// sends it again gets nothing reset (a reset drops the hub's session keys),
// and a hub whose own initiations are behind is not live, as WireGuard
// drops them. The received bytes are sampled by sweepUDPHubs every 30 s
// and at each look (hub.rxSeen, rxSince), so a hub that rebooted, which
// takes a minute, is seen silent at its first initiation; an agent that
// only restarted waits up to udpSilentFor. A recorded initiation replayed
// while the hub is offline gets WireGuard's response, as over TCP, but
// the replayer cannot finish the handshake. A hub whose peer was removed
// while idle (peers.go) is live by its last handshake and keepalive as
// udpInbound saw them (hub.udpHandshake, udpSeen). Those are not
// authenticated (WireGuard no longer has the keys), but they can only make
// a hub look live and keep it from a reset: whoever sends them with the
// hub's address and session index is on its path and could drop its
// packets as well. Nor is a hub reset whose
// stamp went forward in the last udpProgressing: its handshake with that
// newer initiation may be under way, and a reset would drop it.
//
// The peer dump WireGuard answers the look with walks every peer: it is
// taken at most once a second (udpStatsEvery) and shared by the looks of
// that second.
const (
	udpReadsPerSecond  = 2000 // initiations read relay-wide (100,000 hubs rekey ~830/s)
	udpResetsPerSecond = 20
	udpClockLookEvery  = 2 * time.Second // per hub; its agent retries every 5 s
	udpStatsEvery      = time.Second
	udpSilentFor       = 45 * time.Second
	rejectAfterTime    = 180 * time.Second // WireGuard's REJECT_AFTER_TIME
	udpProgressing     = 5 * time.Second   // WireGuard's REKEY_TIMEOUT
)

// udpClock is the relay's reader of UDP hubs' initiations and what it
// found to check (above).
type udpClock struct {
	s      *Server
	reads  *bucket // of initiations read
	resets *bucket

	// pending is set when candidates has something, for settle's quick
	// look from every batch.
	pending    atomic.Bool
	mu         sync.Mutex
	candidates []candidate
	stats      map[vpn.PublicKey]vpn.PeerStats // the latest dump, taken at statsAt
	statsAt    time.Time

	// Counted for tests: initiations read (one or two X25519 each) and left
	// unread for want of a token.
	readCount, unread atomic.Int64
}

// candidate is a hub whose initiation, stamped ts, WireGuard is about to
// drop.
type candidate struct {
	hb   *hub
	ts   noise.Timestamp
	from netip.AddrPort // where it came from
}

func newUDPClock(s *Server) *udpClock {
	return &udpClock{s: s, reads: newBucket(udpReadsPerSecond), resets: newBucket(udpResetsPerSecond)}
}

// read reads the initiator's key of a UDP initiation
// (udpInbound.learnLocked) within the budget of reads; it notes a hub
// whose timestamp is behind (step 2).
//
// newer reports whether the initiation is stamped after every one read
// before from that key: only such a one may move the hub to a new address
// (learnLocked), never a replay.
func (c *udpClock) read(p []byte, from netip.AddrPort) (key vpn.PublicKey, newer, ok bool) {
	if !c.reads.take() {
		c.unread.Add(1)
		return vpn.PublicKey{}, false, false
	}
	c.readCount.Add(1)
	in, ok := c.s.initiations.ReadInitiation(p)
	if !ok {
		return vpn.PublicKey{}, false, false
	}
	if hb := c.s.hubs.key(in.Static); hb != nil {
		hb.mu.Lock()
		// Equal is no clock behind: wireguard-go stamps to 16 ms, and
		// two initiations of one start can carry the same stamp.
		behind := hb.newestStamp.After(in.Timestamp)
		if in.Timestamp.After(hb.newestStamp) {
			hb.newestStamp, hb.newestAt = in.Timestamp, c.s.now()
			newer = true
		}
		hb.mu.Unlock()
		if behind {
			c.mu.Lock()
			if len(c.candidates) < udpResetsPerSecond {
				c.candidates = append(c.candidates, candidate{hb, in.Timestamp, from})
				c.pending.Store(true)
			}
			c.mu.Unlock()
		}
	}
	return in.Static, newer, true
}

// settle looks at the hubs read found behind and resets those that are
// not live (step 3). receiveUDP calls it for every batch, outside
// udpInbound's lock, before WireGuard sees the batch.
func (c *udpClock) settle() {
	if c == nil || !c.pending.Load() {
		return
	}
	c.mu.Lock()
	found := c.candidates
	c.candidates = nil
	c.pending.Store(false)
	c.mu.Unlock()
	for _, f := range found {
		c.look(f.hb, f.ts, f.from)
	}
}

func (c *udpClock) look(hb *hub, ts noise.Timestamp, from netip.AddrPort) {
	s := c.s
	if !hb.dueEvery(&hb.clockLooked, time.Now(), udpClockLookEvery) || hb.online.Load() > 0 {
		return
	}
	now := s.now()
	var last time.Time
	var silent time.Duration
	if ps, ok := c.peerStats(hb.key); ok {
		last, silent = ps.LastHandshake, hb.sawRx(ps.RxBytes, now)
	} else if t := hb.udpHandshake.Load(); t != 0 {
		// Its peer was removed while idle (peers.go): what
		// udpInbound saw of its sessions.
		last, silent = time.Unix(0, t), now.Sub(time.Unix(0, hb.udpSeen.Load()))
	}
	if !last.IsZero() && now.Sub(last) < rejectAfterTime && silent < udpSilentFor {
		return // live: a replay, or a clock that stepped back under a running agent
	}
	hb.mu.Lock()
	progressing := now.Sub(hb.newestAt) < udpProgressing
	hb.mu.Unlock()
	if progressing {
		return // its handshake with a newer stamp may be under way
	}
	if !c.resets.take() {
		return // the agent tries again in 5 s
	}
	hb.mu.Lock()
	earlier := hb.newestStamp
	hb.newestStamp = ts // what WireGuard will remember once reset
	hb.mu.Unlock()
	took, ok := s.resetReplay(hb)
	if ok && s.bind != nil && s.bind.udpIn != nil {
		// WireGuard takes this initiation now; its hub is at from
		// (learnLocked left a stamp behind where it was).
		s.bind.udpIn.tie(hb, from)
	}
	if ok && hb.due(&hb.clockLogged, now) {
		s.log.Info("hub's clock is behind: its WireGuard replay state reset so that it connects now", logger.Hub, hb.Name,
			"transport", "udp", "stamped", ts.Time().UTC().Format(time.RFC3339), "earlier", earlier.Time().UTC().Format(time.RFC3339), "took", took.Round(time.Microsecond).String())
	}
}

// peerStats is WireGuard's view of the peer with key k, from a dump at
// most udpStatsEvery old; ok is false if it has none.
func (c *udpClock) peerStats(k vpn.PublicKey) (ps vpn.PeerStats, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats == nil || time.Since(c.statsAt) >= udpStatsEvery {
		st, err := c.s.dev.Stats()
		if err != nil {
			return vpn.PeerStats{}, false
		}
		c.stats, c.statsAt = st, time.Now()
	}
	ps, ok = c.stats[k]
	return ps, ok
}

// sawRx notes that WireGuard has received rx bytes from the hub in all,
// seen at now, and returns for how long that count has not moved.
func (h *hub) sawRx(rx uint64, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rx != h.rxSeen || h.rxSince.IsZero() {
		h.rxSeen, h.rxSince = rx, now
	}
	return now.Sub(h.rxSince)
}

// dueEvery is due with another period than a minute.
func (h *hub) dueEvery(last *time.Time, now time.Time, every time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(*last) < every {
		return false
	}
	*last = now
	return true
}

// bucket is a token bucket of rate tokens a second, holding at most one
// second's worth.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket { return &bucket{rate: rate, tokens: rate, last: time.Now()} }

func (b *bucket) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
