package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// parkPair is a Parker and a Conn to park in it (ReleaseIdle, over TCP on
// loopback), with a, the socket of the Conn's peer; closed at the test's end.
func parkPair(t *testing.T) (*Parker, net.Conn, *Conn) {
	t.Helper()
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	a, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
	t.Cleanup(func() { c.Close() })
	return p, a, c
}

// TestParkedConnWakesOnFramesAndEnd: a parked Conn is woken once a frame
// arrives, reads it, parks again, and is woken by its peer's hang-up.
func TestParkedConnWakesOnFramesAndEnd(t *testing.T) {
	p, a, c := parkPair(t)
	woke := make(chan struct{}, 1)
	wake := func() { woke <- struct{}{} }
	if err := p.Park(c, wake); err != nil {
		t.Fatal(err)
	}
	if p.Parked() != 1 {
		t.Fatalf("%d parked, want 1", p.Parked())
	}
	msg := wgMsg(4, 100)
	if _, err := a.Write(frames(msg)); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woke)
	buf := make([]byte, MaxFrame)
	if n, err := c.TryNext(); n != len(msg) || err != nil {
		t.Fatalf("TryNext after the wake-up: %d, %v", n, err)
	}
	if n, err := c.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("ReadFrame: %d, %v", n, err)
	}
	if _, err := c.TryNext(); err != ErrWouldBlock {
		t.Fatalf("TryNext with nothing more: %v", err)
	}
	if err := p.Park(c, wake); err != nil {
		t.Fatal(err)
	}
	a.Close()
	waitWake(t, woke)
	if _, err := c.TryNext(); err != io.EOF {
		t.Fatalf("TryNext after the peer hung up: %v, want EOF", err)
	}
	if p.Parked() != 0 {
		t.Fatalf("%d still parked", p.Parked())
	}
}

// TestParkedConnWakesOnClose: closing a parked Conn, or its Parker, wakes
// it; a Park after the Parker closed fails and wakes nothing.
func TestParkedConnWakesOnClose(t *testing.T) {
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	_, b1 := tcpPair(t)
	_, b2 := tcpPair(t)
	c1 := NewConn(b1, ConnConfig{ReleaseIdle: true})
	c2 := NewConn(b2, ConnConfig{ReleaseIdle: true})
	defer c2.Close()
	woke1, woke2 := make(chan struct{}, 1), make(chan struct{}, 1)
	if err := p.Park(c1, func() { woke1 <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := p.Park(c2, func() { woke2 <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	waitWake(t, woke1)
	p.Close()
	waitWake(t, woke2)
	if err := p.Park(c2, func() { t.Error("woken by a closed Parker") }); !errors.Is(err, ErrParkerClosed) {
		t.Fatalf("Park after Close: %v", err)
	}
	p.Close() // twice is fine
}

// TestParkedConnsHoldNoGoroutine: many parked Conns wait on the Parker's
// one goroutine, and each is woken when its frame comes.
func TestParkedConnsHoldNoGoroutine(t *testing.T) {
	const n = 200
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	peers := make([]io.Writer, n)
	woke := make(chan int, n)
	before := runtime.NumGoroutine()
	for i := range n {
		a, b := tcpPair(t)
		peers[i] = a
		c := NewConn(b, ConnConfig{ReleaseIdle: true})
		defer c.Close()
		if err := p.Park(c, func() { woke <- i }); err != nil {
			t.Fatal(err)
		}
	}
	if g := runtime.NumGoroutine() - before; g > n/10 {
		t.Fatalf("%d parked connections took %d goroutines", n, g)
	}
	for _, w := range peers {
		if _, err := w.Write(frames(wgMsg(4, 40))); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int]bool{}
	for len(seen) < n {
		select {
		case i := <-woke:
			seen[i] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d woken", len(seen), n)
		}
	}
}

func waitWake(t *testing.T, woke chan struct{}) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the wake-up", func() bool {
		select {
		case <-woke:
			return true
		default:
			return false
		}
	})
}

// TestParkWithHalfAHeaderWaitsForTheRest: a Conn parked after the first
// byte of a frame's length came alone waits in epoll for the rest, like an
// empty one, and reads the whole frame once it came. (Woken at once for the
// byte it held, its reader found the socket empty, parked again and was
// woken again: a goroutine spun until the agent sent more, which a hostile
// one need never do.)
func TestParkWithHalfAHeaderWaitsForTheRest(t *testing.T) {
	p, a, c := parkPair(t)
	msg := wgMsg(4, 100)
	f := frames(msg)
	if _, err := a.Write(f[:1]); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the first byte read", func() bool {
		if _, err := c.TryNext(); err != ErrWouldBlock {
			t.Fatalf("TryNext with one byte there: %v, want ErrWouldBlock", err)
		}
		return c.rd.buffered() == 1
	})
	woke := make(chan struct{}, 1)
	wake := func() { woke <- struct{}{} }
	if err := p.Park(c, wake); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
		t.Fatal("woken with half a frame length and nothing more to read")
	default:
	}
	if p.Parked() != 1 {
		t.Fatalf("%d parked, want 1", p.Parked())
	}
	if _, err := a.Write(f[1:]); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woke)
	if n, err := c.TryNext(); n != len(msg) || err != nil {
		t.Fatalf("TryNext after the rest came: %d, %v", n, err)
	}
	buf := make([]byte, MaxFrame)
	if n, err := c.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("ReadFrame: %d, %v", n, err)
	}
}

// TestParkDoesNotAllocate: a busy connection parks after every burst of
// frames.
func TestParkDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReleaseIdle: true})
	defer c.Close()
	wake := func() {}
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.Park(c, wake); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		c.takeWakeLocked() // as a wake-up does
		p.mu.Unlock()
	})
	if allocs != 0 {
		t.Fatalf("Park allocates %.1f times", allocs)
	}
}
