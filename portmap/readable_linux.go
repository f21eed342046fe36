package portmap

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hubtunnel/hubtunnel/internal/gopool"
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
		s.rc.Read(pollReady)
		gopool.Go(f)
	}()
}

// pollReady reports whether fd has data, EOF or an error waiting, by
// polling it without blocking (poll, unlike a peek, leaves a pending error
// such as a reset for the Read that follows). The runtime's poller only
// wakes a RawConn Read for readiness that came after it started waiting,
// so it must look first.
func pollReady(fd uintptr) bool {
	for {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, err := unix.Poll(p, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}
