package wire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestIdleReaderHoldsNoBuffer: with ReleaseIdle a Conn that waits for the
// next frame holds no read buffer, one that waits for the rest of a frame
// keeps what it has, and the frames come out whole either way, also one
// larger than the buffer.
func TestIdleReaderHoldsNoBuffer(t *testing.T) {
	a, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
	if c.rd.raw == nil {
		t.Fatal("a TCP connection is not read through its RawConn")
	}
	msgs := [][]byte{wgMsg(4, 100), wgMsg(1, 148), wgMsg(4, 9000), wgMsg(4, 1400)}
	stream := frames(msgs...)
	last := len(stream) - len(frames(msgs[3]))
	if _, err := a.Write(stream[:last+1]); err != nil { // the last frame's first byte
		t.Fatal(err)
	}
	buf := make([]byte, MaxFrame)
	read := func(want []byte) {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Next(); n != len(want) || err != nil {
			t.Fatalf("Next: %d, %v; want %d", n, err, len(want))
		}
		if n, err := c.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("ReadFrame: %d bytes, %v; want the %d-byte message", n, err, len(want))
		}
	}
	for _, m := range msgs[:3] {
		read(m)
	}
	waitIdle := func() {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Next with nothing to read: %v, want a timeout", err)
		}
	}
	waitIdle()
	if c.rd.bp == nil || c.rd.buffered() != 1 {
		t.Fatalf("waiting for the rest of a frame, the reader dropped its first byte (buffer %v, %d buffered)", c.rd.bp != nil, c.rd.buffered())
	}
	if _, err := a.Write(stream[last+1:]); err != nil {
		t.Fatal(err)
	}
	read(msgs[3])
	waitIdle()
	if c.rd.bp != nil {
		t.Fatal("a reader waiting for the next frame holds its read buffer")
	}
	a.Close()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("Next after the peer closed: %v, want io.EOF", err)
	}
}

// TestIdleReaderEndsInsideAFrame: a stream that ends inside a frame is
// io.ErrUnexpectedEOF, as without ReleaseIdle.
func TestIdleReaderEndsInsideAFrame(t *testing.T) {
	a, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
	stream := frames(wgMsg(4, 6000))
	a.Write(stream[:3000])
	a.Close()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.ReadFrame(make([]byte, MaxFrame)); err != io.ErrUnexpectedEOF {
		t.Fatalf("ReadFrame of a cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestIdleReaderDoesNotAllocate: reading frames from the socket through
// the pooled buffer, or straight into the caller's (frames larger than
// the buffer: at least one read(2) per frame), allocates nothing.
func TestIdleReaderDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	a, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
	msg := wgMsg(4, 9000)
	const runs = 200
	go a.Write(bytes.Repeat(frames(msg), runs+1))
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, MaxFrame)
	allocs := testing.AllocsPerRun(runs, func() {
		if _, err := c.Next(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadFrame(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("reading a frame allocates %.1f times", allocs)
	}
}

// TestWaitReadable: TryNext says ErrWouldBlock rather than wait, holding
// no buffer; WaitReadable returns once a frame arrives (or its deadline
// passes), and the frame reads whole, also one that arrived in two parts.
func TestWaitReadable(t *testing.T) {
	a, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
	if !c.CanWait() {
		t.Fatal("a TCP connection with ReleaseIdle cannot wait")
	}
	if _, err := c.TryNext(); err != ErrWouldBlock {
		t.Fatalf("TryNext with nothing sent: %v, want ErrWouldBlock", err)
	}
	if c.rd.bp != nil {
		t.Fatal("TryNext kept a read buffer with nothing read")
	}
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := c.WaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable with nothing sent: %v, want a timeout", err)
	}
	msg := wgMsg(4, 300)
	f := frames(msg)
	buf := make([]byte, MaxFrame)
	for _, cut := range []int{len(f), 1, 100} {
		if _, err := a.Write(f[:cut]); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.WaitReadable(); err != nil {
			t.Fatalf("WaitReadable after %d bytes: %v", cut, err)
		}
		n, err := c.TryNext()
		if cut < 2 {
			if err != ErrWouldBlock {
				t.Fatalf("TryNext after 1 byte: %d, %v; want ErrWouldBlock", n, err)
			}
			a.Write(f[cut:])
			if err := c.WaitReadable(); err != nil {
				t.Fatal(err)
			}
			n, err = c.TryNext()
		} else if cut < len(f) {
			a.Write(f[cut:])
		}
		if n != len(msg) || err != nil {
			t.Fatalf("TryNext after %d bytes: %d, %v", cut, n, err)
		}
		if n, err := c.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("ReadFrame after %d bytes: %d, %v", cut, n, err)
		}
		if _, err := c.TryNext(); err != ErrWouldBlock {
			t.Fatalf("TryNext after the frame: %v, want ErrWouldBlock", err)
		}
	}
}

// TestDirectReadTakesTheNextFrame: a frame larger than the buffer is read
// straight into the caller's buffer, and what the socket has after it goes
// into the read buffer in the same read (readv), so the next small frame
// needs no system call of its own. Race builds read the large frame alone.
func TestDirectReadTakesTheNextFrame(t *testing.T) {
	a, b := tcpPair(t)
	c := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
	large, small := wgMsg(4, 9000), wgMsg(4, 100)
	stream := frames(large, small)
	if _, err := a.Write(stream); err != nil {
		t.Fatal(err)
	}
	rc := rawConn(b)
	poll.Until(t, 10*time.Second, "the frames to arrive", func() bool {
		var n int
		rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		return n == len(stream)
	})
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, MaxFrame)
	if n, err := c.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], large) {
		t.Fatalf("ReadFrame: %d, %v; want the large message", n, err)
	}
	want := 2 + len(small)
	if raceEnabled {
		want = 0
	}
	if got := c.rd.buffered(); got != want {
		t.Fatalf("after the large frame the buffer holds %d bytes, want %d (the next frame)", got, want)
	}
	if n, err := c.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], small) {
		t.Fatalf("ReadFrame: %d, %v; want the small message", n, err)
	}
	if c.rd.bp != nil {
		t.Fatal("the reader holds its buffer with nothing in it")
	}
}
