package netstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 60 * time.Second

var (
	addrA4 = netip.MustParseAddr("10.77.0.1")
	addrB4 = netip.MustParseAddr("10.77.0.2")
	addrA6 = netip.MustParseAddr("fd77::1")
	addrB6 = netip.MustParseAddr("fd77::2")
)

// goroutineLeakCheck fails t if, once its other cleanups have run, more
// goroutines are alive than when it was called. Call it first.
func goroutineLeakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				var b strings.Builder
				pprof.Lookup("goroutine").WriteTo(&b, 1)
				t.Fatalf("%d goroutines before, %d after; leak?\n%s", before, runtime.NumGoroutine(), b.String())
			}
			time.Sleep(time.Millisecond) // polling a condition, not waiting for an event
		}
	})
}

func newStack(tb testing.TB, cfg Config) *Stack {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// A pump wires two Stacks back to back, moving batches of packets from one
// Device's Read to the other's Write, until the stacks close.
type pump struct {
	cut      atomic.Bool                              // drop everything: the peers vanish from each other
	drop     atomic.Pointer[func(packet []byte) bool] // nil, or drops the packets it reports true for
	maxBatch atomic.Int64                             // largest batch one Read returned
	wg       sync.WaitGroup
}

func startPump(tb testing.TB, a, b *Stack) *pump {
	p := new(pump)
	p.wg.Add(2)
	go p.run(a.Device(), b.Device())
	go p.run(b.Device(), a.Device())
	tb.Cleanup(func() {
		a.Close()
		b.Close()
		p.wg.Wait()
	})
	return p
}

func (p *pump) run(from, to tun.Device) {
	defer p.wg.Done()
	const offset = 16 // as WireGuard leaves room for its header
	bufs := make([][]byte, from.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, offset+65535)
	}
	sizes := make([]int, len(bufs))
	out := make([][]byte, 0, len(bufs))
	for {
		n, err := from.Read(bufs, sizes, offset)
		if err != nil {
			return
		}
		if int64(n) > p.maxBatch.Load() {
			p.maxBatch.Store(int64(n))
		}
		if p.cut.Load() {
			continue
		}
		out = out[:0]
		drop := p.drop.Load()
		for i := range n {
			if drop != nil && (*drop)(bufs[i][offset:offset+sizes[i]]) {
				continue
			}
			out = append(out, bufs[i][:offset+sizes[i]])
		}
		to.Write(out, offset)
	}
}

// pair returns two pumped stacks, each with the given addresses.
func pair(tb testing.TB, cfg Config, addrsA, addrsB []netip.Addr) (a, b *Stack, p *pump) {
	cfg.Addrs = addrsA
	a = newStack(tb, cfg)
	cfg.Addrs = addrsB
	b = newStack(tb, cfg)
	return a, b, startPump(tb, a, b)
}

// connect dials from a to port on dst and returns both ends.
func connect(tb testing.TB, a, b *Stack, dst netip.Addr, port uint16) (client, server *TCPConn) {
	tb.Helper()
	ln, err := b.ListenTCP(port)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	client, err = a.DialTCP(ctx, netip.AddrPortFrom(dst, port))
	if err != nil {
		tb.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close(); sc.Close() })
	return client, sc.(*TCPConn)
}

// stream returns n pseudo-random bytes that depend on seed.
func stream(seed byte, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
}

func sum(r io.Reader) [32]byte {
	h := sha256.New()
	io.Copy(h, r)
	return [32]byte(h.Sum(nil))
}

