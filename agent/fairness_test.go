package agent

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestStalledHubDoesNotStallOthers: one hub's connection to the relay
// stops taking data (its uplink hangs, say) while users upload to it. The
// relay must go on serving the other hubs: beta is reached while alpha's
// connection is still stalled, long before the relay gives up on alpha.
func TestStalledHubDoesNotStallOthers(t *testing.T) {
	var alphaGone atomic.Bool
	tb := newTestbedWith(t, testbedOpts{relayLog: func(line string) {
		if strings.Contains(line, `msg="hub disconnected" hub=alpha `) {
			alphaGone.Store(true)
		}
	}}, "alpha", "beta")

	// alpha again, behind a forwarder that can stop reading from the relay,
	// with its port 80 leading to a sink that reads everything.
	sink := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	fwd := newStallForwarder(t, tb.relay.AgentAddr().String())
	old := tb.agents["alpha"]
	old.Close()
	poll.Until(t, 10*time.Second, "the relay to see the first alpha go", alphaGone.Load)
	alphaGone.Store(false)
	cfg := *old.cfg
	cfg.Relay = fwd.addr()
	cfg.Targets.Ports = map[string]string{"80": sink}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := New(&cfg, "test", func(f string, args ...any) { t.Logf("alpha behind the forwarder: "+f, args...) })
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	poll.Until(t, 10*time.Second, "alpha connected through the forwarder", func() bool {
		return a.Status().State == "connected"
	})

	// Uploads to alpha, which stalls once they are going; they go on until
	// nothing more leaves the relay for alpha: the tunnel's TCP windows are
	// full, and what is in flight sits in the relay's WireGuard queue for
	// alpha and in the socket buffers on the way.
	const uploads = 16
	var moved atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	port := 80 + tb.offset
	for range uploads {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: alpha.localhost:%d\r\nAuthorization: %s\r\nContent-Length: 1000000000\r\n\r\n", port, tb.bed.Relay.AuthHeader("alpha"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				n, err := c.Write(buf)
				moved.Add(int64(n))
				if err != nil && !isTimeout(err) {
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Stall once the tunnel's TCP windows to alpha have grown: 1 MiB each
	// through the forwarder.
	poll.Until(t, 20*time.Second, "the uploads to get going", func() bool { return fwd.passed.Load() >= uploads<<20 })
	fwd.stall()
	// Wait until the uploads stand still: everything that could leave the
	// relay for alpha has.
	last, still := int64(-1), 0
	poll.Until(t, 20*time.Second, "the uploads to the stalled alpha to stand still", func() bool {
		n := moved.Load()
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
		return still >= 30 // polls are 10 ms apart
	})
	if alphaGone.Load() {
		t.Fatal("the relay gave up on alpha before beta was tried; the test proves nothing")
	}
	t.Logf("users wrote %d MB for the stalled alpha", last>>20)

	code, _, err := tb.get("beta")
	if err != nil || code != 200 {
		t.Fatalf("GET beta while alpha is stalled: %d %v", code, err)
	}
	if alphaGone.Load() {
		t.Errorf("beta was answered only after the relay gave up on the stalled alpha")
	}
}

// listen serves each connection to 127.0.0.1:0 with handle and returns the
// address.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
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
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// stallForwarder passes one agent's connections to the relay through, and
// on stall stops reading what the relay sends, as a hung uplink would.
type stallForwarder struct {
	passed  atomic.Int64 // bytes passed from the relay to the agent
	ln      net.Listener
	stalled chan struct{}
	once    sync.Once
}

func newStallForwarder(t *testing.T, relay string) *stallForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &stallForwarder{ln: ln, stalled: make(chan struct{})}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.stall()
		conns.Wait()
	})
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", relay)
			if err != nil {
				c.Close()
				continue
			}
			// A small buffer, so that a stall backs up into the relay
			// soon, as on a link with little buffering.
			r.(*net.TCPConn).SetReadBuffer(64 << 10)
			conns.Add(2)
			go func() { // agent to relay, always
				defer conns.Done()
				io.Copy(r, c)
				r.Close()
			}()
			go func() { // relay to agent, until stalled
				defer conns.Done()
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					select {
					case <-f.stalled:
						<-done // hold the connection open, unread, until the test ends
						r.Close()
						return
					default:
					}
					r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					n, err := r.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
						f.passed.Add(int64(n))
					}
					if err != nil && !isTimeout(err) {
						return
					}
				}
			}()
		}
	}()
	return f
}

func (f *stallForwarder) addr() string { return f.ln.Addr().String() }

func (f *stallForwarder) stall() { f.once.Do(func() { close(f.stalled) }) }
