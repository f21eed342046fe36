package relay

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestIdleAgentConnectionHoldsNoGoroutine: a connected hub whose agent is
// quiet waits in the relay's parker, with no goroutine of its own (an idle
// hub's goroutine was ~4 KB of the relay's memory), and is served as
// before: a request for it wakes its connection's reader for the answer,
// and it parks again after. Closing the relay ends the parked connections
// (the test relay's cleanup checks that nothing is left running).
func TestIdleAgentConnectionHoldsNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parker is epoll's")
	}
	tr := startTestRelay(t, false, "a", "b")
	if tr.parker == nil {
		t.Fatal("the relay has no parker")
	}
	for _, name := range []string{"a", "b"} {
		ip := map[string]string{"a": "100.96.0.2", "b": "100.96.0.3"}[name]
		startTestAgent(t, tr, tr.keys[name], ip, vpn.PublicKey{})
		h := tr.hubs.name(name)
		poll.Until(t, 10*time.Second, "hub "+name+" online", func() bool { return tr.hubs.online(h) })
	}
	parked := func() bool { return tr.parker.Parked() == 2 && agentGoroutines() == 0 }
	poll.Until(t, 10*time.Second, "both idle agent connections parked, with no goroutine serving either", parked)
	for range 3 {
		if code, err := tr.get("a"); err != nil || code != 200 {
			t.Fatalf("GET a from a parked connection: %d %v, want 200", code, err)
		}
		poll.Until(t, 10*time.Second, "hub a's connection parked again", parked)
	}
}

// agentGoroutines counts the goroutines in serveAgent now.
func agentGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "relay.(*Server).serveAgent(")
}

// TestParkedConnectionWithoutHandshakeIsDropped: a connection that names a
// hub in its Hello and then sends nothing waits in the parker, where no
// read deadline is looked at; it is still closed once handshakeTimeout has
// passed without a handshake the relay answered. (Takes handshakeTimeout.)
func TestParkedConnectionWithoutHandshakeIsDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("waits handshakeTimeout")
	}
	tr := startTestRelay(t, false, "a")
	hello, err := wire.AppendFrame(nil, wire.Hello{Version: wire.ProtocolVersion, Key: [32]byte(tr.keys["a"].Public()), Software: "test"}.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", tr.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(handshakeTimeout + 10*time.Second))
	r := newFrames(c)
	if p, err := r.Next(); err != nil || p[0] != wire.TypeHello {
		t.Fatalf("first frame %x, %v; want the relay's Hello", p, err)
	}
	poll.Until(t, 10*time.Second, "the silent connection parked", func() bool { return tr.parker.Parked() == 1 })
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after Hello and nothing else: %v, want the relay to hang up", err)
	}
	if d := time.Since(start); d < handshakeTimeout-time.Second {
		t.Fatalf("dropped after %v, before handshakeTimeout (%v)", d, handshakeTimeout)
	}
}
