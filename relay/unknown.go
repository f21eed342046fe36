package relay

import (
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/wire"
)

// A UDP hub back within seconds of a relay restart.
//
// A restarted relay has no WireGuard sessions. A TCP hub notices at once
// (its connection ended) and handshakes on the new one; a UDP hub has no
// connection to lose, and while it is idle it sends only keepalives, which
// never start a handshake: it stayed unreachable until its session was
// two minutes old (REKEY_AFTER_TIME), and users saw the hub offline
// (make soak). So the relay answers a transport message for a session it
// does not know with wire.SessionUnknown, and the agent handshakes at once
// (uplink.UDPBind.SessionUnknown): an idle hub is back within its next
// keepalive (25 s), a busy one within a round trip.
//
// "Does not know" is udpInbound's view: the session indices of the
// handshakes the relay answered or started with that address. A hub that
// moved (a NAT rebinding) is also asked, and its new handshake ties its new
// address to it. Answers are rate-limited, once per unknownEvery per
// address and unknownPerSecond overall, and are 8 bytes for a message of at
// least 32: spoofed sources cannot turn the relay into an amplifier.

const (
	unknownEvery     = 5 * time.Second // per address: WireGuard's REKEY_TIMEOUT, a handshake's time
	unknownPerSecond = 200             // overall
	unknownAddrs     = 4096            // addresses remembered for unknownEvery
)

// unknownAnswers rate-limits the answers; under udpInbound.mu.
type unknownAnswers struct {
	last    map[netip.AddrPort]time.Time
	second  time.Time // the second the overall count is for
	count   int
	pending []unknownAnswer // to send once the lock is released
}

type unknownAnswer struct {
	ep  conn.Endpoint
	msg [wire.SessionUnknownSize]byte
}

// unknownLocked queues an answer to ep for receiver index i, unless one
// went there recently or too many went out this second.
func (u *udpInbound) unknownLocked(ep conn.Endpoint, addr netip.AddrPort, i uint32, now time.Time) {
	a := &u.unknown
	if t, ok := a.last[addr]; ok && now.Sub(t) < unknownEvery {
		return
	}
	if sec := now.Truncate(time.Second); !sec.Equal(a.second) {
		a.second, a.count = sec, 0
	}
	if a.count >= unknownPerSecond {
		return
	}
	if a.last == nil {
		a.last = map[netip.AddrPort]time.Time{}
	}
	if len(a.last) >= unknownAddrs {
		for k, t := range a.last {
			if now.Sub(t) >= unknownEvery {
				delete(a.last, k)
			}
		}
		if len(a.last) >= unknownAddrs {
			return
		}
	}
	a.last[addr] = now
	a.count++
	var m unknownAnswer
	m.ep = ep
	copy(m.msg[:], wire.AppendSessionUnknown(nil, i))
	a.pending = append(a.pending, m)
}

// takeUnknownLocked returns the queued answers and empties the queue.
func (u *udpInbound) takeUnknownLocked() []unknownAnswer {
	p := u.unknown.pending
	u.unknown.pending = nil
	return p
}

// sendUnknown sends the answers; a lost one is asked again by the hub's
// next message.
func (b *agentBind) sendUnknown(answers []unknownAnswer) {
	for i := range answers {
		b.udp.Send([][]byte{answers[i].msg[:]}, answers[i].ep)
	}
}

// goodbye is for a relay shutting down: it drops every UDP message from
// now on (no handshake is answered by a relay about to lose it) and
// returns an answer for each session of each UDP hub, so that the hubs
// start a handshake at once, which WireGuard repeats every 5 s
// (REKEY_TIMEOUT) until the relay that follows answers. A restart by a
// service manager thus costs a UDP hub about 5 s, not its next keepalive.
func (u *udpInbound) goodbye() []unknownAnswer {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closing = true
	var answers []unknownAnswer
	for addr, pe := range u.peers {
		for _, id := range pe.idx.ids {
			if id == 0 {
				continue
			}
			a := unknownAnswer{ep: &conn.StdNetEndpoint{AddrPort: addr}}
			copy(a.msg[:], wire.AppendSessionUnknown(nil, uint32(id)))
			answers = append(answers, a)
		}
	}
	return answers
}
