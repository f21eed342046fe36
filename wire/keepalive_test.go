package wire

import (
	"testing"
	"time"
)

// TestKeepaliveFilterEdges checks the time limits with the clock given
// to the filter, and that a held keepalive survives its caller reusing
// the buffer (wireguard-go reuses its message buffers at once).
func TestKeepaliveFilterEdges(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	k := newKeepaliveFilter(func() {})

	// Before any data (the first handshake on a connection), the
	// confirming keepalive goes at once: the responder cannot send before.
	if send, skipped := k.filter([][]byte{transportMsg(2, 32)}, t0); len(send) != 1 || skipped != 0 {
		t.Fatalf("a keepalive before any data: send %d, skipped %d; want it sent", len(send), skipped)
	}

	if send, skipped := k.filter([][]byte{transportMsg(3, 120)}, t0); len(send) != 1 || skipped != 0 {
		t.Fatalf("data: send %d, skipped %d", len(send), skipped)
	}
	if _, skipped := k.filter([][]byte{transportMsg(3, 32)}, t0.Add(KeepaliveRedundantAfter-time.Millisecond)); skipped != 1 {
		t.Error("a keepalive just inside KeepaliveRedundantAfter of its session's data was not left out")
	}

	ka := transportMsg(3, 32)
	at := t0.Add(KeepaliveRedundantAfter)
	if send, skipped := k.filter([][]byte{ka}, at); len(send) != 0 || skipped != 0 {
		t.Fatalf("a keepalive KeepaliveRedundantAfter after its session's data: send %d, skipped %d; want it held", len(send), skipped)
	}
	ka[4] = 0xEE // the caller reuses its buffer
	if p := k.due(at.Add(KeepaliveHold - time.Millisecond)); p != nil {
		t.Error("due returned the keepalive before its hold was up")
	}
	p := k.due(at.Add(KeepaliveHold))
	if p == nil || len(p) != 32 || Index(p) != 3 {
		t.Fatalf("Due at the end of the hold = %x, want the keepalive for session 3", p)
	}
	if p := k.due(at.Add(time.Hour)); p != nil {
		t.Error("due returned the keepalive twice")
	}
	if send, _ := k.filter([][]byte{transportMsg(4, 60)}, at.Add(2*KeepaliveHold)); len(send) != 1 {
		t.Errorf("a keepalive due already returned went out again: send %d messages", len(send))
	}

	// Handshake messages and control frames are never touched.
	for _, typ := range []byte{1, 2, 3, 0xA2} {
		msg := wgMsg(typ, 32)
		if send, skipped := k.filter([][]byte{msg}, at); len(send) != 1 || skipped != 0 {
			t.Errorf("a 32-byte message of type %#x: send %d, skipped %d", typ, len(send), skipped)
		}
	}
}

// wgMsg is a message of n bytes with first byte typ, three zero bytes and
// then a pattern.
func wgMsg(typ byte, n int) []byte {
	p := make([]byte, n)
	p[0] = typ
	for i := 4; i < n; i++ {
		p[i] = byte(i)
	}
	return p
}

// transportMsg is a WireGuard transport message of n bytes for receiver
// index idx; 32 bytes is a keepalive.
func transportMsg(idx byte, n int) []byte {
	m := wgMsg(4, n)
	m[4], m[5], m[6], m[7] = idx, 0, 0, 0
	return m
}
