package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/udpbind"
	"github.com/hubtunnel/hubtunnel/store"
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
// (uplink.UDPBind.SessionUnknown): a hub the relay knows nothing of is
// back within its next keepalive (25 s), a busy one within a round trip.
// The hubs of the relay before it need not even that: it left their
// sessions in a file, and the new relay takes them up (resumeUDP).
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
	hub string // the hub's name, in the relay's own sessions (snapshot); "" in answers to strangers
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
// returns an answer for each session of each UDP hub. The relay leaves
// them in a file for the relay that follows (as it does after each
// handshake, for a relay that follows a crash: keepUDPSessions), which
// takes the hubs up from it as it starts (resumeUDP): a restart by a
// service manager costs a UDP hub well under a second. Where the file
// cannot be written, the answers go out at once: the hubs' handshakes
// then meet the closing relay and WireGuard repeats them every 5 s
// (REKEY_TIMEOUT) until the next relay answers.
func (u *udpInbound) goodbye() []unknownAnswer {
	u.mu.Lock()
	u.closing = true
	u.mu.Unlock()
	return u.snapshot()
}

// snapshot returns an answer for each session of each UDP hub, those of
// peers removed while idle (udpPeer.stale) included.
func (u *udpInbound) snapshot() []unknownAnswer {
	u.mu.Lock()
	defer u.mu.Unlock()
	var answers []unknownAnswer
	for addr, pe := range u.peers {
		name := ""
		if pe.hub != nil {
			name = pe.hub.Name
		}
		// The removed peer's sessions first: they are older, and the
		// relay that follows keeps the last four it reads (resumeUDP).
		var ids [2 * len(pe.idx.ids)]uint64
		copy(ids[copy(ids[:], pe.stale.ids[:]):], pe.idx.ids[:])
		for _, id := range ids {
			if id == 0 {
				continue
			}
			a := unknownAnswer{ep: &conn.StdNetEndpoint{AddrPort: addr}, hub: name}
			copy(a.msg[:], wire.AppendSessionUnknown(nil, uint32(id)))
			answers = append(answers, a)
		}
	}
	return answers
}

// udpSessionsFile is where goodbye's answers wait for the relay that
// follows: beside the SQLite store, or the config file for a postgres://
// store (each relay its own). "" when there is neither (a config made in
// code without a store path): the answers go out at once.
func (c *Config) udpSessionsFile() string {
	switch {
	case !store.IsPostgres(c.Store) && c.Store != "":
		return filepath.Join(filepath.Dir(c.Store), "udp-sessions.json")
	case c.dir != "":
		return filepath.Join(c.dir, "udp-sessions.json")
	}
	return ""
}

// savedSessions is the file: when it was written and each answer's
// address, index and hub (a name: the relay that follows counts the hub
// as on its way back, resumeUDP; files before it have none).
type savedSessions struct {
	Written time.Time `json:"written"`
	// Key is the relay's public key: sessions made with another are no
	// hub's to take up (a relay key change, with a restart). The agents
	// handshake, and one that pings would otherwise be answered on a
	// session made with a key the relay no longer has, and could not be
	// reached. Files before it have none.
	Key      string         `json:"key,omitempty"`
	Sessions []savedSession `json:"sessions"`
}

type savedSession struct {
	Addr  string `json:"addr"`
	Index uint32 `json:"index"`
	Hub   string `json:"hub,omitempty"`
}

const (
	// udpSaveSettle is how long after a handshake keepUDPSessions writes
	// the sessions, and udpSaveRate how many bytes a second it writes
	// at most, on average.
	udpSaveSettle = 100 * time.Millisecond
	udpSaveRate   = 64 << 10
	// savedSessionsFresh is how old the file may be. A hub that pings
	// (wire.UDPPing) keeps its session while it is idle, for hours; the
	// relay writes the file only when sessions change, so a crash may
	// leave one that old. Hubs that moved on since are asked at their
	// next ping, as without the file.
	savedSessionsFresh = 24 * time.Hour
	// askedSessionsFresh is how old the file may be for the sessions of
	// no hub the relay serves now to be asked (resumeUDP): beyond it those
	// hubs, if any, have handshaken by themselves (REKEY_AFTER_TIME), and
	// an answer would go to an address that may be someone else's now.
	askedSessionsFresh = 2 * time.Minute
	// savedSessionsMax bounds what is read: 4 sessions of 250,000 hubs.
	savedSessionsMax = 1_000_000
)

