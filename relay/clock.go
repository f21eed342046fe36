package relay

import (
	"net/netip"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
)

// No clock needed: a hub whose clock is behind connects at once.
//
// WireGuard's responder accepts a handshake initiation only when its TAI64N
// timestamp is newer than the newest it accepted from that key (replay
// protection, per peer, for as long as the relay's device lives). A hub
// without a real-time clock (a Raspberry Pi) can boot a day behind; the
// relay, still running, would then drop every initiation of that hub until
// the hub's clock passed the old value, which NTP may never fix (no
// internet but through the tunnel) or only after hours.
//
// The relay reads every initiation an agent connection hands WireGuard
// (package noise: the static key and the timestamp, both authenticated by
// the hub's key) and keeps the newest per hub (hub.newestStamp): as
// WireGuard only sees initiations through these connections and the UDP
// socket, whose initiations clock_udp.go reads, that is never older than
// what WireGuard remembers (but for UDP initiations left unread beyond
// that reader's budget). When a
// connection's first initiation is behind it and that connection won
// (admitSecond: the hub has no other connection, or the one it had did not
// answer a Ping and is closed), the relay forgets WireGuard's replay state
// for the hub before it hands the initiation on: it removes the hub's peer
// and adds it again with the same allowed IP (resetReplay), as `wg set
// peer … remove` and `wg set peer …` would. WireGuard keeps no other
// per-peer state the relay needs: the peer's sessions are gone anyway (the
// hub's last connection ended, agentGone expired them), its endpoint is
// learned from the initiation that follows, and a TCP hub has no keepalive
// or roaming state worth keeping. It costs one X25519 (the static-static
// key WireGuard precomputes) and stopping and starting the peer's three
// goroutines; packets the relay had staged for the hub are dropped, which
// is why it happens only when the timestamp is behind, not on every
// connection.
//
// Why only a winning connection: replay protection exists so that someone
// who recorded an old initiation cannot replay it to the relay. An
// initiation replayed while the hub is connected meets the clone check
// (clone.go): the live connection answers the Ping, the replaying
// connection is refused and nothing is reset. While the hub is offline a
// replayed initiation can get WireGuard's response, but the replayer has
// not the initiation's ephemeral key, so it cannot finish the handshake or
// send anything through the tunnel; the same is true after any relay
// restart, when WireGuard's replay state is empty anyway. Initiations on a
// connection that is already verified (WireGuard's rekeys every two
// minutes) are only noted, never a reason to reset: on a proven connection
// a timestamp going back is the hub's clock stepping back while connected,
// and WireGuard's own timers bring the session back once it connects anew.
//
// UDP hubs (clock_udp.go) have no connection to win and no Ping to ask:
// the relay reads their initiations on the socket's receive path (it
// does already, to tie an address to a hub), keeps hub.newestStamp from
// them too, and resets a hub whose initiation is behind only when the
// hub is not live, which is what a replay cannot fake.

// The relay's own restart depends on no clock: its new WireGuard device
// has no replay state, so every hub's next initiation is accepted, and
// every agent starts a handshake of its own on each new relay connection
// (agent transport_tcp.go), so the agent's replay state for the relay —
// which would refuse a relay whose clock went back — is never in the way:
// the relay only answers.

// noteInitiation is called by serveAgent for every initiation of hub hb's
// key, read with the relay's key (in), just before it goes to WireGuard.
// first is set for a connection's first initiation, once that connection
// has won (admitSecond). It keeps the newest timestamp and, for a first
// initiation behind it, resets WireGuard's replay state for the hub.
func (s *Server) noteInitiation(hb *hub, in noise.Initiation, first bool) {
	hb.mu.Lock()
	newest := hb.newestStamp
	if in.Timestamp.After(newest) {
		hb.newestStamp = in.Timestamp
		hb.mu.Unlock()
		return
	}
	if !first {
		hb.mu.Unlock()
		return // WireGuard drops it: a replay, or a clock stepping back on a live connection
	}
	hb.newestStamp = in.Timestamp // what WireGuard will remember once reset
	hb.mu.Unlock()
	took, ok := s.resetReplay(hb)
	if ok && hb.due(&hb.clockLogged, s.now()) {
		s.log.Info("hub's clock is behind: its WireGuard replay state reset so that it connects now", logger.Hub, hb.Name,
			"stamped", in.Timestamp.Time().UTC().Format(time.RFC3339), "earlier", newest.Time().UTC().Format(time.RFC3339), "took", took.Round(time.Microsecond).String())
	}
}

// resetReplay removes hub hb's WireGuard peer and adds it again with the
// same config, so that WireGuard forgets the newest timestamp it accepted
// from the hub. Under peersMu, as syncHubs adds and removes peers: a hub
// no longer served (or served anew, with another tunnel address) is left
// as syncHubs made it.
func (s *Server) resetReplay(hb *hub) (time.Duration, bool) {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	if s.hubs.key(hb.key) != hb {
		return 0, false
	}
	start := time.Now()
	s.dev.RemovePeer(hb.key)
	if err := s.dev.AddPeer(vpn.Peer{PublicKey: hb.key, AllowedIPs: []netip.Prefix{netip.PrefixFrom(hb.ip, hb.ip.BitLen())}}); err != nil {
		s.log.Warn("adding the hub's WireGuard peer again", logger.Hub, hb.Name, logger.Err, err)
		s.peerOffLocked(hb)
		return 0, false
	}
	s.peerOnLocked(hb)
	s.debug.replayResets.Add(1)
	return time.Since(start), true
}
