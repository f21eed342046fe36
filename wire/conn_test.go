package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestConnWrites: queued frames go in front of the next batch, every
// message is one frame, bytes are counted, the final frame is the last the
// peer reads before a clean end of stream, and a failed write closes the
// connection with its error.
func TestConnWrites(t *testing.T) {
	a, b := tcpPair(t)
	var counters Counters
	wa := NewConn(a, ConnConfig{Counters: &counters})
	rb := NewConn(b, ConnConfig{})
	b.SetReadDeadline(time.Now().Add(10 * time.Second))

	hello := Hello{Version: 1, Software: "test"}.Marshal()
	if err := wa.Queue(hello); err != nil {
		t.Fatal(err)
	}
	if err := wa.Write([][]byte{wgMsg(1, 148), transportMsg(3, 100)}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MaxFrame)
	for _, want := range [][]byte{hello, wgMsg(1, 148), transportMsg(3, 100)} {
		n, err := rb.ReadFrame(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("read %x, %v; want %x", buf[:n], err, want)
		}
	}
	if got, want := counters.TxData.Load(), uint64(100-32); got != want {
		t.Errorf("TxData = %d, want %d", got, want)
	}
	if got, want := counters.TxOverhead.Load(), uint64(len(hello)+2+148+2+32+2); got != want {
		t.Errorf("TxOverhead = %d, want %d", got, want)
	}
	if err := wa.Write([][]byte{make([]byte, MaxFrame+1)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("an oversized message: %v", err)
	}

	last := GoingAway{RetryAfterMillis: 5}.Marshal()
	if err := wa.WriteFinal(last); err != nil {
		t.Fatal(err)
	}
	if err := wa.Write([][]byte{wgMsg(1, 148)}); !errors.Is(err, ErrFinal) {
		t.Errorf("a write after WriteFinal: %v, want ErrFinal", err)
	}
	if n, err := rb.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], last) {
		t.Fatalf("read %x, %v; want the final frame", buf[:n], err)
	}
	if _, err := rb.ReadFrame(buf); err != io.EOF {
		t.Fatalf("after the final frame: %v, want io.EOF", err)
	}

	// b's peer writes to a connection b has closed: the kernel soon
	// answers with a reset, the write fails and closes the Conn.
	wb := rb
	a.Close()
	poll.Until(t, 10*time.Second, "a write to the closed peer to fail", func() bool {
		return wb.Write([][]byte{transportMsg(1, 1000)}) != nil
	})
	select {
	case <-wb.Done():
	default:
		t.Fatal("writes to a closed peer did not fail and close the Conn")
	}
	if wb.Err() == nil || errors.Is(wb.Err(), net.ErrClosed) {
		t.Errorf("Err = %v, want the write's error", wb.Err())
	}
}

