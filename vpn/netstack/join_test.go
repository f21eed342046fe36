package netstack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// seg describes one inbound TCP segment for rawSegment.
type seg struct {
	v6      bool
	sport   uint16
	seq     uint32
	ack     uint32
	flags   header.TCPFlags
	window  uint16
	ttl     uint8
	opts    []byte
	payload int
}

// rawSegment builds seg as WireGuard hands it to Device.Write, offset bytes
// into the buffer, with payload bytes that tell its sequence numbers.
func rawSegment(s seg, offset int) []byte {
	if s.flags == 0 {
		s.flags = header.TCPFlagAck
	}
	if s.window == 0 {
		s.window = 1000
	}
	if s.ttl == 0 {
		s.ttl = 64
	}
	ip := header.IPv4MinimumSize
	if s.v6 {
		ip = header.IPv6MinimumSize
	}
	tcpLen := header.TCPMinimumSize + len(s.opts)
	b := make([]byte, offset+ip+tcpLen+s.payload)
	p := b[offset:]
	if s.v6 {
		header.IPv6(p).Encode(&header.IPv6Fields{PayloadLength: uint16(tcpLen + s.payload),
			TransportProtocol: header.TCPProtocolNumber, HopLimit: s.ttl,
			SrcAddr: tcpip.AddrFrom16(addrA6.As16()), DstAddr: tcpip.AddrFrom16(addrB6.As16())})
	} else {
		h := header.IPv4(p)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), TTL: s.ttl, Flags: header.IPv4FlagDontFragment,
			Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr:  tcpip.AddrFrom4(addrA4.As4()), DstAddr: tcpip.AddrFrom4(addrB4.As4())})
		h.SetChecksum(^h.CalculateChecksum())
	}
	t := header.TCP(p[ip:])
	t.Encode(&header.TCPFields{SrcPort: s.sport, DstPort: 80, SeqNum: s.seq, AckNum: s.ack,
		DataOffset: uint8(tcpLen), Flags: s.flags, WindowSize: s.window})
	copy(t[header.TCPMinimumSize:], s.opts)
	for i := range s.payload {
		p[ip+tcpLen+i] = byte(s.seq + uint32(i))
	}
	return b
}