// saveUnknown writes answers to the file for the relay that follows, and
// says how many bytes it wrote.
func (s *Server) saveUnknown(answers []unknownAnswer) (int, error) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	return s.saveUnknownLocked(answers)
}

func (s *Server) saveUnknownLocked(answers []unknownAnswer) (int, error) {
	path := s.cfg.udpSessionsFile()
	if path == "" {
		return 0, errors.New("no folder for it")
	}
	f := savedSessions{Written: time.Now().UTC(), Key: s.pub.String()}
	for _, a := range answers {
		i, _ := wire.ParseSessionUnknown(a.msg[:])
		f.Sessions = append(f.Sessions, savedSession{Addr: a.ep.DstToString(), Index: i, Hub: a.hub})
	}
	data, err := json.Marshal(f)
	if err != nil {
		return 0, err
	}
	return len(data), atomicfile.WriteFile(path, data, 0o600)
}

// loadUnknown reads and removes the file a relay before left, and returns
// its answers, if it is fresh, and when it was written. A missing file is
// no answers; a damaged one is logged and removed.
func (s *Server) loadUnknown(now time.Time) ([]unknownAnswer, time.Time) {
	path := s.cfg.udpSessionsFile()
	if path == "" {
		return nil, time.Time{}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}
	}
	os.Remove(path)
	answers, written, err := parseSavedSessions(data, now, s.pub.String())
	if err != nil {
		s.log.Warn("ignoring the UDP sessions the relay before left", "file", path, "err", err.Error())
	}
	return answers, written
}

// parseSavedSessions reads the file a relay before left; key is this
// relay's public key.
func parseSavedSessions(data []byte, now time.Time, key string) ([]unknownAnswer, time.Time, error) {
	var f savedSessions
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, time.Time{}, fmt.Errorf("damaged: %w", err)
	}
	if age := now.Sub(f.Written); age > savedSessionsFresh || age < -time.Minute {
		return nil, time.Time{}, nil // stale: the hubs found the relay by themselves
	}
	if len(f.Sessions) > savedSessionsMax {
		return nil, time.Time{}, fmt.Errorf("%d sessions, more than %d", len(f.Sessions), savedSessionsMax)
	}
	answers := make([]unknownAnswer, 0, len(f.Sessions))
	for _, ss := range f.Sessions {
		addr, err := netip.ParseAddrPort(ss.Addr)
		if err != nil || !addr.IsValid() || addr.Port() == 0 {
			return nil, time.Time{}, fmt.Errorf("damaged: address %q", ss.Addr)
		}
		a := unknownAnswer{ep: &conn.StdNetEndpoint{AddrPort: addr}, hub: ss.Hub}
		if f.Key != "" && f.Key != key {
			a.hub = "" // asked, not taken up (savedSessions.Key)
		}
		copy(a.msg[:], wire.AppendSessionUnknown(nil, ss.Index))
		answers = append(answers, a)
	}
	return answers, f.Written, nil
}

