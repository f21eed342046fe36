package uplink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/wire"
)

// twoFamilies is a bind whose Open returns two receive functions, as
// StdNetBind does with IPv4 and IPv6 sockets, and that records its sends.
type twoFamilies struct {
	conn.Bind
	sent int
}

// Open's receive functions read one message of 4 or 6 bytes: the family.
func (b *twoFamilies) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	family := func(f int) conn.ReceiveFunc {
		return func(bufs [][]byte, sizes []int, _ []conn.Endpoint) (int, error) {
			sizes[0] = f
			return 1, nil
		}
	}
	return []conn.ReceiveFunc{family(4), family(6)}, port, nil
}

func (b *twoFamilies) BatchSize() int { return 1 }
func (b *twoFamilies) Close() error   { return nil }

func (b *twoFamilies) Send(bufs [][]byte, _ conn.Endpoint) error {
	b.sent += len(bufs)
	return nil
}

func TestUDPBindOpenOneFamily(t *testing.T) {
	for _, c := range []struct {
		name string
		ipv6 func() bool
		want []int // what the returned receive functions answer
	}{
		{"ipv4 relay", func() bool { return false }, []int{4}},
		{"ipv6 relay", func() bool { return true }, []int{6}},
		{"family unknown", nil, []int{4, 6}},
	} {
		b := &UDPBind{Bind: &twoFamilies{}, IPv6: c.ipv6}
		fns, _, err := b.Open(0)
		if err != nil || len(fns) != len(c.want) {
			t.Fatalf("%s: Open: %d functions, %v; want %d", c.name, len(fns), err, len(c.want))
		}
		for i, fn := range fns {
			sizes := make([]int, 1)
			if n, err := fn([][]byte{make([]byte, 8)}, sizes, make([]conn.Endpoint, 1)); n != 1 || err != nil || sizes[0] != c.want[i] {
				t.Errorf("%s: function %d: %d, %v, family %d; want family %d", c.name, i, n, err, sizes[0], c.want[i])
			}
		}
	}

	// A bind with one socket (no IPv6 on the host) keeps it.
	pair := bindtest.NewChannelBinds()
	b := &UDPBind{Bind: pair[0], IPv6: func() bool { return true }}
	fns, _, err := b.Open(0)
	if err != nil || len(fns) != 1 {
		t.Fatalf("one-socket bind: %d functions, %v", len(fns), err)
	}
	b.Close()
}

func TestUDPBindSentCountsDataMessages(t *testing.T) {
	msg := func(typ byte, size int) []byte {
		m := make([]byte, size)
		m[0] = typ
		return m
	}
	for _, c := range []struct {
		name string
		bufs [][]byte
		want int
	}{
		{"data", [][]byte{msg(4, 80), msg(4, 1452)}, 2},
		{"keepalive", [][]byte{msg(4, 32)}, 0},
		{"handshakes", [][]byte{msg(1, 148), msg(2, 92), msg(3, 64)}, 0},
		{"mixed", [][]byte{msg(1, 148), msg(4, 32), msg(4, 100)}, 1},
		{"reserved bytes set", [][]byte{{4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}, 0},
		{"empty", nil, 0},
	} {
		inner := &twoFamilies{}
		got := 0
		b := &UDPBind{Bind: inner, Sent: func(n int) { got += n }}
		if err := b.Send(c.bufs, nil); err != nil {
			t.Fatal(err)
		}
		if got != c.want || inner.sent != len(c.bufs) {
			t.Errorf("%s: Sent %d of %d sent, want %d", c.name, got, inner.sent, c.want)
		}
	}
}

// batchBind is an inner bind that reads batches of its own size from a
// queue of messages, as StdNetBind reads up to 128 with one recvmmsg.
type batchBind struct {
	conn.Bind
	batch int
	queue chan []byte
}

func (b *batchBind) BatchSize() int                            { return b.batch }
func (b *batchBind) Close() error                              { return nil }
func (b *batchBind) Send(bufs [][]byte, _ conn.Endpoint) error { return nil }

func (b *batchBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fn := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		if len(bufs) != b.batch {
			return 0, fmt.Errorf("read with %d buffers, want the bind's batch of %d", len(bufs), b.batch)
		}
		m, ok := <-b.queue
		if !ok {
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], m)
			eps[n] = relayEndpoint("relay")
			if len(m) > 8 {
				eps[n] = relayEndpoint(fmt.Sprint(m[8]))
			}
			n++
			if n == len(bufs) {
				return n, nil
			}
			select {
			case m = <-b.queue:
			default:
				return n, nil
			}
		}
	}
	return []conn.ReceiveFunc{fn}, port, nil
}

