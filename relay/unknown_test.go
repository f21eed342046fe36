package relay

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestUnknownSessionAnswers: a transport message for a session the relay
// does not know is answered with wire.SessionUnknown naming its index; one
// per address per unknownEvery, at most unknownPerSecond overall.
func TestUnknownSessionAnswers(t *testing.T) {
	u := newUDPInbound(nil)
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	keepalive := make([]byte, 32)
	keepalive[0] = 4
	keepalive[4] = 9
	ep := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("192.0.2.7:51820")}

	u.unknownLocked(ep, ep.AddrPort, wire.Index(keepalive), now)
	got := u.takeUnknownLocked()
	if len(got) != 1 {
		t.Fatalf("%d answers, want 1", len(got))
	}
	if i, ok := wire.ParseSessionUnknown(got[0].msg[:]); !ok || i != 9 || got[0].ep != ep {
		t.Errorf("answer %x to %v: index %d, %v; want index 9 to the sender", got[0].msg, got[0].ep, i, ok)
	}
	u.unknownLocked(ep, ep.AddrPort, 9, now.Add(unknownEvery-time.Millisecond))
	if n := len(u.takeUnknownLocked()); n != 0 {
		t.Errorf("%d answers to the same address within %v; want none", n, unknownEvery)
	}
	u.unknownLocked(ep, ep.AddrPort, 9, now.Add(unknownEvery))
	if n := len(u.takeUnknownLocked()); n != 1 {
		t.Errorf("%d answers after %v; want 1", n, unknownEvery)
	}

	// A flood from many (spoofed) addresses in one second.
	later := now.Add(time.Hour)
	for i := range 3 * unknownPerSecond {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 1000)
		u.unknownLocked(&conn.StdNetEndpoint{AddrPort: a}, a, uint32(i), later)
	}
	if n := len(u.takeUnknownLocked()); n != unknownPerSecond {
		t.Errorf("%d answers in one second; want the bound, %d", n, unknownPerSecond)
	}
	if n := len(u.unknown.last); n > unknownAddrs {
		t.Errorf("%d addresses remembered; want at most %d", n, unknownAddrs)
	}
}

// TestGoodbye: a relay shutting down answers every session of every UDP
// hub it knows, and drops what arrives from then on.
func TestGoodbye(t *testing.T) {
	u := newUDPInbound(nil)
	a := netip.MustParseAddrPort("192.0.2.7:51820")
	pe := &udpPeer{}
	pe.idx.learn(11)
	pe.idx.learn(12)
	u.peers[a] = pe
	answers := u.goodbye()
	var got []uint32
	for _, an := range answers {
		i, ok := wire.ParseSessionUnknown(an.msg[:])
		if !ok || an.ep.(*conn.StdNetEndpoint).AddrPort != a {
			t.Fatalf("answer %x to %v", an.msg, an.ep)
		}
		got = append(got, i)
	}
	if len(got) != 2 || got[0]+got[1] != 23 {
		t.Errorf("answers for sessions %v; want 11 and 12", got)
	}
	keepalive := make([]byte, 32)
	keepalive[0] = 4
	if n := u.admit([][]byte{keepalive}, []int{32}, []conn.Endpoint{&conn.StdNetEndpoint{AddrPort: a}}, 1); n != 0 {
		t.Errorf("admit kept %d messages after goodbye; want none", n)
	}
}

