package vpn

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// TestStagingHandsOutABatchInSmallOnes: wireguard-go's own UDP bind reads
// 128 datagrams at a time (GRO where the kernel has it); through a Staging
// WireGuard gets every one of them, in order, whole and with its sender,
// in batches of 16 — and a datagram longer than a slot is cut short.
func TestStagingHandsOutABatchInSmallOnes(t *testing.T) {
	bind := conn.NewStdNetBind()
	fns, port, err := bind.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer bind.Close()
	st := NewStaging(fns[0], bind.BatchSize(), UDPSlot) // IPv4's

	src, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// 300 datagrams: runs of one size (which GRO coalesces) and odd ones
	// between, then one longer than a slot.
	var sent [][]byte
	for i := range 300 {
		size := 1452
		if i%37 == 0 {
			size = 60 + i
		}
		m := bytes.Repeat([]byte{byte(i)}, size)
		copy(m, fmt.Sprintf("#%d", i))
		sent = append(sent, m)
	}
	long := bytes.Repeat([]byte{0xAB}, UDPSlot+500)
	for _, m := range append(sent, long) {
		if _, err := src.Write(m); err != nil {
			t.Fatal(err)
		}
	}

	packets := make([][]byte, 16)
	for i := range packets {
		packets[i] = make([]byte, 65535)
	}
	sizes := make([]int, 16)
	eps := make([]conn.Endpoint, 16)
	var got [][]byte
	for calls := 0; len(got) < len(sent)+1 && calls < 1000; calls++ {
		if err := st.Fill(); err != nil {
			t.Fatal(err)
		}
		n := st.Take(packets, sizes, eps)
		if n > len(packets) {
			t.Fatalf("Take handed out %d messages into %d slots", n, len(packets))
		}
		for i := range n {
			if eps[i] == nil || eps[i].DstToString() != src.LocalAddr().String() {
				t.Fatalf("message %d: from %v, want %v", len(got), eps[i], src.LocalAddr())
			}
			got = append(got, bytes.Clone(packets[i][:sizes[i]]))
		}
	}
	if len(got) != len(sent)+1 {
		t.Fatalf("got %d messages, want %d", len(got), len(sent)+1)
	}
	for i, m := range sent {
		if !bytes.Equal(got[i], m) {
			t.Fatalf("message %d: %d bytes %q…, want %d bytes %q…", i, len(got[i]), got[i][:4], len(m), m[:4])
		}
	}
	if last := got[len(sent)]; len(last) != UDPSlot || last[0] != 0xAB {
		t.Errorf("the long datagram: %d bytes, want it cut to a slot's %d", len(last), UDPSlot)
	}
}
