package uplink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// fakeRelay accepts agent connections and hands them to the test.
type fakeRelay struct {
	ln    net.Listener
	conns chan net.Conn
}

func newFakeRelay(t *testing.T) *fakeRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRelay{ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

// frames reads what the agent sends to the fake relay.
type frames struct {
	c   *wire.Conn
	buf [wire.MaxFrame]byte
}

func (f *frames) Next() ([]byte, error) {
	n, err := f.c.ReadFrame(f.buf[:])
	return f.buf[:n], err
}

func (r *fakeRelay) accept(t *testing.T) (net.Conn, *frames) {
	t.Helper()
	select {
	case c := <-r.conns:
		t.Cleanup(func() { c.Close() })
		return c, &frames{c: wire.NewConn(c, wire.ConnConfig{})}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
		return nil, nil
	}
}

func send(t *testing.T, c net.Conn, payloads ...[]byte) {
	t.Helper()
	var b []byte
	for _, p := range payloads {
		b, _ = wire.AppendFrame(b, p)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// receiver runs the bind's receive function like wireguard-go does.
type receiver struct {
	got  chan []byte
	done chan error
}

func startReceiver(fn conn.ReceiveFunc) *receiver {
	r := &receiver{got: make(chan []byte, 64), done: make(chan error, 1)}
	go func() {
		bufs := make([][]byte, BindBatchSize)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		sizes := make([]int, BindBatchSize)
		eps := make([]conn.Endpoint, BindBatchSize)
		for {
			n, err := fn(bufs, sizes, eps)
			if err != nil {
				r.done <- err
				return
			}
			for i := 0; i < n; i++ {
				r.got <- append([]byte(nil), bufs[i][:sizes[i]]...)
			}
		}
	}()
	return r
}

func (r *receiver) next(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-r.got:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no packet received")
		return nil
	}
}

func wgMsg(typ byte, n int) []byte {
	p := make([]byte, n)
	p[0] = typ
	for i := 4; i < n; i++ {
		p[i] = byte(i)
	}
	return p
}

func TestTCPBindDeliversAndReconnects(t *testing.T) {
	relay := newFakeRelay(t)
	var connects, sent atomic.Int32
	var counters wire.Counters
	b := &TCPBind{
		Addr:      relay.ln.Addr().String(),
		Hello:     wire.Hello{Version: wire.ProtocolVersion, Key: [32]byte{9}, Software: "test-agent"},
		Backoff:   Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond},
		Counters:  &counters,
		Sent:      func(n int) { sent.Add(int32(n)) },
		OnConnect: func() { connects.Add(1) },
	}
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second Open: %v", err)
	}
	rx := startReceiver(fns[0])

	c, r := relay.accept(t)
	poll.Until(t, 5*time.Second, "OnConnect", func() bool { return connects.Load() == 1 })
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	h, err := wire.ParseHello(p)
	if err != nil || h.Software != "test-agent" || h.Key[0] != 9 {
		t.Fatalf("first frame is not the agent's Hello: %+v %v", h, err)
	}

	// Relay → agent: a Hello, two WireGuard messages in one segment.
	init1, data := wgMsg(1, 148), wgMsg(4, 100)
	send(t, c, wire.Hello{Version: 1, Software: "test-relay"}.Marshal(), init1, data)
	if got := rx.next(t); !bytes.Equal(got, init1) {
		t.Fatal("handshake message changed")
	}
	if got := rx.next(t); !bytes.Equal(got, data) {
		t.Fatal("data message changed")
	}
	poll.Until(t, time.Second, "relay software", func() bool { return b.Status().RelaySoftware == "test-relay" })

	// Agent → relay: a batch in one write, framed. Sent counts the data
	// message, not the handshake response or the keepalive (of another
	// session: one of the same session would be left out).
	if err := b.Send([][]byte{wgMsg(2, 92), wgMsg(4, 64), transportMsg(7, 32)}, b.ep); err != nil {
		t.Fatal(err)
	}
	if sent.Load() != 1 {
		t.Errorf("Sent counted %d data messages, want 1", sent.Load())
	}
	for _, want := range []int{92, 64, 32} {
		p, err := r.Next()
		if err != nil || len(p) != want {
			t.Fatalf("relay read %d bytes, %v; want %d", len(p), err, want)
		}
	}
	if counters.RxData.Load() != 100-32 || counters.TxData.Load() != 64-32 {
		t.Errorf("data counters rx=%d tx=%d", counters.RxData.Load(), counters.TxData.Load())
	}
	if counters.RxOverhead.Load() == 0 || counters.TxOverhead.Load() == 0 {
		t.Error("overhead not counted")
	}

	// The relay drops the connection: the bind redials by itself, and the
	// receive function keeps working across it.
	c.Close()
	c2, r2 := relay.accept(t)
	poll.Until(t, 5*time.Second, "second OnConnect", func() bool { return connects.Load() == 2 })
	if p, err := r2.Next(); err != nil || p[0] != wire.TypeHello {
		t.Fatalf("no Hello on the new connection: %v", err)
	}
	send(t, c2, data)
	if got := rx.next(t); !bytes.Equal(got, data) {
		t.Fatal("no delivery after reconnect")
	}
	select {
	case err := <-rx.done:
		t.Fatalf("receive function ended during reconnect: %v", err)
	default:
	}

	// Close: the receive function returns net.ErrClosed, as conn.Bind asks.
	b.Close()
	select {
	case err := <-rx.done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("receive after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("receive did not return after Close")
	}
	if err := b.Send([][]byte{data}, b.ep); !errors.Is(err, vpn.ErrNotConnected) {
		t.Fatalf("Send after Close: %v", err)
	}
	if sent.Load() != 2 {
		t.Errorf("a failed Send was not reported to Sent: %d, want 2", sent.Load())
	}
	b.Close() // idempotent
}

func TestTCPBindGarbageFromRelayOnlyEndsThatConnection(t *testing.T) {
	relay := newFakeRelay(t)
	b := &TCPBind{Addr: relay.ln.Addr().String(), Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}}
	fns, _, _ := b.Open(0)
	defer b.Close()
	rx := startReceiver(fns[0])

	c, _ := relay.accept(t)
	c.Write([]byte{0, 0, 1, 2, 3}) // an empty frame
	c2, _ := relay.accept(t)       // the bind gave up on c and redialed
	msg := wgMsg(4, 80)
	send(t, c2, msg)
	if got := rx.next(t); !bytes.Equal(got, msg) {
		t.Fatal("no delivery after a broken frame")
	}
	if st := b.Status(); !strings.Contains(st.LastError, "empty frame") {
		t.Errorf("last error = %q, want the frame error", st.LastError)
	}
	c2.Close()
	relay.accept(t) // redialed: the reason is kept
	poll.Until(t, 5*time.Second, "third connection", func() bool { return b.Status().Connects == 3 })
	// Closed with our Hello unread, the relay's side resets; either way the
	// hub owner reads words, not a Go error.
	if st := b.Status(); st.LastError != "the relay closed the connection" && st.LastError != "the connection to the relay was reset" {
		t.Errorf("last error after the relay closed: %q", st.LastError)
	}
}

