package relay

import (
	"context"
	"fmt"
	"sync"
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

// TestManyHubsOnlineAtOnceAllRecorded: 2,000 hubs that come online at the
// same moment (a relay's restart; a look at WireGuard's peers finding that
// many UDP hubs) all reach the store, for hubrelay hub list, and of a hub
// that went offline right after, the store says offline. With a commit
// per hub from a goroutine each, SQLite's writers ran past the busy
// timeout and 265 of 2,000 UDP hubs in the bench stayed offline.
func TestManyHubsOnlineAtOnceAllRecorded(t *testing.T) {
	const n = 2000
	tr := startTestRelayWith(t, false, func(c *Config) {
		for i := range n {
			k, err := vpn.GeneratePrivateKey()
			if err != nil {
				t.Fatal(err)
			}
			c.Hubs = append(c.Hubs, HubConfig{Name: fmt.Sprintf("m%04d", i), PublicKey: k.Public().String(), TunnelIP: fmt.Sprintf("100.97.%d.%d", i/250, i%250+1)})
		}
	})
	ctx := context.Background()
	since := tr.clock.now()
	var wg sync.WaitGroup
	for _, h := range tr.hubs.all() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.mu.Lock()
			h.record.since, h.record.transport = since, "udp"
			h.mu.Unlock()
			tr.recordHub(h)
			if h.Name == "m0000" {
				h.mu.Lock()
				h.record.since, h.record.transport = time.Time{}, ""
				h.mu.Unlock()
				tr.recordHub(h)
			}
		}()
	}
	wg.Wait()
	var online int
	var first store.Hub
	poll.Until(t, 60*time.Second, fmt.Sprintf("the store to say %d hubs online over udp", n-1), func() bool {
		hubs, err := tr.Store().Hubs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		online = 0
		for _, h := range hubs {
			if h.Transport == "udp" && h.OnlineSince.Equal(since.Truncate(time.Millisecond)) {
				online++
			}
			if h.Name == "m0000" {
				first = h
			}
		}
		return online == n-1 && first.OnlineSince.IsZero() && !first.LastSeen.IsZero()
	})
}
