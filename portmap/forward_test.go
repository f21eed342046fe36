package portmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// forwarderGoroutines lists the stacks of goroutines running Forwarder or
// Splice code, other than Serve (which runs on its caller's goroutine).
func forwarderGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "portmap.(*Forwarder).run") ||
			strings.Contains(g, "portmap.splice") ||
			strings.Contains(g, "portmap.oneWay") ||
			strings.Contains(g, "portmap.(*pump)") ||
			strings.Contains(g, "portmap.sockReady") {
			out = append(out, g)
		}
	}
	return out
}

// checkNoForwarderGoroutines checks that the forwarder's goroutines are
// gone. Close returns once each has called its last wg.Done; the goroutine
// itself exits right after, so allow a moment for that.
func checkNoForwarderGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		gs := forwarderGoroutines()
		if len(gs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d forwarder goroutines still running; first:\n%s", len(gs), gs[0])
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// server runs handle for every connection accepted on a fresh loopback
// listener and returns its address. Cleanup closes the listener and waits for
// the handlers, which must return once their connection is closed.
func server(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo copies everything back and half-closes when the peer has.
func echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err == nil {
		c.CloseWrite()
		io.Copy(io.Discard, c)
	}
}

// forward starts f.Serve on a fresh loopback listener forwarding to target
// and returns the listener's address. Cleanup closes the listener, waits for
// Serve to return nil, closes f and checks that no goroutines are left.
func forward(t *testing.T, f *Forwarder, target string) string {
	t.Helper()
	ln := listen(t)
	errc := make(chan error, 1)
	go func() { errc <- f.Serve(ln, Route{Target: target}) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve returned %v after listener close, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after listener close")
		}
		f.Close()
		if n := f.Active(); n != 0 {
			t.Errorf("Active() = %d after Close", n)
		}
		checkNoForwarderGoroutines(t)
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// logBuf collects Logf lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuf) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func TestHalfCloseRoundTrip(t *testing.T) {
	req := []byte("GET / HTTP/1.0\r\nHost: ccu\r\n\r\n")
	resp := append([]byte("HTTP/1.0 200 OK\r\n\r\n"), bytes.Repeat([]byte("WebUI."), 200_000)...)
	gotReq := make(chan []byte, 1)
	target := server(t, func(c *net.TCPConn) {
		// An HTTP/1.0 server of the simplest kind: read the request to EOF,
		// then answer and close.
		b, err := io.ReadAll(c)
		gotReq <- b
		if err == nil {
			c.Write(resp)
		}
	})
	var f Forwarder
	addr := forward(t, &f, target)

	c := dial(t, addr)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading response: %v (after %d bytes)", err, len(got))
	}
	if !bytes.Equal(got, resp) {
		t.Fatalf("response: got %d bytes, want %d", len(got), len(resp))
	}
	if b := <-gotReq; !bytes.Equal(b, req) {
		t.Fatalf("target got request %q, want %q", b, req)
	}

	poll.Until(t, 5*time.Second, "session end", func() bool { return f.Active() == 0 })
	sessions, in, out := f.Stats()
	if sessions != 1 || in != uint64(len(req)) || out != uint64(len(resp)) {
		t.Errorf("Stats() = %d, %d, %d; want 1, %d, %d", sessions, in, out, len(req), len(resp))
	}
}

func TestSplice(t *testing.T) {
	// Two TCP pairs: a0<->a1 and b1<->b0; Splice(a1, b1) joins them.
	pair := func() (*net.TCPConn, *net.TCPConn) {
		ln := listen(t)
		c0 := dial(t, ln.Addr().String())
		c1, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c1.Close() })
		return c0, c1.(*net.TCPConn)
	}
	a0, a1 := pair()
	b0, b1 := pair()

	type result struct {
		ab, ba int64
		err    error
	}
	done := make(chan result, 1)
	go func() {
		ab, ba, err := Splice(a1, b1)
		done <- result{ab, ba, err}
	}()

	a0.Write([]byte("hello"))
	a0.CloseWrite()
	if got, err := io.ReadAll(b0); err != nil || string(got) != "hello" {
		t.Fatalf("b0 read %q, %v; want hello, nil", got, err)
	}
	// a0 has half-closed; the other direction still works.
	b0.Write([]byte("world!"))
	b0.CloseWrite()
	if got, err := io.ReadAll(a0); err != nil || string(got) != "world!" {
		t.Fatalf("a0 read %q, %v; want world!, nil", got, err)
	}
	r := <-done
	if r.ab != 5 || r.ba != 6 || r.err != nil {
		t.Errorf("Splice = %d, %d, %v; want 5, 6, nil", r.ab, r.ba, r.err)
	}
	// Splice closed both of its conns.
	if _, err := a1.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a1 still open after Splice: %v", err)
	}
	if _, err := b1.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("b1 still open after Splice: %v", err)
	}
}