// transfer sends n bytes each way at once over client/server, checks them,
// and checks half-close: after the client's CloseWrite the server reads EOF
// and still sends its reply, which the client reads.
func transfer(t *testing.T, client, server *TCPConn, n int64) {
	t.Helper()
	type result struct {
		sum [32]byte
		err error
	}
	serverDone := make(chan error, 1)
	go func() {
		// The server sends its bulk while it reads the client's; once
		// both are done, it replies with the digest of what it read.
		sent := make(chan error, 1)
		go func() {
			_, err := io.Copy(server, stream(2, n))
			sent <- err
		}()
		got := sum(server) // until the client's FIN
		if err := <-sent; err != nil {
			serverDone <- err
			return
		}
		if _, err := server.Write(got[:]); err != nil {
			serverDone <- err
			return
		}
		serverDone <- server.Close()
	}()

	clientSent := make(chan error, 1)
	go func() {
		_, err := io.Copy(client, stream(1, n))
		if err == nil {
			err = client.CloseWrite()
		}
		clientSent <- err
	}()
	received := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(client)
		received <- result{err: err, sum: sha256.Sum256(b[:max(0, len(b)-32)])}
		if len(b) >= 32 {
			received <- result{sum: [32]byte(b[len(b)-32:])}
		}
	}()

	timeout := time.After(testTimeout)
	for _, ch := range []chan error{clientSent, serverDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("transfer timed out")
		}
	}
	var bulk, reply result
	select {
	case bulk = <-received:
	case <-timeout:
		t.Fatal("client read timed out")
	}
	if bulk.err != nil {
		t.Fatalf("client read: %v", bulk.err)
	}
	reply = <-received
	if want := sum(stream(2, n)); bulk.sum != want {
		t.Errorf("client received wrong data from server")
	}
	if want := sum(stream(1, n)); reply.sum != want {
		t.Errorf("server received wrong data from client")
	}
}

func TestTransfer(t *testing.T) {
	v4A, v4B := []netip.Addr{addrA4}, []netip.Addr{addrB4}
	dualA, dualB := []netip.Addr{addrA4, addrA6}, []netip.Addr{addrB4, addrB6}
	for _, tc := range []struct {
		name           string
		cfg            Config
		addrsA, addrsB []netip.Addr
		dst            netip.Addr
	}{
		{"ipv4", Config{}, v4A, v4B, addrB4},
		{"ipv6", Config{}, []netip.Addr{addrA6}, []netip.Addr{addrB6}, addrB6},
		{"dual-stack listener, ipv4", Config{}, dualA, dualB, addrB4},
		{"dual-stack listener, ipv6", Config{}, dualA, dualB, addrB6},
		{"64 KiB buffers", Config{TCPBufferSize: 64 << 10}, v4A, v4B, addrB4},
		{"verifying checksums", Config{VerifyChecksums: true}, v4A, v4B, addrB4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goroutineLeakCheck(t)
			a, b, p := pair(t, tc.cfg, tc.addrsA, tc.addrsB)
			client, server := connect(t, a, b, tc.dst, 80)
			want := tc.addrsA[0]
			if tc.dst.Is6() {
				want = tc.addrsA[len(tc.addrsA)-1]
			}
			if got := server.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); got != want {
				t.Errorf("server sees client at %v, want %v", got, want)
			}
			transfer(t, client, server, 4<<20)

			if got := p.maxBatch.Load(); got < 2 {
				t.Errorf("Device.Read returned at most %d packets per call", got)
			}
			if st := a.Stats(); st.PacketsOut == 0 || st.BytesOut < 4<<20 || st.PacketsIn == 0 || st.BytesIn < 4<<20 {
				t.Errorf("stats: %+v", st)
			}
			// Full-sized segments of one connection in a batch are joined
			// before TCP (GRO), except where the stack verifies checksums:
			// a joined segment's are not recomputed.
			for _, s := range []*Stack{a, b} {
				segs, pkts := s.stack.Stats().TCP.ValidSegmentsReceived.Value(), s.Stats().PacketsIn
				switch {
				case tc.cfg.VerifyChecksums && segs != pkts:
					t.Errorf("verifying checksums, TCP handled %d segments of %d packets; want each on its own", segs, pkts)
				case !tc.cfg.VerifyChecksums && segs*2 > pkts:
					t.Errorf("TCP handled %d segments of %d packets; want batches joined, at most half as many", segs, pkts)
				}
			}
			for _, c := range []*TCPConn{client, server} {
				ops := c.ep.SocketOptions()
				if snd, rcv := ops.GetSendBufferSize(), ops.GetReceiveBufferSize(); snd > int64(a.cfg.TCPBufferSize) || rcv > int64(a.cfg.TCPBufferSize) {
					t.Errorf("buffers grew to send %d, receive %d; cap %d", snd, rcv, a.cfg.TCPBufferSize)
				}
			}
		})
	}
}

