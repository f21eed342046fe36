package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/wire"
)

// A second connection with a hub's key, while the hub has one open, is
// one of two things: a copy of the hub (a backup restored on a second
// device, a cloned SD card) — both agents would take the hub's traffic
// from each other at every handshake — or the hub itself, back after its
// old connection died without a FIN (a router restart), which the relay
// has not noticed yet. The relay tells them apart by asking the old
// connection: a Ping, which any agent answers at once with a Pong. An
// answer means two live agents with one key, and the newcomer is refused
// (wire.CodeClone); silence means the old connection is dead, and it is
// closed so the hub can connect at once.
//
// The check holds the newcomer's first handshake initiation, after the
// MAC1 and initiator-key checks (a connection that cannot make the hub's
// handshake never causes a Ping). UDP agents are not checked: a UDP
// endpoint is not a connection that could answer.
const (
	// pingTimeout is how long the open connection has to answer. An
	// agent answers from its receive loop, so a live one answers within a
	// round trip; the hub reconnecting waits this long at most.
	pingTimeout = 2 * time.Second
	// proofFresh is how long a Pong proves its connection alive: clones
	// arriving within it are refused without another Ping, so a burst of
	// them costs the hub one Ping, not one each.
	proofFresh = 10 * time.Second
	// goneWait bounds the wait for a silent connection's reader to finish
	// after it is closed (see runProbe).
	goneWait = time.Second
	// cloneMessage is what the refused agent's owner reads.
	cloneMessage = "another connection with this hub's key is already live: if this hub was copied (a restored backup on a second device), give each its own key"
)

// probe is one Ping to a hub's open connection and what came of it. One
// probe per hub at a time (hub.probing): newcomers arriving while it is
// in flight wait for its result instead of pinging again.
type probe struct {
	token      [8]byte
	mac        [16]byte      // the Pong's MAC only the hub's key can make (wire.PongMAC)
	answered   chan struct{} // closed by the pinged connection's reader on the Pong
	answerOnce sync.Once

	done  chan struct{} // closed when decided; then:
	alive bool          // whether the connection answered
	conn  *agentConn    // the connection pinged
}

// admitSecond decides whether ac, whose first handshake initiation with
// hub hb's key is in hand, may go on to WireGuard: yes when hb has no
// other live verified connection, or when the one it has does not answer a
// Ping (it is closed, and gone before the initiation goes on); no — after
// telling the agent why — when it answers.
func (s *Server) admitSecond(ac *agentConn, hb *hub) bool {
	// Each round settles one open connection; a hub has one, or a few
	// for a moment (a reconnect racing the old connection's end).
	for range 4 {
		hb.mu.Lock()
		old := hb.liveConnLocked(ac)
		if old == nil {
			hb.mu.Unlock()
			return true
		}
		if hb.proven == old && s.now().Sub(hb.provenAt) < proofFresh {
			hb.mu.Unlock()
			s.refuseClone(ac, hb, old)
			return false
		}
		p := hb.probing
		if p == nil {
			p = &probe{answered: make(chan struct{}), done: make(chan struct{}), conn: old}
			hb.probing = p
			hb.probes++
			hb.mu.Unlock()
			s.runProbe(hb, p)
		} else {
			hb.mu.Unlock()
		}
		select {
		case <-p.done:
		case <-s.closing:
			return false
		}
		if p.alive {
			s.refuseClone(ac, hb, p.conn)
			return false
		}
	}
	return true
}

// liveConnLocked is a verified, open connection of h other than except,
// or nil.
func (h *hub) liveConnLocked(except *agentConn) *agentConn {
	for _, c := range h.conns {
		if c == except || c.state.Load() != connVerified {
			continue
		}
		select {
		case <-c.conn.Done():
		default:
			return c
		}
	}
	return nil
}

// runProbe pings p.conn and waits up to pingTimeout for its Pong. A
// connection that does not answer is closed, and runProbe waits (up to
// goneWait) for its reader to clean up: the hub's last connection ending
// expires its WireGuard sessions, which must happen before the newcomer's
// handshake makes new ones, not after.
func (s *Server) runProbe(hb *hub, p *probe) {
	old := p.conn
	rand.Read(p.token[:])
	// The answer must prove the hub's key, not only echo the token: a
	// connection held open with a replayed initiation (its handshake never
	// completes) must not pass for the hub's live one and lock the hub
	// out as a "clone". Without a secret (a low-order key) nothing can
	// answer, and the old connection counts as dead.
	if shared, ok := s.key.SharedSecret(hb.key); ok {
		p.mac = wire.PongMAC(shared, p.token)
	} else {
		rand.Read(p.mac[:])
	}
	old.probe.Store(p)
	alive := false
	if err := old.writeControl(wire.Ping{Token: p.token}.Marshal()); err == nil {
		t := time.NewTimer(pingTimeout)
		select {
		case <-p.answered:
			alive = true
		case <-t.C:
		case <-old.conn.Done():
		case <-s.closing:
		}
		t.Stop()
	}
	old.probe.CompareAndSwap(p, nil)
	if !alive {
		select {
		case <-old.conn.Done():
		default:
			s.log.Warn("hub connection did not answer a ping: closed, as another connection with its key came", logger.Hub, hb.Name, logger.Remote, old.remote, "ping_timeout", pingTimeout.String())
			old.conn.CloseWithError(errors.New("no answer to a ping"))
		}
		t := time.NewTimer(goneWait)
		select {
		case <-old.gone:
		case <-t.C:
		}
		t.Stop()
	}
	hb.mu.Lock()
	hb.probing = nil
	if alive {
		hb.proven, hb.provenAt = old, s.now()
	}
	p.alive = alive
	hb.mu.Unlock()
	close(p.done)
}

// pong handles a Pong read on ac: the answer to its probe, if the token
// is the probe's; anything else is ignored.
func (ac *agentConn) pong(b []byte) {
	pg, err := wire.ParsePong(b)
	p := ac.probe.Load()
	if err != nil || p == nil || pg.Token != p.token || !hmac.Equal(pg.MAC[:], p.mac[:]) {
		return
	}
	p.answerOnce.Do(func() { close(p.answered) })
}

// refuseClone tells ac's agent that hub hb is connected already over old,
// which answered a Ping, and logs and audits it at most once a minute per
// hub (a copy retrying must not fill the log or the owner's audit list).
func (s *Server) refuseClone(ac *agentConn, hb *hub, old *agentConn) {
	if hb.due(&hb.cloneLogged, s.now()) {
		s.log.Warn("refused a connection with the key of a connected hub whose agent answers: a copy of the hub (a restored backup on a second device)? Each needs its own key", logger.Hub, hb.Name, logger.Remote, ac.remote, "connected_from", old.remote)
		s.audit.add(store.Event{Kind: store.KindClone, Hub: hb.Name, Source: ac.remote.String(), Outcome: "refused",
			Detail: fmt.Sprintf("a second connection with this hub's key while its agent is connected from %s: a copy of the hub? Each hub needs its own key", old.remote)})
	}
	ac.writeControl(wire.Error{Code: wire.CodeClone, Message: cloneMessage}.Marshal())
}