func TestConcurrentSessions(t *testing.T) {
	const n = 200
	const size = 64 << 10
	target := server(t, echo)
	var f Forwarder
	addr := forward(t, &f, target)

	release := make(chan struct{})
	errc := make(chan error, n)
	for i := range n {
		go func() {
			errc <- func() error {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				msg := bytes.Repeat([]byte(fmt.Sprintf("session %03d;", i)), size/12+1)[:size]
				// Send a first part, wait until all sessions are in flight
				// together, then the rest.
				if _, err := c.Write(msg[:100]); err != nil {
					return err
				}
				<-release
				if _, err := c.Write(msg[100:]); err != nil {
					return err
				}
				c.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(c)
				if err != nil {
					return fmt.Errorf("session %d: %v after %d bytes", i, err, len(got))
				}
				if !bytes.Equal(got, msg) {
					return fmt.Errorf("session %d: echo differs (%d bytes, want %d)", i, len(got), len(msg))
				}
				return nil
			}()
		}()
	}
	poll.Until(t, 10*time.Second, "200 sessions in flight", func() bool { return f.Active() == n })
	close(release)
	for range n {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	poll.Until(t, 10*time.Second, "sessions to end", func() bool { return f.Active() == 0 })
	sessions, in, out := f.Stats()
	if sessions != n || in != n*size || out != n*size {
		t.Errorf("Stats() = %d, %d, %d; want %d, %d, %d", sessions, in, out, n, n*size, n*size)
	}
}

// refusedAddr returns a loopback address nobody listens on.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRefusedTargetResets(t *testing.T) {
	var logs logBuf
	f := Forwarder{Logf: logs.Logf}
	target := refusedAddr(t)
	addr := forward(t, &f, target)

	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		// On loopback the reset may come before the dialer has checked
		// the socket; then Dial itself reports it. Otherwise Read does.
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client got %v; want ECONNRESET", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reset took %v", d)
	}
	poll.Until(t, 5*time.Second, "log line", func() bool { return len(logs.Lines()) > 0 })
	lines := logs.Lines()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "portmap: ") || !strings.Contains(lines[0], target) {
		t.Errorf("log = %q; want one line with prefix \"portmap: \" naming %s", lines, target)
	}
	poll.Until(t, 5*time.Second, "session end", func() bool { return f.Active() == 0 })
	if s, in, out := f.Stats(); s != 1 || in != 0 || out != 0 {
		t.Errorf("Stats() = %d, %d, %d; want 1, 0, 0", s, in, out)
	}
}

func TestTargetResetReachesClient(t *testing.T) {
	target := server(t, func(c *net.TCPConn) {
		c.Write([]byte("partial"))
		c.SetLinger(0)
		c.Close() // RST
	})
	var f Forwarder
	addr := forward(t, &f, target)

	var got []byte
	c, err := net.Dial("tcp", addr) // may see the reset already, as above
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read %q, %v; want ECONNRESET, not a clean EOF", got, err)
	}
	if !strings.HasPrefix("partial", string(got)) {
		t.Errorf("client read %q, want a prefix of %q", got, "partial")
	}
}

func TestClientResetReachesTarget(t *testing.T) {
	targetErr := make(chan error, 1)
	target := server(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("hello")) // the target is idle after this
		_, err := c.Read(make([]byte, 1))
		targetErr <- err
	})
	var f Forwarder
	addr := forward(t, &f, target)

	c := dial(t, addr)
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close() // RST from the client
	if err := <-targetErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("target read %v; want ECONNRESET", err)
	}
	poll.Until(t, 5*time.Second, "session end", func() bool { return f.Active() == 0 })
}