func TestTCPBindGoingAwayWaits(t *testing.T) {
	relay := newFakeRelay(t)
	b := &TCPBind{Addr: relay.ln.Addr().String(), Backoff: Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}}
	fns, _, _ := b.Open(0)
	defer b.Close()
	startReceiver(fns[0])

	c, _ := relay.accept(t)
	send(t, c, wire.GoingAway{RetryAfterMillis: 300}.Marshal())
	start := time.Now()
	relay.accept(t)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("redialed after %v, before the relay's retry-after of 300ms", d)
	}
}

// TestTCPBindAnswersPing: the relay's Ping is answered at once with a
// Pong of the same token, MAC'd with the secret of the hub's key its Hello
// named and the relay's key the relay's Hello named, on the same
// connection, which stays up.
func TestTCPBindAnswersPing(t *testing.T) {
	relay := newFakeRelay(t)
	hubKey, relayKey := [32]byte{1}, [32]byte{2}
	secret := [32]byte{3, 4, 5}
	b := &TCPBind{
		Addr: relay.ln.Addr().String(), Backoff: Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond},
		Hello: wire.Hello{Version: wire.ProtocolVersion, Key: hubKey},
		PongSecret: func(hello, relay [32]byte) ([32]byte, bool) {
			return secret, hello == hubKey && relay == relayKey
		},
	}
	fns, _, _ := b.Open(0)
	defer b.Close()
	rx := startReceiver(fns[0])

	c, r := relay.accept(t)
	if p, err := r.Next(); err != nil || p[0] != wire.TypeHello {
		t.Fatalf("no Hello: %v", err)
	}
	send(t, c, wire.Hello{Version: wire.ProtocolVersion, Key: relayKey}.Marshal())
	token := [8]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	send(t, c, wire.Ping{Token: token}.Marshal())
	p, err := r.Next()
	if err != nil {
		t.Fatalf("no answer to the Ping: %v", err)
	}
	pong, err := wire.ParsePong(p)
	if err != nil || pong.Token != token || pong.MAC != wire.PongMAC(secret, token) {
		t.Fatalf("answer to the Ping: %x, %v; want a Pong with its token and MAC", p, err)
	}
	// The connection stays: WireGuard messages still arrive, and the Ping
	// did not reach WireGuard.
	msg := wgMsg(4, 80)
	send(t, c, msg)
	if got := rx.next(t); !bytes.Equal(got, msg) {
		t.Fatalf("WireGuard got %x after the Ping, want the data message", got[:min(len(got), 8)])
	}
	if st := b.Status(); st.Connects != 1 || !st.Connected {
		t.Errorf("after a Ping: %+v, want the first connection still up", st)
	}
	// A malformed Ping ends the connection, as any malformed control frame.
	send(t, c, []byte{wire.TypePing, 1})
	relay.accept(t)
}

