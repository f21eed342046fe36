package portmap

import (
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/gopool"
	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestHeldSessionsWaitWithoutBuffers: sessions held open between calls wait
// for data without a goroutine parked in Read, so none holds a copy buffer
// or the deep stack left by a copy into the netstack (1,500 held took the
// agent 13 MB of stacks that way). What waits is one shallow goroutine per
// TCP side in the poller.
func TestHeldSessionsWaitWithoutBuffers(t *testing.T) {
	const n = 20
	var f Forwarder
	addr := forward(t, &f, server(t, echo))
	for range n {
		c := dial(t, addr)
		defer c.Close()
		if _, err := c.Write([]byte("call")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	// The echo answered every call: each session is now between calls,
	// once each copy has seen its read come back short.
	// The copies ran on gopool's goroutines, which wait a moment for the
	// next copy: those are the pool's, bounded, and belong to no session
	// ("created by" names whoever started them, so they are told first).
	// A goroutine a readable event has just started counts until it is
	// done: the counts must settle, not hold at one instant.
	var inRead, waiting, pooled int
	defer func() {
		if t.Failed() {
			t.Logf("last count: %d goroutines in a session's Read, %d waiting for sessions, %d of gopool's", inRead, waiting, pooled)
		}
	}()
	poll.Until(t, 10*time.Second, "the held sessions to wait without a Read, one goroutine a side at most", func() bool {
		inRead, waiting, pooled = 0, 0, 0
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			switch {
			case strings.Contains(g, "portmap.copyConn"):
				inRead++
			case strings.Contains(g, "gopool.run"):
				pooled++
			case strings.Contains(g, "portmap.sockReady"):
				waiting++
			}
		}
		return inRead == 0 && waiting <= 2*n && pooled <= gopool.MaxIdle
	})
}
