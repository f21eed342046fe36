package inflight

import (
	"testing"
	"time"
)

func TestNilWindowIsUnbounded(t *testing.T) {
	w := New(0)
	if w != nil {
		t.Fatal("New(0) is bounded")
	}
	w.Enter(1000)
	w.Leave(1)
	if n := w.Room(64, nil); n != 64 || w.Len() != 0 {
		t.Errorf("nil window: Room %d, Len %d; want 64, 0", n, w.Len())
	}
}

func TestRoomWaitsForLeave(t *testing.T) {
	w := New(4)
	if n := w.Room(16, nil); n != 4 {
		t.Fatalf("empty window of 4: Room %d", n)
	}
	w.Enter(3)
	if n := w.Room(16, nil); n != 1 {
		t.Fatalf("3 of 4 in flight: Room %d, want 1", n)
	}
	w.Enter(1)
	got := make(chan int)
	go func() { got <- w.Room(16, nil) }()
	select {
	case n := <-got:
		if w.Len() == 4 {
			t.Fatalf("full window: Room returned %d before any Leave or stall", n)
		}
		// A stall forgot the packets: only possible if this goroutine was
		// descheduled for StallTimeout; then Room must have made all room.
		if n != 4 {
			t.Fatalf("after a stall: Room %d, want 4", n)
		}
		return
	case <-time.After(StallTimeout / 5):
	}
	w.Leave(2)
	if n := <-got; n != 2 && n != 4 { // 4 only if the stall came first
		t.Fatalf("after Leave(2): Room %d, want 2", n)
	}
}

func TestStallForgets(t *testing.T) {
	w := New(2)
	w.Enter(2)
	start := time.Now()
	if n := w.Room(8, nil); n != 2 {
		t.Fatalf("Room after a stall: %d, want 2", n)
	}
	if d := time.Since(start); d < StallTimeout {
		t.Errorf("Room returned after %v, before StallTimeout", d)
	}
	if w.Len() != 0 {
		t.Errorf("Len after a stall: %d", w.Len())
	}
}

func TestLeaveNeverBelowZero(t *testing.T) {
	w := New(3)
	w.Enter(1)
	w.Leave(10) // WireGuard's own messages, or forgotten packets
	if w.Len() != 0 {
		t.Fatalf("Len %d after leaving more than entered", w.Len())
	}
	if n := w.Room(8, nil); n != 3 {
		t.Errorf("Room %d, want the bound 3, not more", n)
	}
}

func TestRoomStops(t *testing.T) {
	w := New(1)
	w.Enter(1)
	stop := make(chan struct{})
	close(stop)
	// The stop is ready at once, the stall only after StallTimeout.
	if n := w.Room(1, stop); n != 0 {
		t.Fatalf("Room with stop closed: %d, want 0", n)
	}
}