// TestRelayCannotKeepAgentAwayLong: a GoingAway's retry-after is honoured
// up to 15 s (with jitter up to as much again, so at most 30 s), and an
// Error's wait depends on its code, grows with refusals in a row and never
// exceeds 5 minutes. A hub that is not registered yet asks again within a
// minute.
func TestRelayCannotKeepAgentAwayLong(t *testing.T) {
	for _, tt := range []struct {
		ra       time.Duration
		min, max time.Duration
	}{
		{0, time.Millisecond, 2 * time.Millisecond},
		{time.Second, time.Second, 2*time.Second + 2*time.Millisecond},
		{65535 * time.Millisecond, 15 * time.Second, maxGoingAwayWait + 2*time.Millisecond},
	} {
		for i := 0; i < 200; i++ {
			if d := goingAwayDelay(tt.ra); d < tt.min || d > tt.max {
				t.Fatalf("goingAwayDelay(%v) = %v, want in [%v, %v]", tt.ra, d, tt.min, tt.max)
			}
		}
	}
	for _, tt := range []struct {
		code     uint8
		n        int
		min, max time.Duration
	}{
		{wire.CodeNotRegistered, 0, 30 * time.Second, time.Minute},
		{wire.CodeNotRegistered, 1, time.Minute, 2 * time.Minute},
		{wire.CodeNotRegistered, 3, 150 * time.Second, 5 * time.Minute},
		{wire.CodeNotRegistered, 1000, 150 * time.Second, 5 * time.Minute},
		{wire.CodeOverloaded, 0, 30 * time.Second, time.Minute},
		{wire.CodeClone, 0, time.Minute, 2 * time.Minute},
		{wire.CodeClone, 50, 150 * time.Second, 5 * time.Minute},
		{wire.CodeWrongKey, 0, 150 * time.Second, 5 * time.Minute},
		{wire.CodeVersion, 9, 150 * time.Second, 5 * time.Minute},
		{wire.CodeUnknown, 0, 30 * time.Second, time.Minute},
		{200, 64, 150 * time.Second, 5 * time.Minute},
	} {
		for i := 0; i < 200; i++ {
			if d := errorDelay(tt.code, tt.n); d < tt.min || d > tt.max {
				t.Fatalf("errorDelay(code %d, %d in a row) = %v, want in [%v, %v]", tt.code, tt.n, d, tt.min, tt.max)
			}
		}
	}
}

