package netstack

import (
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// bareACK reports whether packet is an IPv4 TCP segment with the ACK flag
// alone and no payload, and returns its ACK number.
func bareACK(packet []byte) (uint32, bool) {
	if len(packet) < header.IPv4MinimumSize || packet[0]>>4 != 4 || packet[9] != 6 {
		return 0, false
	}
	ip := header.IPv4(packet)
	tcp := header.TCP(packet[ip.HeaderLength():])
	if len(tcp) < header.TCPMinimumSize || int(ip.TotalLength()) != int(ip.HeaderLength())+int(tcp.DataOffset()) {
		return 0, false
	}
	return tcp.AckNumber(), tcp.Flags() == header.TCPFlagAck
}

// countBareACKs has p count the bare ACKs it carries from then on.
func countBareACKs(p *pump) *atomic.Int64 {
	n := new(atomic.Int64)
	count := func(packet []byte) bool {
		if _, ok := bareACK(packet); ok {
			n.Add(1)
		}
		return false
	}
	p.drop.Store(&count)
	return n
}

// exchange has client send a 100-byte request and server answer it with
// 100 bytes, rounds times.
func exchange(t *testing.T, client, server *TCPConn, rounds int) {
	t.Helper()
	req, answer := make([]byte, 100), make([]byte, 100)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, len(req))
		for range rounds {
			if _, err := io.ReadFull(server, buf); err != nil {
				done <- err
				return
			}
			if _, err := server.Write(answer); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, len(answer))
	for range rounds {
		if _, err := client.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A request answered at once goes as two packets, not four: the answer
// carries the ACK of the request, the next request the ACK of the answer.
func TestAnswerCarriesTheACK(t *testing.T) {
	const rounds = 40
	for _, c := range []struct {
		name     string
		delay    time.Duration
		min, max int64 // bare ACKs in the exchanges
	}{
		// gVisor's own: each end acknowledges each segment at once.
		{"no delay", -1, rounds, 2 * rounds},
		// At most the last answer's ACK, and a few where the machine
		// stalled a goroutine for the whole delay.
		{"delayed", 0, 0, rounds / 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			goroutineLeakCheck(t)
			a, b, p := pair(t, Config{AckDelay: c.delay}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
			client, server := connect(t, a, b, addrB4, 80)
			acks := countBareACKs(p)
			exchange(t, client, server, rounds)
			n := acks.Load()
			if n < c.min || n > c.max {
				t.Errorf("%d bare ACKs in %d requests and answers, want %d to %d", n, rounds, c.min, c.max)
			}
			// Every ACK but the last answer's either went or was carried.
			carried := a.Stats().AcksCarried + b.Stats().AcksCarried
			if c.delay < 0 && carried != 0 || c.delay == 0 && carried+uint64(n) < 2*rounds-1 {
				t.Errorf("stats say %d ACKs were carried by later packets, %d went", carried, n)
			}
		})
	}
}

// Data nobody answers is still acknowledged, after the delay.
func TestUnansweredDataIsAcknowledged(t *testing.T) {
	goroutineLeakCheck(t)
	a, b, p := pair(t, Config{}, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	client, server := connect(t, a, b, addrB4, 80)
	var sent, acked atomic.Uint32 // the client's data ends at sent; the server's last bare ACK
	watch := func(packet []byte) bool {
		ip := header.IPv4(packet)
		if ack, ok := bareACK(packet); ok && ip.SourceAddress() == tcpip.AddrFrom4(addrB4.As4()) {
			acked.Store(ack)
		} else if tcp := header.TCP(ip.Payload()); ip.SourceAddress() == tcpip.AddrFrom4(addrA4.As4()) && len(tcp.Payload()) > 0 {
			sent.Store(tcp.SequenceNumber() + uint32(len(tcp.Payload())))
		}
		return false
	}
	p.drop.Store(&watch)
	if _, err := client.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, testTimeout, "the server's ACK of the client's 100 bytes", func() bool {
		return sent.Load() != 0 && acked.Load() == sent.Load()
	})
	if got := b.Stats().AcksCarried; got != 0 {
		t.Errorf("server: %d ACKs carried, but it sent nothing else", got)
	}
}

// testSegment builds an outbound IPv4 TCP segment from port sport of
// addrA4 to port 80 of addrB4 as the stack does: headers pushed in front of
// the payload.
func testSegment(sport uint16, flags header.TCPFlags, ack uint32, payload int, opts []byte) *stack.PacketBuffer {
	tcpLen := header.TCPMinimumSize + len(opts)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.IPv4MinimumSize + tcpLen,
		Payload:            buffer.MakeWithData(make([]byte, payload)),
	})
	tcp := header.TCP(pkt.TransportHeader().Push(tcpLen))
	tcp.Encode(&header.TCPFields{SrcPort: sport, DstPort: 80, SeqNum: 1, AckNum: ack,
		DataOffset: uint8(tcpLen), Flags: flags, WindowSize: 65535})
	copy(tcp[header.TCPMinimumSize:], opts)
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + tcpLen + payload),
		TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(addrA4.As4()), DstAddr: tcpip.AddrFrom4(addrB4.As4())})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	return pkt
}

