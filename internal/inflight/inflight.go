// Package inflight bounds how many packets wait inside wireguard-go.
//
// wireguard-go holds every packet it has been given in a buffer of 64 KiB,
// whatever the packet's size, until it is sent (outbound) or written to the
// TUN (inbound). At an MTU of 1420 a TCP window of packets is tens of MiB of
// those buffers, more than a hub's memory limit, and the GC then runs
// without pause. A Window counts packets in at one end and out at the
// other, and the side that feeds WireGuard waits for room: the backlog
// stays where it is cheap (the netstack's buffers, the kernel's socket
// buffer).
//
// Packets that WireGuard drops (no session yet, a failed decryption) are
// never counted out. A Window that sees no progress for StallTimeout while
// full forgets what it counted, so such drops cost a short pause, never a
// stuck tunnel.
package inflight

import (
	"sync/atomic"
	"time"
)

// StallTimeout is how long Room waits without any packet counted out before
// it assumes the packets it still counts were dropped.
const StallTimeout = 5 * time.Millisecond

// A Window bounds packets in flight. The nil *Window is unbounded: Room
// returns what is asked for, Enter and Leave do nothing.
type Window struct {
	max   int64
	n     atomic.Int64
	left  chan struct{} // capacity 1: Leave counted packets out
	stall *time.Timer   // Room's; made on first use
}

// New returns a Window of max packets, or nil (unbounded) if max <= 0.
func New(max int) *Window {
	if max <= 0 {
		return nil
	}
	return &Window{max: int64(max), left: make(chan struct{}, 1)}
}

// Room waits until fewer than max packets are in flight and returns how
// many more may enter, at most want. It returns 0 once stop is closed.
// Only one goroutine may call Room at a time.
func (w *Window) Room(want int, stop <-chan struct{}) int {
	if w == nil {
		return want
	}
	for {
		if n := w.max - w.n.Load(); n > 0 {
			return min(want, int(n))
		}
		if w.stall == nil {
			w.stall = time.NewTimer(StallTimeout)
		} else {
			w.stall.Reset(StallTimeout)
		}
		select {
		case <-w.left:
			w.stall.Stop() // since Go 1.23, no stale tick survives Stop
		case <-w.stall.C:
			w.n.Store(0)
		case <-stop:
			w.stall.Stop()
			return 0
		}
	}
}

// Enter counts n packets in.
func (w *Window) Enter(n int) {
	if w != nil && n > 0 {
		w.n.Add(int64(n))
	}
}

// Leave counts n packets out and wakes a waiting Room. It never blocks.
func (w *Window) Leave(n int) {
	if w == nil || n <= 0 {
		return
	}
	if w.n.Add(-int64(n)) < 0 {
		// More than entered: packets forgotten after a stall, or WireGuard's
		// own. Never go below zero.
		w.n.Store(0)
	}
	select {
	case w.left <- struct{}{}:
	default:
	}
}

// Len is how many packets are counted in flight.
func (w *Window) Len() int {
	if w == nil {
		return 0
	}
	return int(w.n.Load())
}