func TestCloseEndsSessions(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		// After every cleanup above has run (servers, listeners), the
		// goroutine count must come back.
		poll.Until(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
	})

	const n = 20
	// The target holds every connection open without answering.
	target := server(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	var f Forwarder
	ln := listen(t)
	serveErr := make(chan error, 1)
	go func() { serveErr <- f.Serve(ln, Route{Target: target}) }()

	clients := make([]*net.TCPConn, n)
	for i := range clients {
		clients[i] = dial(t, ln.Addr().String())
		clients[i].Write([]byte("ping"))
	}
	poll.Until(t, 5*time.Second, "sessions in flight", func() bool { return f.Active() == n })
	poll.Until(t, 5*time.Second, "bytes counted", func() bool { _, in, _ := f.Stats(); return in == 4*n })

	ln.Close()
	if err := <-serveErr; err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited: every session is over.
	if a := f.Active(); a != 0 {
		t.Errorf("Active() = %d after Close", a)
	}
	checkNoForwarderGoroutines(t)
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("client %d: Read = %v after Close; want the session ended", i, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	// A closed Forwarder turns new connections away.
	a, b := net.Pipe()
	defer a.Close()
	f.Handle(b, Route{Target: target})
	if _, err := b.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Handle after Close left the conn open: %v", err)
	}
}

func TestCloseCancelsDial(t *testing.T) {
	var logs logBuf
	dialing := make(chan struct{})
	f := Forwarder{
		Logf:        logs.Logf,
		DialTimeout: time.Minute,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			close(dialing)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Handle(b, Route{Target: "127.0.0.1:1"})
	}()
	<-dialing
	f.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Handle still running after Close returned")
	}
	if l := logs.Lines(); len(l) != 0 {
		t.Errorf("Close logged %q; want nothing", l)
	}
	checkNoForwarderGoroutines(t)
}

func TestDialTimeout(t *testing.T) {
	var got atomic.Int64
	f := Forwarder{
		DialTimeout: 123 * time.Millisecond,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dl, ok := ctx.Deadline()
			if ok {
				got.Store(int64(time.Until(dl)))
			}
			return nil, errors.New("no")
		},
	}
	a, b := net.Pipe()
	defer a.Close()
	f.Handle(b, Route{Target: "127.0.0.1:1"})
	if d := time.Duration(got.Load()); d <= 0 || d > 123*time.Millisecond {
		t.Errorf("dial deadline in %v, want within 123ms", d)
	}
}

// fakeListener returns the queued errors from Accept, then net.ErrClosed.
type fakeListener struct {
	mu   sync.Mutex
	errs []error
}