// discardConn takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// TestWriteDoesNotAllocate: Write runs once per batch WireGuard sends;
// with ReleaseIdle (the relay's) its buffer comes from a pool.
func TestWriteDoesNotAllocate(t *testing.T) {
	for _, pooled := range []bool{false, true} {
		if pooled && raceEnabled {
			continue // sync.Pool drops items at random under the race detector
		}
		c := NewConn(discardConn{}, ConnConfig{Counters: new(Counters), ReleaseIdle: pooled})
		batch := [][]byte{transportMsg(1, 1452), transportMsg(1, 1452), transportMsg(1, 32)}
		allocs := testing.AllocsPerRun(100, func() {
			if err := c.Write(batch); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("Write (pooled buffer: %v) allocates %.1f times per batch", pooled, allocs)
		}
	}
	// On a socket, where the large messages go out from where they are.
	a, b := tcpPair(t)
	go io.Copy(io.Discard, b)
	c := NewConn(a, ConnConfig{Counters: new(Counters)})
	batch := [][]byte{transportMsg(1, 1452), transportMsg(1, 100), transportMsg(1, 9000)}
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.Write(batch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Write on a socket allocates %.1f times per batch", allocs)
	}
}

// TestIdleWriterHoldsNoBuffer: with ReleaseIdle a Conn keeps no write
// buffer between writes.
func TestIdleWriterHoldsNoBuffer(t *testing.T) {
	c := NewConn(discardConn{}, ConnConfig{ReleaseIdle: true})
	if err := c.Write([][]byte{transportMsg(1, 1452)}); err != nil {
		t.Fatal(err)
	}
	if c.ws != nil {
		t.Fatalf("an idle connection holds a %d-byte write buffer", cap(c.ws.buf))
	}
}

// TestBatchesStreamWhole: batches of small and large messages (the
// large ones written from where they are, with writev on a socket) and
// queued frames reach a relay-like reader (a 4 KiB buffer released while
// idle, frames larger than it read straight into the caller's buffer with
// the next one's start) whole and in order, through socket buffers far
// smaller than the stream.
func TestBatchesStreamWhole(t *testing.T) {
	for _, pooled := range []bool{false, true} {
		a, b := tcpPair(t)
		w := NewConn(a, ConnConfig{ReleaseIdle: pooled})
		r := NewConn(b, ConnConfig{ReadBuffer: 4096, ReleaseIdle: true})
		sizes := []int{100, vecMin - 1, vecMin, 1452, 9000, 4094, 4095, 32800, MaxFrame, 40}
		var want [][]byte
		var batches [][][]byte
		for i := 0; i < 300; i++ {
			var batch [][]byte
			for j := 0; j <= i%16; j++ {
				m := transportMsg(1, sizes[(i+j)%len(sizes)])
				binary.BigEndian.PutUint32(m[8:], uint32(len(want)))
				batch = append(batch, m)
				want = append(want, m)
				if i%50 == 0 && j == 0 {
					hello := Hello{Version: 1, Software: fmt.Sprint("batch ", i)}.Marshal()
					want = append(want[:len(want)-1], hello, m) // Queue's frame goes first
					batches = append(batches, [][]byte{hello})  // marks a Queue
				}
			}
			batches = append(batches, batch)
		}
		werr := make(chan error, 1)
		go func() {
			for _, batch := range batches {
				var err error
				if len(batch) == 1 && batch[0][0] != 4 {
					err = w.Queue(batch[0])
				} else {
					err = w.Write(batch)
				}
				if err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		b.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, MaxFrame)
		for i, m := range want {
			if _, err := r.Next(); err != nil {
				t.Fatalf("pooled writes %v: Next before message %d: %v", pooled, i, err)
			}
			n, err := r.ReadFrame(buf)
			if err != nil || !bytes.Equal(buf[:n], m) {
				t.Fatalf("pooled writes %v: message %d of %d: read %d bytes, %v; want the %d-byte message", pooled, i, len(want), n, err, len(m))
			}
		}
		if err := <-werr; err != nil {
			t.Fatalf("pooled writes %v: %v", pooled, err)
		}
	}
}

// slowClose is a connection whose Close waits until release is closed: a
// socket whose close has not happened yet.
type slowClose struct {
	net.Conn
	closing, release chan struct{}
}

func (c *slowClose) Close() error {
	close(c.closing)
	<-c.release
	return c.Conn.Close()
}

// TestDoneMeansTheSocketIsClosed: whoever waits on Done to connect again
// must find the old socket closed, not still read by its reader, which
// would answer the peer on it (the agent answered the relay's Ping on the
// connection it had just closed, and the relay refused the next one as a
// copy of the hub).
func TestDoneMeansTheSocketIsClosed(t *testing.T) {
	a, b := tcpPair(t)
	sc := &slowClose{Conn: a, closing: make(chan struct{}), release: make(chan struct{})}
	c := NewConn(sc, ConnConfig{})
	go c.Close()
	<-sc.closing
	select {
	case <-c.Done():
		t.Fatal("Done was closed before the socket's Close returned")
	case <-time.After(50 * time.Millisecond): // a wrong Done would be closed already
	}
	close(sc.release)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the socket closed")
	}
	if !errors.Is(c.Err(), net.ErrClosed) {
		t.Errorf("Err after Close: %v, want net.ErrClosed", c.Err())
	}
	// The peer sees the end of the stream: the socket is closed.
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the peer's read after Done: %v, want EOF", err)
	}
}