func TestAbortSendsReset(t *testing.T) {
	goroutineLeakCheck(t)
	a, b, _ := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 2000)

	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	server.Abort()

	client.SetReadDeadline(time.Now().Add(testTimeout))
	_, err := client.Read(buf)
	if !errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("client Read after peer's Abort: %v, want connection reset", err)
	}
	if _, err := server.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Abort: %v, want net.ErrClosed", err)
	}
	server.Close() // no-op after Abort
}

func TestCloseSendsFIN(t *testing.T) {
	a, b, _ := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 2000)
	server.Close()
	server.Abort() // no-op after Close
	client.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client Read after peer's Close: %d, %v; want EOF", n, err)
	}
}

func TestDialRefused(t *testing.T) {
	a, _, _ := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB4, 9))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("DialTCP to a closed port: %v, want ECONNREFUSED", err)
	}
}

func TestDialContextCanceled(t *testing.T) {
	goroutineLeakCheck(t)
	a, _, p := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	p.cut.Store(true) // the SYN goes nowhere
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB4, 80))
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("DialTCP: %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("DialTCP ignored its context")
	}
}

func TestKeepAliveSet(t *testing.T) {
	cfg := Config{KeepAliveIdle: 42 * time.Second, KeepAliveInterval: 7 * time.Second, KeepAliveCount: 3}
	a, b, _ := pair(t, cfg, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 80)
	for name, c := range map[string]*TCPConn{"dialed": client, "accepted": server} {
		var idle tcpip.KeepaliveIdleOption
		var intvl tcpip.KeepaliveIntervalOption
		if err := c.ep.GetSockOpt(&idle); err != nil {
			t.Fatal(err)
		}
		if err := c.ep.GetSockOpt(&intvl); err != nil {
			t.Fatal(err)
		}
		count, err := c.ep.GetSockOptInt(tcpip.KeepaliveCountOption)
		if err != nil {
			t.Fatal(err)
		}
		if !c.ep.SocketOptions().GetKeepAlive() || time.Duration(idle) != cfg.KeepAliveIdle ||
			time.Duration(intvl) != cfg.KeepAliveInterval || count != cfg.KeepAliveCount {
			t.Errorf("%s: keepalive %v, idle %v, interval %v, count %d; want true, %v, %v, %d", name,
				c.ep.SocketOptions().GetKeepAlive(), time.Duration(idle), time.Duration(intvl), count,
				cfg.KeepAliveIdle, cfg.KeepAliveInterval, cfg.KeepAliveCount)
		}
	}
}

// A lost SYN-ACK must not leave the connection with a retransmission
// timeout of seconds. gVisor retransmits it with the first one's
// timestamp, so the handshake's RTT sample includes the 1 s it waited:
// without maxRTO the connection started with an RTO of 3 s on a path of
// microseconds, and every flight lost later stalled it that long, doubled
// per lost retransmission (issue 16: a download over UDP hung for 30 s
// under loss).
func TestRTOStaysBoundedAfterALostSYNACK(t *testing.T) {
	goroutineLeakCheck(t)
	a, b, p := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	var dropped atomic.Bool
	dropFirstSYNACK := func(packet []byte) bool {
		return isSYNACK(packet) && dropped.CompareAndSwap(false, true)
	}
	p.drop.Store(&dropFirstSYNACK)
	client, server := connect(t, a, b, addrB4, 80)
	if !dropped.Load() {
		t.Fatal("no SYN-ACK was dropped")
	}
	transfer(t, client, server, 256<<10)
	for _, c := range []struct {
		name string
		conn *TCPConn
	}{{"dialer", client}, {"listener", server}} {
		var info tcpip.TCPInfoOption
		if err := c.conn.ep.GetSockOpt(&info); err != nil {
			t.Fatal(err)
		}
		if info.RTO > maxRTO {
			t.Errorf("%s: RTO %v (smoothed RTT %v) after a lost SYN-ACK, want at most %v", c.name, info.RTO, info.RTT, maxRTO)
		}
	}
}

