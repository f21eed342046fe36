package uplink

import (
	"io"
	"net"
	"testing"
)

// transfer sends up bytes from c to the peer and down bytes back, over a
// real loopback connection, and returns once both arrived.
func transfer(t *testing.T, c, peer net.Conn, up, down int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, peer, int64(up))
		if err == nil {
			_, err = peer.Write(make([]byte, down))
		}
		errc <- err
	}()
	if _, err := c.Write(make([]byte, up)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(down)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func loopbackPair(t *testing.T, network, addr string) (c, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("%s: %v", addr, err)
	}
	defer ln.Close()
	c, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

func TestSocketCountersGrowWithATransfer(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		hdr           uint64
	}{{"tcp4", "127.0.0.1:0", 52}, {"tcp6", "[::1]:0", 72}} {
		t.Run(tc.network, func(t *testing.T) {
			c, peer := loopbackPair(t, tc.network, tc.addr)
			before, ok := ReadSocketCounters(c)
			if !ok {
				t.Fatal("no TCP_INFO for a loopback TCP connection")
			}
			const up, down = 1_000_000, 100_000
			transfer(t, c, peer, up, down)
			s, _ := ReadSocketCounters(c)
			if s.SegsOut <= before.SegsOut || s.SegsIn <= before.SegsIn {
				t.Fatalf("segments did not grow: %+v, then %+v", before, s)
			}
			// The payload is exact (a busy loopback may drop and send
			// again, which the network carries twice), and every
			// segment has the header of its address family with
			// timestamps (Linux's default).
			if got := s.Sent - s.SegsOut*tc.hdr - s.Retransmitted; got != up {
				t.Errorf("sent %d bytes on %d segments (%d again): %d beyond %d-byte headers, want %d", s.Sent, s.SegsOut, s.Retransmitted, got, tc.hdr, up)
			}
			if got := s.Received - s.SegsIn*tc.hdr; got != down {
				t.Errorf("received %d bytes on %d segments: %d beyond %d-byte headers, want %d", s.Received, s.SegsIn, got, tc.hdr, down)
			}
		})
	}
}

func TestSocketTotalsKeepClosedConnections(t *testing.T) {
	var tot sockTotals
	for i := 1; i <= 2; i++ {
		c, peer := loopbackPair(t, "tcp4", "127.0.0.1:0")
		cc := tot.track(c)
		if _, _, ok := socketOf(cc); !ok {
			t.Fatal("socketOf does not see through countedConn")
		}
		transfer(t, cc, peer, 50_000, 20_000)
		live := tot.read()
		if err := cc.Close(); err != nil {
			t.Fatal(err)
		}
		cc.Close()
		after := tot.read()
		if after.Sent < live.Sent || after.Received < live.Received {
			t.Fatalf("connection %d: the totals shrank when it closed: %+v, then %+v", i, live, after)
		}
		if min := uint64(i) * 50_000; after.Sent < min || after.Sent > min+uint64(i)*10_000 {
			t.Errorf("after %d connections: sent %d bytes, want %d payload plus headers", i, after.Sent, min)
		}
	}
}
