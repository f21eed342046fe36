package netstack

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// tcpSums watches the TCP packets a Device hands out and counts those with
// a correct checksum and those with none (zero). A zero field is also the
// correct checksum of 1 packet in 65,536 (those whose other bytes sum to
// 0xffff): such a packet is counted as both, in either.
type tcpSums struct {
	tun.Device
	valid, zero, either, other atomic.Int64
}

func (d *tcpSums) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.Device.Read(bufs, sizes, offset)
	for i := range n {
		ip := header.IPv4(bufs[i][offset : offset+sizes[i]])
		if ip.TransportProtocol() != header.TCPProtocolNumber {
			continue
		}
		tcp := header.TCP(ip.Payload())
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
		ok := checksum.Checksum(tcp, xsum) == 0xffff
		switch {
		case ok && tcp.Checksum() == 0:
			d.either.Add(1)
		case ok:
			d.valid.Add(1)
		case tcp.Checksum() == 0:
			d.zero.Add(1)
		default:
			d.other.Add(1)
		}
	}
	return n, err
}

// TestChecksumsOnlyForPeersThatVerify: a stack leaves TCP checksums out of
// the packets to a peer that said it verifies none, and only those: a
// peer that verifies them (a relay or agent before wire.Features) gets
// correct ones, and would drop packets without.
func TestChecksumsOnlyForPeersThatVerify(t *testing.T) {
	goroutineLeakCheck(t)
	yes := func(netip.Addr) bool { return true }
	no := func(netip.Addr) bool { return false }
	tests := []struct {
		name       string
		needs      func(netip.Addr) bool // the sender's NeedsChecksum
		verify     bool                  // the receiver's VerifyChecksums
		wantZero   bool                  // the sender's packets carry no checksum
		wantBroken bool                  // the receiver drops them
	}{
		{"by default every packet has one", nil, true, false, false},
		{"a peer that verifies gets them", yes, true, false, false},
		{"a peer that does not verify gets none", no, false, true, false},
		{"a peer that verifies drops packets without", no, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newStack(t, Config{Addrs: []netip.Addr{addrA4}, NeedsChecksum: tt.needs})
			b := newStack(t, Config{Addrs: []netip.Addr{addrB4}, VerifyChecksums: tt.verify})
			sums := &tcpSums{Device: a.Device()}
			p := new(pump)
			p.wg.Add(2)
			go p.run(sums, b.Device())
			go p.run(b.Device(), a.Device())
			t.Cleanup(func() { a.Close(); b.Close(); p.wg.Wait() })

			if tt.wantBroken {
				ln, err := b.ListenTCP(80)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // it fails; this only ends the wait
				defer cancel()
				if c, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB4, 80)); err == nil {
					c.Close()
					t.Fatal("a verifying peer took a connection without checksums")
				}
			} else {
				client, server := connect(t, a, b, addrB4, 80)
				transfer(t, client, server, 1<<20)
			}
			if sums.other.Load() != 0 {
				t.Errorf("%d packets with a wrong checksum", sums.other.Load())
			}
			zero, valid, either := sums.zero.Load(), sums.valid.Load(), sums.either.Load()
			if tt.wantZero && (zero+either == 0 || valid != 0) {
				t.Errorf("packets without checksum %d, with %d (%d whose checksum is zero): want none with", zero, valid, either)
			}
			if !tt.wantZero && (valid+either == 0 || zero != 0) {
				t.Errorf("packets without checksum %d, with %d (%d whose checksum is zero): want all with", zero, valid, either)
			}
		})
	}
}