// A download that loses bursts of packets, each but one in its middle, as a
// full queue on the path drops them (the relay's UDP window did so in fast
// downloads), repairs each in at most a retransmission timeout or two over a
// LossyLink. With gVisor's default loss recovery (RACK; LossyLink false) a
// burst that left fewer than three segments SACKed above it was repaired at
// two segments per timeout: 2.7 KB every 200 ms, 45 s for a burst of 440
// packets, and this test fails (configure).
func TestBurstLoss(t *testing.T) {
	goroutineLeakCheck(t)
	a, b, p := pair(t, Config{MTU: 1420, LossyLink: true}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 80)

	// From the server's 3,001st full-sized data packet on, every 2,000th
	// starts a burst: the first transmissions among the 440 packets from it
	// are lost, but for the 200th, as long as they are sent within 50 ms of
	// the burst's first (a queue drains). Retransmissions get through. Where
	// a burst meets a flight in its middle, or a slowed sender, fewer are lost.
	const bursts, every, length, survivor = 4, 2000, 440, 200
	var (
		mu    sync.Mutex
		sent  = map[uint32]bool{} // the sequence numbers sent before
		k     int
		lost  [bursts]int
		until time.Time
	)
	drop := func(packet []byte) bool {
		if len(packet) < header.IPv4MinimumSize+header.TCPMinimumSize || packet[0]>>4 != 4 {
			return false
		}
		ip := header.IPv4(packet)
		seg := header.TCP(packet[ip.HeaderLength():])
		if ip.SourceAddress() != tcpip.AddrFrom4(addrB4.As4()) || len(seg.Payload()) < 1000 {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		k++
		again := sent[seg.SequenceNumber()]
		sent[seg.SequenceNumber()] = true
		burst, i := (k-3001)/every, (k-3001)%every
		switch {
		case k <= 3000 || burst >= bursts || i >= length:
			return false
		case i == 0:
			until = time.Now().Add(50 * time.Millisecond)
		}
		if again || i == survivor || time.Now().After(until) {
			return false
		}
		lost[burst]++
		return true
	}
	p.drop.Store(&drop)

	const n = 16 << 20
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(server, stream(5, n))
		if err == nil {
			err = server.Close()
		}
		done <- err
	}()
	got := make(chan [32]byte, 1)
	go func() { got <- sum(client) }()
	timeouts := func() uint64 { return b.stack.Stats().TCP.Timeouts.Value() }
	select {
	case h := <-got:
		if h != sum(stream(5, n)) {
			t.Fatal("the client received other data than the server sent")
		}
	case <-time.After(30 * time.Second):
		client.Abort()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("16 MiB not through in 30 s with bursts of %v packets lost, after %d retransmission timeouts", lost, timeouts())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range lost {
		if c == 0 {
			t.Fatalf("burst %d lost no packet (lost: %v)", i+1, lost)
		}
	}
	t.Logf("lost %v, timeouts %d", lost, timeouts())
	if to := timeouts(); to > 2*bursts {
		t.Errorf("%d retransmission timeouts to repair %d bursts of %v packets lost, want at most %d", to, bursts, lost, 2*bursts)
	}
}

// isSYNACK reports whether packet is an IPv4 TCP segment with SYN and ACK.
func isSYNACK(packet []byte) bool {
	if len(packet) < 20 || packet[0]>>4 != 4 || packet[9] != 6 {
		return false
	}
	ihl := int(packet[0]&0xf) * 4
	const syn, ack = 0x02, 0x10
	return len(packet) > ihl+13 && packet[ihl+13]&(syn|ack) == syn|ack
}

func TestKeepAliveDetectsVanishedPeer(t *testing.T) {
	goroutineLeakCheck(t)
	// Detection takes idle + interval*count = 1.2s; a live peer has 1s to
	// answer a probe, which a loaded test machine needs.
	cfg := Config{KeepAliveIdle: 200 * time.Millisecond, KeepAliveInterval: 250 * time.Millisecond, KeepAliveCount: 4}
	a, b, p := pair(t, cfg, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 80)

	// Keepalives flow while the peers can reach each other: a read on an
	// idle connection is still blocked after many probe rounds.
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	before := a.Stats().PacketsOut
	server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := server.Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Fatalf("idle Read with a live peer: %v, want a deadline timeout", err)
	}
	if a.Stats().PacketsOut == before {
		t.Error("no keepalive probes sent on an idle connection")
	}
	server.SetReadDeadline(time.Time{})

	// Now the peers vanish: both blocked reads must fail.
	p.cut.Store(true)
	errs := make(chan error, 2)
	for _, c := range []*TCPConn{client, server} {
		go func() {
			_, err := c.Read(make([]byte, 1))
			errs <- err
		}()
	}
	timeout := time.After(10 * time.Second)
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, syscall.ETIMEDOUT) {
				t.Errorf("Read after the peer vanished: %v, want ETIMEDOUT", err)
			}
		case <-timeout:
			t.Fatal("vanished peer not detected within 10s")
		}
	}
}

