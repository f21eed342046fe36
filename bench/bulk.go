package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// chunk is the size of every read and write of bulk data.
const chunk = 64 << 10

// BulkServer stands in for a hub service that moves a lot of data. It
// speaks just enough HTTP/1.1 for the relay to route a request to it:
//
//	GET /down   200, then zeros until the client closes
//	POST /up    reads until EOF, counting (Received), then 200
//	GET /ping   200 "ok", then closes
//	GET /small  200 "ok", keeping the connection for the next request
//	            (the peers phase's small request, for its latency client and wrk)
//
// Bulk data is sent and received in 64 KiB application writes and reads.
type BulkServer struct {
	Received atomic.Uint64 // bytes of /up bodies read so far

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewBulkServer listens on 127.0.0.1:0 and serves until Close.
func NewBulkServer() (*BulkServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &BulkServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the server's host:port.
func (s *BulkServer) Addr() string { return s.ln.Addr().String() }

// Close stops the server and ends every connection.
func (s *BulkServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *BulkServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *BulkServer) serve(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 4096)
	method, path, err := readRequestHead(br)
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	switch {
	case method == "GET" && path == "/ping":
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	case method == "GET" && path == "/small":
		// Kept alive while the client keeps asking for /small; a
		// client idle for a minute is dropped.
		for {
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(time.Minute))
			if method, path, err = readRequestHead(br); err != nil || method != "GET" || path != "/small" {
				return
			}
		}
	case method == "GET" && path == "/down":
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"); err != nil {
			return
		}
		buf := make([]byte, chunk)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case method == "POST" && path == "/up":
		buf := make([]byte, chunk)
		for {
			n, err := br.Read(buf)
			s.Received.Add(uint64(n))
			if err != nil {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	default:
		io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}
}

// readRequestHead reads an HTTP request head (at most 8 KiB) and returns
// its method and path.
func readRequestHead(br *bufio.Reader) (method, path string, err error) {
	total := 0
	first := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		if total += len(line); total > 8<<10 {
			return "", "", errors.New("request head too long")
		}
		if first == "" {
			first = line
			continue
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	f := strings.Fields(first)
	if len(f) != 3 {
		return "", "", fmt.Errorf("bad request line %q", first)
	}
	return f[0], f[1], nil
}

// Direction of a bulk transfer, seen from the client.
type Direction int

const (
	Download Direction = iota // server → client
	Upload                    // client → server
)

func (d Direction) String() string {
	if d == Upload {
		return "upload"
	}
	return "download"
}

// Transfer is one throughput measurement.
type Transfer struct {
	Addr     string // where the client connects (host:port)
	Host     string // the Host header (the relay routes by it)
	Auth     string // the Authorization header (the hub's app token); "" for none
	Streams  int
	Dir      Direction
	Warmup   time.Duration // discarded at the start
	Duration time.Duration // measured
	Server   *BulkServer   // counts uploads; needed for Upload
	// Window, if set, is called when the measured time starts and when it
	// ends (the peers phase reads CPU times there).
	Window func()
}

// Result of a Transfer.
type Result struct {
	Bytes   uint64
	Elapsed time.Duration
}

// Mbps is the result in Mbit/s (10⁶ bit/s).
func (r Result) Mbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e6
}

// Run opens t.Streams connections, moves bulk data on all of them for
// Warmup+Duration and reports what moved during Duration. sample, if set,
// is called every 100 ms of the measured time (for memory sampling).
func (t Transfer) Run(sample func()) (Result, error) {
	if t.Streams < 1 || t.Streams > 64 {
		return Result{}, fmt.Errorf("bench: %d streams: want 1–64", t.Streams)
	}
	var (
		counter  atomic.Uint64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		conns    []net.Conn
		stopping atomic.Bool
	)
	fail := func(err error) {
		if stopping.Load() {
			return
		}
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	defer func() {
		stopping.Store(true)
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for i := 0; i < t.Streams; i++ {
		c, err := net.DialTimeout("tcp", t.Addr, 10*time.Second)
		if err != nil {
			return Result{}, fmt.Errorf("bench: dial %s: %w", t.Addr, err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A stream ends only when its connection fails or is
			// closed: before the run stops, that is a failure.
			fail(t.stream(c, &counter))
		}()
	}
	count := func() uint64 {
		if t.Dir == Upload {
			return t.Server.Received.Load()
		}
		return counter.Load()
	}
	time.Sleep(t.Warmup)
	if t.Window != nil {
		t.Window()
	}
	start, c0 := time.Now(), count()
	end := start.Add(t.Duration)
	for now := time.Now(); now.Before(end); now = time.Now() {
		time.Sleep(min(100*time.Millisecond, end.Sub(now)))
		if sample != nil {
			sample()
		}
	}
	r := Result{Bytes: count() - c0, Elapsed: time.Since(start)}
	if t.Window != nil {
		t.Window()
	}
	errMu.Lock()
	err := firstErr
	errMu.Unlock()
	if err == nil && r.Bytes == 0 {
		err = fmt.Errorf("bench: no data moved through %s", t.Addr)
	}
	return r, err
}

// stream moves data on c in t.Dir, counting what it reads, until the
// connection fails or is closed; the error says which (never nil).
func (t Transfer) stream(c net.Conn, counter *atomic.Uint64) error {
	host := t.Host
	if host == "" {
		host = "bench"
	}
	auth := ""
	if t.Auth != "" {
		auth = "Authorization: " + t.Auth + "\r\n"
	}
	buf := make([]byte, chunk)
	if t.Dir == Upload {
		if _, err := fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n", host, auth, int64(1)<<40); err != nil {
			return err
		}
		for {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
	}
	if _, err := fmt.Fprintf(c, "GET /down HTTP/1.1\r\nHost: %s\r\n%s\r\n", host, auth); err != nil {
		return err
	}
	// The response head is a few bytes among gigabytes: counted as data.
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) {
		return fmt.Errorf("bench: %s answered %.80q", t.Addr, buf[:n])
	}
	for {
		n, err := c.Read(buf)
		counter.Add(uint64(n))
		if err != nil {
			return err
		}
	}
}

// Forward accepts connections on ln and connects each to the address to,
// copying both ways through a 32 KiB buffer with plain reads and writes (a
// user-space relay like socat, without splice), with half-close. It is the
// unencrypted two-hop relay the full path is compared with. It returns when
// ln is closed.
func Forward(ln net.Listener, to string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp", to, 10*time.Second)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				copyPlain(u, c)
				close(done)
			}()
			copyPlain(c, u)
			<-done
		}()
	}
}

// copyPlain copies src to dst until EOF, then half-closes dst.
func copyPlain(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			break
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}
