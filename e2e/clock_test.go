package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestHubWithClockBehindConnectsAtOnce plays a hub whose clock was a day
// ahead once (or, what is the same to the relay, a hub that rebooted a day
// behind the clock it last connected with): a connection with the hub's
// key sends the relay a handshake initiation stamped a day from now, which
// WireGuard accepts and remembers. Then the real agent, with the machine's
// clock, must be connected within seconds: without the relay's reset its
// handshakes would be dropped as replays for a whole day. An old
// initiation replayed on a new connection while the agent is connected is
// refused (the live agent answers the clone check's Ping) and resets
// nothing.
func TestHubWithClockBehindConnectsAtOnce(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})

	future := noise.Stamp(time.Now().Add(24 * time.Hour))
	c, first := s.claimHub(t)
	if err := c.Write([][]byte{s.initiation(t, future)}); err != nil {
		t.Fatal(err)
	}
	if f := readUntil(t, c, func(b []byte) bool { return wire.Classify(b) == wire.Response }); f == nil {
		t.Fatalf("the relay did not answer an initiation stamped a day ahead (first frame %x)", first)
	}
	c.Close()

	s.startAgent(agentOpts{})
	started := time.Now()
	st := s.waitConnected(10 * time.Second)
	t.Logf("agent connected %v after start, though the relay last accepted a handshake stamped %s",
		time.Since(started).Round(time.Millisecond), future.Time().Format(time.RFC3339))
	s.mustGetWebUI()
	if !strings.Contains(s.relay.logText(), "clock is behind") {
		t.Errorf("the relay's log does not say why it reset the hub's replay state")
	}
	if n := relayState(t, s.bed.DebugAddr).ReplayResets; n != 1 {
		t.Errorf("relay reset WireGuard's replay state %d times; want once", n)
	}

	t.Run("an old initiation replayed while the hub is connected resets nothing", func(t *testing.T) {
		c, _ := s.claimHub(t)
		defer c.Close()
		if err := c.Write([][]byte{s.initiation(t, noise.Stamp(time.Now().Add(-time.Hour)))}); err != nil {
			t.Fatal(err)
		}
		f := readUntil(t, c, frameType(wire.TypeError))
		if f == nil {
			t.Fatal("the replaying connection got no Error frame")
		}
		if e, err := wire.ParseError(f); err != nil || e.Code != wire.CodeClone {
			t.Errorf("the replaying connection was told %v (%v); want the clone refusal", e, err)
		}
		now, err := s.status()
		if err != nil || now.State != "connected" || !now.ConnectedSince.Equal(st.ConnectedSince) {
			t.Errorf("the agent's connection did not stay: state %q since %v (was since %v), err %v", now.State, now.ConnectedSince, st.ConnectedSince, err)
		}
		s.mustGetWebUI()
		if n := relayState(t, s.bed.DebugAddr).ReplayResets; n != 1 {
			t.Errorf("the replay made the relay reset the hub's replay state (%d resets in all)", n)
		}
	})
}

// TestUDPHubWithClockBehindConnectsAtOnce is the same for an agent with
// transport "udp": an initiation with the hub's key stamped a day from now
// reaches the relay's UDP port first, and WireGuard remembers it; the real
// agent, a day behind that, must be connected within seconds. An old
// initiation replayed to the UDP port while the agent is connected resets
// nothing: the agent keeps its session.
func TestUDPHubWithClockBehindConnectsAtOnce(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{udp: true})
	future := noise.Stamp(time.Now().Add(24 * time.Hour))
	if f := s.sendUDP(t, s.initiation(t, future), true); wire.Classify(f) != wire.Response {
		t.Fatalf("the relay did not answer an initiation stamped a day ahead over UDP")
	}

	s.startAgent(agentOpts{transport: "udp"})
	started := time.Now()
	st := s.waitConnected(20 * time.Second)
	t.Logf("UDP agent connected %v after start, though the relay last accepted a handshake stamped %s",
		time.Since(started).Round(time.Millisecond), future.Time().Format(time.RFC3339))
	s.mustGetWebUI()
	if !strings.Contains(s.relay.logText(), "clock is behind") {
		t.Errorf("the relay's log does not say why it reset the hub's replay state")
	}
	if n := relayState(t, s.bed.DebugAddr).ReplayResets; n != 1 {
		t.Errorf("relay reset WireGuard's replay state %d times; want once", n)
	}

	t.Run("an old initiation replayed while the hub is connected resets nothing", func(t *testing.T) {
		s.sendUDP(t, s.initiation(t, noise.Stamp(time.Now().Add(-time.Hour))), false)
		// What the replay would break shows at the next request: a reset
		// drops the hub's session, and the relay could not reach it
		// until the agent's next handshake.
		s.mustGetWebUI()
		now, err := s.status()
		if err != nil || now.State != "connected" || !now.LastHandshake.Equal(st.LastHandshake) {
			t.Errorf("the agent had to connect again: state %q, handshake %v (was %v), err %v", now.State, now.LastHandshake, st.LastHandshake, err)
		}
		if n := relayState(t, s.bed.DebugAddr).ReplayResets; n != 1 {
			t.Errorf("the replay made the relay reset the hub's replay state (%d resets in all)", n)
		}
	})
}

