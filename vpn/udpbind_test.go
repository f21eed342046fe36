package vpn

import (
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
)

// twoFamilies is a bind whose Open returns two receive functions, as
// StdNetBind does with IPv4 and IPv6 sockets, and that records its sends.
type twoFamilies struct {
	conn.Bind
	sent int
}

func (b *twoFamilies) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	v4 := func([][]byte, []int, []conn.Endpoint) (int, error) { return 4, nil }
	v6 := func([][]byte, []int, []conn.Endpoint) (int, error) { return 6, nil }
	return []conn.ReceiveFunc{v4, v6}, port, nil
}

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
			if n, _ := fn(nil, nil, nil); n != c.want[i] {
				t.Errorf("%s: function %d is family %d, want %d", c.name, i, n, c.want[i])
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