// TestTCPBindWaitsAfterError: after an Error the bind does not redial at
// its reconnect backoff (milliseconds here) but waits as errorDelay says.
func TestTCPBindWaitsAfterError(t *testing.T) {
	relay := newFakeRelay(t)
	b := &TCPBind{Addr: relay.ln.Addr().String(), Backoff: Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}}
	fns, _, _ := b.Open(0)
	defer b.Close()
	startReceiver(fns[0])
	c, _ := relay.accept(t)
	send(t, c, wire.Error{Code: wire.CodeNotRegistered, Message: "this hub is not registered at the relay"}.Marshal())
	c.Close()
	poll.Until(t, 5*time.Second, "the bind to see the Error", func() bool {
		return strings.Contains(b.Status().LastError, "not registered")
	})
	// Its next dial is 30–60 s away, not at its reconnect backoff.
	var wait time.Duration
	poll.Until(t, 5*time.Second, "the bind to wait for its next dial", func() bool {
		wait = b.nextWait()
		return wait > 0
	})
	if wait < 30*time.Second || wait > time.Minute {
		t.Fatalf("after Error %d the bind waits %v, want 30–60 s", wire.CodeNotRegistered, wait)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for n, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		for i := 0; i < 50; i++ {
			if d := b.Delay(n); d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if d := b.Delay(1000); d > b.Max {
		t.Fatalf("Delay(1000) = %v over the cap", d)
	}
}

// connectProxy is a minimal CONNECT proxy for the dialer's unit test; the
// real proxy (tinyproxy) is exercised in e2e.
func connectProxy(t *testing.T, wantAuth string, greeting []byte) *url.URL {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				if req.Header.Get("Proxy-Authorization") != wantAuth {
					io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
					return
				}
				up, err := net.Dial("tcp", req.Host)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				// The answer and the relay's first bytes in one write.
				c.Write(append([]byte("HTTP/1.1 200 Connection established\r\n\r\n"), greeting...))
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

func TestDialerThroughProxy(t *testing.T) {
	target, _ := net.Listen("tcp", "127.0.0.1:0")
	defer target.Close()
	go func() {
		c, err := target.Accept()
		if err == nil {
			c.Write([]byte("world"))
			c.Close()
		}
	}()
	// "hello " is sent by the proxy right after its 200: the dialer must
	// not lose bytes that arrive in the same segment as the answer.
	pu := connectProxy(t, "Basic dXNlcjpwYXNz", []byte("hello "))
	pu.User = url.UserPassword("user", "pass")
	d := &Dialer{Proxy: pu, Timeout: 5 * time.Second}
	c, err := d.Dial(context.Background(), target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := io.ReadAll(c)
	if string(got) != "hello world" {
		t.Fatalf("through the proxy: %q", got)
	}

	pu.User = url.UserPassword("user", "wrong")
	if _, err := d.Dial(context.Background(), target.Addr().String()); err == nil || !strings.Contains(err.Error(), "407") {
		t.Fatalf("wrong proxy password: %v", err)
	}
}

func TestParseProxy(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"http://proxy.lan:3128", true},
		{"http://u:p@10.0.0.1:8080", true},
		{"https://proxy.lan:3128", false},
		{"proxy.lan:3128", false},
		{"http://proxy.lan", false},
	} {
		if _, err := ParseProxy(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseProxy(%q) err = %v", tt.in, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	_, refused := (&Dialer{}).Dial(context.Background(), closed)
	for _, tt := range []struct {
		err  error
		want string
	}{
		{refused, "the relay is not accepting connections (is it running?)"},
		{&net.DNSError{Err: "no such host", Name: "relay.example"}, "cannot find the relay's address (DNS: no such host)"},
		{io.EOF, "the relay closed the connection"},
		{wire.Error{Message: "this hub is not registered at the relay"}, "the relay refused this hub: this hub is not registered at the relay"},
		{context.DeadlineExceeded, "the relay did not answer in time (context deadline exceeded)"},
	} {
		if got := Describe(tt.err); got != tt.want {
			t.Errorf("Describe(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestTCPBindKeepalives: through a real TCPBind, a keepalive the relay
// does not need is never written, one that would go alone waits for
// company, and every other message goes out as it came.
func TestTCPBindKeepalives(t *testing.T) {
	relay := newFakeRelay(t)
	b := &TCPBind{Addr: relay.ln.Addr().String(), Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}}
	fns, _, _ := b.Open(0)
	defer b.Close()
	startReceiver(fns[0])
	_, r := relay.accept(t)
	if p, err := r.Next(); err != nil || p[0] != wire.TypeHello {
		t.Fatalf("no Hello: %v", err)
	}
	poll.Until(t, 5*time.Second, "connected", func() bool { s, _, _ := b.current(); return s != nil })

	for _, step := range []struct {
		name string
		bufs [][]byte
		want []int // sizes the relay reads next, in order
	}{
		{"a keepalive before any data goes at once", [][]byte{transportMsg(4, 32)}, []int{32}},
		{"data on session 4", [][]byte{transportMsg(4, 100)}, []int{100}},
		{"a keepalive on session 5 alone is sent when its hold is up", [][]byte{transportMsg(5, 32)}, []int{32}},
		{"data on session 5", [][]byte{transportMsg(5, 100)}, []int{100}},
		{"a keepalive right after data of its session is left out", [][]byte{transportMsg(5, 32)}, nil},
		{"a keepalive on session 6 is held", [][]byte{transportMsg(6, 32)}, nil},
		{"and left out when data of session 6 follows", [][]byte{transportMsg(6, 90)}, []int{90}},
		{"a keepalive on session 7 is held", [][]byte{transportMsg(7, 32)}, nil},
		{"and goes in front of data of another session", [][]byte{transportMsg(5, 80)}, []int{32, 80}},
		{"a keepalive in a batch is sent with it", [][]byte{wgMsg(1, 148), transportMsg(8, 32)}, []int{148, 32}},
	} {
		if err := b.Send(step.bufs, b.ep); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, want := range step.want {
			p, err := r.Next()
			if err != nil || len(p) != want {
				t.Fatalf("%s: relay read %d bytes, %v; want %d", step.name, len(p), err, want)
			}
		}
	}
	// Nothing else arrived: the next frame is this marker.
	b.Send([][]byte{transportMsg(9, 77)}, b.ep)
	if p, err := r.Next(); err != nil || len(p) != 77 {
		t.Fatalf("a left-out keepalive was sent after all: read %d bytes, %v", len(p), err)
	}
}

// transportMsg is a WireGuard transport message of n bytes for receiver
// index idx; 32 bytes is a keepalive.
func transportMsg(idx byte, n int) []byte {
	m := wgMsg(4, n)
	m[4], m[5], m[6], m[7] = idx, 0, 0, 0
	return m
}