// transport is a WireGuard data message of size bytes for the agent's
// receiver index 7, numbered i (in its counter).
func transport(i, size int) []byte {
	m := make([]byte, size)
	m[0], m[4], m[8] = 4, 7, byte(i)
	return m
}

func TestUDPBindHandsOutInnerBatchesInSmallOnes(t *testing.T) {
	inner := &batchBind{batch: 40, queue: make(chan []byte, 100)}
	for i := range 100 {
		inner.queue <- transport(i, 100+i)
	}
	b := &UDPBind{Bind: inner, MTU: 1420}
	if b.BatchSize() != UDPBatchSize {
		t.Fatalf("BatchSize %d, want %d", b.BatchSize(), UDPBatchSize)
	}
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bufs, sizes, eps := make([][]byte, UDPBatchSize), make([]int, UDPBatchSize), make([]conn.Endpoint, UDPBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	next := 0
	for next < 100 {
		n, err := fns[0](bufs, sizes, eps)
		if err != nil || n < 1 || n > UDPBatchSize {
			t.Fatalf("receive: %d, %v", n, err)
		}
		for k := range n {
			if sizes[k] != 100+next || bufs[k][8] != byte(next) || eps[k].DstToString() != fmt.Sprint(next) {
				t.Fatalf("message %d: size %d, number %d, endpoint %s; want %d, %d, %d", next, sizes[k], bufs[k][8], eps[k].DstToString(), 100+next, next, next)
			}
			next++
		}
	}
}

func TestUDPBindInboundBound(t *testing.T) {
	inner := &batchBind{batch: 64, queue: make(chan []byte, 64)}
	// Forged data messages for an index the agent never used, and a
	// handshake message: none of them takes room.
	for i := range 20 {
		forged := transport(i, 200)
		forged[4] = 8
		inner.queue <- forged
	}
	inner.queue <- []byte{1, 0, 0, 0, 99, 0, 0, 0, 0}
	for i := range 20 {
		inner.queue <- transport(i, 200)
	}
	b := &UDPBind{Bind: inner, Inbound: inflight.New(8)}
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	// The agent's initiation: its sender index is 7.
	initiation := make([]byte, 148)
	initiation[0], initiation[4] = 1, 7
	b.Send([][]byte{initiation}, nil)
	tunDev := InboundTUN(&nullTUN{}, b.Inbound)
	bufs, sizes, eps := make([][]byte, UDPBatchSize), make([]int, UDPBatchSize), make([]conn.Endpoint, UDPBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	// 16 forged; 4 forged, the handshake and 8 of ours.
	for _, want := range []int{UDPBatchSize, 13} {
		if n, err := fns[0](bufs, sizes, eps); n != want || err != nil {
			t.Fatalf("receive: %d, %v; want %d", n, err, want)
		}
	}
	if b.Inbound.Len() != 8 {
		t.Fatalf("%d in flight, want 8: forged messages took room", b.Inbound.Len())
	}

	// WireGuard holds 8: receive waits until the TUN was written to.
	got := make(chan int)
	go func() {
		n, _ := fns[0](bufs, sizes, eps)
		got <- n
	}()
	if _, err := tunDev.Write(bufs[:3], 0); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 3 && n != 8 { // 8 only if a stall came first
		t.Fatalf("receive after 3 written: %d, want 3", n)
	}

	// Close wakes a receive that waits for room.
	go func() {
		_, err := fns[0](bufs, sizes, eps)
		got <- map[bool]int{true: 1}[errors.Is(err, net.ErrClosed)]
	}()
	b.Close()
	if <-got != 1 {
		t.Error("a receive waiting for room did not return net.ErrClosed on Close")
	}
}

// nullTUN takes every write.
type nullTUN struct{ tun.Device }

func (nullTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }

// TestUDPBindSessionUnknown: the relay's wire.SessionUnknown for a session
// the agent sent on calls SessionUnknown and never reaches WireGuard; one
// naming an index the agent never sent to (a guess from off the path) is
// dropped without a call.
func TestUDPBindSessionUnknown(t *testing.T) {
	inner := &batchBind{batch: 8, queue: make(chan []byte, 8)}
	calls := 0
	b := &UDPBind{Bind: inner, MTU: 1420, SessionUnknown: func(uint32) { calls++ }}
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The agent sends a keepalive to the relay's session 0x01020304.
	keepalive := make([]byte, 32)
	keepalive[0] = 4
	binary.LittleEndian.PutUint32(keepalive[4:], 0x01020304)
	if err := b.Send([][]byte{keepalive}, relayEndpoint("relay")); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := make([][]byte, UDPBatchSize), make([]int, UDPBatchSize), make([]conn.Endpoint, UDPBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	inner.queue <- wire.AppendSessionUnknown(nil, 0x0badf00d) // never sent to
	inner.queue <- transport(1, 100)
	inner.queue <- wire.AppendSessionUnknown(nil, 0x01020304)
	n, err := fns[0](bufs, sizes, eps)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || sizes[0] != 100 {
		t.Errorf("WireGuard was handed %d messages (first %d bytes); want only the data message", n, sizes[0])
	}
	if calls != 1 {
		t.Errorf("SessionUnknown called %d times; want once, for the index the agent sent to", calls)
	}

	// A new session since: an answer naming the old one is stale.
	binary.LittleEndian.PutUint32(keepalive[4:], 0x05060708)
	if err := b.Send([][]byte{keepalive}, relayEndpoint("relay")); err != nil {
		t.Fatal(err)
	}
	inner.queue <- wire.AppendSessionUnknown(nil, 0x01020304)
	inner.queue <- transport(2, 100)
	if _, err := fns[0](bufs, sizes, eps); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("SessionUnknown called for a session the agent no longer sends on (%d calls)", calls)
	}
}

// TestUDPBindPing: the bind pings with the index of the agent's latest
// transport message, and takes a pong (never WireGuard's) only for it.
func TestUDPBindPing(t *testing.T) {
	inner := &batchBind{batch: 8, queue: make(chan []byte, 8)}
	var pongs []uint32
	var tags []uint32
	b := &UDPBind{Bind: inner, MTU: 1420, Pong: func(i, next uint32) { pongs, tags = append(pongs, i), append(tags, next) }}
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if m := b.Ping(); m != nil {
		t.Errorf("a ping before the agent sent on any session: %x", m)
	}
	keepalive := make([]byte, 32)
	keepalive[0] = 4
	binary.LittleEndian.PutUint32(keepalive[4:], 0x01020304)
	if err := b.Send([][]byte{keepalive}, relayEndpoint("relay")); err != nil {
		t.Fatal(err)
	}
	if i, ok := wire.ParseUDPPing(b.Ping()); !ok || i != 0x01020304 {
		t.Errorf("the ping after a keepalive on session 0x01020304: %x", b.Ping())
	}
	bufs, sizes, eps := make([][]byte, UDPBatchSize), make([]int, UDPBatchSize), make([]conn.Endpoint, UDPBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	inner.queue <- wire.AppendUDPPong(nil, 0x0badf00d, 5) // never pinged
	inner.queue <- wire.AppendUDPPong(nil, 0x01020304, 6)
	inner.queue <- transport(1, 100)
	n, err := fns[0](bufs, sizes, eps)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || sizes[0] != 100 {
		t.Errorf("WireGuard was handed %d messages (first %d bytes); want only the data message", n, sizes[0])
	}
	if len(pongs) != 1 || pongs[0] != 0x01020304 || tags[0] != 6 {
		t.Errorf("pongs taken: %x, tags %x; want the one for 0x01020304, tag 6", pongs, tags)
	}
}