// sendUDP sends p to the relay's UDP agent port from a socket of its own
// and, if answer is set, returns the first datagram that comes back.
func (s *hubSetup) sendUDP(t *testing.T, p []byte, answer bool) []byte {
	t.Helper()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", s.bed.UDPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	if !answer {
		return nil
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestReplayedInitiationCannotLockTheHubOut: while the hub is offline,
// someone who recorded one of its handshake initiations replays it on a
// connection of their own. WireGuard answers it (the relay has no newer
// timestamp of the hub's, or resets it for a clock behind), so the relay
// takes that connection for the hub's — but its handshake can never
// complete. When the real agent connects, the clone check pings the
// impostor's connection, which echoes the Ping's token: it cannot MAC it
// with the hub's key, so it does not count as a live hub, and the agent is
// let in at once instead of being refused as a copy of itself.
func TestReplayedInitiationCannotLockTheHubOut(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	c, _ := s.claimHub(t)
	if err := c.Write([][]byte{s.initiation(t, noise.Stamp(time.Now().Add(-time.Hour)))}); err != nil {
		t.Fatal(err)
	}
	if f := readUntil(t, c, func(b []byte) bool { return wire.Classify(b) == wire.Response }); f == nil {
		t.Fatal("the relay did not answer the replayed initiation: the test cannot play the attack")
	}
	pinged := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, wire.MaxFrame)
		for range 1000 {
			n, err := c.ReadFrame(buf)
			if err != nil {
				return
			}
			if ping, err := wire.ParsePing(buf[:n]); err == nil {
				// The token echoed, with a MAC it can only guess.
				c.Write([][]byte{wire.Pong{Token: ping.Token}.Marshal()})
				select {
				case pinged <- struct{}{}:
				default:
				}
			}
		}
	}()

	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)
	select {
	case <-pinged:
	default:
		t.Fatal("the relay never pinged the impostor's connection: the clone check was not tried")
	}
	s.mustGetWebUI()
}

// claimHub opens a connection to the relay's agent port and says Hello
// with hub demo's key, as its agent would; it returns the connection and
// the relay's first answer.
func (s *hubSetup) claimHub(t *testing.T) (*wire.Conn, []byte) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.bed.AgentAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := wire.NewConn(nc, wire.ConnConfig{WriteTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	hello := wire.Hello{Version: wire.ProtocolVersion, Key: s.hub.Key.Public(), Software: "clock-test"}
	if err := c.Write([][]byte{hello.Marshal()}); err != nil {
		t.Fatal(err)
	}
	f := readUntil(t, c, frameType(wire.TypeHello))
	if f == nil {
		t.Fatal("the relay did not answer the Hello")
	}
	return c, f
}

// initiation is a handshake initiation from hub demo's key to the relay,
// stamped ts.
func (s *hubSetup) initiation(t *testing.T, ts noise.Timestamp) []byte {
	t.Helper()
	msg, err := noise.MakeInitiation(s.hub.Key, s.bed.Key.Public(), 0x1234, ts)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// frameType matches frames whose first byte is typ.
func frameType(typ byte) func([]byte) bool {
	return func(b []byte) bool { return len(b) > 0 && b[0] == typ }
}

// readUntil reads frames from c for up to 10 s and returns the first that
// match accepts; nil if none came before the connection ended or the time
// ran out.
func readUntil(t *testing.T, c *wire.Conn, match func([]byte) bool) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, wire.MaxFrame)
	for range 100 {
		n, err := c.ReadFrame(buf)
		if err != nil {
			return nil
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	return nil
}

// relayState is what the relay's debug listener at addr says of it now.
func relayState(t *testing.T, addr string) relay.DebugState {
	t.Helper()
	var st relay.DebugState
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/state")
	if err != nil {
		t.Fatalf("relay debug state: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("relay debug state: %v", err)
	}
	return st
}
