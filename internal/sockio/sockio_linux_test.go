package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// pair is a connected TCP pair on loopback: a is wrapped, b is plain.
func pair(t *testing.T) (a *net.TCPConn, sa *Socket, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	a, b = c.(*net.TCPConn), s.(*net.TCPConn)
	t.Cleanup(func() { a.Close(); b.Close() })
	sa = Of(a)
	if sa == nil {
		t.Fatal("Of(*net.TCPConn) = nil on Linux")
	}
	return a, sa, b
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>9)
	}
	return p
}

// A write far larger than the socket buffers waits for the peer to read
// (EAGAIN, then the poller) and delivers every byte in order; reads get
// what the peer sends, then io.EOF after its half-close.
func TestWholeStreamBothWays(t *testing.T) {
	_, sa, b := pair(t)
	out := pattern(16 << 20)
	werr := make(chan error, 1)
	go func() {
		n, err := sa.Write(out)
		if err == nil && n != len(out) {
			err = io.ErrShortWrite
		}
		werr <- err
	}()
	got, err := io.ReadAll(io.LimitReader(b, int64(len(out))))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("peer read %d bytes, not the %d written in order", len(got), len(out))
	}

	in := pattern(3 << 20)
	go func() {
		b.Write(in)
		b.CloseWrite()
	}()
	got, err = io.ReadAll(sa)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("read %d bytes, not the %d the peer sent", len(got), len(in))
	}
	if n, err := sa.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestDeadlines(t *testing.T) {
	a, sa, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := sa.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v; want a timeout", err)
	}

	// The peer reads nothing: the write fills the buffers and times out,
	// reporting how much went. (The buffer is made first: zeroing 64 MiB
	// took longer than the deadline once.)
	big := make([]byte, 64<<20)
	a.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := sa.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline: %v; want a timeout", err)
	}
	if n <= 0 || n >= len(big) {
		t.Fatalf("Write past its deadline wrote %d bytes; want part of them", n)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("Write's error %#v is not a write *net.OpError", err)
	}
}

func TestCloseEndsAWaitingRead(t *testing.T) {
	a, sa, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := sa.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait in the poller (if not, it fails the same)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Read")
	}
}

func TestResetIsAnError(t *testing.T) {
	_, sa, b := pair(t)
	b.Write([]byte("x"))
	b.SetLinger(0)
	b.Close()
	buf := make([]byte, 10)
	var err error
	for i := 0; i < 3 && err == nil; i++ { // the byte, maybe, then the reset
		_, err = sa.Read(buf)
	}
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after the peer's reset: %v; want ECONNRESET in a read *net.OpError", err)
	}
	if _, err := sa.Write([]byte("y")); err == nil {
		t.Fatal("Write to a reset connection succeeded")
	}
}

func TestReadable(t *testing.T) {
	a, _, b := pair(t)
	rc, _ := a.SyscallConn()
	readable := func() (r bool) {
		rc.Control(func(fd uintptr) { r = Readable(fd) })
		return r
	}
	if readable() {
		t.Fatal("an empty socket is readable")
	}
	b.Write([]byte("x"))
	poll.Until(t, 5*time.Second, "a socket with data waiting to be readable", readable)
	a.Read(make([]byte, 1))
	if readable() {
		t.Fatal("readable after its only byte was read")
	}
	b.Close()
	poll.Until(t, 5*time.Second, "the socket to be readable after the peer closed (EOF waits)", readable)
}

// prefixed is a wrapper such as the uplink's: it embeds the socket (and so
// has its SyscallConn) but reads something of its own first.
type prefixed struct {
	*net.TCPConn
	first []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.first) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.TCPConn.Read(b)
}