// The rules of delack.go, one packet at a time on one connection.
func TestWhichACKsWait(t *testing.T) {
	const ack = header.TCPFlagAck
	sack := []byte{header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionSACK, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	l := newLink(defaultMTU, 0, false, nil, time.Hour)
	defer l.Close()
	// Another port whose connection shares a slot with port 1000's.
	slot := func(port uint16) int {
		pkt := testSegment(port, ack, 0, 0, nil)
		defer pkt.DecRef()
		k, _ := flowOf(pkt.NetworkHeader().Slice(), header.TCP(pkt.TransportHeader().Slice()))
		return k.slot()
	}
	other := uint16(1001)
	for slot(other) != slot(1000) {
		other++
	}

	steps := []struct {
		what    string
		port    uint16
		flags   header.TCPFlags
		ack     uint32
		payload int
		opts    []byte
		waits   int    // ACKs waiting after the step
		queued  int    // packets in the ring after it
		carried uint64 // ACKs carried so far
	}{
		{"the first ACK of an unknown connection", 1000, ack, 1000, 0, nil, 0, 1, 0},
		{"data", 1000, ack | header.TCPFlagPsh, 1000, 200, nil, 0, 2, 0},
		{"an ACK of 100 new bytes", 1000, ack, 1100, 0, nil, 1, 2, 0},
		{"a second ACK while one waits", 1000, ack, 1200, 0, nil, 0, 3, 1},
		{"an ACK of nothing new", 1000, ack, 1200, 0, nil, 0, 4, 1},
		{"an ACK of more than a segment", 1000, ack, 1200 + ackAtMost + 1, 0, nil, 0, 5, 1},
		{"an ACK with SACK blocks", 1000, ack, 2700, 0, sack, 0, 6, 1},
		{"an ACK of 100 new bytes, again", 1000, ack, 2800, 0, nil, 1, 6, 1},
		{"data carries it", 1000, ack | header.TCPFlagPsh, 2800, 10, nil, 0, 7, 2},
		{"an ACK of 100 new bytes, once more", 1000, ack, 2900, 0, nil, 1, 7, 2},
		{"another connection takes the slot", other, ack | header.TCPFlagPsh, 5, 10, nil, 0, 9, 2},
		{"the first connection's next ACK", 1000, ack, 3000, 0, nil, 0, 10, 2},
		{"its FIN", 1000, ack | header.TCPFlagFin, 3000, 0, nil, 0, 11, 2},
		{"an ACK after the FIN", 1000, ack, 3001, 0, nil, 0, 12, 2},
		{"a SYN-ACK", 1000, header.TCPFlagSyn | ack, 9001, 0, nil, 0, 13, 2},
		{"an ACK of 100 bytes after it", 1000, ack, 9101, 0, nil, 1, 13, 2},
		{"a RST", 1000, header.TCPFlagRst | ack, 9101, 0, nil, 0, 14, 3},
	}
	for _, s := range steps {
		var pkts stack.PacketBufferList
		pkts.PushBack(testSegment(s.port, s.flags, s.ack, s.payload, s.opts))
		if n, err := l.WritePackets(pkts); n != 1 || err != nil {
			t.Fatalf("%s: WritePackets %d, %v", s.what, n, err)
		}
		pkts.DecRef()
		l.mu.Lock()
		waits, queued, carried := l.mu.acks.held, l.mu.n, l.acksCarried.Load()
		l.mu.Unlock()
		if waits != s.waits || queued != s.queued || carried != s.carried {
			t.Fatalf("%s: %d waiting, %d queued, %d carried; want %d, %d, %d",
				s.what, waits, queued, carried, s.waits, s.queued, s.carried)
		}
	}
}

// A waiting ACK goes when its delay is over, and the link's Read hands it
// to WireGuard.
func TestWaitingACKGoesAfterTheDelay(t *testing.T) {
	l := newLink(defaultMTU, 0, false, nil, 5*time.Millisecond)
	defer l.Close()
	for _, a := range []uint32{1000, 1100} { // known, then 100 new bytes
		var pkts stack.PacketBufferList
		pkts.PushBack(testSegment(1000, header.TCPFlagAck, a, 0, nil))
		l.WritePackets(pkts)
		pkts.DecRef()
	}
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	for _, want := range []uint32{1000, 1100} {
		if n, err := l.read(bufs, sizes, 0); n != 1 || err != nil {
			t.Fatalf("read: %d, %v", n, err)
		}
		if got, ok := bareACK(bufs[0][:sizes[0]]); !ok || got != want {
			t.Fatalf("read ACK %d (bare %v), want %d", got, ok, want)
		}
	}
}