// TestNoKeepalivesAfterClose: once both ends closed, neither sends
// anything more, keepalive probes included. gVisor counts TIME_WAIT as
// connected and kept the keepalive timer running there: 60 s after a
// closed connection's last packet (TIME_WAIT lasts as long), a probe went
// out, and over the tunnel it woke an idle hub's WireGuard peer.
func TestNoKeepalivesAfterClose(t *testing.T) {
	cfg := Config{KeepAliveIdle: 200 * time.Millisecond, KeepAliveInterval: 250 * time.Millisecond, KeepAliveCount: 4}
	a, b, _ := pair(t, cfg, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 80)
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	server.Close() // the server's end goes to TIME_WAIT
	client.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client Read after the server's Close: %d, %v; want EOF", n, err)
	}
	client.Close()
	sent := func() uint64 { return a.Stats().PacketsOut + b.Stats().PacketsOut }
	// The closing handshake's last ACK, then quiet: no count moves for
	// 100 ms, well below the keepalive's 200 ms.
	last := sent()
	poll.Until(t, testTimeout, "the closing handshake to end", func() bool {
		time.Sleep(100 * time.Millisecond)
		n := sent()
		quiet := n == last
		last = n
		return quiet
	})
	time.Sleep(cfg.KeepAliveIdle + 3*cfg.KeepAliveInterval)
	if n := sent(); n != last {
		t.Errorf("%d packets sent after both ends closed; want none (keepalive probes in TIME_WAIT?)", n-last)
	}
}

func TestClose(t *testing.T) {
	goroutineLeakCheck(t)
	a, b, _ := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, _ := connect(t, a, b, addrB4, 80)
	ln, err := b.ListenTCP(81)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	read := make(chan error, 1)
	go func() {
		_, err := client.Read(make([]byte, 1))
		read <- err
	}()
	if ev := <-a.Device().Events(); ev != tun.EventUp {
		t.Errorf("first event %v, want EventUp", ev)
	}

	a.Close()
	b.Close()
	b.Close() // idempotent

	for name, ch := range map[string]chan error{"Accept": accepted, "Read": read} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s after Close succeeded", name)
			}
			if name == "Accept" && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s still blocked after Close", name)
		}
	}
	bufs, sizes := [][]byte{make([]byte, 1500)}, []int{0}
	if _, err := a.Device().Read(bufs, sizes, 0); err != os.ErrClosed {
		t.Errorf("Device.Read after Close: %v, want os.ErrClosed", err)
	}
	if _, err := a.Device().Write(bufs, 0); err != os.ErrClosed {
		t.Errorf("Device.Write after Close: %v, want os.ErrClosed", err)
	}
	if _, ok := <-a.Device().Events(); ok {
		t.Error("Events not closed after Close")
	}
	if _, err := a.DialTCP(context.Background(), netip.AddrPortFrom(addrB4, 80)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DialTCP after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.ListenTCP(80); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenTCP after Close: %v, want net.ErrClosed", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

func TestListenerClose(t *testing.T) {
	s := newStack(t, Config{Addrs: []netip.Addr{addrA4}})
	ln, err := s.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListenTCP(80); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second ListenTCP on a port: %v, want EADDRINUSE", err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	ln.Close()
	ln.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Accept still blocked after Close")
	}
	if ln, err = s.ListenTCP(80); err != nil {
		t.Fatalf("port not free after Close: %v", err)
	}
	ln.Close()
}