// TestSavedSessions: what a relay shutting down leaves is sent by the next
// one if fresh, never if stale, and a damaged file is an error, not a
// crash; the file is gone after it was read.
func TestSavedSessions(t *testing.T) {
	dir := t.TempDir()
	s := &Server{cfg: Config{Store: filepath.Join(dir, "relay.db")}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var answers []unknownAnswer
	for i, a := range []string{"192.0.2.7:51820", "[2001:db8::1]:4000"} {
		an := unknownAnswer{ep: &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort(a)}}
		copy(an.msg[:], wire.AppendSessionUnknown(nil, uint32(100+i)))
		answers = append(answers, an)
	}
	if _, err := s.saveUnknown(answers); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "udp-sessions.json")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v, %v; want mode 0600", fi, err)
	}
	got, _ := s.loadUnknown(time.Now())
	if len(got) != 2 || got[0].msg != answers[0].msg || got[1].ep.DstToString() != "[2001:db8::1]:4000" {
		t.Errorf("read back %d answers: %+v", len(got), got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file is still there after it was read: %v", err)
	}
	if _, err := s.saveUnknown(answers); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.loadUnknown(time.Now().Add(savedSessionsFresh + time.Second)); len(got) != 0 {
		t.Errorf("%d answers from a stale file; want none", len(got))
	}
	for _, bad := range []string{"{", `{"written":"` + time.Now().UTC().Format(time.RFC3339) + `","sessions":[{"addr":"nonsense","index":1}]}`} {
		if _, _, err := parseSavedSessions([]byte(bad), time.Now(), ""); err == nil {
			t.Errorf("parseSavedSessions(%q) took it", bad)
		}
	}
	// Sessions made with another relay key are no hub's to take up: after
	// a relay key change the hubs must handshake with the new one.
	file := []byte(`{"written":"` + time.Now().UTC().Format(time.RFC3339) + `","key":"K1","sessions":[{"addr":"192.0.2.7:51820","index":1,"hub":"a"}]}`)
	for key, want := range map[string]string{"K1": "a", "K2": ""} {
		if got, _, err := parseSavedSessions(file, time.Now(), key); err != nil || len(got) != 1 || got[0].hub != want {
			t.Errorf("a file of relay key K1 read by relay key %s: %+v, %v; want hub %q", key, got, err, want)
		}
	}
	if got, _, _ := parseSavedSessions(file, time.Now().Add(3*time.Hour), "K1"); len(got) != 1 {
		t.Errorf("a file 3 hours old: %d sessions; want 1 (hubs that ping keep theirs)", len(got))
	}
}

// TestSessionsKeptSoonAfterStart: a relay keeps its UDP hubs' sessions for
// its successor within a second of their handshake, not only after
// udpRecordEvery (or udpFirstRecord): the file the relay before left is
// gone once read, so a relay that crashed soon after its start left its
// idle hubs to their next keepalive, up to 25 s. The file names the
// session the relay's handshake answer made.
func TestSessionsKeptSoonAfterStart(t *testing.T) {
	t.Parallel()
	tr := startTestRelay(t, true, "a")
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	a.waitOnline(t, tr, "a")
	path := tr.cfg.udpSessionsFile()
	var kept []unknownAnswer
	poll.Until(t, time.Second, "the relay to keep its UDP sessions", func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		kept, _, err = parseSavedSessions(data, time.Now(), tr.pub.String())
		if err != nil {
			t.Fatal(err)
		}
		return len(kept) > 0
	})
	now := tr.bind.udpIn.snapshot()
	if len(now) == 0 || len(kept) != len(now) || kept[0].msg != now[0].msg || kept[0].ep.DstToString() != now[0].ep.DstToString() || kept[0].hub != "a" {
		t.Fatalf("kept %v, want the relay's sessions %v, of hub a", kept, now)
	}
}

