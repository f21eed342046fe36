package firewall

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

// TestNetstack puts the firewall in front of wireguard-go's real gVisor
// netstack: the test's packets are real enough for the stack to answer, what
// passes is answered, and a packet the stack would answer is not when the
// firewall drops it.
func TestNetstack(t *testing.T) {
	hubA, hubA6 := netip.MustParseAddr(hub4), netip.MustParseAddr(hub6)
	stack, tnet, err := netstack.CreateNetTUN([]netip.Addr{hubA, hubA6}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	for _, ap := range []netip.AddrPort{
		netip.AddrPortFrom(hubA, 80), netip.AddrPortFrom(hubA6, 80), netip.AddrPortFrom(hubA, 8080),
	} {
		ln, err := tnet.ListenTCPAddrPort(ap)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	pol := Policy{
		Allowed:   []netip.Prefix{netip.MustParsePrefix("10.77.0.1/32"), netip.MustParsePrefix("fd77::1/128")},
		TCPPorts:  []uint16{80},
		AllowPing: true,
	}
	d := Wrap(stack, pol, t.Logf)

	// The stack hands its outbound packets to a reader; it blocks until one reads.
	replies := make(chan []byte, 16)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		for {
			if _, err := d.Read(bufs, sizes, wgOffset); err != nil {
				return
			}
			replies <- append([]byte(nil), bufs[0][wgOffset:wgOffset+sizes[0]]...)
		}
	}()
	defer func() {
		d.Close()
		<-readerDone
	}()

	type reply struct {
		v6     bool
		proto  uint8
		sport  uint16 // TCP source port, or ICMP type
		synAck bool
		dport  uint16
	}
	parse := func(b []byte) (r reply) {
		var l4 []byte
		if b[0]>>4 == 4 {
			r.proto, l4 = b[9], b[int(b[0]&15)*4:]
		} else {
			r.v6, r.proto, l4 = true, b[6], b[40:]
		}
		switch r.proto {
		case protoTCP:
			r.sport, r.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
			r.synAck = l4[13]&0x12 == 0x12
		case protoICMP, protoICMPv6:
			r.sport = uint16(l4[0])
		}
		return r
	}
	// expect waits for replies matching want, in any order; anything else
	// the stack sends about TCP or ICMP is an error.
	expect := func(want ...reply) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case b := <-replies:
				r := parse(b)
				if r.proto != protoTCP && r.proto != protoICMP && r.proto != protoICMPv6 {
					continue // e.g. MLD reports: not ours
				}
				i := -1
				for j, w := range want {
					if w == r {
						i = j
					}
				}
				if i < 0 {
					t.Fatalf("unexpected reply %+v, waiting for %+v", r, want)
				}
				want = append(want[:i], want[i+1:]...)
			case <-deadline:
				t.Fatalf("no reply %+v", want)
			}
		}
	}

	// Dropped: strangers to 80, the relay to 8080 (listening, not mapped)
	// and to 9 (would draw a RST).
	n, err := d.Write(batch(
		ip4to(stranger4, hub4, protoTCP, tcp(80)),
		ip4to(relay4, hub4, protoTCP, tcp(8080)),
		ip4to(relay4, hub4, protoTCP, tcp(9)),
		ip6to(stranger6, hub6, protoTCP, tcp(80)),
	), wgOffset)
	if n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	// Passed: the relay to 80 over both families, and its pings.
	n, err = d.Write(batch(
		ip4to(relay4, hub4, protoTCP, tcp(80)),
		ip6to(relay6, hub6, protoTCP, tcp(80)),
		ip4to(relay4, hub4, protoICMP, icmp(8, 0)),
		ip6to(relay6, hub6, protoICMPv6, icmp(128, 0)),
	), wgOffset)
	if n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	expect(
		reply{proto: protoTCP, sport: 80, dport: testSrcPort, synAck: true},
		reply{v6: true, proto: protoTCP, sport: 80, dport: testSrcPort, synAck: true},
		reply{proto: protoICMP, sport: 0},               // echo reply
		reply{v6: true, proto: protoICMPv6, sport: 129}, // echo reply
	)

	// Written past the firewall, the packet to 8080 is answered: it was the
	// firewall that kept it from the stack.
	if _, err := stack.Write(batch(ip4to(relay4, hub4, protoTCP, tcp(8080))), wgOffset); err != nil {
		t.Fatal(err)
	}
	expect(reply{proto: protoTCP, sport: 8080, dport: testSrcPort, synAck: true})

	if got, want := d.Stats(), (Stats{Passed: 4, DropSource: 2, DropPort: 2}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}
