package portmap

import (
	"net"
	"syscall"

	"github.com/hubtunnel/hubtunnel/internal/gopool"
	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

// socketNotifier waits for a TCP socket to become readable without a buffer
// and with a shallow goroutine (a parked Read would hold its buffer and,
// after copying into the netstack, a deep stack).
func socketNotifier(c *net.TCPConn) readNotifier {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return sockReady{rc}
}

type sockReady struct{ rc syscall.RawConn }

// WhenReadable calls f once a read would not block: data, EOF, an error,
// or the connection closed (the RawConn's Read fails). It waits on a new,
// shallow goroutine and runs f on one of gopool's, whose stack has grown
// for the copy already.
func (s sockReady) WhenReadable(f func()) {
	go func() {
		w := readyWait{}
		s.rc.Read(w.ready)
		gopool.Go(f)
	}()
}

// readyWait is one wait for readability. The runtime's poller only wakes a
// RawConn Read for readiness that came after it started waiting, so the
// first call looks (poll(2)); a second call is the poller's wake-up, taken
// as readable: a read that then finds nothing only waits again.
type readyWait struct{ calls int }

func (w *readyWait) ready(fd uintptr) bool {
	w.calls++
	return w.calls > 1 || sockio.Readable(fd)
}
