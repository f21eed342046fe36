package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/wire"
)

var ports loopback.Ports

// TestCloseSaysGoingAway: a relay that shuts down tells every agent to
// come back after goingAwayMillis, even an agent that is sending to it at
// that moment, and the agent reads it as the last frame before a clean end
// of stream, not a reset. An agent that never hangs up gets it too, and
// does not keep the relay from shutting down.
func TestCloseSaysGoingAway(t *testing.T) {
	const busy = 16 // agents sending WireGuard frames while the relay closes
	tr := startTestRelay(t, false, "a")
	s, key := tr.Server, tr.keys["a"].Public()
	hello, err := wire.AppendFrame(nil, wire.Hello{Version: wire.ProtocolVersion, Key: [32]byte(key), Software: "test"}.Marshal())
	if err != nil {
		t.Fatal(err)
	}

	// An agent that says Hello, reads the relay's, and then neither reads
	// nor hangs up.
	silent, err := net.Dial("tcp", s.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if _, err := silent.Write(hello); err != nil {
		t.Fatal(err)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	silentR := newFrames(silent)
	if p, err := silentR.Next(); err != nil || p[0] != wire.TypeHello {
		t.Fatalf("silent agent: first frame %x, %v; want the relay's Hello", p, err)
	}

	type result struct {
		last []byte // the last frame read
		err  error  // what ended the stream
	}
	results := make(chan result, busy)
	greeted := make(chan struct{}, busy) // the relay has taken the connection in
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range busy {
		c, err := net.Dial("tcp", s.AgentAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() { // sends junk transport messages until told to stop
			defer wg.Done()
			// A transport message for a receiver index nobody has:
			// WireGuard drops it, after the relay's reader took it in.
			junk := make([]byte, 96)
			junk[0] = 4
			frames := append([]byte{}, hello...)
			for range 64 {
				frames, _ = wire.AppendFrame(frames, junk)
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			for i := 0; ; i++ {
				if _, err := c.Write(frames); err != nil {
					return
				}
				if i == 0 {
					frames = frames[len(hello):]
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		go func() { // reads until the stream ends, then hangs up as an agent does
			r := newFrames(c)
			var res result
			for {
				p, err := r.Next()
				if err != nil {
					res.err = err
					break
				}
				if res.last == nil {
					greeted <- struct{}{}
				}
				res.last = append(res.last[:0], p...)
			}
			c.Close()
			results <- res
		}()
	}
	for range busy {
		select {
		case <-greeted:
		case <-time.After(10 * time.Second):
			t.Fatal("the relay did not greet every agent within 10 s")
		}
	}

	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close still running after 10 s")
	}
	close(stop)
	wg.Wait()

	want := wire.GoingAway{RetryAfterMillis: goingAwayMillis}.Marshal()
	for i := range busy {
		res := <-results
		if string(res.last) != string(want) {
			t.Errorf("agent %d: last frame %x, want GoingAway %x", i, res.last, want)
		}
		if !errors.Is(res.err, io.EOF) {
			t.Errorf("agent %d: stream ended with %v, want a clean end (EOF)", i, res.err)
		}
	}

	// The silent agent got the same frame, then its connection was closed.
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	var last []byte
	for {
		p, err := silentR.Next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the silent agent's connection was still open 10 s after Close")
			}
			break
		}
		last = append(last[:0], p...)
	}
	if string(last) != string(want) {
		t.Errorf("silent agent: last frame %x, want GoingAway %x", last, want)
	}
}

// frames reads what the relay sends to a test's agent connection.
type frames struct {
	c   *wire.Conn
	buf [wire.MaxFrame]byte
}

func newFrames(c net.Conn) *frames { return &frames{c: wire.NewConn(c, wire.ConnConfig{})} }

// Next returns the next frame but Features, which follows the relay's
// Hello (TestLargeMTUWithOldAndNewPeers is about it).
func (f *frames) Next() ([]byte, error) {
	for {
		n, err := f.c.ReadFrame(f.buf[:])
		if err != nil || f.buf[0] != wire.TypeFeatures {
			return f.buf[:n], err
		}
	}
}