func TestOfOnlyBareSockets(t *testing.T) {
	x, y := net.Pipe()
	defer x.Close()
	defer y.Close()
	if Of(x) != nil {
		t.Fatal("Of(net.Pipe()) is not nil")
	}
	a, _, _ := pair(t)
	if Of(&prefixed{TCPConn: a, first: []byte("x")}) != nil {
		t.Fatal("Of took the socket out of a wrapper that embeds it: its Read would be bypassed")
	}
	if Of(passThrough{Conn: a}) == nil {
		t.Fatal("Of did not go past a Wrapper")
	}
	if Of(passThrough{}) != nil {
		t.Fatal("Of took a Wrapper without a socket")
	}
}

// passThrough is a Wrapper: its bytes are its socket's.
type passThrough struct{ net.Conn }

func (p passThrough) TCPConn() *net.TCPConn {
	tc, _ := p.Conn.(*net.TCPConn)
	return tc
}

func TestNoAllocations(t *testing.T) {
	_, sa, b := pair(t)
	msg := []byte("ping")
	buf := make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := sa.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := sa.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	// The plain side's Read and Write allocate nothing either.
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip; want 0", allocs)
	}
}

// Writev delivers its buffers as one stream in order, empty ones
// included, also when they are far larger than the socket buffers (short
// writes, then the poller), and leaves them advanced past what it wrote.
func TestWritevWholeStream(t *testing.T) {
	_, sa, b := pair(t)
	want := pattern(12 << 20)
	cuts := []int{0, 1, 1, 5 << 20, 5<<20 + 3, 12 << 20} // an empty one, a 1-byte one, two large
	var bufs [][]byte
	for i := 1; i < len(cuts); i++ {
		bufs = append(bufs, want[cuts[i-1]:cuts[i]])
	}
	bufs = append(bufs, nil)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := sa.Writev(bufs)
		done <- result{n, err}
	}()
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(io.LimitReader(b, int64(len(want))))
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.n != len(want) {
		t.Fatalf("Writev: %d, %v; want %d, nil", r.n, r.err, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the peer read %d bytes, not the %d written in order", len(got), len(want))
	}
	for i, p := range bufs {
		if len(p) != 0 {
			t.Fatalf("buffer %d has %d bytes left after a whole write", i, len(p))
		}
	}
}

// Readv fills its buffers in order, the second once the first is full
// (race builds fill the first only, a short read).
func TestReadvFillsInOrder(t *testing.T) {
	a, _, b := pair(t)
	want := pattern(10000)
	if _, err := b.Write(want); err != nil {
		t.Fatal(err)
	}
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	queued := func() (n int) {
		rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		return n
	}
	poll.Until(t, 10*time.Second, "the bytes written to arrive", func() bool { return queued() == len(want) })
	first, second := make([]byte, 4000), make([]byte, 8192)
	iov := make([]Iovec, 2)
	var n int
	rc.Read(func(fd uintptr) bool {
		n, err = Readv(fd, [][]byte{first, second}, iov)
		return err != syscall.EAGAIN
	})
	if err != nil {
		t.Fatal(err)
	}
	wantN := len(want)
	if raceEnabled {
		wantN = len(first)
	}
	if n != wantN {
		t.Fatalf("Readv with %d bytes waiting read %d, want %d", len(want), n, wantN)
	}
	got := append(first[:min(n, len(first))], second[:max(n-len(first), 0)]...)
	if !bytes.Equal(got, want[:n]) {
		t.Fatal("Readv's buffers, in order, are not the bytes written")
	}
}

// Writev on a socket with room allocates nothing, and keeps no pointer
// to the buffers it wrote.
func TestWritevNoAllocations(t *testing.T) {
	_, sa, b := pair(t)
	go io.Copy(io.Discard, b)
	x, y := pattern(3000), pattern(100)
	bufs := make([][]byte, 3)
	allocs := testing.AllocsPerRun(200, func() {
		bufs[0], bufs[1], bufs[2] = x, y, x
		if _, err := sa.Writev(bufs); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per Writev; want 0", allocs)
	}
	for i, v := range sa.iov {
		if v.Base != nil {
			t.Fatalf("after Writev its iovec %d still points at a buffer of the caller's", i)
		}
	}
}