func TestConfig(t *testing.T) {
	v4 := []netip.Addr{addrA4}
	for _, tc := range []struct {
		cfg     Config
		wantErr string
	}{
		{Config{}, "Addrs"},
		{Config{Addrs: []netip.Addr{{}}}, "Addrs[0]"},
		{Config{Addrs: []netip.Addr{netip.IPv4Unspecified()}}, "Addrs[0]"},
		{Config{Addrs: v4, MTU: 100}, "MTU"},
		{Config{Addrs: []netip.Addr{addrA6}, MTU: 1000}, "MTU"},
		{Config{Addrs: v4, KeepAliveIdle: -1}, "KeepAliveIdle"},
		{Config{Addrs: v4, KeepAliveInterval: -1}, "KeepAliveInterval"},
		{Config{Addrs: v4, KeepAliveCount: -1}, "KeepAliveCount"},
		{Config{Addrs: v4, TCPBufferSize: 100}, "TCPBufferSize"},
		{Config{Addrs: v4}, ""},
		{Config{Addrs: []netip.Addr{netip.MustParseAddr("::ffff:10.1.2.3")}, MTU: 1000}, ""},
	} {
		s, err := New(tc.cfg)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("New(%+v): %v", tc.cfg, err)
				continue
			}
			s.Close()
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.cfg, err, tc.wantErr)
		}
	}

	s := newStack(t, Config{Addrs: v4})
	want := Config{Addrs: v4, MTU: 1420, KeepAliveIdle: 60 * time.Second, KeepAliveInterval: 15 * time.Second,
		KeepAliveCount: 4, TCPBufferSize: 1 << 20}
	if s.cfg.MTU != want.MTU || s.cfg.KeepAliveIdle != want.KeepAliveIdle || s.cfg.KeepAliveInterval != want.KeepAliveInterval ||
		s.cfg.KeepAliveCount != want.KeepAliveCount || s.cfg.TCPBufferSize != want.TCPBufferSize {
		t.Errorf("defaults: %+v, want %+v", s.cfg, want)
	}
	if mtu, _ := s.Device().MTU(); mtu != 1420 {
		t.Errorf("Device.MTU = %d", mtu)
	}
	var rcv tcpip.TCPReceiveBufferSizeRangeOption
	var snd tcpip.TCPSendBufferSizeRangeOption
	s.stack.TransportProtocolOption(6, &rcv)
	s.stack.TransportProtocolOption(6, &snd)
	if rcv.Max != 1<<20 || snd.Max != 1<<20 {
		t.Errorf("buffer caps: receive %+v, send %+v; want Max 1 MiB", rcv, snd)
	}
	var sack tcpip.TCPSACKEnabled
	if s.stack.TransportProtocolOption(6, &sack); !sack {
		t.Error("SACK not enabled")
	}
}

// testPackets returns n outbound packets as the stack builds them: a header
// pushed in front of a payload. Packet i is bytes {i, i, ...}.
func testPackets(n, size int) (stack.PacketBufferList, [][]byte) {
	var pkts stack.PacketBufferList
	var want [][]byte
	for i := range n {
		p := bytes.Repeat([]byte{byte(i)}, size)
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
			ReserveHeaderBytes: 20,
			Payload:            buffer.MakeWithData(p[20:]),
		})
		copy(pkt.NetworkHeader().Push(20), p[:20])
		pkts.PushBack(pkt)
		want = append(want, p)
	}
	return pkts, want
}

