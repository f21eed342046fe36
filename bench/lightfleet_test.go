package bench

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestLightFleetIsWhatWireGuardSeesOfIdleHubs: three light hubs, each
// from its own loopback address, complete a handshake with a real
// wireguard-go device (as the relay runs it over UDP), which takes their
// keepalives; a hub told wire.SessionUnknown for its session handshakes
// again at once, and one told it for another session does not.
func TestLightFleetIsWhatWireGuardSeesOfIdleHubs(t *testing.T) {
	relayKey, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	var ports loopback.Ports
	port, err := ports.FreeUDP()
	if err != nil {
		t.Fatal(err)
	}
	var keys []vpn.PrivateKey
	for range 3 {
		k, err := vpn.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	dev := relayDevice(t, relayKey, port, keys)
	relayAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	f, err := StartLightFleet(LightFleetConfig{Relay: relayAddr, RelayKey: relayKey.Public(),
		First: netip.MustParseAddr("127.77.0.1"), Keys: keys, Keepalive: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	poll.Until(t, 10*time.Second, "every light hub's handshake", func() bool { return f.Ready() == 3 })

	// Each hub's keepalives reach the device from the hub's own address.
	poll.Until(t, 10*time.Second, "the device to take 3 keepalives from each hub", func() bool {
		st, err := dev.Stats()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if st[k.Public()].RxBytes < 148+3*32 || st[k.Public()].LastHandshake.IsZero() {
				return false
			}
		}
		return true
	})
	st, _ := dev.Stats()
	for i, k := range keys {
		if want := netip.AddrFrom4([4]byte{127, 77, 0, byte(i + 1)}).String(); !hasHost(st[k.Public()].Endpoint, want) {
			t.Errorf("hub %d's endpoint is %s; want its own address %s", i, st[k.Public()].Endpoint, want)
		}
	}

	h := f.hubs[0]
	h.mu.Lock()
	session := h.keys.Receiver
	h.mu.Unlock()
	before := f.Counts().Handshakes
	// The hint is handed to the hub as its reader would: its socket is
	// connected to the device's port, and only the relay sends it.
	if got := f.Counts().Unknowns; got != 0 {
		t.Fatalf("%d SessionUnknown taken before any was sent", got)
	}
	h.take(wire.AppendSessionUnknown(nil, session+1), time.Now())
	if f.Counts().Unknowns != 0 {
		t.Errorf("a SessionUnknown for another session was taken")
	}
	h.take(wire.AppendSessionUnknown(nil, session), time.Now())
	poll.Until(t, 10*time.Second, "a new handshake after SessionUnknown", func() bool { return f.Counts().Handshakes > before })
	if f.Counts().Unknowns != 1 {
		t.Errorf("SessionUnknown taken %d times; want 1", f.Counts().Unknowns)
	}

	// A relay restart: the device goes, and the hubs' keepalives (every
	// second here) meet a closed port, which their sockets report as
	// ECONNREFUSED; a device with the same key comes back on the port. A
	// hub told its session is gone handshakes with it: its reader read on
	// through the errors. SinceMark counts it, and only it.
	dev.Close()
	f.Mark()
	if n := f.SinceMark(); n != 0 {
		t.Errorf("%d hubs with a handshake since the mark, taken while the device was down; want 0", n)
	}
	sent := f.Counts().Keepalives
	poll.Until(t, 10*time.Second, "two keepalives of each hub into the closed port", func() bool {
		return f.Counts().Keepalives >= sent+2*int64(len(keys))
	})
	relay2 := relayDevice(t, relayKey, port, keys)
	h.mu.Lock()
	session = h.keys.Receiver
	h.mu.Unlock()
	h.take(wire.AppendSessionUnknown(nil, session), time.Now())
	poll.Until(t, 10*time.Second, "the hub's handshake with the device that came back", func() bool { return f.SinceMark() == 1 })

	// A pong (hubrelay's answer to a ping; a plain device never sends
	// one): the hub sends pings, no keepalives, until three pings went
	// unanswered; then it handshakes.
	h.mu.Lock()
	session = h.keys.Receiver
	h.mu.Unlock()
	h.take(wire.AppendUDPPong(nil, session, 0), time.Now())
	f.Mark()
	// What the hub sent before the pong (its confirming keepalive, or a
	// keepalive due then) may still be on its way into the device: the
	// count starts a ping later (a second here), not at once.
	pings := f.Counts().Pings
	poll.Until(t, 10*time.Second, "a ping", func() bool { return f.Counts().Pings >= pings+1 })
	st, _ = relay2.Stats()
	rx := st[keys[0].Public()].RxBytes
	pings = f.Counts().Pings
	// One more: a keepalive would be due as often (and the third ping
	// without a pong, a handshake, comes a second after it).
	poll.Until(t, 10*time.Second, "another ping", func() bool { return f.Counts().Pings >= pings+1 })
	if st, _ := relay2.Stats(); st[keys[0].Public()].RxBytes != rx || f.SinceMark() != 0 {
		t.Errorf("the hub that pings sent the device %d bytes and handshook %d times; want none", st[keys[0].Public()].RxBytes-rx, f.SinceMark())
	}
	poll.Until(t, 10*time.Second, "the hub's handshake after three pings without a pong", func() bool { return f.SinceMark() == 1 })
}

// relayDevice is a wireguard-go device as the relay runs it over UDP:
// key, listening on port, with a peer (100.100.0.i+1) for each of keys.
// It closes when the test ends, or before when the test closes it.
func relayDevice(t *testing.T, key vpn.PrivateKey, port int, keys []vpn.PrivateKey) *vpn.Device {
	t.Helper()
	dev, err := vpn.NewDevice(newNullTUN(), conn.NewDefaultBind(), key, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := dev.SetListenPort(uint16(port)); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		ip := netip.AddrFrom4([4]byte{100, 100, 0, byte(i + 1)})
		if err := dev.AddPeer(vpn.Peer{PublicKey: k.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(ip, 32)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return dev
}

func hasHost(endpoint, host string) bool {
	h, _, err := net.SplitHostPort(endpoint)
	return err == nil && h == host
}
