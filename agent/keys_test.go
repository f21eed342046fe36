package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// TestRotateKeyThroughTheTunnel: RotateKey replaces the hub's key at the
// relay and on disk, and the hub is connected with the new one when it
// returns; the old key is kept beside it.
func TestRotateKeyThroughTheTunnel(t *testing.T) {
	tb := newTestbed(t, "alpha")
	a := tb.agents["alpha"]
	old, err := vpn.LoadPrivateKey(a.cfg.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := a.RotateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	if st.State != localapi.StateConnected || st.PublicKey != ans.PublicKey || ans.PublicKey == old.Public().String() {
		t.Fatalf("after RotateKey: %s with key %s; answer %s", st.State, st.PublicKey, ans.PublicKey)
	}
	if k, _ := vpn.LoadPrivateKey(a.cfg.PrivateKeyFile); k.Public().String() != ans.PublicKey {
		t.Error("the key file does not hold the new key")
	}
	if k, _ := vpn.LoadPrivateKey(a.cfg.PrivateKeyFile + ".old"); k != old {
		t.Error("the old key was not kept")
	}
	if h, err := tb.relay.Store().HubByName(context.Background(), "alpha"); err != nil || h.PublicKey != ans.PublicKey {
		t.Errorf("the relay's store: %+v %v", h, err)
	}
	if code, _, err := tb.get("alpha"); code != 200 {
		t.Errorf("the hub after its new key: %d %v", code, err)
	}
}

// TestRotateKeyOverUDPSwitchesOnTheRelaysWord: over UDP the agent
// switches to its new key as soon as the relay answers a message on the
// old key's session with SessionUnknown (the relay has taken the key), not
// only after its fixed wait: a hub that sends meanwhile, a download say,
// is without a tunnel for a round trip after the relay took the key. The
// wait is an hour here, so only the relay's answer can switch.
func TestRotateKeyOverUDPSwitchesOnTheRelaysWord(t *testing.T) {
	tb := newTestbedWith(t, testbedOpts{relayUDP: true, config: func(c *Config) { c.Transport, c.MTU = "udp", 1420 }}, "alpha")
	a := tb.agents["alpha"]
	a.tr.(*udpTransport).switchDelay = time.Hour
	old := a.Status().PublicKey
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type rotated struct {
		ans localapi.RotateKeyResponse
		err error
	}
	done := make(chan rotated, 1)
	go func() {
		ans, err := a.RotateKey(ctx)
		done <- rotated{ans, err}
	}()
	poll.Until(t, 10*time.Second, "the relay's store to have alpha's new key", func() bool {
		h, err := tb.relay.Store().HubByName(ctx, "alpha")
		return err == nil && h.PublicKey != old
	})
	// The hub sends on its old session (a connection to the relay's hub
	// API, each try a TCP SYN) until RotateKey is through.
	c, base := a.hubAPI()
	c.Timeout = 300 * time.Millisecond
	var r rotated
	poll.Until(t, 15*time.Second, "RotateKey to return", func() bool {
		select {
		case r = <-done:
			return true
		default:
			if resp, err := c.Get(base + "relay-keys"); err == nil {
				resp.Body.Close()
			}
			return false
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	st := a.Status()
	if st.State != localapi.StateConnected || st.PublicKey != r.ans.PublicKey || r.ans.PublicKey == old {
		t.Fatalf("after RotateKey: %s with key %s; its answer %s, the old key %s", st.State, st.PublicKey, r.ans.PublicKey, old)
	}
	if code, _, err := tb.get("alpha"); code != 200 {
		t.Errorf("the hub after its new key: %d %v", code, err)
	}
}

// TestLostCommitGoesBackToTheOldKey: a rotation whose commit went out but
// got no answer, and which the relay never took (as when the tunnel broke
// just then), does not strand the hub: the relay says it does not know the
// new key, and the agent goes back to its old one, on disk too.
func TestLostCommitGoesBackToTheOldKey(t *testing.T) {
	tb := newTestbed(t, "alpha")
	a := tb.agents["alpha"]
	old := a.key
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	// What RotateKey does after a commit without an answer, but the relay
	// never heard of k.
	if err := vpn.SavePrivateKey(a.cfg.PrivateKeyFile, k); err != nil {
		t.Fatal(err)
	}
	a.keyMu.Lock()
	a.key, a.rotatedFrom = k, &old
	a.keyMu.Unlock()
	a.tr.useKey(k)

	poll.Until(t, 20*time.Second, "the agent back on its old key, connected", func() bool {
		st := a.Status()
		return st.State == localapi.StateConnected && st.PublicKey == old.Public().String()
	})
	if f, _ := vpn.LoadPrivateKey(a.cfg.PrivateKeyFile); f != old {
		t.Error("the key file does not hold the old key again")
	}
	if code, _, err := tb.get("alpha"); code != 200 {
		t.Errorf("the hub after going back: %d %v", code, err)
	}
}

// TestConnectOpensNoTunnelConnection: a relay connection brings the relay's
// next key and the hub's name with the handshake (the relay's HubInfo),
// and the agent keeps them without a packet through the tunnel: asking
// inside it, as agents did at every connect, was a TCP connection and an
// HTTP request, 2.2 KB of the 2 KB a tunnel setup may cost.
func TestConnectOpensNoTunnelConnection(t *testing.T) {
	tb := newTestbed(t, "alpha")
	a := tb.agents["alpha"]
	tr := a.tr.(*tcpTransport)
	next, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	relayKey := filepath.Join(tb.bed.Relay.Dir, tb.bed.Relay.Name+".key")
	if err := vpn.SavePrivateKey(relay.NextKeyFile(relayKey), next); err != nil {
		t.Fatal(err)
	}
	before := tr.b.Status().Connects
	tr.b.Reconnect()
	poll.Until(t, 10*time.Second, "the agent to pin the relay's next key in "+RelayKeysFile, func() bool {
		k, err := loadRelayKeys(a.cfg.relayKeysPath())
		return err == nil && k != nil && k.Next == next.Public().String()
	})
	// The HubInfo that carries the key arrives with the handshake
	// response; the agent reports connected a moment later.
	poll.Until(t, 10*time.Second, "the agent connected again", func() bool {
		return a.Status().State == localapi.StateConnected
	})
	st := a.Status()
	if st.State != localapi.StateConnected || tr.b.Status().Connects != before+1 || st.Name != "alpha" || !strings.HasPrefix(st.URL, "https://alpha.localhost") {
		t.Errorf("after the new connection: %s, connection %d (was %d), name %q, URL %q", st.State, tr.b.Status().Connects, before, st.Name, st.URL)
	}
	// The first connection and this one: handshakes, Hellos and the
	// HubInfo, and not one packet inside WireGuard.
	if rx, tx := tr.counters.RxData.Load(), tr.counters.TxData.Load(); rx != 0 || tx != 0 {
		t.Errorf("the tunnel carried %d bytes in and %d out while the agent connected twice, want none", rx, tx)
	}
	// hubrelay key promote counts the hub as having learned the key.
	poll.Until(t, 5*time.Second, "the relay to record that alpha learned its next key", func() bool {
		h, err := tb.relay.Store().HubByName(context.Background(), "alpha")
		return err == nil && !h.KeysLearned.IsZero()
	})
}
