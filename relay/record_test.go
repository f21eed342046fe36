package relay

import (
	"context"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// TestRelayRecordsOnlineState: the relay records in its store, for
// hubrelay hub list in another process, that a hub is online, since when
// and over which transport, clears it when the hub's connection ends, and
// clears what a crashed relay left when it starts.
func TestRelayRecordsOnlineState(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	ctx := context.Background()
	hubA := func() store.Hub {
		h, err := tr.Store().HubByName(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := tr.clock.now()
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "the store to say hub a is online over tcp", func() bool {
		h := hubA()
		return !h.OnlineSince.Before(before.Truncate(time.Millisecond)) && h.Transport == "tcp"
	})
	a.Close()
	poll.Until(t, 10*time.Second, "the store to say hub a is offline", func() bool {
		h := hubA()
		return h.OnlineSince.IsZero() && h.Transport == "" && !h.LastSeen.IsZero()
	})

	// A relay that crashed left hub a marked online; the next start
	// clears it.
	if err := tr.Store().HubOnline(ctx, "a", store.AgentInfo{}, tr.clock.now(), "tcp"); err != nil {
		t.Fatal(err)
	}
	cfg := tr.cfg
	tr.Close()
	s, err := New(cfg, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.Store().HubByName(ctx, "a")
	if err != nil || !h.OnlineSince.IsZero() || h.Transport != "" {
		t.Fatalf("hub a after a restart: %+v, %v; want it offline", h, err)
	}
}

// TestRelayRecordsUDPHubs: a hub whose agent speaks plain WireGuard over
// UDP says no Hello and has no connection to record; the relay records it
// online over udp while its handshakes are fresh, and offline after.
func TestRelayRecordsUDPHubs(t *testing.T) {
	tr := startTestRelay(t, true, "a")
	ctx := context.Background()
	a := startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2")
	poll.Until(t, 10*time.Second, "the UDP agent's handshake", a.handshaken)
	hubA := func() store.Hub {
		h, err := tr.Store().HubByName(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// The relay, as responder, counts the handshake done only when the
	// agent's first packet after it arrives, a moment after the agent
	// does: sweep until it has.
	poll.Until(t, 10*time.Second, "the store to say hub a is online over udp", func() bool {
		tr.sweepUDPHubs()
		h := hubA()
		return !h.OnlineSince.IsZero() && h.Transport == "udp"
	})
	tr.clock.advance(udpSessionFresh)
	poll.Until(t, 10*time.Second, "the store to say hub a is offline once its handshake is stale", func() bool {
		tr.sweepUDPHubs()
		h := hubA()
		return h.OnlineSince.IsZero() && h.Transport == ""
	})
}