func TestDeviceReadBatch(t *testing.T) {
	s := newStack(t, Config{Addrs: []netip.Addr{addrA4}})
	pkts, want := testPackets(5, 100)
	defer pkts.DecRef()
	if n, err := s.link.WritePackets(pkts); n != 5 || err != nil {
		t.Fatalf("WritePackets: %d, %v", n, err)
	}
	const offset = 8
	bufs := make([][]byte, s.Device().BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, offset+1500)
	}
	sizes := make([]int, len(bufs))
	n, err := s.Device().Read(bufs, sizes, offset)
	if n != 5 || err != nil {
		t.Fatalf("Read: %d, %v; want all 5 queued packets", n, err)
	}
	for i := range n {
		if got := bufs[i][offset : offset+sizes[i]]; !bytes.Equal(got, want[i]) {
			t.Errorf("packet %d: %x, want %x", i, got, want[i])
		}
	}

	// A reader's batch smaller than the queue gets the oldest packets.
	if n, err := s.link.WritePackets(pkts); n != 5 || err != nil {
		t.Fatalf("WritePackets: %d, %v", n, err)
	}
	if n, err := s.Device().Read(bufs[:2], sizes, offset); n != 2 || err != nil || bufs[1][offset] != 1 {
		t.Fatalf("Read into 2 buffers: %d, %v", n, err)
	}
	if n, err := s.Device().Read(bufs, sizes, offset); n != 3 || err != nil || bufs[0][offset] != 2 {
		t.Fatalf("Read of the rest: %d, %v", n, err)
	}

	// The queue drops, never blocks, when WireGuard does not read.
	for range queueLen/5 + 1 {
		s.link.WritePackets(pkts)
	}
	if st := s.Stats(); st.Dropped == 0 {
		t.Errorf("full queue dropped nothing: %+v", st)
	}
}

// TestDeviceReadAllocs: queueing and reading packets allocates nothing,
// unbounded and with MaxInFlight (the bind reporting them sent).
func TestDeviceReadAllocs(t *testing.T) {
	for _, max := range []int{0, 8} {
		s := newStack(t, Config{Addrs: []netip.Addr{addrA4}, MaxInFlight: max})
		pkts, _ := testPackets(8, 1400)
		defer pkts.DecRef()
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 1500)
		}
		sizes := make([]int, len(bufs))
		allocs := testing.AllocsPerRun(100, func() {
			s.link.WritePackets(pkts)
			if n, err := s.Device().Read(bufs, sizes, 0); n != 8 || err != nil {
				t.Fatalf("Read: %d, %v", n, err)
			}
			if max > 0 {
				s.Sent(8)
			}
		})
		if allocs != 0 {
			t.Errorf("MaxInFlight %d: %v allocations per queue and read of 8 packets, want 0", max, allocs)
		}
	}
}

func BenchmarkTCPThroughput(b *testing.B) {
	a, s, _ := pair(b, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	benchmarkThroughput(b, a, s)
}

// benchmarkThroughput measures one TCP connection from a to s.
func benchmarkThroughput(b *testing.B, a, s *Stack) {
	client, server := connect(b, a, s, s.cfg.Addrs[0], 80)
	chunk := make([]byte, 64<<10)
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		done <- n
	}()
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := client.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	client.CloseWrite()
	if n := <-done; n != int64(b.N*len(chunk)) {
		b.Fatalf("server read %d bytes, want %d", n, b.N*len(chunk))
	}
}

