package relay

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
)

// TestInboundTUNCountsOutByHub: every packet WireGuard writes to the
// netstack is counted out of the window of the hub whose tunnel address
// sent it, and of no other; packets from addresses no hub has, and
// anything that is not IPv4, count for nobody.
func TestInboundTUNCountsOutByHub(t *testing.T) {
	a := &hub{inbound: inflight.New(100)}
	b := &hub{inbound: inflight.New(100)}
	ipA, ipB := netip.MustParseAddr("100.96.0.2"), netip.MustParseAddr("100.96.0.3")
	a.inbound.Enter(10)
	b.inbound.Enter(10)
	sink := &discardTUN{}
	r := newRegistry(nil, time.Now)
	set := newHubSet(2)
	set.byIP[ipA], set.byIP[ipB] = a, b
	r.set.Store(set)
	d := &inboundTUN{Device: sink, hubs: r}

	const offset = 16
	packet := func(src netip.Addr) []byte {
		p := make([]byte, offset+40)
		p[offset] = 0x45
		s := src.As4()
		copy(p[offset+12:], s[:])
		return p
	}
	ipv6 := make([]byte, offset+40)
	ipv6[offset] = 0x60
	short := make([]byte, offset+8)
	short[offset] = 0x45
	bufs := [][]byte{
		packet(ipA), packet(ipA), packet(ipB), packet(ipA),
		packet(netip.MustParseAddr("100.96.0.9")), ipv6, short, packet(ipB),
	}
	n, err := d.Write(bufs, offset)
	if err != nil || n != len(bufs) {
		t.Fatalf("Write = %d, %v; want %d packets passed on", n, err, len(bufs))
	}
	if sink.n != len(bufs) {
		t.Errorf("the netstack got %d packets, want %d", sink.n, len(bufs))
	}
	if got := a.inbound.Len(); got != 7 {
		t.Errorf("hub a: %d in flight after 3 of its 10 were written, want 7", got)
	}
	if got := b.inbound.Len(); got != 8 {
		t.Errorf("hub b: %d in flight after 2 of its 10 were written, want 8", got)
	}
}

type discardTUN struct {
	tun.Device
	n int
}

func (d *discardTUN) Write(bufs [][]byte, offset int) (int, error) {
	d.n += len(bufs)
	return len(bufs), nil
}