func (l *fakeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil, net.ErrClosed
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}
func (l *fakeListener) Close() error   { return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

type tempErr struct{}

func (tempErr) Error() string   { return "too many open files" }
func (tempErr) Temporary() bool { return true }
func (tempErr) Timeout() bool   { return false }

func TestServeErrors(t *testing.T) {
	var logs logBuf
	f := Forwarder{Logf: logs.Logf}
	defer f.Close()

	// Temporary errors are retried, then a closed listener ends Serve cleanly.
	ln := &fakeListener{errs: []error{tempErr{}, &net.OpError{Op: "accept", Err: tempErr{}}}}
	if err := f.Serve(ln, Route{Target: "127.0.0.1:1"}); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if l := logs.Lines(); len(l) != 2 || !strings.HasPrefix(l[0], "portmap: ") {
		t.Errorf("log = %q, want two retry lines", l)
	}

	// A permanent error is returned, wrapped.
	perm := errors.New("listener broke")
	ln = &fakeListener{errs: []error{perm}}
	if err := f.Serve(ln, Route{Target: "127.0.0.1:1"}); !errors.Is(err, perm) || !strings.HasPrefix(err.Error(), "portmap.Serve: ") {
		t.Errorf("Serve = %v, want wrapped %v", err, perm)
	}
}

// abortConn records Abort calls.
type abortConn struct {
	net.Conn
	aborted atomic.Bool
}

func (c *abortConn) Abort() { c.aborted.Store(true); c.Conn.Close() }

func TestRefusedTargetCallsAbort(t *testing.T) {
	var f Forwarder
	defer f.Close()
	a, b := net.Pipe()
	defer a.Close()
	c := &abortConn{Conn: b}
	f.Handle(c, Route{Target: refusedAddr(t)})
	if !c.aborted.Load() {
		t.Errorf("Abort not called on a refused target")
	}
}

func TestCopyConnAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	src := &chunkReader{chunk: make([]byte, 1500)}
	var count atomic.Uint64
	allocs := testing.AllocsPerRun(100, func() {
		src.left = 100
		if _, err := copyConn(io.Discard, src, &count, false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("copyConn allocates %v times per copy, want 0", allocs)
	}
}

// chunkReader yields left chunks, then EOF.
type chunkReader struct {
	chunk []byte
	left  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.left--
	return copy(p, r.chunk), nil
}

// TestMaxSessions: with MaxSessions sessions in flight the next connection
// is reset at once, counted and logged once; the sessions in flight go on,
// and once one ends a new one is served.
func TestMaxSessions(t *testing.T) {
	var logs logBuf
	f := Forwarder{Logf: logs.Logf, MaxSessions: 2}
	addr := forward(t, &f, server(t, echo))
	var held []*net.TCPConn
	for range 2 {
		c := dial(t, addr)
		held = append(held, c)
	}
	poll.Until(t, 5*time.Second, "2 sessions in flight", func() bool { return f.Active() == 2 })
	for range 3 {
		// The reset can come before Go's connect has looked at the
		// socket's error: then the dial itself fails with it.
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = nc.Read(make([]byte, 1))
			nc.Close()
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a session beyond MaxSessions: %v; want ECONNRESET", err)
		}
	}
	if n := f.Refused(); n != 3 {
		t.Errorf("Refused() = %d, want 3", n)
	}
	if lines := logs.Lines(); len(lines) != 1 || !strings.Contains(lines[0], "max_sessions") {
		t.Errorf("log = %q; want one line about max_sessions", lines)
	}
	for _, c := range held {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if b := make([]byte, 4); func() error { _, err := io.ReadFull(c, b); return err }() != nil || string(b) != "ping" {
			t.Fatalf("a session in flight stopped working: %q", b)
		}
	}
	held[0].Close()
	poll.Until(t, 5*time.Second, "a session to end", func() bool { return f.Active() == 1 })
	c := dial(t, addr)
	c.Write([]byte("pong"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "pong" {
		t.Fatalf("a new session after one ended: %q, %v", b, err)
	}
}

// TestCopyConnBigAndSmall: a stream whose reads fill the small buffer,
// then come back short, then fill the large one, arrives whole.
func TestCopyConnBigAndSmall(t *testing.T) {
	var want bytes.Buffer
	sizes := []int{10, smallSize, smallSize, bufSize, 100, 1, smallSize, bufSize, bufSize, 7}
	for i, size := range sizes {
		want.Write(bytes.Repeat([]byte{byte('a' + i)}, size))
	}
	var got bytes.Buffer
	src := &scriptedReader{data: want.Bytes(), sizes: sizes}
	if n, err := copyConn(&got, src, nil, false); err != nil || n != int64(want.Len()) {
		t.Fatalf("copyConn: %d, %v; want %d", n, err, want.Len())
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("copyConn changed the stream")
	}
}

// scriptedReader returns data in reads of at most sizes[i] bytes each.
type scriptedReader struct {
	data  []byte
	sizes []int
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = min(n, r.sizes[0])
		r.sizes = r.sizes[1:]
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestCopyTellsTheTunnelItStreams: a copy into a streamer (the tunnel
// side) says it streams once a read fills the pooled buffer, and no longer
// once a read comes back short again or the copy ends; quiet data, and a
// burst that only fills the small buffer, say nothing.
func TestCopyTellsTheTunnelItStreams(t *testing.T) {
	const all = -1 // a read that fills the caller's buffer
	src := &scriptReader{reads: []int{
		100, 100, all, 100, // quiet, a 2 KiB burst, quiet
		all, all, all, all, 100, // a stream, then quiet
		all, all, all, // a stream until EOF
	}}
	dst := &streamRecorder{}
	if _, err := copyConn(dst, src, nil, false); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(dst.calls), "[true false true false]"; got != want {
		t.Errorf("Streaming calls %s, want %s", got, want)
	}
}

// scriptReader returns reads of the scripted sizes (-1: as much as asked),
// then EOF.
type scriptReader struct{ reads []int }

func (r *scriptReader) Read(p []byte) (int, error) {
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	n := r.reads[0]
	r.reads = r.reads[1:]
	if n < 0 || n > len(p) {
		n = len(p)
	}
	return n, nil
}

type streamRecorder struct{ calls []bool }

func (s *streamRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (s *streamRecorder) Streaming(on bool)           { s.calls = append(s.calls, on) }