func TestDeviceReadMaxInFlight(t *testing.T) {
	s := newStack(t, Config{Addrs: []netip.Addr{addrA4}, MaxInFlight: 3})
	pkts, _ := testPackets(5, 100)
	defer pkts.DecRef()
	s.link.WritePackets(pkts)
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, len(bufs))
	if n, err := s.Device().Read(bufs, sizes, 0); n != 3 || err != nil || bufs[0][0] != 0 {
		t.Fatalf("Read: %d, %v; want the 3 oldest packets", n, err)
	}

	// With 3 in WireGuard, Read waits until Sent counts some out.
	got := make(chan int, 1)
	go func() {
		n, _ := s.Device().Read(bufs, sizes, 0)
		got <- n
	}()
	s.Sent(1)
	if n := <-got; n != 1 || bufs[0][0] != 3 {
		t.Fatalf("Read after Sent(1): %d packets, first %d; want 1, packet 3", n, bufs[0][0])
	}

	// Packets WireGuard drops are forgotten after inflight.StallTimeout.
	start := time.Now()
	if n, err := s.Device().Read(bufs, sizes, 0); n != 1 || err != nil || bufs[0][0] != 4 {
		t.Fatalf("Read without Sent: %d, %v", n, err)
	}
	if d := time.Since(start); d < inflight.StallTimeout {
		t.Errorf("Read without Sent returned after %v, before inflight.StallTimeout", d)
	}

	// More Sent than handed out (WireGuard's own messages) never makes room
	// beyond the bound.
	s.Sent(100)
	s.link.WritePackets(pkts)
	if n, _ := s.Device().Read(bufs, sizes, 0); n != 3 {
		t.Fatalf("Read after Sent(100): %d, want 3", n)
	}

	// Close wakes a Read waiting for room.
	go func() {
		_, err := s.Device().Read(bufs, sizes, 0)
		got <- map[bool]int{true: 1}[errors.Is(err, os.ErrClosed)]
	}()
	s.Close()
	if <-got != 1 {
		t.Error("Read waiting for room did not return os.ErrClosed on Close")
	}
}

func TestTransferMaxInFlight(t *testing.T) {
	goroutineLeakCheck(t)
	// The pump plays a bind that reports each batch once written.
	a, b, _ := pair(t, Config{MaxInFlight: 16}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reports lag behind: forgotten packets must not stall it
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				a.Sent(16)
				b.Sent(16)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	client, server := connect(t, a, b, addrB4, 80)
	transfer(t, client, server, 4<<20)
}

// TestWhenReadable: the callback comes once whatever makes a Read not
// block (data, the peer's FIN or reset, this side's Close or Abort), and
// the Read it runs returns at once. Nothing is called before.
func TestWhenReadable(t *testing.T) {
	tests := []struct {
		name    string
		do      func(client, server *TCPConn) // makes server readable
		wantN   int                           // bytes server's Read returns
		wantErr error                         // and its error (errors.Is)
	}{
		{"data", func(c, _ *TCPConn) { c.Write([]byte("hi")) }, 2, nil},
		{"peer FIN", func(c, _ *TCPConn) { c.CloseWrite() }, 0, io.EOF},
		{"peer reset", func(c, _ *TCPConn) { c.Abort() }, 0, syscall.ECONNRESET},
		{"Close", func(_, s *TCPConn) { s.Close() }, 0, net.ErrClosed},
		{"Abort", func(_, s *TCPConn) { s.Abort() }, 0, net.ErrClosed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goroutineLeakCheck(t)
			a, b, _ := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
			client, server := connect(t, a, b, addrB4, uint16(2000+i))
			defer client.Close()
			defer server.Close()

			fired := make(chan struct{}, 2)
			server.WhenReadable(func() { fired <- struct{}{} })
			select {
			case <-fired:
				t.Fatal("called before anything arrived")
			default:
			}
			tt.do(client, server)
			select {
			case <-fired:
			case <-time.After(testTimeout):
				t.Fatal("not called")
			}
			server.SetReadDeadline(time.Now().Add(testTimeout))
			n, err := server.Read(make([]byte, 8))
			if n != tt.wantN || (tt.wantErr == nil) != (err == nil) || (err != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Read after the call: %d, %v; want %d, %v", n, err, tt.wantN, tt.wantErr)
			}
			if len(fired) != 0 {
				t.Error("called twice")
			}
		})
	}
}