// TestUDPHubsOfTheRelayBeforeTakenUp: a relay that starts from the file
// of UDP sessions its predecessor left takes up the hubs it names without
// a handshake (resumeUDP). Hub a (its "agent" a plain UDP socket here) is
// online from the start; a keepalive on its saved session goes no further
// and is not answered; a ping on it is answered with a pong, once a second,
// and a ping from another address with SessionUnknown; data on it is
// answered with SessionUnknown; and a
// request for it sends WireGuard's initiation to its address. A file
// without hub names (an older relay's) is still asked at once, and
// takes up no hub.
func TestUDPHubsOfTheRelayBeforeTakenUp(t *testing.T) {
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	ep := &conn.StdNetEndpoint{AddrPort: sock.LocalAddr().(*net.UDPAddr).AddrPort()}
	// left leaves the file as the relay before, with the same key file,
	// would (Start loads the key).
	left := func(hub string) func(*Server) {
		return func(s *Server) {
			k, _, err := vpn.LoadOrCreatePrivateKey(s.cfg.PrivateKeyFile)
			if err != nil {
				t.Fatal(err)
			}
			s.pub = k.Public()
			a := unknownAnswer{ep: ep, hub: hub}
			copy(a.msg[:], wire.AppendSessionUnknown(nil, 7))
			if _, err := s.saveUnknown([]unknownAnswer{a}); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := func(c *Config) { c.Store = filepath.Join(t.TempDir(), "relay.db") }
	// next reads what the relay sent sock within d: nil if nothing.
	next := func(d time.Duration) []byte {
		buf := make([]byte, 2048)
		sock.SetReadDeadline(time.Now().Add(d))
		n, err := sock.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}

	old := startTestRelayHook(t, true, dir, left(""), "a")
	if m := next(5 * time.Second); m == nil {
		t.Errorf("a file without hub names: no answer came")
	} else if i, ok := wire.ParseSessionUnknown(m); !ok || i != 7 {
		t.Errorf("a file without hub names: %x came, want SessionUnknown for session 7", m)
	}
	if old.hubs.online(old.hubs.name("a")) {
		t.Errorf("a file without hub names: hub a online")
	}

	tr := startTestRelayHook(t, true, dir, left("a"), "a", "b")
	a, b := tr.hubs.name("a"), tr.hubs.name("b")
	if !tr.hubs.online(a) || tr.hubs.online(b) {
		t.Fatalf("online: hub a %v, hub b %v; want a only", tr.hubs.online(a), tr.hubs.online(b))
	}
	relay, err := net.ResolveUDPAddr("udp", tr.cfg.AgentListenUDP)
	if err != nil {
		t.Fatal(err)
	}
	send := func(size int) {
		m := make([]byte, size)
		m[0] = 4 // a transport message
		m[4] = 7 // on session 7
		if _, err := sock.WriteToUDP(m, relay); err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.udpHubsHeard(); n != 0 {
		t.Errorf("hubs heard from before any came: %d", n)
	}
	heard := a.udpSeen.Load()
	tr.clock.advance(time.Second)
	send(32) // a keepalive
	poll.Until(t, 5*time.Second, "the relay to hear hub a's keepalive", func() bool { return a.udpSeen.Load() > heard })
	if n := tr.udpHubsHeard(); n != 1 {
		t.Errorf("hubs heard from after hub a's keepalive: %d, want 1", n)
	}
	if m := next(200 * time.Millisecond); m != nil {
		t.Errorf("the relay answered a keepalive on a session it took up: %x", m)
	}
	// A hub that pings (wire.UDPPing) instead is answered, once a second,
	// and told that the relay has a next key (hubrelay key rotate).
	nextKey, _, err := vpn.LoadOrCreatePrivateKey(NextKeyFile(tr.cfg.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	heard = a.udpSeen.Load()
	tr.clock.advance(time.Second)
	if _, err := sock.WriteToUDP(wire.AppendUDPPing(nil, 7), relay); err != nil {
		t.Fatal(err)
	}
	if m := next(5 * time.Second); m == nil {
		t.Errorf("a ping on a session taken up: no answer")
	} else if i, tag, ok := wire.ParseUDPPong(m); !ok || i != 7 || tag != wire.NextKeyTag(nextKey.Public()) {
		t.Errorf("a ping on a session taken up: %x came, want a pong for session 7 with the next key's tag %#x", m, wire.NextKeyTag(nextKey.Public()))
	}
	if a.udpSeen.Load() <= heard {
		t.Errorf("a ping did not count hub a as heard")
	}
	if _, err := sock.WriteToUDP(wire.AppendUDPPing(nil, 7), relay); err != nil {
		t.Fatal(err)
	}
	if m := next(200 * time.Millisecond); m != nil {
		t.Errorf("a second ping within a second answered: %x", m)
	}
	// The same ping from another address is a stranger's: no pong, and
	// not heard; SessionUnknown, as for a hub that moved.
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	heard = a.udpSeen.Load()
	tr.clock.advance(time.Second)
	if _, err := stranger.WriteToUDP(wire.AppendUDPPing(nil, 7), relay); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	stranger.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stranger.Read(buf); err != nil {
		t.Errorf("a ping from another address: %v", err)
	} else if i, ok := wire.ParseSessionUnknown(buf[:n]); !ok || i != 7 {
		t.Errorf("a ping from another address: %x came, want SessionUnknown for session 7", buf[:n])
	}
	if a.udpSeen.Load() != heard {
		t.Errorf("a ping from another address counted hub a as heard")
	}

	send(64) // data
	if m := next(5 * time.Second); m == nil {
		t.Errorf("data on a session taken up: no answer")
	} else if i, ok := wire.ParseSessionUnknown(m); !ok || i != 7 {
		t.Errorf("data on a session taken up: %x came, want SessionUnknown for session 7", m)
	}

	go tr.get("a") // no agent answers: it fails in the end
	m := next(10 * time.Second)
	if m == nil || wire.Classify(m) != wire.Initiation {
		t.Fatalf("a request for hub a sent %x to its address, want a handshake initiation", m)
	}
	if code, err := tr.get("b"); err != nil || code != 404 {
		t.Errorf("GET for hub b, never online: %d %v, want 404", code, err)
	}
}