// The runs join takes: segments that continue one another on one
// connection, nothing else, and never past 64 KiB.
func TestJoinRuns(t *testing.T) {
	const off = 16
	ts := []byte{header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionTS, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	ts2 := []byte{header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionTS, 10, 0, 0, 0, 2, 0, 0, 0, 2}
	// next follows s on its connection, with n bytes.
	next := func(s seg, n int) seg {
		s.seq += uint32(s.payload)
		s.payload = n
		return s
	}
	a := seg{sport: 1000, seq: 5000, ack: 77, payload: 1380}
	a6 := a
	a6.v6 = true
	with := func(s seg, f func(*seg)) seg { f(&s); return s }
	big := with(a, func(s *seg) { s.payload = 30000 })

	for _, tc := range []struct {
		name string
		segs []seg
		runs []int // the length of each run, in order
	}{
		{"one connection", []seg{a, next(a, 1380), next(next(a, 1380), 1380)}, []int{3}},
		{"ipv6", []seg{a6, next(a6, 1380), next(next(a6, 1380), 700)}, []int{3}},
		{"the last pushed", []seg{a, with(next(a, 500), func(s *seg) { s.flags = header.TCPFlagAck | header.TCPFlagPsh })}, []int{2}},
		{"a push ends a run", []seg{with(a, func(s *seg) { s.flags = header.TCPFlagAck | header.TCPFlagPsh }), next(a, 1380)}, []int{1, 1}},
		{"a window update", []seg{a, with(next(a, 1380), func(s *seg) { s.window = 3000 })}, []int{2}},
		{"a gap", []seg{a, with(next(a, 1380), func(s *seg) { s.seq++ })}, []int{1, 1}},
		{"a retransmission", []seg{a, a}, []int{1, 1}},
		{"another connection", []seg{a, with(next(a, 1380), func(s *seg) { s.sport++ })}, []int{1, 1}},
		{"another acknowledgment", []seg{a, with(next(a, 1380), func(s *seg) { s.ack++ })}, []int{1, 1}},
		{"another timestamp", []seg{with(a, func(s *seg) { s.opts = ts }), with(next(a, 1380), func(s *seg) { s.opts = ts2 })}, []int{1, 1}},
		{"the same timestamp", []seg{with(a, func(s *seg) { s.opts = ts }), with(next(a, 1380), func(s *seg) { s.opts = ts })}, []int{2}},
		{"another TTL", []seg{a, with(next(a, 1380), func(s *seg) { s.ttl = 3 })}, []int{1, 1}},
		{"a FIN", []seg{a, with(next(a, 1380), func(s *seg) { s.flags |= header.TCPFlagFin })}, []int{1, 1}},
		{"a bare ACK", []seg{a, next(a, 0), next(a, 1380)}, []int{1, 1, 1}},
		{"ipv4 and ipv6", []seg{a, with(next(a, 1380), func(s *seg) { s.v6 = true })}, []int{1, 1}},
		{"ipv4 and ipv6, headers as long", []seg{with(a, func(s *seg) { s.opts = make([]byte, 20) }), with(next(a, 1380), func(s *seg) { s.v6 = true })}, []int{1, 1}},
		{"two connections interleaved", []seg{a, with(a, func(s *seg) { s.sport++ }), next(a, 1380)}, []int{1, 1, 1}},
		{"64 KiB at most", []seg{big, next(big, 30000), next(next(big, 30000), 30000), next(next(next(big, 30000), 30000), 30000)}, []int{2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs := make([][]byte, len(tc.segs))
			for i, s := range tc.segs {
				bufs[i] = rawSegment(s, off)
			}
			var runs []int
			for i := 0; i < len(bufs); {
				end, hdr, total := run(bufs, off, i)
				runs = append(runs, end-i)
				if end-i > 1 {
					checkJoined(t, bufs[i:end], off, hdr, total)
				}
				i = end
			}
			if !slices.Equal(runs, tc.runs) {
				t.Errorf("runs %v, want %v", runs, tc.runs)
			}
		})
	}
}

// checkJoined checks join's packet of run: valid IP lengths (and an IPv4
// header checksum), the first segment's sequence number, the last one's
// window and flags, and all the data in order.
func checkJoined(t testing.TB, run [][]byte, off, hdr, total int) {
	t.Helper()
	b := join(run, off, hdr, total)
	got := b.Flatten()
	b.Release()
	first, last := run[0][off:], run[len(run)-1][off:]
	want := append([]byte(nil), first[hdr:]...)
	for _, p := range run[1:] {
		want = append(want, p[off+hdr:]...)
	}
	if len(got) != total || !bytes.Equal(got[hdr:], want) {
		t.Fatalf("joined packet of %d bytes does not carry the %d bytes of data in order", len(got), len(want))
	}
	ip := header.IPv4MinimumSize
	if first[0]>>4 == 6 {
		ip = header.IPv6MinimumSize
		if h := header.IPv6(got); int(h.PayloadLength()) != len(got)-ip {
			t.Errorf("IPv6 payload length %d, want %d", h.PayloadLength(), len(got)-ip)
		}
	} else if h := header.IPv4(got); !h.IsValid(len(got)) || !h.IsChecksumValid() || int(h.TotalLength()) != len(got) {
		t.Errorf("IPv4 header: total length %d of %d bytes, checksum valid %v", h.TotalLength(), len(got), h.IsChecksumValid())
	}
	tg, tf, tl := header.TCP(got[ip:]), header.TCP(first[ip:]), header.TCP(last[ip:])
	if tg.SequenceNumber() != tf.SequenceNumber() || tg.Flags() != tl.Flags() || tg.WindowSize() != tl.WindowSize() ||
		tg.AckNumber() != tf.AckNumber() || !bytes.Equal(tg[header.TCPMinimumSize:hdr-ip], tf[header.TCPMinimumSize:hdr-ip]) {
		t.Errorf("TCP header: seq %d flags %v window %d ack %d; want %d, %v, %d, %d",
			tg.SequenceNumber(), tg.Flags(), tg.WindowSize(), tg.AckNumber(),
			tf.SequenceNumber(), tl.Flags(), tl.WindowSize(), tf.AckNumber())
	}
}

// Over a link of the UDP transport's MTU, the stacks see joined packets,
// most of a transfer's data arrives in them, and every byte arrives, both
// address families; a stack that verifies checksums joins nothing.
func TestJoinedTransfer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		dst    netip.Addr
		joined bool
	}{
		{"ipv4", Config{MTU: 1420}, addrB4, true},
		{"ipv6", Config{MTU: 1420}, addrB6, true},
		{"verifying checksums", Config{MTU: 1420, VerifyChecksums: true}, addrB4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goroutineLeakCheck(t)
			a, b, _ := pair(t, tc.cfg, []netip.Addr{addrA4, addrA6}, []netip.Addr{addrB4, addrB6})
			client, server := connect(t, a, b, tc.dst, 80)
			transfer(t, client, server, 8<<20)
			for _, s := range []*Stack{a, b} {
				st := s.Stats()
				switch {
				case !tc.joined && st.Joined != 0:
					t.Errorf("%d packets joined; want none where the stack verifies checksums", st.Joined)
				case tc.joined && st.Joined*2 < st.PacketsIn:
					t.Errorf("%d of %d packets joined to the one before; want most", st.Joined, st.PacketsIn)
				}
			}
		})
	}
}

// FuzzJoin feeds run and join batches of arbitrary packets (what a hostile
// hub's WireGuard peer can write): nothing panics, and every run they join
// comes out as checkJoined wants it. The input is packets, each after a
// 2-byte length.
func FuzzJoin(f *testing.F) {
	const off = 16
	a := seg{sport: 1000, seq: 5000, ack: 77, payload: 1380}
	b := a
	b.seq += 1380
	var seed []byte
	for _, s := range []seg{a, b, {v6: true, seq: 1, payload: 40}, {seq: 41, payload: 7, flags: header.TCPFlagAck | header.TCPFlagPsh}} {
		p := rawSegment(s, 0)
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(p)))
		seed = append(seed, p...)
	}
	f.Add(seed)
	f.Add([]byte{0, 40, 0x45})
	f.Fuzz(func(t *testing.T, in []byte) {
		var bufs [][]byte
		for len(in) >= 2 && len(bufs) < 16 {
			n := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			bufs = append(bufs, append(make([]byte, off), in[2:2+n]...))
			in = in[2+n:]
		}
		for i := 0; i < len(bufs); {
			end, hdr, total := run(bufs, off, i)
			if end <= i || end > len(bufs) {
				t.Fatalf("run from %d ends at %d of %d", i, end, len(bufs))
			}
			if end-i > 1 {
				if total > joinMax {
					t.Fatalf("a run of %d bytes", total)
				}
				checkJoined(t, bufs[i:end], off, hdr, total)
			}
			i = end
		}
	})
}
