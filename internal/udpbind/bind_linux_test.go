package udpbind

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// open opens a Bind on a free port and returns it, its receive functions
// (IPv4's first) and the port.
func open(t *testing.T) (*Bind, []conn.ReceiveFunc, uint16) {
	t.Helper()
	b := New().(*Bind)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, fns, port
}

// stagingBufs is what vpn.Staging reads into: batchSize slots, the last
// ones large enough for a coalesced datagram.
func stagingBufs() [][]byte {
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		n := 1420 + 32
		if i >= batchSize-batchSize/maxSegments {
			n = device.MaxMessageSize
		}
		bufs[i] = make([]byte, n)
	}
	return bufs
}

// packets returns one packet of each size, each filled with its index.
func packets(sizes ...int) [][]byte {
	ps := make([][]byte, len(sizes))
	for i, n := range sizes {
		ps[i] = bytes.Repeat([]byte{byte(i)}, n)
	}
	return ps
}

type datagram struct {
	p  []byte
	ep conn.Endpoint
}

// receiveAll calls fn until it has n datagrams, for at most 10 s.
func receiveAll(t *testing.T, fn conn.ReceiveFunc, n int) []datagram {
	t.Helper()
	got := make(chan []datagram, 1)
	go func() {
		var ds []datagram
		bufs, sizes, eps := stagingBufs(), make([]int, batchSize), make([]conn.Endpoint, batchSize)
		for len(ds) < n {
			k, err := fn(bufs, sizes, eps)
			if err != nil {
				t.Errorf("receive: %v", err)
				break
			}
			for i := range k {
				ds = append(ds, datagram{bytes.Clone(bufs[i][:sizes[i]]), eps[i]})
			}
		}
		got <- ds
	}()
	select {
	case ds := <-got:
		return ds
	case <-time.After(10 * time.Second):
		t.Fatalf("received fewer than %d datagrams in 10 s", n)
		return nil
	}
}

// TestBatchArrivesWhole sends one batch of packets of several sizes (the
// way WireGuard hands a burst to its bind) and reads every packet back,
// in order and intact, from the address it was sent from; the batch
// coalesced the way UDP GSO allows.
func TestBatchArrivesWhole(t *testing.T) {
	a, _, aPort := open(t)
	_, bfns, bPort := open(t)
	var sizes []int
	for range 70 {
		sizes = append(sizes, 1000) // more than one GSO datagram holds
	}
	sizes = append(sizes, 600, 1000, 1000, 32, 148)
	for range 50 {
		sizes = append(sizes, 1452) // 45 fit in 64 KiB
	}
	ps := packets(sizes...)

	w := a.sender()
	msgs := w.build(ps, netip.MustParseAddr("127.0.0.1"), bPort, nil, true)
	// 64 full ones; then 6 full and the shorter 600 that ends it; then
	// two full and the short tail 32; then 148, larger than that; then
	// as many larger ones as fit in 64 KiB, and the rest.
	var segs []int
	for _, m := range msgs {
		segs = append(segs, int(m.Hdr.Iovlen))
	}
	if fmt.Sprint(segs) != "[64 7 3 1 45 5]" {
		t.Errorf("GSO datagrams of %v segments; want [64 7 3 1 45 5]", segs)
	}

	ep, err := a.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", bPort))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ps, ep); err != nil {
		t.Fatal(err)
	}
	t.Logf("UDP GSO %v, GRO %v", a.v4.gso.Load(), a.v4.gro)
	ds := receiveAll(t, bfns[0], len(ps))
	if len(ds) != len(ps) {
		t.Fatalf("received %d datagrams; want %d", len(ds), len(ps))
	}
	from := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), aPort)
	for i, d := range ds {
		if !bytes.Equal(d.p, ps[i]) {
			t.Errorf("datagram %d: %d bytes of %v; want %d of %d", i, len(d.p), d.p[:min(len(d.p), 1)], len(ps[i]), i)
		}
		if ap, ok := AddrPort(d.ep); !ok || ap != from {
			t.Errorf("datagram %d from %v; want %v", i, d.ep.DstToString(), from)
		}
	}
	if e := ds[0].ep.(*Endpoint); e.SrcIP() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("the datagrams came to %v; want 127.0.0.1", e.SrcIP())
	}
}

