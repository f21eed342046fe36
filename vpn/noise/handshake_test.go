package noise

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// quietTUN is a tun.Device without traffic: the responder below only
// handshakes and takes keepalives, which never reach it.
type quietTUN struct {
	events chan tun.Event
	closed chan struct{}
}

func newQuietTUN() *quietTUN {
	t := &quietTUN{events: make(chan tun.Event, 1), closed: make(chan struct{})}
	t.events <- tun.EventUp
	return t
}

func (t *quietTUN) Read([][]byte, []int, int) (int, error) { <-t.closed; return 0, os.ErrClosed }
func (t *quietTUN) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (t *quietTUN) File() *os.File                         { return nil }
func (t *quietTUN) MTU() (int, error)                      { return 1420, nil }
func (t *quietTUN) Name() (string, error)                  { return "quiet", nil }
func (t *quietTUN) Events() <-chan tun.Event               { return t.events }
func (t *quietTUN) BatchSize() int                         { return 1 }
func (t *quietTUN) Close() error                           { close(t.closed); close(t.events); return nil }

// TestInitiatorCompletesAHandshakeWithWireGuard: a real wireguard-go
// device, as the relay runs it over UDP, answers Initiate's message;
// ReadResponse derives the keys from its answer, and the keepalive made
// with them is a transport message the device takes (its peer's received
// bytes grow by it). A response to another handshake, or a keepalive with
// a wrong key, does not pass.
func TestInitiatorCompletesAHandshakeWithWireGuard(t *testing.T) {
	hub, relay := keys(t)
	var ports loopback.Ports
	port, err := ports.FreeUDP()
	if err != nil {
		t.Fatal(err)
	}
	dev, err := vpn.NewDevice(newQuietTUN(), conn.NewDefaultBind(), relay, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.SetListenPort(uint16(port)); err != nil {
		t.Fatal(err)
	}
	if err := dev.AddPeer(vpn.Peer{PublicKey: hub.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.100.0.1/32")}}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))

	var macs device.CookieGenerator
	macs.Init(device.NoisePublicKey(relay.Public()))
	in, err := NewInitiator(hub, relay.Public())
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(sender uint32, ts time.Time) (*Handshake, []byte) {
		hs, msg, err := in.Initiate(sender, Stamp(ts), &macs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, 256)
		n, err := c.Read(resp)
		if err != nil {
			t.Fatalf("no answer to the initiation: %v", err)
		}
		return hs, resp[:n]
	}
	hs, resp := exchange(0x11223344, time.Now())

	other, _, err := Initiate(hub, relay.Public(), 0x55667788, Stamp(time.Now()), &macs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.ReadResponse(resp); ok {
		t.Errorf("a response to another handshake was read as this one's")
	}
	k, ok := hs.ReadResponse(resp)
	if !ok {
		t.Fatalf("the responder's answer (%d bytes, type %d) does not read", len(resp), resp[0])
	}

	rx := func() uint64 {
		st, err := dev.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st[hub.Public()].RxBytes
	}
	waitRx := func(want uint64) uint64 {
		deadline := time.Now().Add(5 * time.Second)
		for rx() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return rx()
	}
	before := waitRx(InitiationLen)

	bad := k
	bad.Send[0] ^= 1
	if _, err := c.Write(bad.AppendTransport(nil, 0, nil)); err != nil {
		t.Fatal(err)
	}
	ka := k.AppendTransport(nil, 0, nil)
	if len(ka) != 32 {
		t.Errorf("a keepalive is %d bytes; want 32", len(ka))
	}
	if _, err := c.Write(ka); err != nil {
		t.Fatal(err)
	}
	if got := waitRx(before + 32); got != before+32 {
		t.Errorf("the device took %d bytes after the handshake; want the one good keepalive's 32", got-before)
	}
	st, _ := dev.Stats()
	if st[hub.Public()].LastHandshake.IsZero() {
		t.Errorf("the device has no handshake with the hub")
	}

	// The Initiator's next handshake, with the static DH it kept from the
	// first: answered, and its keys carry a keepalive. WireGuard takes one
	// initiation per peer every 20 ms, and a newer timestamp only.
	time.Sleep(30 * time.Millisecond)
	hs2, resp2 := exchange(0x99aabbcc, time.Now().Add(time.Second))
	k2, ok := hs2.ReadResponse(resp2)
	if !ok {
		t.Fatalf("the answer to the second handshake (%d bytes, type %d) does not read", len(resp2), resp2[0])
	}
	if _, err := c.Write(k2.AppendTransport(nil, 0, nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := waitRx(before+32+InitiationLen+32), before+32+InitiationLen+32; got != want {
		t.Errorf("the device took %d bytes after the second handshake; want its initiation and keepalive, %d", got-before-32, InitiationLen+32)
	}
}
