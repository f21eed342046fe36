package netstack

import (
	"io"
	"net/netip"
	"testing"
	"time"
)

// TestStreamingSendBuffer: a connection that streams gets
// StreamSendBuffer while no more than StreamConns others have it, and the
// default again when it stops or closes; a stream whose buffer grows and
// shrinks under it (portmap's copy switching between streaming and not)
// delivers every byte, in order, without stalling (a writer waiting on
// the larger buffer waited for ever while gVisor's tuning was on for it);
// the receiving side's buffer grows up to ReceiveBufferMax meanwhile.
func TestStreamingSendBuffer(t *testing.T) {
	goroutineLeakCheck(t)
	const big = 2 << 20
	// The TCP transport's MTU (wire.MaxTunnelMTU): a few segments in
	// flight are megabytes.
	cfg := Config{MTU: 65503, StreamSendBuffer: big, StreamConns: 1, ReceiveBufferMax: 4 << 20}
	a, b, _ := pair(t, cfg, []netip.Addr{addrA4}, []netip.Addr{addrB4})
	_, s1 := connect(t, a, b, addrB4, 80)
	_, s2 := connect(t, a, b, addrB4, 81)
	sndBuf := func(c *TCPConn) int64 { return c.ep.SocketOptions().GetSendBufferSize() }
	def := sndBuf(s1)

	s1.Streaming(true)
	s2.Streaming(true)
	if got := sndBuf(s1); got != big {
		t.Fatalf("the first streaming connection's send buffer is %d, want %d", got, big)
	}
	if got := sndBuf(s2); got != def {
		t.Fatalf("a second streaming connection beyond StreamConns 1 has a %d-byte send buffer, want the default %d", got, def)
	}
	s1.Streaming(false)
	if got := sndBuf(s1); got != def {
		t.Fatalf("after streaming the send buffer is %d, want the default %d", got, def)
	}
	s2.Streaming(true)
	if got := sndBuf(s2); got != big {
		t.Fatalf("once the slot is free the other connection's send buffer is %d, want %d", got, big)
	}
	s2.Close()
	s1.Streaming(true)
	if got := sndBuf(s1); got != big {
		t.Fatalf("after the streaming connection closed, the slot is not free: send buffer %d", got)
	}

	s1.Streaming(false)

	// 48 MiB through a streaming connection; then through another whose
	// streaming is switched off and on every 16 writes (512 KiB), the
	// buffer shrinking under what it holds.
	for i, toggle := range []bool{false, true} {
		c, s := connect(t, a, b, addrB4, uint16(90+i))
		s.Streaming(true)
		send(t, c, s, 48<<20, toggle)
		// The receiver read as fast as it came: its buffer grew past the
		// default, within ReceiveBufferMax.
		if rcv := c.ep.SocketOptions().GetReceiveBufferSize(); rcv <= int64(a.cfg.TCPBufferSize) || rcv > 4<<20 {
			t.Errorf("after the stream the receiver's buffer is %d bytes; want it grown past %d, at most %d", rcv, a.cfg.TCPBufferSize, 4<<20)
		}
	}
}

func send(t *testing.T, client, server *TCPConn, n int64, toggle bool) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		src := stream(3, n)
		buf := make([]byte, 32<<10)
		for i := 0; ; i++ {
			k, err := io.ReadFull(src, buf)
			if k > 0 {
				if _, err := server.Write(buf[:k]); err != nil {
					werr <- err
					return
				}
			}
			if err != nil {
				werr <- server.CloseWrite()
				return
			}
			if toggle && i%16 == 15 {
				server.Streaming(i%32 == 31)
			}
		}
	}()
	client.SetReadDeadline(time.Now().Add(testTimeout))
	if got, want := sum(client), sum(stream(3, n)); got != want {
		t.Fatalf("streaming switched on and off: %v; the client did not read the stream whole (stalled, or wrong bytes)", toggle)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}