// TestReplyFromTheAddressWrittenTo: a peer that wrote to one of the host's
// addresses is answered from that address, not from the one the kernel
// would pick for the peer (its NAT would drop the reply); after
// ClearSrc, from the kernel's, until the peer's next datagram.
func TestReplyFromTheAddressWrittenTo(t *testing.T) {
	b, fns, port := open(t)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(port)}
	if _, err := peer.WriteToUDP([]byte("hello"), to); err != nil {
		t.Fatal(err)
	}
	ds := receiveAll(t, fns[0], 1)
	ep := ds[0].ep.(*Endpoint)
	if ep.SrcIP() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("the datagram came to %v; want 127.0.0.2", ep.SrcIP())
	}
	reply := func() netip.AddrPort {
		t.Helper()
		if err := b.Send([][]byte{[]byte("hi")}, ep); err != nil {
			t.Fatal(err)
		}
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("reply: %q, %v", buf[:n], err)
		}
		return from
	}
	if from := reply(); from != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port) {
		t.Errorf("the reply came from %v; want 127.0.0.2, where the peer wrote to", from)
	}
	// A batch that goes as one GSO datagram carries the address too.
	if err := b.Send(packets(1000, 1000, 1000), ep); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		buf := make([]byte, 2000)
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || n != 1000 || from.Addr() != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("datagram %d of a batch: %d bytes from %v, %v; want 1000 from 127.0.0.2", i, n, from, err)
		}
	}
	ep.ClearSrc()
	if from := reply(); from.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("after ClearSrc the reply came from %v; want 127.0.0.1, the kernel's choice", from)
	}
	// The peer's next datagram says again where it came to (WireGuard
	// takes each packet's endpoint as the peer's).
	if _, err := peer.WriteToUDP([]byte("again"), to); err != nil {
		t.Fatal(err)
	}
	ep = receiveAll(t, fns[0], 1)[0].ep.(*Endpoint)
	if from := reply(); from != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port) {
		t.Errorf("after ClearSrc and another datagram to 127.0.0.2, the reply came from %v; want 127.0.0.2", from)
	}
}

// TestIPv6AndMappedAddresses: IPv6 goes through the IPv6 socket, an
// IPv4-mapped address through the IPv4 one.
func TestIPv6AndMappedAddresses(t *testing.T) {
	a, afns, _ := open(t)
	_, bfns, bPort := open(t)
	if a.v6 == nil || len(afns) < 2 {
		t.Skip("no IPv6 here")
	}
	for _, c := range []struct {
		to string
		fn conn.ReceiveFunc
	}{{fmt.Sprintf("[::1]:%d", bPort), bfns[1]}, {fmt.Sprintf("[::ffff:127.0.0.1]:%d", bPort), bfns[0]}} {
		ep, err := a.ParseEndpoint(c.to)
		if err != nil {
			t.Fatal(err)
		}
		ps := packets(1000, 1000, 1000, 10)
		if err := a.Send(ps, ep); err != nil {
			if errors.Is(err, net.ErrClosed) || c.to[1] == ':' && c.to[3] == '1' {
				t.Skipf("send to %s: %v", c.to, err)
			}
			t.Fatalf("send to %s: %v", c.to, err)
		}
		ds := receiveAll(t, c.fn, len(ps))
		for i, d := range ds {
			if !bytes.Equal(d.p, ps[i]) {
				t.Errorf("to %s: datagram %d is %d bytes; want %d", c.to, i, len(d.p), len(ps[i]))
			}
		}
	}
}

// TestCloseWakesReceive: a receive waiting for datagrams returns
// net.ErrClosed when the bind closes (WireGuard's receive routine ends on
// it), and Send after Close says so.
func TestCloseWakesReceive(t *testing.T) {
	b := New().(*Bind)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			_, err := fn(stagingBufs(), make([]int, batchSize), make([]conn.Endpoint, batchSize))
			done <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them wait
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range fns {
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("receive after Close: %v; want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a receive still waits 10 s after Close")
		}
	}
	ep, _ := b.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", port))
	if err := b.Send([][]byte{{1}}, ep); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v; want net.ErrClosed", err)
	}
	if _, _, err := b.Open(port); err != nil {
		t.Errorf("open again after Close: %v", err)
	}
	b.Close()
}

// TestStdNetEndpoints: endpoints a caller makes as wireguard-go's (the
// relay's answers to hubs it has no session for) are sent to as well.
func TestStdNetEndpoints(t *testing.T) {
	a, _, _ := open(t)
	_, bfns, bPort := open(t)
	ep := &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bPort)}
	if err := a.Send(packets(100), ep); err != nil {
		t.Fatal(err)
	}
	if ds := receiveAll(t, bfns[0], 1); len(ds[0].p) != 100 {
		t.Errorf("received %d bytes; want 100", len(ds[0].p))
	}
}

// TestNoAllocations: a send and a receive of a batch allocate nothing once
// warm (the endpoint of the same sender is reused).
func TestNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	a, _, _ := open(t)
	_, bfns, bPort := open(t)
	ep, _ := a.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", bPort))
	ps := packets(1452, 1452, 1452, 1452, 1452, 1452, 1452, 200)
	bufs, sizes, eps := stagingBufs(), make([]int, batchSize), make([]conn.Endpoint, batchSize)
	round := func() {
		if err := a.Send(ps, ep); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(ps); {
			n, err := bfns[0](bufs, sizes, eps)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	round()
	if n := testing.AllocsPerRun(50, round); n != 0 {
		t.Errorf("%v allocations per batch sent and received; want 0", n)
	}
}