// keepUDPSessions writes the UDP hubs' sessions to the file for the relay
// after a SIGKILL or a crash, udpSaveSettle after a handshake gave one of
// them a new session, and after resumeUDP took them up, so that the next
// relay takes them up too: a keepalive counts only on a session the
// relay knows. Writes are at least udpSaveSettle apart, and further for a
// big file (udpSaveRate): a relay with 10,000 UDP hubs, which rekey every
// 2 minutes, writes its 2 MB every half minute. So a relay that crashes a
// second after its start (it removed the file its predecessor left as it
// read it) still leaves the sessions its hubs are on, and they are not
// left to their next keepalive, up to 25 s away.
func (s *Server) keepUDPSessions() {
	defer s.wg.Done()
	if s.bind == nil || s.bind.udpIn == nil {
		return
	}
	u := s.bind.udpIn
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-s.closing:
			return false
		case <-t.C:
			return true
		}
	}
	for {
		select {
		case <-s.closing:
			return
		case <-u.changed:
		}
		if !wait(udpSaveSettle) {
			return
		}
		n := s.saveUDPSessions()
		if !wait(time.Duration(n) * time.Second / udpSaveRate) {
			return
		}
	}
}

// saveUDPSessions writes the UDP hubs' sessions, unless the relay is
// shutting down (goodbye's are written then, and are the last word), and
// says how many bytes.
func (s *Server) saveUDPSessions() int {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	u := s.bind.udpIn
	u.mu.Lock()
	closing := u.closing
	u.mu.Unlock()
	if closing {
		return 0
	}
	answers := u.snapshot()
	if len(answers) == 0 {
		return 0
	}
	n, err := s.saveUnknownLocked(answers)
	if err != nil && !u.saveWarned.Swap(true) {
		s.log.Warn("could not keep the UDP hubs' sessions for a restart", "err", err.Error())
	}
	return n
}

// resumeUDP takes up the UDP hubs the relay before left, once this
// relay's UDP socket is open and its hubs are WireGuard peers. Each hub
// the file names is tied to its address with its sessions, as a hub
// whose peer was removed while idle is (udpInbound.resume): WireGuard
// here knows none of them, the hub may still send on one. So nothing of
// the hub's has to happen at once, and nothing does:
//   - its keepalives and pings are taken as before (udpPeer.stale) and
//     say it is there; it counts as heard when the file was written
//     (online);
//   - a request for it adds its peer, and WireGuard handshakes from the
//     relay's side, to the address its keepalives hold open;
//   - its data (it was busy) is answered with SessionUnknown, and it
//     handshakes at once; its own rekey comes within two minutes.
//
// Asking every hub to handshake at once, as the relay did before, took a
// relay with 100,000 UDP hubs 141–167 s of all its CPU, 140,000–220,000
// retries and 30,000–57,000 cookies before the last was back: ~100 times
// the handshakes it answers a second. Sessions the file names no served
// hub for (a file of a relay before names, a hub removed since) are still
// asked, a batch at a time so that the socket's buffer is not overrun,
// if the file is at most askedSessionsFresh old.
func (s *Server) resumeUDP() {
	if s.bind == nil || s.bind.udp == nil {
		return
	}
	answers, written := s.loadUnknown(time.Now())
	if len(answers) == 0 {
		return
	}
	askOld := time.Since(written) > askedSessionsFresh
	written = written.Add(time.Until(s.now())) // on the relay's clock (Config.Now)
	var ask []unknownAnswer
	resumed := map[*hub]bool{}
	for _, a := range answers {
		h := s.hubs.name(a.hub)
		if a.hub == "" || h == nil {
			if !askOld {
				ask = append(ask, a)
			}
			continue
		}
		i, _ := wire.ParseSessionUnknown(a.msg[:])
		addr, _ := udpbind.AddrPort(a.ep)
		if s.bind.udpIn.resume(h, addr, i, written) {
			resumed[h] = true
		}
	}
	s.log.Info("took up the UDP hubs of the relay before", "sessions", len(answers), "hubs", len(resumed), "asked_to_handshake", len(ask))
	if len(resumed) > 0 {
		select { // keep them for a relay that follows soon (keepUDPSessions)
		case s.bind.udpIn.changed <- struct{}{}:
		default:
		}
	}
	if len(ask) == 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		const batch = 256
		for i := 0; i < len(ask); i += batch {
			s.bind.sendUnknown(ask[i:min(i+batch, len(ask))])
			select {
			case <-s.closing:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
}
